"""livetrain-widgets: live training while annotating, in Jupyter.

A vision model fine-tunes in the notebook kernel while you label; after a few images it pre-labels
each new one, and when you are done you hold both the labeled dataset and the trained model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr

__version__ = "0.1.0"

# Public names and the module that defines each. Imported on first use, so that
# ``import livetrain_widgets`` stays fast and does not pull in torch until a model is needed.
_EXPORTS = {
    "Annotation": ".engine.annotation",
    "AnnotationError": ".engine.annotation",
    "ImageError": ".engine.images",
    "load_image": ".engine.images",
    "LiveSession": ".engine.session",
    "Prediction": ".engine.session",
    "SessionConfig": ".engine.session",
    "SessionState": ".engine.session",
    "TrainerConfig": ".engine.trainer",
    "StreamSession": ".engine.stream",
    "TeamSession": ".engine.team",
    "TeamTrainer": ".engine.team",
    "LiveModel": ".models",
    "create_model": ".models",
    "load_model": ".models",
    "AdapterConfig": ".models.stream",
    "create_stream_model": ".models.stream",
    # The Jupyter front (imports anywidget; the engine above does not).
    "LiveAnnotator": ".widgets.app",
    "LabelCanvas": ".widgets.canvas",
    "LivePanel": ".widgets.panel",
    "LivePlots": ".widgets.plots",
    "StreamAnnotator": ".widgets.stream",
}

__all__ = [
    "AdapterConfig",
    "Annotation",
    "AnnotationError",
    "ImageError",
    "LabelCanvas",
    "LiveAnnotator",
    "LiveModel",
    "LivePanel",
    "LivePlots",
    "LiveSession",
    "Prediction",
    "SessionConfig",
    "SessionState",
    "StreamAnnotator",
    "StreamSession",
    "TeamSession",
    "TeamTrainer",
    "TrainerConfig",
    "__version__",
    "create_model",
    "create_stream_model",
    "load_image",
    "load_model",
]


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from .engine.annotation import Annotation, AnnotationError
    from .engine.images import ImageError, load_image
    from .engine.session import LiveSession, Prediction, SessionConfig, SessionState
    from .engine.stream import StreamSession
    from .engine.team import TeamSession, TeamTrainer
    from .engine.trainer import TrainerConfig
    from .models import LiveModel, create_model, load_model
    from .models.stream import AdapterConfig, create_stream_model
    from .widgets.app import LiveAnnotator
    from .widgets.canvas import LabelCanvas
    from .widgets.panel import LivePanel
    from .widgets.plots import LivePlots
    from .widgets.stream import StreamAnnotator
