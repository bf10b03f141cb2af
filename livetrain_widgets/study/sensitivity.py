"""How a study's verdict moves with the cost model, without training again.

Each image of a walk is charged from its correction counts (what :meth:`CostModel.charge` returns beside
the seconds: boxes verified, adjusted, deleted, drawn, ...), and the charge is linear in them
(:meth:`CostModel.price`). So every strategy's per-image counts in ``results.json`` can be priced again
under other per-action costs, in milliseconds. :func:`sensitivity` does so over a grid of plausible
values (:data:`GRID`, every combination) and reports each ratio (a strategy's working hours against
manual labeling and against each batch-retraining strategy) as a range beside its value at the costs
the study ran with.

What the replay holds fixed: the model trajectory and therefore which objects needed which action. Under
other costs the session's threshold tuner would have chosen other thresholds, and with real-time compute
(``--compute-ratio``) the steps per image follow the person's seconds; both are second-order (the tuner
moves working time by under 1% on these walks, BENCHMARKS.md), but they are why this is a sensitivity
analysis of the cost model, not a re-run under it.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..engine.costs import CostModel

#: plausible values of each per-action cost (seconds), the study's default among them. Sources, where
#: published, are in the cost model's docstring (:mod:`livetrain_widgets.engine.costs`); the low and high
#: values of our own estimates are a factor of about 2 either way.
GRID: dict[str, dict[str, tuple[float, ...]]] = {
    "detection": {
        "box_image_s": (3.0, 5.0, 8.0),
        "box_correct_s": (0.5, 1.0, 2.0),
        "box_imprecise_s": (3.0, 4.0, 6.0),
        "box_wrong_class_s": (1.5, 2.5, 4.0),
        "box_extra_s": (1.0, 1.5, 2.5),
        # 7 s extreme clicking, 10 s, 25.5 s the classic two-corner drawing (Su et al. 2012)
        "box_draw_s": (7.0, 10.0, 25.5),
    },
    "segmentation": {
        "mask_image_s": (15.0, 30.0, 45.0),
        "mask_accept_s": (0.25, 0.5, 1.0),
        "mask_locate_s": (0.5, 1.0, 2.0),
        "mask_click_s": (1.0, 1.5, 3.0),
        "mask_wrong_class_s": (1.5, 2.5, 4.0),
        "mask_extra_s": (1.0, 1.5, 2.5),
    },
    "classification": {
        "class_image_s": (0.5, 1.0, 2.0),
        "class_confirm_s": (0.25, 0.5, 1.0),
        "class_pick_s": (1.0, 1.5, 3.0),
        "class_choose_s": (2.0, 3.0, 5.0),
    },
}
#: drawing a missed or redrawn mask, as factors of the dataset-calibrated figure the study ran with
MASK_DRAW_FACTORS = (0.5, 1.0, 1.5)

#: named cost models worth reading on their own: slower pre-label handling (issue 21's example: verify
#: 2 s, fix 6 s, delete 2 s), and faster drawing with slower handling (the least favourable to pre-labels)
CORNERS: dict[str, dict[str, dict[str, float]]] = {
    "detection": {
        "verify 2 s, fix 6 s, delete 2 s": {"box_correct_s": 2.0, "box_imprecise_s": 6.0, "box_extra_s": 2.0},
        "least favourable to pre-labels": {"box_correct_s": 2.0, "box_imprecise_s": 6.0, "box_extra_s": 2.5,
                                           "box_wrong_class_s": 4.0, "box_draw_s": 7.0, "box_image_s": 8.0},
    },
    "segmentation": {
        "accept 1 s, locate 2 s, click 3 s": {"mask_accept_s": 1.0, "mask_locate_s": 2.0, "mask_click_s": 3.0},
    },
    "classification": {
        "confirm 1 s, pick 3 s": {"class_confirm_s": 1.0, "class_pick_s": 3.0},
    },
}


def reprice(records: list[dict[str, Any]], costs: CostModel, task: str) -> float:
    """Working hours of a walk's per-image ``counts`` under ``costs``."""
    return sum(costs.price(r["counts"], task) for r in records) / 3600


def _grid(task: str, base: CostModel) -> list[dict[str, float]]:
    axes = dict(GRID[task])
    if task == "segmentation" and base.mask_draw_s is not None:
        axes["mask_draw_s"] = tuple(round(base.mask_draw_s * f, 3) for f in MASK_DRAW_FACTORS)
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(axes[n] for n in names))]


def sensitivity(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios of working hours under every cost model of the grid (see the module docstring).

    Returns ``{"grid", "combinations", "ratios": {strategy: {reference: {"at_defaults", "min", "max",
    "p10", "p90", "corners": {name: ratio}}}}}``, references being ``manual`` and every ``hitl`` strategy."""
    task = results["dataset"]["task"]
    base = CostModel(**results["costs"])
    strat = results["strategies"]
    refs = [n for n, r in strat.items() if r["strategy"]["kind"] in ("manual", "hitl")]
    combos = _grid(task, base)
    corners = CORNERS.get(task, {})

    def hours_under(overrides: dict[str, float]) -> dict[str, float]:
        costs = CostModel(**{**results["costs"], **overrides})
        return {n: reprice(r["records"], costs, task) for n, r in strat.items()}

    table = [hours_under(c) for c in combos]
    at_defaults = hours_under({})
    at_corners = {name: hours_under(c) for name, c in corners.items()}
    ratios: dict[str, Any] = {}
    for name in strat:
        for ref in refs:
            if ref == name:
                continue
            v = np.array([h[name] / max(h[ref], 1e-12) for h in table])
            ratios.setdefault(name, {})[ref] = {
                "at_defaults": round(at_defaults[name] / max(at_defaults[ref], 1e-12), 4),
                "min": round(float(v.min()), 4), "max": round(float(v.max()), 4),
                "p10": round(float(np.percentile(v, 10)), 4), "p90": round(float(np.percentile(v, 90)), 4),
                "corners": {c: round(h[name] / max(h[ref], 1e-12), 4) for c, h in at_corners.items()},
            }
    axes = dict(GRID[task])
    if task == "segmentation" and base.mask_draw_s is not None:
        axes["mask_draw_s"] = tuple(round(base.mask_draw_s * f, 3) for f in MASK_DRAW_FACTORS)
    return {"grid": {k: list(v) for k, v in axes.items()}, "combinations": len(combos),
            "corners": corners, "ratios": ratios}


def sensitivity_table(results: dict[str, Any]) -> str:
    """Markdown: each ratio at the study's costs, its range over the grid (10th-90th percentile in
    brackets) and at the named corners."""
    sens = results.get("sensitivity") or sensitivity(results)
    corners = list(sens["corners"])
    head = ["strategy", "against", "at the study's costs", "range over the grid (p10–p90)", *corners]
    rows = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, refs in sens["ratios"].items():
        for ref, r in refs.items():
            rows.append(f"| {name} | {ref} | {r['at_defaults']:.3f} | {r['min']:.3f}–{r['max']:.3f} "
                        f"({r['p10']:.3f}–{r['p90']:.3f}) | "
                        + " | ".join(f"{r['corners'][c]:.3f}" for c in corners) + " |")
    return "\n".join(rows) + f"\n\n{sens['combinations']} cost models: " + "; ".join(
        f"{k} {'/'.join(f'{v:g}' for v in vals)}" for k, vals in sens["grid"].items())


__all__ = ["CORNERS", "GRID", "reprice", "sensitivity", "sensitivity_table"]
