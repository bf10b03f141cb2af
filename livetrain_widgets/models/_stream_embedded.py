"""The embedded model in the correction mode: a copy of a trained :class:`EmbeddedModel`, frozen, with a
LoRA adapter on the end of its head.

Where the adapter goes, and why there:

- **segmentation**: the head's last 3×3 convolution and its class projection. Everything before them
  (backbone, FPN, the head's first convolution) is frozen and runs once per frame in ``encode``; so
  does the base output of the adapted 3×3 convolution, since its input is fixed. An epoch then costs
  the low-rank residual, a GroupNorm and a 1×1 convolution at stride 4: about 10 ms for a 512×512
  frame on two CPU cores, against ~100 ms if the whole head ran. Masks come back per class (semantic):
  the stream's corrections and the paper's protocol are about class masks, not instance splits.
- **classification**: the backbone's last 1×1 convolution (320 → 1280 channels, the feature space the
  linear classifier reads) and the classifier itself, over features cached per image.

The base model is copied: the live-training session that produced it keeps training untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine.annotation import Annotation
from . import _lora
from ._preprocess import pad_batch, prepare, resize_nearest
from .base import full_config, model_from_config
from .embedded import EmbeddedModel, _check_image, _masked_mean
from .stream import AdapterConfig, Prompt, StreamModel, StreamPrediction

#: the adapted layers, by name inside the copied model (the head's Sequential indices: conv, GN, ReLU, ...)
SEG_TARGETS = ["head.body.3", "head.classes"]
CLS_TARGETS = ["conv_head.0", "head.1"]


@dataclass
class _Encoded:
    size: tuple[int, int]  # original (H, W)
    valid: tuple[int, int]  # the image's (h, w) inside the padded input
    padded: tuple[int, int]
    x: torch.Tensor  # input of the first adapted layer
    base: torch.Tensor  # that layer's frozen output
    sample: Any = None
    #: (annotation, its class-index tensor): the target of the correction being trained
    target: tuple[Annotation, torch.Tensor] | None = None


class EmbeddedStreamModel(StreamModel):
    """See the module docstring. ``base``: a trained segmentation or classification ``EmbeddedModel``."""

    family: ClassVar[str] = "embedded"

    def __init__(self, base: EmbeddedModel, adapter: AdapterConfig | None = None) -> None:
        if not isinstance(base, EmbeddedModel):
            raise TypeError(f"expected an EmbeddedModel, got {type(base).__name__}")
        super().__init__(base.task, base.classes, adapter)
        # rebuilt from config + weights rather than deep-copied: a live trainer's hooks stay behind
        net = model_from_config(full_config(base))
        net.load_state_dict(base.state_dict())
        net.eval()
        self.input_size = net.input_size
        cfg = self.adapter_config
        if self.task == "segmentation":
            self.backbone, self.neck, self.head = net.backbone, net.neck, net.head
            targets = cfg.target_modules or SEG_TARGETS
        else:
            self.backbone = net.backbone
            # the 1280-channel conv is adapted separately from the frozen trunk it follows
            self.conv_head, self.backbone.head = net.backbone.head, None
            self.conv_head[0] = _plain_conv(self.conv_head[0])
            self.head = net.head
            targets = cfg.target_modules or CLS_TARGETS
        allowed = SEG_TARGETS if self.task == "segmentation" else CLS_TARGETS
        if isinstance(targets, str) or not set(targets) <= set(allowed):
            # the cached forward pass (see _logits) knows exactly these layers; an adapter elsewhere would
            # be trained through a base output that no longer changes with it
            raise ValueError(f"the embedded {self.task} model adapts a subset of {allowed}, got {targets!r}")
        _lora.inject_lora(self, list(targets), rank=cfg.rank, alpha=cfg.alpha, dropout=cfg.dropout)
        self.to(base.device)  # rebuilt on the CPU; a base trained on a GPU keeps its adapter there
        self.eval()

    # --------------------------------------------------------------------------------- encode
    @torch.no_grad()
    def encode(self, image: np.ndarray) -> _Encoded:
        image = _check_image(image)
        s = prepare(image, self.input_size)
        x = pad_batch([s.image]).to(self.device, memory_format=torch.channels_last)
        feats = self.backbone(x)
        valid = tuple(s.image.shape[-2:])
        if self.task == "segmentation":
            pyr = self.neck(feats)
            body = self.head.body
            h = body[2](body[1](body[0](pyr[4])))  # the frozen first conv + GN + ReLU
            first = body[3]
        else:
            h, first = feats[32], self.conv_head[0]
        base = first.base_layer(h) if hasattr(first, "base_layer") else first(h)
        return _Encoded(image.shape[:2], valid, tuple(x.shape[-2:]), h, base, s)

    def _logits(self, enc: _Encoded) -> torch.Tensor:
        """Class logits: (1, C + 1, h, w) at input resolution (segmentation) or (1, C) (classification)."""
        if self.task == "segmentation":
            body = self.head.body
            y = enc.base + _residual(body[3], enc.x)
            y = body[5](body[4](y))
            logits = self.head.classes(y)
            logits = F.interpolate(logits, size=enc.padded, mode="bilinear", align_corners=False)
            return logits[:, :, : enc.valid[0], : enc.valid[1]]
        conv, bn, act = self.conv_head
        y = act(bn(enc.base + _residual(conv, enc.x)))
        return self.head[1](_masked_mean(y, [enc.sample], enc.padded))

    # -------------------------------------------------------------------------------- predict
    @torch.no_grad()
    def predict(self, encoded: _Encoded, prompt: Prompt | None = None) -> StreamPrediction:
        H, W = encoded.size
        logits = self._logits(encoded)
        if self.task == "classification":
            p = logits.softmax(1)[0].cpu().numpy()
            return StreamPrediction(Annotation(W, H, category=int(p.argmax()), category_scores=p))
        prob = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False).softmax(1)[0].cpu().numpy()
        cls = prob.argmax(0)
        present = [c for c in range(1, prob.shape[0]) if (cls == c).any()]
        masks = np.stack([cls == c for c in present]) if present else np.zeros((0, H, W), bool)
        scores = [float(prob[c][cls == c].mean()) for c in present]
        ann = Annotation.from_masks(masks, [c - 1 for c in present], scores, width=W, height=H)
        return StreamPrediction(ann, probability=prob[1:].astype(np.float32))

    # ----------------------------------------------------------------------------------- loss
    def loss(self, encoded: _Encoded, prompt: Prompt | None, target: Annotation) -> torch.Tensor:
        return self.loss_and_fit(encoded, prompt, target)[0]

    def loss_and_fit(self, encoded: _Encoded, prompt: Prompt | None, target: Annotation) -> tuple[torch.Tensor, float]:
        logits = self._logits(encoded)
        y = self._target(encoded, target)
        with torch.no_grad():
            fit = _fit(logits, y)
        if self.task == "classification":
            return F.cross_entropy(logits, y), fit
        return _seg_loss(logits, y), fit

    def _target(self, enc: _Encoded, target: Annotation) -> torch.Tensor:
        """The target as class indices at input resolution, built once per correction (every epoch reuses it)."""
        if enc.target is not None and enc.target[0] is target:
            return enc.target[1]
        if self.task == "classification":
            if target.category is None:
                raise ValueError("a classification correction needs a category")
            y = torch.tensor([target.category], device=self.device)
        else:
            cls = resize_nearest(target.semantic_map().astype(np.int32), enc.valid).astype(np.int64)
            y = torch.from_numpy(cls).to(self.device)[None]
        enc.target = (target, y)
        return y


def _residual(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | float:
    """The adapter's share of a layer's output (0 for a layer left without an adapter)."""
    return _lora.lora_branch(layer, x) if hasattr(layer, "lora_A") else 0.0


def _plain_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """EfficientNet's 1×1 "same padding" conv as a plain ``nn.Conv2d`` (same weights; a 1×1 kernel
    pads nothing): peft builds its LoRA layers with the base layer's own class, and that subclass's
    constructor takes other arguments (the adapter came out with dilation 0)."""
    if conv.kernel_size != (1, 1) or conv.stride != (1, 1):
        raise ValueError(f"expected a 1x1 stride-1 convolution, got {conv}")
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=conv.bias is not None)
    plain.load_state_dict(conv.state_dict())
    return plain.to(memory_format=torch.channels_last)


def _fit(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean IoU over the classes in either map at input resolution (classification: 1.0 if top-1)."""
    pred = logits.argmax(1)
    if logits.dim() == 2:
        return float((pred == y).all())
    ious = []
    for c in range(1, logits.shape[1]):
        a, b = pred == c, y == c
        union = int((a | b).sum())
        if union:
            ious.append(int((a & b).sum()) / union)
    return float(np.mean(ious)) if ious else 1.0


def _seg_loss(logits: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for every pixel plus a soft Dice on the foreground classes: thin structures
    (membranes) are a few per cent of the pixels and would barely move cross-entropy alone."""
    ce = F.cross_entropy(logits, cls)
    prob = logits.softmax(1)[:, 1:]
    onehot = F.one_hot(cls, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
    inter = (prob * onehot).sum((0, 2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1)
    return ce + dice.mean()
