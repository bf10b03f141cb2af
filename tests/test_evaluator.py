"""Live evaluator (pre-label vs final annotation) and offline COCO metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.evaluator import EvaluatorConfig, LiveEvaluator, offline_metrics

W = H = 100


def det(boxes, labels, scores=None):
    return Annotation(W, H, boxes=boxes, labels=labels, scores=scores)


GT = det([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]], [0, 1, 0, 1])


def test_detection_every_category_exact():
    pred = det(
        [[0, 0, 10, 10],  # correct
         [20, 20, 30, 35],  # same class, IoU 100/150 = 0.67: imprecise
         [40, 40, 50, 50],  # exact box, class 1 instead of 0: wrong class
         [80, 80, 90, 90]],  # nothing there: extra
        [0, 1, 1, 0], [0.9, 0.8, 0.7, 0.6],
    )
    rec = LiveEvaluator("detection", 2).evaluate(3, pred, GT, step=17)
    assert {k: rec[k] for k in ("correct", "imprecise", "wrong_class", "extra", "missed")} == {
        "correct": 1, "imprecise": 1, "wrong_class": 1, "extra": 1, "missed": 1}
    assert rec["score"] == pytest.approx((1.0 + 0.5 + 0.7 - 0.1) / 4)
    assert rec["image_id"] == 3 and rec["step"] == 17 and rec["offered"] and rec["ema"] == rec["score"]


def test_detection_low_overlap_is_extra_plus_missed_and_score_is_clipped():
    ev = LiveEvaluator("detection", 2)
    rec = ev.evaluate(0, det([[0, 0, 10, 10]], [0]), det([[8, 8, 18, 18]], [0]))  # IoU 4/196
    assert (rec["extra"], rec["missed"], rec["correct"]) == (1, 1, 0)
    assert rec["score"] == pytest.approx(-0.1)
    many = det([[i, i, i + 5, i + 5] for i in range(0, 80, 5)], [0] * 16)
    assert ev.evaluate(1, many, Annotation.empty(W, H))["score"] == -1.0  # 16 extras, clipped
    assert ev.evaluate(2, Annotation.empty(W, H), Annotation.empty(W, H))["score"] == 1.0


def test_matching_prefers_the_usable_object():
    """A same-class box at slightly lower IoU is matched before a wrong-class one (score objective)."""
    gt = det([[0, 0, 10, 10]], [0])
    pred = det([[0, 0, 10, 11], [0, 0, 10, 12]], [1, 0])  # IoU 0.91 wrong class, 0.83 right class
    rec = LiveEvaluator("detection", 2).evaluate(0, pred, gt)
    assert (rec["correct"], rec["wrong_class"], rec["extra"]) == (1, 0, 1)
    rec_iou = LiveEvaluator("detection", 2, EvaluatorConfig(matching="iou")).evaluate(0, pred, gt)
    assert (rec_iou["correct"], rec_iou["wrong_class"], rec_iou["extra"]) == (0, 1, 1)


def test_score_threshold_keeps_what_the_user_saw():
    pred = det([[0, 0, 10, 10], [80, 80, 90, 90]], [0, 0], [0.9, 0.1])
    gt = det([[0, 0, 10, 10]], [0])
    ev = LiveEvaluator("detection", 1, EvaluatorConfig(score_threshold=0.5))
    assert ev.evaluate(0, pred, gt)["score"] == 1.0
    assert ev.evaluate(0, pred, gt, score_threshold=0.0)["score"] == pytest.approx(0.9)


boxes_st = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(1, 40), st.integers(1, 40),
              st.integers(0, 2), st.integers(0, 3)),
    max_size=7,
)


@settings(max_examples=80, deadline=None)
@given(pred=boxes_st, gt=boxes_st, data=st.data())
def test_record_is_invariant_to_prediction_order(pred, gt, data):
    def build(rows):
        return det([[x, y, x + w, y + h] for x, y, w, h, _, _ in rows], [c for *_, c, _ in rows],
                   [s / 4 for *_, s in rows])

    perm = data.draw(st.permutations(range(len(pred))))
    a = LiveEvaluator("detection", 3).evaluate(0, build(pred), build(gt))
    b = LiveEvaluator("detection", 3).evaluate(0, build([pred[i] for i in perm]), build(gt))
    assert a == b
    assert -1.0 <= a["score"] <= 1.0
    assert a["correct"] + a["imprecise"] + a["wrong_class"] + a["extra"] == len(pred)
    assert a["correct"] + a["imprecise"] + a["wrong_class"] + a["missed"] == len(gt)


def test_no_prediction_is_not_offered_and_leaves_ema():
    ev = LiveEvaluator("detection", 2)
    ev.evaluate(0, GT, GT)
    rec = ev.evaluate(1, None, GT)
    assert rec["score"] is None and not rec["offered"] and ev.ema == 1.0
    s = ev.summary()
    assert (s["count"], s["not_offered"], s["ema"], s["mean_last_10"]) == (1, 1, 1.0, 1.0)
    assert s["totals"]["correct"] == 4


def test_ema_arithmetic():
    ev = LiveEvaluator("classification", 3)
    gt = Annotation(W, H, category=1)
    for image_id, (cat, want) in enumerate([(1, 1.0), (0, 0.9), (2, 0.81), (1, 0.829)]):
        ev.evaluate(image_id, Annotation(W, H, category=cat), gt)  # one image each: a repeat replaces
        assert ev.ema == pytest.approx(want)
    assert ev.summary()["mean_last_10"] == pytest.approx(0.5)


def test_classification_top1_topk():
    ev = LiveEvaluator("classification", 5, EvaluatorConfig(top_k=2))
    gt = Annotation(W, H, category=3)
    r = ev.evaluate(0, Annotation(W, H, category_scores=[0.1, 0.2, 0.4, 0.3, 0.0]), gt)
    assert (r["top1"], r["topk"], r["score"], r["predicted"]) == (False, True, 0.0, 2)
    r = ev.evaluate(1, Annotation(W, H, category_scores=[0.1, 0.2, 0.3, 0.4, 0.0]), gt)
    assert (r["top1"], r["topk"], r["score"]) == (True, True, 1.0)
    r = ev.evaluate(2, Annotation(W, H, category_scores=[0.5, 0.4, 0.05, 0.05, 0.0]), gt)
    assert (r["top1"], r["topk"]) == (False, False)
    assert ev.summary()["totals"] == {"top1": 1, "topk": 2}


def _touching():
    left = np.zeros((H, W), bool)
    right = np.zeros((H, W), bool)
    left[10:40, 10:30] = True
    right[10:40, 30:50] = True  # shares the edge x=30 with ``left``
    return left, right


def test_segmentation_touching_instances():
    left, right = _touching()
    gt = Annotation.from_masks([left, right], [0, 0])
    ev = LiveEvaluator("segmentation", 2)
    perfect = ev.evaluate(0, Annotation.from_masks([right, left], [0, 0], [0.9, 0.8]), gt)
    assert perfect["score"] == 1.0 and perfect["correct"] == 2 and perfect["semantic_miou"] == 1.0
    merged = ev.evaluate(1, Annotation.from_masks([left | right], [0], [0.9]), gt)
    # one instance matched at IoU 600/1200 (imprecise), the other missed; mean over max(1, 2) objects
    assert merged["mean_iou"] == pytest.approx(0.25) and merged["score"] == pytest.approx(0.25)
    assert (merged["imprecise"], merged["missed"], merged["extra"]) == (1, 1, 0)
    assert merged["semantic_miou"] == 1.0  # the class map is still exactly right
    sem = LiveEvaluator("segmentation", 2, EvaluatorConfig(semantic=True))
    assert sem.evaluate(1, Annotation.from_masks([left | right], [0], [0.9]), gt)["score"] == 1.0
    wrong = ev.evaluate(2, Annotation.from_masks([left, right], [0, 1]), gt)
    assert wrong["wrong_class"] == 1 and wrong["semantic_miou"] == pytest.approx((0.5 + 0.0) / 2)


def test_state_round_trip_and_rejects():
    ev = LiveEvaluator("detection", 2)
    ev.evaluate(0, GT, GT, step=3)
    ev.evaluate(1, None, GT)
    ev.evaluate(2, det([[0, 0, 10, 10]], [1]), GT)
    state = json.loads(json.dumps(ev.state_dict()))
    ev2 = LiveEvaluator("detection", 2)
    ev2.load_state_dict(state)
    assert ev2.history == ev.history and ev2.ema == ev.ema and ev2.summary() == ev.summary()
    with pytest.raises(ValueError, match="unknown keys"):
        ev2.load_state_dict({**state, "x": 1})
    with pytest.raises(ValueError, match="missing keys"):
        ev2.load_state_dict({k: v for k, v in state.items() if k != "ema"})
    with pytest.raises(ValueError, match="classes"):
        LiveEvaluator("detection", 3).load_state_dict(state)


def test_offline_detection_perfect_and_partial():
    targets = [GT, det([[5, 5, 50, 50]], [1])]
    preds = [det(t.boxes, t.labels, np.ones(len(t))) for t in targets]
    m = offline_metrics("detection", preds, targets, 2)
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)
    half = offline_metrics("detection", [preds[0], None], targets, 2)
    assert 0.0 < half["map"] < 1.0 and half["num_pred"] == 4
    none = offline_metrics("detection", [None, None], targets, 2)
    assert none["map"] == 0.0 and none["map50"] == 0.0


def test_offline_handles_missing_classes_and_empty_gt():
    targets = [det([[0, 0, 10, 10]], [0])]
    m = offline_metrics("detection", [det([[0, 0, 10, 10]], [0], [0.5])], targets, 3)
    assert m["map"] == pytest.approx(1.0) and m["ap_per_class"][1:] == [None, None]
    empty = [Annotation.empty(W, H)]
    assert offline_metrics("detection", [Annotation.empty(W, H)], empty, 2)["map"] == 1.0
    assert offline_metrics("detection", [det([[0, 0, 5, 5]], [0], [0.9])], empty, 2)["map"] == 0.0


def test_offline_segmentation_and_classification():
    left, right = _touching()
    gt = Annotation.from_masks([left, right], [0, 1])
    pred = Annotation.from_masks([left, right], [0, 1], [0.9, 0.9])
    m = offline_metrics("segmentation", [pred], [gt], 2)
    assert m["map"] == pytest.approx(1.0) and m["miou"] == 1.0
    swapped = offline_metrics("segmentation", [Annotation.from_masks([left, right], [1, 0], [1, 1])], [gt], 2)
    assert swapped["map"] == 0.0 and swapped["miou"] == 0.0
    targets = [Annotation(W, H, category=c) for c in (0, 1, 2, 2)]
    preds = [Annotation(W, H, category_scores=s) for s in
             ([0.9, 0.1, 0], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.4, 0.6, 0])]
    c = offline_metrics("classification", preds, targets, 3, top_k=2)
    assert c["accuracy"] == 0.5 and c["top_k_accuracy"] == 0.75
    assert c["balanced_accuracy"] == pytest.approx((1 + 0 + 0.5) / 3)
