"""The simulated annotator's cost model, checked against hand-computed charges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livetrain_widgets import Annotation
from livetrain_widgets.study.costs import CostModel

C = CostModel()


def boxes(*rows: tuple[float, float, float, float, int], w: int = 200, h: int = 200,
          scores: bool = False) -> Annotation:
    b = np.array([r[:4] for r in rows], np.float32).reshape(-1, 4)
    lab = [r[4] for r in rows]
    return Annotation(w, h, b, lab, np.ones(len(rows), np.float32) if scores else None)


def test_manual_image_is_review_plus_one_drawing_per_box() -> None:
    gt = boxes((0, 0, 10, 10, 0), (20, 20, 40, 40, 1), (50, 50, 90, 90, 0))
    t, c = C.charge(None, gt, "detection")
    assert t == pytest.approx(5.0 + 3 * 7.0)
    assert c == {"correct": 0, "imprecise": 0, "wrong_class": 0, "extra": 0, "missed": 3}
    assert C.manual(gt, "detection") == t


def test_each_kind_of_box_correction_is_charged_once() -> None:
    gt = boxes((0, 0, 100, 100, 0), (120, 0, 180, 60, 1), (0, 120, 50, 170, 0), (150, 150, 190, 190, 1))
    pred = boxes(
        (0, 0, 100, 100, 0),  # correct
        (120, 0, 160, 60, 1),  # IoU 0.67: imprecise
        (0, 120, 50, 170, 1),  # same outline, wrong class
        (60, 60, 70, 70, 0),  # touches nothing: extra
        scores=True,
    )  # the fourth true box is missed
    t, c = C.charge(pred, gt, "detection")
    assert c == {"correct": 1, "imprecise": 1, "wrong_class": 1, "extra": 1, "missed": 1}
    assert t == pytest.approx(5.0 + 1.0 + 4.0 + 2.5 + 1.5 + 7.0)


def test_wrong_class_and_imprecise_pays_both() -> None:
    gt = boxes((0, 0, 100, 100, 0))
    pred = boxes((0, 0, 100, 60, 1), scores=True)  # IoU 0.6, other class
    t, c = C.charge(pred, gt, "detection")
    assert (c["imprecise"], c["wrong_class"], c["correct"]) == (1, 1, 0)
    assert t == pytest.approx(5.0 + 4.0 + 2.5)


def test_perfect_prelabels_cost_review_plus_verification() -> None:
    gt = boxes((0, 0, 10, 10, 0), (20, 20, 40, 40, 1))
    t, _ = C.charge(gt, gt, "detection")
    assert t == pytest.approx(5.0 + 2 * 1.0)


def square(x0: int, y0: int, size: int, n: int = 64) -> np.ndarray:
    m = np.zeros((n, n), bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


def test_masks_accept_fix_with_clicks_redraw() -> None:
    gt = Annotation.from_masks([square(0, 0, 20), square(30, 30, 20), square(0, 40, 20)], [0, 0, 0])
    pred = Annotation.from_masks(
        [square(0, 0, 20),  # IoU 1: accepted
         _rect(30, 30, 20, 16),  # IoU 0.8: accepted
         _rect(0, 40, 20, 10)],  # IoU 0.5 -> ceil((0.7-0.5)/0.1) = 2 clicks
        [0, 0, 0], scores=[1.0, 1.0, 1.0])
    costs = CostModel(mask_draw_s=60.0)
    t, c = costs.charge(pred, gt, "segmentation")
    assert (c["accepted"], c["fixed"], c["clicks"], c["redrawn"]) == (2, 1, 2, 0)
    assert t == pytest.approx(30.0 + 2 * 0.5 + 1.0 + 2 * 1.5)
    # an overlap of 0.35: more than 3 clicks would be needed, so the instance is redrawn
    low = Annotation.from_masks([_rect(0, 0, 20, 7)], [0], scores=[1.0])
    one = Annotation.from_masks([square(0, 0, 20)], [0])
    t2, c2 = costs.charge(low, one, "segmentation")
    assert c2["redrawn"] == 1 and t2 == pytest.approx(30.0 + 60.0)


def _rect(x0: int, y0: int, w: int, h: int, n: int = 64) -> np.ndarray:
    m = np.zeros((n, n), bool)
    m[y0:y0 + h, x0:x0 + w] = True
    return m


def test_mask_drawing_time_is_calibrated_to_the_manual_image_time() -> None:
    gts = [Annotation.from_masks([square(0, 0, 10), square(20, 20, 10)], [0, 0]) for _ in range(3)]
    cal = CostModel().calibrated(gts, "segmentation")
    assert cal.mask_draw_s == pytest.approx((210 - 30) / 2)
    assert cal.manual(gts[0], "segmentation") == pytest.approx(210.0)
    assert CostModel(mask_draw_s=5.0).calibrated(gts, "segmentation").mask_draw_s == 5.0


def test_classes_confirm_pick_choose() -> None:
    gt = Annotation(8, 8, category=2)
    top = Annotation(8, 8, category_scores=np.array([0.1, 0.2, 0.6, 0.1]))
    second = Annotation(8, 8, category_scores=np.array([0.1, 0.5, 0.3, 0.1]))
    far = Annotation(8, 8, category_scores=np.array([0.4, 0.3, 0.0, 0.3]))
    assert C.charge(top, gt, "classification") == (1.5, {"confirmed": 1, "picked": 0, "chosen": 0})
    assert C.charge(second, gt, "classification")[0] == 2.5
    assert C.charge(far, gt, "classification")[0] == 4.0
    assert C.charge(None, gt, "classification")[0] == 4.0


def test_overrides_are_checked() -> None:
    assert CostModel.from_overrides({"box_draw_s": 10}).box_draw_s == 10
    with pytest.raises(ValueError, match="unknown cost box_drw_s"):
        CostModel.from_overrides({"box_drw_s": 10})
    with pytest.raises(ValueError, match="non-negative"):
        CostModel(box_draw_s=-1)
    with pytest.raises(ValueError, match="non-negative"):
        CostModel(box_draw_s=math.nan)


@st.composite
def box_sets(draw: st.DrawFn) -> Annotation:
    n = draw(st.integers(0, 6))
    rows = []
    for _ in range(n):
        x, y = draw(st.integers(0, 150)), draw(st.integers(0, 150))
        rows.append((x, y, x + draw(st.integers(2, 49)), y + draw(st.integers(2, 49)), draw(st.integers(0, 2))))
    return boxes(*rows, scores=True)


@settings(max_examples=150, deadline=None)
@given(box_sets(), box_sets())
def test_any_prelabel_costs_at_least_the_review_and_at_most_manual_plus_deleting_it(pred: Annotation,
                                                                                 gt: Annotation) -> None:
    t, c = C.charge(pred, gt, "detection")
    assert t >= C.box_image_s
    # the worst a pre-label can do: every box deleted, every true box drawn (a kept box is never dearer)
    assert t <= C.manual(gt, "detection") + C.box_extra_s * len(pred) + 1e-9
    matched = len(gt) - c["missed"]
    assert c["extra"] + matched == len(pred)
    assert c["correct"] <= matched and c["imprecise"] <= matched and c["wrong_class"] <= matched
    assert C.charge(gt, gt, "detection")[0] <= C.manual(gt, "detection")


ODD = CostModel(box_image_s=3.3, box_correct_s=0.7, box_imprecise_s=5.1, box_wrong_class_s=1.9, box_extra_s=2.2,
                box_draw_s=11.0, mask_image_s=17.0, mask_accept_s=0.3, mask_locate_s=1.7, mask_click_s=2.9,
                mask_extra_s=1.1, mask_wrong_class_s=3.7, mask_draw_s=41.0, class_image_s=0.9, class_confirm_s=0.2,
                class_pick_s=2.6, class_choose_s=4.4)


@settings(max_examples=120, deadline=None)
@given(box_sets(), box_sets())
def test_the_counts_price_back_to_the_charge_under_any_costs(pred: Annotation, gt: Annotation) -> None:
    """The sensitivity table prices saved counts under other costs: that must be exactly what charging
    the image under those costs gives (the counts do not depend on the seconds)."""
    for costs in (C, ODD):
        t, c = costs.charge(pred, gt, "detection")
        assert costs.price(c, "detection") == pytest.approx(t, abs=1e-9)
    assert ODD.price(C.charge(pred, gt, "detection")[1], "detection") == pytest.approx(
        ODD.charge(pred, gt, "detection")[0], abs=1e-9)


def test_mask_and_class_counts_price_back_to_the_charge() -> None:
    gt = Annotation.from_masks([square(0, 0, 20), square(30, 30, 20), square(0, 40, 20)], [0, 0, 1])
    pred = Annotation.from_masks([square(0, 0, 20), _rect(30, 30, 20, 12), _rect(0, 40, 20, 7), square(44, 0, 8)],
                                 [1, 0, 1, 0], scores=[1.0] * 4)
    for costs in (CostModel(mask_draw_s=60.0), ODD):
        t, c = costs.charge(pred, gt, "segmentation")
        assert c["wrong_class"] == 1 and c["redrawn"] == 1 and c["fixed"] == 1 and c["extra"] == 1
        assert costs.price(c, "segmentation") == pytest.approx(t)
    gt = Annotation(8, 8, category=2)
    for p in (None, Annotation(8, 8, category_scores=np.array([0.1, 0.5, 0.3, 0.1]))):
        t, c = ODD.charge(p, gt, "classification")
        assert ODD.price(c, "classification") == pytest.approx(t)


def test_accepted_prelabel_objects_keep_their_own_geometry() -> None:
    """What the simulated person stores: an object accepted without a fix (same class, IoU >= 0.7) as the
    pre-label drew it; everything else as the truth."""
    gt = boxes((0, 0, 100, 100, 0), (120, 0, 180, 60, 1), (0, 120, 50, 170, 0))
    pred = boxes((0, 0, 100, 80, 0),  # IoU 0.8: accepted as it is
                 (120, 0, 160, 60, 1),  # IoU 0.67: adjusted, so stored as the truth
                 (0, 120, 50, 170, 1),  # wrong class: fixed, stored as the truth
                 scores=True)
    stored = C.accepted(pred, gt, "detection")
    np.testing.assert_allclose(stored.boxes, [[0, 0, 100, 80], [120, 0, 180, 60], [0, 120, 50, 170]])
    assert stored.labels.tolist() == gt.labels.tolist() and stored.scores is None
    assert C.accepted(None, gt, "detection") is gt
    # "charged" instead: the same pre-label under iou_high=0.9 pays the fix of the 0.8 box, stored exact
    _, c = CostModel(iou_high=0.9).charge(pred, gt, "detection")
    assert (c["correct"], c["imprecise"]) == (0, 2)
    m_gt = Annotation.from_masks([square(0, 0, 20)], [0])
    m_pred = Annotation.from_masks([_rect(0, 0, 20, 16)], [0], scores=[0.9])
    assert C.accepted(m_pred, m_gt, "segmentation").masks.sum() == 320
