"""The annotation store: API, schema versioning, damage reporting, threads and crash durability, on
both engines (SQLite and a real PostgreSQL server, see ``pg_server``), plus what is specific to
choosing the engine by URL and to several processes sharing one store."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livetrain_widgets.engine import _sql
from livetrain_widgets.engine import store as store_mod
from livetrain_widgets.engine.annotation import Annotation, AnnotationError
from livetrain_widgets.engine.store import (
    SCHEMA_VERSION,
    AnnotationStore,
    AnnotationVersion,
    ImageRecord,
    StoredPrediction,
    StoreError,
)

from .conftest import ENGINES
from .pg_server import PostgresServer

REPO = Path(__file__).resolve().parents[1]


def table_names(store: AnnotationStore) -> set[str]:
    if store.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    return {r[0] for r in store._query(sql)}


def sql(store: AnnotationStore, statement: str, params: tuple[object, ...] = ()) -> None:
    """A raw write, as damage or a tool outside the store would do it."""
    store._write(lambda db: db.execute(statement, params))


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def add(store: AnnotationStore, n: int, w: int = 64, h: int = 48) -> list[int]:
    return [
        store.add_image(f"/data/img{i}.png", width=w, height=h, sha256=f"h{i}", nbytes=100 + i)
        for i in range(n)
    ]


def det(w: int = 64, h: int = 48, k: int = 0) -> Annotation:
    return Annotation(w, h, boxes=[[1 + k, 2, 10 + k, 12.5]], labels=[k % 3])


# ------------------------------------------------------------------------------------ opening
def test_creates_parent_folder_and_sets_pragmas(tmp_project: Path) -> None:
    path = tmp_project / "deep" / "labels.sqlite"
    with AnnotationStore(path) as s:
        assert s.dialect == "sqlite" and s.path == path
        db = s._conn()
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert path.is_file()


def test_postgres_session_settings_and_types(postgres_url: str) -> None:
    with AnnotationStore(postgres_url) as s:
        assert s.dialect == "postgresql" and s.path is None
        assert s._query("SHOW synchronous_commit") == [("on",)]  # a commit is durable when submit returns
        assert s._conn().schema_version() == SCHEMA_VERSION
        types = dict(s._query(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        ))
    # 64-bit like SQLite's INTEGER and REAL: PostgreSQL's own INTEGER and REAL are 32-bit.
    assert types["images.id"] == types["images.nbytes"] == types["annotations.image_id"] == "bigint"
    assert types["images.added_at"] == types["annotations.created_at"] == "double precision"
    assert types["annotations.user"] == types["annotations.data"] == "text"


def test_close_is_idempotent_and_closed_store_refuses(location: str) -> None:
    s = AnnotationStore(location)
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.image_ids()


def test_refuses_a_store_from_a_newer_version(location: str) -> None:
    with AnnotationStore(location) as s:
        s._write(lambda db: db.set_schema_version(SCHEMA_VERSION + 5))
    with pytest.raises(StoreError, match="newer"):
        AnnotationStore(location)


# The first schema as the SQLite-only store wrote it (user unquoted), verbatim.
_SCHEMA_V1_BEFORE_POSTGRESQL = """
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
            user TEXT,
            created_at REAL NOT NULL,
            prediction_id INTEGER REFERENCES predictions (id),
            UNIQUE (image_id, version)
        );
