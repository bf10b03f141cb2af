"""SIGKILL at chosen points inside the work, with the embedded detector on real BCCD images.

``test_kill.py`` kills a tiny MLP at random moments; a random moment rarely falls inside the commit of a
submission, or between the two renames of a checkpoint. Here each child process arms one pause point (a
wrapper around the very call: SQLite's ``COMMIT`` of a submission, the rename of a new checkpoint folder,
the rename of an export file, the model's loss in a training step, the write of a project's task and
classes), prints ``PAUSED <point>`` from inside it and waits there; the parent kills it at that moment.
Nothing is timed, so every kill lands where it is meant to, on any machine.

One project lives through all the kills, as a user's would. After each kill the parent checks the store
(SQLite's integrity check; every acknowledged label there, equal to what was submitted; exported files
whole), and the next child opens the project, which must resume: from the newest checkpoint that was
complete (never from untrained weights without a word), with every live-evaluator record (replayed from the
store when it was lost), and train on.
"""

from __future__ import annotations

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

from livetrain_widgets.engine.formats import load_labels
from livetrain_widgets.engine.store import AnnotationStore

from .._lines import Lines
from .report import LONG, record, scale

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["RBC", "WBC", "Platelets"]

#: pause point -> what the report calls it. The first kill creates the project; the others cycle.
POINTS = {
    "create": "the creation of a project (between its task and its classes)",
    "submit-commit": "a submission, inside its transaction before COMMIT (no checkpoint yet on the 1st)",
    "train": "a training step (after the loss, before the update)",
    "submit-start": "a submission, before its transaction",
    "checkpoint-write": "a checkpoint write (weights and optimizer written, state.json not)",
    "submit-after-commit": "a submission, after COMMIT, before submit() returns",
    "checkpoint-same-step": "a checkpoint of the same step again, between moving the old one aside and "
                            "renaming the new one in",
    "export": "a COCO export, before its file is renamed in",
}

