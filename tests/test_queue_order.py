"""The queue order of a session (SessionConfig.order): which unlabeled image comes next."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from livetrain_widgets import Annotation, LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.engine.ahead import AheadConfig
from livetrain_widgets.engine.queue import most_uncertain, seeded_order, uncertainty

from .tiny_model import TinyClassifier, two_class_images

IMAGES, LABELS = two_class_images(10)


def open_session(project, **cfg) -> LiveSession:
    config = SessionConfig(trainer=TrainerConfig(batch_size=2), **cfg)
    return LiveSession(project, "classification", ["left", "right"], model=TinyClassifier(), config=config)


def test_uncertainty_counts_unsure_objects_and_classes() -> None:
    boxes = np.array([[0, 0, 4, 4]] * 3, np.float32)
    sure = Annotation(16, 16, boxes, [0, 0, 0], np.array([0.99, 0.98, 0.01], np.float32))
    unsure = Annotation(16, 16, boxes, [0, 0, 0], np.array([0.5, 0.6, 0.01], np.float32))
    assert uncertainty(unsure) > 1.9 > 0.3 > uncertainty(sure)  # 1 bit at 0.5; 0.01 is below the floor
    assert uncertainty(Annotation.empty(16, 16)) == 0.0
    even = Annotation(16, 16, category=0, category_scores=np.array([0.5, 0.5], np.float32))
    peaked = Annotation(16, 16, category=0, category_scores=np.array([0.99, 0.01], np.float32))
    assert uncertainty(even) == pytest.approx(1.0) and uncertainty(peaked) < 0.1
    preds = {3: peaked, 5: even, 7: None}
    assert most_uncertain([3, 5, 7], preds.get) == 5
    assert most_uncertain([7, 3], {}.get) == 7  # nothing predicted yet: the pool's own order
    assert sorted(seeded_order([4, 2, 9], 1)) == [2, 4, 9] and seeded_order([4, 2, 9], 1) == seeded_order([9, 4, 2], 1)


async def test_file_and_random_order_skip_labeled_images(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown queue order 'hardest'"):
        SessionConfig(order="hardest")
    s = open_session(tmp_path / "f")
    ids = s.add_images(IMAGES)
    assert s.next_unlabeled() == ids[0] and s.next_unlabeled(after=ids[3]) == ids[4]
    assert s.next_unlabeled(after=ids[-1], exclude={ids[0]}) == ids[1]  # wraps, skipping the excluded
    await s.close()
    r = open_session(tmp_path / "r", order="random", order_seed=3)
    ids = r.add_images(IMAGES)
    walk, after = [], None
    for _ in ids:
        after = r.next_unlabeled(after=after)
        walk.append(after)
        r._labeled.add(after)  # as a submission does
    assert sorted(walk) == ids and walk != ids and walk == seeded_order(ids, 3)
    assert r.next_unlabeled() is None
    await r.close()


async def test_uncertain_order_opens_the_least_certain_image_predicted_ahead(tmp_path) -> None:
    s = open_session(tmp_path / "u", order="uncertain", ahead=AheadConfig(images=4))
    ids = s.add_images(IMAGES)
    scores = {ids[1]: [0.97, 0.03], ids[2]: [0.55, 0.45], ids[3]: [0.8, 0.2], ids[6]: [0.5, 0.5]}

    def usable(i: int):
        if i not in scores:
            return None
        return SimpleNamespace(annotation=Annotation(16, 16, category=0, category_scores=np.array(scores[i])))

    s.ahead.usable = usable  # the pre-labels the ahead predictor would keep for the pool
    # with ids[0] open, the pool is the first 4 other unlabeled images in file order; ids[6] is beyond it
    assert s.upcoming(ids[0]) == ids[1:5]
    assert s.next_unlabeled(after=ids[0]) == ids[2]
    s._labeled.update({ids[0], ids[2]})
    # the image left for later (ids[1], nearly certain) stays in the pool: ids[1], ids[3], ids[4], ids[5]
    assert s.upcoming(ids[2]) == [ids[1], *ids[3:6]]
    assert s.next_unlabeled(after=ids[2]) == ids[3]
    s._labeled.add(ids[3])
    assert s.next_unlabeled(after=ids[3]) == ids[6]  # ids[6] came into the pool: ids[1], ids[4..6]
    scores.clear()  # nothing predicted in the pool yet: its first image
    assert s.next_unlabeled(after=ids[3]) == ids[1]
    s._labeled.add(ids[1])
    assert s.next_unlabeled(after=ids[1], exclude={ids[4]}) == ids[5]
    await s.close()
