"""Simulated-annotator study: how many working hours and calendar days a labeling project takes with
live training, batch human-in-the-loop retraining (hitl), a static model, or no model (manual).

Every figure comes from real predictions of the real engine on real labeled data; only the person is
simulated. They walk the dataset in a seeded order, receive each strategy's pre-labels, correct them to
the ground truth and are charged by a documented cost model (``livetrain_widgets.study.costs``;
override any cost with ``--cost NAME=SECONDS``). Human time is a virtual clock: by default the live trainer
gets the training a real session would have on this machine while each image is labeled, i.e. the
person's seconds on it divided by the trainer's step time (``--compute-ratio auto``: measured before the
study, then the median of the trainer's own last 50 steps, since a step's cost changes as features are
cached and the set grows; at most ``--max-steps-per-image``); ``--compute-ratio R`` gives R steps per
simulated second, and ``--steps-per-image N`` a fixed N (the ablation). Those steps train on the labels
submitted *before* that image, as in a real session.

What the person submits: a pre-label object they accept without a fix (same class, IoU >= 0.7) is stored
as the pre-label drew it, not as the truth, and trained on as such (``accept=stored``, the default);
``accept=charged`` has them fix every object short of IoU ``--exact-iou`` (0.9), charged and stored exact;
``accept=truth`` stores the truth without charging the difference (the idealisation of earlier studies).

Strategies (repeat ``--strategy``; options after a colon, comma-separated):
  manual                 no model
  static[:k=K]           the embedded model trained once on the first K images, then frozen
  static:model=NAME,k=0  a zero-shot model (e.g. a Grounding DINO folder) that never trains
  hitl                   batch retraining as teams run it: retrained from the pretrained weights, until
                         the loss plateaus, each time a workday's labeling is done (--workday-hours of the
                         person's simulated seconds in this run); the retrain runs overnight and pauses
                         labeling only for what the night does not cover (steps x measured step time)
  hitl:proportional      ... retrained at 2%, 10%, 20% and 50% of the walk instead (the report's
                         200/1,000/2,000/5,000-of-10,000 schedule); labeling waits for each retrain
  hitl:at=A/B/C          ... retrained after A, B and C images; labeling waits for each retrain
                         (--hitl-pause-days D replaces every derived pause by D days, as the report assumed)
  live|hitl|static:accept=stored|charged|truth   what is stored for accepted pre-label objects (above)
  live                   the engine: continuous training between submissions
  live:uniform           ... with uniformly reshuffled epochs instead of the frequency sampler
  live:noplateau         ... with the loss-plateau detector off (training never pauses)
  live:offer=N           ... pre-labels offered from image N on (the engine's own rule otherwise)
  live:steps=K           ... with K steps per image
  live:fixedthreshold    ... shown at the fixed --threshold instead of the thresholds the tuner chooses
  live:nowithhold        ... offered by the trainer's rule alone: never held back when they cost more
  live:nobalance         ... without class balance (neither in the frequency sampler nor in the loss)
  live:objbalance=T      ... with per-object class balance in the loss at T (TrainerConfig.object_balance)
  live:boost=B           ... learning rate B times higher while the set is small (TrainerConfig.lr_boost)
  live:restart=N         ... a new class restarts the boost for N steps (TrainerConfig.restart_steps)
  live:front=F           ... F times the training steps while the set is small (halving every 8 labels):
                         front-loaded compute, as a real session gets when early images take long by hand
  live:order=Q           ... images in queue order Q: random (the seeded walk, default), file (by name) or
                         uncertain (the least certain of the next --order-pool images, predicted with the
                         current weights; the prediction time is taken from the training, as in a session)
  live:plateau=T,window=W ... the loss-plateau detector's threshold T (least relative improvement of the window
                         mean that counts as progress; the trainer's default 0.01) and window W (steps)

``--mode stream`` runs the correction mode's protocol instead (see ``livetrain_widgets.study.stream``).

Outputs: ``OUT/results.json`` (configuration, machine, costs with their sources, per-strategy summary,
every per-image record, held-out scores, the offline reference), four plots (progress against calendar
days and working hours, labeling speed against working hours and images labeled) and a table on stdout.
``OUT/stored/<strategy>.json.gz`` keeps the labels the first live walk stored; the offline reference is
trained on them after the last strategy. ``--resume`` continues an interrupted study in the same ``OUT``
(same data and settings, refused otherwise): strategies done are kept, each run's machine and wall time
are listed in ``runs``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cli import key_values as _kv
from ..engine._checks import check_threshold_value
from ..engine._output_folder import OutputFolder
from ..engine.annotation import Annotation
from ..engine.autothreshold import ThresholdTuner
from ..engine.evaluator import EvaluatorConfig, LiveEvaluator, offline_metrics
from ..engine.formats import FORMATS
from ..engine.plateau import PlateauConfig
from ..engine.queue import most_uncertain
from ..engine.sampler import SamplerConfig
from ..engine.trainer import Trainer, TrainerConfig
from .costs import SOURCES, CostModel
from .dataset import Item, StudyData, load_study_data
from .results import environment, format_table, output_folder, relate, write_plots, write_results

STRATEGY_KINDS = ("manual", "static", "hitl", "live")


# --------------------------------------------------------------------------------- configuration
@dataclass
class Strategy:
    """One way of labeling, parsed from ``kind[:option,option=value,...]``."""

    name: str
    kind: str
    sampler: str = "frequency"
    plateau: bool = True
    offer_from: int | None = None
    steps: int | None = None
    k: int | None = None
    at: list[int] | None = None
    model: str | None = None
    auto_threshold: bool = True
    auto_offer: bool = True
    class_balance: bool = True
    lr_boost: float | None = None
    restart_steps: int | None = None
    front: float | None = None
    object_balance: float | None = None
    #: hitl: "daily" (a retrain per workday of labeling), "proportional" (2/10/20/50 % of the walk), or
    #: None with ``at``
    schedule: str | None = None
    #: what accepted pre-label objects are stored as: "stored" (as drawn), "charged" (fixed to exact), "truth"
    accept: str = "stored"
    #: live: "random" (the seeded walk), "file" (by name) or "uncertain"
    order: str = "random"
    #: live: the plateau detector's threshold (least relative improvement per window) and window, instead of
    #: the trainer's defaults (``PlateauConfig``) and ``--plateau-window``
    plateau_threshold: float | None = None
    plateau_window: int | None = None

    @classmethod
    def parse(cls, text: str) -> Strategy:
        kind, _, opts = text.strip().partition(":")
        if kind not in STRATEGY_KINDS:
            raise ValueError(f"unknown strategy {kind!r}; expected one of {', '.join(STRATEGY_KINDS)}")
        s = cls(name=text.strip(), kind=kind)
        if kind == "hitl":
            s.schedule = "daily"
        for opt in filter(None, (o.strip() for o in opts.split(","))):
            key, eq, value = opt.partition("=")
            try:
                if (kind, key, eq) == ("live", "uniform", ""):
                    s.sampler = "uniform"
                elif (kind, key, eq) == ("live", "noplateau", ""):
                    s.plateau = False
                elif (kind, key) == ("live", "offer") and eq:
                    s.offer_from = int(value)
                elif (kind, key) == ("live", "steps") and eq:
                    s.steps = int(value)
                elif (kind, key, eq) == ("live", "fixedthreshold", ""):
                    s.auto_threshold = False
                elif (kind, key, eq) == ("live", "nowithhold", ""):
                    s.auto_offer = False
                elif (kind, key, eq) == ("live", "nobalance", ""):
                    s.class_balance = False
                elif (kind, key) == ("live", "objbalance") and eq:
                    s.object_balance = float(value)
                    if not 0 <= s.object_balance <= 1:
                        raise ValueError
                elif (kind, key) == ("live", "boost") and eq:
                    s.lr_boost = float(value)
                elif (kind, key) == ("live", "restart") and eq:
                    s.restart_steps = int(value)
                elif (kind, key) == ("live", "front") and eq:
                    s.front = float(value)
                    if s.front < 1:
                        raise ValueError
                elif (kind, key) == ("static", "k") and eq:
                    s.k = int(value)
                elif (kind, key) == ("static", "model") and eq:
                    s.model = value
                elif (kind, key) == ("hitl", "at") and eq:
                    s.at = sorted({int(v) for v in value.split("/") if v})
                    s.schedule = None
                elif kind == "hitl" and key in ("daily", "proportional") and not eq:
                    s.schedule = key
                elif kind != "manual" and key == "accept" and value in ("stored", "charged", "truth"):
                    s.accept = value
                elif (kind, key) == ("live", "order") and value in ("random", "file", "uncertain"):
                    s.order = value
                elif (kind, key) == ("live", "plateau") and eq:
                    s.plateau_threshold = float(value)
                    if not 0 <= s.plateau_threshold < 1:
                        raise ValueError
                elif (kind, key) == ("live", "window") and eq:
                    s.plateau_window = int(value)
                    if s.plateau_window < 2:
                        raise ValueError
                else:
                    raise ValueError
            except ValueError:
                raise ValueError(f"strategy {text!r}: option {opt!r} is not understood (see --help)") from None
        return s


@dataclass
class StudyConfig:
    """Everything a study run depends on; written into results.json."""

    seed: int = 0
    #: training steps while one image is labeled (live): the fixed-compute ablation; when set, it is used
    #: instead of ``compute_ratio``
    steps_per_image: int | None = None
    #: training steps per simulated human second (live); "auto": real time on this machine, 1 / the step
    #: time measured before the study (:func:`resolve_compute`)
    compute_ratio: float | str | None = "auto"
    #: the step time ``--compute-ratio auto`` measured (the ratio is its inverse: real-time training)
    measured_step_seconds: float | None = None
    #: the most live training steps while one image is labeled (bounds a study's wall time; the plateau
    #: detector pauses training sooner where the loss has stopped improving)
    max_steps_per_image: int | None = 1500
    #: pre-labels below this confidence are not shown (the app's default)
    threshold: float = 0.3
    #: calendar days each hitl retrain pauses labeling; None: derived from its steps and the step time
    hitl_pause_days: float | None = None
    workday_hours: float = 6.0
    #: ``accept=charged``: pre-label objects below this IoU are fixed (charged as imprecise) and stored exact
    exact_iou: float = 0.9
    #: ``live:order=uncertain``: the next image is the least certain of this many next in the walk
    order_pool: int = 16
    #: retrains and the offline reference train until the plateau detector fires, at most this long
    offline_max_steps: int = 1500
    offline_min_steps: int = 200
    #: images labeled at which each model strategy is also scored on the held-out set
    eval_at: list[int] = field(default_factory=lambda: [10, 20, 50, 100])
    model: str = "embedded"
    model_options: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    batch_size: int = 4
    min_labeled: int = 2
    plateau_window: int = PlateauConfig.window
    #: images in the moving window of the labeling-speed plots
    speed_window: int = 10
    #: the final live model is compared with one trained offline on the same labels
    offline_reference: bool = True
    #: keep every live prediction before any threshold, with the submitted truth, in
    #: ``predictions/<strategy>.json.gz``: display policies (thresholds, when to offer) can then be replayed
    #: on exactly the same model trajectory (``benchmarks/threshold_replay.py``) without training again
    save_predictions: bool = False

    def __post_init__(self) -> None:
        self.threshold = check_threshold_value(self.threshold)  # NaN hid every pre-label


def _default_milestones(n: int) -> list[int]:
    """200/1,000/2,000/5,000 of 10,000 images, scaled to the walk (at least 2 labels before a retrain)."""
    return sorted({max(2, round(f * n)) for f in (0.02, 0.1, 0.2, 0.5) if max(2, round(f * n)) < n})


# -------------------------------------------------------------------------------------- engine
def _plateau_config(cfg: StudyConfig, strategy: Strategy) -> PlateauConfig:
    """The plateau detector a strategy's trainer uses: the study's window, or the strategy's own settings."""
    out = PlateauConfig(window=strategy.plateau_window or cfg.plateau_window)
    if strategy.plateau_threshold is not None:
        out = replace(out, threshold=strategy.plateau_threshold)
    return out