CHILD = textwrap.dedent("""
    import asyncio, os, sys, threading, time, warnings
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from livetrain_widgets import LiveSession, SessionConfig, TrainerConfig
    from livetrain_widgets.engine import checkpoint as ck
    from livetrain_widgets.engine._sql import SQLiteConnection
    from livetrain_widgets.engine.formats import load_labels
    from livetrain_widgets.engine.store import AnnotationStore

    POINT, PROJECT, OUT = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    armed = threading.Event()

    def say(*words):
        print(*words, flush=True)

    def pause(point):
        # Inside the call: tell the parent, and wait for its SIGKILL (from whichever thread this runs on).
        if armed.is_set() and POINT == point:
            say("PAUSED", point)
            time.sleep(600)

    real_execute = SQLiteConnection.execute
    in_submit = threading.local()

    def execute(self, sql, params=()):
        if sql.startswith("INSERT INTO meta") and params[0] == "classes":
            pause("create")
        if sql.startswith("INSERT INTO annotations"):
            in_submit.flag = True
        return real_execute(self, sql, params)

    SQLiteConnection.execute = execute
    real_write = SQLiteConnection.write

    def write(self, fn):
        def then_pause(db):
            out = fn(db)
            if getattr(in_submit, "flag", False):
                pause("submit-commit")  # the label version is inserted; COMMIT comes next
            return out

        out = real_write(self, then_pause)
        if getattr(in_submit, "flag", False):
            in_submit.flag = False
            pause("submit-after-commit")
        return out

    SQLiteConnection.write = write
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        name = Path(src).name
        if name.startswith(".step-") and ".tmp-" in name:
            pause("checkpoint-same-step")
        if str(dst).startswith(str(OUT)):
            pause("export")
        return real_replace(src, dst, *a, **k)

    os.replace = replace
    real_save = ck.torch.save

    def save(*a, **k):
        real_save(*a, **k)
        pause("checkpoint-write")

    ck.torch.save = save
    real_submit = AnnotationStore.submit

    def submit(self, *a, **k):
        pause("submit-start")
        return real_submit(self, *a, **k)

    AnnotationStore.submit = submit

    async def main():
        bccd = Path({data!r}) / "bccd"
        paths = sorted((bccd / "JPEGImages").glob("*.jpg"))[:{images}]
        truth = load_labels("voc", bccd / "Annotations", paths, {classes!r}).annotations
        cfg = SessionConfig(trainer=TrainerConfig(seed=0, checkpoint_every_s=1e9))
        if POINT == "create":
            armed.set()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s = LiveSession(PROJECT, "detection", {classes!r}, config=cfg, model_options={{"seed": 0}})
        for w in caught:  # a checkpoint that could not be loaded, or was replaced by an older one
            if "checkpoint" in str(w.message):
                say("WARNING", str(w.message).replace(chr(10), " "))
        if s.store.image_count() == 0:
            s.add_images(paths)
        say("OPENED", s.state.step, s.last_checkpoint_step, s.state.evaluated, s.state.error is None)
        model = s.trainer.model
        real_loss = model.loss

        def loss(*a, **k):
            out = real_loss(*a, **k)
            pause("train")
            return out

        model.loss = loss
        by_id = {{i: truth[Path(p).resolve()] for i, p in zip(s.image_ids, paths)}}
        await s.start()

        async def label():
            i = s.next_unlabeled()
            await s.predict(i)
            await s.submit(i, by_id[i])
            say("SUBMITTED", i, s.state.evaluated)

        for _ in range(max(1, 2 - s.store.labeled_count())):  # training starts at 2 labels
            await label()
        await s.wait_steps(1, timeout=300)
        say("TRAINED", s.state.step)
        if POINT in ("train", "checkpoint-write", "export"):
            await s.checkpoint()
            say("CHECKPOINTED", s.last_checkpoint_step)
        if POINT == "none":
            await s.close()
            say("CHECKPOINTED", s.last_checkpoint_step)
            say("CLOSED")
            return
        if POINT == "checkpoint-same-step":
            await s.stop()  # its final checkpoint; the next one is of the same step
            say("CHECKPOINTED", s.last_checkpoint_step)
        if POINT == "export":
            await asyncio.to_thread(s.export, "coco", OUT / f"before-{{os.getpid()}}")
        armed.set()
        if POINT.startswith("submit"):
            await label()
        elif POINT == "train":
            await s.wait_steps(1, timeout=300)
        elif POINT.startswith("checkpoint"):
            await s.checkpoint()
        elif POINT == "export":
            await asyncio.to_thread(s.export, "coco", OUT / f"killed-{{os.getpid()}}")
        say("MISSED", POINT)

    asyncio.run(main())
""")


def _run_child(script: Path, point: str, project: Path, out: Path) -> dict:
    """Run one child until it pauses at ``point`` (then SIGKILL it) or, for "none", until it closes."""
    # stderr to a file: a pipe nobody reads while the child runs blocks the child once full (warnings, a traceback)
    errors = script.with_name(f"child-{point}.stderr")
    with open(errors, "w") as err_file:
        proc = subprocess.Popen([sys.executable, str(script), point, str(project), str(out)],
                                stdout=subprocess.PIPE, stderr=err_file, text=True, cwd=REPO)
    assert proc.stdout is not None
    seen: dict = {"submitted": {}, "checkpointed": None, "warnings": [], "evaluated": 0}
    deadline = time.monotonic() + 600
    lines = Lines(proc.stdout)
    try:
        while time.monotonic() < deadline:
            line = lines.next(deadline, f"the child for {point}")
            if not line:
                err = errors.read_text()[-3000:]
                raise AssertionError(f"child for {point} ended (rc {proc.wait()}) before pausing: {err}")
            words = line.split()
            if words[0] == "OPENED":
                seen["opened"] = (int(words[1]), None if words[2] == "None" else int(words[2]), int(words[3]),
                                  words[4] == "True")
            elif words[0] == "WARNING":
                seen["warnings"].append(line[len("WARNING "):].strip())
            elif words[0] == "SUBMITTED":
                seen["submitted"][int(words[1])] = None
                seen["evaluated"] = int(words[2])
            elif words[0] == "CHECKPOINTED":
                seen["checkpointed"] = int(words[1])
            elif words[0] == "TRAINED":
                seen["trained"] = int(words[1])
            elif words[0] == "MISSED":
                raise AssertionError(f"the child never reached the pause point {point}")
            elif words[0] in ("PAUSED", "CLOSED"):
                if words[0] == "PAUSED":
                    os.kill(proc.pid, signal.SIGKILL)
                break
        else:
            raise AssertionError(f"the child for {point} timed out")
    finally:
        proc.kill()
        proc.wait(60)
    # A SUBMITTED printed just before the kill still counts as acknowledged.
    for line in proc.stdout.read().splitlines():
        if line.startswith("SUBMITTED"):
            seen["submitted"][int(line.split()[1])] = None
    return seen


