"""SIGKILL at random points: during a training step, a checkpoint write, a submission and an export.

One project lives through every kill, as a user's would: a child process opens it (resuming from the
last checkpoint), labels, trains, checkpoints and exports, and is killed at a random moment inside the
chosen phase. After each kill the parent checks what a user relies on: the store passes SQLite's
integrity check, every submission that returned is there with the label it was given, the newest
checkpoint loads, and a session resumes training from it. The next child then carries on labeling.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from livetrain_widgets import LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.engine.checkpoint import latest_checkpoint, load_checkpoint

from ..tiny_model import TinyClassifier
from .report import record, scale

REPO = Path(__file__).resolve().parents[2]
#: the phases a kill targets, as the report names them
PHASES = {
    "train": "a training step",
    "checkpoint": "a checkpoint write",
    "submit": "a submission (predict, then submit)",
    "export": "an export (COCO, then class folders)",
}
#: Wide hidden layer: ~1M weights, so a checkpoint (weights + Adam moments) is ~12 MB and takes long
#: enough to write that a random kill lands inside the write, not only before or after it.
HIDDEN = 20_000
IMAGES = 400

CHILD = textwrap.dedent("""
    import asyncio, sys, time
    sys.path.insert(0, {repo!r})
    from tests.tiny_model import TinyClassifier, two_class_images
    from livetrain_widgets import Annotation, LiveSession, SessionConfig, TrainerConfig

    def say(*words):
        print(*words, flush=True)

    def category(image):  # the class is in the picture: bright on the left (0) or the right (1)
        w = image.shape[1] // 2
        return int(image[:, w:].mean() > image[:, :w].mean())

    async def main():
        cfg = SessionConfig(trainer=TrainerConfig(batch_size=4, checkpoint_every_s=0.4, offer_min_steps=5))
        s = LiveSession({project!r}, "classification", ["left", "right"], model=TinyClassifier(hidden={hidden}),
                        config=cfg)
        if s.store.image_count() == 0:
            s.add_images(two_class_images({images})[0])
        await s.start()
        say("READY", s.state.step)
        while (i := s.next_unlabeled()) is not None:
            say("BEGIN submit", i)
            await s.predict(i)
            c = category(s.image(i))
            await s.submit(i, Annotation(16, 16, category=c))
            say("SUBMITTED", i, c)
            say("BEGIN train")
            await s.wait_steps(4, timeout=10)
            say("BEGIN checkpoint")
            await s.checkpoint()
            say("BEGIN export")
            await asyncio.to_thread(s.export, "coco", {out!r} + "/coco")
            await asyncio.to_thread(s.export, "folders", {out!r} + "/folders")
            say("END round")
        say("DONE")
        await asyncio.sleep(600)

    asyncio.run(main())
""")


def _kill_once(script: Path, phase: str, rng: random.Random, acked: dict[int, int]) -> dict[str, float | bool]:
    """Run the child until the chosen phase begins (its 1st-3rd time), then SIGKILL it a random moment in."""
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    skip = rng.randrange(3)
    # How far into the phase: these windows cover each phase's usual length on a 2-core machine.
    window = {"train": 0.3, "checkpoint": 0.15, "submit": 0.02, "export": 0.05}[phase]
    deadline = time.monotonic() + 120
    killed_in = None
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"the child ended before it was killed (rc {proc.wait()})")
            words = line.split()
            if words[0] == "SUBMITTED":
                acked[int(words[1])] = int(words[2])
            elif words[0] == "DONE":
                raise AssertionError("the child labeled every image before the kill: raise IMAGES")
            elif words[:2] == ["BEGIN", phase]:
                if skip == 0:
                    time.sleep(rng.uniform(0, window))
                    os.kill(proc.pid, signal.SIGKILL)
                    killed_in = phase
                    break
                skip -= 1
        assert killed_in, "the child never reached the phase to kill"
    finally:
        proc.kill()
        proc.wait(30)
    # Lines the child printed before dying (a SUBMITTED that raced the kill counts as acknowledged).
    for line in proc.stdout.read().splitlines():
        words = line.split()
        if words and words[0] == "SUBMITTED":
            acked[int(words[1])] = int(words[2])
    return {"killed": True}


async def _check_and_resume(project: Path, acked: dict[int, int], out: Path) -> dict[str, int]:
    """What a user relies on after a crash; returns how many acknowledged labels are missing or wrong."""
    # A checkpoint killed mid-write leaves its temporary folder; the newest complete one must load.
    half_written = len(list((project / "checkpoints").glob(".step-*.tmp-*")))
    ckpt = latest_checkpoint(project / "checkpoints")
    assert ckpt is not None, "no checkpoint survived"
    load_checkpoint(ckpt)
    coco = out / "coco" / "annotations.json"
    if coco.exists():  # an export is written atomically: complete or absent, never torn
        json.loads(coco.read_text())
    cfg = SessionConfig(trainer=TrainerConfig(batch_size=4, offer_min_steps=5))
    s = LiveSession(project, model=TinyClassifier(hidden=HIDDEN), config=cfg)
    try:
        assert s.store.integrity_check() == "ok"
        lost = 0
        for image_id, category in acked.items():
            ann = s.store.annotation(image_id)
            lost += ann is None or ann.category != category
        resumed_from = s.state.step
        assert s.last_checkpoint_step == int(ckpt.name.split("-")[1]) == resumed_from
        await s.start()
        await s.wait_steps(3, timeout=60)
        assert s.state.step >= resumed_from + 3, "training did not resume"
        assert s.state.error is None, s.state.error
    finally:
        await s.close()
    return {"lost": lost, "half_written": half_written}


@pytest.mark.slow
def test_sigkill_at_random_points_loses_no_label(tmp_path: Path) -> None:
    project, out = tmp_path / "project", tmp_path / "export"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO), project=str(project), out=str(out), hidden=HIDDEN, images=IMAGES))
    kills = scale(8, 52)
    rng = random.Random(int(os.environ.get("LIVETRAIN_KILL_SEED", "0")))
    acked: dict[int, int] = {}
    per_phase = dict.fromkeys(PHASES, 0)
    lost = dict.fromkeys(PHASES, 0)
    half_written = 0
    t0 = time.monotonic()
    for k in range(kills):
        phase = list(PHASES)[k % len(PHASES)]
        _kill_once(script, phase, rng, acked)
        result = asyncio.run(_check_and_resume(project, acked, out))
        per_phase[phase] += 1
        lost[phase] += result["lost"]
        half_written += result["half_written"] > 0
    seconds = time.monotonic() - t0
    for phase, what in PHASES.items():
        record(
            "faults",
            f"SIGKILL during {what}",
            per_phase[phase],
            "store integrity ok, every acknowledged label present, newest checkpoint loads, training resumed",
            lost[phase],
        )
    record(
        "faults",
        "of those kills, ones that left a half-written checkpoint folder (ignored on resume, pruned later)",
        half_written,
        f"{len(acked)} labels acknowledged across {kills} kills in {seconds:.0f} s",
        sum(lost.values()),
    )
    assert sum(lost.values()) == 0, f"acknowledged labels lost or changed: {lost}"
    assert len(acked) >= kills // 2
