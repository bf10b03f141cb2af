"""The protocol of the correction mode's models: a frozen base with a LoRA adapter trained per correction.

A stream model answers for one frame at a time. The engine's :class:`~livetrain_widgets.engine.stream.
StreamSession` calls, from one thread at a time:

- ``encode(image)`` once per frame: everything frozen (backbone, image encoder, and the base output of
  adapted layers whose input is fixed), kept while the frame is on screen and reused by every epoch of
  an update;
- ``predict(encoded, prompt)`` → :class:`StreamPrediction` (an :class:`Annotation` in original pixels,
  plus the foreground probability map that local click edits use);
- ``loss(encoded, prompt, target)`` in train mode: a scalar whose gradient reaches only the adapter;
- ``adapter_parameters()``, ``reset_adapter()``, ``adapter_state()`` / ``load_adapter_state()``.

Two kinds of model: *promptable* ones (SAM, SAM 2) take the previous frame's box and the user's clicks
as prompts; the others (the embedded segmenter, classifiers) predict without prompts, and a click edits
the prediction locally (see ``engine.stream.apply_clicks``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..engine.annotation import Annotation
from . import _lora

STREAM_TASKS = ("segmentation", "classification")


@dataclass
class AdapterConfig:
    """How the adapter is built and trained. Defaults follow the LIT paper where it gives them: rank 4,
    dropout 0.1, 40 epochs with early stop, one correction per update. ``lr`` and ``alpha`` (2 × rank)
    are ours, chosen on the membrane stack for a CPU; ``patience`` epochs without a 1 % drop of the loss
    stop an update, and so does the corrected frame itself reaching ``fit`` quality (IoU, or the true
    class ranked first) so an easy correction costs a few epochs, not forty."""

    rank: int = 4
    alpha: float = 8.0
    dropout: float = 0.1
    lr: float = 3e-3
    epochs: int = 40
    patience: int = 8
    fit: float = 0.9
    weight_decay: float = 0.0
    #: an update is taken back if it lowers the mean fit on the stream's last ``guard`` confirmed frames
    #: by more than ``guard_tolerance`` (ours, not the paper's; 0 turns the guard off)
    guard: int = 3
    guard_tolerance: float = 0.02
    #: regex or module names to adapt; ``None``: the family's default (the decoder / head)
    target_modules: str | list[str] | None = None

    def __post_init__(self) -> None:
        if self.rank < 1 or self.epochs < 1 or self.patience < 1:
            raise ValueError("rank, epochs and patience must be at least 1")
        if self.guard < 0 or self.guard_tolerance < 0:
            raise ValueError("guard and guard_tolerance cannot be negative")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (saved beside an adapter's weights)."""
        return asdict(self)


@dataclass(frozen=True)
class Click:
    """A correction click in original image pixels: ``positive`` adds to the object, otherwise removes."""

    x: float
    y: float
    positive: bool = True


@dataclass
class Prompt:
    """What a promptable model is told about a frame: the object's box propagated from the previous
    frame, and the user's clicks on this one. Models without prompts ignore it."""

    box: np.ndarray | None = None
    clicks: tuple[Click, ...] = ()
    #: which class the prompted object is (promptable models segment one object per stream)
    label: int = 0


