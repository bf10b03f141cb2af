"""What a project that a crash interrupted opens as (issue 19): creation finished or repaired, a
checkpoint replaced at the same step put back, and a project whose checkpoints are all gone says so."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from livetrain_widgets import Annotation, LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.engine._sql import SQLiteConnection
from livetrain_widgets.engine.store import AnnotationStore

from .tiny_model import TinyClassifier, two_class_images

IMAGES, LABELS = two_class_images(12)


def open_session(project: Path, **kw) -> LiveSession:
    cfg = SessionConfig(trainer=TrainerConfig(batch_size=4, lr=1e-2, checkpoint_every_s=1e9))
    return LiveSession(project, "classification", ["left", "right"], model=TinyClassifier(), config=cfg, **kw)


def test_task_and_classes_are_stored_in_one_transaction(tmp_path, monkeypatch) -> None:
    """A failure (or a kill) between the two writes stored a task without classes: never again."""

    class Killed(BaseException):
        pass

    real = SQLiteConnection.execute
    metas = []

    def execute(self, sql, params=()):
        if sql.startswith("INSERT INTO meta"):
            metas.append(params[0])
            if len(metas) == 2:
                raise Killed  # between the task and the classes
        return real(self, sql, params)

    monkeypatch.setattr(SQLiteConnection, "execute", execute)
    with pytest.raises(Killed):
        LiveSession(tmp_path / "p", "classification", ["left", "right"], model=TinyClassifier())
    monkeypatch.undo()
    assert metas == ["task", "classes"]
    with AnnotationStore(tmp_path / "p" / "labels.sqlite") as s:
        assert s.get_meta("task") is None and s.get_meta("classes") is None  # all or nothing
    s = open_session(tmp_path / "p")
    assert s.task == "classification" and s.classes == ["left", "right"]
    asyncio.run(s.close())


def test_a_project_left_with_a_task_but_no_classes_is_repaired(tmp_path) -> None:
    """What the old two writes left after a kill (a TypeError on every reopen): a sentence, and opening
    it with its task and classes finishes the creation."""
    (tmp_path / "p").mkdir()
    with AnnotationStore(tmp_path / "p" / "labels.sqlite") as s:
        s.set_meta("task", "classification")
    with pytest.raises(ValueError, match=r"never completely created .* open it with its task and classes"):
        LiveSession(tmp_path / "p", model=TinyClassifier())
    s = open_session(tmp_path / "p")
    ids = s.add_images(IMAGES[:2])
    asyncio.run(s.submit(ids[0], Annotation(16, 16, category=LABELS[0])))
    asyncio.run(s.close())
    again = LiveSession(tmp_path / "p", model=TinyClassifier())
    assert again.classes == ["left", "right"] and again.store.labeled_count() == 1
    asyncio.run(again.close())


async def _trained_project(project: Path) -> int:
    s = open_session(project)
    ids = s.add_images(IMAGES)
    await s.start()
    for i in ids[:4]:
        await s.predict(i)
        await s.submit(i, Annotation(16, 16, category=LABELS[i - ids[0]]))
    await s.wait_steps(10, timeout=60)
    await s.close()
    return s.state.step


def test_a_checkpoint_killed_mid_replacement_is_put_back(tmp_path) -> None:
    """Killed between the two renames of a same-step rewrite: no step folder, two complete copies."""
    project = tmp_path / "p"
    step = asyncio.run(_trained_project(project))
    ckpts = project / "checkpoints"
    final = ckpts / f"step-{step:08d}"
    shutil.copytree(final, ckpts / f".{final.name}.tmp-1-1")
    final.rename(ckpts / f".{final.name}.old-1-2")
    s = LiveSession(project, model=TinyClassifier())
    assert s.state.step == step and s.last_checkpoint_step == step and s.state.error is None
    assert final.is_dir()
    asyncio.run(s.close())


def test_a_project_whose_checkpoints_are_gone_says_so(tmp_path) -> None:
    """It used to reopen from untrained weights without a word."""
    project = tmp_path / "p"
    asyncio.run(_trained_project(project))
    ckpts = project / "checkpoints"
    for folder in ckpts.glob("step-*"):
        shutil.rmtree(folder)
    with pytest.warns(RuntimeWarning, match=r"no checkpoint in .* could be loaded.* untrained weights"):
        s = LiveSession(project, model=TinyClassifier())
    assert s.state.step == 0 and "untrained weights" in s.state.error
    assert "untrained weights" in s.state.message and s.state.labeled == 4

    async def checkpoint_clears_it() -> None:
        await s.checkpoint()
        assert s.state.error is None
        await s.close()

    asyncio.run(checkpoint_clears_it())
