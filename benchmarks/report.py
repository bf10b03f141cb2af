"""Markdown tables of a study's results (what BENCHMARKS.md shows), from the results.json files.

    python benchmarks/report.py benchmarks/results > /tmp/tables.md
    python benchmarks/report.py --seeds benchmarks/results/issue21   # SEED folders: mean ± sd over seeds

With ``--seeds``, ROOT holds one folder per seed (``seed0/``, ``seed1/``, ...), each with one folder per
dataset (``seed0/bccd/results.json``); every figure is given as mean ± sd over the seeds that ran, with
the cost-sensitivity range of each ratio over all of them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from livetrain_widgets.study.sensitivity import sensitivity_table


def _f(v: Any, nd: int = 2) -> str:
    if v is None:
        return "–"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def strategy_table(res: dict[str, Any]) -> str:
    metric = res["metric"]
    rows = [f"| strategy | working hours | calendar days | vs manual | vs hitl | first image that saved time | "
            f"held-out {metric} | vs offline |", "|---|---|---|---|---|---|---|---|"]
    for name, r in res["strategies"].items():
        s = r["summary"]
        rows.append(f"| {name} | {_f(s['work_hours'])} | {_f(s['calendar_days'])} | {_f(s.get('hours_vs_manual'))} "
                    f"| {_f(s.get('hours_vs_hitl'))} | {_f(s['first_saving_image'])} | {_f(s['heldout'], 3)} "
                    f"| {_f(s.get('heldout_vs_offline'))} |")
    off = res.get("offline")
    if off:
        rows.append(f"| offline reference ({off['images']} images, {off['steps']} steps) | – | – | – | – | – | "
                    f"{_f(off['heldout']['headline'], 3)} | 1.00 |")
    return "\n".join(rows)


def corrections_table(res: dict[str, Any]) -> str:
    kinds: list[str] = []
    for r in res["strategies"].values():
        for k in r["summary"]["corrections"]:
            if k not in kinds:
                kinds.append(k)
    rows = ["| strategy | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for name, r in res["strategies"].items():
        c = r["summary"]["corrections"]
        rows.append(f"| {name} | " + " | ".join(str(c.get(k, 0)) for k in kinds) + " |")
    return "\n".join(rows)


def heldout_table(res: dict[str, Any]) -> str:
    points = sorted({int(n) for r in res["strategies"].values() for n in r["heldout_at"]})
    if not points:
        return ""
    classes = res["dataset"]["classes"]
    # recall per class at the end, where a few classes make it readable (class balance shows there)
    per_class = 1 < len(classes) <= 5
    extra = ["at the end"] + ([f"recall at the end: {' / '.join(classes)}"] if per_class else [])
    head = [f"after {n}" for n in points] + extra
    rows = ["| strategy | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, r in res["strategies"].items():
        if r["heldout_at"]:
            cells = [_f(r["heldout_at"].get(str(n), {}).get("headline"), 3) for n in points]
            cells.append(_f(r["summary"].get("heldout"), 3))
            if per_class:
                recall = (r.get("heldout") or {}).get("recall_per_class") or []
                cells.append(" / ".join(_f(float(v), 3) for v in recall) or "–")
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ablation_table(res: dict[str, Any]) -> str:
    if not res.get("ablations"):
        return ""
    metric = res["metric"]
    rows = [f"| variant (vs live) | working hours | Δ held-out {metric} | Δ training steps | first image that "
            "saved time (live → variant) |", "|---|---|---|---|---|"]
    for name, a in res["ablations"].items():
        delta = "–" if a["heldout_delta"] is None else f"{a['heldout_delta']:+.3f}"
        rows.append(f"| {name} | ×{a['work_hours_ratio']:.3f} | {delta} | "
                    f"{a['training_steps_delta']:+d} | {a['first_saving_image'][0]} → {a['first_saving_image'][1]} |")
    return "\n".join(rows)


def stream_table(res: dict[str, Any]) -> str:
    """The correction mode's protocol: corrections and time without / with the adapter, per threshold."""
    rows = ["| threshold | corrections: base | with adapter | reduction | simulated time (s): base | with adapter "
            "| reduction | mean first-prediction quality: base / adapter | training s per correction p50 / p95 |",
            "|---|---|---|---|---|---|---|---|---|"]
    for thr, r in res["thresholds"].items():
        b, a, u = r["base"], r["adapter"], r.get("update_seconds") or {}
        cb, ca = str(b["corrections"]), str(a["corrections"])
        g = r.get("groups")
        if g and g["counted"]:
            cb += f" ({_f(g['base_per_group'], 1)} per group)"
            ca += f" ({_f(g['adapter_per_group'], 1)} per group)"
        red = r["reduction_corrections_pct"] if not (g and g["counted"]) else g["reduction_pct"]
        rows.append(f"| {thr} | {cb} | {ca} | {_f(red, 1)} % | {b['seconds']:.0f} | {a['seconds']:.0f} "
                    f"| {_f(r['reduction_seconds_pct'], 1)} % "
                    f"| {_f(b['mean_quality'], 3)} / {_f(a['mean_quality'], 3)} "
                    f"| {_f(u.get('p50'), 3)} / {_f(u.get('p95'), 3)} |")
    return "\n".join(rows)


