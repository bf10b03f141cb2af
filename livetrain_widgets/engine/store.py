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
import os
import threading
import time
from collections.abc import Callable, Iterator
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


#: Migration i brings a store from schema version i to i + 1, on either engine. Append, never edit,
#: when the schema grows; DDL goes through ``db.script`` (SQLite's type names, mapped for PostgreSQL).
MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_schema_v1,)
SCHEMA_VERSION = len(MIGRATIONS)


def _text(what: str, value: str) -> str:
    # PostgreSQL's TEXT cannot hold NUL; refused on both engines so that they accept the same data.
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters: {value!r}")
    return value


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
        """A location that opens this store again, e.g. from another process."""
        return self._conn().url

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
        _text("a meta key", key)
        try:
            text = _dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"meta value for {key!r} must be JSON-serialisable ({exc})") from exc
        self._write(
            lambda db: db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, text),
            )
        )

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
        prediction_id: int | None = None,
    ) -> int:
        """Store a new label version of an image; returns its version number (1 for the first).

        The transaction is committed (and fsynced) before this returns.
        """
        if source not in SOURCES:
            raise ValueError(f"unknown annotation source {source!r}; expected one of {SOURCES}")
        if user is not None:
            _text("user", user)
        image_id = int(image_id)
        data = _dumps(annotation.to_json()) if isinstance(annotation, Annotation) else None

        def insert(db: Connection) -> int:
            self._check_size(image_id, self._require_image(image_id, db), annotation)
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
