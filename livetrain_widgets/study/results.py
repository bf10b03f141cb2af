"""What both commands write: the machine's description, results.json (atomically), the study's
ratios and ablation deltas, its table and its plots."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..engine._output_folder import OutputFolder
from .sensitivity import sensitivity


def environment() -> dict[str, Any]:
    """Versions, CPU, threads, CUDA and the load average when a run starts (written into results.json)."""
    import torch

    from .. import __version__

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "livetrain_widgets": __version__, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "processor": cpu_name(), "cpu_count": os.cpu_count(), "cpus_usable": affinity,
        "torch_threads": torch.get_num_threads(), "cuda_available": torch.cuda.is_available(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        # Another process training on the same cores shows here; absolute times are noisy then.
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def cpu_name() -> str | None:
    # platform.processor() is empty on most Linux systems; /proc/cpuinfo names the model.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def spread(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, p50, p95 and max of a list of timings (``None`` figures for an empty list)."""
    v = np.asarray(values, np.float64)
    if not len(v):
        return {"n": 0, "mean": None, "p50": None, "p95": None, "max": None}
    return {"n": len(v), "mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p95": float(np.percentile(v, 95)), "max": float(v.max())}


def output_folder(out: OutputFolder | str | os.PathLike[str], command: str = "livetrain") -> OutputFolder:
    """``out`` claimed as a command's output folder (new, empty, or made by livetrain before; see
    :class:`~livetrain_widgets.engine._output_folder.OutputFolder`): a folder holding anything else is refused."""
    return out if isinstance(out, OutputFolder) else OutputFolder(out, command)


def write_results(results: dict[str, Any], out: OutputFolder | str | os.PathLike[str]) -> None:
    """``results.json`` under ``out``, replaced whole (a crash leaves the previous one)."""
    output_folder(out).write("results.json", json.dumps(results, indent=1, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_plots(results: dict[str, Any], out: OutputFolder | str | os.PathLike[str]) -> list[str]:
    """The four plots as PNG (needs matplotlib: ``pip install livetrain-widgets[study]``)."""
    try:
        from .plots import study_plots
    except ImportError as exc:  # matplotlib missing: the figures are in results.json all the same
        print(f"plots skipped ({exc}); pip install 'livetrain-widgets[study]' for PNG plots", file=sys.stderr)
        return []
    return [str(p) for p in study_plots(results, output_folder(out))]


def relate(results: dict[str, Any]) -> None:
    """Ratios against manual, hitl and the offline reference; ablation deltas against plain ``live``."""
    strat = results["strategies"]

    def first(kind: str) -> dict[str, Any] | None:  # "hitl" or its first variant, e.g. "hitl:at=5/10"
        return strat.get(kind) or next((r for r in strat.values() if r["strategy"]["kind"] == kind), None)

    manual, hitl = first("manual"), first("hitl")
    offline = results.get("offline", {}).get("heldout", {}) or {}
    for res in strat.values():
        s = res["summary"]
        if manual:
            s["hours_vs_manual"] = round(s["work_hours"] / max(manual["summary"]["work_hours"], 1e-9), 4)
        if hitl:
            s["hours_vs_hitl"] = round(s["work_hours"] / max(hitl["summary"]["work_hours"], 1e-9), 4)
        if s.get("heldout") is not None and offline.get("headline"):
            s["heldout_vs_offline"] = round(s["heldout"] / offline["headline"], 4)
    # the same walks priced under every plausible cost model: each ratio as a range, not one number
    results["sensitivity"] = sensitivity(results)
    base = strat.get("live")
    if base is None:
        return
    ablations = {}
    for name, res in strat.items():
        if name == "live" or res["strategy"]["kind"] != "live":
            continue
        a, b = res["summary"], base["summary"]
        ablations[name] = {
            "work_hours_delta": round(a["work_hours"] - b["work_hours"], 4),
            "work_hours_ratio": round(a["work_hours"] / max(b["work_hours"], 1e-9), 4),
            "heldout_delta": None if a["heldout"] is None or b["heldout"] is None
            else round(a["heldout"] - b["heldout"], 4),
            "training_steps_delta": (a["training_steps"] or 0) - (b["training_steps"] or 0),
            "first_saving_image": [b["first_saving_image"], a["first_saving_image"]],
        }
    results["ablations"] = ablations


def format_table(results: dict[str, Any]) -> str:
    """The short table printed at the end of a run."""
    metric = results["metric"]
    rare = next((r["summary"]["rarest_class"] for r in results["strategies"].values()
                 if r["summary"].get("rarest_class")), None)
    head = ["strategy", "images", "hours", "days", "vs manual", "vs hitl", "saves from", metric, "/offline"]
    if rare:
        head.append(f"{rare} recall")
    rows = [head]
    f = lambda v, nd=2: "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))  # noqa: E731
    for name, res in results["strategies"].items():
        s = res["summary"]
        rows.append([name, str(s["images"]), f(s["work_hours"]), f(s["calendar_days"], 1),
                     f(s.get("hours_vs_manual")), f(s.get("hours_vs_hitl")), f(s["saves_from_image"]),
                     f(s["heldout"], 3), f(s.get("heldout_vs_offline"))]
                    + ([f(s.get("rarest_recall"), 3)] if rare else []))
    off = results.get("offline")
    if off:
        rec = off["heldout"].get("recall_per_class")
        names = results["dataset"].get("classes", [])
        idx = names.index(rare) if rare in names else None
        rows.append(["offline (ref.)", str(off["images"]), "-", "-", "-", "-", "-",
                     f(off["heldout"]["headline"], 3), "1.00"]
                    + ([f(rec[idx] if rec and idx is not None else None, 3)] if rare else []))
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    lines = ["  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for name, a in results.get("ablations", {}).items():
        delta = "-" if a["heldout_delta"] is None else f"{a['heldout_delta']:+.3f}"
        lines.append(f"ablation {name} vs live: hours x{a['work_hours_ratio']:.3f}, {metric} {delta}, "
                     f"training steps {a['training_steps_delta']:+d}")
    sens = results.get("sensitivity")
    for name, refs in (sens or {}).get("ratios", {}).items():
        if results["strategies"][name]["strategy"]["kind"] != "live":
            continue
        ranges = "; ".join(f"vs {ref} {r['min']:.2f}-{r['max']:.2f} (at these costs {r['at_defaults']:.2f})"
                           for ref, r in refs.items())
        lines.append(f"{name} over {sens['combinations']} cost models: {ranges}")
    return "\n".join(lines)


__all__ = ["cpu_name", "environment", "format_table", "output_folder", "relate", "write_plots", "write_results"]
