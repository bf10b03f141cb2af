"""Replay display policies (which threshold, when to offer) on one recorded live walk.

In the simulator the person always submits the truth, so what is shown never changes what the model
trains on: every threshold policy sees the same model trajectory. ``livetrain simulate
--save-predictions`` keeps each live prediction before any threshold, with its truth; this script charges
each policy on them with the same cost model, in seconds rather than another hour of training. A policy
that is also a study strategy must reproduce that strategy's working hours exactly (checked below for
the run's own policy), which is what makes the replay trustworthy.

    python benchmarks/threshold_replay.py OUT/bccd [--strategy live] [--prior-images 0,2,5,10,20]

Offering: "as run" offers on the images the recorded run offered on; "tuner verdict" asks each policy's
own tuner once it has judged enough images, else the trainer's rule as recorded in the run (the trainer's
rule reads the evaluator's score of what was shown, so for a policy other than the run's it is an
approximation, said in the output).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.autothreshold import ThresholdTuner, TunerConfig
from livetrain_widgets.engine.costs import CostModel
from livetrain_widgets.study.simulate import predictions_path


def load(out: Path, strategy: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    results = json.loads((out / "results.json").read_text())
    path = predictions_path(out, strategy)
    if not path.exists():
        sys.exit(f"no {path}: run livetrain simulate with --save-predictions and --strategy {strategy}")
    with gzip.open(path, "rt") as f:
        rows = json.load(f)
    for r in rows:
        r["raw"], r["truth"] = Annotation.from_json(r["raw"]), Annotation.from_json(r["truth"])
    return results, rows


def replay(rows: list[dict[str, Any]], task: str, classes: int, costs: CostModel, *, fixed: float | None = None,
           tuner: TunerConfig | None = None, prior: float = 0.3, offer: str = "as run") -> dict[str, Any]:
    """Working seconds of one policy over the walk, with the correction counts and thresholds used."""
    t = ThresholdTuner(task, classes, costs, tuner or TunerConfig(), prior=prior)
    total = manual = 0.0
    counts: dict[str, int] = {}
    used: list[list[float]] = []
    offered_n = 0
    for r in rows:
        raw, gt = r["raw"], r["truth"]
        per = ([fixed] * classes) if fixed is not None else (t.thresholds() or [prior] * classes)
        if offer == "as run":
            offered = r["offered"]
        else:
            verdict = t.verdict()
            offered = r["trainer_offering"] if verdict is None else verdict
        shown = raw.filter(per)
        seconds, c = costs.charge(shown if offered else None, gt, task)
        total += seconds
        manual += costs.manual(gt, task)
        offered_n += bool(offered)
        for k, v in c.items():
            counts[k] = counts.get(k, 0) + v
        used.append(per)
        t.record(r["i"], raw, gt)
    return {"hours": total / 3600, "manual_hours": manual / 3600, "counts": counts, "offered": offered_n,
            "thresholds_last": used[-1] if used else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="a study's output folder (results.json, predictions/)")
    p.add_argument("--strategy", default="live", help="the recorded live strategy to replay")
    p.add_argument("--prior-images", default="0,1,2,5,10,20,40")
    p.add_argument("--half-life", default="10")
    p.add_argument("--fixed", default="0.2,0.25,0.3,0.35,0.4,0.5")
    args = p.parse_args()
    results, rows = load(args.out, args.strategy)
    run = results["strategies"][args.strategy]
    cfg = results["config"]
    task, classes = results["dataset"]["task"], len(results["dataset"]["classes"])
    costs = CostModel(**results["costs"])
    prior = float(cfg["threshold"])
    print(f"{args.out} · {args.strategy}: {len(rows)} images, the run's working hours "
          f"{run['summary']['work_hours']:.4f}, manual {run['summary']['manual_hours_same_images']:.4f}")
    print("| policy | offering | working hours | vs manual | correct | imprecise | wrong class | extra | missed |"
          " offered | thresholds at the end |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def line(name: str, offer: str, r: dict[str, Any]) -> None:
        c = r["counts"]
        thr = ", ".join(f"{v:.2f}" for v in r["thresholds_last"]) if r["thresholds_last"] else "–"
        print(f"| {name} | {offer} | {r['hours']:.4f} | {r['hours'] / r['manual_hours']:.4f} | "
              f"{c.get('correct', 0)} | {c.get('imprecise', 0)} | {c.get('wrong_class', 0)} | {c.get('extra', 0)} | "
              f"{c.get('missed', 0)} | {r['offered']} | {thr} |")

    for t in [float(v) for v in args.fixed.split(",") if v]:
        line(f"fixed {t:g}", "as run", replay(rows, task, classes, costs, fixed=t, prior=prior))
    for h in [float(v) for v in args.half_life.split(",") if v]:
        for k in [float(v) for v in args.prior_images.split(",") if v]:
            tc = TunerConfig(half_life=h, prior_images=k)
            for offer in ("as run", "tuner verdict"):
                line(f"tuner half-life {h:g}, prior images {k:g}", offer,
                     replay(rows, task, classes, costs, tuner=tc, prior=prior, offer=offer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
