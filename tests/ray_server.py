"""A throwaway Ray cluster for the tests: ``ray start --head`` with a private temporary directory and
free ports, so it runs beside any other Ray on the machine, and is taken down by killing its own
processes only (``ray stop`` would stop every Ray of the machine's user).

Where Ray is not installed the cases that need the cluster skip, unless ``LIVETRAIN_REQUIRE_RAY=1``
(set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRED = os.environ.get("LIVETRAIN_REQUIRE_RAY") == "1"

#: Ray's default worker port range: the Ray Client server's port must not fall inside it
WORKER_PORTS = range(10002, 20000)


def unavailable(reason: str) -> None:
    """Skip the Ray case, or fail it where CI requires Ray."""
    if REQUIRED:
        pytest.fail(f"{reason} (LIVETRAIN_REQUIRE_RAY=1 requires the Ray tests to run)")
    pytest.skip(reason)


def free_port() -> int:
    """A free TCP port outside Ray's worker port range."""
    while True:
        with socket.socket() as s:
            s.bind(("", 0))
            port = int(s.getsockname()[1])
        if port not in WORKER_PORTS:
            return port


class RayCluster:
    """One head node started by ``ray start``; ``address`` is its GCS address (``"ip:port"``).

    With a ``token`` it requires Ray's token authentication with that token (given in the environment,
    so the user's ``~/.ray/auth_token`` is neither read nor written); without one it runs open
    (``RAY_AUTH_MODE=disabled``, even where the machine has a token), as a cluster livetrain refuses."""

    def __init__(self, root: Path, token: str | None = None) -> None:
        self.root = root
        self.token = token
        self.port = 0
        self.client_port = 0
        self.address = ""
        self.output = ""

    def start(self, timeout_s: float = 300.0) -> None:
        for attempt in range(3):  # a free port can be taken between choosing it and listening on it
            self.port, self.client_port = free_port(), free_port()
            cmd = [
                sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={self.port}",
                f"--ray-client-server-port={self.client_port}",
                # the agent's default port (52365) is taken by any other Ray on the machine
                f"--dashboard-agent-listen-port={free_port()}",
                "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.root}",
            ]
            env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_")}
            env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token} if self.token else
                       {"RAY_AUTH_MODE": "disabled"})
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
            self.output = proc.stdout + proc.stderr
            if proc.returncode == 0:
                # "ray start --address='192.0.2.2:PORT'" names the address other nodes (and drivers) use:
                # the node's own IP, not 127.0.0.1, which Ray does not listen on for the GCS.
                found = re.search(r"--address='([^']+)'", self.output)
                self.address = found.group(1) if found else f"{_node_ip()}:{self.port}"
                return
            self.stop()
            if attempt == 2:
                raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{self.output[-3000:]}")

    def processes(self) -> list[Any]:
        """This cluster's processes: those naming its temporary directory (gcs_server, raylet, monitors)
        or connecting to its address (the Ray Client server), and everything they started (agents,
        workers, actors). Never another cluster's: a port alone is not a mark, since a failed start may
        have chosen a port another Ray listens on."""
        import psutil

        marks = [re.escape(str(self.root)) + r"(?![^\s/])"]
        if self.address:
            marks.append(re.escape(f"--address={self.address}") + r"(?!\d)")
        pattern = re.compile("|".join(marks))
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if pattern.search(cmdline) and proc.pid != os.getpid():
                found[proc.pid] = proc
                with contextlib.suppress(psutil.Error):
                    for child in proc.children(recursive=True):
                        found[child.pid] = child
        return list(found.values())

    def stop(self) -> None:
        import psutil

        # twice: a raylet can start a worker while the first round takes the cluster down
        for _ in range(2):
            procs = self.processes()
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.terminate()
            # gcs_server and the monitor can take over 15 s to honour SIGTERM; a test cluster keeps nothing
            _, alive = psutil.wait_procs(procs, timeout=5)
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(alive, timeout=10)


def _node_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.255", 9))  # no packet is sent: this only picks the outgoing interface
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


@contextlib.contextmanager
def running_cluster(token: str | None = None) -> Iterator[RayCluster]:
    """Start a cluster (skip or fail when Ray cannot run here); with ``token``, one that requires it."""
    if importlib.util.find_spec("ray") is None:
        unavailable("ray is not installed (pip install 'livetrain-widgets[team]')")
    try:
        import psutil  # noqa: F401
    except ImportError:
        unavailable("psutil is needed to stop the test's Ray cluster (pip install psutil)")
    # A short path: Ray's Unix sockets live under it, and a socket path is limited to 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="lt-ray-"))
    cluster = RayCluster(root, token)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
