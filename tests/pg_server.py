"""A throwaway PostgreSQL server for the tests: the system's binaries (Debian's package), a temporary
data directory, 127.0.0.1 only, trust authentication, a fresh database per test.

Where the binaries or psycopg are missing the PostgreSQL cases skip, unless
``LIVETRAIN_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRED = os.environ.get("LIVETRAIN_REQUIRE_POSTGRES") == "1"


def unavailable(reason: str) -> None:
    """Skip the PostgreSQL case, or fail it where CI requires PostgreSQL."""
    if REQUIRED:
        pytest.fail(f"{reason} (LIVETRAIN_REQUIRE_POSTGRES=1 requires the PostgreSQL tests to run)")
    pytest.skip(reason)


def find_binary(name: str) -> str | None:
    """``name`` on PATH, else in the newest ``/usr/lib/postgresql/<version>/bin`` (Debian keeps them
    off PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One running server; :meth:`create_database` gives each test its own database."""

    def __init__(self, root: Path, bindir: Path, run_as: list[str]) -> None:
        self.root = root
        self.data = root / "data"
        self.host = "127.0.0.1"
        self.port = 0
        self._bindir = bindir
        self._run_as = run_as
        self._names = itertools.count()

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self._run_as, str(self._bindir / tool), *args]
        # generous: initdb on a machine busy with other work took over two minutes once
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=self.root)
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}\n{tail}")

    def start(self) -> None:
        # --no-sync: a test cluster need not survive a power cut; the server itself still fsyncs commits.
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        for attempt in range(3):  # a free port can be taken between choosing it and listening on it
            self.port = _free_port()
            options = f"-c listen_addresses={self.host} -p {self.port} -k {self.root}"
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                          "-t", "60", "-o", options, "start")
                return
            except RuntimeError:
                if attempt == 2:
                    raise

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def admin(self) -> Any:
        """A superuser connection to the ``postgres`` database, in autocommit mode (close it)."""
        import psycopg

        return psycopg.connect(self.url(), autocommit=True)

    def password_user(self, name: str, password: str) -> str:
        """A role that logs in with ``password`` only (scram-sha-256 over TCP, unlike the trust
        authentication of every other role here); returns a URL of the ``postgres`` database without the
        password, as ``postgresql://name@host:port/postgres``."""
        with self.admin() as db:
            if db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None:
                db.execute(f'CREATE ROLE "{name}" LOGIN PASSWORD {_literal(password)}')
            hba = Path(db.execute("SHOW hba_file").fetchone()[0])
            rule = f"host all {name} {self.host}/32 scram-sha-256\n"
            text = hba.read_text()
            if rule not in text:  # the first matching line decides, so it goes before the trust lines
                hba.write_text(rule + text)
                db.execute("SELECT pg_reload_conf()")
        url = f"postgresql://{name}@{self.host}:{self.port}/postgres"
        import psycopg

        deadline = time.monotonic() + 30
        while True:  # the server reloads its rules in the background: wait until a wrong password fails
            try:
                psycopg.connect(url, password=password + "-wrong", connect_timeout=5).close()
            except psycopg.OperationalError:
                return url
            if time.monotonic() > deadline:
                raise RuntimeError(f"{hba}: the server still lets {name} in without a password")
            time.sleep(0.1)

    def create_database(self) -> str:
        name = f"livetrain_test_{next(self._names)}"
        with self.admin() as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _literal(text: str) -> str:
    """An SQL string literal (DDL takes no parameters)."""
    return "'" + text.replace("'", "''") + "'"


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """Start a server for the session (skip or fail when PostgreSQL cannot run here)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install 'livetrain-widgets[team]')")
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        unavailable("PostgreSQL's initdb / pg_ctl not found (apt-get install postgresql)")
    bindir = Path(os.path.realpath(initdb or "")).parent
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="livetrain-pg-"))
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run it as the package's system user, which must own the
        # data directory (mkdtemp's folder is private to its owner, so hand it over).
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            unavailable("running as root and there is no 'postgres' system user to run the server as")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(root, bindir, run_as)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
