"""The annotation store: every image, every submitted label version and every shown prediction, in
SQLite (embedded, the default) or PostgreSQL (one server a team shares), selected by the location.

Labels are what a person spent their time on, so a submission is durable the moment :meth:`submit`
returns: SQLite runs a WAL journal with ``synchronous=FULL`` (the commit fsyncs the log), PostgreSQL
commits with ``synchronous_commit`` on, so a killed kernel or a power cut loses nothing that was
acknowledged. Nothing is overwritten: each submit adds a version, which keeps the history the live
evaluator and an audit need (which pre-label was accepted, edited or ignored).

One connection serves all threads (the session calls in from the event loop and from the training
worker); a re-entrant lock serialises its use, which is simpler and faster than a connection per
thread for this tiny write rate. The engine-specific part (opening, transactions, the schema version,
errors) is in :mod:`._sql`; this module holds the schema and the queries, written once for both.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._sql import Connection, StoreError, connect, redact
from .annotation import Annotation, AnnotationError

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SOURCES",
    "AnnotationStore",
    "AnnotationVersion",
    "Connection",
    "ImageRecord",
    "Lease",
    "LeaseLost",
    "StoreError",
    "StoredPrediction",
]

#: Where an annotation came from: drawn by hand, a pre-label accepted as is, a pre-label corrected,
#: or read from a label file.
SOURCES: tuple[str, ...] = ("manual", "prelabel_accepted", "prelabel_edited", "imported")


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: str
    name: str
    width: int
    height: int
    sha256: str
    nbytes: int
    added_at: float


@dataclass(frozen=True)
class AnnotationVersion:
    version: int
    annotation: Annotation
    source: str
    user: str | None
    created_at: float
    prediction_id: int | None


@dataclass(frozen=True)
class StoredPrediction:
    id: int
    annotation: Annotation
    model_step: int
    shown: bool
    created_at: float


@dataclass(frozen=True)
class Lease:
    """One annotator's claim on one image, from :meth:`AnnotationStore.lease_next`.

    Times are the database's clock (seconds since the epoch), not this machine's: compare them with each
    other, not with ``time.time()``. To keep a lease, :meth:`AnnotationStore.renew` it every ``ttl_s / 3``
    seconds or so, measured on your own monotonic clock.
    """

    image_id: int
    #: Who holds it: the annotator's name, as passed to ``lease_next``.
    holder: str
    #: Tells this lease from any later one on the same image (also by the same annotator, in another tab).
    token: str
    ttl_s: float
    acquired_at: float
    expires_at: float
    renewals: int


class LeaseLost(RuntimeError):
    """The lease is no longer this annotator's: another annotator took the image over after the lease
    expired, or the lease was released or already used for a submission. Nothing was written."""

    def __init__(self, message: str, *, image_id: int, holder: str | None) -> None:
        super().__init__(message)
        self.image_id = image_id
        #: Who holds the image now (None when nobody does).
        self.holder = holder


# ------------------------------------------------------------------------------------------ schema
# Written once for both engines: SQLite's type names, which the PostgreSQL connection maps to 64-bit
# ones (``Connection.script``). JSON columns are declared TEXT on purpose: a column typed "JSON" gets
# NUMERIC affinity in SQLite, which would silently turn a stored JSON text like "5" into a number.
# ``user`` is a reserved word in PostgreSQL, so it is quoted wherever it appears (the column's name
# stays ``user``, and SQLite files keep their format).
def _schema_v1(db: Connection) -> None:
    db.script(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,
            name TEXT NOT NULL,
            width INTEGER NOT NULL CHECK (width > 0),
            height INTEGER NOT NULL CHECK (height > 0),
            sha256 TEXT NOT NULL,
            nbytes INTEGER NOT NULL,
            added_at REAL NOT NULL,
            UNIQUE (path, sha256)
        );
        CREATE INDEX images_name ON images (name);
        CREATE TABLE predictions (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images (id),
            data TEXT NOT NULL,
            model_step INTEGER NOT NULL,
            shown INTEGER NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX predictions_image ON predictions (image_id, id);
        CREATE TABLE annotations (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images (id),
            version INTEGER NOT NULL,
            data TEXT NOT NULL,
            source TEXT NOT NULL
                CHECK (source IN ('manual', 'prelabel_accepted', 'prelabel_edited', 'imported')),
            "user" TEXT,
            created_at REAL NOT NULL,
            prediction_id INTEGER REFERENCES predictions (id),
            UNIQUE (image_id, version)
        );
        """
    )


