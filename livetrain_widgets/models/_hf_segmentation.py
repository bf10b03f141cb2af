"""Segmentation with Mask2Former (instance or semantic) and SegFormer (semantic per pixel).

``mode`` picks what a prediction means: "instance" gives one mask per object, "semantic" one mask per
class present. Mask2Former learns either directly (semantic targets merge a class's instances).
SegFormer only labels pixels (class 0 is background, ``c + 1`` the user's class ``c``); its instances are
the connected components of each class.

Post-processing is written here rather than taken from the processors because they assume unpadded
inputs (Mask2Former's rescales masks through a fixed 384×384); here masks are upsampled over the padded
canvas measured in original pixels and cropped, which is exact for every batch layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ..engine.annotation import Annotation
from ._hf_base import Batch, HFLiveModel, resize_masks, to_original
from .base import register

MODEL_TYPES = ("mask2former", "segformer")


@register
class HFSegmentationModel(HFLiveModel):
    family = "hf-segmentation"
    tasks = ("segmentation",)
    backbone_prefixes: ClassVar[tuple[str, ...]] = ("model.pixel_level_module.encoder.", "segformer.")

    def default_options(self) -> dict[str, Any]:
        return {**super().default_options(), "mode": "instance", "min_score": 0.05,
                "max_detections": 100, "min_area": 4}

    @property
    def per_pixel(self) -> bool:
        return self.hf_config["model_type"] == "segformer"

    @classmethod
    def adapt_config(cls, config: Any, classes: Sequence[str]) -> None:
        if config.model_type == "segformer":  # per-pixel classes need an explicit background
            super().adapt_config(config, ["background", *classes])
        else:
            super().adapt_config(config, classes)

    def build(self, pretrained: str | None) -> nn.Module:
        from transformers import AutoModelForSemanticSegmentation, AutoModelForUniversalSegmentation

        if self.options["mode"] not in ("instance", "semantic"):
            raise ValueError(f"mode must be 'instance' or 'semantic', not {self.options['mode']!r}")
        model_type = self.hf_config["model_type"]
        if model_type not in MODEL_TYPES:
            raise ValueError(f"hf-segmentation supports {MODEL_TYPES}, not {model_type!r}")
        semantic_only = model_type == "segformer"
        auto = AutoModelForSemanticSegmentation if semantic_only else AutoModelForUniversalSegmentation
        return self.load_hf(auto, pretrained)

    # --------------------------------------------------------------------------------- training
    def loss(self, images: Sequence[np.ndarray], targets: Sequence[Annotation]) -> torch.Tensor:
        images, targets = self.augment(images, targets)
        batch = self.batch(images)
        if self.per_pixel:
            maps = []
            for ann, size in zip(targets, batch.sizes, strict=True):
                sem = ann.semantic_map().astype(np.int64)[None]
                m = resize_masks(sem, size, batch.canvas)
                # padding is ignored by the loss (255 is SegFormer's ignore index)
                m[:, size[0]:, :] = 255
                m[:, :, size[1]:] = 255
                maps.append(m[0].long())
            labels = torch.stack(maps).to(self.device)
            return self.hf(pixel_values=batch.pixel_values, labels=labels).loss
        masks, classes = [], []
        for ann, size in zip(targets, batch.sizes, strict=True):
            if self.options["mode"] == "semantic":
                ann = ann.to_semantic()
            m = ann.masks if ann.masks is not None else np.zeros((0, ann.height, ann.width), bool)
            masks.append(resize_masks(m, size, batch.canvas).to(self.device))
            classes.append(torch.as_tensor(ann.labels, dtype=torch.long).to(self.device))
        return self.hf(pixel_values=batch.pixel_values, pixel_mask=batch.pixel_mask,
                       mask_labels=masks, class_labels=classes).loss

    # ------------------------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict(self, images: Sequence[np.ndarray]) -> list[Annotation]:
        if not len(images):
            return []
        batch = self.batch(images)
        if self.per_pixel:
            logits = self.hf(pixel_values=batch.pixel_values).logits.float()
            return [self._from_class_probs(to_original(logits[i], batch, i).softmax(0), batch, i)
                    for i in range(len(images))]
        out = self.hf(pixel_values=batch.pixel_values, pixel_mask=batch.pixel_mask)
        cls_probs = out.class_queries_logits.float().softmax(-1)[..., :-1]  # drop "no object"
        mask_probs = out.masks_queries_logits.float().sigmoid()
        results = []
        for i in range(len(images)):
            if self.options["mode"] == "semantic":
                # p(class at pixel) = sum over queries of p(class | query) · p(pixel in query's mask)
                sem = torch.einsum("qc,qhw->chw", cls_probs[i], mask_probs[i])
                # queries overlap, so the sum may pass 1: renormalise, background taking what is left
                probs = torch.cat([(1 - sem.sum(0, keepdim=True)).clamp(min=0), sem])
                probs = probs / probs.sum(0, keepdim=True).clamp(min=1e-6)
                probs = to_original(probs, batch, i)
                results.append(self._from_class_probs(probs, batch, i))
            else:
                results.append(self._instances(cls_probs[i], mask_probs[i], batch, i))
        return results

    def _instances(self, cls_probs: torch.Tensor, mask_probs: torch.Tensor, batch: Batch, i: int
                   ) -> Annotation:
        h, w = batch.originals[i]
        k = min(self.options["max_detections"], cls_probs.numel())
        scores, flat = cls_probs.flatten().topk(k)
        q, labels = flat // cls_probs.shape[1], flat % cls_probs.shape[1]
        keep = scores >= self.options["min_score"]
        q, labels, scores = q[keep], labels[keep], scores[keep]
        probs = to_original(mask_probs[q], batch, i) if len(q) else mask_probs.new_zeros(0, h, w)
        masks = probs > 0.5
        area = masks.flatten(1).sum(1)
        # Mask2Former's own ranking: class score × mean mask probability inside the mask
        quality = (probs * masks).flatten(1).sum(1) / area.clamp(min=1)
        ok = area >= self.options["min_area"]
        return Annotation.from_masks(masks[ok].cpu().numpy(), labels[ok].cpu().numpy(),
                                     (scores * quality)[ok].cpu().numpy(), width=w, height=h)

    def _from_class_probs(self, probs: torch.Tensor, batch: Batch, i: int) -> Annotation:
        """(C + 1, H, W) per-pixel probabilities, background first -> one mask per class or component."""
        h, w = batch.originals[i]
        conf, cls = probs.max(0)
        cls, conf = cls.cpu().numpy(), conf.cpu().numpy()
        masks, labels, scores = [], [], []
        for c in np.unique(cls):
            if c == 0:
                continue
            region = cls == c
            parts = [region] if self.options["mode"] == "semantic" else self._components(region)
            for m in parts:
                if m.sum() >= self.options["min_area"]:
                    score = float(conf[m].mean())
                    if score >= self.options["min_score"]:
                        masks.append(m)
                        labels.append(int(c) - 1)
                        scores.append(score)
        return Annotation.from_masks(np.asarray(masks, bool).reshape(-1, h, w), labels, scores,
                                     width=w, height=h)

    @staticmethod
    def _components(region: np.ndarray) -> list[np.ndarray]:
        lab, n = ndimage.label(region)
        return [lab == j for j in range(1, n + 1)]
