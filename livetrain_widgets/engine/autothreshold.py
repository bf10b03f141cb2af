"""Choose the confidence threshold of shown pre-labels from what people actually submitted.

A pre-label only helps when correcting it is quicker than labeling from scratch. Which objects are
worth showing depends on the model of the moment: a low threshold shows correct objects the person
would otherwise draw, but also extras they must delete. :class:`ThresholdTuner` keeps the recent
submissions (every candidate the model proposed for the image, with its score, and the final
annotation) and picks the thresholds that minimise the expected correction time under the
:class:`~livetrain_widgets.engine.costs.CostModel`, one per class where a class has enough data, and
says whether pre-labels at those thresholds save time at all (:meth:`ThresholdTuner.verdict`).

How one image is reduced (detection and segmentation), once, when it is recorded:

- candidates are matched greedily in descending score order (ties in the content order of
  :func:`~livetrain_widgets.engine._matching.canonical_order`) to still unmatched true objects at
  IoU >= ``costs.iou_low`` (box IoU for detection, mask IoU for segmentation). Each candidate takes the
  truth that would be cheapest to fix from it (IoU breaks ties): what a person would do with it;
- each candidate keeps its score, predicted class, the seconds it costs when shown (the
  :class:`CostModel` charge of its kind: correct, imprecise, wrong class, extra; accepted, clicks,
  redrawn for masks) and the seconds it costs when hidden (drawing the truth it matched, else 0);
- each truth matched by no candidate costs its drawing whatever the threshold.

Because greedy matching in score order is *nested* (the matching of the candidates above a threshold
is the full matching restricted to them), the expected seconds of an image at per-class thresholds
``t`` are ``image_s + unmatched * draw + sum(shown_s if score >= t[class] else hidden_s)``: a sum over
candidates that separates by predicted class, so each class's threshold is optimised exactly and
independently over the candidates' scores. This equals :meth:`CostModel.charge` of the filtered
pre-label whenever the matching is unambiguous (no candidate or truth overlaps two others at
``iou_low``); with duplicates the charge's Hungarian matching may pair objects differently, and the
greedy reading (the higher-scored duplicate takes the truth) is the one a threshold can act on.

Recent images weigh more (``0.5 ** (age / half_life)``) since the model keeps changing.

A threshold fitted to a few images is optimistic: it is exactly right for those images and wrong for the
next, and the model's scores keep rising as it trains, so a threshold that was right an hour ago shows
too much now. The fitted threshold is therefore shrunk toward the ``prior`` (the session's fixed
threshold) by the weight of the evidence: ``prior + (fitted - prior) * n / (n + prior_images)``, with
``n`` the sum of the recency weights of the window (at most about ``1.44 * half_life``). Measured on
BCCD, the unshrunk tuner cost 1.8% more working time than the fixed threshold (BENCHMARKS.md). Of all
thresholds that give the least expected cost (an interval between two neighbouring scores), the tuner
reports a round number near its middle rather than its edge, so that a new candidate scored a little
below the lowest useful one of the history is still shown; equal costs prefer showing fewer objects.

Segmentation without a calibrated ``costs.mask_draw_s`` uses the calibration of
:meth:`CostModel.calibrated` on every image recorded so far (the mean number of true instances), so
the drawing time is kept apart from the other seconds and applied when the figures are computed.

Classification has no threshold (the person sees a top-k list); the tuner only compares the charge
of the pre-label with manual labeling for :meth:`ThresholdTuner.verdict`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ._matching import box_iou, canonical_order, mask_iou
from ._state import check_keys
from .annotation import TASKS, Annotation
from .costs import CostModel

#: equal expected costs (sums of float seconds) are compared with this relative tolerance
_TIE = 1e-9


@dataclass
class TunerConfig:
    """How much history the tuner trusts and how far it may move the threshold.

    half_life: age in images at which a submission weighs half as much as the newest one; the model
        keeps training, so last hour's mistakes say little about the next image.
    window: images kept; older ones weigh ``0.5 ** (window / half_life)`` or less anyway.
    min_images: below this many submissions the tuner has no opinion (None everywhere).
    min_class_objects: weighted number of candidates plus true objects a class needs for a threshold
        of its own; rarer classes use the global threshold rather than one fitted to a handful of boxes.
    floor, ceiling: the range thresholds are chosen in (a threshold of 0 would show every candidate,
        one above 1 none: both are decisions for :meth:`ThresholdTuner.verdict`, not for the slider).
    margin: seconds per image that pre-labels must save for the verdict to be True.
    prior_images: how many images of evidence the prior threshold is worth; the fitted thresholds move
        from the prior toward the fitted optimum by ``n / (n + prior_images)`` (0: no shrinkage).
    """

    half_life: float = 10.0
    window: int = 50
    min_images: int = 3
    min_class_objects: float = 8.0
    floor: float = 0.05
    ceiling: float = 0.95
    margin: float = 0.0
    prior_images: float = 5.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"TunerConfig.{f.name} must be a finite number, got {v!r}")
        if self.half_life <= 0:
            raise ValueError(f"half_life must be positive, got {self.half_life}")
        if int(self.window) != self.window or self.window < 1:
            raise ValueError(f"window must be a whole number >= 1, got {self.window}")
        if int(self.min_images) != self.min_images or self.min_images < 1:
            raise ValueError(f"min_images must be a whole number >= 1, got {self.min_images}")
        if self.prior_images < 0:
            raise ValueError(f"prior_images must not be negative, got {self.prior_images}")
        if self.min_class_objects < 0:
            raise ValueError(f"min_class_objects must not be negative, got {self.min_class_objects}")
        if not 0.0 <= self.floor <= self.ceiling <= 1.0:
            raise ValueError(f"need 0 <= floor <= ceiling <= 1, got {self.floor}, {self.ceiling}")
        self.window, self.min_images = int(self.window), int(self.min_images)


@dataclass
class _Image:
    """One submission reduced to what the thresholds act on. Seconds are split into a fixed part and
    a number of drawings, so that an uncalibrated mask drawing time can follow the data."""

    image_id: int
    base_s: float  # review (plus, for classification, the whole charge of the pre-label)
    base_draws: int  # true objects no candidate matched
    manual_s: float
    manual_draws: int
    truth_labels: np.ndarray  # (G,) int64
    scores: np.ndarray  # (P,) float64 (float32 values, as Annotation keeps them)
    labels: np.ndarray  # (P,) int64
    shown_s: np.ndarray  # (P,) fixed seconds when shown
    shown_draws: np.ndarray  # (P,) int64, 1 where showing means redrawing (a mask beyond the clicks)
    hidden_draws: np.ndarray  # (P,) int64, 1 where the candidate matched a truth (drawn when hidden)

    _ARRAYS = ("truth_labels", "scores", "labels", "shown_s", "shown_draws", "hidden_draws")
    _KEYS = ("image_id", "base_s", "base_draws", "manual_s", "manual_draws", *_ARRAYS)

    def to_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image_id": self.image_id, "base_s": self.base_s, "base_draws": self.base_draws,
            "manual_s": self.manual_s, "manual_draws": self.manual_draws,
        }
        for k in self._ARRAYS:
            out[k] = getattr(self, k).tolist()
        return out

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> _Image:
        check_keys(d, cls._KEYS, "ThresholdTuner image")
        n = len(d["scores"])
        if any(len(d[k]) != n for k in ("labels", "shown_s", "shown_draws", "hidden_draws")):
            raise ValueError("ThresholdTuner image state: candidate lists differ in length")
        return cls(
            int(d["image_id"]), float(d["base_s"]), int(d["base_draws"]), float(d["manual_s"]),
            int(d["manual_draws"]), np.asarray(d["truth_labels"], np.int64).reshape(-1),
            np.asarray(d["scores"], np.float64).reshape(-1), np.asarray(d["labels"], np.int64).reshape(-1),
            np.asarray(d["shown_s"], np.float64).reshape(-1), np.asarray(d["shown_draws"], np.int64).reshape(-1),
            np.asarray(d["hidden_draws"], np.int64).reshape(-1),
        )


def _f32(x: float) -> float:
    """``x`` as the float32 that :meth:`Annotation.filter` compares scores with."""
    return float(np.float32(x))


class ThresholdTuner:
    """Tunes the pre-label confidence thresholds on the recent submissions (see the module docstring).

    ``costs`` are the seconds of every correction (default :class:`CostModel`); ``config`` the history
    and limits (:class:`TunerConfig`); ``prior`` the threshold that thin evidence is shrunk toward (the
    session's fixed threshold; a setting of the session, so not part of the state).
    """

    def __init__(self, task: str, num_classes: int, costs: CostModel | None = None,
                 config: TunerConfig | None = None, *, prior: float = 0.3) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        if isinstance(prior, bool) or not isinstance(prior, (int, float)) or not 0.0 <= prior <= 1.0:
            raise ValueError(f"prior must be a threshold in [0, 1], got {prior!r}")
        self.prior = float(prior)
        if int(num_classes) < 1:
            raise ValueError("at least one class is needed")
        self.task = task
        self.num_classes = int(num_classes)
        self.costs = costs or CostModel()
        self.config = config or TunerConfig()
        self._images: deque[_Image] = deque(maxlen=self.config.window)
        # every image and true object ever recorded: the calibration of an unset mask drawing time
        self._seen_images = 0
        self._seen_truths = 0
        self._arrays: dict[str, Any] | None = None
        self._tuned: tuple[float | None, list[float] | None] | None = None

    # ------------------------------------------------------------------------------- recording
    def record(self, image_id: int, raw: Annotation, final: Annotation) -> None:
        """Add one submission: ``raw`` is every candidate the model proposed for the image (with scores,
        before any threshold; may be empty), ``final`` what the person submitted.

        A second submission of the same image replaces the first (the newest correction is the truth).
        """
        if (raw.width, raw.height) != (final.width, final.height):
            raise ValueError(
                f"prediction is for a {raw.width}x{raw.height} image, the annotation for {final.width}x{final.height}"
            )
        if self.task == "classification":
            img = self._reduce_classes(int(image_id), raw, final)
        else:
            self._seen_images += 1
            self._seen_truths += len(final)
            img = self._reduce_objects(int(image_id), raw, final)
        kept = [i for i in self._images if i.image_id != img.image_id]
        if len(kept) != len(self._images):
            self._images = deque(kept, maxlen=self.config.window)
        self._images.append(img)
        self._arrays = None
        self._tuned = None

    def _check_labels(self, labels: np.ndarray, what: str) -> None:
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"{what} has class index {int(labels.max())}; there are {self.num_classes} classes")

    def _reduce_classes(self, image_id: int, raw: Annotation, final: Annotation) -> _Image:
        if final.category is None:
            raise ValueError("a classification submission needs a category")
        shown, _ = self.costs.charge(raw, final, "classification")
        manual = self.costs.manual(final, "classification")
        empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return _Image(image_id, float(shown), 0, float(manual), 0, empty_i, empty_f, empty_i, empty_f, empty_i,
                      empty_i)

    def _draw(self) -> float:
        """Seconds to draw one missed object (see the module docstring for uncalibrated masks)."""
        c = self.costs
        if self.task == "detection":
            return float(c.box_draw_s)
        if c.mask_draw_s is not None:
            return float(c.mask_draw_s)
        mean = self._seen_truths / self._seen_images if self._seen_images else 1.0
        return max(0.0, c.mask_manual_image_s - c.mask_image_s) / max(mean, 1.0)

    def _pair_costs(self, iou: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(fixed seconds, drawings) of showing each candidate as a fix of each truth, as
        :meth:`CostModel._boxes` / :meth:`CostModel._masks` charge one matched pair."""
        c = self.costs
        good = iou >= c.iou_high
        if self.task == "detection":
            fixed = np.where(same & good, c.box_correct_s, 0.0)
            fixed = fixed + np.where(~good, c.box_imprecise_s, 0.0) + np.where(~same, c.box_wrong_class_s, 0.0)
            return fixed, np.zeros(iou.shape, np.int64)
        with np.errstate(invalid="ignore"):
            clicks = np.maximum(1, np.ceil((c.iou_high - iou) / c.mask_click_gain - 1e-9))
        redraw = ~good & (clicks > c.mask_max_clicks)
        fixed = np.where(~same, c.mask_wrong_class_s, 0.0)
        fix = np.where(redraw, 0.0, c.mask_locate_s + c.mask_click_s * clicks)
        fixed = fixed + np.where(good, c.mask_accept_s, fix)
        return fixed, redraw.astype(np.int64)

    def _reduce_objects(self, image_id: int, raw: Annotation, final: Annotation) -> _Image:
        c = self.costs
        self._check_labels(raw.labels, "the prediction")
        self._check_labels(final.labels, "the submitted annotation")
        if self.task == "segmentation":
            none = np.zeros((0, final.height, final.width), bool)
            pm = raw.masks if raw.masks is not None else none
            gm = final.masks if final.masks is not None else none
            if len(pm) != len(raw) or len(gm) != len(final):
                raise ValueError("segmentation needs a mask for every object")
            iou = mask_iou(pm, gm)
            image_s = c.mask_image_s
        else:
            iou = box_iou(raw.boxes, final.boxes)
            image_s = c.box_image_s
        n, g = len(raw), len(final)
        scores = np.ones(n, np.float64) if raw.scores is None else raw.scores.astype(np.float64)
        scores = np.where(np.isnan(scores), -1.0, scores)  # NaN is never >= a threshold: never shown
        order = canonical_order(raw)  # descending score, ties by content
        shown_s = np.full(n, float(c.box_extra_s if self.task == "detection" else c.mask_extra_s))
        shown_draws = np.zeros(n, np.int64)
        hidden_draws = np.zeros(n, np.int64)
        taken = np.zeros(g, bool)
        if n and g:
            same = raw.labels[:, None] == final.labels[None, :]
            fixed, draws = self._pair_costs(iou, same)
            # the truth a candidate takes: the cheapest fix, the larger overlap among equals
            key = np.where(iou >= c.iou_low, fixed + draws * self._draw() - 1e-6 * iou, np.inf)
            for p in order:
                j = int(np.argmin(key[p]))
                if not np.isfinite(key[p, j]):
                    continue
                key[:, j] = np.inf
                taken[j] = True
                shown_s[p], shown_draws[p], hidden_draws[p] = fixed[p, j], draws[p, j], 1
        return _Image(
            image_id, float(image_s), int(g - taken.sum()), float(image_s), int(g),
            final.labels.astype(np.int64).copy(), scores, raw.labels.astype(np.int64).copy(), shown_s,
            shown_draws, hidden_draws,
        )

    # ------------------------------------------------------------------------------- the window
    def _window(self) -> dict[str, Any]:
        """The window as flat arrays in seconds (with the current drawing time) and recency weights."""
        if self._arrays is not None:
            return self._arrays
        imgs = list(self._images)
        n = len(imgs)
        draw = self._draw() if self.task != "classification" else 0.0
        w = 0.5 ** (np.arange(n - 1, -1, -1, dtype=np.float64) / self.config.half_life)
        counts = np.array([len(i.scores) for i in imgs], np.int64)
        cw = np.repeat(w, counts)

        def cat(k: str, dtype: Any) -> np.ndarray:
            return np.concatenate([getattr(i, k) for i in imgs]).astype(dtype) if n else np.zeros(0, dtype)

        shown = cat("shown_s", np.float64) + cat("shown_draws", np.float64) * draw
        hidden = cat("hidden_draws", np.float64) * draw
        base = np.array([i.base_s + i.base_draws * draw for i in imgs], np.float64)
        manual = np.array([i.manual_s + i.manual_draws * draw for i in imgs], np.float64)
        tcounts = np.array([len(i.truth_labels) for i in imgs], np.int64)
        labels = cat("labels", np.int64)
        support = np.bincount(labels, weights=cw, minlength=self.num_classes).astype(np.float64)
        truths = cat("truth_labels", np.int64)
        support = support + np.bincount(truths, weights=np.repeat(w, tcounts), minlength=self.num_classes)
        self._arrays = {
            "n": n, "w": w, "wsum": float(w.sum()), "base": float(w @ base) if n else 0.0,
            "manual": float(w @ manual) if n else 0.0, "scores": cat("scores", np.float64), "labels": labels,
            "cw": cw, "shown": shown, "hidden": hidden, "support": support,
            "has_candidates": np.bincount(labels, minlength=self.num_classes) > 0,
        }
        return self._arrays

    @staticmethod
    def _groups(s: np.ndarray, k: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates sorted by key, then descending score, merged where both are equal: (distinct
        scores, their keys, summed deltas)."""
        new = np.ones(len(s), bool)
        new[1:] = (s[1:] != s[:-1]) | (k[1:] != k[:-1])
        starts = np.flatnonzero(new)
        return s[starts], k[starts], (np.add.reduceat(d, starts) if len(s) else np.zeros(0))

    def _best(self, gs: np.ndarray, gk: np.ndarray, gd: np.ndarray, n_keys: int) -> list[float]:
        """Per key, the threshold in [floor, ceiling] that minimises ``sum(delta[scores >= t])``.

        ``gs, gk, gd`` are :meth:`_groups`: distinct scores (descending within a key), their keys and
        the summed weighted seconds that showing those candidates adds over hiding them (negative:
        saves). Showing the first ``j`` groups of a key costs a prefix sum; the least prefix over the
        ``j`` the floor and ceiling allow wins, the smallest ``j`` among equals (fewer objects to look
        at), and the threshold is a round number inside the interval of thresholds that show exactly
        those groups. Vectorised over keys, since a loop over 80 classes would cost milliseconds.
        """
        cfg = self.config
        keys = np.arange(n_keys)
        lo = np.searchsorted(gk, keys, side="left")
        n_k = np.searchsorted(gk, keys, side="right") - lo
        prefix = np.zeros(len(gs) + 1)
        np.cumsum(gd, out=prefix[1:])
        j_min = np.bincount(gk, weights=gs >= _f32(cfg.ceiling), minlength=n_keys).astype(np.int64)
        j_max = np.bincount(gk, weights=gs >= _f32(cfg.floor), minlength=n_keys).astype(np.int64)
        # option "show through group i" (j = i - lo + 1 groups of its key), and option "show none"
        j_of = np.arange(len(gs)) - lo[gk] + 1
        val = np.where((j_of >= j_min[gk]) & (j_of <= j_max[gk]), prefix[1:] - prefix[lo[gk]], np.inf)
        none = np.where(j_min == 0, 0.0, np.inf)
        best = none.copy()
        full = n_k > 0
        if full.any():
            best[full] = np.minimum(best[full], np.minimum.reduceat(val, lo[full]))
        limit = best + _TIE * (1.0 + np.abs(best))  # best is finite: j_min..j_max is never empty
        hits = np.flatnonzero(val <= limit[gk])
        first = hits[np.minimum(np.searchsorted(hits, lo), max(len(hits) - 1, 0))] if len(hits) else lo
        j = np.where(none <= limit, 0, first - lo + 1)
        padded = np.concatenate([gs, [-np.inf]])
        upper = np.where(j > 0, np.minimum(cfg.ceiling, padded[lo + j - 1]), cfg.ceiling)  # lowest shown
        lower = np.where(j < n_k, padded[np.minimum(lo + j, len(gs))], -np.inf)  # highest hidden
        mid = (np.maximum(lower, cfg.floor) + upper) / 2.0
        cands = np.stack([*(np.round(mid, d) for d in (2, 3, 4, 6)), mid, upper, np.full(n_keys, cfg.floor)], 1)
        c32 = cands.astype(np.float32).astype(np.float64)
        up32 = upper.astype(np.float32).astype(np.float64)
        ok = (cands >= cfg.floor) & (cands <= cfg.ceiling) & (c32 > lower[:, None]) & (c32 <= up32[:, None])
        t = np.where(ok.any(1), cands[keys, ok.argmax(1)], np.clip(upper, cfg.floor, cfg.ceiling))
        return [float(v) for v in t]

    # ---------------------------------------------------------------------------------- reading
    def _tune(self) -> tuple[float | None, list[float] | None]:
        if self._tuned is not None:
            return self._tuned
        if self.task == "classification" or len(self._images) < self.config.min_images:
            self._tuned = (None, None)
            return self._tuned
        a = self._window()
        delta = a["cw"] * (a["shown"] - a["hidden"])
        # one sort by descending score serves the global threshold, a stable sort by class the rest
        order = np.argsort(-a["scores"], kind="stable")
        zeros = np.zeros(len(order), np.int64)
        glob = self._best(*self._groups(a["scores"][order], zeros, delta[order]), 1)[0]
        per = [glob] * self.num_classes
        enough = (a["support"] >= self.config.min_class_objects) & a["has_candidates"]
        if enough.any():
            order = order[np.argsort(a["labels"][order], kind="stable")]
            groups = self._groups(a["scores"][order], a["labels"][order], delta[order])
            own = self._best(*groups, self.num_classes)
            per = [own[k] if enough[k] else glob for k in range(self.num_classes)]
        self._tuned = (self._shrink(glob, a["wsum"]), [self._shrink(t, a["wsum"]) for t in per])
        return self._tuned

    def _shrink(self, fitted: float, n: float) -> float:
        """``fitted`` moved toward the prior by the weight ``n`` of the evidence (module docstring)."""
        k = self.config.prior_images
        if k <= 0:
            return fitted
        prior = min(max(self.prior, self.config.floor), self.config.ceiling)
        return float(round(prior + (fitted - prior) * n / (n + k), 4))

    def thresholds(self) -> list[float] | None:
        """Per-class thresholds (a class with too little data takes the global one); None for
        classification or with fewer than ``min_images`` submissions. Cached until the next record."""
        per = self._tune()[1]
        return None if per is None else list(per)

    def global_threshold(self) -> float | None:
        """The one threshold that minimises the expected seconds over all classes (a one-value slider)."""
        return self._tune()[0]

    def expected(self, thresholds: float | Sequence[float] | None = None) -> dict[str, Any]:
        """Weighted mean seconds per image over the window: ``with_s`` with pre-labels shown at
        ``thresholds`` (one for all classes or one per class; default the tuned ones, and ``with_s`` is
        None while there are none), ``manual_s`` without pre-labels, and ``n`` images.

        Classification ignores ``thresholds``: ``with_s`` is the charge of the top-k list.
        """
        a = self._window()
        n = a["n"]
        if n == 0:
            return {"with_s": None, "manual_s": None, "n": 0}
        manual = a["manual"] / a["wsum"]
        if self.task == "classification":
            return {"with_s": a["base"] / a["wsum"], "manual_s": manual, "n": n}
        if thresholds is None:
            thresholds = self.thresholds()
            if thresholds is None:
                return {"with_s": None, "manual_s": manual, "n": n}
        t = np.asarray(thresholds, np.float32).astype(np.float64).reshape(-1)
        if t.size == 1:
            t = np.repeat(t, self.num_classes)
        if t.size != self.num_classes:
            raise ValueError(f"got {t.size} thresholds for {self.num_classes} classes")
        show = a["scores"] >= t[a["labels"]]
        extra = float(a["cw"] @ np.where(show, a["shown"], a["hidden"]))
        return {"with_s": (a["base"] + extra) / a["wsum"], "manual_s": manual, "n": n}

    def verdict(self) -> bool | None:
        """True when pre-labels at the tuned thresholds are expected to save more than ``margin`` seconds
        per image over manual labeling, False otherwise, None with fewer than ``min_images`` submissions.

        The saving must be strictly positive even at ``margin=0``: a threshold above every score hides
        all candidates and costs exactly the manual time, so "at least as good as manual" would always
        hold for a model whose every candidate is wrong.
        """
        if len(self._images) < self.config.min_images:
            return None
        e = self.expected()
        if e["with_s"] is None:
            return None
        saved = e["manual_s"] - e["with_s"]
        return bool(saved > self.config.margin + _TIE * (1.0 + abs(e["manual_s"])))

    def summary(self) -> dict[str, Any]:
        """What the UI shows: thresholds (rounded for display), expected seconds, verdict, images."""
        e = self.expected()
        glob = self.global_threshold()
        per = self.thresholds()

        def r(x: float | None, nd: int) -> float | None:
            return None if x is None else round(float(x), nd)

        return {
            "threshold": r(glob, 4),
            "thresholds": None if per is None else [r(t, 4) for t in per],
            "with_s": r(e["with_s"], 3),
            "manual_s": r(e["manual_s"], 3),
            "saved_s": None if e["with_s"] is None else r(e["manual_s"] - e["with_s"], 3),
            "verdict": self.verdict(),
            "n": e["n"],
        }

    # ------------------------------------------------------------------------------------ state
    _STATE_KEYS = ("task", "num_classes", "costs", "config", "seen_images", "seen_truths", "images")

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON values: the reduced submissions (not the annotations) and the settings they were
        reduced with."""
        return {
            "task": self.task,
            "num_classes": self.num_classes,
            "costs": self.costs.as_dict(),
            "config": asdict(self.config),
            "seen_images": self._seen_images,
            "seen_truths": self._seen_truths,
            "images": [i.to_state() for i in self._images],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; refuses one for another task or class count. The stored costs
        and config are adopted, since the stored seconds were computed with them."""
        check_keys(state, self._STATE_KEYS, "ThresholdTuner")
        if state["task"] != self.task or int(state["num_classes"]) != self.num_classes:
            raise ValueError(
                f"ThresholdTuner state is for {state['task']!r} with {state['num_classes']} classes, "
                f"this tuner is {self.task!r} with {self.num_classes}"
            )
        check_keys(state["costs"], [f.name for f in fields(CostModel)], "CostModel")
        later = {"prior_images"}  # added after the first states were written: missing means the default
        names = [f.name for f in fields(TunerConfig)]
        check_keys(state["config"], [n for n in names if n not in later or n in state["config"]], "TunerConfig")
        if not isinstance(state["images"], list):
            raise ValueError("ThresholdTuner state: images must be a list")
        costs, config = CostModel(**state["costs"]), TunerConfig(**state["config"])
        images = [_Image.from_state(d) for d in state["images"]]
        for img in images:
            for arr in (img.labels, img.truth_labels):
                self._check_labels(arr, "ThresholdTuner state")
        self.costs, self.config = costs, config
        self._images = deque(images, maxlen=config.window)
        self._seen_images, self._seen_truths = int(state["seen_images"]), int(state["seen_truths"])
        self._arrays = None
        self._tuned = None


__all__ = ["ThresholdTuner", "TunerConfig"]