def _schema_v2_leases(db: Connection) -> None:
    """The work queue of a team: at most one lease per image (the key), replaced when another annotator
    takes over an expired one, deleted on release or on the submission it was for. Times are the
    database's clock (``Connection.now_sql``)."""
    db.script(
        """
        CREATE TABLE leases (
            image_id INTEGER NOT NULL PRIMARY KEY REFERENCES images (id),
            holder TEXT NOT NULL,
            token TEXT NOT NULL,
            ttl_s REAL NOT NULL CHECK (ttl_s > 0),
            acquired_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            renewals INTEGER NOT NULL DEFAULT 0
        );
        """
    )


#: Migration i brings a store from schema version i to i + 1, on either engine. Append, never edit,
#: when the schema grows; DDL goes through ``db.script`` (SQLite's type names, mapped for PostgreSQL).
MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_schema_v1, _schema_v2_leases)
SCHEMA_VERSION = len(MIGRATIONS)


def _text(what: str, value: str) -> str:
    # PostgreSQL's TEXT cannot hold NUL; refused on both engines so that they accept the same data.
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters: {value!r}")
    return value


def _lease_request(annotator: str, ttl_s: float) -> tuple[str, float]:
    """The annotator's name and the lease's time to live, checked (ValueError says what is wrong)."""
    holder = _text("an annotator", annotator)
    if not holder:
        raise ValueError("the annotator must be named (a non-empty string)")
    ttl = float(ttl_s)
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
    return holder, ttl


def _dumps(value: Any) -> str:
    # allow_nan=False: NaN is not JSON, and a stored NaN would poison every later read.
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


