"""Image classification: CLIP (zero-shot, then fine-tuned) and heads on ViT-like backbones.

CLIP starts as a zero-shot classifier: the class names go through the text encoder once, as
"a photo of a {name}", and an image is scored against those fixed embeddings. Training then tunes the
image side and the logit scale only; the text embeddings are a buffer, so the text encoder never runs
again (and a reloaded model needs no tokenizer). Any other ``AutoModelForImageClassification`` model
(ViT and friends) gets a new linear head over the user's classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..engine.annotation import Annotation
from ._hf_base import HFLiveModel
from .base import register


class _ClassificationBase(HFLiveModel):
    tasks = ("classification",)

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, images: Sequence[np.ndarray], targets: Sequence[Annotation]) -> torch.Tensor:
        images, targets = self.augment(images, targets)
        if any(t.category is None for t in targets):
            raise ValueError("classification targets need a category")
        labels = torch.tensor([int(t.category) for t in targets], device=self.device)  # type: ignore[arg-type]
        logits = self.logits(self.batch(images).pixel_values)
        return nn.functional.cross_entropy(logits.float(), labels)

    @torch.no_grad()
    def predict(self, images: Sequence[np.ndarray]) -> list[Annotation]:
        if not len(images):
            return []
        batch = self.batch(images)
        probs = self.logits(batch.pixel_values).float().softmax(-1).cpu().numpy()
        return [Annotation(w, h, category=int(p.argmax()), category_scores=p)
                for (h, w), p in zip(batch.originals, probs, strict=True)]


@register
class HFClassificationModel(_ClassificationBase):
    """ViT (or any ``AutoModelForImageClassification`` architecture) with a linear head."""

    family = "hf-classification"

    @property
    def backbone_prefixes(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.core.base_model_prefix + ".",)

    def build(self, pretrained: str | None) -> nn.Module:
        from transformers import AutoModelForImageClassification

        return self.load_hf(AutoModelForImageClassification, pretrained)

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.hf(pixel_values=pixel_values).logits


@register
class HFClipModel(_ClassificationBase):
    family = "hf-clip"
    backbone_prefixes: ClassVar[tuple[str, ...]] = ("vision_model.",)

    def default_options(self) -> dict[str, Any]:
        return {**super().default_options(), "prompt": "a photo of a {}"}

    @classmethod
    def adapt_config(cls, config: Any, classes: Sequence[str]) -> None:
        """CLIP has no label head: the classes live in the text embeddings."""

    def build(self, pretrained: str | None) -> nn.Module:
        from transformers import CLIPModel

        model = self.load_hf(CLIPModel, pretrained)
        for name, p in model.named_parameters():
            p.requires_grad_(self._trainable(name))
        dim = model.config.projection_dim
        self.register_buffer("text_embeds", torch.zeros(self.num_classes, dim))
        if pretrained is not None:
            if self.tokenizer is None:
                raise ValueError("CLIP needs its tokenizer to embed the class names")
            prompts = [self.options["prompt"].format(c) for c in self.classes]
            enc = self.tokenizer(prompts, padding=True, return_tensors="pt")
            model.eval()
            with torch.no_grad():
                emb = model.get_text_features(**enc)
                emb = getattr(emb, "pooler_output", emb)
            self.text_embeds.copy_(nn.functional.normalize(emb.float(), dim=-1))
        return model

    def _trainable(self, name: str) -> bool:
        return "text_model" not in name and "text_projection" not in name

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        core = self.core
        emb = core.get_image_features(pixel_values=pixel_values)
        emb = nn.functional.normalize(getattr(emb, "pooler_output", emb).float(), dim=-1)
        scale = core.logit_scale.float().exp().clamp(max=100)
        return scale * emb @ self.text_embeds.to(emb.device).T
