"""LiveSession end to end with the tiny model: labels, prediction, evaluation, resume, kill, export."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from livetrain_widgets import Annotation, AnnotationError, LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.engine.project_lock import ProjectLockedError
from livetrain_widgets.engine.session import SkippedFileWarning

from ._lines import Lines
from .tiny_model import TinyClassifier, two_class_images

REPO = Path(__file__).resolve().parents[1]
IMAGES, LABELS = two_class_images(24)


def open_session(project: Path, **kw) -> LiveSession:
    cfg = SessionConfig(trainer=TrainerConfig(batch_size=4, lr=1e-2, offer_min_steps=5))
    return LiveSession(project, "classification", ["left", "right"], model=TinyClassifier(), config=cfg, **kw)


def cls(c: int) -> Annotation:
    return Annotation(16, 16, category=c)


async def test_label_predict_submit_evaluate_export(tmp_path) -> None:
    s = open_session(tmp_path / "p")
    ids = s.add_images(IMAGES)
    assert ids == s.image_ids and len(ids) == 24
    assert s.add_images(IMAGES[:3]) == ids[:3]  # same pixels again: same images
    await s.start()
    assert s.state.message == "Label 2 more images to start"
    for i in ids[:6]:
        await s.submit(i, cls(LABELS[i - ids[0]]))
    assert s.state.labeled == 6
    await s.wait_steps(60, timeout=60)
    st = s.state
    assert st.phase == "training" and st.step >= 60 and st.offering and st.message == "Learning…"
    correct = 0
    for k in range(6, 16):
        pred = await s.predict(ids[k])
        assert pred.offered and pred.step > 0
        correct += pred.annotation.category == LABELS[k]
        await s.submit(ids[k], pred.annotation if k % 2 else cls(LABELS[k]))
    assert correct >= 8
    hist = s.store.annotation_history(ids[7])
    assert hist[-1].source == ("prelabel_accepted" if correct == 10 else hist[-1].source)
    assert {h.source for k in range(6, 16) for h in s.store.annotation_history(ids[k])} <= {
        "prelabel_accepted", "prelabel_edited"}
    assert s.state.evaluated == 10 and s.state.quality is not None and s.state.quality > 0.5
    with pytest.raises(AnnotationError, match="unknown class"):
        await s.submit(ids[20], cls(5))
    with pytest.raises(AnnotationError, match="16x16"):
        await s.submit(ids[20], Annotation(10, 16, category=0))
    await s.stop()
    out = s.export("coco", tmp_path / "out")
    data = json.loads((out if out.is_file() else out / "annotations.json").read_text())
    assert len(data["images"]) == 16
    model_dir = s.export_model(tmp_path / "model")
    await s.close()

    from livetrain_widgets import load_model

    m = load_model(model_dir)
    assert m.predict([IMAGES[20]])[0].category == LABELS[20]


async def test_reopen_resumes_everything(tmp_path) -> None:
    s = open_session(tmp_path / "p")
    ids = s.add_images(IMAGES[:10])
    await s.start()
    for i in ids[:4]:
        await s.submit(i, cls(LABELS[i - ids[0]]))
    await s.wait_steps(30, timeout=60)
    pred = await s.predict(ids[4])
    await s.submit(ids[4], cls(LABELS[4]))
    await s.close()
    step, ema = s.state.step, s.evaluator.ema
    a = (await asyncio.gather())  # noqa: F841 (keeps the loop busy for a tick)

    s2 = LiveSession(tmp_path / "p", model=TinyClassifier(),
                     config=SessionConfig(trainer=TrainerConfig(batch_size=4)))
    assert s2.task == "classification" and s2.classes == ["left", "right"]
    assert s2.state.step == step and s2.evaluator.ema == ema and s2.state.labeled == 5
    assert sorted(s2.trainer.sampler.keys) == sorted(ids[:5])
    again = await s2.predict(ids[4])
    np.testing.assert_allclose(again.annotation.category_scores, pred.annotation.category_scores, atol=0.2)
    await s2.start()
    await s2.wait_steps(5, timeout=30)
    assert s2.state.step >= step + 5
    await s2.close()


def test_project_lock_and_mismatched_reopen(tmp_path) -> None:
    s = open_session(tmp_path / "p")
    with pytest.raises(ProjectLockedError, match="open in another process"):
        open_session(tmp_path / "p")
    asyncio.run(s.close())
    with pytest.raises(ValueError, match="classification"):
        LiveSession(tmp_path / "p", "detection", ["x"])
    with pytest.raises(ValueError, match="classes"):
        LiveSession(tmp_path / "p", "classification", ["x", "y"])
    with pytest.raises(ValueError, match="class names"):
        LiveSession(tmp_path / "new", "detection")


def test_bad_files_are_skipped_with_a_named_warning(tmp_path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    Image.fromarray(IMAGES[0]).save(folder / "good.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "junk.jpg").write_bytes(b"this is not a jpeg")
    s = open_session(tmp_path / "p")
    with pytest.warns(SkippedFileWarning) as rec:
        ids = s.add_images(folder)
    assert len(ids) == 1
    text = " ".join(str(w.message) for w in rec)
    assert "empty.png" in text and "junk.jpg" in text
    asyncio.run(s.close())


KILL_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {repo!r})
    from tests.tiny_model import TinyClassifier, two_class_images
    from livetrain_widgets import Annotation, LiveSession, SessionConfig, TrainerConfig

    async def main():
        images, labels = two_class_images(40)
        cfg = SessionConfig(trainer=TrainerConfig(batch_size=4, checkpoint_every_s={every}))
        s = LiveSession({project!r}, "classification", ["left", "right"], model=TinyClassifier(), config=cfg)
        ids = s.add_images(images)
        await s.start()
        for i, c in zip(ids, labels):
            await s.predict(i)
            await s.submit(i, Annotation(16, 16, category=c))
            print("SUBMITTED", i, flush=True)
            await s.wait_steps(8, timeout=10)
        await asyncio.sleep(60)

    asyncio.run(main())
""")


