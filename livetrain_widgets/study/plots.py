"""PNG plots of a study (matplotlib, headless): the four views of the technical report's comparison.

1. progress against calendar days (retrain pauses show as flat steps);
2. progress against working hours;
3. labeling speed (images per hour, moving average) against working hours;
4. labeling speed against images labeled.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

# Figures without pyplot: they render straight to PNG in any process, and the caller's backend (a
# notebook's inline plots) is left as it was; matplotlib.use("Agg") here silenced a notebook's plt.show().
from matplotlib.figure import Figure

from ..engine._output_folder import OutputFolder

_STYLE = {"manual": ("#7f7f7f", "-"), "static": ("#9467bd", "-"), "hitl": ("#ff7f0e", "-"),
          "live": ("#1f77b4", "-")}


#: variants (ablations such as "live:uniform") get colours no base strategy uses, dashed
_VARIANTS = ("#17becf", "#2ca02c", "#d62728", "#e377c2", "#8c564b", "#bcbd22")


def _style(name: str, kind: str, variant: int) -> dict[str, Any]:
    if name in _STYLE:
        color, ls = _STYLE[name]
        return {"color": color, "linestyle": ls, "linewidth": 2.0}
    return {"color": _VARIANTS[variant % len(_VARIANTS)], "linestyle": "--", "linewidth": 1.4}


def speed_series(records: list[dict[str, Any]], window: int) -> np.ndarray:
    """Images per hour over the last ``window`` images (fewer at the start)."""
    secs = np.array([r["seconds"] for r in records], np.float64)
    out = np.empty(len(secs))
    for i in range(len(secs)):
        w = secs[max(0, i - window + 1): i + 1]
        out[i] = 3600.0 / max(float(w.mean()), 1e-9)
    return out


def study_plots(results: dict[str, Any], out: OutputFolder) -> list[Path]:
    window = int(results["config"].get("speed_window", 10))
    title = f"{results['dataset']['task']}, {results['dataset']['walk']} images"
    views = [
        ("progress_calendar.png", "calendar days (6-hour working days, retrain pauses included)",
         "labeled (%)", lambda r: ([x["calendar_days"] for x in r], None)),
        ("progress_hours.png", "working hours", "labeled (%)", lambda r: ([x["work_hours"] for x in r], None)),
        ("speed_hours.png", "working hours", f"images per hour (last {window})",
         lambda r: ([x["work_hours"] for x in r], speed_series(r, window))),
        ("speed_images.png", "images labeled", f"images per hour (last {window})",
         lambda r: ([x["i"] for x in r], speed_series(r, window))),
    ]
    paths = []
    for fname, xlabel, ylabel, series in views:
        fig = Figure(figsize=(6.4, 4.0), dpi=110)
        ax = fig.subplots()
        variants = 0
        for name, res in results["strategies"].items():
            recs = res["records"]
            if not recs:
                continue
            x, y = series(recs)
            if y is None:
                y = 100.0 * np.arange(1, len(recs) + 1) / len(recs)
            # start at the origin for the progress views
            if y is not None and "progress" in fname:
                x, y = [0.0, *x], [0.0, *y]
            ax.plot(x, y, label=name, **_style(name, res["strategy"]["kind"], variants))
            variants += name not in _STYLE
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        paths.append(out.write(fname, buf.getvalue()))
    return paths


__all__ = ["speed_series", "study_plots"]
