"""The real embedded detector on real BCCD images, headless: label 5, get pre-labels on the 6th."""

from __future__ import annotations

import numpy as np
import pytest

from livetrain_widgets import LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.engine.formats import load_labels

pytestmark = pytest.mark.slow
CLASSES = ["RBC", "WBC", "Platelets"]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x1 - x0).clip(0) * (y1 - y0).clip(0)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


async def test_label_five_bccd_images_then_prelabels_on_the_sixth(data_dir, tmp_path) -> None:
    bccd = data_dir / "bccd"
    paths = sorted((bccd / "JPEGImages").glob("*.jpg"))[:6]
    gt = load_labels("voc", bccd / "Annotations", paths, CLASSES)
    assert not gt.errors
    session = LiveSession(
        tmp_path / "cells", "detection", CLASSES,
        config=SessionConfig(trainer=TrainerConfig(seed=0), threshold=0.2), model_options={"seed": 0},
    )
    ids = session.add_images(paths)
    await session.start()
    for image_id, path in zip(ids[:5], paths[:5], strict=True):
        await session.submit(image_id, gt.annotations[path.resolve()])
        await session.wait_steps(12, timeout=300)
    await session.wait_steps(40, timeout=600)
    pred = await session.predict(ids[5])
    truth = gt.annotations[paths[5].resolve()]
    assert pred.step >= 60 and pred.offered, session.state
    assert len(pred.annotation) > 0
    # Pre-labels land on real cells: most predicted boxes overlap a labeled one.
    overlap = iou(pred.annotation.boxes, truth.boxes).max(axis=1)
    assert (overlap > 0.5).sum() >= 5 and np.mean(overlap > 0.3) > 0.5, overlap
    await session.stop()  # final checkpoint
    before = await session.predict(ids[5], threshold=0.0)
    await session.close()

    # The checkpoint round trip gives identical predictions.
    reopened = LiveSession(tmp_path / "cells")
    after = await reopened.predict(ids[5], threshold=0.0)
    assert reopened.state.step == before.step
    np.testing.assert_array_equal(after.annotation.boxes, before.annotation.boxes)
    np.testing.assert_array_equal(after.annotation.scores, before.annotation.scores)
    np.testing.assert_array_equal(after.annotation.labels, before.annotation.labels)
    await reopened.close()
