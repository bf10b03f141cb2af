"""Nothing a user made is destroyed, and bad input is refused before anything is committed (issue 19).

- An output folder (``livetrain bench/simulate --out``): only new, empty, or made by livetrain; a file or
  folder the command did not write is never replaced or deleted, nor a project open in a session.
- A file name that is not valid UTF-8 in an images folder is skipped with a warning naming it; the others
  are added and their ids returned.
- ``submit()`` with an image id that is not an integer, or a NaN threshold, is refused before the label
  is committed; a NaN threshold is refused wherever one is set (session config, predict, the panel).
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from traitlets import TraitError

from livetrain_widgets import Annotation, LabelCanvas, LivePanel, LiveSession, SessionConfig
from livetrain_widgets.cli import main as cli
from livetrain_widgets.engine._output_folder import MARKER, OutputFolder, OutputFolderError
from livetrain_widgets.engine.session import SkippedFileWarning
from livetrain_widgets.study.simulate import StudyConfig

from .. import _require
from ..tiny_model import TinyClassifier, two_class_images
from .report import record

IMAGES, LABELS = two_class_images(6)


def open_session(project: Path, **kw: object) -> LiveSession:
    return LiveSession(project, "classification", ["left", "right"], model=TinyClassifier(), **kw)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ output folders
def test_an_output_folder_replaces_and_deletes_only_what_it_wrote(tmp_path: Path) -> None:
    tried = 0
    # a folder holding anything else is refused, by name, and left exactly as it was
    for content in ({"labels.sqlite": b"a project"}, {"notes.txt": b"x"}, {"a/b.png": b"png"}):
        user = tmp_path / f"user{tried}"
        for name, data in content.items():
            (user / name).parent.mkdir(parents=True, exist_ok=True)
            (user / name).write_bytes(data)
        refused = re.escape(f"{user} already holds files that livetrain did not write")
        with pytest.raises(OutputFolderError, match=refused):
            OutputFolder(user, "livetrain bench")
        assert tree(user) == content
        tried += 1
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(OutputFolderError, match="is a file, not a folder"):
        OutputFolder(tmp_path / "a-file", "livetrain bench")
    assert (tmp_path / "a-file").read_text() == "mine"
    tried += 1

    # new: claimed, and what it writes it may write again
    out = OutputFolder(tmp_path / "new" / "out", "livetrain simulate")
    out.write("results.json", "1")
    out.write("results.json", "2")
    out.write("predictions/live.json.gz", b"gz")
    assert (tmp_path / "new" / "out" / "results.json").read_text() == "2"
    assert json.loads((tmp_path / "new" / "out" / MARKER).read_text())["written"] == [
        "results.json", "predictions/live.json.gz"]
    # a later run finds the marker; a file the user put there since is not its to replace
    (tmp_path / "new" / "out" / "plot.png").write_bytes(b"the user's")
    again = OutputFolder(tmp_path / "new" / "out", "livetrain simulate")
    with pytest.raises(OutputFolderError, match=re.escape("plot.png is not livetrain simulate's to replace")):
        again.write("plot.png", b"ours")
    assert (tmp_path / "new" / "out" / "plot.png").read_bytes() == b"the user's"
    again.write("results.json", "3")
    assert not [p for p in (tmp_path / "new" / "out").rglob("*.tmp")]
    tried += 1
    # a file it wrote, replaced by a link since: not followed
    (tmp_path / "elsewhere").write_text("keep")
    (tmp_path / "new" / "out" / "results.json").unlink()
    (tmp_path / "new" / "out" / "results.json").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputFolderError, match="replaced by a link"):
        again.write("results.json", "4")
    assert (tmp_path / "elsewhere").read_text() == "keep"
    tried += 1
    for bad in ("../x", "/etc/passwd", MARKER, ""):
        with pytest.raises(ValueError, match="relative path inside the folder"):
            again.file(bad)
    record("data safety", "output folders: user files, a file, links, names outside", tried + 4,
           "refused by name; nothing replaced or deleted", 0)


async def test_a_scratch_folder_is_deleted_only_while_marked_and_closed(tmp_path: Path) -> None:
    out = OutputFolder(tmp_path / "bench", "livetrain bench")
    scratch = out.scratch("project")
    (scratch / "old.txt").write_text("an earlier run's")
    assert out.scratch("project") == scratch and list(scratch.iterdir()) == [scratch / MARKER]
    # a project open in a session inside it (a notebook): not deleted, and the session labels on
    session = open_session(scratch / "cpu")
    try:
        ids = session.add_images(IMAGES[:2])
        await session.submit(ids[0], Annotation(16, 16, category=LABELS[0]))
        before = tree(scratch)
        with pytest.raises(OutputFolderError, match="is open in another process"):
            OutputFolder(tmp_path / "bench", "livetrain bench").scratch("project")
        assert tree(scratch) == before
        await session.submit(ids[1], Annotation(16, 16, category=LABELS[1]))
        assert session.store.labeled_ids() == ids
    finally:
        await session.close()
    # its marker gone (someone made it their own): never deleted
    (scratch / MARKER).unlink()
    before = tree(scratch)
    not_ours = re.escape(f"{scratch} is not the scratch folder livetrain bench made")
    with pytest.raises(OutputFolderError, match=not_ours):
        OutputFolder(tmp_path / "bench", "livetrain bench").scratch("project")
    assert tree(scratch) == before
    record("data safety", "scratch folder: open in a session, or its marker gone", 2,
           "not deleted; the open session labeled on", 0)


# ---------------------------------------------------------------------------------- non-UTF-8 names
@_require.not_applicable(os.name != "posix", "POSIX file names are bytes; Windows' are UTF-16")
async def test_a_file_name_that_is_not_utf8_is_skipped_by_name_and_the_rest_added(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    names = [b"a.png", b"caf\xe9.png", b"\xff\xfe.png", b"z.png"]
    for k, name in enumerate(names):
        with open(os.path.join(os.fsencode(folder), name), "wb") as f:
            Image.fromarray(IMAGES[k]).save(f, format="PNG")
    session = open_session(tmp_path / "p")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ids = session.add_images(folder)
        assert len(ids) == 2 and session.image_ids == ids
        assert sorted(Path(session.store.image(i).path).name for i in ids) == ["a.png", "z.png"]
        said = [str(w.message) for w in caught if issubclass(w.category, SkippedFileWarning)]
        assert len(said) == 2, said
        for bad in (b"caf\xe9.png", b"\xff\xfe.png"):
            assert any(repr(bad)[2:-1] in m and "not valid UTF-8" in m for m in said), said
        # a path handed in one by one, too
        with pytest.warns(SkippedFileWarning, match="not valid UTF-8"):
            assert session.add_images([os.fsdecode(os.path.join(os.fsencode(folder), b"caf\xe9.png"))]) == []
    finally:
        await session.close()
    record("bad input", "images: file names not valid UTF-8", 3, "skipped with a warning naming the bytes; "
           "the others added, their ids returned", 0)


# ------------------------------------------------------------------------- submit and thresholds
async def test_an_image_id_that_is_not_an_integer_is_refused_before_commit(tmp_path: Path) -> None:
    session = open_session(tmp_path / "p")
    try:
        ids = session.add_images(IMAGES)
        ann = Annotation(16, 16, category=0)
        bad = [str(ids[1]), float(ids[1]) + 0.7, float(ids[1]), True, None, [ids[1]], np.float64(ids[1])]
        for image_id in bad:
            with pytest.raises(TypeError, match="image id must be an integer"):
                await session.submit(image_id, ann)
            with pytest.raises(TypeError, match="image id must be an integer"):
                await session.predict(image_id)
        assert session.store.labeled_ids() == [] and session.state.labeled == 0
        assert all(session.store.annotation_history(i) == [] for i in ids)
        # numpy integers (as from an array of ids) are integers
        assert await session.submit(np.int64(ids[2]), ann) == 1
        assert session.store.labeled_ids() == [ids[2]]
    finally:
        await session.close()
    record("bad input", "submit/predict: image id a str, float, bool, None, list", len(bad) * 2,
           "TypeError before anything is committed", 0)


async def test_a_nan_threshold_is_refused_everywhere_one_is_set(tmp_path: Path) -> None:
    nan = math.nan
    tried = 0
    for value in (nan, math.inf, -0.1, 1.5, "0.3", True):
        with pytest.raises((ValueError, TypeError), match="threshold"):
            SessionConfig(threshold=value)
        tried += 1
    with pytest.raises(ValueError, match="threshold"):
        StudyConfig(threshold=nan)
    with pytest.raises(SystemExit):
        cli(["simulate", "--threshold", "nan", "--out", str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()
    cfg = SessionConfig()
    with pytest.raises(ValueError, match="threshold"):
        cfg.threshold = nan
    assert cfg.threshold == 0.3
    session = open_session(tmp_path / "p", config=cfg)
    try:
        ids = session.add_images(IMAGES)
        ann = Annotation(16, 16, category=0)
        for thr in (nan, [0.3, nan], [0.3], -1.0, "x"):
            with pytest.raises((ValueError, TypeError), match="threshold"):
                await session.submit(ids[0], ann, threshold=thr)
            with pytest.raises((ValueError, TypeError), match="threshold"):
                await session.predict(ids[0], threshold=thr)
            tried += 2
        assert session.store.labeled_ids() == []
        assert await session.submit(ids[0], ann, threshold=[0.2, 0.4]) == 1
    finally:
        await session.close()
    # the panel and the canvas (a Python caller; the front end's NaN was already refused as non-JSON)
    panel, canvas = LivePanel(), LabelCanvas("classification", ["left", "right"])
    for widget, name, value in ((panel, "threshold", nan), (canvas, "threshold", nan),
                                (canvas, "class_thresholds", [0.3, nan])):
        with pytest.raises(TraitError, match="NaN"):
            setattr(widget, name, value)
        tried += 1
    panel.set_state({"threshold": nan})  # the front end's path: JSON from the comm may carry NaN
    tried += 1
    assert panel.threshold == 0.3 and canvas.threshold == 0.3 and canvas.class_thresholds == []
    record("bad input", "thresholds: NaN, inf, out of [0, 1], wrong type", tried + 2,
           "refused where set (session and study config, simulate --threshold, submit, predict, panel, canvas); "
           "nothing committed", 0)


async def test_export_model_never_replaces_another_models_files(tmp_path: Path) -> None:
    # model.safetensors is transformers' name too: exporting into a downloaded model's folder replaced its weights
    session = open_session(tmp_path / "p")
    try:
        hub = tmp_path / "downloaded"
        hub.mkdir()
        (hub / "model.safetensors").write_bytes(b"someone else's weights")
        (hub / "config.json").write_text("{}")
        before = tree(hub)
        with pytest.raises(FileExistsError, match=re.escape(f"{hub / 'model.safetensors'} is not livetrain's")) as got:
            session.export_model(hub)
        assert got.value.__cause__ is not got.value  # raised as it was, not as its own cause
        assert tree(hub) == before
        # its own export, again into the same folder: replaced, as asked
        mine = session.export_model(tmp_path / "mine")
        assert session.export_model(mine) == mine and (mine / "model.safetensors").is_file()
    finally:
        await session.close()
    record("data safety", "export_model into another model's folder", 1, "refused by name; nothing replaced", 0)


async def test_a_team_annotator_is_refused_the_same_before_anything_is_written(tmp_path: Path) -> None:
    from livetrain_widgets.engine.team import TeamSession, TeamTrainer

    location = str(tmp_path / "team.sqlite")
    trainer = TeamTrainer(tmp_path / "trainer", location, "classification", ["left", "right"],
                          model=TinyClassifier(), poll_s=0.05)
    alice = None
    try:
        ids = trainer.session.add_images(IMAGES)
        alice = TeamSession(location, trainer, user="alice", lease_ttl_s=30, poll_s=0.05)
        ann = Annotation(16, 16, category=0)
        bad = [str(ids[1]), ids[1] + 0.7, True]
        for image_id in bad:
            for call in (alice.submit(image_id, ann), alice.claim(image_id), alice.predict(image_id)):
                with pytest.raises(TypeError, match="image id must be an integer"):
                    await call
        for thr in (math.nan, [0.3, math.nan]):
            with pytest.raises(ValueError, match="threshold"):
                await alice.submit(ids[1], ann, threshold=thr)
        assert trainer.session.store.labeled_ids() == [] and trainer.session.store.active_leases() == []
    finally:
        if alice is not None:
            await alice.close()
        await trainer.close()
    record("bad input", "team annotator: bad image ids and thresholds", len(bad) * 3 + 2,
           "refused before any label or lease is written", 0)
