"""The Jupyter front of the engine: anywidget canvases, the live panel, live plots and the app.

Widgets only observe and command a :class:`~livetrain_widgets.LiveSession`; no training logic lives
here, and nothing in ``livetrain_widgets.engine`` imports this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

_EXPORTS = {
    "LiveAnnotator": ".app",
    "LabelCanvas": ".canvas",
    "LivePanel": ".panel",
    "LivePlots": ".plots",
    "LossPlot": ".plots",
    "SamplerPlot": ".plots",
    "QualityPlot": ".plots",
    "StreamAnnotator": ".stream",
    "StreamStrip": ".stream",
}
__all__ = ["LabelCanvas", "LiveAnnotator", "LivePanel", "LivePlots", "LossPlot", "QualityPlot", "SamplerPlot",
           "StreamAnnotator", "StreamStrip"]


# Lazy, so that the wire codecs (``_codec``) import without the bundled front end being built.
__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from .app import LiveAnnotator
    from .canvas import LabelCanvas
    from .panel import LivePanel
    from .plots import LivePlots, LossPlot, QualityPlot, SamplerPlot
    from .stream import StreamAnnotator, StreamStrip