class _Engine:
    """The engine's trainer and live evaluator, driven synchronously on the study's virtual clock."""

    def __init__(self, data: StudyData, cfg: StudyConfig, *, sampler: str = "frequency", plateau: bool = True,
                 model: str | None = None, seed: int = 0, strategy: Strategy | None = None,
                 costs: CostModel | None = None) -> None:
        from ..models import create_model

        self.data = data
        self.items: dict[int, Item] = {}
        options = dict(cfg.model_options)
        if data.semantic:
            options.setdefault("semantic", True)
        spec = model or cfg.model
        if spec == "embedded":
            options.setdefault("seed", seed)
        # Every strategy of a study starts from the same weights and draws the same dropout: the global
        # generator was left wherever the previous strategy's training had moved it.
        torch.manual_seed(seed)
        net = create_model(spec, data.task, data.classes, **options)
        self.evaluator = LiveEvaluator(data.task, len(data.classes),
                                       EvaluatorConfig(semantic=bool(options.get("semantic"))))
        st = strategy or Strategy(name="live", kind="live")
        tcfg = TrainerConfig(min_labeled=cfg.min_labeled, batch_size=cfg.batch_size, lr=cfg.lr, sampler=sampler,
                             plateau=plateau, seed=seed, checkpoint_every_s=float("inf"))
        if st.lr_boost is not None:
            tcfg.lr_boost = st.lr_boost
        if st.restart_steps is not None:
            tcfg.restart_steps = st.restart_steps
        if st.object_balance is not None:
            tcfg.object_balance = st.object_balance
        if not st.class_balance:
            tcfg.object_balance = 0.0
        scfg = SamplerConfig() if st.class_balance else SamplerConfig(class_balance=0.0)
        self.trainer = Trainer(net, lambda k: self.items[k].load(), tcfg, sampler_config=scfg,
                               plateau_config=_plateau_config(cfg, st),
                               quality=lambda: self.evaluator.ema)
        # The session's threshold tuner, on the study's cost model: it learns from every image, shown or not.
        self.tuner = ThresholdTuner(data.task, len(data.classes), costs or CostModel(), prior=cfg.threshold)
        self.auto_threshold, self.auto_offer = st.auto_threshold, st.auto_offer
        self.threshold = cfg.threshold
        #: where a study's wall time goes (results.json "timing")
        self.train_seconds = self.predict_seconds = 0.0
        self.step_times: list[float] = []

    def add(self, key: int, item: Item) -> None:
        self.items[key] = item
        self.trainer.set_sample(key, item.target)

    def train(self, n: int) -> int:
        t0 = time.perf_counter()
        done = self.trainer.run_steps(n)
        self.train_seconds += time.perf_counter() - t0
        self.step_times.extend(r.seconds for r in done)
        del self.step_times[:-50]
        return len(done)

    def step_seconds(self, fallback: float) -> float:
        """This trainer's step time now: the median of its last 50 steps (``fallback`` before any). A step's
        cost changes during a walk (cached features, a growing set), so real-time compute follows it."""
        return float(np.median(self.step_times)) if self.step_times else fallback

    def predict(self, item: Item) -> tuple[Annotation, int]:
        t0 = time.perf_counter()
        (pred,), step = self.trainer.predict_now([item.load()])
        self.predict_seconds += time.perf_counter() - t0
        return pred, step

    def thresholds(self) -> list[float]:
        """What ``LiveSession.thresholds`` gives: the tuner's choice, else the fixed threshold."""
        tuned = self.tuner.thresholds() if self.auto_threshold else None
        return tuned if tuned is not None else [self.threshold] * len(self.data.classes)

    def offering(self) -> bool:
        """What ``LiveSession.offering`` gives: the tuner's verdict once it has one, else the trainer's rule."""
        verdict = self.tuner.verdict() if self.auto_offer else None
        return self.trainer.offering if verdict is None else verdict

    def close(self) -> None:
        self.trainer.close()


