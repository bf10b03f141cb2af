"""Model families behind one protocol (:class:`LiveModel`), and ``create_model`` to pick one by name."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import CONFIG_NAME, LiveModel, load_model, register

__all__ = ["LiveModel", "create_model", "load_model", "register"]


def _ensure_registered() -> None:
    """Import the built-in families so that ``load_model`` finds them by name."""
    from . import embedded  # noqa: F401

    with contextlib.suppress(ImportError):  # transformers is optional
        from . import hf  # noqa: F401


def create_model(
    spec: str | os.PathLike[str] | LiveModel, task: str, classes: Sequence[str], **kwargs: Any
) -> LiveModel:
    """``"embedded"`` (the offline default), a folder from ``save_pretrained``, a model instance, or a
    Hugging Face model name / local ``save_pretrained`` folder (``transformers`` needed)."""
    if isinstance(spec, LiveModel):
        return spec
    if str(spec) == "embedded":
        from .embedded import EmbeddedModel

        return EmbeddedModel(task, classes, **kwargs)
    if (Path(spec) / CONFIG_NAME).is_file():
        model = load_model(spec)
        if model.task != task or model.classes != list(classes):
            raise ValueError(
                f"{spec}: saved for task {model.task!r} with classes {model.classes}, "
                f"not {task!r} with {list(classes)}"
            )
        return model
    from .hf import create_hf_model

    return create_hf_model(str(spec), task, classes, **kwargs)