def _pm(values: list[float], nd: int = 3) -> str:
    """mean ± sd (sample sd; n = 1 gives the value alone)."""
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    if len(v) == 1:
        return f"{v[0]:.{nd}f}"
    return f"{np.mean(v):.{nd}f} ± {np.std(v, ddof=1):.{nd}f}"


def seeds_table(runs: list[dict[str, Any]]) -> str:
    """One dataset over several seeds: each strategy's figures as mean ± sd, and the sensitivity ranges."""
    metric = runs[0]["metric"]
    names = [n for n in runs[0]["strategies"] if all(n in r["strategies"] for r in runs)]
    rows = [f"| strategy | working hours | vs manual | vs hitl | calendar days | held-out {metric} | "
            "vs manual over the cost grid | vs hitl over the cost grid |", "|---|---|---|---|---|---|---|---|"]
    for name in names:
        s = [r["strategies"][name]["summary"] for r in runs]

        def span(ref: str, name: str = name) -> str:
            rs = [r.get("sensitivity", {}).get("ratios", {}).get(name, {}).get(ref) for r in runs]
            rs = [x for x in rs if x]
            return "–" if not rs else f"{min(x['min'] for x in rs):.2f}–{max(x['max'] for x in rs):.2f}"

        hitl = next((n for n in names if runs[0]["strategies"][n]["strategy"]["kind"] == "hitl"), None)
        rows.append(f"| {name} | {_pm([x['work_hours'] for x in s])} | {_pm([x.get('hours_vs_manual') for x in s])} "
                    f"| {_pm([x.get('hours_vs_hitl') for x in s])} | {_pm([x['calendar_days'] for x in s], 2)} "
                    f"| {_pm([x['heldout'] for x in s])} | {span('manual')} | {span(hitl) if hitl else '–'} |")
    offs = [r["offline"] for r in runs if r.get("offline")]
    if offs:
        rows.append(f"| offline reference ({_pm([o['steps'] for o in offs], 0)} steps) | – | – | – | – | "
                    f"{_pm([o['heldout']['headline'] for o in offs])} | – | – |")
    return "\n".join(rows)


def main_seeds(root: str) -> None:
    by_set: dict[str, list[dict[str, Any]]] = {}
    seeds: dict[str, list[str]] = {}
    for path in sorted(Path(root).glob("seed*/*/results.json")):
        by_set.setdefault(path.parent.name, []).append(json.loads(path.read_text()))
        seeds.setdefault(path.parent.name, []).append(path.parent.parent.name)
    for name, runs in by_set.items():
        d = runs[0]["dataset"]
        print(f"### {name}: {d['task']}, {d['walk']} images labeled, {d['holdout']} held out; "
              f"{len(runs)} seeds ({', '.join(seeds[name])}), mean ± sd\n")
        print(seeds_table(runs) + "\n")
        walls = [r.get("wall_seconds", 0) / 60 for r in runs]
        print(f"wall time per seed {_pm(walls, 1)} min\n")


def main(root: str) -> None:
    for path in sorted(Path(root).glob("*/results.json")):
        res = json.loads(path.read_text())
        if res.get("mode") == "stream":
            streams = res["streams"]
            print(f"### {path.parent.name}: {res['task']}, {sum(streams.values())} stream frames in "
                  f"{len(streams)} stream(s); adapter {res['adapter_parameters']:,} parameters\n")
            print(stream_table(res) + "\n")
            print(f"wall time {res.get('wall_seconds', 0) / 60:.1f} min\n")
            continue
        d = res["dataset"]
        print(f"### {path.parent.name}: {d['task']}, {d['walk']} images labeled, {d['holdout']} held out\n")
        for table in (strategy_table(res), corrections_table(res), heldout_table(res), ablation_table(res)):
            if table:
                print(table + "\n")
        if res.get("sensitivity"):
            print("Each ratio priced again under every cost model of the grid (the same walks, no training "
                  "again):\n")
            print(sensitivity_table(res) + "\n")
        print(f"wall time {res.get('wall_seconds', 0) / 60:.1f} min\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--seeds":
        main_seeds(sys.argv[2] if len(sys.argv) > 2 else "benchmarks/results/issue21")
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results")
