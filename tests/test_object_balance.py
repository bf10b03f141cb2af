"""Per-object class balance: the trainer's class weights from object shares, and the losses that take them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.trainer import Trainer, TrainerConfig
from livetrain_widgets.models import _detection as det
from livetrain_widgets.models import _segmentation as seg
from livetrain_widgets.models.embedded import EmbeddedModel
from livetrain_widgets.study.simulate import Strategy

from .tiny_model import TinyClassifier


def boxes(*labels: int) -> Annotation:
    n = len(labels)
    b = np.array([[4 * i, 0, 4 * i + 3, 3] for i in range(n)], np.float32).reshape(-1, 4)
    return Annotation(64, 64, b, list(labels))


class Recording(TinyClassifier):
    """Remembers every set_class_weights call; trains as a classifier on the image classes."""

    def __init__(self) -> None:
        super().__init__(classes=("a", "b", "c"))
        self.calls: list[list[float] | None] = []

    def set_class_weights(self, weights):  # type: ignore[no-untyped-def]
        super().set_class_weights(weights)
        self.calls.append(None if weights is None else list(weights))


def image(k: int) -> np.ndarray:
    return np.full((16, 16, 3), 10 * k, np.uint8)


def test_weights_are_repeat_factors_of_object_shares_and_follow_the_labeled_set() -> None:
    model = Recording()
    tr = Trainer(model, image, TrainerConfig(object_balance=0.3, batch_size=2, min_labeled=1))
    assert tr.class_weights() == [1.0, 1.0, 1.0]  # nothing labeled
    tr.set_sample(0, boxes(0, 0, 0, 0, 0, 0, 0, 0, 1))  # class shares 8/10, 1/10 (class 2 below)
    tr.set_sample(1, boxes(2))
    w = tr.class_weights()
    assert w == pytest.approx([1.0, math.sqrt(0.3 / 0.1), math.sqrt(0.3 / 0.1)], abs=1e-4)
    tr.set_sample(1, boxes(2, 2, 2, 2, 2, 2, 2, 2, 2, 2))  # relabeled: its old objects leave the counts
    assert tr.class_weights() == pytest.approx([1.0, math.sqrt(0.3 / (1 / 19)), 1.0], abs=1e-4)
    tr.remove_sample(1)
    assert tr.class_weights() == pytest.approx([1.0, math.sqrt(0.3 / (1 / 9)), 1.0], abs=1e-4)
    # resuming counts the stored labels once, however often they are loaded
    again = Trainer(Recording(), image, TrainerConfig(object_balance=0.3))
    again.load_samples({0: boxes(0, 0, 0, 0, 0, 0, 0, 0, 1)})
    again.load_samples({0: boxes(0, 0, 0, 0, 0, 0, 0, 0, 1)})
    assert again.class_weights() == tr.class_weights()
    tr.close()
    again.close()


def test_the_model_gets_the_weights_only_when_they_change_and_image_classes_count() -> None:
    model = Recording()
    tr = Trainer(model, image, TrainerConfig(object_balance=0.5, batch_size=2, min_labeled=2))
    for k, c in enumerate([0, 0, 0, 1]):
        tr.set_sample(k, Annotation(16, 16, category=c))
    tr.run_steps(3)
    expected = [1.0, round(math.sqrt(0.5 / 0.25), 4), 1.0]
    assert model.calls == [expected] and tr.status()["class_weights"] == expected
    tr.set_sample(4, Annotation(16, 16, category=1))
    tr.run_steps(2)
    assert model.calls == [expected, [1.0, round(math.sqrt(0.5 / 0.4), 4), 1.0]]
    tr.close()
    off = Recording()
    tr = Trainer(off, image, TrainerConfig(batch_size=2))
    for k, c in enumerate([0, 0, 1]):
        tr.set_sample(k, Annotation(16, 16, category=c))
    tr.run_steps(2)
    assert off.calls == [] and tr.class_weights() is None and tr.status()["class_weights"] is None
    tr.close()
    with pytest.raises(ValueError, match="object_balance"):
        TrainerConfig(object_balance=1.5)


def test_focal_loss_weighs_each_class_channel() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    heat = torch.rand(2, 3, 8, 8, generator=g) * 0.9
    heat[0, 1, 2, 2] = heat[1, 2, 5, 5] = heat[1, 0, 1, 1] = 1.0
    plain = det.focal_loss(logits, heat)
    assert det.focal_loss(logits, heat, torch.ones(3)) == pytest.approx(float(plain), rel=1e-6)
    # the loss is a sum over channels: weights scale each channel's part
    n = float(heat.eq(1).sum())
    parts = [float(det.focal_loss(logits[:, c:c + 1], heat[:, c:c + 1])) * max(float(heat[:, c].eq(1).sum()), 1) / n
             for c in range(3)]
    assert sum(parts) == pytest.approx(float(plain), rel=1e-5)
    w = torch.tensor([1.0, 2.0, 3.0])
    weighted = sum(p * float(x) for p, x in zip(parts, w, strict=True))
    assert float(det.focal_loss(logits, heat, w)) == pytest.approx(weighted, rel=1e-5)


def test_segmentation_and_classification_losses_take_weights() -> None:
    g = torch.Generator().manual_seed(1)
    cls_logits, dist_logits = torch.randn(1, 3, 8, 8, generator=g), torch.randn(1, 1, 8, 8, generator=g)
    cls = torch.randint(0, 3, (1, 8, 8), generator=g)
    dist = torch.rand(1, 1, 8, 8, generator=g)
    plain = seg.segmentation_loss(cls_logits, dist_logits, cls, dist)
    ones = seg.segmentation_loss(cls_logits, dist_logits, cls, dist, torch.ones(2))
    assert float(ones) == pytest.approx(float(plain))
    heavy = seg.segmentation_loss(cls_logits, dist_logits, cls, dist, torch.tensor([5.0, 1.0]))
    ce = F.cross_entropy(cls_logits, cls, weight=torch.tensor([1.0, 5.0, 1.0]))
    assert float(heavy - plain) == pytest.approx(float(ce - F.cross_entropy(cls_logits, cls)), rel=1e-5)

    m = EmbeddedModel("classification", ["a", "b"], pretrained=False, input_size=64, augment=False, seed=0)
    assert m.supports_class_weights and not TinyClassifier.supports_class_weights
    imgs = [np.full((40, 40, 3), v, np.uint8) for v in (20, 200, 90)]
    targets = [Annotation(40, 40, category=c) for c in (0, 1, 1)]
    m.eval()  # no dropout: the losses differ only by the weights
    with torch.no_grad():
        base = float(m.loss(imgs, targets))
        m.set_class_weights([1.0, 1.0])
        assert float(m.loss(imgs, targets)) == pytest.approx(base, rel=1e-6)
        m.set_class_weights([3.0, 1.0])
        assert float(m.loss(imgs, targets)) != pytest.approx(base, rel=1e-4)
        m.set_class_weights(None)
        assert float(m.loss(imgs, targets)) == pytest.approx(base, rel=1e-6)
    with pytest.raises(ValueError, match="2 class weights"):
        m.set_class_weights([1.0])


def test_embedded_detector_trains_with_weights() -> None:
    m = EmbeddedModel("detection", ["a", "b"], pretrained=False, input_size=64, augment=False, seed=0)
    tr = Trainer(m, lambda k: np.full((64, 64, 3), 40 * k, np.uint8), TrainerConfig(object_balance=0.3))
    tr.set_sample(0, boxes(0, 0, 0, 0, 0, 0, 1))
    tr.set_sample(1, boxes(0, 0, 0, 0))
    done = tr.run_steps(2)
    assert len(done) == 2 and all(math.isfinite(r.loss) for r in done)
    assert tr.status()["class_weights"] == pytest.approx([1.0, math.sqrt(0.3 / (1 / 11))], abs=1e-4)
    tr.close()


def test_study_strategy_options() -> None:
    assert Strategy.parse("live:objbalance=0.3").object_balance == 0.3
    assert Strategy.parse("live").object_balance is None
    with pytest.raises(ValueError, match="objbalance"):
        Strategy.parse("live:objbalance=2")
