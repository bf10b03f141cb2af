"""The one small protocol every model family implements, so the trainer never knows which it drives.

A model takes raw images ((H, W, 3) uint8 RGB, any size) and :class:`Annotation` targets, and does
its own resizing, augmentation and batching: only the model knows what input size and target
encoding it needs. Predictions come back as annotations in the original image's pixel coordinates.

The trainer calls, from one worker thread at a time:

- ``loss(images, targets)`` in train mode, returning a scalar tensor to back-propagate;
- ``predict(images)`` in eval mode under ``torch.no_grad()``;
- ``param_groups(lr)`` once, to build the optimizer;
- ``state_dict()`` / ``load_state_dict()`` for checkpoints (plain tensors, saved as safetensors);
- ``save_pretrained(folder)`` / ``load_model(folder)`` to export and reload a trained model.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..engine.annotation import Annotation

CONFIG_NAME = "livetrain_model.json"
WEIGHTS_NAME = "model.safetensors"


def check_model_folder(out: Path, names: Sequence[str], config: str = CONFIG_NAME) -> None:
    """Refuse to save a model (or an adapter) where ``names`` would replace files that are not livetrain's.

    ``model.safetensors`` is also the name transformers gives its weights, so saving into a downloaded
    model's folder replaced them. Files already there are ours only beside a livetrain ``config``
    (JSON naming a model family); anything else is a FileExistsError naming the file."""
    present = [out / n for n in names if (out / n).exists() or (out / n).is_symlink()]
    if not present:
        return
    try:
        ours = isinstance(cfg := json.loads((out / config).read_text()), dict) and "family" in cfg
    except (OSError, ValueError):
        ours = False
    if not ours or (out / config).is_symlink():
        raise FileExistsError(
            f"{present[0]} is not livetrain's (no livetrain model or adapter was saved in {out}): not replaced; "
            "save the model into a new or empty folder"
        )

#: name -> class, filled by ``register``; ``load_model`` looks the family up here.
_REGISTRY: dict[str, type[LiveModel]] = {}


def register(cls: type[LiveModel]) -> type[LiveModel]:
    _REGISTRY[cls.family] = cls
    return cls


class LiveModel(nn.Module, ABC):
    """Base class of every model the trainer can drive."""

    #: short name of the model family, written into saved configs
    family: ClassVar[str] = ""
    #: task names this family supports
    tasks: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # predict() is also called directly by users on a loaded model: never build a graph there.
        if "predict" in cls.__dict__:
            cls.predict = torch.no_grad()(cls.__dict__["predict"])  # type: ignore[method-assign]

    def __init__(self, task: str, classes: Sequence[str]) -> None:
        super().__init__()
        if task not in self.tasks:
            raise ValueError(f"{type(self).__name__} does not support task {task!r}; it supports {self.tasks}")
        if not classes:
            raise ValueError("at least one class is needed")
        self.task = task
        self.classes = list(classes)

    @property
    def num_classes(self) -> int:
        """How many classes the model tells apart (background not counted)."""
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (CPU or a CUDA device)."""
        return next(self.parameters()).device

    @abstractmethod
    def loss(self, images: Sequence[np.ndarray], targets: Sequence[Annotation]) -> torch.Tensor:
        """Scalar training loss for a batch (model in train mode; augmentation is the model's job)."""

    @abstractmethod
    def predict(self, images: Sequence[np.ndarray]) -> list[Annotation]:
        """Pre-labels in original pixel coordinates, with scores. Called under ``torch.no_grad()``."""

    #: whether :meth:`loss` weighs classes by :meth:`set_class_weights` (per-object class balance)
    supports_class_weights: bool = False

    def set_class_weights(self, weights: Sequence[float] | None) -> None:
        """Weigh each class's part of the loss (one weight per class; None: all equal). The trainer calls
        this when ``TrainerConfig.object_balance`` is on; models whose loss cannot take weights (a Hub
        model computes its own) keep ignoring them, which :attr:`supports_class_weights` says."""
        if weights is not None and len(weights) != self.num_classes:
            raise ValueError(f"need {self.num_classes} class weights, got {len(weights)}")
        self._class_weights = None if weights is None else torch.tensor([float(v) for v in weights])

    def _class_weight_tensor(self, device: torch.device) -> torch.Tensor | None:
        w = getattr(self, "_class_weights", None)
        return None if w is None else w.to(device)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; override to give a pretrained backbone a smaller rate."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def config(self) -> dict[str, Any]:
        """JSON-serialisable keyword arguments that rebuild this model's architecture."""
        return {"task": self.task, "classes": self.classes}

    def train(self, mode: bool = True) -> LiveModel:
        """Keep frozen-statistics layers in eval mode while training (see ``_keep_eval``)."""
        super().train(mode)
        if mode:
            self._keep_eval()
        return self

    def _keep_eval(self) -> None:
        """Hook for layers that must stay in eval mode during training (e.g. BatchNorm with batch 2)."""

    # --------------------------------------------------------------------------- save / load
    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``livetrain_model.json`` + ``model.safetensors`` (no pickles) into ``folder``: a new folder,
        or one holding no model but livetrain's (:func:`check_model_folder`)."""
        out = Path(folder)
        check_model_folder(out, (CONFIG_NAME, WEIGHTS_NAME))
        out.mkdir(parents=True, exist_ok=True)
        cfg = {"family": self.family, **self.config()}
        tmp = out / (CONFIG_NAME + ".tmp")
        tmp.write_text(json.dumps(cfg, indent=2))
        os.replace(tmp, out / CONFIG_NAME)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(out / (WEIGHTS_NAME + ".tmp")))
        os.replace(out / (WEIGHTS_NAME + ".tmp"), out / WEIGHTS_NAME)
        return out

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LiveModel:
        """Rebuild the architecture from ``config()`` (no pretrained download)."""
        return cls(**config)


def load_model(folder: str | os.PathLike[str], device: str | torch.device | None = None) -> LiveModel:
    """Reload a model written by :meth:`LiveModel.save_pretrained`, in eval mode (ready to predict; a
    trainer given it switches it to training itself)."""
    src = Path(folder)
    cfg_path = src / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{src}: no {CONFIG_NAME}; not a folder written by save_pretrained")
    model = model_from_config(json.loads(cfg_path.read_text()), where=str(cfg_path))
    state = read_weights(src / WEIGHTS_NAME)
    model.load_state_dict(state)
    if device is not None:
        model.to(device)
    return model.eval()


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file (tensors only: nothing in it can run code), or a ValueError naming it."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # SafetensorError: a pickle or a damaged file under a weights file's name
        raise ValueError(f"{path}: not a readable safetensors weights file ({exc})") from exc


def model_from_config(config: dict[str, Any], where: str = "model config") -> LiveModel:
    """Rebuild an architecture (untrained) from ``{"family": ..., **model.config()}``."""
    from . import _ensure_registered

    _ensure_registered()
    cfg = dict(config)
    family = cfg.pop("family", None)
    if family not in _REGISTRY:
        raise ValueError(f"{where}: unknown model family {family!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[family].from_config(cfg)


def full_config(model: LiveModel) -> dict[str, Any]:
    """What ``model_from_config`` needs to rebuild ``model``."""
    return {"family": model.family, **model.config()}
