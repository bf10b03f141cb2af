"""Predict ahead: pre-labels of the next images computed between steps, kept with their step, refreshed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from livetrain_widgets import Annotation, LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.engine.ahead import AheadConfig, PredictAhead

from .tiny_model import TinyClassifier, two_class_images

IMAGES, LABELS = two_class_images(24)


class FakeModel:
    """A predict() that records what it was asked and answers with the step, on a controlled clock."""

    def __init__(self) -> None:
        self.step = 0
        self.weights = 0
        self.calls: list[int] = []
        self.fail = False

    async def predict(self, images: Sequence[np.ndarray]) -> tuple[list[Annotation], int]:
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("the model broke")
        self.calls.append(int(images[0][0, 0, 0]))
        return [Annotation(4, 4, category=self.step % 2)], self.step


def fake_ahead(model: FakeModel, **cfg: int) -> PredictAhead:
    image = {k: np.full((4, 4, 3), k, np.uint8) for k in range(10)}
    return PredictAhead(model.predict, image.__getitem__, lambda: model.step, lambda: model.weights,
                        AheadConfig(**cfg))


async def settle() -> None:
    # image loading runs in a worker thread: give it real time, not only loop iterations
    for _ in range(10):
        await asyncio.sleep(0.01)


async def test_queue_is_predicted_once_and_refreshed_after_refresh_steps() -> None:
    m = FakeModel()
    ahead = fake_ahead(m, images=2, refresh_steps=3, max_age_steps=6)
    ahead.start()
    ahead.want([1, 2, 3])  # only the first two are kept
    await settle()
    assert m.calls == [1, 2] and ahead.queue == [1, 2]
    for _ in range(2):  # two steps: still recent enough, nothing recomputed
        m.step += 1
        ahead.on_step()
        await settle()
    assert m.calls == [1, 2]
    m.step += 1
    ahead.on_step()
    await settle()
    assert m.calls == [1, 2, 1, 2] and ahead.refreshes == 2
    assert ahead.peek(1).step == 3
    m.step += 1
    got = ahead.take(1)
    assert got is not None and got.step == 3 and ahead.take(1) is None  # taken once
    assert list(ahead.ages) == [1] and ahead.served == 1 and ahead.missed == 1
    await ahead.stop()


async def test_too_old_rollback_and_labeled_images_are_never_served() -> None:
    m = FakeModel()
    ahead = fake_ahead(m, images=3, refresh_steps=2, max_age_steps=4)
    ahead.start()
    ahead.want([1, 2, 3])
    await settle()
    await ahead.stop()  # nothing refreshes any more
    m.step = 5
    assert ahead.take(1) is None and ahead.too_old == 1  # 5 steps behind > max_age 4
    m.step = 4
    assert ahead.take(2) is not None  # exactly max_age is still shown
    m.weights += 1  # a rollback: the kept weights are not an ancestor of these
    m.step = 0
    assert ahead.take(3) is None and ahead.too_old == 2
    ahead.start()
    ahead.want([1, 2, 3])
    await settle()
    ahead.discard(2)  # labeled meanwhile
    assert ahead.peek(2) is None and ahead.queue == [1, 3]
    ahead.want([3])
    assert ahead.peek(1) is None and ahead.peek(3) is not None
    await ahead.stop()
    s = ahead.stats()
    assert s["served"] == 1 and s["too_old"] == 2 and s["age_steps"]["histogram"] == {4: 1}


async def test_a_failing_prediction_is_reported_and_retried_after_a_refresh() -> None:
    m = FakeModel()
    m.fail = True
    ahead = fake_ahead(m, images=1, refresh_steps=2, max_age_steps=4)
    ahead.start()
    ahead.want([1])
    await asyncio.sleep(0.05)
    assert "the model broke" in ahead.stats()["error"] and ahead.peek(1) is None
    m.fail = False
    ahead.on_step()
    await settle()
    assert ahead.peek(1) is None  # not retried in a loop on the same weights
    m.step = 2
    ahead.on_step()
    for _ in range(300):  # retried after the back-off; polled, since a busy machine can take longer
        if ahead.peek(1) is not None:
            break
        await asyncio.sleep(0.02)
    assert ahead.peek(1) is not None and ahead.stats()["error"] is None
    await ahead.stop()


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="refresh_steps"):
        AheadConfig(refresh_steps=0)
    with pytest.raises(ValueError, match="max_age_steps"):
        AheadConfig(refresh_steps=10, max_age_steps=5)


# ------------------------------------------------------------------------------------ a real session
def open_session(project, ahead: AheadConfig | None = None, step_delay: float = 0.005) -> LiveSession:
    cfg = SessionConfig(trainer=TrainerConfig(batch_size=4, lr=1e-2, offer_min_steps=5),
                        ahead=ahead or AheadConfig(images=2, refresh_steps=5, max_age_steps=15))
    return LiveSession(project, "classification", ["left", "right"], model=TinyClassifier(step_delay=step_delay),
                       config=cfg)


async def wait_kept(s: LiveSession, image_id: int, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if s.ahead.peek(image_id) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"image {image_id} was not predicted ahead: {s.ahead.stats()}")


async def test_session_serves_the_next_images_ahead_while_training(tmp_path) -> None:
    s = open_session(tmp_path / "p")
    ids = s.add_images(IMAGES)
    await s.start()
    for i in ids[:4]:
        await s.submit(i, Annotation(16, 16, category=LABELS[ids.index(i)]))
    await s.wait_steps(20, timeout=30)
    first = await s.predict(ids[4])
    assert not first.ahead and s.ahead.queue == ids[5:7]
    ages = []
    for k in range(4, 14):
        await s.wait_steps(3, timeout=30)  # the person labels; training goes on
        await s.submit(ids[k], Annotation(16, 16, category=LABELS[k]))
        await wait_kept(s, ids[k + 1])
        pred = await s.predict(ids[k + 1])
        assert pred.ahead and 0 <= pred.age <= 15 and pred.step + pred.age <= s.trainer.step  # aged when served
        # what was stored (and will be judged at submission) is exactly what was served
        stored = s.store.prediction(ids[k + 1])
        assert stored.model_step == pred.step and stored.annotation.category == pred.annotation.category
        ages.append(pred.age)
    st = s.ahead.stats()
    assert st["served"] == 10 and st["age_steps"]["max"] == max(ages) and st["predictions"] >= 11
    assert s.trainer.step > 30 and st["refreshes"] >= 1  # training went on, and kept ones were refreshed
    fresh = await s.predict(ids[15], fresh=True)
    assert not fresh.ahead and fresh.age <= 1  # a step may end while it is being stored
    await s.close()


async def test_session_refreshes_kept_prelabels_and_invalidates_on_rollback(tmp_path) -> None:
    s = open_session(tmp_path / "p")
    ids = s.add_images(IMAGES)
    await s.start()
    for i in ids[:4]:
        await s.submit(i, Annotation(16, 16, category=LABELS[ids.index(i)]))
    await s.predict(ids[4])
    await wait_kept(s, ids[5])
    made = s.ahead.peek(ids[5]).step
    await s.wait_steps(12, timeout=30)
    await asyncio.sleep(0.1)
    assert s.ahead.peek(ids[5]).step >= made + 5  # refreshed as the model moved on
    s.trainer.weights_version += 1  # what a rollback does
    await s.stop()  # no refresh after this: the kept one is from other weights
    pred = await s.predict(ids[5])
    assert not pred.ahead and s.ahead.too_old == 1
    await s.close()


async def test_labeled_images_are_not_predicted_ahead_and_images_0_turns_it_off(tmp_path) -> None:
    s = open_session(tmp_path / "p")
    ids = s.add_images(IMAGES)
    await s.submit(ids[6], Annotation(16, 16, category=LABELS[6]))
    assert s.upcoming(ids[4]) == [ids[5], ids[7]]
    assert s.upcoming(ids[-1]) == [ids[0], ids[1]]  # wraps
    s.prefetch([ids[6], ids[8]])
    assert s.ahead.queue == [ids[8]]
    await s.close()
    off = open_session(tmp_path / "q", AheadConfig(images=0))
    ids = off.add_images(IMAGES)
    await off.start()
    pred = await off.predict(ids[0])
    assert not pred.ahead and off.ahead.queue == [] and off.upcoming(ids[0]) == []
    await off.close()


async def test_a_model_that_fails_ahead_fails_in_view_when_the_image_opens(tmp_path) -> None:
    s = open_session(tmp_path / "p")
    ids = s.add_images(IMAGES)
    await s.start()
    await s.predict(ids[0])
    s.trainer.model.fail_with = "predict"
    s.prefetch([ids[3]])
    for _ in range(200):
        if s.ahead.stats()["error"]:
            break
        await asyncio.sleep(0.01)
    assert "simulated failure" in s.ahead.stats()["error"]
    with pytest.raises(RuntimeError, match="simulated failure"):
        await s.predict(ids[3])
    s.trainer.model.fail_with = None
    assert (await s.predict(ids[3])).annotation.category in (0, 1)
    await s.close()
