"""When do pre-labels start to save time? Coins tiles and BCCD in file order, today's trainer against the
one before issue 21, several seeds (issue 21 A).

    python benchmarks/first_prelabels.py --seeds 0 1 2 --images 8 --ratio 5 --cap 400

One live walk per dataset, seed and trainer, on the study's engine and cost model (``run_strategy``): the
trainer trains ``--ratio`` steps per second the simulated person spends on an image (at most ``--cap``),
on the labels submitted before it. Per image it prints whether pre-labels were offered, the seconds they
saved against drawing by hand (the cost model's manual figure), and which classes the shown pre-labels
contain. ``--min-labeled`` is when training starts (1: while the second image is labeled, so the third
can have pre-labels).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from livetrain_widgets.demo import coins
from livetrain_widgets.engine.costs import CostModel
from livetrain_widgets.engine.formats import load_labels
from livetrain_widgets.engine.images import list_images, load_image
from livetrain_widgets.study.dataset import Item, StudyData
from livetrain_widgets.study.learning import BASELINE
from livetrain_widgets.study.simulate import Strategy, StudyConfig, run_strategy


def bccd_file_order(root: Path, n: int) -> StudyData:
    paths = list_images(root / "JPEGImages")
    loaded = load_labels("voc", root / "Annotations", paths, ["RBC", "WBC", "Platelets"])
    paths = [p for p in paths if p.resolve() in loaded.annotations][:n]
    walk = [Item(p.name, (lambda p=p: load_image(p)), loaded.annotations[p.resolve()]) for p in paths]
    return StudyData("detection", ["RBC", "WBC", "Platelets"], walk, [])


def walk(data: StudyData, seed: int, options: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    cfg = StudyConfig(seed=seed, compute_ratio=args.ratio, max_steps_per_image=args.cap,
                      min_labeled=args.min_labeled, model_options=dict(options["model"]), offline_reference=False,
                      eval_at=[], save_predictions=True)
    t0 = time.perf_counter()
    out = run_strategy(data, Strategy.parse(args.strategy), cfg, CostModel(), progress=False)
    out.pop("_engine").close()
    preds = {p["i"]: p for p in out.pop("_predictions", [])}
    rows = []
    from livetrain_widgets.engine.annotation import Annotation

    for rec in out["records"]:
        p = preds.get(rec["i"])
        shown: set[str] = set()
        if p is not None and rec["offered"]:
            raw = Annotation.from_json(p["raw"])
            thr = rec["threshold"]
            kept = raw.filter(thr)
            shown = {data.classes[int(c)] for c in set(kept.labels.tolist())}
        truth = {data.classes[int(c)] for c in set(data.walk[rec["i"] - 1].target.labels.tolist())}
        saved = round(rec["manual_seconds"] - rec["seconds"], 1)
        rows.append({"i": rec["i"], "offered": rec["offered"], "saved_s": saved,
                     "steps_before": rec["model_step"], "classes_shown": sorted(shown), "classes_true": sorted(truth)})
    return {"rows": rows, "wall_s": round(time.perf_counter() - t0, 1),
            "step_s": out.get("step_seconds_median")}


def first_saving(rows: list[dict[str, Any]]) -> int | None:
    """The first image from which every image's offered pre-labels saved time."""
    for j in range(len(rows)):
        if all(r["offered"] and r["saved_s"] > 0 for r in rows[j:]):
            return rows[j]["i"]
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.environ.get("LIVETRAIN_DATA", "../shared/data"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--ratio", type=float, default=5.0, help="training steps per simulated human second")
    p.add_argument("--cap", type=int, default=400, help="at most this many steps per image")
    p.add_argument("--min-labeled", type=int, default=1)
    p.add_argument("--datasets", nargs="+", default=["coins", "bccd"])
    p.add_argument("--variants", nargs="+", default=["current", "baseline"])
    p.add_argument("--strategy", default="live", help="the live strategy and its options, e.g. live:objbalance=0.3")
    p.add_argument("--out", help="write every row as JSON here")
    a = p.parse_args()
    sets = {"coins": lambda: coins().study_data(holdout=0),
            "bccd": lambda: bccd_file_order(Path(a.data) / "bccd", a.images)}
    variants = {"current": {"model": {}}, "baseline": BASELINE}
    results: dict[str, Any] = {"args": vars(a), "runs": []}
    for name in a.datasets:
        data = sets[name]()
        data.walk = data.walk[: a.images]
        for v in a.variants:
            for seed in a.seeds:
                r = walk(data, seed, variants[v], a)
                results["runs"].append({"dataset": name, "variant": v, "seed": seed, **r})
                first = first_saving(r["rows"])
                cells = " ".join(
                    f"{row['i']}:{'+' if row['offered'] else '-'}{row['saved_s']:+.0f}s"
                    + (f"[{','.join(c[0] for c in row['classes_shown'])}]" if row["offered"] else "")
                    for row in r["rows"])
                print(f"{name:5s} {v:8s} seed {seed}: saving from image {first}; {cells} (step {r['step_s']} s)",
                      flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
