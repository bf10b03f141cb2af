"""The async trainer with a tiny model: phases, pause/resume, failures, prediction, state round trip."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import torch

from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.plateau import PlateauConfig
from livetrain_widgets.engine.trainer import Trainer, TrainerConfig

from .tiny_model import TinyClassifier, plateaued_trainer, two_class_images

IMAGES, LABELS = two_class_images(40)


def make_trainer(**kw) -> Trainer:
    torch.manual_seed(0)
    plateau = kw.pop("plateau", None)
    cfg = TrainerConfig(batch_size=4, lr=1e-2, offer_min_steps=5, **kw)
    return Trainer(TinyClassifier(), lambda k: IMAGES[k], cfg, plateau_config=plateau)


def label(k: int) -> Annotation:
    im = IMAGES[k]
    return Annotation(im.shape[1], im.shape[0], category=LABELS[k])


async def test_waits_for_min_labeled_then_trains_and_predicts() -> None:
    tr = make_trainer()
    await tr.start()
    await asyncio.sleep(0.05)
    assert tr.phase == "waiting" and tr.step == 0
    tr.set_sample(0, label(0))
    await asyncio.sleep(0.05)
    assert tr.phase == "waiting"
    tr.set_sample(1, label(1))
    for k in range(2, 12):
        tr.set_sample(k, label(k))
    taken = await tr.wait_steps(60, timeout=30)
    assert taken >= 60 and tr.phase == "training"
    preds, step = await tr.predict([IMAGES[20], IMAGES[21]])
    assert step >= 60
    assert [p.category for p in preds] == [LABELS[20], LABELS[21]]
    assert tr.offering  # the loss fell far below where it started
    await tr.stop()
    assert tr.phase == "stopped"
    tr.close()


async def test_plateau_pauses_and_new_sample_resumes() -> None:
    tr = await plateaued_trainer(PlateauConfig(window=10, patience=1), IMAGES[0])
    assert tr.phase == "paused", tr.status()
    assert tr.plateau.plateaued
    step = tr.step
    await asyncio.sleep(0.2)
    assert tr.step == step  # nothing trains while paused
    tr.set_sample(10, label(10))
    assert not tr.plateau.plateaued
    await tr.wait_steps(3, timeout=10)
    assert tr.step > step
    await tr.stop()
    tr.close()


async def test_start_past_plateau_trains_again_and_a_plain_start_stays_paused() -> None:
    """The panel's Start training after Stop on a plateaued trainer: a person who presses Start expects steps
    (the CI run of the real-kernel panel test saw a restarted trainer that stayed paused at its plateau)."""
    tr = await plateaued_trainer(PlateauConfig(window=10, patience=1), IMAGES[0])
    assert tr.phase == "paused", tr.status()
    await tr.stop()
    await tr.start()  # as a session resumes: the plateau stands, nothing trains
    step = tr.step
    await asyncio.sleep(0.3)
    assert tr.phase == "paused" and tr.step == step
    await tr.start(past_plateau=True)  # already running, paused: woken and trained again
    await tr.wait_steps(5, timeout=10)
    assert tr.step >= step + 5
    await tr.stop()
    step = tr.step
    await tr.start(past_plateau=True)  # from stopped
    await tr.wait_steps(3, timeout=10)
    assert tr.step >= step + 3
    await tr.stop()
    tr.close()


async def test_nan_loss_and_model_errors_are_reported_and_survived() -> None:
    tr = make_trainer(rollback_after=2)
    for k in range(6):
        tr.set_sample(k, label(k))
    await tr.start()
    await tr.wait_steps(30, timeout=20)
    good = {k: v.clone() for k, v in tr.model.state_dict().items()}
    step = tr.step
    tr.model.fail_with = "nan"
    for _ in range(100):
        await asyncio.sleep(0.02)
        if tr.error:
            break
    assert tr.error and "nan" in tr.error.lower()
    assert tr.running and tr.step == step  # skipped, not counted, task alive
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, good[k]), k  # a NaN step never touches the weights
    # Predictions keep coming from the last good weights while steps fail.
    preds, _ = await tr.predict([IMAGES[7]])
    assert math.isfinite(float(preds[0].category_scores.sum()))
    tr.model.fail_with = "error"
    for _ in range(200):
        await asyncio.sleep(0.02)
        if tr.error and "rolled back" in tr.error:
            break
    assert "simulated failure" in tr.error and "rolled back" in tr.error
    tr.model.fail_with = None
    await tr.wait_steps(5, timeout=10)
    assert tr.error is None and tr.step > step
    await tr.stop()
    tr.close()


async def test_unreadable_sample_is_left_out_not_fatal() -> None:
    def load(k: int) -> np.ndarray:
        if k == 3:
            raise OSError("file vanished")
        return IMAGES[k]

    tr = Trainer(TinyClassifier(), load, TrainerConfig(batch_size=4))
    for k in range(5):
        tr.set_sample(k, label(k))
    await tr.start()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if tr.error:
            break
    assert "image 3" in tr.error
    await tr.wait_steps(5, timeout=10)
    assert 3 not in tr.sampler.keys and tr.step >= 5
    await tr.stop()
    tr.close()


async def test_state_dict_round_trip_gives_identical_predictions_and_batches() -> None:
    tr = make_trainer()
    for k in range(8):
        tr.set_sample(k, label(k))
    await tr.start()
    await tr.wait_steps(25, timeout=20)
    await tr.stop()
    state = tr.state_dict()
    other = make_trainer()
    other.load_samples({k: label(k) for k in range(8)})
    other.load_state_dict(state)
    a, _ = await tr.predict(IMAGES[:6])
    b, _ = await other.predict(IMAGES[:6])
    for pa, pb in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa.category_scores, pb.category_scores)
    assert other.step == tr.step and other.sampler.next_batch(4) == tr.sampler.next_batch(4)
    tr.close()
    other.close()


async def test_out_of_memory_is_reported_and_training_goes_on() -> None:
    tr = make_trainer()
    for k in range(4):
        tr.set_sample(k, label(k))
    tr.model.fail_with = "oom"
    await tr.start()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if tr.error:
            break
    assert tr.error.startswith("out of memory") and tr.running and tr.step == 0
    tr.model.fail_with = None
    await tr.wait_steps(3, timeout=10)
    assert tr.error is None and tr.step >= 3
    await tr.stop()
    tr.close()


async def test_mixed_precision_path_trains_under_autocast() -> None:
    # On a CPU, amp=True runs the steps under bfloat16 autocast (CUDA would add float16 loss scaling).
    tr = make_trainer(amp=True)
    assert tr.amp and tr._amp_dtype == torch.bfloat16 and tr._scaler is None
    seen = []
    orig = tr.model.net.forward
    tr.model.net.forward = lambda x: seen.append(torch.is_autocast_enabled("cpu")) or orig(x)
    for k in range(8):
        tr.set_sample(k, label(k))
    await tr.start()
    await tr.wait_steps(40, timeout=30)
    preds, _ = await tr.predict([IMAGES[20]])
    assert seen and all(seen)
    assert preds[0].category == LABELS[20] and tr.offering
    await tr.stop()
    tr.close()


def test_learning_rate_boost_decays_with_the_labeled_set_and_restarts_on_a_new_class() -> None:
    import pytest

    tr = make_trainer(lr_boost=3.0, boost_half_life=4.0, restart_steps=10)
    base = [g["base_lr"] for g in tr.optimizer.param_groups]
    for k in range(2):  # min_labeled: the full boost
        tr.set_sample(k, Annotation(16, 16, category=0))
    assert tr.lr_scale() == pytest.approx(3.0)
    tr.run_steps(1)
    assert [g["lr"] for g in tr.optimizer.param_groups] == pytest.approx([3.0 * b for b in base])
    for k in range(2, 6):  # 4 more labels, one half-life: 1 + 2 * 0.5
        tr.set_sample(k, Annotation(16, 16, category=0))
    assert tr.lr_scale() == pytest.approx(2.0)
    tr.run_steps(3)
    assert tr.status()["lr_scale"] == pytest.approx(2.0)
    tr.set_sample(6, Annotation(16, 16, category=1))  # a class never trained on: warm restart
    at = tr.step
    assert tr.lr_scale() == pytest.approx(3.0)
    tr.run_steps(5)
    half = 1 + 2.0 * 0.5 * (1 + math.cos(math.pi * 5 / 10))
    assert tr.lr_scale() == pytest.approx(max(half, 1 + 2.0 * 0.5 ** (5 / 4.0)))
    tr.run_steps(10)
    assert tr.step >= at + 10 and tr.lr_scale() == pytest.approx(1 + 2.0 * 0.5 ** (5 / 4.0))
    tr.set_sample(7, Annotation(16, 16, category=1))  # a class seen before: no restart
    assert tr.lr_scale() == pytest.approx(1 + 2.0 * 0.5 ** (6 / 4.0))
    # the boost survives a checkpoint, and one written before it (no base_lr) loads with its rate as base
    state = tr.state_dict()
    again = make_trainer(lr_boost=3.0, boost_half_life=4.0, restart_steps=10)
    again.load_state_dict(state)
    assert [g["base_lr"] for g in again.optimizer.param_groups] == base
    for g in state["optimizer"]["param_groups"]:
        del g["base_lr"]
    old = make_trainer()
    old.load_state_dict(state)
    assert all(g["base_lr"] == g["lr"] for g in old.optimizer.param_groups)
    tr.close()
    again.close()
    old.close()


def test_constant_rate_by_default_and_bad_schedules_refused() -> None:
    import pytest

    tr = make_trainer()
    for k in range(6):
        tr.set_sample(k, label(k))
    tr.run_steps(2)
    assert tr.lr_scale() == 1.0 and tr.optimizer.param_groups[0]["lr"] == 1e-2
    tr.close()
    with pytest.raises(ValueError, match="lr_boost"):
        TrainerConfig(lr_boost=0.5)