@dataclass
class StreamPrediction:
    annotation: Annotation
    #: (H, W) float32 foreground probability in original pixels (segmentation), for local click edits
    probability: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StreamModel(nn.Module, ABC):
    """Base of every correction-mode model; subclasses adapt their own layers with :mod:`._lora`."""

    #: True: clicks and the propagated box are model inputs; False: clicks edit the prediction locally
    promptable: ClassVar[bool] = False
    family: ClassVar[str] = ""

    def __init__(self, task: str, classes: Sequence[str], adapter: AdapterConfig | None = None) -> None:
        super().__init__()
        if task not in STREAM_TASKS:
            raise ValueError(f"the correction mode supports {STREAM_TASKS}, not {task!r}")
        if not classes:
            raise ValueError("at least one class is needed")
        self.task = task
        self.classes = [str(c) for c in classes]
        self.adapter_config = adapter or AdapterConfig()

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (CPU or a CUDA device)."""
        return next(self.parameters()).device

    @abstractmethod
    def encode(self, image: np.ndarray) -> Any:
        """Frozen per-frame features (computed under ``no_grad``; reused by every epoch of an update)."""

    @abstractmethod
    def predict(self, encoded: Any, prompt: Prompt | None = None) -> StreamPrediction:
        """Prediction with the current adapter, in original pixels."""

    @abstractmethod
    def loss(self, encoded: Any, prompt: Prompt | None, target: Annotation) -> torch.Tensor:
        """Training loss of the adapter on one corrected frame (model in train mode)."""

    def loss_and_fit(
        self, encoded: Any, prompt: Prompt | None, target: Annotation
    ) -> tuple[torch.Tensor, float | None]:
        """The loss, and how well the current adapter already fits ``target`` (IoU, or 1.0 for the right
        class) if the model can tell from the same forward pass; ``None`` makes the session predict."""
        return self.loss(encoded, prompt, target), None

    def train(self, mode: bool = True) -> StreamModel:
        """Only the adapter's dropout follows the mode: the frozen base always runs as in inference
        (BatchNorm statistics; SAM 2's decoder branches on ``training``), so the loss sees the network
        the prediction uses."""
        super().train(False)
        if mode:
            for layer in _lora.lora_layers(self):
                layer.lora_dropout.train()
        self.training = mode
        return self

    def adapter_parameters(self) -> list[nn.Parameter]:
        return _lora.lora_parameters(self)

    def num_adapter_parameters(self) -> int:
        return sum(p.numel() for p in self.adapter_parameters())

    def reset_adapter(self) -> None:
        _lora.reset_lora(self)

    def adapter_state(self) -> dict[str, torch.Tensor]:
        return _lora.lora_state(self)

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        _lora.load_lora_state(self, state)

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the model and adapter, saved next to an adapter's tensors."""
        return {"family": self.family, "task": self.task, "classes": self.classes,
                "adapter": self.adapter_config.to_dict()}


def create_stream_model(
    spec: Any, task: str | None = None, classes: Sequence[str] | None = None,
    adapter: AdapterConfig | None = None, **kwargs: Any,
) -> StreamModel:
    """A correction-mode model from a trained model, a saved-model folder, or a transformers checkpoint.

    - an :class:`EmbeddedModel` (e.g. ``session.model`` after live training) or a folder it was saved
      to: its copy, frozen, with the adapter on its head;
    - a SAM / SAM 2 checkpoint (name or local folder): promptable segmentation, adapter on the mask
      decoder (``classes``: the one object class);
    - a CLIP checkpoint or a trained ``hf-clip`` model: zero-shot classes, adapter on the image side.
    """
    from .base import CONFIG_NAME, load_model
    from .embedded import EmbeddedModel

    if isinstance(spec, StreamModel):
        return spec
    if isinstance(spec, (str, os.PathLike)) and (Path(spec) / CONFIG_NAME).is_file():
        spec = load_model(spec)
    if isinstance(spec, EmbeddedModel):
        from ._stream_embedded import EmbeddedStreamModel

        _check_matches(spec, task, classes)
        return EmbeddedStreamModel(spec, adapter)
    from ._stream_hf import create_hf_stream_model

    return create_hf_stream_model(spec, task, classes, adapter, **kwargs)


def _check_matches(model: Any, task: str | None, classes: Sequence[str] | None) -> None:
    if task is not None and model.task != task:
        raise ValueError(f"the model was trained for {model.task!r}, not {task!r}")
    if classes is not None and list(model.classes) != [str(c) for c in classes]:
        raise ValueError(f"the model knows classes {model.classes}, not {list(classes)}")