"""


def old_sqlite_project(folder: Path, images: int = 1) -> Path:
    """A labels file as the SQLite-only store wrote it (schema version 1): images 7, 8, ... and one
    label on image 7 by 'ann' at time 2.5."""
    path = folder / "labels.sqlite"
    folder.mkdir(exist_ok=True)
    db = sqlite3.connect(path)
    with db:
        db.executescript(_SCHEMA_V1_BEFORE_POSTGRESQL)
        for i in range(images):
            db.execute("INSERT INTO images VALUES (?, ?, ?, 64, 48, ?, 1, 1.5)",
                       (7 + i, f"/{i}.png", f"{i}.png", f"h{i}"))
        db.execute("INSERT INTO annotations VALUES (1, 7, 1, ?, 'manual', 'ann', 2.5, NULL)",
                   (json.dumps(det().to_json()),))
        db.execute("PRAGMA user_version = 1")
    db.close()
    return path


def test_a_sqlite_store_from_before_postgresql_opens_as_before(tmp_project: Path) -> None:
    """A file whose schema was written before the DDL quoted ``"user"``: the same columns, read alike."""
    path = old_sqlite_project(tmp_project)
    with AnnotationStore(path) as s:
        (v1,) = s.annotation_history(7)
        assert (v1.version, v1.user, v1.created_at) == (1, "ann", 2.5)
        assert s.submit(7, det(k=1), user="bob") == 2
        assert [v.user for v in s.annotation_history(7)] == ["ann", "bob"]
        assert s.integrity_check() == "ok"


def test_a_new_sqlite_file_has_the_same_format_as_before(tmp_project: Path) -> None:
    tmp_project.mkdir()
    old = sqlite3.connect(tmp_project / "old.sqlite")
    old.executescript(_SCHEMA_V1_BEFORE_POSTGRESQL)
    AnnotationStore(tmp_project / "new.sqlite").close()
    new = sqlite3.connect(tmp_project / "new.sqlite")
    try:
        def layout(db: sqlite3.Connection) -> dict[str, object]:
            names = [r[0] for r in db.execute("SELECT name FROM sqlite_master ORDER BY name")]
            return {n: db.execute(f"PRAGMA table_info({n})").fetchall() for n in names}

        # Version 1's tables keep their exact layout; later migrations only add tables.
        new_layout, old_layout = layout(new), layout(old)
        assert {n: new_layout[n] for n in old_layout} == old_layout
        assert set(new_layout) - set(old_layout) == {"leases"}
        assert new.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        old.close()
        new.close()


def test_migration_runs_new_steps_once(location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = location
    with AnnotationStore(path) as s:
        (i,) = add(s, 1)
        s.submit(i, det())
    calls = []

    def v2(db: store_mod.Connection) -> None:
        calls.append(1)
        db.execute("ALTER TABLE images ADD COLUMN note TEXT")

    monkeypatch.setattr(store_mod, "MIGRATIONS", (*store_mod.MIGRATIONS, v2))
    with AnnotationStore(path) as s:
        assert s._conn().schema_version() == SCHEMA_VERSION + 1
        assert s.annotation(i) is not None  # old data kept
        assert s._query("SELECT note FROM images") == [(None,)]
    with AnnotationStore(path):
        pass
    assert calls == [1]


def test_a_failed_migration_rolls_back(location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = location
    AnnotationStore(path).close()

    def broken(db: store_mod.Connection) -> None:
        db.script("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    monkeypatch.setattr(store_mod, "MIGRATIONS", (*store_mod.MIGRATIONS, broken))
    with pytest.raises(RuntimeError, match="boom"):
        AnnotationStore(path)
    monkeypatch.undo()
    with AnnotationStore(path) as s:
        assert s._conn().schema_version() == SCHEMA_VERSION
        assert "half_done" not in table_names(s) and "images" in table_names(s)


def test_a_new_database_gets_the_whole_schema(location: str) -> None:
    with AnnotationStore(location) as s:
        assert s._conn().schema_version() == SCHEMA_VERSION
        assert {"meta", "images", "predictions", "annotations"} <= table_names(s)
        # The widths the schema promises on both engines: byte counts past 2 GiB, steps past 2**31, and
        # timestamps to well under a second (a 32-bit REAL would round today's to about two minutes).
        i = s.add_image("/big.tif", width=10, height=10, sha256="b", nbytes=5 << 30)
        p = s.save_prediction(i, Annotation(10, 10), model_step=3 << 40)
        assert s.image(i).nbytes == 5 << 30 and s.prediction_by_id(p).model_step == 3 << 40
        assert abs(s.image(i).added_at - time.time()) < 5 and s.image(i).added_at % 1 != 0


def test_not_a_database(tmp_project: Path) -> None:
    path = tmp_project / "junk.sqlite"
    tmp_project.mkdir()
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match=r"junk\.sqlite"):
        AnnotationStore(path)


# --------------------------------------------------------------------------------------- meta
@pytest.mark.parametrize("value", [5, 1.0, "5", "text", None, True, [1, "a"], {"classes": ["a"], "n": 2}])
def test_meta_round_trip(store: AnnotationStore, value: object) -> None:
    store.set_meta("k", value)
    got = store.get_meta("k", default="missing")
    assert got == value and type(got) is type(value)


def test_meta_default_overwrite_and_bad_values(store: AnnotationStore) -> None:
    assert store.get_meta("absent") is None
    assert store.get_meta("absent", 7) == 7
    store.set_meta("task", "detection")
    store.set_meta("task", "segmentation")
    assert store.get_meta("task") == "segmentation"
    with pytest.raises(ValueError, match="JSON"):
        store.set_meta("x", float("nan"))
    with pytest.raises(ValueError, match="JSON"):
        store.set_meta("x", object())


# ------------------------------------------------------------------------------------- images
def test_add_image_and_lookups(store: AnnotationStore, tmp_path: Path) -> None:
    a = store.add_image("/data/a.png", width=10, height=20, sha256="x", nbytes=5)
    b = store.add_image("/data/sub/b.jpg", width=30, height=40, sha256="y", nbytes=6, name="custom.jpg")
    assert store.add_image("/data/a.png", width=10, height=20, sha256="x", nbytes=5) == a  # same file
    c = store.add_image("/data/a.png", width=10, height=20, sha256="changed", nbytes=5)  # edited file
    assert len({a, b, c}) == 3
    rec = store.image(a)
    assert isinstance(rec, ImageRecord)
    assert (rec.id, rec.path, rec.name, rec.width, rec.height, rec.sha256, rec.nbytes) == (
        a, "/data/a.png", "a.png", 10, 20, "x", 5,
    )
    assert rec.added_at > 0
    with pytest.raises(AttributeError):
        rec.width = 3  # type: ignore[misc]
    assert [r.id for r in store.images()] == [a, b, c] == store.image_ids()
    assert store.image_count() == 3
    assert store.find_image("/data/a.png") == a
    assert store.find_image("custom.jpg") == b
    assert store.find_image("a.png") == a  # oldest on a tie
    assert store.find_image("nope.png") is None
    # A relative path finds the image stored under its resolved form.
    real = tmp_path / "r.png"
    d = store.add_image(real, width=1, height=1, sha256="z", nbytes=0)
    assert store.find_image(os.path.relpath(real)) == d


def test_unknown_image_and_bad_sizes(store: AnnotationStore) -> None:
    with pytest.raises(KeyError, match="no image with id 42"):
        store.image(42)
    with pytest.raises(KeyError, match="42"):
        store.annotation(42)
    with pytest.raises(KeyError, match="42"):
        store.submit(42, det())
    with pytest.raises(ValueError, match="positive"):
        store.add_image("/x.png", width=0, height=3, sha256="s", nbytes=1)
    with pytest.raises(ValueError, match="nbytes"):
        store.add_image("/x.png", width=3, height=3, sha256="s", nbytes=-1)


# -------------------------------------------------------------------------------- annotations
def test_submit_versions_history_and_order(store: AnnotationStore) -> None:
    i0, i1, i2, i3 = add(store, 4)
    assert store.annotation(i0) is None and store.annotation_history(i0) == []
    assert store.labeled_ids() == [] and store.labeled_count() == 0
    assert store.submit(i2, det(k=0)) == 1
    assert store.submit(i0, det(k=1), source="imported", user="ann") == 1
    assert store.submit(i2, det(k=2), source="prelabel_edited") == 2
    ann = store.annotation(i2)
    assert ann is not None and ann.boxes[0, 0] == 3 and ann.labels.tolist() == [2]
    hist = store.annotation_history(i2)
    assert [h.version for h in hist] == [1, 2]
    assert all(isinstance(h, AnnotationVersion) for h in hist)
    assert [h.source for h in hist] == ["manual", "prelabel_edited"]
    assert hist[0].user is None and hist[0].created_at <= hist[1].created_at
    assert hist[0].annotation.boxes[0, 0] == 1
    assert store.annotation_history(i0)[0].user == "ann"
    # Ordered by first submission: i2 came first even though it was submitted again later.
    assert store.labeled_ids() == [i2, i0]
    assert store.labeled_count() == 2
    assert store.unlabeled_ids() == [i1, i3]
    assert [(r.id, a.labels.tolist()) for r, a in store.labeled_items()] == [(i2, [2]), (i0, [1])]


def test_submit_validation(store: AnnotationStore) -> None:
    (i,) = add(store, 1)
    with pytest.raises(ValueError, match="source"):
        store.submit(i, det(), source="guessed")
    with pytest.raises(AnnotationError, match="64x48"):
        store.submit(i, det(w=65))
    with pytest.raises(TypeError, match="Annotation"):
        store.submit(i, {"width": 64})  # type: ignore[arg-type]
    assert store.annotation_history(i) == []  # nothing half-written


def test_prediction_link(store: AnnotationStore) -> None:
    i, j = add(store, 2)
    assert store.prediction(i) is None
    p1 = store.save_prediction(i, det(k=1), model_step=10, shown=False)
    p2 = store.save_prediction(i, Annotation(64, 48, [[0, 0, 5, 5]], [0], scores=[0.25]), model_step=20)
    pred = store.prediction(i)
    assert isinstance(pred, StoredPrediction)
    assert (pred.id, pred.model_step, pred.shown) == (p2, 20, True)
    assert pred.annotation.scores is not None and pred.annotation.scores[0] == pytest.approx(0.25)
    assert p1 != p2
    store.submit(i, det(), source="prelabel_accepted", prediction_id=p2)
    assert store.annotation_history(i)[0].prediction_id == p2
    with pytest.raises(ValueError, match="belongs to image"):
        store.submit(j, det(), prediction_id=p2)
    with pytest.raises(KeyError, match="prediction"):
        store.submit(i, det(), prediction_id=999)
    with pytest.raises(AnnotationError):
        store.save_prediction(i, det(w=10), model_step=1)


def test_damaged_json_names_the_image(store: AnnotationStore) -> None:
    i, j = add(store, 2)
    store.submit(i, det())
    store.save_prediction(j, det(), model_step=1)
    sql(store, "UPDATE annotations SET data = '{\"width\": 64' WHERE image_id = ?", (i,))
    sql(store, "UPDATE predictions SET data = ? WHERE image_id = ?", (json.dumps({"boxes": 1}), j))
    with pytest.raises(StoreError, match=f"image {i}"):
        store.annotation(i)
    with pytest.raises(StoreError, match=f"image {i}"):
        store.annotation_history(i)
    with pytest.raises(StoreError, match=f"prediction .* image {j}"):
        store.prediction(j)
    store.set_meta("m", 1)
    sql(store, "UPDATE meta SET value = '{' WHERE key = 'm'")
    with pytest.raises(StoreError, match="'m'"):
        store.get_meta("m")


def test_integrity_and_checkpoint(store: AnnotationStore) -> None:
    ids = add(store, 3)
    for i in ids:
        store.submit(i, det())
    assert store.integrity_check() == "ok"
    if store.dialect == "sqlite":
        wal = Path(str(store.path) + "-wal")
        assert wal.stat().st_size > 0
        assert store.checkpoint_wal() is True
        assert wal.stat().st_size == 0
    else:
        assert store.checkpoint_wal() is True  # the server owns its log: nothing to fold
    assert store.annotation(ids[0]) is not None


def test_threads_share_one_store(store: AnnotationStore) -> None:
    ids = add(store, 4)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for k in range(16):
                store.submit(ids[k % 4], det(k=t))
                store.annotation(ids[(k + t) % 4])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for i in ids:
        assert [h.version for h in store.annotation_history(i)] == list(range(1, 17))


# ---------------------------------------------------------------------------- property test
@st.composite
def annotations(draw: st.DrawFn) -> Annotation:
    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    n = draw(st.integers(0, 4))
    coord = st.floats(-5, 50, allow_nan=False, width=32)
    boxes = [[draw(coord) for _ in range(4)] for _ in range(n)]
    labels = [draw(st.integers(0, 9)) for _ in range(n)]
    scores = [draw(st.floats(0, 1, width=32)) for _ in range(n)] if draw(st.booleans()) else None
    masks = None
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**31)))
        masks = rng.random((n, h, w)) < draw(st.floats(0, 1))
    category = draw(st.none() | st.integers(0, 5))
    cat_scores = draw(st.none() | st.lists(st.floats(0, 1, width=32), min_size=1, max_size=4))
    return Annotation(w, h, boxes, labels, scores, masks, category, cat_scores)


@pytest.fixture(scope="module", params=ENGINES)
def shared_store(request: pytest.FixtureRequest) -> Iterator[AnnotationStore]:
    if request.param == "sqlite":
        with tempfile.TemporaryDirectory() as d, AnnotationStore(Path(d) / "p.sqlite") as s:
            yield s
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    with AnnotationStore(server.url(name)) as s:
        yield s
    server.drop_database(name)


# No NUL (refused on both engines, see test_nul_characters_are_refused_alike) and no lone surrogates
# (not encodable), as before.
_USER_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ann=annotations(), user=st.none() | st.text(_USER_CHARS, max_size=10))
def test_property_submit_round_trip(shared_store: AnnotationStore, ann: Annotation, user: str | None) -> None:
    n = shared_store.image_count()
    i = shared_store.add_image(f"/p/{n}.png", width=ann.width, height=ann.height, sha256=str(n), nbytes=1)
    assert shared_store.submit(i, ann, user=user) == 1
    got = shared_store.annotation(i)
    assert got is not None
    assert (got.width, got.height) == (ann.width, ann.height)
    np.testing.assert_allclose(got.boxes, ann.boxes, atol=1e-3)
    assert got.labels.tolist() == ann.labels.tolist()
    if ann.scores is None:
        assert got.scores is None
    else:
        np.testing.assert_allclose(got.scores, ann.scores, atol=1e-5)
    if ann.masks is None:
        assert got.masks is None
    else:
        assert got.masks is not None and np.array_equal(got.masks, ann.masks)
    assert got.category == ann.category
    if ann.category_scores is None:
        assert got.category_scores is None
    else:
        np.testing.assert_allclose(got.category_scores, ann.category_scores, atol=1e-6)
    assert shared_store.annotation_history(i)[0].user == user


# ------------------------------------------------------------------------------- durability
_WRITER = """
import sys
from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.store import AnnotationStore
store = AnnotationStore(sys.argv[1])
ids = [store.add_image(f"/img/{i}.png", width=64, height=48, sha256=str(i), nbytes=1) for i in range(5)]
for k in range(1_000_000):
    i = ids[k % 5]
    v = store.submit(i, Annotation(64, 48, boxes=[[k % 60, 1, k % 60 + 3, 5]], labels=[k % 3]))
    print(i, v, k, flush=True)