def _check_store(project: Path, acked: dict[int, object], out: Path) -> int:
    """SQLite's integrity check and every acknowledged label as submitted; returns how many are lost."""
    with AnnotationStore(project / "labels.sqlite") as store:
        assert store.integrity_check() == "ok"
        lost = 0
        for image_id, truth in acked.items():
            ann = store.annotation(image_id)
            lost += ann is None or not (
                np.array_equal(ann.labels, truth.labels) and np.allclose(ann.boxes, truth.boxes, atol=1e-3)
            )
    for exported in out.rglob("*.json"):  # an export is complete or absent, never torn
        json.loads(exported.read_text())
    return lost


@pytest.mark.slow
def test_sigkill_inside_submit_train_checkpoint_and_export_embedded_bccd(data_dir: Path, tmp_path: Path) -> None:
    # The quick form kills once at each point but "submit-start" (the commit is the sharper case), the long
    # form twice at each.
    cycle = [p for p in POINTS if p != "create" and (LONG or p != "submit-start")]
    plan = ["create", *(cycle * scale(1, 2)), "none"]
    images = 2 * len(plan) + 4  # at most 2 labels per child after the first two
    project, out = tmp_path / "project", tmp_path / "export"
    out.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO), data=str(data_dir), images=images, classes=CLASSES))
    bccd = data_dir / "bccd"
    paths = sorted((bccd / "JPEGImages").glob("*.jpg"))[:images]
    truth = load_labels("voc", bccd / "Annotations", paths, CLASSES).annotations
    truth_by_index = [truth[p.resolve()] for p in paths]

    acked: dict[int, object] = {}
    lost = dict.fromkeys(POINTS, 0)
    kills = dict.fromkeys(POINTS, 0)
    evaluated = 0  # records the killed child had when it was killed
    resume_step: int | None = None  # the newest checkpoint that completed
    t0 = time.monotonic()
    for point in plan:
        seen = _run_child(script, point, project, out)
        if point != "create":
            # The project resumed: from the newest complete checkpoint, every judgement of a pre-label kept.
            step, last, evaluated_now, no_error = seen["opened"]
            assert not seen["warnings"], seen["warnings"]
            assert no_error and last == resume_step and step == (resume_step or 0), (point, seen, resume_step)
            assert evaluated_now >= evaluated, (point, evaluated_now, evaluated)
            assert seen.get("trained", 0) > step or point == "none", "training did not resume"
        # image ids are 1.. in the order of ``paths`` (the first child added them all)
        acked.update({i: truth_by_index[i - 1] for i in seen["submitted"]})
        evaluated = max(evaluated, seen["evaluated"])
        if seen["checkpointed"] is not None:
            resume_step = seen["checkpointed"]
        if point == "none":
            break
        kills[point] += 1
        lost[point] += _check_store(project, acked, out)
    seconds = time.monotonic() - t0
    for point, what in POINTS.items():
        record("faults", f"SIGKILL inside {what}; embedded detector, real BCCD images", kills[point],
               "paused at that call and killed there; store integrity ok, every acknowledged label as submitted, "
               "exports whole; reopened from the newest complete checkpoint (none lost to a same-step rewrite), "
               "no evaluator record lost, training resumed", lost[point])
    record("faults", "of those: the SIGKILL kill test with the embedded detector as a whole", sum(kills.values()),
           f"{len(acked)} labels acknowledged, {evaluated} live-evaluator records (none lost), last checkpoint at "
           f"step {resume_step}, {seconds:.0f} s", sum(lost.values()))
    assert sum(lost.values()) == 0, lost