def train_offline(data: StudyData, items: Sequence[Item], cfg: StudyConfig, seed: int,
                  progress: Callable[[int], None] | None = None) -> tuple[_Engine, dict[str, Any]]:
    """A fresh model trained on ``items`` until the plateau detector fires (between the min and max steps).

    ``progress`` is called with the number of steps after each chunk of training."""
    eng = _Engine(data, cfg, seed=seed)
    for key, item in enumerate(items):
        eng.add(key, item)
    steps = failed = 0
    while steps < cfg.offline_max_steps:
        chunk = min(50, cfg.offline_max_steps - steps)
        n = eng.train(chunk)
        steps += n
        if progress:
            progress(n)
        if eng.trainer.plateau.plateaued:
            if steps >= cfg.offline_min_steps:
                break
            eng.trainer.plateau.reset("minimum steps not reached")
        elif n < chunk:  # failing steps (each reported by the trainer); do not loop on them forever
            failed += chunk - n
            if failed > 20:
                eng.close()
                raise RuntimeError(f"offline training keeps failing: {eng.trainer.error}")
    return eng, {"steps": steps, "seconds": round(eng.train_seconds, 2), "images": len(items),
                 "plateaued": eng.trainer.plateau.plateaued}


def score_heldout(eng: _Engine, data: StudyData, cfg: StudyConfig) -> dict[str, Any]:
    """Held-out metrics of the engine's current weights (mAP@0.5 / mIoU / accuracy as the headline)."""
    preds = []
    for item in data.holdout:
        pred, _ = eng.predict(item)
        # Masks: score what is shown (class maps count every pixel); boxes and classes: everything, ranked.
        preds.append(pred.filter(cfg.threshold) if data.task == "segmentation" else pred)
    targets = [i.target for i in data.holdout]
    m = offline_metrics(data.task, preds, targets, len(data.classes))
    if data.task != "classification":
        # Recall per class of what a person would see at the fixed threshold: how well a rare class is found.
        m["recall_per_class"] = recall_per_class(
            [p.filter(cfg.threshold) for p in preds], targets, len(data.classes), masks=data.task == "segmentation")
    return {**_round(m), "headline": _headline(data, m), "step": eng.trainer.step}


def rarest_class(data: StudyData) -> int | None:
    """The class with the fewest true objects in the walk (among those present), for objects tasks."""
    if data.task == "classification" or len(data.classes) < 2:
        return None
    counts = np.zeros(len(data.classes))
    for item in data.walk:
        counts += np.bincount(item.target.labels.astype(np.int64), minlength=len(data.classes))[:len(data.classes)]
    present = np.flatnonzero(counts > 0)
    return None if present.size == 0 else int(present[np.argmin(counts[present])])


def recall_per_class(preds: Sequence[Annotation], targets: Sequence[Annotation], num_classes: int,
                     *, masks: bool = False, iou: float = 0.5) -> list[float | None]:
    """Per class: the share of true objects found by a predicted object of the same class at IoU >= ``iou``
    (greedy, highest score first, each prediction used once); None for a class with no true object."""
    from ..engine._matching import box_iou, mask_iou

    found = np.zeros(num_classes)
    total = np.zeros(num_classes)
    for p, t in zip(preds, targets, strict=True):
        total += np.bincount(t.labels.astype(np.int64), minlength=num_classes)[:num_classes]
        if not len(p) or not len(t):
            continue
        m = mask_iou(p.masks, t.masks) if masks and p.masks is not None and t.masks is not None else box_iou(
            p.boxes, t.boxes)
        order = np.argsort(-(p.scores if p.scores is not None else np.ones(len(p))), kind="stable")
        free = np.ones(len(t), bool)
        for j in order:
            ok = free & (t.labels == p.labels[j]) & (m[j] >= iou)
            if ok.any():
                g = int(np.flatnonzero(ok)[np.argmax(m[j][ok])])
                free[g] = False
                found[int(t.labels[g])] += 1
    return [None if total[k] == 0 else float(found[k] / total[k]) for k in range(num_classes)]


