"""Learning per CPU second: held-out mAP@0.5 against training CPU seconds, for trainers compared in one run.

    livetrain bench --compare baseline --out bench-out/learn --images $LIVETRAIN_DATA/bccd/JPEGImages \\
        --labels $LIVETRAIN_DATA/bccd/Annotations --format voc --classes RBC,WBC,Platelets \\
        --learn-labeled 20 50 --seeds 0 1 2 --budget 150

For each labeled-set size and seed, every variant (today's trainer as ``baseline``, the current defaults
as ``current``, and any ``--variant``) starts from the same weights on the same labeled images (a seeded
draw from the pool) and trains; the held-out images (the last ``--holdout`` in file order) are never
labeled. Steps of the variants are interleaved, each taken by the variant that is furthest behind on its
own budget, so load from other processes hits all of them alike. Each variant's clock is the user CPU time
of the thread that takes its steps (predictions for scoring are not counted, see :func:`cpu_seconds`);
with one torch thread (``--threads 1``, the default) that is the work done, and nearly independent of how
many other processes share the cores. Held-out mAP@0.5 (pycocotools,
as the study) is taken at CPU-time marks.

The figure the issue asks for is *time to baseline quality*: for each mark ``T`` of the baseline, the
CPU time the other variant took to first reach the baseline's mAP@0.5 at ``T``; their ratio is how many
times faster it learns. Where it never got there within its budget B the ratio is below ``T / B``: that
bound is reported (and counted in the mean, which it can only raise).
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import numpy as np

#: what ``baseline`` means: the embedded detector and trainer as they were before issue 21 (the whole
#: backbone pass every step, its stride-16/32 blocks training, continuous scale jitter)
BASELINE = {"model": {"freeze_stride": 8, "feature_cache_mb": 0}, "trainer": {}}


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``"fs16:freeze_stride=16,lr=0.002"`` -> name and ``{"model": {...}, "trainer": {...}}``: keys that
    are :class:`TrainerConfig` fields go to the trainer, the rest are model options."""
    from ..cli import key_values
    from ..engine.trainer import TrainerConfig

    name, _, opts = text.partition(":")
    if not name:
        raise ValueError(f"variant {text!r}: expected NAME[:KEY=VALUE,...]")
    kv = key_values([p for p in opts.split(",") if p], f"variant {name}", ValueError)
    trainer_keys = {f.name for f in fields(TrainerConfig)}
    return name, {"model": {k: v for k, v in kv.items() if k not in trainer_keys},
                  "trainer": {k: v for k, v in kv.items() if k in trainer_keys}}


class _Run:
    """One variant's trainer on one labeled set, with its own CPU clock."""

    def __init__(self, name: str, spec: dict[str, Any], images: list[np.ndarray], targets: list[Any],
                 classes: list[str], seed: int, budget: float, threads: int) -> None:
        import torch

        from ..engine.trainer import Trainer, TrainerConfig
        from ..models.embedded import EmbeddedModel

        self.name, self.budget = name, budget
        torch.manual_seed(seed)
        model = EmbeddedModel("detection", classes, seed=seed, **spec["model"])
        cfg = TrainerConfig(seed=seed, device="cpu", checkpoint_every_s=float("inf"), plateau=False,
                            **{"threads": threads, **spec["trainer"]})
        self.trainer = Trainer(model, lambda k: images[k], cfg)
        for k, t in enumerate(targets):
            self.trainer.set_sample(k, t)
        self.cpu = 0.0
        self.wall = 0.0
        self.curve: list[dict[str, Any]] = []

    def step(self) -> None:
        c0, w0 = cpu_seconds(), time.perf_counter()
        self.trainer.run_steps(1)
        self.cpu += cpu_seconds() - c0
        self.wall += time.perf_counter() - w0
        if self.trainer.error:
            raise RuntimeError(f"{self.name}: {self.trainer.error}")

    def score(self, holdout: list[np.ndarray], truth: list[Any], classes: list[str]) -> float:
        from ..engine.evaluator import offline_metrics

        preds, _ = self.trainer.predict_now(holdout)
        m = offline_metrics("detection", preds, truth, len(classes))
        self.curve.append({"cpu_s": round(self.cpu, 2), "wall_s": round(self.wall, 2), "step": self.trainer.step,
                           "map50": round(float(m["map50"]), 4), "map": round(float(m["map"]), 4)})
        return float(m["map50"])


