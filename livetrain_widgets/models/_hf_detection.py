"""Object detection with DETR-family transformers: RT-DETR, Conditional DETR, (MM) Grounding DINO.

All of them predict sigmoid (focal-loss) class scores per query and boxes as cxcywh relative to the
padded input canvas, which is how transformers' own processors normalise targets (boxes are rescaled
to the padded image). Predictions therefore map back through the canvas measured in original pixels.

Grounding DINO scores queries against text tokens instead of a fixed class list: the class names are
the prompt ("red blood cell. platelet."), transformers' loss splits the prompt at the "." tokens into
one label per class, and here a class's score is the best token score inside its span. With no
training at all it is therefore a zero-shot detector of the user's classes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..engine.annotation import Annotation
from ._hf_base import Batch, HFLiveModel
from .base import register

DETR_TYPES = ("rt_detr", "rt_detr_v2", "conditional_detr")
GROUNDED_TYPES = ("grounding-dino", "mm-grounding-dino")


def prompt_text(classes: Sequence[str]) -> str:
    """"a. b. c." — dots and question marks inside a name would split it, so they become spaces."""
    names = [re.sub(r"[.?]", " ", c).strip().lower() or f"class {i}" for i, c in enumerate(classes)]
    return ". ".join(names) + "."


def encode_boxes(ann: Annotation, size: tuple[int, int], canvas: tuple[int, int]) -> torch.Tensor:
    """Original-pixel xyxy -> cxcywh relative to the padded canvas, the image resized to ``size``."""
    b = torch.as_tensor(ann.boxes, dtype=torch.float32).reshape(-1, 4).clone()
    b[:, [0, 2]] *= size[1] / ann.width / canvas[1]
    b[:, [1, 3]] *= size[0] / ann.height / canvas[0]
    b = b.clamp(0, 1)
    return torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0],
                        b[:, 3] - b[:, 1]], dim=1)


def decode_boxes(cxcywh: torch.Tensor, canvas_in_original: tuple[int, int], image: tuple[int, int]
                 ) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`, clipped to the (h, w) image."""
    (ch, cw), (h, w) = canvas_in_original, image
    cx, cy, bw, bh = cxcywh.float().unbind(-1)
    xyxy = torch.stack([(cx - bw / 2) * cw, (cy - bh / 2) * ch, (cx + bw / 2) * cw, (cy + bh / 2) * ch], -1)
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clamp(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clamp(0, h)
    return xyxy


@register
class HFDetectionModel(HFLiveModel):
    family = "hf-detection"
    tasks = ("detection",)
    backbone_prefixes: ClassVar[tuple[str, ...]] = ("model.backbone.",)

    def default_options(self) -> dict[str, Any]:
        return {**super().default_options(), "min_score": 0.05, "max_detections": 100, "freeze_text": True}

    @property
    def grounded(self) -> bool:
        return self.hf_config["model_type"] in GROUNDED_TYPES

    @classmethod
    def adapt_config(cls, config: Any, classes: Sequence[str]) -> None:
        if config.model_type not in GROUNDED_TYPES:  # grounded heads score text tokens: no label count
            super().adapt_config(config, classes)

    def build(self, pretrained: str | None) -> nn.Module:
        from transformers import AutoModelForObjectDetection, AutoModelForZeroShotObjectDetection

        model_type = self.hf_config["model_type"]
        if model_type not in DETR_TYPES + GROUNDED_TYPES:
            raise ValueError(f"hf-detection supports {DETR_TYPES + GROUNDED_TYPES}, not {model_type!r}")
        grounded = model_type in GROUNDED_TYPES
        auto = AutoModelForZeroShotObjectDetection if grounded else AutoModelForObjectDetection
        model = self.load_hf(auto, pretrained)
        if grounded:
            self._prepare_prompt(model)
            if self.options["freeze_text"]:  # the prompt never changes: tuning BERT buys nothing
                model.model.text_backbone.requires_grad_(False)
        return model

    def _prepare_prompt(self, model: nn.Module) -> None:
        if "input_ids" not in self.extra:
            if self.tokenizer is None:
                raise ValueError("Grounding DINO needs its tokenizer to turn the class names into a prompt")
            enc = self.tokenizer(prompt_text(self.classes))
            self.extra["input_ids"] = [int(t) for t in enc["input_ids"]]
        ids = torch.tensor(self.extra["input_ids"])
        if len(ids) > model.config.max_text_len:
            raise ValueError(f"the prompt of {len(self.classes)} class names is {len(ids)} tokens; "
                             f"this model reads at most {model.config.max_text_len}")
        # The same span rule as transformers' loss (build_label_maps): tokens between delimiters.
        delim = torch.isin(ids, torch.cat([model.model.special_tokens.cpu(), torch.tensor([0])]))
        groups = torch.cumsum(delim, 0) * (~delim)
        spans = [g for g in torch.unique(groups).tolist() if g]
        if len(spans) != self.num_classes:
            raise ValueError(f"the prompt {prompt_text(self.classes)!r} splits into {len(spans)} phrases, "
                             f"not {self.num_classes}: the tokenizer does not match this model")
        label_map = torch.stack([groups == g for g in spans])
        self.register_buffer("label_map", label_map, persistent=False)
        self.register_buffer("input_ids", ids[None], persistent=False)

    # --------------------------------------------------------------------------------- training
    def _inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        inputs = {"pixel_values": batch.pixel_values, "pixel_mask": batch.pixel_mask}
        if self.grounded:
            n = len(batch.sizes)
            ids = self.input_ids.to(self.device).expand(n, -1)
            inputs.update(input_ids=ids, attention_mask=torch.ones_like(ids),
                          token_type_ids=torch.zeros_like(ids))
        return inputs

    def loss(self, images: Sequence[np.ndarray], targets: Sequence[Annotation]) -> torch.Tensor:
        images, targets = self.augment(images, targets)
        batch = self.batch(images)
        labels = [{"class_labels": torch.as_tensor(ann.labels, dtype=torch.long).to(self.device),
                   "boxes": encode_boxes(ann, size, batch.canvas).to(self.device)}
                  for ann, size in zip(targets, batch.sizes, strict=True)]
        return self.hf(**self._inputs(batch), labels=labels).loss

    # ------------------------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict(self, images: Sequence[np.ndarray]) -> list[Annotation]:
        if not len(images):
            return []
        batch = self.batch(images)
        out = self.hf(**self._inputs(batch))
        probs = out.logits.float().sigmoid()  # (B, Q, C) or (B, Q, text tokens)
        if self.grounded:
            span = self.label_map.to(probs.device)[None, None]  # (1, 1, C, T)
            probs = (probs[:, :, None, : span.shape[-1]] * span).amax(-1)
        results = []
        for i, (h, w) in enumerate(batch.originals):
            p, boxes = probs[i], out.pred_boxes[i].float()
            k = min(self.options["max_detections"], p.numel())
            scores, flat = p.flatten().topk(k)
            q, labels = flat // p.shape[1], flat % p.shape[1]
            keep = scores >= self.options["min_score"]
            xyxy = decode_boxes(boxes[q[keep]], batch.canvas_in_original(i), (h, w))
            ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
            results.append(Annotation(w, h, boxes=xyxy[ok].cpu().numpy(),
                                      labels=labels[keep][ok].cpu().numpy(),
                                      scores=scores[keep][ok].cpu().numpy()))
        return results