def _headline(data: StudyData, m: dict[str, Any]) -> float:
    if data.task == "classification":
        return float(m["accuracy"])
    if data.semantic:
        return float(m["miou"])
    return float(m["map50"])


def headline_name(data: StudyData) -> str:
    if data.task == "classification":
        return "accuracy"
    return "mIoU" if data.semantic else "mAP@0.5"


def _round(x: Any, nd: int = 4) -> Any:
    if isinstance(x, float):
        return round(x, nd)
    if isinstance(x, dict):
        return {k: _round(v, nd) for k, v in x.items()}
    if isinstance(x, list):
        return [_round(v, nd) for v in x]
    return x


# ------------------------------------------------------------------------------------ strategies
def _hitl_due(strategy: Strategy, labeled: int, n: int, since_s: float, cfg: StudyConfig,
              milestones: list[int]) -> bool:
    """Whether a hitl strategy retrains after ``labeled`` images (``since_s`` seconds of labeling since its
    last retrain)."""
    if strategy.schedule == "daily":
        return since_s >= cfg.workday_hours * 3600 and cfg.min_labeled <= labeled < n
    return labeled in milestones


def retrain_pause_days(steps: int, seconds: float, cfg: StudyConfig, *, overnight: bool) -> float:
    """Calendar days a retrain of ``steps`` steps keeps the team from labeling.

    Its duration is what it took on this machine (``seconds``; else its steps at the measured step time,
    else at the implied real-time rate). A retrain at the end of a workday runs overnight:
    only what the night (24 h less the workday) does not cover delays the next day. Otherwise the
    labeling waits for it. ``hitl_pause_days`` replaces the derivation by a fixed figure."""
    if cfg.hitl_pause_days is not None:
        return float(cfg.hitl_pause_days)
    if seconds > 0:
        hours = seconds / 3600
    elif cfg.measured_step_seconds:
        hours = steps * cfg.measured_step_seconds / 3600
    else:
        ratio = cfg.compute_ratio if isinstance(cfg.compute_ratio, (int, float)) and cfg.compute_ratio > 0 else 1.0
        hours = steps / ratio / 3600
    if overnight:
        hours = max(0.0, hours - (24.0 - cfg.workday_hours))
    return hours / cfg.workday_hours


def _labeling_order(data: StudyData, strategy: Strategy) -> list[int]:
    n = len(data.walk)
    if strategy.order == "file":
        return sorted(range(n), key=lambda j: data.walk[j].name)
    return list(range(n))


