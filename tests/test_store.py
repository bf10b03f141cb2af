"""The annotation store: API, schema versioning, damage reporting, threads and crash durability."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_project: Path):
    with AnnotationStore(tmp_project / "labels.sqlite") as s:
        yield s


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
        db = s._conn()
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert path.is_file()


def test_close_is_idempotent_and_closed_store_refuses(tmp_project: Path) -> None:
    s = AnnotationStore(tmp_project / "s.sqlite")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.image_ids()


def test_refuses_a_store_from_a_newer_version(tmp_project: Path) -> None:
    path = tmp_project / "s.sqlite"
    AnnotationStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StoreError, match="newer"):
        AnnotationStore(path)


def test_migration_runs_new_steps_once(tmp_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_project / "s.sqlite"
    with AnnotationStore(path) as s:
        (i,) = add(s, 1)
        s.submit(i, det())
    calls = []

    def v2(db: sqlite3.Connection) -> None:
        calls.append(1)
        db.execute("ALTER TABLE images ADD COLUMN note TEXT")

    monkeypatch.setattr(store_mod, "MIGRATIONS", (*store_mod.MIGRATIONS, v2))
    with AnnotationStore(path) as s:
        assert s._conn().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert s.annotation(i) is not None  # old data kept
    with AnnotationStore(path):
        pass
    assert calls == [1]


def test_a_failed_migration_rolls_back(tmp_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_project / "s.sqlite"
    AnnotationStore(path).close()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr(store_mod, "MIGRATIONS", (*store_mod.MIGRATIONS, broken))
    with pytest.raises(RuntimeError, match="boom"):
        AnnotationStore(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'half_done'").fetchall()


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
    db = store._conn()
    db.execute("UPDATE annotations SET data = '{\"width\": 64' WHERE image_id = ?", (i,))
    db.execute("UPDATE predictions SET data = ? WHERE image_id = ?", (json.dumps({"boxes": 1}), j))
    with pytest.raises(StoreError, match=f"image {i}"):
        store.annotation(i)
    with pytest.raises(StoreError, match=f"image {i}"):
        store.annotation_history(i)
    with pytest.raises(StoreError, match=f"prediction .* image {j}"):
        store.prediction(j)
    store.set_meta("m", 1)
    db.execute("UPDATE meta SET value = '{' WHERE key = 'm'")
    with pytest.raises(StoreError, match="'m'"):
        store.get_meta("m")


def test_integrity_and_checkpoint(store: AnnotationStore) -> None:
    ids = add(store, 3)
    for i in ids:
        store.submit(i, det())
    wal = Path(str(store.path) + "-wal")
    assert wal.stat().st_size > 0
    assert store.integrity_check() == "ok"
    assert store.checkpoint_wal() is True
    assert wal.stat().st_size == 0
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


@pytest.fixture(scope="module")
def shared_store():
    with tempfile.TemporaryDirectory() as d, AnnotationStore(Path(d) / "p.sqlite") as s:
        yield s


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ann=annotations(), user=st.none() | st.text(max_size=10))
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


def test_sigkill_loses_no_acknowledged_submission(tmp_project: Path) -> None:
    path = tmp_project / "labels.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    tmp_project.mkdir()
    err_file = tmp_project / "stderr.txt"
    with open(err_file, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, stderr=err, text=True,
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
