"""Live plots of a training session: the loss, what the sampler feeds the model, pre-label quality.

    LivePlots(session)                # all three, side by side (they wrap on a narrow page)
    LossPlot(session)                 # or any one of them on its own
    plot = QualityPlot()              # an empty plot, bound later (and to another session, if wanted)
    plot.bind(session); plot.unbind()

The front end (``js/src/plots/``, drawn with uPlot) shows whatever the ``data`` and ``meta`` traits
hold, so a saved notebook or a reloaded page shows the last state. The numbers come from pure
functions of the session — :func:`loss_data`, :func:`sampler_data`, :func:`quality_data` — which a
script or a test can call without a browser. A bound plot is refreshed by the session's one
:class:`~._watch.SessionWatcher` (at most four times a second, on the kernel's event loop) and only
when something it shows changed: the training step, the sampler's set, or the evaluator's history.

Wire format: ``data`` maps series names to float64 little-endian bytes (binary buffers, never JSON
number lists); NaN means "no value here" (a gap). Series of one group have equal lengths; the layout
of each kind is given in the docstring of its function. ``meta`` holds small JSON extras.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ipywidgets
import numpy as np
import traitlets as t

from ._base import GuardedWidget
from ._static import asset
from ._watch import SessionWatcher

if TYPE_CHECKING:
    from ..engine.evaluator import LiveEvaluator
    from ..engine.session import LiveSession
    from ..engine.trainer import Trainer

    TrainerSource = LiveSession | Trainer
    EvaluatorSource = LiveSession | LiveEvaluator

KINDS = ("loss", "sampler", "quality")
#: a sample is "recent" in a batch when it is among this many samples that most recently joined training
RECENT_SAMPLES = 5
#: batches in the trailing mean of the recent share
SHARE_WINDOW = 20
#: judged images in the trailing top-k accuracy of classification
QUALITY_WINDOW = 10
#: the detection breakdown, bottom to top of each stacked bar: what the labeler kept, adjusted, removed
DETECTION_CATEGORIES = ("correct", "imprecise", "wrong_class", "missed", "extra")
CATEGORY_NAMES = {"correct": "correct", "imprecise": "imprecise", "wrong_class": "wrong class",
                  "missed": "missed", "extra": "extra"}


# ------------------------------------------------------------------------------------- plot data
@dataclass(frozen=True)
class PlotData:
    """What a plot shows: named float64 series (NaN = no value) and small JSON extras."""

    series: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def wire(self) -> dict[str, bytes]:
        """The ``data`` trait: each series as float64 little-endian bytes."""
        return {name: encode(values) for name, values in self.series.items()}


def encode(values: Any) -> bytes:
    """float64 little-endian bytes of a 1-D sequence (what the front end decodes as Float64Array)."""
    return np.ascontiguousarray(values, dtype="<f8").ravel().tobytes()


def decode(data: bytes | memoryview) -> np.ndarray:
    """The inverse of :func:`encode`."""
    return np.frombuffer(data, dtype="<f8")


def _f64(values: Any) -> np.ndarray:
    return np.asarray([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def bucket_means(series: Mapping[str, np.ndarray], max_points: int) -> dict[str, np.ndarray]:
    """At most ``max_points`` rows: consecutive rows averaged in near-equal buckets, NaNs ignored.

    Applied to the x series too, so each point sits at the mean x of what it summarises. Equal-length
    series only; shorter inputs come back unchanged.
    """
    cols = {k: np.asarray(v, np.float64) for k, v in series.items()}
    n = len(next(iter(cols.values()))) if cols else 0
    if max_points < 1:
        raise ValueError(f"max_points must be positive, got {max_points}")
    if n <= max_points:
        return cols
    starts = np.linspace(0, n, max_points + 1).round().astype(np.int64)[:-1]
    out = {}
    for k, v in cols.items():
        valid = ~np.isnan(v)
        sums = np.add.reduceat(np.where(valid, v, 0.0), starts)
        counts = np.add.reduceat(valid.astype(np.int64), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the ``window - 1`` before it (fewer at the start), NaNs ignored."""
    v = np.asarray(values, np.float64)
    valid = ~np.isnan(v)
    s = np.concatenate([[0.0], np.cumsum(np.where(valid, v, 0.0))])
    c = np.concatenate([[0], np.cumsum(valid)])
    hi = np.arange(1, len(v) + 1)
    lo = np.maximum(0, hi - window)
    counts = c[hi] - c[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, (s[hi] - s[lo]) / np.maximum(counts, 1), np.nan)


def _trainer(source: Any) -> Trainer:
    return getattr(source, "trainer", source)


