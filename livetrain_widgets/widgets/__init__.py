"""The Jupyter front of the engine: anywidget canvases, the live panel, live plots and the app.

Widgets only observe and command a :class:`~livetrain_widgets.LiveSession`; no training logic lives
here, and nothing in ``livetrain_widgets.engine`` imports this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "LiveAnnotator": ".app",
    "LabelCanvas": ".canvas",
    "LivePanel": ".panel",
    "LivePlots": ".plots",
    "LossPlot": ".plots",
    "SamplerPlot": ".plots",
    "QualityPlot": ".plots",
}
__all__ = ["LabelCanvas", "LiveAnnotator", "LivePanel", "LivePlots", "LossPlot", "QualityPlot", "SamplerPlot"]


def __getattr__(name: str) -> Any:
    # Lazy, so that the wire codecs (``_codec``) import without the bundled front end being built.
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .app import LiveAnnotator
    from .canvas import LabelCanvas
    from .panel import LivePanel
    from .plots import LivePlots, LossPlot, QualityPlot, SamplerPlot