@pytest.mark.parametrize("checkpointed", [False, True], ids=["before-first-checkpoint", "after-a-checkpoint"])
def test_sigkill_mid_training_loses_nothing_and_resumes(tmp_path, checkpointed) -> None:
    project = tmp_path / "p"
    script = tmp_path / "run.py"
    # Before the first checkpoint (none is due for hours) or once one is on disk (every 0.3 s): the
    # evaluator's records were lost in the first case, since replay only ran from a checkpoint (issue 19).
    every = 0.3 if checkpointed else 1e9
    script.write_text(KILL_SCRIPT.format(repo=str(REPO), project=str(project), every=every))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    submitted = []
    deadline = time.monotonic() + 120
    # Killed once 12 labels are in (and, in the second case, a checkpoint is on disk: a fast child can
    # reach 12 submissions before its first periodic checkpoint).
    latest = project / "checkpoints" / "LATEST"
    lines = Lines(proc.stdout)
    while (len(submitted) < 12 or (checkpointed and not latest.exists())) and time.monotonic() < deadline:
        line = lines.next(deadline, "the labeling child")
        if not line:  # it ended: the assertion below says so
            break
        if line.startswith("SUBMITTED"):
            submitted.append(int(line.split()[1]))
    assert len(submitted) >= 12 and latest.exists() == checkpointed, "the child did not get going"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)

    s = LiveSession(project, model=TinyClassifier())
    assert s.store.integrity_check() == "ok"
    assert set(submitted) <= set(s.store.labeled_ids())
    # Every pre-label judged before the kill is judged again on resume (checkpointed or replayed).
    judged = [i for i in s.store.labeled_ids() if s.store.annotation_history(i)[0].prediction_id is not None]
    assert len(s.evaluator.history) == len(judged) >= len(submitted)
    if checkpointed:
        assert s.last_checkpoint_step is not None and s.state.step > 0  # resumed from a checkpoint
    else:
        assert s.last_checkpoint_step is None and s.state.step == 0 and s.state.error is None
    before = s.state.step

    async def resume() -> int:
        await s.start()
        await s.wait_steps(5, timeout=30)
        await s.close()
        return s.state.step

    assert asyncio.run(resume()) >= before + 5


def test_images_from_arrays_pil_16bit_and_rgba(tmp_path) -> None:
    from PIL import Image

    s = open_session(tmp_path / "p")
    grey16 = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 200)
    rgba = np.dstack([IMAGES[0], np.full((16, 16), 128, np.uint8)])
    ids = s.add_images([grey16, rgba, Image.fromarray(IMAGES[1])])
    assert len(ids) == 3
    for i in ids:
        im = s.image(i)
        assert im.shape == (16, 16, 3) and im.dtype == np.uint8
    assert s.image(ids[0]).max() == 255  # stretched, not divided into black
    with pytest.warns(SkippedFileWarning):
        s.add_images([np.zeros((0, 5))])
    asyncio.run(s.close())