def cpu_seconds() -> float:
    """User CPU seconds of the calling thread, where torch computes with one thread. Not the process's
    time, nor system time: on a machine short of memory, page reclaim charged 10-20 s of system time to
    single steps of the process, whichever variant happened to run."""
    if hasattr(resource, "RUSAGE_THREAD"):
        return resource.getrusage(resource.RUSAGE_THREAD).ru_utime
    return time.thread_time()


def _marks(budget: float, first: float) -> list[float]:
    """CPU-time marks: ``first`` doubling up to ``budget`` (the budget itself always included)."""
    out, t = [], first
    while t < budget * 0.999:
        out.append(t)
        t *= 2
    return [*out, budget]


def time_to_reach(curve: Sequence[dict[str, Any]], target: float) -> float | None:
    """CPU seconds at which a curve first reached ``target`` mAP@0.5, linearly interpolated between marks
    (None if it never did)."""
    prev_t, prev_v = 0.0, 0.0
    for p in curve:
        if p["map50"] >= target:
            if p["map50"] == prev_v:
                return p["cpu_s"]
            return prev_t + (p["cpu_s"] - prev_t) * (target - prev_v) / (p["map50"] - prev_v)
        prev_t, prev_v = p["cpu_s"], p["map50"]
    return None


def speedups(base: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For every baseline mark: its mAP@0.5, the CPU time ``other`` needed to reach it, and the ratio."""
    rows = []
    budget = other[-1]["cpu_s"] if other else 0.0
    for p in base:
        t = time_to_reach(other, p["map50"])
        rows.append({"base_cpu_s": p["cpu_s"], "base_map50": p["map50"],
                     "other_cpu_s": None if t is None else round(t, 2),
                     "speedup": None if t is None else round(p["cpu_s"] / max(t, 1e-9), 2),
                     "speedup_at_most": None if t is not None else round(p["cpu_s"] / max(budget, 1e-9), 2)})
    return rows


def run_learning(paths: list[Any], labels: list[Any], classes: list[str], *, variants: dict[str, dict[str, Any]],
                 labeled: Sequence[int], seeds: Sequence[int], budget: float, holdout: int, first_mark: float,
                 fraction: dict[str, float] | None = None, threads: int = 1, progress: bool = True) -> dict[str, Any]:
    """The comparison described in the module docstring; returns the per-run curves and speedups."""
    import torch

    from ..engine.images import load_image

    if len(paths) <= holdout + max(labeled):
        raise ValueError(f"{len(paths)} images: too few for {holdout} held out and {max(labeled)} labeled")
    torch.set_num_threads(threads)
    images = [load_image(p) for p in paths]
    hold_idx = list(range(len(paths) - holdout, len(paths)))
    pool = list(range(len(paths) - holdout))
    hold_imgs, hold_truth = [images[i] for i in hold_idx], [labels[i] for i in hold_idx]
    fraction = fraction or {}
    runs_out: list[dict[str, Any]] = []
    from tqdm.auto import tqdm

    for n in labeled:
        for seed in seeds:
            chosen = [int(i) for i in np.random.default_rng(seed).permutation(pool)[:n]]
            imgs, tg = [images[i] for i in chosen], [labels[i] for i in chosen]
            runs = [_Run(name, spec, imgs, tg, classes, seed, budget * fraction.get(name, 1.0), threads)
                    for name, spec in variants.items()]
            marks = {r.name: _marks(r.budget, first_mark * fraction.get(r.name, 1.0)) for r in runs}
            for r in runs:
                r.score(hold_imgs, hold_truth, classes)  # the untrained start: mAP at 0 s
            bar = tqdm(total=sum(len(m) for m in marks.values()), desc=f"{n} labeled, seed {seed}",
                       disable=not progress, leave=False)
            while True:
                active = [r for r in runs if marks[r.name]]
                if not active:
                    break
                r = min(active, key=lambda r: r.cpu / r.budget)
                r.step()
                if r.cpu >= marks[r.name][0]:
                    marks[r.name].pop(0)
                    r.score(hold_imgs, hold_truth, classes)
                    bar.update()
            bar.close()
            base = next((r for r in runs if r.name == "baseline"), runs[0])
            runs_out.append({
                "labeled": n, "seed": seed, "images": [str(paths[i]) for i in chosen],
                "curves": {r.name: r.curve for r in runs},
                "step_cpu_s": {r.name: round(r.cpu / max(r.trainer.step, 1), 4) for r in runs},
                "step_wall_s": {r.name: round(r.wall / max(r.trainer.step, 1), 4) for r in runs},
                "speedups": {r.name: speedups(base.curve[1:], r.curve) for r in runs if r is not base},
                "feature_cache": {r.name: r.trainer.model.feature_cache.stats() for r in runs},
            })
            for r in runs:
                r.trainer.close()
    return {"runs": runs_out, "summary": summarise(runs_out)}


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per labeled-set size and variant: the speedup at each baseline mark, mean ± sd over seeds (a seed
    where the variant never reached the baseline counts with its upper bound, and is flagged)."""
    out: dict[str, Any] = {}
    for n in sorted({r["labeled"] for r in runs}):
        rows = [r for r in runs if r["labeled"] == n]
        per: dict[str, Any] = {}
        for name in rows[0]["speedups"]:
            marks = [s["base_cpu_s"] for s in rows[0]["speedups"][name]]
            table = []
            for j in range(len(marks)):
                vals, bounded, base_map = [], 0, []
                for r in rows:
                    if j >= len(r["speedups"][name]):
                        continue
                    s = r["speedups"][name][j]
                    base_map.append(s["base_map50"])
                    if s["speedup"] is not None:
                        vals.append(s["speedup"])
                    else:
                        vals.append(s["speedup_at_most"])
                        bounded += 1
                table.append({"base_cpu_s": marks[j], "base_map50_mean": _mean(base_map),
                              "speedup_mean": _mean(vals), "speedup_sd": _sd(vals), "speedup_min": min(vals),
                              "n": len(vals), "upper_bounds": bounded})
            finals = {v: _mean([r["curves"][v][-1]["map50"] for r in rows]) for v in rows[0]["curves"]}
            per[name] = {"marks": table, "final_map50_mean": finals,
                         "step_cpu_s": {v: _mean([r["step_cpu_s"][v] for r in rows]) for v in rows[0]["curves"]}}
        out[str(n)] = per
    return out


def _mean(v: Sequence[float]) -> float | None:
    return round(float(np.mean(v)), 4) if len(v) else None


def _sd(v: Sequence[float]) -> float | None:
    return round(float(statistics.stdev(v)), 4) if len(v) > 1 else None


def format_learning(results: dict[str, Any]) -> str:
    """The table ``livetrain bench --compare`` prints."""
    lines = []
    for n, per in results["summary"].items():
        for name, s in per.items():
            steps = ", ".join(f"{v} {1000 * t:.0f} ms" for v, t in s["step_cpu_s"].items() if t is not None)
            finals = ", ".join(f"{v} {m:.3f}" for v, m in s["final_map50_mean"].items() if m is not None)
            lines.append(f"{n} labeled: {name} against baseline (CPU per step: {steps}; mAP@0.5 at the end: {finals})")
            lines.append("  baseline CPU s   baseline mAP@0.5   speedup mean ± sd (min)   seeds (never reached)")
            for row in s["marks"]:
                sd = "" if row["speedup_sd"] is None else f" ± {row['speedup_sd']:.2f}"
                lines.append(f"  {row['base_cpu_s']:14.1f}   {row['base_map50_mean']:16.3f}   "
                             f"{row['speedup_mean']:.2f}{sd} ({row['speedup_min']:.2f})".ljust(62)
                             + f"{row['n']} ({row['upper_bounds']})")
    return "\n".join(lines)