"""


def test_sigkill_loses_no_acknowledged_submission(location: str, tmp_project: Path) -> None:
    path = location
    env = subprocess_env()
    tmp_project.mkdir()
    err_file = tmp_project / "stderr.txt"
    with open(err_file, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, path], stdout=subprocess.PIPE, stderr=err, text=True,
            env=env, cwd=REPO,
        )
    assert proc.stdout is not None
    seen: list[tuple[int, int, int]] = []
    try:
        for line in proc.stdout:
            seen.append(tuple(int(v) for v in line.split()))  # type: ignore[arg-type]
            if len(seen) >= 150:
                break
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: it is still submitting
        seen += [tuple(int(v) for v in line.split()) for line in proc.stdout if line.strip()]  # type: ignore[misc]
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, err_file.read_text()
    assert len(seen) >= 150, err_file.read_text()
    with AnnotationStore(path) as s:
        assert s.integrity_check() == "ok"
        for image_id, version, k in seen:
            hist = s.annotation_history(image_id)
            assert len(hist) >= version
            got = hist[version - 1]
            assert got.version == version
            assert got.annotation.boxes[0].tolist() == [k % 60, 1, k % 60 + 3, 5]
            assert got.annotation.labels.tolist() == [k % 3]


# ------------------------------------------------------------------------- choosing the engine
@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("labels.sqlite", ("sqlite", Path("labels.sqlite"))),
        (Path("/p/labels.sqlite"), ("sqlite", Path("/p/labels.sqlite"))),
        ("sqlite:///abs/dir/labels.db", ("sqlite", Path("/abs/dir/labels.db"))),
        ("sqlite:////abs/dir/labels.db", ("sqlite", Path("/abs/dir/labels.db"))),  # SQLAlchemy's spelling
        ("sqlite:///abs/with%20space.db", ("sqlite", Path("/abs/with space.db"))),
        ("postgresql://ann@db.lab:5433/labels", ("postgresql", "postgresql://ann@db.lab:5433/labels")),
        ("postgres://ann@db.lab/labels?sslmode=require", ("postgresql", "postgres://ann@db.lab/labels?sslmode=require")),
        ("PostgreSQL://ann@db.lab/labels", ("postgresql", "PostgreSQL://ann@db.lab/labels")),
    ],
)
def test_locations(location: str | Path, expected: tuple[str, object]) -> None:
    assert _sql.parse_location(location) == expected


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("mysql://ann:secret@db/labels", r"unsupported store location 'mysql://ann:\*\*\*@db/labels'.*postgresql://"),
        ("http://example.com/labels.sqlite", "unsupported store location"),
        ("sqlite://otherhost/labels.db", "local file"),
        ("sqlite:///labels.db?mode=ro", "local file"),
        ("sqlite://", "names no file"),
    ],
)
def test_bad_locations_are_refused_clearly(location: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        AnnotationStore(location)
    assert "secret" not in str(info.value)


def test_a_sqlite_url_opens_the_file_a_path_opens(tmp_project: Path) -> None:
    path = tmp_project / "labels.sqlite"
    with AnnotationStore(f"sqlite://{path}") as s:
        (i,) = add(s, 1)
        s.submit(i, det())
        assert s.path == path and s.url == f"sqlite://{path}"
    with AnnotationStore(path) as s:
        assert s.labeled_ids() == [i]
        assert repr(s) == f"AnnotationStore({str(path)!r})"


def test_sqlite_never_needs_psycopg(tmp_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # any `import psycopg` now fails
    with AnnotationStore(tmp_project / "a.sqlite") as s:
        add(s, 1)
    with AnnotationStore(f"sqlite://{tmp_project / 'b.sqlite'}") as s:
        add(s, 1)


def test_a_postgresql_url_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ImportError, match=r"psycopg 3.*pip install 'livetrain-widgets\[team\]'") as info:
        AnnotationStore("postgresql://ann:secret@127.0.0.1:1/labels")
    assert "secret" not in str(info.value)


def test_nul_characters_are_refused_alike(store: AnnotationStore) -> None:
    """PostgreSQL's TEXT cannot hold NUL; both engines refuse it, so both accept the same data."""
    (i,) = add(store, 1)
    with pytest.raises(ValueError, match="NUL"):
        store.submit(i, det(), user="a\x00b")
    with pytest.raises(ValueError, match="NUL"):
        store.set_meta("k\x00", 1)
    with pytest.raises(ValueError, match="NUL"):
        store.add_image("/x\x00.png", width=1, height=1, sha256="s", nbytes=1)
    assert store.get_meta("k\x00", "absent") == "absent"
    assert store.find_image("img0\x00") is None
    assert store.annotation_history(i) == [] and store.image_count() == 1


