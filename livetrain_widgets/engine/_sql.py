"""The SQL engines behind the annotation store: SQLite (embedded, the default) and PostgreSQL (one
server a team shares), chosen by the store's location.

The store speaks one SQL: ``?`` placeholders, SQLite's type names in its DDL, and nothing either engine
lacks. :class:`PostgresConnection` maps the few differences (placeholders, 64-bit types, identity ids,
``RETURNING`` for new ids), so one schema and one migration sequence serve both. Everything
engine-specific lives here: opening, write transactions, the schema version, and turning each engine's
failures (a full disk, a lost server) into the same :class:`StoreError`.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import os
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, unquote, urlsplit

from ._disk import disk_full

_BUSY_TIMEOUT_MS = 10_000

#: URL schemes of a PostgreSQL store (libpq accepts both spellings).
POSTGRES_SCHEMES: tuple[str, ...] = ("postgresql", "postgres")

_TEAM_EXTRA = "pip install 'livetrain-widgets[team]'"


class StoreError(RuntimeError):
    """The store cannot do what was asked: closed, from a newer version, holding damaged data, or out of
    reach (a full disk, a lost server)."""


# ------------------------------------------------------------------------------------ locations
def parse_location(location: str | os.PathLike[str]) -> tuple[str, Path | str]:
    """``("sqlite", Path)`` or ``("postgresql", url)`` for a store location.

    A location is a file path (SQLite, the default), ``sqlite:///abs/path.db`` (the path after
    ``sqlite://`` is absolute; write a plain path for a relative one), or
    ``postgresql://user@host:port/dbname`` (also ``postgres://``, with any libpq parameters).
    Only a ``str`` holding ``://`` is read as a URL, so no file path is ever mistaken for one.
    """
    if not isinstance(location, str) or "://" not in location:
        return "sqlite", Path(location)
    scheme = location.split("://", 1)[0].lower()
    if scheme in POSTGRES_SCHEMES:
        return "postgresql", location
    if scheme == "sqlite":
        parts = urlsplit(location)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise ValueError(
                f"{location!r}: a sqlite URL names a local file only, as sqlite:///abs/path/labels.sqlite"
            )
        path = unquote(parts.path)
        if path.startswith("//"):  # SQLAlchemy's spelling of an absolute path, sqlite:////abs/path
            path = path[1:]
        if re.match(r"^/[A-Za-z]:", path):  # sqlite:///C:/labels.sqlite on Windows
            path = path[1:]
        if path in ("", "/"):
            raise ValueError(f"{location!r}: the sqlite URL names no file")
        return "sqlite", Path(path)
    raise ValueError(
        f"unsupported store location {redact(location)!r}: expected a file path, "
        "sqlite:///abs/path/labels.sqlite or postgresql://user@host:port/dbname"
    )


# ------------------------------------------------------------------------------------ secrets
# A password may sit in a store URL (``postgresql://user:PASSWORD@host/db`` or ``?password=...``). Every
# text this package shows or logs about a store goes through redact()/hide_secrets() below, including
# what psycopg and libpq say, which echo parts of the URL (``invalid percent-encoded token: "..."``).
_PASSWORD_PARAM = re.compile(r"(?i)(?<![\w.])(password=)([^&#\s]*)")
_MIN_SECRET_ANYWHERE = 4  # a shorter password is hidden only where it stands alone, not inside words


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the password of the URL's user info is, as (start, end), also in a malformed URL.

    A user name never holds ``@ / ? #`` and the host part never holds ``@``, so the user info ends at
    the last ``@`` after which the user name (up to the first ``:``) is still plain: a password with
    an unencoded ``/``, ``?``, ``#`` or ``@`` (which urlsplit and libpq each cut in their own place) is
    covered whole. Where an ``@`` follows the host (in a parameter) the span may take in more than the
    password: too much hidden, never too little.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    base = len(scheme) + len(sep)
    end = len(rest)
    while (at := rest.rfind("@", 0, end)) >= 0:
        user, colon, _ = rest[:at].partition(":")
        if colon and not any(c in user for c in "@/?#"):
            return base + len(user) + 1, base + at
        end = at
    return None


def _secrets(url: str) -> list[str]:
    """Every form in which the URL's password(s) could appear in a text: as written, percent-decoded,
    as libpq reads the user info (up to the first ``@`` or ``/``) and in pieces, longest first."""
    found: set[str] = set()
    span = _password_span(url)
    if span is not None:
        found.add(url[span[0]:span[1]])
        # libpq cuts a malformed URL elsewhere and may show a piece ("invalid port" for what follows a
        # ":" up to an unencoded "/"): each piece is hidden too
        found.update(re.split(r"[@/?#:]", url[span[0]:span[1]]))
    _, sep, rest = url.partition("://")
    if sep:
        userinfo = re.split(r"[@/]", rest, maxsplit=1)[0]
        if len(userinfo) < len(rest) and rest[len(userinfo)] == "@" and ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
    found.update(m.group(2) for m in _PASSWORD_PARAM.finditer(url))
    found |= {unquote(x) for x in found} | {unquote(x.replace("+", " ")) for x in found}
    return sorted((x for x in found if x), key=len, reverse=True)


def hide_secrets(text: str, url: str | os.PathLike[str] | None) -> str:
    """``text`` (a message, someone else's error) with every form of ``url``'s password replaced by
    ``***``. Nothing to hide where ``url`` has no password or is a file path."""
    if not isinstance(url, str) or "://" not in url:
        return text
    for secret in _secrets(url):
        if len(secret) >= _MIN_SECRET_ANYWHERE:
            text = text.replace(secret, "***")
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text


def redact(url: str, marker: str | None = "***") -> str:
    """The URL with its password replaced by ``marker``, for messages, reprs and logs; with
    ``marker=None``, without its password at all (``user@host``, no ``password=`` parameter), as someone
    with their own credentials gives the same store (how the team's trainer is named and found)."""
    url = str(url)
    span = _password_span(url)
    if span is not None:
        start, end = span
        url = url[:start] + marker + url[end:] if marker is not None else url[:start - 1] + url[end:]
    if marker is not None:
        return _PASSWORD_PARAM.sub(lambda m: m.group(1) + marker, url)
    url = re.sub(r"(?i)(?<=[?&])password=[^&#\s]*(?:&|(?=#|$))", "", url)
    return re.sub(r"[?&](?=#|$)", "", url)  # a parameter list left empty


def connect(location: str | os.PathLike[str]) -> Connection:
    """Open the database a location names (not yet migrated)."""
    dialect, target = parse_location(location)
    if dialect == "postgresql":
        return PostgresConnection(str(target))
    return SQLiteConnection(Path(target))


# ------------------------------------------------------------------------------------ the base
class Connection(abc.ABC):
    """One open store database. Migrations and the store's write functions receive it and call
    :meth:`execute` / :meth:`insert` (``?`` placeholders) and :meth:`script` (DDL, SQLite's type names).
    Not thread-safe by itself: the store serialises its use with a lock."""

    #: ``"sqlite"`` or ``"postgresql"``.
    dialect: str
    #: Where the data is, for messages: the file path, or the URL without its password.
    where: str
    #: The file of a SQLite store; None for a server.
    path: Path | None = None
    #: SQL for the database's clock, in seconds since the epoch (what lease expiry is measured by).
    now_sql: str

    def now(self) -> float:
        """The database's clock, in seconds since the epoch. Inside a write transaction, read it once and
        use that value for every check and expiry the transaction writes."""
        return float(self.execute(f"SELECT {self.now_sql}").fetchone()[0])

    # What migrations and write functions use.
    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns a cursor (``fetchone`` / ``fetchall``)."""

    @abc.abstractmethod
    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one ``INSERT`` into a table with an ``id`` key; returns the new row's id."""

    def script(self, ddl: str) -> None:
        """DDL statements separated by ``;``, one by one (``executescript`` would COMMIT first and break
        the migration's transaction: a failed migration must leave the database as it was)."""
        for statement in self._ddl(ddl).split(";"):
            if statement.strip():
                self.execute(statement)

    def _ddl(self, ddl: str) -> str:
        return ddl

    # What the store uses.
    @property
    @abc.abstractmethod
    def url(self) -> str:
        """A location that opens this store again (SQLite: ``sqlite:///abs/path``)."""

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one read, outside any write transaction."""

    @abc.abstractmethod
    def write(self, fn: Callable[[Connection], Any]) -> Any:
        """Run ``fn(self)`` in one serialisable write transaction, committed (durably) before returning."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """The version of the schema the database holds (0 for a new one)."""

    @abc.abstractmethod
    def set_schema_version(self, version: int) -> None:
        """Record the schema version, inside the migration's transaction."""

    @abc.abstractmethod
    def _migration_transaction(self) -> contextlib.AbstractContextManager[None]:
        """A transaction that no other process migrating the same store runs alongside."""

    def migrate(self, migrations: Sequence[Callable[[Connection], None]]) -> None:
        """Bring the schema to ``len(migrations)``: migration i goes from version i to i + 1, each in its
        own transaction. Safe when several processes open a new store at once: the version is read again
        under the migration lock, so a step another process already made is not made twice."""
        latest = len(migrations)
        current = self.schema_version()
        while True:
            if current > latest:
                raise StoreError(
                    f"{self.where}: the store has schema version {current}, newer than this livetrain-widgets "
                    f"understands ({latest}); upgrade the package to open it"
                )
            if current == latest:
                return
            with self._migration_transaction():
                current = self.schema_version()
                if current < latest:
                    migrations[current](self)
                    self.set_schema_version(current + 1)
                    current += 1

    @abc.abstractmethod
    def integrity_check(self) -> str:
        """``"ok"`` when the stored data reads back whole, else the findings, one per line."""

    @abc.abstractmethod
    def checkpoint(self) -> bool:
        """Fold a write-ahead log into the database; False when another reader kept it from finishing."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection (the store calls it once)."""


def _disk_full_error(where: str) -> StoreError:
    return StoreError(
        f"{where}: the disk is full, so this change was not saved; everything saved before is safe. "
        "Free some space and try again."
    )


# ------------------------------------------------------------------------------------- SQLite
def _switch_to_wal(db: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode=WAL``, waiting for a process that opens the same new file at this moment:
    the switch needs the file to itself, and SQLite fails it at once ("database is locked") instead of
    calling the busy handler."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.02))


class SQLiteConnection(Connection):
    """One SQLite file: WAL journal with ``synchronous=FULL`` (each commit fsyncs the log)."""

    dialect = "sqlite"
    # SQLite has no server: its clock is the clock of the one machine whose processes share the file
    # (SQLite over a network filesystem is unsafe anyway). julianday('now') reads the same system clock
    # as time.time(), to the millisecond.
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a commit happens exactly where
        # the code says (the durability promise of submit depends on it).
        db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        try:
            mode = _switch_to_wal(db)
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: could not switch the store to WAL mode (got {mode!r})")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"{path}: not a usable annotation store ({exc})") from exc
        except BaseException:
            db.close()
            raise
        self._db = db

    @property
    def url(self) -> str:
        path = self.path.absolute().as_posix() if self.path else ""
        return "sqlite://" + quote(path if path.startswith("/") else "/" + path)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, tuple(params))

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        # lastrowid rather than RETURNING: RETURNING needs SQLite 3.35, older than some systems' Python.
        return int(self._db.execute(sql, tuple(params)).lastrowid or 0)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, tuple(params)).fetchall()

    def write(self, fn: Callable[[Connection], Any]) -> Any:
        """An IMMEDIATE transaction: the write lock is taken up front, so another process holding the
        file cannot make us fail half-way."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self)
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back (a full disk); the original error is the news.
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if disk_full(exc):
                raise _disk_full_error(self.where) from exc
            raise
        return out

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, version: int) -> None:
        self._db.execute(f"PRAGMA user_version = {int(version)}")

    @contextlib.contextmanager
    def _migration_transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the file's write lock: a second process opening a new store waits here.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise

    def migrate(self, migrations: Sequence[Callable[[Connection], None]]) -> None:
        try:
            super().migrate(migrations)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.where}: not a usable annotation store ({exc})") from exc

    def integrity_check(self) -> str:
        """SQLite's own check of the file: ``"ok"`` when healthy, else its findings, one per line."""
        return "\n".join(str(r[0]) for r in self._db.execute("PRAGMA integrity_check").fetchall())

    def checkpoint(self) -> bool:
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    def close(self) -> None:
        self._db.close()


# --------------------------------------------------------------------------------- PostgreSQL
# SQLite's INTEGER is 64-bit and its REAL a double; PostgreSQL's are 32-bit, which would overflow byte
# counts and round timestamps to about two minutes. INTEGER PRIMARY KEY is SQLite's auto-numbered id.
_PG_TYPES: tuple[tuple[str, str], ...] = (
    (r"\bINTEGER PRIMARY KEY\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (r"\bINTEGER\b", "BIGINT"),
    (r"\bREAL\b", "DOUBLE PRECISION"),
    (r"\bBLOB\b", "BYTEA"),
)

#: pg_advisory_xact_lock key held while migrating ("livetrai" in ASCII); advisory locks are per database.
_MIGRATION_LOCK = 0x6C69766574726169
_VERSION_TABLE = "livetrain_schema_version"  # PostgreSQL has no PRAGMA user_version
_WRITE_ATTEMPTS = 50  # a serialisation conflict is retried; only a pathological storm exhausts this


@functools.lru_cache(maxsize=256)
def _pg_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled). No SQL of the store has a
    ``?`` inside a string literal."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresConnection(Connection):
    """One PostgreSQL database through psycopg 3, in autocommit mode with explicit transactions.

    Writes run at SERIALIZABLE isolation and are retried on a serialisation failure, which gives what
    SQLite's IMMEDIATE transaction gives: two processes submitting for one image at once get versions
    n and n + 1, never the same one. Commits are durable: ``synchronous_commit`` is forced on for this
    session whatever the server's default. A lost connection is re-opened on the next call.
    """

    dialect = "postgresql"
    # The server's clock, never the client's: annotators' machines disagree about the time, and a lease
    # written by a machine running ahead would stay live too long. now() is the transaction's start, so
    # one transaction checks and writes expiries against one instant (a retried write starts afresh).
    now_sql = "CAST(EXTRACT(EPOCH FROM now()) AS DOUBLE PRECISION)"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise ImportError(
                f"a PostgreSQL store ({redact(url)}) needs psycopg 3, which is not installed: {_TEAM_EXTRA}"
            ) from exc
        self._psycopg = psycopg
        self._url = url
        self.where = redact(url)
        self._pg: Any = None
        self._connect()

    @property
    def url(self) -> str:
        return self._url

    def _connect(self) -> None:
        psycopg = self._psycopg
        options: dict[str, Any] = {"autocommit": True, "application_name": "livetrain-widgets"}
        try:
            given = psycopg.conninfo.conninfo_to_dict(self._url)
        except psycopg.Error as exc:
            hint = "; in a URL, a password with @ / ? # % or spaces is percent-encoded (%40 for @), or in ~/.pgpass"
            raise self._error(exc, "not a PostgreSQL URL libpq can read", hint) from self._cause(exc)
        if "connect_timeout" not in given:  # libpq's default is to wait forever for an absent server
            options["connect_timeout"] = 10
        try:
            pg = psycopg.connect(self._url, **options)
        except psycopg.Error as exc:
            raise self._error(exc, "cannot connect to the PostgreSQL server") from self._cause(exc)
        try:
            pg.execute("SET synchronous_commit TO on")
        except BaseException:
            pg.close()
            raise
        self._pg = pg

    def _live(self) -> Any:
        """The connection, opened again if the server dropped it (a restart, a network blip)."""
        if self._pg is None or self._pg.closed:
            self._pg = None
            self._connect()
        return self._pg

    def _hide(self, text: str) -> str:
        return hide_secrets(text, self._url)

    def _error(self, exc: BaseException, what: str, hint: str = "") -> StoreError:
        """A StoreError saying ``what`` happened, with psycopg's reason (the password hidden), then ``hint``."""
        err = StoreError(f"{self.where}: {what} ({self._hide(_first_line(exc))}){hint}")
        err.sqlstate = getattr(exc, "sqlstate", None)  # type: ignore[attr-defined]  # disk_full reads it
        return err

    def _cause(self, exc: BaseException) -> BaseException | None:
        """``exc`` to chain a StoreError to, or None where psycopg's text shows the password: a traceback
        prints the cause, so it must not show the secret either."""
        text = str(exc)
        return exc if self._hide(text) == text else None

    def _fail(self, exc: BaseException, consequence: str) -> NoReturn:
        """Raise what psycopg's ``exc`` means here: a StoreError for a full disk or a lost connection;
        psycopg's own error otherwise, unless its text shows the password (then a StoreError without it)."""
        err = self._lost(exc, consequence)
        if err is None:
            if self._cause(exc) is exc:
                raise exc
            err = self._error(exc, "the PostgreSQL server refused this")
        raise err from self._cause(exc)

    def _lost(self, exc: BaseException, consequence: str) -> StoreError | None:
        """The StoreError for a failure that is a full disk or a lost connection, else None."""
        if disk_full(exc):  # SQLSTATE 53100 on the server's side
            return StoreError(
                f"{self.where}: the database server's disk is full, so this change was not saved; everything "
                "saved before is safe. Free some space on the server and try again."
            )
        if self._pg is not None and self._pg.closed:
            return StoreError(
                f"{self.where}: lost the connection to the PostgreSQL server ({self._hide(_first_line(exc))}); "
                f"{consequence}. The store reconnects on the next call."
            )
        return None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        # No params: the text goes as is (psycopg reads % only when there are parameters).
        if params:
            return self._pg.execute(_pg_sql(sql), tuple(params))
        return self._pg.execute(sql)

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self.execute(sql + " RETURNING id", params).fetchone()[0])

    def _ddl(self, ddl: str) -> str:
        for pattern, replacement in _PG_TYPES:
            ddl = re.sub(pattern, replacement, ddl)
        return ddl

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        pg = self._live()
        try:
            return pg.execute(_pg_sql(sql), tuple(params)).fetchall() if params else pg.execute(sql).fetchall()
        except self._psycopg.Error as exc:
            self._fail(exc, "nothing was read")

    def write(self, fn: Callable[[Connection], Any]) -> Any:
        errors = self._psycopg.errors
        for attempt in range(_WRITE_ATTEMPTS):
            pg = self._live()
            committing = False
            try:
                pg.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
                try:
                    out = fn(self)
                    committing = True
                    pg.execute("COMMIT")
                except BaseException:
                    self._rollback(pg)
                    raise
            except (errors.SerializationFailure, errors.DeadlockDetected):
                # Another writer got there first; nothing of ours was committed. Back off a little, at
                # random so that the two do not collide again in step.
                time.sleep(random.uniform(0, min(0.2, 0.002 * 2**attempt)))
                continue
            except self._psycopg.Error as exc:
                consequence = (
                    "this change may or may not have been saved (the commit was under way): look before "
                    "repeating it" if committing else "this change was not saved"
                )
                self._fail(exc, consequence)
            return out
        raise StoreError(
            f"{self.where}: this change was not saved: other writers kept conflicting with it "
            f"({_WRITE_ATTEMPTS} attempts); try again"
        )

    def schema_version(self) -> int:
        exists = self.query("SELECT to_regclass(?) IS NOT NULL", (_VERSION_TABLE,))[0][0]
        if not exists:
            return 0
        return int(self.query(f"SELECT COALESCE(MAX(version), 0) FROM {_VERSION_TABLE}")[0][0])

    def set_schema_version(self, version: int) -> None:
        self.execute(f"UPDATE {_VERSION_TABLE} SET version = ?", (int(version),))

    @contextlib.contextmanager
    def _migration_transaction(self) -> Iterator[None]:
        pg = self._live()
        # READ COMMITTED, not SERIALIZABLE: each statement after the lock must see what a process that
        # held the lock before us committed (its tables, its version).
        pg.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        try:
            pg.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            # Under the lock, so two processes opening a new database do not both create it. PostgreSQL
            # DDL is transactional: a failed migration takes this table's creation back with it too.
            pg.execute(f"CREATE TABLE IF NOT EXISTS {_VERSION_TABLE} (version INTEGER NOT NULL)")
            pg.execute(
                f"INSERT INTO {_VERSION_TABLE} (version) SELECT 0 "
                f"WHERE NOT EXISTS (SELECT 1 FROM {_VERSION_TABLE})"
            )
            yield
            pg.execute("COMMIT")
        except BaseException:
            self._rollback(pg)
            raise

    def _rollback(self, pg: Any) -> None:
        """Undo the open transaction after a failure; the failure is the news, so a connection that is
        gone (or a ROLLBACK that fails too) is left to the next call's reconnect."""
        if not pg.closed:
            with contextlib.suppress(self._psycopg.Error):
                pg.execute("ROLLBACK")

    def migrate(self, migrations: Sequence[Callable[[Connection], None]]) -> None:
        try:
            super().migrate(migrations)
        except self._psycopg.Error as exc:
            lost = self._lost(exc, "the store was not opened")
            raise (lost or self._error(exc, "not a usable annotation store")) from self._cause(exc)

    def integrity_check(self) -> str:
        """``"ok"`` when every table of the store reads back whole, else one finding per table.

        PostgreSQL has no ``PRAGMA integrity_check``; reading every row makes the server check each page
        it reads (and its checksum, where the cluster has data checksums on). ``pg_amcheck`` on the
        server goes deeper.
        """
        tables = self.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
        findings = []
        for (table,) in tables:
            try:
                self.query(f'SELECT count(*) FROM "{table}"')
            except self._psycopg.DatabaseError as exc:
                findings.append(f"{table}: {self._hide(_first_line(exc))}")
        return "\n".join(findings) or "ok"

    def checkpoint(self) -> bool:
        """Nothing to do: the server owns its write-ahead log, and a committed change is already durable
        there. (To copy a PostgreSQL store, use ``pg_dump``.)"""
        self._live()
        return True

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