def run_strategy(data: StudyData, strategy: Strategy, cfg: StudyConfig, costs: CostModel,
                 *, progress: bool = True) -> dict[str, Any]:
    """Walk the dataset once with one strategy; per-image records and the summary."""
    from tqdm.auto import tqdm

    task, n = data.task, len(data.walk)
    kind = strategy.kind
    # accept=charged: whatever falls short of exact_iou is fixed, so it is charged as imprecise
    charging = replace(costs, iou_high=max(costs.iou_high, cfg.exact_iou)) if strategy.accept == "charged" else costs
    eng: _Engine | None = None
    if kind == "live":
        eng = _Engine(data, cfg, sampler=strategy.sampler, plateau=strategy.plateau, seed=cfg.seed,
                      strategy=strategy, costs=charging)
    elif kind == "static" and strategy.model and (strategy.k or 0) == 0:
        eng = _Engine(data, cfg, model=strategy.model, seed=cfg.seed)  # zero-shot: never trains
    milestones = (strategy.at or _default_milestones(n)) if kind == "hitl" and strategy.schedule != "daily" else []
    static_k = (strategy.k if strategy.k is not None else max(cfg.min_labeled, round(0.1 * n))) \
        if kind == "static" else None
    steps_fixed = strategy.steps if strategy.steps is not None else cfg.steps_per_image
    ratio = cfg.compute_ratio if isinstance(cfg.compute_ratio, (int, float)) else None
    queue = _labeling_order(data, strategy)
    stored: list[Item] = []  # what the person submitted, in labeling order
    records: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []  # cfg.save_predictions
    retrains: list[dict[str, Any]] = []
    evals: dict[str, Any] = {}
    work_s = pause_days = since_retrain_s = 0.0
    carry = 0.0
    t_start = time.perf_counter()
    timing = dict.fromkeys(("train_s", "predict_s", "heldout_s", "retrain_s"), 0.0)

    def spent(e: _Engine) -> None:  # an engine's seconds, counted once when it is closed or at the end
        timing["train_s"] += e.train_seconds
        timing["predict_s"] += e.predict_seconds
    bar = tqdm(total=n, desc=f"{strategy.name:<16}", unit="img", disable=not progress, leave=False)
    for i in range(n):
        pool_preds: dict[int, tuple[Annotation, int]] = {}
        pick_s = 0.0
        if strategy.order == "uncertain" and eng is not None and eng.trainer.step > 0:
            # The session ranks the images it predicted ahead; those predictions take training time there.
            t0 = time.perf_counter()
            pool_preds = {j: eng.predict(data.walk[j]) for j in queue[: max(1, cfg.order_pool)]}
            pick_s = time.perf_counter() - t0
            j = most_uncertain(list(pool_preds), {k: v[0] for k, v in pool_preds.items()}.get)
        else:
            j = queue[0]
        queue.remove(j)
        item = data.walk[j]
        gt = item.target
        shown: Annotation | None = None
        step = None
        offered = False
        threshold: Any = cfg.threshold
        raw = None
        rule = None
        if eng is not None:
            raw, step = pool_preds[j] if j in pool_preds else eng.predict(item)
            if kind == "live":
                threshold = eng.thresholds()
            shown = raw.filter(threshold)
            if kind == "live":
                rule = bool(eng.trainer.offering)  # the trainer's own rule, before this image trains
                if strategy.offer_from is None:
                    offered = eng.offering()
                else:
                    offered = i + 1 >= strategy.offer_from and eng.trainer.num_samples >= cfg.min_labeled
            else:
                offered = True
        seconds, counts = charging.charge(shown if offered else None, gt, task)
        manual_s = costs.manual(gt, task)
        submitted = gt
        kept_objects = 0
        if strategy.accept == "stored" and offered and shown is not None and task != "classification":
            submitted = costs.accepted(shown, gt, task)
            kept_objects = int(counts.get("correct", counts.get("accepted", 0)))
        stored.append(item if submitted is gt else Item(item.name, item.load, submitted))
        if kind == "live" and eng is not None:
            # Silent predictions are judged too (as in a session): the evaluator's score is part of the
            # engine's rule for when pre-labels start to be offered.
            eng.evaluator.evaluate(i, shown, submitted, step=step)
        steps_taken = 0
        capped = False
        if kind == "live" and eng is not None:
            # Training runs while this image is labeled, on the labels submitted before it.
            if ratio is not None and strategy.steps is None:
                # "auto": real time at this trainer's own step time now; a given ratio stays as given
                step_s = eng.step_seconds(cfg.measured_step_seconds) if cfg.measured_step_seconds else 1 / ratio
                carry += seconds / step_s
                want = int(carry)
                carry -= want
                if pick_s:
                    want = max(0, want - round(pick_s / step_s))
            else:
                want = int(steps_fixed or 0)
            if strategy.front is not None:
                # front-loaded compute: F times the steps while the set is small, halving every 8 labels
                extra = max(0, eng.trainer.num_samples - cfg.min_labeled)
                want = round(want * (1.0 + (strategy.front - 1.0) * 0.5 ** (extra / 8.0)))
            if cfg.max_steps_per_image is not None and want > cfg.max_steps_per_image:
                want, capped = cfg.max_steps_per_image, True
            steps_taken = eng.train(want)
            eng.add(i, stored[-1])
            if raw is not None:
                eng.tuner.record(i, raw, submitted)  # what the session does at submission
                if cfg.save_predictions:
                    kept.append({"i": i + 1, "offered": bool(offered), "trainer_offering": rule, "model_step": step,
                                 "raw": raw.to_json(), "truth": gt.to_json()})
        work_s += seconds
        since_retrain_s += seconds
        labeled = i + 1
        if kind == "hitl" and _hitl_due(strategy, labeled, n, since_retrain_s, cfg, milestones):
            t0 = time.perf_counter()
            if eng is not None:
                spent(eng)
                eng.close()
            eng, info = _train_with_bar(data, stored[:labeled], cfg, f"hitl retrain @{labeled}", progress)
            timing["retrain_s"] += eng.train_seconds
            eng.train_seconds = 0.0
            pause = retrain_pause_days(info["steps"], info["seconds"], cfg, overnight=strategy.schedule == "daily")
            pause_days += pause
            since_retrain_s = 0.0
            retrains.append({"after_images": labeled, **info, "pause_days": round(pause, 5),
                             "after_work_hours": round(work_s / 3600, 4), "wall_s": round(time.perf_counter() - t0, 1)})
        if kind == "static" and static_k is not None and labeled == static_k and eng is None:
            eng, info = _train_with_bar(data, stored[:labeled], cfg, f"static train @{labeled}", progress)
            retrains.append({"after_images": labeled, **info})
        records.append({
            "i": labeled, "name": item.name, "offered": bool(offered), "seconds": round(seconds, 3),
            "manual_seconds": round(manual_s, 3), "counts": counts, "objects": len(gt) if task != "classification"
            else None, "shown": None if shown is None or not offered or task == "classification" else len(shown),
            "model_step": step, "steps_trained": steps_taken, "kept_prelabel_objects": kept_objects,
            "capped": capped,
            "threshold": _round(threshold) if kind == "live" else None,
            "work_hours": round(work_s / 3600, 5),
            "calendar_days": round(work_s / 3600 / cfg.workday_hours + pause_days, 5),
        })
        if eng is not None and labeled in cfg.eval_at and data.holdout:
            t0, p0 = time.perf_counter(), eng.predict_seconds
            evals[str(labeled)] = score_heldout(eng, data, cfg)
            timing["heldout_s"] += time.perf_counter() - t0
            eng.predict_seconds = p0  # held-out predictions are counted as held-out scoring, not twice
        bar.update(1)
    bar.close()
    t0, p0 = time.perf_counter(), None if eng is None else eng.predict_seconds
    final = score_heldout(eng, data, cfg) if eng is not None and data.holdout else None
    timing["heldout_s"] += time.perf_counter() - t0
    if eng is not None and p0 is not None:
        eng.predict_seconds = p0
    summary = _summary(records, cfg, final, eng, pause_days)
    rare = rarest_class(data)
    if rare is not None:
        summary["rarest_class"] = data.classes[rare]
        summary["rarest_recall"] = None if final is None else final["recall_per_class"][rare]
        summary["rarest_ap50"] = None if final is None else final["ap50_per_class"][rare]
    out = {
        "strategy": asdict(strategy),
        "summary": summary,
        "heldout": final,
        "heldout_at": evals,
        "retrains": retrains,
        "records": records,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
    }
    if eng is not None:
        spent(eng)
    wall = time.perf_counter() - t_start
    timing["other_s"] = wall - sum(timing.values())  # the cost model, matching, the tuner, bookkeeping
    out["timing"] = {k: round(v, 1) for k, v in timing.items()}
    if kind == "live" and eng is not None:
        out["evaluator"] = eng.evaluator.summary()
        out["plateau_pauses"] = sum(1 for h in eng.trainer.plateau.history if h.get("event") == "plateau") if (
            eng.trainer.config.plateau) else 0
        out["step_seconds_median"] = eng.trainer.status()["step_seconds"]
        if cfg.save_predictions:
            out["_predictions"] = kept
        out["_engine"] = eng  # the caller may train an offline reference on the same labels; popped there
        out["_stored"] = stored  # ... the labels as this walk stored them
    elif eng is not None:
        eng.close()
    return out

def _summary(records: list[dict[str, Any]], cfg: StudyConfig, final: dict[str, Any] | None,
             eng: _Engine | None, pause_days: float) -> dict[str, Any]:
    secs = [r["seconds"] for r in records]
    manual = [r["manual_seconds"] for r in records]
    totals: dict[str, int] = {}
    for r in records:
        for k, v in r["counts"].items():
            totals[k] = totals.get(k, 0) + int(v)
    first_saving = next((r["i"] for r in records if r["offered"] and r["seconds"] < r["manual_seconds"]), None)
    # "Pays off from": the first image after which pre-labels never again cost more, over the next 5.
    sustained = None
    for j, r in enumerate(records):
        window = records[j:j + 5]
        if r["offered"] and len(window) == 5 and sum(w["seconds"] for w in window) < sum(
                w["manual_seconds"] for w in window):
            sustained = r["i"]
            break
    hours = sum(secs) / 3600
    return {
        "images": len(records),
        "work_hours": round(hours, 4),
        "calendar_days": round(records[-1]["calendar_days"], 3) if records else 0.0,
        "calendar_days_whole": math.ceil(records[-1]["calendar_days"] - 1e-9) if records else 0,
        "pause_days": pause_days,
        "manual_hours_same_images": round(sum(manual) / 3600, 4),
        "seconds_per_image": round(float(np.mean(secs)), 2) if secs else None,
        "seconds_per_image_last_10": round(float(np.mean(secs[-10:])), 2) if secs else None,
        "offered_images": sum(r["offered"] for r in records),
        "first_saving_image": first_saving,
        "saves_from_image": sustained,
        "corrections": totals,
        "heldout": None if final is None else final["headline"],
        "training_steps": None if eng is None else eng.trainer.step,
        "kept_prelabel_objects": sum(r.get("kept_prelabel_objects", 0) for r in records),
        "capped_images": sum(bool(r.get("capped")) for r in records),
    }


