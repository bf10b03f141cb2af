"""Per-image comparison of a pre-label with the final annotation (used by the live evaluator).

The categories describe what the person had to do to the pre-label:

- ``correct``: a predicted object overlaps a true one at IoU >= ``iou_high`` with the same class (accept);
- ``imprecise``: same class but ``iou_low <= IoU < iou_high`` (adjust the box or mask);
- ``wrong_class``: IoU >= ``iou_low`` but another class (change the class; if the overlap is also
  imprecise, both fixes are needed);
- ``extra``: a predicted object matched to nothing (delete it);
- ``missed``: a true object matched to nothing (draw it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from .annotation import Annotation

CATEGORIES = ("correct", "imprecise", "wrong_class", "extra", "missed")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of xyxy boxes (pycocotools' IoU, which works in xywh)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)

    def xywh(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return np.stack([x[:, 0], x[:, 1], x[:, 2] - x[:, 0], x[:, 3] - x[:, 1]], 1)

    return np.asarray(mask_utils.iou(xywh(a), xywh(b), [0] * len(b)), np.float64).reshape(len(a), len(b))


def rles(masks: np.ndarray) -> list[dict[str, Any]]:
    """COCO RLE (pycocotools' own objects) of (N, H, W) masks."""
    if len(masks) == 0:
        return []
    return mask_utils.encode(np.asfortranarray(np.asarray(masks, np.uint8).transpose(1, 2, 0)))


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of (N, H, W) and (M, H, W) bool masks, computed on RLE (fast for sparse masks)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    return np.asarray(mask_utils.iou(rles(a), rles(b), [0] * len(b)), np.float64).reshape(len(a), len(b))


def canonical_order(ann: Annotation) -> np.ndarray:
    """An order of the objects that depends only on their content (class, box, score).

    Matching on this order makes the result independent of the order a model listed its objects in,
    even when the assignment has ties.
    """
    n = len(ann)
    if n == 0:
        return np.zeros(0, np.int64)
    scores = ann.scores if ann.scores is not None else np.zeros(n, np.float32)
    extra: list[np.ndarray] = []
    if ann.masks is not None:
        extra = [ann.masks.reshape(n, -1).sum(1)]
    cols = [ann.boxes[:, 3], ann.boxes[:, 2], ann.boxes[:, 1], ann.boxes[:, 0], *extra, ann.labels, -scores]
    return np.lexsort(cols)


def pair_weights(iou: np.ndarray, same: np.ndarray, lo: float, hi: float, w: dict[str, float]) -> np.ndarray:
    """Score contribution of each possible (pred, gt) pair; pairs under ``lo`` contribute nothing."""
    good = iou >= hi
    ok = iou >= lo
    out = np.where(same & good, w["correct"], 0.0)
    out = np.where(same & ok & ~good, w["imprecise"], out)
    out = np.where(~same & good, w["wrong_class"], out)
    # wrong class *and* an imprecise outline: the person fixes both, so both discounts apply
    out = np.where(~same & ok & ~good, w["wrong_class"] * w["imprecise"] / max(w["correct"], 1e-9), out)
    return out


def match(
    pred: Annotation,
    gt: Annotation,
    iou: np.ndarray,
    lo: float,
    hi: float,
    weights: dict[str, float],
    objective: str,
) -> dict[str, Any]:
    """Hungarian matching of ``pred`` to ``gt`` given their (P, G) IoU matrix, then categorise.

    ``objective="score"`` maximises the summed score contribution (IoU breaks ties), i.e. reads the
    pre-label as favourably as the person could use it; ``"iou"`` maximises the summed IoU.
    Returns the category counts, the matched pairs and the sum of matched IoUs.
    """
    po, go = canonical_order(pred), canonical_order(gt)
    iou = iou[np.ix_(po, go)] if iou.size else iou.reshape(len(po), len(go))
    same = pred.labels[po][:, None] == gt.labels[go][None, :]
    counts = dict.fromkeys(CATEGORIES, 0)
    pairs: list[tuple[int, int, float]] = []
    if iou.size:
        if objective == "score":
            gain = np.where(iou >= lo, pair_weights(iou, same, lo, hi, weights) + 1e-3 * iou, 0.0)
        else:
            gain = iou + 1e-6 * same  # equal overlaps: prefer the same class
        rows, cols = linear_sum_assignment(gain, maximize=True)
        for r, c in zip(rows, cols, strict=True):
            v = float(iou[r, c])
            if v <= 0.0:
                continue
            pairs.append((int(po[r]), int(go[c]), v))
            if v < lo:
                continue
            if same[r, c]:
                counts["correct" if v >= hi else "imprecise"] += 1
            else:
                counts["wrong_class"] += 1
    strong = [(p, g) for p, g, v in pairs if v >= lo]
    counts["extra"] = len(pred) - len(strong)
    counts["missed"] = len(gt) - len(strong)
    return {"counts": counts, "pairs": pairs, "iou_sum": float(sum(v for _, _, v in pairs))}


def detection_score(pred: Annotation, gt: Annotation, pairs: list[tuple[int, int, float]], lo: float,
                    hi: float, weights: dict[str, float]) -> float:
    """The assistance score: summed pair contributions minus extras, over max(1, #gt), in [-1, 1]."""
    if len(pred) == 0 and len(gt) == 0:
        return 1.0  # nothing to find and nothing offered: the pre-label was exactly right
    gain = 0.0
    matched = 0
    for p, g, v in pairs:
        if v < lo:
            continue
        matched += 1
        same = np.array([[pred.labels[p] == gt.labels[g]]])
        gain += float(pair_weights(np.array([[v]]), same, lo, hi, weights)[0, 0])
    gain += weights["extra"] * (len(pred) - matched)
    return float(np.clip(gain / max(1, len(gt)), -1.0, 1.0))


def class_masks(ann: Annotation, num_classes: int) -> np.ndarray:
    """(C, H, W) union of each class's masks (semantic view; overlapping classes both keep a pixel)."""
    out = np.zeros((num_classes, ann.height, ann.width), bool)
    if ann.masks is not None:
        for m, c in zip(ann.masks, ann.labels, strict=True):
            if 0 <= c < num_classes:
                out[c] |= m
    return out


def semantic_iou(
    pred: Annotation, gt: Annotation, num_classes: int
) -> tuple[float | None, list[float | None]]:
    """Mean over classes present in either map of per-class IoU; (None, ...) if both are empty."""
    p, g = class_masks(pred, num_classes), class_masks(gt, num_classes)
    inter = (p & g).reshape(num_classes, -1).sum(1)
    union = (p | g).reshape(num_classes, -1).sum(1)
    per = [float(i / u) if u else None for i, u in zip(inter, union, strict=True)]
    present = [v for v in per if v is not None]
    return (float(np.mean(present)) if present else None), per