def _evaluator(source: Any) -> LiveEvaluator:
    return getattr(source, "evaluator", source)


def _waiting_hint(source: Any) -> str:
    """Why nothing trains yet, in a labeler's words ("Label 2 more images to start"), or ""."""
    from ..engine.session import labels_needed_message

    trainer = _trainer(source)
    if trainer.labels_needed:
        return labels_needed_message(trainer.labels_needed)
    if trainer.phase == "idle":
        return "Training has not been started"
    return ""


# ------------------------------------------------------------------------------------------ loss
def loss_data(source: TrainerSource, *, max_points: int = 1000) -> PlotData:
    """Training loss per step, its moving average, and the stretches where it stopped improving.

    Series (one group): ``step``, ``loss`` (NaN for a skipped step), ``smoothed``. They come from the
    plateau detector's history, which covers the whole session (older steps thinned 2:1 when long, see
    ``PlateauConfig.history_size``) and survives a resume. ``smoothed`` is an exponential moving average
    with the detector's ``smoothing`` factor, bias-corrected (it starts on the data) and adjusted for
    thinned gaps; unlike the detector's own it is not restarted by every new label (that would make the
    curve jump at each submission). More than
    ``max_points`` steps are averaged in buckets (:func:`bucket_means`).

    meta: ``plateaus``: ``[[start, end, resumed], ...]``. ``end`` is the step at which the detector
    fired and training paused (no steps happen while paused, so the pause itself has no width on a
    step axis); ``start`` is where the loss stopped improving as the detector saw it: the beginning of
    the later window of the first of the ``patience`` consecutive checks that fired, i.e.
    ``end - (patience - 1) * check_every - window``, but not before the previous reset. ``resumed`` is
    false for a plateau training is still paused on. Also ``step``, ``paused``, ``empty`` (the text of
    the empty state).
    """
    trainer = _trainer(source)
    det = trainer.plateau
    cfg = det.config
    steps: list[float] = []
    losses: list[float] = []
    periods: list[list[Any]] = []
    last_reset = 0
    for rec in det.history:
        event = rec.get("event")
        if "loss" in rec:
            steps.append(float(rec["step"]))
            losses.append(math.nan if rec["loss"] is None else float(rec["loss"]))
        if event == "plateau":
            end = int(rec["step"])
            start = max(last_reset, end - (cfg.patience - 1) * cfg.every - cfg.window)
            periods.append([start, end, False])
        elif event == "reset":
            last_reset = int(rec["step"])
            if periods and not periods[-1][2]:
                periods[-1][2] = True
    if periods and not det.plateaued:
        periods[-1][2] = True  # restored from a state whose reset record was thinned away
    if not trainer.config.plateau:
        periods = []  # the detector only watched (TrainerConfig(plateau=False)): training never paused
    step = np.asarray(steps, np.float64)
    loss = np.asarray(losses, np.float64)
    smoothed = _ema_with_gaps(step, loss, cfg.smoothing)
    series = bucket_means({"step": step, "loss": loss, "smoothed": smoothed}, max_points)
    meta: dict[str, Any] = {"step": int(trainer.step), "paused": bool(trainer.paused_by_plateau), "plateaus": periods}
    if not len(step):
        hint = _waiting_hint(source)
        meta["empty"] = "No training steps yet" + (f" · {hint}" if hint else "")
    return PlotData(series, meta)


def _ema_with_gaps(step: np.ndarray, value: np.ndarray, alpha: float) -> np.ndarray:
    """Bias-corrected EMA where a gap of ``d`` steps decays the average as ``d`` single steps would.

    Bias-corrected (as Adam's moments): each value is a weighted mean of the losses seen so far, so the
    curve starts on the data instead of dragging the first loss along for ~1/alpha steps.
    """
    out = [math.nan] * len(value)
    num = den = 0.0
    prev: float | None = None
    decay = 1.0 - alpha
    for i, (s, v) in enumerate(zip(step.tolist(), value.tolist(), strict=True)):  # floats: 5x faster
        if v == v:  # not NaN
            keep = decay if prev is None or s - prev <= 1.0 else decay ** (s - prev)
            num = keep * num + (1.0 - keep) * v
            den = keep * den + (1.0 - keep)
            prev = s
        if den > 0:
            out[i] = num / den
    return np.asarray(out, np.float64)