# ------------------------------------------------------------------------------------- the study
def run_study(data: StudyData, strategies: Sequence[Strategy], cfg: StudyConfig | None = None,
              costs: CostModel | None = None, *, out: OutputFolder | str | os.PathLike[str] | None = None,
              progress: bool = True, resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every strategy on ``data``; write ``results.json`` and the plots under ``out`` when given (a new or
    empty folder, or one a livetrain command made: anything else is refused before the study starts).

    ``resume``: the ``results.json`` of an interrupted run of the same study (:func:`read_resumable`).
    Strategies it holds are kept, not run again; the offline reference is trained from the labels the
    first live walk stored (``stored/<strategy>.json.gz``) when it is still missing. A study of real-time
    compute takes hours per seed on a CPU, so it can be continued across machines and days this way."""
    cfg = cfg or StudyConfig()
    costs = (costs or CostModel()).calibrated([i.target for i in data.walk], data.task)
    cfg = resolve_compute(data, cfg)
    names = [s.name for s in strategies]
    if len(set(names)) != len(names):
        raise ValueError(f"each strategy once, got {names}")
    results: dict[str, Any] = {
        "config": asdict(cfg), "costs": costs.as_dict(), "cost_sources": SOURCES,
        "dataset": data.summary(), "metric": headline_name(data), "machine": environment(),
        "strategies": {},
    }
    run_info: dict[str, Any] = {"machine": results["machine"], "did": []}
    if resume is not None:
        _check_same_study(resume, results)
        results = {**results, **{k: v for k, v in resume.items() if k in _KEPT_ON_RESUME}}
        results["strategies"] = dict(resume.get("strategies") or {})
        results["runs"] = list(resume.get("runs") or [{  # a run from before runs were recorded
            "machine": resume.get("machine"), "wall_seconds": resume.get("wall_seconds"),
            "did": [*results["strategies"], *(["offline"] if "offline" in resume else [])]}])
    results.setdefault("runs", []).append(run_info)
    reference_items: list[Item] | None = None
    folder = None if out is None else output_folder(out, "livetrain simulate")
    t0 = time.perf_counter()

    def save() -> None:
        run_info["wall_seconds"] = round(time.perf_counter() - t0, 1)
        relate(results)  # an interrupted study's file has its ratios and ranges so far
        if folder is not None:  # partial results survive an interrupted study
            write_results(results, folder)

    for strat in strategies:
        if strat.name in results["strategies"]:
            if progress:
                print(f"{strat.name}: kept from the earlier run", file=sys.stderr)
            continue
        res = run_strategy(data, strat, cfg, costs, progress=progress)
        eng = res.pop("_engine", None)
        stored_items = res.pop("_stored", None)
        kept = res.pop("_predictions", None)
        if kept is not None and folder is not None:
            write_predictions(kept, folder, strat.name)
        if eng is not None:
            if "reference_labels" not in results and stored_items is not None:
                # The offline reference is trained on these labels after the last strategy; kept on disk so
                # that a continued run can train it without walking again.
                results["reference_labels"] = {"strategy": strat.name, "steps": eng.trainer.step}
                if folder is not None:
                    results["reference_labels"]["file"] = write_stored(
                        stored_items, folder, strat.name).relative_to(folder.path).as_posix()
                reference_items = stored_items
            eng.close()
        results["strategies"][strat.name] = res
        run_info["did"].append(strat.name)
        save()
    ref = results.get("reference_labels")
    if cfg.offline_reference and "offline" not in results and data.holdout and ref is not None:
        if reference_items is None:
            if folder is None or "file" not in ref:
                raise ValueError("the offline reference needs the live walk's stored labels; none were kept")
            reference_items = read_stored(folder.path / ref["file"], data)
        results["offline"] = _offline_reference(data, cfg, progress, at_least=int(ref["steps"]),
                                                items=reference_items)
        run_info["did"].append("offline")
        save()
    save()
    results["wall_seconds"] = round(sum(r.get("wall_seconds") or 0.0 for r in results["runs"]), 1)
    if folder is not None:
        results["plots"] = write_plots(results, folder)
        write_results(results, folder)
    return results


#: what a continued study keeps of the interrupted run's results besides its strategies
_KEPT_ON_RESUME = ("machine", "offline", "reference_labels", "runs")
#: a continued study must agree with the interrupted run on everything but these
_MAY_DIFFER = ("machine", "strategies", "offline", "reference_labels", "runs", "wall_seconds", "plots",
               "sensitivity", "ablations", "cost_sources")


def _check_same_study(previous: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse to continue a run of another study (other data, settings or costs), naming what differs."""
    prev_cfg, cfg = dict(previous.get("config") or {}), dict(now["config"])
    differ = [f"config.{k}: {prev_cfg.get(k)!r} then, {cfg.get(k)!r} now" for k in sorted(set(prev_cfg) | set(cfg))
              if json.loads(json.dumps(prev_cfg.get(k))) != json.loads(json.dumps(cfg.get(k)))]
    for key in sorted(set(previous) | set(now)):
        if key in _MAY_DIFFER or key == "config":
            continue
        if json.loads(json.dumps(previous.get(key), default=str)) != json.loads(json.dumps(now.get(key), default=str)):
            differ.append(f"{key} differs")
    if differ:
        raise ValueError("the results in the output folder are of another study; give another --out, or the "
                         "same settings and data to continue it: " + "; ".join(differ))


def read_resumable(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The results.json of an earlier run under ``out``, to continue (None where there is none yet)."""
    path = Path(out) / "results.json"
    if not path.is_file():
        return None
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot continue the study in {out}: {path.name} does not read ({exc})") from exc
    if not isinstance(previous, dict) or not isinstance(previous.get("strategies"), dict):
        raise ValueError(f"cannot continue the study in {out}: {path.name} is not a study's results")
    return previous


def resumed_config(cfg: StudyConfig, previous: dict[str, Any]) -> StudyConfig:
    """``cfg`` with the real-time compute the interrupted run measured: a continued study keeps its rate,
    so that its strategies are compared at one compute budget (the machine may differ; each run's own
    machine and load are in ``runs``)."""
    prev = previous.get("config") or {}
    if cfg.steps_per_image is None and cfg.compute_ratio == "auto" and prev.get("measured_step_seconds"):
        return replace(cfg, compute_ratio=prev["compute_ratio"], measured_step_seconds=prev["measured_step_seconds"])
    return cfg


def _stored_name(strategy: str) -> str:
    return f"stored/{_slug(strategy)}.json.gz"


def write_stored(items: Sequence[Item], out: OutputFolder, strategy: str) -> Path:
    """The labels a walk stored (accepted pre-label objects as drawn), by image name, gzipped JSON."""
    import gzip

    payload = [{"name": it.name, "target": it.target.to_json()} for it in items]
    return out.write(_stored_name(strategy), gzip.compress(json.dumps(payload).encode("utf-8")))


def read_stored(path: str | os.PathLike[str], data: StudyData) -> list[Item]:
    """The labels :func:`write_stored` kept, as study items of ``data`` (its images, those labels)."""
    import gzip

    by_name = {it.name: it for it in data.walk}
    try:
        payload = json.loads(gzip.decompress(Path(path).read_bytes()))
        items = []
        for row in payload:
            item = by_name.get(row["name"])
            if item is None:
                raise ValueError(f"image {row['name']!r} is not in this study's walk")
            items.append(Item(item.name, item.load, Annotation.from_json(row["target"])))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read the stored labels {path}: {exc}") from exc
    return items


def predictions_path(out: str | os.PathLike[str], strategy: str) -> Path:
    """Where ``StudyConfig.save_predictions`` keeps one strategy's predictions under a study's ``out``."""
    return Path(out) / _predictions_name(strategy)


def _predictions_name(strategy: str) -> str:
    return f"predictions/{_slug(strategy)}.json.gz"


def _slug(strategy: str) -> str:
    return "".join(c if c.isalnum() or c in "-_=." else "_" for c in strategy)


def write_predictions(kept: list[dict[str, Any]], out: OutputFolder, strategy: str) -> Path:
    """Every live prediction of a walk with its truth (``StudyConfig.save_predictions``), gzipped JSON, at
    :func:`predictions_path`."""
    import gzip

    return out.write(_predictions_name(strategy), gzip.compress(json.dumps(kept).encode("utf-8")))


def _train_with_bar(data: StudyData, items: Sequence[Item], cfg: StudyConfig, desc: str,
                    progress: bool) -> tuple[_Engine, dict[str, Any]]:
    from tqdm.auto import tqdm

    with tqdm(total=cfg.offline_max_steps, desc=f"{desc:<16}", unit="step", disable=not progress,
              leave=False) as bar:
        return train_offline(data, items, cfg, cfg.seed, progress=bar.update)


def _offline_reference(data: StudyData, cfg: StudyConfig, progress: bool = True,
                       at_least: int = 0, items: Sequence[Item] | None = None) -> dict[str, Any]:
    """The same model trained offline to convergence on every label of the walk.

    It trains until its own loss plateaus, and never for fewer steps than the live model took
    (``at_least``), so a live/offline ratio above 1 cannot come from an offline model that was simply cut
    short. ``items`` are the labels as the live walk stored them (accepted pre-label objects as drawn);
    default: the truth."""
    t0 = time.perf_counter()
    budget = replace(cfg, offline_max_steps=max(cfg.offline_max_steps, at_least),
                     offline_min_steps=max(cfg.offline_min_steps, at_least))
    eng, info = _train_with_bar(data, items if items is not None else data.walk, budget, "offline reference",
                                progress)
    try:
        return {**info, "heldout": score_heldout(eng, data, cfg), "wall_s": round(time.perf_counter() - t0, 1)}
    finally:
        eng.close()


# ----------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("dataset", "stream"), default="dataset",
                   help="dataset: label a dataset with each strategy (default); stream: the correction mode's "
                        "protocol, corrections with and without the LoRA adapter")
    p.add_argument("--task", required=True, choices=("detection", "segmentation", "classification"))
    p.add_argument("--images", required=True, help="folder of images (searched recursively), or an IDX file")
    p.add_argument("--labels", required=True, help="label file or folder")
    p.add_argument("--format", required=True, choices=[*(f for f in FORMATS if f != "folders"), "idx"],
                   help="idx: MNIST-family files (stream mode, classification)")
    p.add_argument("--classes", help="comma-separated class names (default: those the labels bring)")
    p.add_argument("--strategy", action="append", help="repeat; see above (default: live, hitl, static, manual)")
    p.add_argument("--limit", type=int, help="label at most N images")
    p.add_argument("--seed", type=int, default=0)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps-per-image", type=int,
                   help="a fixed number of live training steps while one image is labeled (the ablation)")
    g.add_argument("--compute-ratio", type=_ratio, metavar="R|auto",
                   help="live training steps per simulated human second; 'auto' (the default) measures this "
                        "machine's step time first and trains in real time (1 / step seconds)")
    p.add_argument("--max-steps-per-image", type=int, default=1500,
                   help="the most live training steps while one image is labeled")
    p.add_argument("--tile", type=int, help="cut images larger than this into tiles of this size")
    p.add_argument("--crops", action="store_true",
                   help="with --task classification: one image per box of a box dataset, its class the label")
    p.add_argument("--merge-classes", metavar="NAME", help="put every object in one class of this name")
    p.add_argument("--holdout", type=float, default=0.2, help="fraction of images held out for scoring")
    p.add_argument("--holdout-max", type=int, default=60)
    p.add_argument("--threshold", type=_threshold_arg, default=0.3, help="confidence threshold of shown pre-labels")
    p.add_argument("--hitl-pause-days", type=float,
                   help="calendar days each hitl retrain pauses labeling (default: derived from its steps and "
                        "the measured step time)")
    p.add_argument("--workday-hours", type=float, default=6.0,
                   help="a person's labeling hours per day: the calendar, and when daily hitl retrains")
    p.add_argument("--exact-iou", type=float, default=0.9,
                   help="accept=charged: pre-label objects below this IoU are fixed and stored exact")
    p.add_argument("--order-pool", type=int, default=16,
                   help="live:order=uncertain picks the least certain of this many next images")
    p.add_argument("--eval-at", default="10,20,50,100", help="held-out scores after these many images")
    p.add_argument("--offline-max-steps", type=int, default=1500,
                   help="hitl/static retrains and the offline reference train until the loss plateaus, at most this")
    p.add_argument("--offline-min-steps", type=int, default=200)
    p.add_argument("--plateau-window", type=int, default=PlateauConfig.window,
                   help="loss-plateau detector window (steps): live's, the retrains' and the offline reference's")
    p.add_argument("--no-offline", action="store_true", help="skip the offline reference model")
    p.add_argument("--resume", action="store_true",
                   help="continue the study whose results.json is in --out (same settings and data): strategies "
                        "done are kept, the rest run; without one there, start it")
    p.add_argument("--model", default="embedded", help="'embedded', a saved model folder or a Hub name")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. input_size=256 (repeat)")
    p.add_argument("--cost", action="append", default=[], metavar="NAME=SECONDS",
                   help="override a cost of the cost model, e.g. box_draw_s=10 (repeat)")
    p.add_argument("--out", required=True, help="output folder: results.json and the plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--save-predictions", action="store_true",
                   help="keep each live prediction (before any threshold) and its truth in OUT/predictions/, "
                        "for replaying display policies (benchmarks/threshold_replay.py)")
    from . import stream

    stream.add_arguments(p)


def _ratio(text: str) -> float | str:
    if text == "auto":
        return text
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("the compute ratio must be positive")
    return value


def wall_time_line(results: dict[str, Any]) -> str:
    """Where the study's wall time went, in minutes: per strategy (training, predictions, held-out scoring,
    retrains, the rest) and the offline reference."""
    parts = []
    for name, res in results["strategies"].items():
        t = res.get("timing", {})
        detail = ", ".join(f"{k[:-2]} {v / 60:.1f}" for k, v in t.items() if v >= 0.05 * 60)
        parts.append(f"{name} {res['wall_seconds'] / 60:.1f}" + (f" ({detail})" if detail else ""))
    off = results.get("offline")
    if off and "wall_s" in off:
        parts.append(f"offline reference {off['wall_s'] / 60:.1f}")
    return f"wall time {results.get('wall_seconds', 0) / 60:.1f} min: " + "; ".join(parts)


def resolve_compute(data: StudyData, cfg: StudyConfig) -> StudyConfig:
    """``cfg`` with its live compute settled: a fixed ``steps_per_image`` wins; ``compute_ratio="auto"``
    becomes 1 / the step time measured now on this machine (recorded as ``measured_step_seconds``)."""
    if cfg.steps_per_image is not None:
        return replace(cfg, compute_ratio=None) if cfg.compute_ratio is not None else cfg
    if cfg.compute_ratio == "auto":
        step_s = measure_step_seconds(data, cfg)
        return replace(cfg, compute_ratio=round(1.0 / step_s, 4), measured_step_seconds=round(step_s, 4))
    if cfg.compute_ratio is None:
        raise ValueError("give steps_per_image or compute_ratio")
    if isinstance(cfg.compute_ratio, str) or not cfg.compute_ratio > 0:
        raise ValueError(f"compute_ratio must be positive or 'auto', got {cfg.compute_ratio!r}")
    return cfg


def measure_step_seconds(data: StudyData, cfg: StudyConfig, steps: int = 10) -> float:
    """Median seconds of a training step of the study's model on the first images (warm-up excluded)."""
    eng = _Engine(data, cfg, seed=cfg.seed)
    try:
        for key, item in enumerate(data.walk[: max(cfg.min_labeled, cfg.batch_size)]):
            eng.add(key, item)
        eng.train(2)  # first steps pay for allocations and caches
        done = eng.trainer.run_steps(steps)
        if not done:
            raise RuntimeError(f"could not measure a training step: {eng.trainer.error}")
        return float(np.median([r.seconds for r in done]))
    finally:
        eng.close()


def _threshold_arg(text: str) -> float:
    try:
        return check_threshold_value(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    if args.mode == "stream":
        from . import stream

        return stream.run(args, _kv)
    if args.format == "idx":
        print("livetrain simulate: --format idx is for --mode stream", file=sys.stderr)
        return 2
    try:
        if args.crops and args.task != "classification":
            raise ValueError("--crops makes a classification dataset of object crops: use --task classification")
        strategies = [Strategy.parse(s) for s in (args.strategy or ["live", "hitl", "static", "manual"])]
        costs = CostModel.from_overrides(_kv(args.cost, "--cost"))
        out = output_folder(args.out, "livetrain simulate")  # refused now, not after the study
        previous = read_resumable(args.out) if args.resume else None
        data = load_study_data(
            args.task, args.images, args.labels, args.format,
            classes=args.classes.split(",") if args.classes else None, tile=args.tile, crops=args.crops,
            holdout=args.holdout, holdout_max=args.holdout_max, limit=args.limit, seed=args.seed,
            merge_classes=args.merge_classes,
        )
    except (ValueError, OSError) as exc:  # OSError: a missing file, or an output folder that is not ours
        print(f"livetrain simulate: {exc}", file=sys.stderr)
        return 2
    cfg = StudyConfig(
        seed=args.seed,
        steps_per_image=args.steps_per_image,
        compute_ratio=None if args.steps_per_image is not None else (args.compute_ratio or "auto"),
        max_steps_per_image=args.max_steps_per_image,
        threshold=args.threshold, hitl_pause_days=args.hitl_pause_days, workday_hours=args.workday_hours,
        offline_max_steps=args.offline_max_steps,
        offline_min_steps=min(args.offline_min_steps, args.offline_max_steps),
        eval_at=[int(v) for v in args.eval_at.split(",") if v], model=args.model,
        model_options=_kv(args.model_option, "--model-option"), offline_reference=not args.no_offline,
        save_predictions=args.save_predictions,
        plateau_window=args.plateau_window, exact_iou=args.exact_iou, order_pool=args.order_pool,
    )
    if previous is not None:
        cfg = resumed_config(cfg, previous)
        done = ", ".join([*previous["strategies"], *(["offline"] if "offline" in previous else [])]) or "nothing"
        print(f"continuing the study in {args.out} (done: {done})", file=sys.stderr)
    try:
        cfg = resolve_compute(data, cfg)
    except (ValueError, RuntimeError) as exc:
        print(f"livetrain simulate: {exc}", file=sys.stderr)
        return 2
    compute = (f"{cfg.steps_per_image} steps per image" if cfg.compute_ratio is None
               else f"{cfg.compute_ratio} steps per human second")
    print(f"{data.task}: {len(data.walk)} images to label, {len(data.holdout)} held out, classes "
          f"{data.classes}; live training: {compute}", file=sys.stderr)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    try:
        results = run_study(data, strategies, cfg, costs, out=out, progress=not args.quiet, resume=previous)
    except ValueError as exc:  # a results.json of another study, or stored labels that do not read
        print(f"livetrain simulate: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    print(wall_time_line(results))
    plots = ", ".join(Path(p).name for p in results.get("plots", []))
    print(f"results: {Path(args.out) / 'results.json'}" + (f"; plots: {plots}" if plots else ""))
    return 0


__all__ = ["CostModel", "Strategy", "StudyConfig", "format_table", "resolve_compute", "run_strategy", "run_study",
           "train_offline"]