class AnnotationStore:
    """Images, label versions and predictions of one project, in one SQLite file or PostgreSQL database."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open the store at ``path``, creating or migrating its schema as needed.

        ``path`` is a file path (SQLite, the default), ``sqlite:///abs/path/labels.sqlite``, or
        ``postgresql://user@host:port/dbname`` (``postgres://`` too; any libpq parameters), which needs
        psycopg 3: ``pip install 'livetrain-widgets[team]'``. Raises ValueError for another URL scheme.
        """
        self._lock = threading.RLock()
        db = connect(path)
        try:
            db.migrate(MIGRATIONS)
        except BaseException:
            db.close()
            raise
        self._db: Connection | None = db
        #: The SQLite file, or None for a PostgreSQL store.
        self.path: Path | None = db.path
        #: ``"sqlite"`` or ``"postgresql"``.
        self.dialect: str = db.dialect
        self._where = db.where

    @property
    def url(self) -> str:
        """A location that opens this store again, e.g. from another process. It holds the password if
        the location given did: for messages, use :attr:`where`."""
        return self._conn().url

    @property
    def where(self) -> str:
        """Where the data is, for messages and logs: the file path, or the URL without its password."""
        return self._where

    # ----------------------------------------------------------------------------------- plumbing
    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AnnotationStore({str(self.path) if self.path is not None else redact(self._where)!r})"

    def _conn(self) -> Connection:
        if self._db is None:
            raise StoreError(f"{self._where}: the store is closed")
        return self._db

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn().query(sql, params)

    def _write(self, fn: Callable[[Connection], Any]) -> Any:
        """Run ``fn`` in one write transaction, committed before returning: SQLite's IMMEDIATE
        transaction, PostgreSQL's SERIALIZABLE one (retried when another writer conflicts)."""
        with self._lock:
            return self._conn().write(fn)

    # --------------------------------------------------------------------------------------- meta
    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,)) if "\x00" not in key else []
        if not rows:
            return default
        try:
            return json.loads(rows[0][0])
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{self._where}: stored value of meta key {key!r} is not valid JSON") from exc

    def set_meta(self, key: str, value: Any) -> None:
        self.set_metas({key: value})

    def set_metas(self, values: dict[str, Any]) -> None:
        """Set several meta keys in one transaction: all of them are stored, or none (a project's task and
        classes: a process killed between two separate writes left a task without classes)."""
        rows = []
        for key, value in values.items():
            _text("a meta key", key)
            try:
                rows.append((key, _dumps(value)))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"meta value for {key!r} must be JSON-serialisable ({exc})") from exc

        def upsert(db: Connection) -> None:
            for row in rows:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    row,
                )

        self._write(upsert)

    # ------------------------------------------------------------------------------------- images
    def add_image(
        self, path: str | os.PathLike[str], *, width: int, height: int, sha256: str, nbytes: int,
        name: str | None = None,
    ) -> int:
        """Register an image; adding the same (path, content) again returns the existing id.

        ``path`` is stored as given: pass a resolved path (``images.image_info`` returns one) so the
        same file added twice is recognised.
        """
        p = os.fspath(path)
        width, height, nbytes = int(width), int(height), int(nbytes)
        if width <= 0 or height <= 0:
            raise ValueError(f"{p}: image size must be positive, got {width}x{height}")
        if nbytes < 0:
            raise ValueError(f"{p}: nbytes must not be negative, got {nbytes}")
        label = name if name is not None else Path(p).name
        for what, text in (("an image path", p), ("an image name", label), ("an image hash", sha256)):
            _text(what, text)

        def insert(db: Connection) -> int:
            row = db.execute(
                "SELECT id, width, height FROM images WHERE path = ? AND sha256 = ?", (p, sha256)
            ).fetchone()
            if row is not None:
                return int(row[0])
            return db.insert(
                "INSERT INTO images (path, name, width, height, sha256, nbytes, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (p, label, width, height, sha256, nbytes, time.time()),
            )

        return int(self._write(insert))

    _IMAGE_COLS = "id, path, name, width, height, sha256, nbytes, added_at"

    def image(self, image_id: int) -> ImageRecord:
        rows = self._query(f"SELECT {self._IMAGE_COLS} FROM images WHERE id = ?", (int(image_id),))
        if not rows:
            raise KeyError(f"no image with id {image_id} in the store {self._where}")
        return ImageRecord(*rows[0])

    def images(self) -> list[ImageRecord]:
        return [ImageRecord(*r) for r in self._query(f"SELECT {self._IMAGE_COLS} FROM images ORDER BY id")]

    def image_ids(self) -> list[int]:
        return [int(r[0]) for r in self._query("SELECT id FROM images ORDER BY id")]

    def image_count(self) -> int:
        # Not __len__: an empty store must not be falsy in `if store:`.
        return int(self._query("SELECT COUNT(*) FROM images")[0][0])

    def find_image(self, path_or_name: str | os.PathLike[str]) -> int | None:
        """Id of an image by its stored path, its resolved path, or its name (the oldest on a tie)."""
        key = os.fspath(path_or_name)
        if "\x00" in key:  # never stored (add_image refuses it), and PostgreSQL cannot even compare it
            return None
        candidates = [key]
        with contextlib.suppress(OSError, RuntimeError):
            candidates.append(str(Path(key).resolve()))
        for value in candidates:
            rows = self._query("SELECT id FROM images WHERE path = ? ORDER BY id LIMIT 1", (value,))
            if rows:
                return int(rows[0][0])
        rows = self._query("SELECT id FROM images WHERE name = ? ORDER BY id LIMIT 1", (key,))
        return int(rows[0][0]) if rows else None

    def _require_image(self, image_id: int, db: Connection | None = None) -> tuple[int, int]:
        """(width, height) of an image, read inside the write transaction ``db`` when given."""
        sql, params = "SELECT width, height FROM images WHERE id = ?", (image_id,)
        rows = db.execute(sql, params).fetchall() if db is not None else self._query(sql, params)
        if not rows:
            raise KeyError(f"no image with id {image_id} in the store {self._where}")
        return int(rows[0][0]), int(rows[0][1])

    def _check_size(self, image_id: int, size: tuple[int, int], annotation: Annotation) -> None:
        if not isinstance(annotation, Annotation):
            raise TypeError(f"expected an Annotation, got {type(annotation).__name__}")
        if (annotation.width, annotation.height) != size:
            raise AnnotationError(
                f"the annotation is for a {annotation.width}x{annotation.height} image but image "
                f"{image_id} is {size[0]}x{size[1]}"
            )

    # -------------------------------------------------------------------------------- annotations
    def submit(
        self, image_id: int, annotation: Annotation, *, source: str = "manual", user: str | None = None,
        prediction_id: int | None = None, lease: Lease | None = None,
    ) -> int:
        """Store a new label version of an image; returns its version number (1 for the first).

        The transaction is committed (and fsynced) before this returns.

        With ``lease`` (from :meth:`lease_next`, for this image), the same transaction first checks that
        the lease is still this annotator's and then releases it, so an annotator whose image was given
        to someone else cannot label it too: :class:`LeaseLost` when another annotator took the image
        over, or the lease was released or already used. A lease that merely expired, with nobody taking
        the image since, is still accepted: the annotator was slow, not replaced, and refusing would
        throw their work away for nothing. ``user`` defaults to the lease's holder. Without a lease
        (one person labeling alone) nothing about leases is looked at.
        """
        if source not in SOURCES:
            raise ValueError(f"unknown annotation source {source!r}; expected one of {SOURCES}")
        image_id = int(image_id)
        if lease is not None:
            if lease.image_id != image_id:
                raise ValueError(f"the lease is for image {lease.image_id}, not for image {image_id}")
            if user is None:
                user = lease.holder
        if user is not None:
            _text("user", user)
        data = _dumps(annotation.to_json()) if isinstance(annotation, Annotation) else None

        def insert(db: Connection) -> int:
            self._check_size(image_id, self._require_image(image_id, db), annotation)
            if lease is not None:
                self._check_held(db, lease, "submit for")
                db.execute("DELETE FROM leases WHERE image_id = ? AND token = ?", (image_id, lease.token))
            if prediction_id is not None:
                row = db.execute(
                    "SELECT image_id FROM predictions WHERE id = ?", (int(prediction_id),)
                ).fetchone()
                if row is None:
                    raise KeyError(f"no prediction with id {prediction_id} in the store {self._where}")
                if int(row[0]) != image_id:
                    raise ValueError(
                        f"prediction {prediction_id} belongs to image {row[0]}, not to image {image_id}"
                    )
            version = db.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM annotations WHERE image_id = ?", (image_id,)
            ).fetchone()[0]
            db.execute(
                'INSERT INTO annotations (image_id, version, data, source, "user", created_at, prediction_id)'
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (image_id, version, data, source, user, time.time(),
                 None if prediction_id is None else int(prediction_id)),
            )
            return int(version)

        return int(self._write(insert))

    # ------------------------------------------------------------------------------------- leases
    # A team's work queue. Each step that decides who holds an image (lease, take over, renew, submit)
    # is one write transaction, so two annotators asking at once cannot both get one image: SQLite's
    # IMMEDIATE transaction runs them one after the other, PostgreSQL's SERIALIZABLE one makes the
    # second retry (``_write``) and see the first one's lease. One SQL for both engines; ``SELECT ...
    # FOR UPDATE SKIP LOCKED`` would spare PostgreSQL the retries, but SQLite has no row locks, and a few
    # annotators asking every few seconds conflict too rarely for a retry to cost anything.
    _LEASE_COLS = "image_id, holder, token, ttl_s, acquired_at, expires_at, renewals"

    @staticmethod
    def _lease(row: tuple[Any, ...]) -> Lease:
        i, holder, token, ttl, acquired, expires, renewals = row
        return Lease(int(i), holder, token, float(ttl), float(acquired), float(expires), int(renewals))

    def lease_next(
        self, annotator: str, ttl_s: float, *, after: int | None = None, skip: Iterable[int] = (),
    ) -> Lease | None:
        """Lease the next image to label: the first unlabeled image, in the project's order (image ids,
        as ``LiveSession.image_ids``), that nobody holds a live lease on; None when there is none now
        (an image comes back when its lease expires or is released).

        ``after``: start after this image, wrapping around (an annotator moving forward); ``skip``: images
        not to offer (ones this annotator passed over). An expired lease counts as free and is taken over.
        The lease lives ``ttl_s`` seconds of the database's clock unless renewed (:meth:`renew`).
        """
        holder, ttl = _lease_request(annotator, ttl_s)
        skipped = {int(i) for i in skip}
        start = -1 if after is None else int(after)
        token = secrets.token_hex(16)

        def take(db: Connection) -> Lease | None:
            now = db.now()
            # Skipped images are dropped here rather than in SQL: a long skip list would not fit the
            # engines' limits on parameters, and only len(skipped) + 1 rows are ever needed.
            rows = db.execute(
                "SELECT id FROM images WHERE NOT EXISTS (SELECT 1 FROM annotations a WHERE a.image_id = images.id) "
                "AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.image_id = images.id AND l.expires_at > ?) "
                "ORDER BY CASE WHEN id > ? THEN 0 ELSE 1 END, id LIMIT ?",
                (now, start, len(skipped) + 1),
            ).fetchall()
            image_id = next((int(r[0]) for r in rows if int(r[0]) not in skipped), None)
            if image_id is None:
                return None
            # An expired lease of someone else's is replaced: its holder's late submission is refused.
            db.execute("DELETE FROM leases WHERE image_id = ?", (image_id,))
            # ON CONFLICT: on PostgreSQL a lease that a concurrent transaction inserted for the same image
            # then fails this one as a serialisation conflict (retried by _write), never as a unique-key
            # error; DO NOTHING with no row written is left only for a key we saw and deleted, i.e. never.
            inserted = db.execute(
                f"INSERT INTO leases ({self._LEASE_COLS}) VALUES (?, ?, ?, ?, ?, ?, 0) "
                "ON CONFLICT (image_id) DO NOTHING",
                (image_id, holder, token, ttl, now, now + ttl),
            ).rowcount
            if inserted != 1:
                raise StoreError(f"{self._where}: could not lease image {image_id} (a concurrent lease)")
            return Lease(image_id, holder, token, ttl, now, now + ttl, 0)

        result: Lease | None = self._write(take)
        return result

    def lease_image(self, image_id: int, annotator: str, ttl_s: float) -> Lease:
        """Lease one given image (an annotator opening it, labeled or not): granted unless another
        annotator holds a live lease on it, which raises :class:`LeaseLost` naming them. A lease this
        annotator already held on the image, or an expired one of anybody's, is replaced."""
        holder, ttl = _lease_request(annotator, ttl_s)
        image_id = int(image_id)
        token = secrets.token_hex(16)

        def take(db: Connection) -> Lease:
            self._require_image(image_id, db)
            now = db.now()
            row = db.execute("SELECT holder, expires_at FROM leases WHERE image_id = ?", (image_id,)).fetchone()
            if row is not None and row[0] != holder and float(row[1]) > now:
                raise LeaseLost(f"{row[0]!r} is labeling image {image_id} now", image_id=image_id, holder=row[0])
            db.execute("DELETE FROM leases WHERE image_id = ?", (image_id,))
            db.execute(
                f"INSERT INTO leases ({self._LEASE_COLS}) VALUES (?, ?, ?, ?, ?, ?, 0)",
                (image_id, holder, token, ttl, now, now + ttl),
            )
            return Lease(image_id, holder, token, ttl, now, now + ttl, 0)

        result: Lease = self._write(take)
        return result

    def _check_held(self, db: Connection, lease: Lease, doing: str) -> None:
        """Raise LeaseLost unless ``lease`` is the image's lease (live, or expired with nobody taking it
        over since); called inside the write transaction that acts on it."""
        row = db.execute(
            "SELECT holder, token, expires_at FROM leases WHERE image_id = ?", (lease.image_id,)
        ).fetchone()
        if row is not None and row[1] == lease.token:
            return
        if row is None:
            why, holder = "the lease was released or already used for a submission", None
        else:
            why, holder = f"{row[0]!r} holds the image now (this lease had expired or been released)", row[0]
        raise LeaseLost(
            f"cannot {doing} image {lease.image_id} under {lease.holder!r}'s lease: {why}",
            image_id=lease.image_id, holder=holder,
        )

    def renew(self, lease: Lease, ttl_s: float | None = None) -> Lease:
        """Keep a lease for ``ttl_s`` more seconds (default: its own ``ttl_s``) from now: the heartbeat of
        an annotator still at work. Returns the renewed lease; :class:`LeaseLost` when another annotator
        took the image over or the lease was released. A lease that expired with nobody taking the image
        is renewed, as a submission under it is accepted (see :meth:`submit`)."""
        ttl = lease.ttl_s if ttl_s is None else float(ttl_s)
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")

        def extend(db: Connection) -> Lease:
            self._check_held(db, lease, "renew")
            now = db.now()
            db.execute(
                "UPDATE leases SET ttl_s = ?, expires_at = ?, renewals = renewals + 1 "
                "WHERE image_id = ? AND token = ?",
                (ttl, now + ttl, lease.image_id, lease.token),
            )
            row = db.execute(f"SELECT {self._LEASE_COLS} FROM leases WHERE image_id = ?", (lease.image_id,))
            return self._lease(row.fetchone())

        result: Lease = self._write(extend)
        return result

    def release(self, lease: Lease) -> bool:
        """Give the image back to the queue (an annotator leaving it unlabeled). False when the lease was
        no longer held (released, used, or taken over): releasing twice is harmless."""

        def delete(db: Connection) -> bool:
            cursor = db.execute(
                "DELETE FROM leases WHERE image_id = ? AND token = ?", (lease.image_id, lease.token)
            )
            return int(cursor.rowcount) > 0

        return bool(self._write(delete))

    def lease_of(self, image_id: int) -> Lease | None:
        """The live lease on an image (who is labeling it now), or None."""
        with self._lock:
            db = self._conn()
            rows = db.query(
                f"SELECT {self._LEASE_COLS} FROM leases WHERE image_id = ? AND expires_at > {db.now_sql}",
                (int(image_id),),
            )
        return self._lease(rows[0]) if rows else None

    def active_leases(self) -> list[Lease]:
        """Every live lease, oldest first: who is labeling what, for a team's view."""
        with self._lock:
            db = self._conn()
            rows = db.query(
                f"SELECT {self._LEASE_COLS} FROM leases WHERE expires_at > {db.now_sql} "
                "ORDER BY acquired_at, image_id"
            )
        return [self._lease(r) for r in rows]

    def _decode(self, image_id: int, what: str, text: Any) -> Annotation:
        """Stored JSON -> Annotation, with damage reported against the image instead of deep inside."""
        try:
            return Annotation.from_json(json.loads(text))
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise StoreError(
                f"{self._where}: the stored {what} of image {image_id} is damaged and cannot be read ({exc})"
            ) from exc

    def annotation(self, image_id: int) -> Annotation | None:
        """The latest label version of an image, or None if it has none (KeyError if no such image)."""
        with self._lock:
            self._require_image(int(image_id))
            rows = self._query(
                "SELECT version, data FROM annotations WHERE image_id = ? ORDER BY version DESC LIMIT 1",
                (int(image_id),),
            )
        if not rows:
            return None
        return self._decode(int(image_id), f"annotation (version {rows[0][0]})", rows[0][1])

    def _version(self, image_id: int, row: tuple[Any, ...]) -> AnnotationVersion:
        """A row (version, data, source, user, created_at, prediction_id) as an AnnotationVersion."""
        v, d, src, user, t, p = row
        return AnnotationVersion(
            int(v), self._decode(image_id, f"annotation (version {v})", d), src, user, float(t),
            None if p is None else int(p),
        )

    def annotation_history(self, image_id: int) -> list[AnnotationVersion]:
        """All label versions of an image, oldest first."""
        with self._lock:
            self._require_image(int(image_id))
            rows = self._query(
                'SELECT version, data, source, "user", created_at, prediction_id FROM annotations '
                "WHERE image_id = ? ORDER BY version",
                (int(image_id),),
            )
        return [self._version(int(image_id), row) for row in rows]

    def versions_since(self, created_at: float) -> list[tuple[int, AnnotationVersion]]:
        """(image id, version) of every label version written after ``created_at``, in commit order.

        A resumed session uses it to replay what happened after its last checkpoint.
        """
        rows = self._query(
            'SELECT image_id, version, data, source, "user", created_at, prediction_id FROM annotations '
            "WHERE created_at > ? ORDER BY id",
            (float(created_at),),
        )
        return [(int(row[0]), self._version(int(row[0]), row[1:])) for row in rows]

    def version_rows_after(self, row_id: int) -> list[tuple[int, int, int]]:
        """(row id, image id, version) of every label version whose row id is above ``row_id``, by row id,
        without the labels themselves: how a trainer follows what other processes submit, cheaply. Row
        ids grow with every version but are handed out before commit, so on PostgreSQL a lower id can
        become visible after a higher one: a follower re-reads a window below the highest id it saw."""
        rows = self._query(
            "SELECT id, image_id, version FROM annotations WHERE id > ? ORDER BY id", (int(row_id),)
        )
        return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    def labeled_ids(self) -> list[int]:
        """Images with at least one label version, in the order they were first submitted.

        Ordered by the row id of the first version (commit order) rather than by wall-clock time, so a
        clock step (NTP, DST on a badly set machine) cannot reorder the "newest samples" a sampler sees.
        """
        rows = self._query("SELECT image_id FROM annotations GROUP BY image_id ORDER BY MIN(id)")
        return [int(r[0]) for r in rows]

    def labeled_count(self) -> int:
        return int(self._query("SELECT COUNT(DISTINCT image_id) FROM annotations")[0][0])

    def unlabeled_ids(self) -> list[int]:
        rows = self._query(
            "SELECT id FROM images WHERE NOT EXISTS "
            "(SELECT 1 FROM annotations a WHERE a.image_id = images.id) ORDER BY id"
        )
        return [int(r[0]) for r in rows]

    def labeled_items(self) -> Iterator[tuple[ImageRecord, Annotation]]:
        """(image, latest annotation) pairs in first-submission order: what ``export_labels`` takes."""
        for image_id in self.labeled_ids():
            ann = self.annotation(image_id)
            if ann is not None:
                yield self.image(image_id), ann

    # -------------------------------------------------------------------------------- predictions
    def save_prediction(
        self, image_id: int, annotation: Annotation, *, model_step: int, shown: bool = True
    ) -> int:
        """Keep what the model proposed for an image (so its quality can be scored on submit)."""
        image_id = int(image_id)
        data = _dumps(annotation.to_json()) if isinstance(annotation, Annotation) else None

        def insert(db: Connection) -> int:
            self._check_size(image_id, self._require_image(image_id, db), annotation)
            return db.insert(
                "INSERT INTO predictions (image_id, data, model_step, shown, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (image_id, data, int(model_step), int(bool(shown)), time.time()),
            )

        return int(self._write(insert))

    def prediction(self, image_id: int) -> StoredPrediction | None:
        """The latest stored prediction of an image, or None."""
        with self._lock:
            self._require_image(int(image_id))
            rows = self._query(
                "SELECT id, data, model_step, shown, created_at FROM predictions "
                "WHERE image_id = ? ORDER BY id DESC LIMIT 1",
                (int(image_id),),
            )
        return self._prediction(int(image_id), rows[0]) if rows else None

    def _prediction(self, image_id: int, row: tuple[Any, ...]) -> StoredPrediction:
        """A row (id, data, model_step, shown, created_at) as a StoredPrediction."""
        pid, data, step, shown, created = row
        return StoredPrediction(
            int(pid), self._decode(image_id, f"prediction {pid}", data), int(step), bool(shown), float(created)
        )

    def prediction_by_id(self, prediction_id: int) -> StoredPrediction:
        """One stored prediction by its id (KeyError if there is none)."""
        rows = self._query(
            "SELECT id, image_id, data, model_step, shown, created_at FROM predictions WHERE id = ?",
            (int(prediction_id),),
        )
        if not rows:
            raise KeyError(f"no prediction with id {prediction_id}")
        pid, image_id, *rest = rows[0]
        return self._prediction(int(image_id), (pid, *rest))

    # ------------------------------------------------------------------------------- maintenance
    def integrity_check(self) -> str:
        """``"ok"`` when healthy, else the findings, one per line.

        SQLite: its own check of the file (``PRAGMA integrity_check``). PostgreSQL, which has none:
        every table is read through, so the server checks each page (and its checksum where the cluster
        has them); ``pg_amcheck`` on the server goes deeper.
        """
        with self._lock:
            return self._conn().integrity_check()

    def checkpoint_wal(self) -> bool:
        """Fold the write-ahead log into the main file and truncate it (e.g. before copying the file).

        Returns False when another connection (a second process reading the store) kept it from
        finishing; nothing is lost then, the log is folded in later. On PostgreSQL the server owns its
        log and committed changes are already durable there: nothing to do, returns True (copy such a
        store with ``pg_dump``).
        """
        with self._lock:
            return self._conn().checkpoint()