# --------------------------------------------------------------------------------------- sampler
def sampler_data(
    source: TrainerSource, *, recent: int = RECENT_SAMPLES, window: int = SHARE_WINDOW, max_points: int = 1000
) -> PlotData:
    """How often each labeled sample was trained on, and how much of each batch was new material.

    Group "samples", one row per labeled sample in the order they joined training (first label; a
    relabel keeps the place): ``order`` (1..N), ``seen`` (views so far), ``target`` (the view count
    the frequency sampler aims at, :func:`~livetrain_widgets.engine.sampler.expected_views`' rule),
    ``seen_recent`` (``seen`` for the ``recent`` latest samples, NaN for the others, to highlight them).

    Group "batches", one row per logged training step (the trainer keeps the last ~2000):
    ``batch_step`` (trainer step), ``recent_share``: the fraction of the batch's samples that were
    *recent when it was drawn* — among the ``recent`` samples that most recently joined training before
    that draw (by the sampler step they entered at; relabels do not make a sample recent again, removed
    samples count as not recent); ``recent_avg``: its trailing mean over ``window`` batches;
    ``uniform_share``: what uniform sampling would give on average, ``min(recent, n) / n`` with ``n``
    samples in the set. More than ``max_points`` batches are averaged in buckets.

    meta: ``recent``, ``window``, ``samples``, ``batch_size``, ``step``, ``sampler`` (class name),
    ``empty``.
    """
    trainer = _trainer(source)
    stats = trainer.sampler_stats()
    targets = stats["target"]
    log = list(trainer.batch_log)  # appended on the event loop thread, where this runs
    keys: list[int] = stats["keys"]
    entered: list[int] = list(stats.get("entered_step", stats["added_step"]))
    n = len(keys)
    # join order: by entered step, ties in insertion order (the sampler's own order, so usually as is)
    order = np.asarray(sorted(range(n), key=lambda i: entered[i]), np.int64)
    rank = {keys[i]: r for r, i in enumerate(order)}
    entered_sorted = [entered[i] for i in order]
    seen = np.asarray(stats["seen"], np.float64)[order]
    target = np.asarray(targets, np.float64)[order]
    seen_recent = np.where(np.arange(n) >= n - recent, seen, np.nan)

    # per batch: how many samples were in the set at its draw, and which of its keys were the newest
    sizes = np.asarray([len(b) for _, _, b in log], np.int64)
    have = np.searchsorted(np.asarray(entered_sorted, np.int64), [d for _, d, _ in log], side="right")
    ranks = np.asarray([rank.get(k, -1) for _, _, b in log for k in b], np.int64)  # -1: since removed
    have_each = np.repeat(have, sizes)
    hits = (ranks >= have_each - recent) & (ranks < have_each) & (ranks >= 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.bincount(np.repeat(np.arange(len(log)), sizes), hits, minlength=len(log)) / sizes
        uniform = np.where(have > 0, np.minimum(recent, have) / np.maximum(have, 1), np.nan)
    batches = bucket_means(
        {
            "batch_step": np.asarray([s for s, _, _ in log], np.float64),
            "recent_share": share,
            "recent_avg": trailing_mean(share, window),
            "uniform_share": uniform,
        },
        max_points,
    )
    series = {
        "order": np.arange(1, n + 1, dtype=np.float64),
        "seen": seen,
        "target": target,
        "seen_recent": seen_recent,
        **batches,
    }
    meta: dict[str, Any] = {
        "recent": recent,
        "window": window,
        "samples": n,
        "batch_size": int(trainer.config.batch_size),
        "step": int(trainer.step),
        "sampler": type(trainer.sampler).__name__,
    }
    if not n:
        hint = _waiting_hint(source)
        meta["empty"] = "No labeled samples yet" + (f" · {hint}" if hint else "")
    elif not log:
        meta["empty_batches"] = "No training steps yet"
    return PlotData(series, meta)


# --------------------------------------------------------------------------------------- quality
def quality_data(source: EvaluatorSource, *, max_points: int = 400, window: int = QUALITY_WINDOW) -> PlotData:
    """Each judged pre-label's score, in the order judged, with the evaluator's moving average.

    Only images that had a pre-label when they were submitted are judged (the evaluator's records with
    ``offered``). Series (one group): ``order`` (1..M), ``score``, ``ema`` (the evaluator's EMA after
    that image), ``step`` (the model step that made the pre-label), and per task:

    - detection: ``correct``, ``imprecise``, ``wrong_class``, ``missed``, ``extra`` — object counts per
      image, drawn as stacked bars. Per image rather than running totals, because a labeler wants to see
      whether *recent* pre-labels need less fixing; totals are dominated by the first, worst images;
    - segmentation: ``mean_iou`` (instance-matched) and ``semantic_miou`` (class maps); ``score`` is one
      of them (``meta.score_name``);
    - classification: ``top1`` and ``topk`` (1 = hit, 0 = miss) and ``topk_avg``, the top-k hit rate
      over the last ``window`` judged images.

    More than ``max_points`` images are averaged in buckets (counts become mean counts per image).
    meta: ``task``, ``judged``, ``ema``, ``score_name``, ``categories`` ([[key, name], ...], detection),
    ``top_k``, ``window``, ``not_offered``, ``empty``.
    """
    ev = _evaluator(source)
    history = list(ev.history)
    recs = [r for r in history if r.get("offered")]
    m = len(recs)
    cols: dict[str, np.ndarray] = {
        "order": np.arange(1, m + 1, dtype=np.float64),
        "score": _f64(r.get("score") for r in recs),
        "ema": _f64(r.get("ema") for r in recs),
        "step": _f64(r.get("step") for r in recs),
    }
    meta: dict[str, Any] = {"task": ev.task, "judged": m, "ema": ev.ema, "not_offered": len(history) - m}
    if ev.task == "detection":
        for k in DETECTION_CATEGORIES:
            cols[k] = _f64(r.get(k, 0) for r in recs)
        meta["categories"] = [[k, CATEGORY_NAMES[k]] for k in DETECTION_CATEGORIES]
        meta["score_name"] = "pre-label score"
    elif ev.task == "segmentation":
        cols["mean_iou"] = _f64(r.get("mean_iou") for r in recs)
        cols["semantic_miou"] = _f64(r.get("semantic_miou") for r in recs)
        meta["score_name"] = "semantic mIoU" if ev.config.semantic else "mean IoU"
    else:
        cols["top1"] = _f64(float(bool(r.get("top1"))) for r in recs)
        cols["topk"] = _f64(float(bool(r.get("topk"))) for r in recs)
        cols["topk_avg"] = trailing_mean(cols["topk"], window)
        meta["score_name"] = "top-1 hit"
        meta["top_k"] = int(ev.config.top_k)
        meta["window"] = window
    if not m:
        meta["empty"] = "No pre-labels judged yet · submit an image that showed pre-labels"
    return PlotData(bucket_means(cols, max_points), meta)


# --------------------------------------------------------------------------------------- widgets
class LivePlot(GuardedWidget):
    """One chart (or a stacked pair) drawn from its traits; see ``PlotModel`` in js/src/protocol.ts.

    Usable without a session: set ``data`` / ``meta`` yourself, e.g. ``plot.show(loss_data(trainer))``.
    The front end may change nothing (``_frontend_writable`` is empty).
    """

    _esm = asset("plots.js")
    _css = asset("plots.css")

    kind = t.Unicode("loss").tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    data = t.Dict(value_trait=t.Bytes(), default_value={}).tag(sync=True)
    meta = t.Dict(default_value={}).tag(sync=True)
    #: height of the drawing area in CSS pixels (two-chart kinds split it); title and legends add to it
    height = t.Int(300, min=120, max=2000).tag(sync=True)

    @t.validate("kind")
    def _check_kind(self, proposal: Any) -> str:
        if proposal["value"] not in KINDS:
            raise t.TraitError(f"kind must be one of {KINDS}, got {proposal['value']!r}")
        return proposal["value"]

    def show(self, plot_data: PlotData) -> None:
        """Replace what the plot shows (one message to the front end for data and meta)."""
        with self.hold_sync():
            self.data = plot_data.wire()
            self.meta = _json_safe(plot_data.meta)


def _json_safe(value: Any) -> Any:
    """meta as strict JSON: NaN / infinity become null (JSON has no NaN; the front end would choke)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


#: per session and kind: the signature of the last computed data, and that data
_LATEST: weakref.WeakKeyDictionary[Any, dict[str, tuple[Hashable, PlotData]]] = weakref.WeakKeyDictionary()


class _SessionPlot(LivePlot):
    """A :class:`LivePlot` that follows a session: bind, unbind, push only what changed."""

    _kind: str = "loss"
    _title: str = ""
    _unbound = "Not bound to a session"

    def __init__(self, session: LiveSession | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("title", self._title)
        super().__init__(kind=self._kind, **kwargs)
        self.meta = {"empty": self._unbound}
        self._session: Any = None
        self._signature: Hashable = None
        if session is not None:
            self.bind(session)

    @property
    def session(self) -> LiveSession | None:
        return self._session

    def bind(self, session: LiveSession) -> None:
        """Follow ``session`` (shows its current state at once); a plot follows one session at a time."""
        self.unbind()
        self._session = session
        self._signature = None
        SessionWatcher.of(session).add(self._on_poll)

    def unbind(self) -> None:
        """Stop following; the plot keeps showing the last state."""
        if self._session is not None:
            SessionWatcher.of(self._session).remove(self._on_poll)
            self._session = None

    def refresh(self) -> bool:
        """Recompute now if something changed (what the watcher does each tick); returns whether it did."""
        return self._session is not None and self._update(self._session)

    def close(self) -> None:
        self.unbind()
        super().close()

    def _on_poll(self, session: Any) -> None:
        self._update(session)

    def _update(self, session: Any) -> bool:
        signature = self._changes(session)
        if signature == self._signature:
            return False
        self._signature = signature
        # Plots of one kind on one session (a cell run twice, a plot shown alone and in LivePlots)
        # compute each change once.
        latest = _LATEST.setdefault(session, {})
        hit = latest.get(self.kind)
        if hit is None or hit[0] != signature:
            hit = latest[self.kind] = (signature, self._compute(session))
        self.show(hit[1])
        return True

    # what a subclass defines: a cheap fingerprint of what it shows, and the data itself
    def _changes(self, session: Any) -> Hashable:
        raise NotImplementedError

    def _compute(self, session: Any) -> PlotData:
        raise NotImplementedError


class LossPlot(_SessionPlot):
    """Training loss and its moving average per step; shaded where it stopped improving (:func:`loss_data`)."""

    _kind = "loss"
    _title = "Training loss"

    def _changes(self, session: Any) -> Hashable:
        tr = session.trainer
        waiting = _waiting_hint(session) if tr.plateau.step == 0 else ""
        return (tr.step, tr.plateau.step, tr.paused_by_plateau, waiting)

    def _compute(self, session: Any) -> PlotData:
        return loss_data(session)


class SamplerPlot(_SessionPlot):
    """Views per labeled sample against the sampler's target, and the share of recent samples per batch
    (:func:`sampler_data`)."""

    _kind = "sampler"
    _title = "What the model trains on"

    def _changes(self, session: Any) -> Hashable:
        tr = session.trainer
        waiting = _waiting_hint(session) if not tr.num_samples else ""
        return (tr.step, tr.sampler.step, len(tr.sampler), waiting)

    def _compute(self, session: Any) -> PlotData:
        return sampler_data(session)


class QualityPlot(_SessionPlot):
    """Each judged pre-label's score and the moving average, with the detection breakdown
    (:func:`quality_data`)."""

    _kind = "quality"
    _title = "Pre-label quality"

    def _changes(self, session: Any) -> Hashable:
        ev = session.evaluator
        return (getattr(ev, "revision", None), len(ev.history), ev.ema)  # a replaced record keeps the length

    def _compute(self, session: Any) -> PlotData:
        return quality_data(session)


class LivePlots(ipywidgets.Box):
    """The loss, sampler and quality plots of one session side by side, wrapping on a narrow page.

    ``.loss``, ``.sampler`` and ``.quality`` are the plots; :meth:`bind` / :meth:`unbind` move all three.
    """

    def __init__(self, session: LiveSession | None = None, *, height: int = 300, **kwargs: Any) -> None:
        def cell() -> ipywidgets.Layout:
            return ipywidgets.Layout(flex="1 1 320px", min_width="280px", margin="0 8px 8px 0")

        self.loss = LossPlot(height=height, layout=cell())
        self.sampler = SamplerPlot(height=height, layout=cell())
        self.quality = QualityPlot(height=height, layout=cell())
        kwargs.setdefault("layout", ipywidgets.Layout(display="flex", flex_flow="row wrap", width="100%"))
        super().__init__([self.loss, self.sampler, self.quality], **kwargs)
        if session is not None:
            self.bind(session)

    @property
    def plots(self) -> tuple[LossPlot, SamplerPlot, QualityPlot]:
        """The three plots: loss with plateau periods, what the sampler feeds, pre-label scores."""
        return (self.loss, self.sampler, self.quality)

    def bind(self, session: LiveSession) -> None:
        """Follow ``session``: every plot redraws as it trains and as labels arrive."""
        for p in self.plots:
            p.bind(session)

    def unbind(self) -> None:
        """Stop following the session (the plots keep their last data)."""
        for p in self.plots:
            p.unbind()

    def close(self) -> None:
        """Stop following the session and close the widgets."""
        for p in self.plots:
            p.close()
        super().close()


__all__ = [
    "LivePlot",
    "LivePlots",
    "LossPlot",
    "PlotData",
    "QualityPlot",
    "SamplerPlot",
    "bucket_means",
    "decode",
    "encode",
    "loss_data",
    "quality_data",
    "sampler_data",
    "trailing_mean",
]
