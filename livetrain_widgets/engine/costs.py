"""What a person spends on one image, given the pre-label they were shown and the true labels.

The simulated annotator of the study (:mod:`livetrain_widgets.study`) "corrects" each pre-label to the
ground truth and is charged by this model; the live engine uses the same accounting to choose which
pre-labels are worth showing (:mod:`livetrain_widgets.engine.autothreshold`). It lives in the engine so
that the engine never imports from ``study``.

Every default names where it comes from; those marked *ours* are our own estimates (stated so that
they can be argued with and overridden: ``livetrain simulate --cost NAME=SECONDS``). Every study also
reports its ratios over a grid of plausible values of each cost (:mod:`livetrain_widgets.study.sensitivity`),
so no verdict rests on one estimate.

Boxes (detection):

===================== ======= =================================================================
``box_image_s``        5.0     look over the image and submit (ours; the figure our BCCD prototype
                               used, see ``shared/reference/FACTS.md``)
``box_correct_s``      1.0     verify a correct box (ours). Verification is a yes/no glance, the
                               action Papadopoulos et al. ("We don't need no bounding-boxes", CVPR
                               2016) built a whole annotation scheme on because it is an order of
                               magnitude cheaper than drawing (6-9x less total time); grid 0.5-2 s
``box_imprecise_s``    4.0     drag one or two edges of an imprecise box into place (ours: between a
                               verification and a new box; grid 3-6 s)
``box_wrong_class_s``  2.5     select a box and pick another class (ours; grid 1.5-4 s)
``box_extra_s``        1.5     select and delete an extra box (ours; grid 1-2.5 s)
``box_draw_s``         7.0     draw a missed box: 7 s by extreme clicking (Papadopoulos et al.,
                               "Extreme clicking for efficient object annotation", ICCV 2017);
                               the classic two-corner drawing takes 25.5 s (Su, Deng and Fei-Fei,
                               "Crowdsourcing annotations for visual object detection", AAAI HCOMP
                               workshop 2012; 42 s per box with their quality and coverage checks);
                               grid 7 / 10 / 25.5 s
===================== ======= =================================================================

Masks (instance or semantic segmentation; a semantic mask is one object per class):

======================== ======= ==============================================================
``mask_image_s``          30.0    review-only floor per image: even a perfect pre-label costs this
                                  (Supervisely, "Live Training while Annotating", technical report)
``mask_accept_s``         0.5     glance at and accept one instance (ours)
``mask_locate_s``         1.0     find the error of an imprecise instance (SAM 2 paper's interactive
                                  evaluation: about 1 s to locate an error ...)
``mask_click_s``          1.5     ... and 1.5 s per corrective click (same source)
``mask_click_gain``       0.1     IoU one corrective click recovers (ours); clicks needed =
                                  ``ceil((iou_high - IoU) / gain)``, at most ``mask_max_clicks``
``mask_max_clicks``       3       beyond that the person redraws (as SAM 2's protocol: 3 clicks)
``mask_extra_s``          1.5     delete an extra instance (ours, as for boxes)
``mask_wrong_class_s``    2.5     change an instance's class (ours, as for boxes)
``mask_draw_s``           None    draw a missed instance (or redraw one below ``iou_low``). None =
                                  calibrated on the dataset so that a fully manual image takes
                                  ``mask_manual_image_s`` on average:
                                  ``(mask_manual_image_s - mask_image_s) / mean instances per image``
``mask_manual_image_s``   210.0   a fully manual image, 3.5 min (Supervisely's report, above)
======================== ======= ==============================================================

For masks, interactive tools make a new instance about 3x faster than polygon drawing (Benenson et al.,
"Large-scale interactive object segmentation with human annotators", CVPR 2019), and tracing an
object's boundary by hand takes up to 40 s (Ling et al., Curve-GCN, CVPR 2019); a difficult full mask up
to 80 s (EVA-VOS, as quoted by the LIT paper in ``shared/reference``). The study's figure per instance is
calibrated per dataset instead (``mask_draw_s``), and its sensitivity grid varies it by 0.5-1.5x.

Image classes:

===================== ======= =================================================================
``class_image_s``      1.0     look at the image (ours)
``class_confirm_s``    0.5     the pre-label's top class is right: confirm it (ours)
``class_pick_s``       1.5     the right class is among the top-k shown: click it (ours)
``class_choose_s``     3.0     choose from the whole class list (ours; also the manual cost)
===================== ======= =================================================================

Which object of a pre-label is "correct", "imprecise" and so on is decided by the live evaluator's
own matching (:mod:`livetrain_widgets.engine._matching`): IoU >= ``iou_high`` (0.7) is accepted as
it is, ``iou_low`` (0.3) <= IoU < ``iou_high`` is adjusted, below ``iou_low`` it is an extra plus a
miss. Pre-labels are matched to the truth in the most favourable way (Hungarian matching on the
evaluator's score), the way a person would use them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ._matching import box_iou, mask_iou, match
from .annotation import Annotation
from .evaluator import EvaluatorConfig

#: sources of the defaults, written into results.json beside the figures
SOURCES = {
    "box_draw_s": "Papadopoulos et al., Extreme clicking for efficient object annotation, ICCV 2017 (7 s); the "
                  "classic two-corner drawing: Su, Deng and Fei-Fei, Crowdsourcing annotations for visual object "
                  "detection, AAAI HCOMP 2012 (25.5 s; 42 s with quality and coverage checks)",
    "mask_image_s": "Supervisely, Live Training while Annotating (technical report): 30 s review-only floor",
    "mask_manual_image_s": "Supervisely, Live Training while Annotating (technical report): 3.5 min manual",
    "mask_locate_s": "Ravi et al., SAM 2 (2024), interactive evaluation: ~1 s to locate an error",
    "mask_click_s": "Ravi et al., SAM 2 (2024), interactive evaluation: ~1.5 s per click",
    "mask_max_clicks": "SAM 2 / LIT protocol: up to 3 corrective clicks, then a full mask",
    "box_image_s": "ours (the figure of the BCCD prototype in shared/reference/FACTS.md)",
    "box_correct_s": "ours; box verification as the cheap action: Papadopoulos et al., We don't need no "
                     "bounding-boxes, CVPR 2016 (6-9x less annotation time than drawing)",
    "box_imprecise_s": "ours",
    "box_wrong_class_s": "ours",
    "box_extra_s": "ours",
}


@dataclass
class CostModel:
    """Seconds a person spends per action; see the module docstring for every default's source."""

    box_image_s: float = 5.0
    box_correct_s: float = 1.0
    box_imprecise_s: float = 4.0
    box_wrong_class_s: float = 2.5
    box_extra_s: float = 1.5
    box_draw_s: float = 7.0
    mask_image_s: float = 30.0
    mask_accept_s: float = 0.5
    mask_locate_s: float = 1.0
    mask_click_s: float = 1.5
    mask_click_gain: float = 0.1
    mask_max_clicks: int = 3
    mask_extra_s: float = 1.5
    mask_wrong_class_s: float = 2.5
    mask_draw_s: float | None = None
    mask_manual_image_s: float = 210.0
    class_image_s: float = 1.0
    class_confirm_s: float = 0.5
    class_pick_s: float = 1.5
    class_choose_s: float = 3.0
    #: the evaluator's overlaps: accepted as is at >= iou_high, adjusted at >= iou_low
    iou_high: float = 0.7
    iou_low: float = 0.3
    top_k: int = 3

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
                raise ValueError(f"cost {f.name} must be a non-negative number, got {v!r}")
        if not 0 < self.iou_low <= self.iou_high <= 1:
            raise ValueError(f"need 0 < iou_low <= iou_high <= 1, got {self.iou_low}, {self.iou_high}")
        if self.mask_click_gain <= 0:
            raise ValueError("mask_click_gain must be positive")

    @classmethod
    def from_overrides(cls, overrides: dict[str, float] | None = None) -> CostModel:
        """Defaults with ``{name: seconds}`` replaced; an unknown name is an error that lists the known."""
        names = {f.name for f in fields(cls)}
        bad = sorted(set(overrides or {}) - names)
        if bad:
            raise ValueError(f"unknown cost {', '.join(bad)}; known: {', '.join(sorted(names))}")
        return cls(**(overrides or {}))

    def calibrated(self, targets: list[Annotation], task: str) -> CostModel:
        """A copy with ``mask_draw_s`` set from the dataset when it is None (see the module docstring)."""
        if task != "segmentation" or self.mask_draw_s is not None:
            return self
        mean = float(np.mean([len(t) for t in targets])) if targets else 1.0
        draw = max(0.0, self.mask_manual_image_s - self.mask_image_s) / max(mean, 1.0)
        return CostModel(**{**asdict(self), "mask_draw_s": round(draw, 3)})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------------------ charging
    def manual(self, gt: Annotation, task: str) -> float:
        """Seconds for the image with no pre-label at all."""
        return self.charge(None, gt, task)[0]

    def charge(self, pred: Annotation | None, gt: Annotation, task: str) -> tuple[float, dict[str, int]]:
        """Seconds to turn ``pred`` (what the person was shown; None = nothing) into ``gt``, and the
        corrections made, by kind."""
        if task == "classification":
            return self._classes(pred, gt)
        shown = pred if pred is not None else Annotation.empty(gt.width, gt.height)
        pairs, kinds = self._pairs(shown, gt, masks=task == "segmentation")
        if task == "detection":
            return self._boxes(pairs, kinds)
        return self._masks(pairs, kinds)

    def _pairs(self, pred: Annotation, gt: Annotation, *, masks: bool) -> tuple[list[tuple[float, bool]],
                                                                               dict[str, int]]:
        """(IoU, same class) of every matched pair at IoU >= iou_low, and the extra/missed counts."""
        matched, kinds = self._matched(pred, gt, masks=masks)
        return [(v, same) for _, _, v, same in matched], kinds

    def _matched(self, pred: Annotation, gt: Annotation, *, masks: bool) -> tuple[list[tuple[int, int, float, bool]],
                                                                                  dict[str, int]]:
        """(pred index, truth index, IoU, same class) of every matched pair at IoU >= iou_low, and the
        extra/missed counts."""
        if masks:
            none = np.zeros((0, gt.height, gt.width), bool)
            iou = mask_iou(pred.masks if pred.masks is not None else none, gt.masks if gt.masks is not None else none)
            objective = "iou"
        else:
            iou = box_iou(pred.boxes, gt.boxes)
            objective = "score"
        ev = EvaluatorConfig(iou_high=self.iou_high, iou_low=self.iou_low)
        m = match(pred, gt, iou, self.iou_low, self.iou_high, ev.weights, objective)
        pairs = [(p, g, v, bool(pred.labels[p] == gt.labels[g])) for p, g, v in m["pairs"] if v >= self.iou_low]
        return pairs, {"extra": len(pred) - len(pairs), "missed": len(gt) - len(pairs)}

    def accepted(self, pred: Annotation | None, gt: Annotation, task: str) -> Annotation:
        """What the person submits when they accept, unchanged, every pre-label object that needed no fix
        (same class, IoU >= ``iou_high``) and correct the rest to the truth.

        The accepted objects keep the pre-label's box (and mask), not the true one: an IoU of 0.75 is
        "correct" to the cost model and to the eye, and the model then trains on that box. Classes are
        exact either way, so a classification label is the truth."""
        if pred is None or task == "classification" or not len(pred) or not len(gt):
            return gt
        matched, _ = self._matched(pred, gt, masks=task == "segmentation")
        boxes = gt.boxes.copy()
        masks = None if gt.masks is None else gt.masks.copy()
        for p, g, v, same in matched:
            if same and v >= self.iou_high:
                boxes[g] = pred.boxes[p]
                if masks is not None and pred.masks is not None:
                    masks[g] = pred.masks[p]
        return Annotation(gt.width, gt.height, boxes, gt.labels.copy(), masks=masks)

    def price(self, counts: dict[str, int], task: str) -> float:
        """Seconds of one image from its correction counts (what :meth:`charge` returns beside the seconds).

        Every charge is linear in these counts, so a study's per-image counts can be priced again under
        other costs without training again (:mod:`livetrain_widgets.study.sensitivity`). What decides the
        counts themselves (``iou_high``, ``iou_low``, ``mask_click_gain``, ``mask_max_clicks``, ``top_k``) cannot
        change this way."""
        c = counts
        if task == "classification":
            return (self.class_image_s + self.class_confirm_s * c.get("confirmed", 0)
                    + self.class_pick_s * c.get("picked", 0) + self.class_choose_s * c.get("chosen", 0))
        if task == "detection":
            return (self.box_image_s + self.box_extra_s * c.get("extra", 0) + self.box_draw_s * c.get("missed", 0)
                    + self.box_correct_s * c.get("correct", 0) + self.box_imprecise_s * c.get("imprecise", 0)
                    + self.box_wrong_class_s * c.get("wrong_class", 0))
        draw = self.mask_draw_s if self.mask_draw_s is not None else self.mask_manual_image_s - self.mask_image_s
        return (self.mask_image_s + self.mask_extra_s * c.get("extra", 0)
                + draw * (c.get("missed", 0) + c.get("redrawn", 0)) + self.mask_wrong_class_s * c.get("wrong_class", 0)
                + self.mask_accept_s * c.get("accepted", 0) + self.mask_locate_s * c.get("fixed", 0)
                + self.mask_click_s * c.get("clicks", 0))

    def _boxes(self, pairs: list[tuple[float, bool]], kinds: dict[str, int]) -> tuple[float, dict[str, int]]:
        c = dict.fromkeys(("correct", "imprecise", "wrong_class", "extra", "missed"), 0)
        c["extra"], c["missed"] = kinds["extra"], kinds["missed"]
        t = self.box_image_s + self.box_extra_s * c["extra"] + self.box_draw_s * c["missed"]
        for iou, same in pairs:
            good = iou >= self.iou_high
            if same and good:
                c["correct"] += 1
                t += self.box_correct_s
                continue
            if not good:
                c["imprecise"] += 1
                t += self.box_imprecise_s
            if not same:
                c["wrong_class"] += 1
                t += self.box_wrong_class_s
        return t, c

    def _masks(self, pairs: list[tuple[float, bool]], kinds: dict[str, int]) -> tuple[float, dict[str, int]]:
        draw = self.mask_draw_s if self.mask_draw_s is not None else self.mask_manual_image_s - self.mask_image_s
        c = dict.fromkeys(("accepted", "fixed", "clicks", "redrawn", "wrong_class", "extra", "missed"), 0)
        c["extra"], c["missed"] = kinds["extra"], kinds["missed"]
        t = self.mask_image_s + self.mask_extra_s * c["extra"] + draw * c["missed"]
        for iou, same in pairs:
            if not same:
                c["wrong_class"] += 1
                t += self.mask_wrong_class_s
            if iou >= self.iou_high:
                c["accepted"] += 1
                t += self.mask_accept_s
                continue
            clicks = max(1, math.ceil((self.iou_high - iou) / self.mask_click_gain - 1e-9))
            if clicks > self.mask_max_clicks:
                c["redrawn"] += 1
                t += draw
            else:
                c["fixed"] += 1
                c["clicks"] += clicks
                t += self.mask_locate_s + self.mask_click_s * clicks
        return t, c

    def _classes(self, pred: Annotation | None, gt: Annotation) -> tuple[float, dict[str, int]]:
        c = {"confirmed": 0, "picked": 0, "chosen": 0}
        order: list[int] = []
        if pred is not None and pred.category_scores is not None and len(pred.category_scores):
            order = [int(k) for k in np.argsort(-np.asarray(pred.category_scores, np.float64), kind="stable")]
        elif pred is not None and pred.category is not None:
            order = [int(pred.category)]
        if order and order[0] == gt.category:
            c["confirmed"] = 1
            return self.class_image_s + self.class_confirm_s, c
        if gt.category in order[: self.top_k]:
            c["picked"] = 1
            return self.class_image_s + self.class_pick_s, c
        c["chosen"] = 1
        return self.class_image_s + self.class_choose_s, c


__all__ = ["SOURCES", "CostModel"]