# ---------------------------------------------------------------------- processes sharing a store
_SUBMITTER = """
import sys
from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.store import AnnotationStore
location, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with AnnotationStore(location) as store:
    ids = store.image_ids()
    print("ready", flush=True)
    sys.stdin.readline()  # all start at once, so that their transactions overlap
    for k in range(n):
        image = ids[k % len(ids)]
        box = [[worker, k % 40, worker + 3, k % 40 + 5]]
        version = store.submit(image, Annotation(64, 48, boxes=box, labels=[worker % 3]), user=f"w{worker}")
        print(image, version, k, flush=True)
"""


def _start_together(tmp_project: Path, script: str, args: list[list[str]]) -> list[tuple[int, str, str]]:
    """Run ``script`` once per argument list, release them together (one line on stdin each), and
    return (returncode, stdout, stderr) per process."""
    tmp_project.mkdir(exist_ok=True)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, *a], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=subprocess_env(), cwd=REPO)
        for a in args
    ]
    try:
        for p in procs:  # wait until each has imported and opened the store
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.communicate()[1]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=240)
            results.append((p.returncode, out, err))
        return results
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)


def test_processes_submitting_for_the_same_images_never_collide(location: str, tmp_project: Path) -> None:
    """Three processes, three connections, two images: every submission gets its own version number,
    numbers are gapless per image, and each acknowledged version holds what its writer sent."""
    with AnnotationStore(location) as s:
        images = add(s, 2)
    workers, n = 3, 30
    results = _start_together(tmp_project, _SUBMITTER, [[location, str(w), str(n)] for w in range(workers)])
    acked: dict[tuple[int, int], tuple[int, int]] = {}  # (image, version) -> (worker, k)
    for worker, (code, out, err) in enumerate(results):
        assert code == 0, err[-3000:]
        lines = [tuple(int(v) for v in line.split()) for line in out.splitlines()]
        assert len(lines) == n, out
        for image, version, k in lines:
            assert (image, version) not in acked, f"version {version} of image {image} given out twice"
            acked[(image, version)] = (worker, k)
    with AnnotationStore(location) as s:
        for image in images:
            history = s.annotation_history(image)
            assert [h.version for h in history] == list(range(1, workers * n // 2 + 1))
            for h in history:
                worker, k = acked[(image, h.version)]
                assert h.user == f"w{worker}"
                assert h.annotation.boxes[0].tolist() == [worker, k % 40, worker + 3, k % 40 + 5]
        assert s.integrity_check() == "ok"


_OPENER = """
import sys
from livetrain_widgets.engine.store import AnnotationStore
print("ready", flush=True)
sys.stdin.readline()
with AnnotationStore(sys.argv[1]) as store:
    store.set_meta(f"opened_by_{sys.argv[2]}", True)
"""


def test_processes_opening_a_new_store_at_once_migrate_it_once(location: str, tmp_project: Path) -> None:
    results = _start_together(tmp_project, _OPENER, [[location, str(w)] for w in range(4)])
    for code, _, err in results:
        assert code == 0, err[-3000:]
    with AnnotationStore(location) as s:
        assert s._conn().schema_version() == SCHEMA_VERSION
        assert all(s.get_meta(f"opened_by_{w}") is True for w in range(4))


# ------------------------------------------------------------------------ PostgreSQL's failures
def test_a_lost_connection_is_reported_then_reopened(postgres_server: PostgresServer, postgres_url: str) -> None:
    with AnnotationStore(postgres_url) as s:
        (i,) = add(s, 1)
        dbname = postgres_url.rsplit("/", 1)[1]
        with postgres_server.admin() as admin:  # what a server restart or a dropped network does
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,)
            ).fetchall()
        assert killed == [(True,)]
        with pytest.raises(StoreError, match=r"lost the connection.*not saved.*reconnects"):
            s.submit(i, det())
        assert s.submit(i, det()) == 1  # the next call reconnected; the failed one left nothing
        assert [h.version for h in s.annotation_history(i)] == [1]


