"""The trainer's bounded log of the batches it trained on (what the sampler plot reads)."""

from __future__ import annotations

import asyncio

import numpy as np
import torch

from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.trainer import StepResult, Trainer, TrainerConfig

from .tiny_model import TinyClassifier, two_class_images

IMAGES, LABELS = two_class_images(12)


def label(k: int) -> Annotation:
    return Annotation(16, 16, category=LABELS[k])


async def test_batch_log_holds_each_trained_batch_with_the_sampler_step_of_its_draw() -> None:
    torch.manual_seed(0)
    model = TinyClassifier()
    trained: list[StepResult] = []
    tr = Trainer(model, lambda k: IMAGES[k], TrainerConfig(batch_size=3, lr=1e-2), on_step=trained.append)
    assert tr.batch_log.maxlen is not None and tr.batch_log.maxlen >= 1000  # bounded, yet long enough
    for k in range(4):
        tr.set_sample(k, label(k))
    await tr.start()
    assert await tr.wait_steps(10, timeout=30) == 10

    # A sample that joins now is in the next batch drawn; that batch was drawn at its entered step.
    tr.set_sample(10, label(10))
    entered = dict(zip(tr.sampler.stats()["keys"], tr.sampler.stats()["entered_step"], strict=True))[10]
    await tr.wait_steps(5, timeout=30)
    first = next(entry for entry in tr.batch_log if 10 in entry[2])
    assert first[1] == entered

    # Failing steps draw batches (the sampler advances) that are never trained on: not logged.
    drawn_before = tr.sampler.step
    model.fail_with = "error"
    # Wait for a failure to be reported rather than a fixed time: a slow, shared CI machine can take
    # longer than any fixed window to draw the next batch.
    deadline = asyncio.get_running_loop().time() + 30
    while tr.error is None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    model.fail_with = None
    assert tr.error is not None
    failed_draws = tr.sampler.step - drawn_before
    assert failed_draws >= 1
    await tr.wait_steps(10, timeout=30)
    await tr.stop()
    tr.close()

    log = list(tr.batch_log)
    assert [(s, keys) for s, _, keys in log] == [(r.step, r.batch) for r in trained]
    assert [s for s, _, _ in log] == list(range(1, tr.step + 1))
    draws = [b for _, b, _ in log]
    assert draws[0] == 0 and draws[-1] == tr.sampler.step - 1
    gaps = np.diff(draws) - 1
    assert gaps.sum() == failed_draws and (gaps >= 0).all()
    # only keys that were in the set when their batch was drawn
    entered = dict(zip(tr.sampler.stats()["keys"], tr.sampler.stats()["entered_step"], strict=True))
    assert all(entered[k] <= b for _, b, keys in log for k in keys)

