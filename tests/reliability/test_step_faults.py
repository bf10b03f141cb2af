"""Faults inside a training step or a prediction: NaN loss, gradients that overflow, CUDA's out of memory,
a real failed CPU allocation, an exception in the model's code.

Each is switched on at a random moment of a running session and off again a little later, many times
over. Every time: the session reports it in ``state`` (what the panel shows), the task stays alive,
the weights are those of the last good step (or a rollback), predictions keep coming from them, and
training resumes once the fault is gone. No label is touched.
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
import torch

from livetrain_widgets import Annotation, LiveSession, SessionConfig, TrainerConfig

from ..tiny_model import TinyClassifier, two_class_images
from .report import record, scale

IMAGES, LABELS = two_class_images(16)
#: fault → words the reported error must contain
FAULTS = {
    "nan": "the loss is nan",
    "inf_grad": "gradients are not finite",
    "oom": "out of memory",
    "alloc": "out of memory",
    "error": "simulated failure inside the model",
}


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


async def _until(condition, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_faults_in_steps_are_reported_skipped_and_survived(tmp_project) -> None:
    cfg = SessionConfig(trainer=TrainerConfig(batch_size=4, lr=1e-2, offer_min_steps=5, rollback_after=3,
                                              snapshot_every=5, checkpoint_every_s=1e9))
    model = TinyClassifier()
    s = LiveSession(tmp_project, "classification", ["left", "right"], model=model, config=cfg)
    ids = s.add_images(IMAGES)
    for i, c in zip(ids[:8], LABELS[:8], strict=True):
        await s.submit(i, Annotation(16, 16, category=c))
    await s.start()
    await s.wait_steps(10, timeout=30)
    rng = random.Random(0)
    rounds = scale(3, 20)
    injected = dict.fromkeys(FAULTS, 0)
    rollbacks = predictions = 0
    for _ in range(rounds):
        for fault, words in FAULTS.items():
            await s.wait_steps(rng.randrange(1, 6), timeout=30)  # a random moment of training
            model.fail_with = fault
            await _until(lambda: s.state.error is not None)
            # The step in flight when the fault came may have finished; from the first failure on,
            # nothing may change but a rollback, which half the rounds wait for.
            before = _weights(model)
            step = s.state.step
            rolled = rng.random() < 0.5
            if rolled:  # failing steps back off (0.1, 0.2, 0.4 s); the third in a row rolls back
                await _until(lambda: "rolled back" in (s.state.error or ""))
            err = s.state.error
            assert err and words in err.lower(), (fault, err)
            assert s.trainer.running and s.state.step == step, "a failed step must not count"
            now = _weights(model)
            if rolled:
                good = s.trainer._good_state["model"]
                assert all(torch.equal(now[k], good[k]) for k in good), "not the snapshot's weights"
                rollbacks += 1
            else:
                assert all(torch.equal(now[k], before[k]) for k in before), f"{fault} changed the weights"
            # Predictions keep coming while steps fail, from finite (last good) weights.
            pred = await s.predict(ids[12])
            predictions += 1
            assert np.isfinite(pred.annotation.category_scores).all()
            model.fail_with = None
            await s.wait_steps(3, timeout=30)
            assert s.state.error is None and s.state.step > step
            injected[fault] += 1
    # A prediction that fails inside the model: a clear error for that request, training unaffected.
    model.fail_with = "predict"
    try:
        # fresh: the pre-labels of ids[13] were computed ahead, before the model broke (served as they are)
        await s.predict(ids[13], fresh=True)
        raise AssertionError("a failing predict must raise")
    except RuntimeError as exc:
        assert "predict" in str(exc)
    model.fail_with = None
    step = s.state.step
    await s.wait_steps(3, timeout=30)
    assert s.state.step > step and s.state.error is None
    assert s.store.labeled_count() == 8 and s.store.integrity_check() == "ok"
    await s.close()

    names = {"nan": "NaN loss", "inf_grad": "non-finite gradients", "oom": "CUDA out-of-memory error",
             "alloc": "real failed CPU allocation (64 TiB)", "error": "exception in the model's loss code"}
    for fault, n in injected.items():
        record("faults", f"{names[fault]} in a training step", n,
               "reported in state; step skipped, weights unchanged (or rolled back); predictions served; "
               "training resumed", 0)
    record("faults", "of those, runs of failures that rolled the weights back to a snapshot", rollbacks,
           f"{predictions} predictions served while steps were failing, all finite", 0)
    record("faults", "exception in the model's predict", 1, "that request fails with the model's message; "
           "training goes on", 0)