def test_an_unreachable_server_is_a_store_error(postgres_server: PostgresServer) -> None:
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL server") as info:
        AnnotationStore(f"postgresql://ann:secret@127.0.0.1:{port}/labels")
    assert "secret" not in str(info.value)


def test_the_servers_full_disk_is_a_store_error(postgres_url: str) -> None:
    with AnnotationStore(postgres_url) as s:
        (i,) = add(s, 1)
        s.submit(i, det())
        # The server raises the disk_full condition (SQLSTATE 53100) exactly as a full data volume does.
        sql(s, "CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
               "RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; "
               "END $$")
        sql(s, "CREATE TRIGGER disk_is_full BEFORE INSERT ON annotations FOR EACH ROW EXECUTE FUNCTION full_disk()")
        with pytest.raises(StoreError, match="disk is full, so this change was not saved"):
            s.submit(i, det(k=1))
        sql(s, "DROP TRIGGER disk_is_full ON annotations")
        assert s.submit(i, det(k=2)) == 2
        assert [h.annotation.labels.tolist() for h in s.annotation_history(i)] == [[0], [2]]


def test_the_password_stays_out_of_repr_and_messages(postgres_server: PostgresServer, postgres_url: str) -> None:
    url = postgres_url.replace("postgres@", "postgres:secret@")  # trust auth ignores the password
    with AnnotationStore(url) as s:
        assert "secret" not in repr(s) and "***" in repr(s)
        assert s.url == url  # what another process needs to open it
    with pytest.raises(StoreError, match="closed") as info:
        s.image_ids()
    assert "secret" not in str(info.value)
