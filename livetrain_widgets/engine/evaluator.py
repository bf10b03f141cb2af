"""Live evaluation: score each pre-label against the annotation the person finally submitted.

Every image a person labels with a pre-label in view is a free validation sample: the prediction was
made before the model saw that label. :class:`LiveEvaluator` turns each (pre-label, final label) pair
into a record of what the person had to fix and a score, and keeps an exponential moving average
(EMA) of the scores as the "model quality" figure the widgets show. :func:`offline_metrics` computes
the conventional held-out metrics (COCO mAP via pycocotools, mIoU, accuracy) for benchmarks.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ._matching import (
    CATEGORIES,
    box_iou,
    class_masks,
    detection_score,
    mask_iou,
    match,
    rles,
    semantic_iou,
)
from ._state import check_keys
from .annotation import TASKS, Annotation


@dataclass
class EvaluatorConfig:
    """How pre-labels are scored. Defaults follow the reference platform's assistance score.

    iou_high: overlap for a *correct* object (0.7, as the reference: at that overlap a person accepts
        the object as it is). iou_low: the least overlap at which a predicted object still counts as an
        attempt at a true one (an *imprecise* or *wrong-class* object) rather than an extra plus a miss;
        0.3 is where a box still clearly points at the same object.
    w_*: per-object credit, summed and divided by ``max(1, #true objects)``, clipped to [-1, 1]. A
        correct object saves all the drawing (1.0); a wrong class saves the outline but costs a class
        change (0.7); an imprecise outline must be dragged into place (0.5); a wrong class with an
        imprecise outline gets both discounts (0.35); every extra object must be deleted (-0.1).
    matching: ``"score"`` matches objects to maximise the score (the most charitable reading of how
        the person could use the pre-label; IoU breaks ties); ``"iou"`` maximises the summed IoU.
    ema_alpha: weight of the newest score in the moving average (0.1, as the reference: about the
        last 10 images matter, so one odd image does not swing the figure).
    top_k: classification hit if the true class is among the k highest scores.
    score_threshold: predicted objects below this score are dropped before scoring, so the record
        describes what the person saw. 0.0 = score what the caller passes (the session already
        filters with its display threshold); ``evaluate(score_threshold=...)`` overrides per call.
    semantic: segmentation score is the semantic mIoU (class maps) instead of the instance-matched
        mean IoU.
    """

    iou_high: float = 0.7
    iou_low: float = 0.3
    w_correct: float = 1.0
    w_imprecise: float = 0.5
    w_wrong_class: float = 0.7
    w_extra: float = -0.1
    matching: str = "score"
    ema_alpha: float = 0.1
    top_k: int = 3
    score_threshold: float = 0.0
    semantic: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_low <= self.iou_high <= 1.0:
            raise ValueError(f"need 0 < iou_low <= iou_high <= 1, got {self.iou_low}, {self.iou_high}")
        if not 0.0 < self.ema_alpha <= 1.0:
            raise ValueError(f"ema_alpha must lie in (0, 1], got {self.ema_alpha}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.matching not in ("score", "iou"):
            raise ValueError(f"matching must be 'score' or 'iou', got {self.matching!r}")

    @property
    def weights(self) -> dict[str, float]:
        return {
            "correct": self.w_correct,
            "imprecise": self.w_imprecise,
            "wrong_class": self.w_wrong_class,
            "extra": self.w_extra,
        }


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(float(x), nd)


class LiveEvaluator:
    """Scores pre-labels on submission and keeps their moving average (see the module docstring)."""

    def __init__(self, task: str, num_classes: int, config: EvaluatorConfig | None = None) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        if num_classes < 1:
            raise ValueError("at least one class is needed")
        self.task = task
        self.num_classes = int(num_classes)
        self.config = config or EvaluatorConfig()
        self.ema: float | None = None
        self.history: list[dict[str, Any]] = []
        #: counts every change of the history (a replaced record leaves its length alone); not saved
        self.revision = 0

    # --------------------------------------------------------------------------------- scoring
    def evaluate(
        self,
        image_id: int,
        prediction: Annotation | None,
        final: Annotation,
        *,
        step: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, Any]:
        """Compare the pre-label the person saw with what they submitted; record and return the record.

        ``prediction=None`` means no pre-label was offered (the model was not ready, or the person
        labeled without one): the record has ``score=None`` and the EMA is left alone.

        Each image is judged once: a record for an image judged before replaces that one (the person
        went back and submitted it again), and the EMA is computed again over the records in order, so
        an image labeled twice does not count twice. A submission without a pre-label keeps the image's
        earlier record (its copy is returned).
        """
        rec: dict[str, Any] = {"image_id": int(image_id), "step": None if step is None else int(step)}
        if prediction is None:
            rec.update(offered=False, score=None)
        else:
            thr = self.config.score_threshold if score_threshold is None else score_threshold
            pred = prediction.filter(thr) if thr > 0 else prediction
            if self.task == "classification":
                rec.update(self._classification(pred, final))
            elif self.task == "detection":
                rec.update(self._objects(pred, final, masks=False))
            else:
                rec.update(self._objects(pred, final, masks=True))
            rec["offered"] = True
        earlier = [r for r in self.history if r.get("image_id") == rec["image_id"]]
        if earlier and not rec["offered"]:
            # Submitted again without a pre-label: what its pre-label was worth is still the earlier judgement.
            return dict(earlier[-1])
        if earlier:
            self.history = [r for r in self.history if r.get("image_id") != rec["image_id"]]
            self.ema = self._ema([r["score"] for r in self.history if r.get("offered")])
        if rec["offered"]:
            self.ema = _ema_step(self.ema, rec["score"], self.config.ema_alpha)
        rec["ema"] = _r(self.ema)
        self.history.append(rec)
        self.revision += 1
        return rec

    @property
    def judged(self) -> int:
        """How many images' offered pre-labels were judged (the count beside the quality figure)."""
        return sum(1 for r in self.history if r.get("offered"))

    def _ema(self, scores: list[float]) -> float | None:
        ema = None
        for s in scores:
            ema = _ema_step(ema, s, self.config.ema_alpha)
        return ema

    def _objects(self, pred: Annotation, gt: Annotation, *, masks: bool) -> dict[str, Any]:
        cfg = self.config
        if (pred.width, pred.height) != (gt.width, gt.height):
            raise ValueError(
                f"prediction is for a {pred.width}x{pred.height} image, the annotation for "
                f"{gt.width}x{gt.height}"
            )
        if masks:
            none = np.zeros((0, gt.height, gt.width), bool)
            pm = pred.masks if pred.masks is not None else none
            gm = gt.masks if gt.masks is not None else none
            if len(pm) != len(pred) or len(gm) != len(gt):
                raise ValueError("segmentation evaluation needs a mask for every object")
            iou = mask_iou(pm, gm)
            objective = "iou"  # the segmentation score is the mean matched IoU, so maximise exactly that
        else:
            iou = box_iou(pred.boxes, gt.boxes)
            objective = cfg.matching
        m = match(pred, gt, iou, cfg.iou_low, cfg.iou_high, cfg.weights, objective)
        out: dict[str, Any] = {**m["counts"], "n_pred": len(pred), "n_gt": len(gt)}
        n = max(len(pred), len(gt))
        out["mean_iou"] = 1.0 if n == 0 else _r(m["iou_sum"] / n)
        if not masks:
            out["score"] = _r(detection_score(pred, gt, m["pairs"], cfg.iou_low, cfg.iou_high, cfg.weights))
            return out
        miou, _ = semantic_iou(pred, gt, self.num_classes)
        out["semantic_miou"] = 1.0 if miou is None else _r(miou)  # both empty: nothing to get wrong
        out["score"] = out["semantic_miou"] if cfg.semantic else out["mean_iou"]
        return out

    def _classification(self, pred: Annotation, gt: Annotation) -> dict[str, Any]:
        if gt.category is None:
            raise ValueError("a classification annotation needs a category")
        if pred.category_scores is not None and len(pred.category_scores):
            s = np.asarray(pred.category_scores, np.float64)
            # stable order: ties go to the lower class index, whatever the scores' float noise
            order = np.argsort(-s, kind="stable")
            top1 = bool(order[0] == gt.category)
            topk = bool(gt.category in order[: self.config.top_k])
            predicted: int | None = int(order[0])
        else:
            predicted = pred.category
            top1 = topk = predicted is not None and predicted == gt.category
        return {"predicted": predicted, "category": gt.category, "top1": top1, "topk": topk,
                "score": 1.0 if top1 else 0.0}

    # --------------------------------------------------------------------------------- reading
    def summary(self) -> dict[str, Any]:
        """EMA, counts, the mean of the last 10 scores and the totals of every category."""
        scored = [r["score"] for r in self.history if r.get("offered")]
        out: dict[str, Any] = {
            "ema": _r(self.ema),
            "count": len(scored),
            "not_offered": len(self.history) - len(scored),
            "mean_last_10": _r(float(np.mean(scored[-10:]))) if scored else None,
            "last": scored[-1] if scored else None,
        }
        keys = ("top1", "topk") if self.task == "classification" else CATEGORIES
        out["totals"] = {k: int(sum(int(r.get(k, 0)) for r in self.history)) for k in keys}
        return out

    _STATE_KEYS = ("task", "num_classes", "config", "ema", "history")

    def state_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "num_classes": self.num_classes,
            "config": asdict(self.config),
            "ema": self.ema,
            "history": [dict(r) for r in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; refuses one written for another task or class count."""
        check_keys(state, self._STATE_KEYS, "LiveEvaluator")
        if state["task"] != self.task or int(state["num_classes"]) != self.num_classes:
            raise ValueError(
                f"LiveEvaluator state is for {state['task']!r} with {state['num_classes']} classes, "
                f"this evaluator is {self.task!r} with {self.num_classes}"
            )
        check_keys(state["config"], [f.name for f in fields(EvaluatorConfig)], "EvaluatorConfig")
        if not isinstance(state["history"], list):
            raise ValueError("LiveEvaluator state: history must be a list")
        self.config = EvaluatorConfig(**state["config"])
        self.ema = None if state["ema"] is None else float(state["ema"])
        self.history = [dict(r) for r in state["history"]]


# ------------------------------------------------------------------------------------ offline
def _coco(task: str, anns: Sequence[Annotation], num_classes: int, preds: bool) -> Any:
    """In-memory COCO ground truth, or a result list for ``loadRes`` when ``preds``."""
    images, out = [], []
    for i, a in enumerate(anns):
        images.append({"id": i, "width": a.width, "height": a.height})
        masks = rles(a.masks) if task == "segmentation" and a.masks is not None else None
        for j in range(len(a)):
            x0, y0, x1, y1 = (float(v) for v in a.boxes[j])
            obj: dict[str, Any] = {
                "id": len(out) + 1, "image_id": i, "category_id": int(a.labels[j]) + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
            }
            if masks is not None:
                obj["segmentation"] = masks[j]
                obj["area"] = float(a.masks[j].sum())
            if preds:
                obj["score"] = float(a.scores[j]) if a.scores is not None else 1.0
            out.append(obj)
    if preds:
        return out
    cats = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    return {"images": images, "annotations": out, "categories": cats}


def _coco_map(task: str, predictions: Sequence[Annotation], targets: Sequence[Annotation],
              num_classes: int) -> dict[str, Any]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_dict = _coco(task, targets, num_classes, preds=False)
    dt_list = _coco(task, predictions, num_classes, preds=True)
    n_gt, n_dt = len(gt_dict["annotations"]), len(dt_list)
    out: dict[str, Any] = {"num_gt": n_gt, "num_pred": n_dt}
    if n_gt == 0:
        # COCOeval has nothing to average (it reports -1): no objects and no predictions is a perfect
        # result, predictions on images without objects are all false positives.
        out.update(map=1.0 if n_dt == 0 else 0.0, map50=1.0 if n_dt == 0 else 0.0,
                   ap_per_class=[None] * num_classes, ap50_per_class=[None] * num_classes)
        return out
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress unconditionally
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        dt = gt.loadRes(dt_list) if dt_list else COCO()
        if not dt_list:
            dt.dataset = {"images": gt_dict["images"], "annotations": [], "categories": gt_dict["categories"]}
            dt.createIndex()
        ev = COCOeval(gt, dt, "segm" if task == "segmentation" else "bbox")
        ev.params.maxDets = [1, 10, max(100, max((len(p) for p in predictions), default=0))]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(v) for v in ev.stats]
    # -1 means "no ground truth in this slice"; with n_gt > 0 the overall figures are defined, but a
    # run with predictions and no matches yields 0 rather than -1, so clipping at 0 is exact
    out["map"], out["map50"] = max(stats[0], 0.0), max(stats[1], 0.0)
    prec = ev.eval["precision"][:, :, :, 0, -1]  # iou, recall, class, area=all, maxDets=largest
    per: list[float | None] = []
    for k in range(num_classes):
        p = prec[:, :, k]
        per.append(float(p[p > -1].mean()) if (p > -1).any() else None)
    out["ap_per_class"] = per
    # AP at IoU 0.5 alone: the figure a rare class's detections are usually judged by (mAP@0.5 per class)
    out["ap50_per_class"] = [float(prec[0, :, k][prec[0, :, k] > -1].mean()) if (prec[0, :, k] > -1).any()
                             else None for k in range(num_classes)]
    return out


def offline_metrics(
    task: str,
    predictions: Sequence[Annotation | None],
    targets: Sequence[Annotation],
    num_classes: int,
    *,
    top_k: int = 3,
) -> dict[str, Any]:
    """Held-out metrics of ``predictions`` against ``targets`` (same order, one per image).

    - detection: COCO ``map`` (IoU 0.50:0.95) and ``map50`` from pycocotools' COCOeval, plus
      ``ap_per_class`` (``None`` for classes without ground truth: COCO leaves them out of the mean);
    - segmentation: the same on masks, plus ``miou``: per-class IoU of the class maps with
      intersections and unions summed over the whole set, averaged over classes present in either;
    - classification: ``accuracy``, ``top_k_accuracy`` and ``balanced_accuracy`` (mean per-class recall).

    A missing prediction (``None``) counts as an empty one. Numbers are never NaN or -1: with no ground
    truth at all, mAP is 1.0 when nothing was predicted and 0.0 otherwise.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    preds = [p if p is not None else Annotation.empty(t.width, t.height) for p, t in zip(predictions, targets,
                                                                                        strict=True)]
    if task == "classification":
        return _classification_metrics(preds, targets, num_classes, top_k)
    out = _coco_map(task, preds, targets, num_classes)
    if task == "segmentation":
        inter = np.zeros(num_classes, np.int64)
        union = np.zeros(num_classes, np.int64)
        for p, t in zip(preds, targets, strict=True):
            pm, tm = class_masks(p, num_classes), class_masks(t, num_classes)
            inter += (pm & tm).reshape(num_classes, -1).sum(1)
            union += (pm | tm).reshape(num_classes, -1).sum(1)
        ious = [float(i / u) for i, u in zip(inter, union, strict=True) if u]
        out["miou"] = float(np.mean(ious)) if ious else 1.0
        out["iou_per_class"] = [float(i / u) if u else None for i, u in zip(inter, union, strict=True)]
    return out


def _classification_metrics(preds: Sequence[Annotation], targets: Sequence[Annotation], num_classes: int,
                            top_k: int) -> dict[str, Any]:
    hits1, hitsk = [], []
    per_class: dict[int, list[bool]] = {}
    for p, t in zip(preds, targets, strict=True):
        if t.category is None:
            raise ValueError("every classification target needs a category")
        if p.category_scores is not None and len(p.category_scores):
            order = np.argsort(-np.asarray(p.category_scores, np.float64), kind="stable")
            h1, hk = bool(order[0] == t.category), bool(t.category in order[:top_k])
        else:
            h1 = hk = p.category is not None and p.category == t.category
        hits1.append(h1)
        hitsk.append(hk)
        per_class.setdefault(t.category, []).append(h1)
    n = len(targets)
    recalls = [float(np.mean(v)) for v in per_class.values()]
    return {
        "count": n,
        "accuracy": float(np.mean(hits1)) if n else 0.0,
        "top_k_accuracy": float(np.mean(hitsk)) if n else 0.0,
        "top_k": top_k,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "num_classes": num_classes,
    }


def _ema_step(ema: float | None, score: float, alpha: float) -> float:
    """One step of the moving average; the first score starts it."""
    return score if ema is None else (1 - alpha) * ema + alpha * score


__all__ = ["EvaluatorConfig", "LiveEvaluator", "offline_metrics"]
