"""Resizing, augmentation and batching for the embedded model, in numpy/torch (no torchvision here).

Every image is scaled so that its longer side is the model's ``input_size`` and padded (bottom/right)
to a multiple of 32, the backbone's total stride. Padding only at the bottom/right keeps the mapping
back to original pixels a pure scale: ``x_orig = x_input / sx``. Coordinates are pixel edges
(a box ``0, 0, 1, 1`` covers the first pixel), the same convention as ``align_corners=False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

STRIDE = 32
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1) * 255
_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1) * 255


@dataclass
class Sample:
    """One image after resizing/augmentation, with its targets in input pixels.

    ``sx``/``sy`` map original pixels to input pixels (used to map predictions back). ``instances``
    is an instance label image (0 = background, i + 1 = object i) at input resolution, ``labels``
    the class of each box/instance.
    """

    image: torch.Tensor  # (3, h, w) float, normalised, not yet padded
    sx: float
    sy: float
    boxes: np.ndarray  # (N, 4) float32, input pixels
    labels: np.ndarray  # (N,) int64
    instances: np.ndarray | None = None  # (h, w) int32
    category: int | None = None


def target_size(height: int, width: int, input_size: int, jitter: float = 1.0) -> tuple[int, int]:
    """(h, w) after scaling the longer side to ``input_size * jitter``; never below one pixel."""
    s = input_size * jitter / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, h, w) float in 0..255, antialiased when shrinking (huge inputs)."""
    # astype copies: load_image may hand out read-only arrays, which torch warns about
    t = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
    if tuple(t.shape[-2:]) != tuple(size):
        shrink = size[0] < t.shape[-2] or size[1] < t.shape[-1]
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return t[0]


def normalise(image: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std, which the EfficientNet-Lite0 weights were trained with."""
    return (image - _MEAN) / _STD


def resize_nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D label image by index arrays (pixel-centre sampling)."""
    h, w = label.shape
    ys = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return label[ys[:, None], xs[None, :]]


def instance_image(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool masks -> (H, W) int32 label image; smaller objects are drawn last so they win."""
    out = np.zeros(masks.shape[1:], np.int32)
    areas = masks.reshape(len(masks), -1).sum(1)
    for i in np.argsort(-areas, kind="stable"):
        out[masks[i]] = i + 1
    return out


def prepare(
    image: np.ndarray,
    input_size: int,
    *,
    boxes: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    category: int | None = None,
    rng: np.random.Generator | None = None,
    jitter: tuple[float, float] = (0.75, 1.3),
    min_visible: float = 0.3,
) -> Sample:
    """Resize one image (and its targets); with ``rng``, also augment: scale jitter, random crop back
    to at most ``input_size`` (so jitter never makes a step slower), horizontal and vertical flips.

    Boxes cut by the crop are clipped and dropped when less than ``min_visible`` of them remains.
    """
    H, W = image.shape[:2]
    scale = float(rng.uniform(*jitter)) if rng is not None else 1.0
    h, w = target_size(H, W, input_size, scale)
    img = resize_image(image, (h, w))
    sx, sy = w / W, h / H
    boxes = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.zeros((0,), np.int64) if labels is None else np.asarray(labels, np.int64).reshape(-1)
    b = boxes * np.array([sx, sy, sx, sy], np.float32)
    inst = None
    if masks is not None and len(masks):
        inst = resize_nearest(instance_image(np.asarray(masks, bool)), (h, w))
    elif masks is not None:
        inst = np.zeros((h, w), np.int32)
    if rng is not None:
        # crop back to input_size so that up-scaling jitter shows more detail at the same cost
        ch, cw = min(h, input_size), min(w, input_size)
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        if (ch, cw) != (h, w):
            img = img[:, y0 : y0 + ch, x0 : x0 + cw]
            if inst is not None:
                inst = inst[y0 : y0 + ch, x0 : x0 + cw]
            area = np.maximum(b[:, 2] - b[:, 0], 1e-6) * np.maximum(b[:, 3] - b[:, 1], 1e-6)
            b = b - np.array([x0, y0, x0, y0], np.float32)
            b[:, [0, 2]] = b[:, [0, 2]].clip(0, cw)
            b[:, [1, 3]] = b[:, [1, 3]].clip(0, ch)
            vis = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / area
            keep = vis >= min_visible
            b, labels = b[keep], labels[keep]
            if inst is not None:
                # renumber so that instance i + 1 still belongs to labels[i] after dropping boxes
                remap = np.zeros(len(keep) + 1, np.int32)
                remap[1:][keep] = np.arange(1, int(keep.sum()) + 1)
                inst = remap[inst]
            h, w = ch, cw
        if rng.random() < 0.5:
            img = img.flip(-1)
            b = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1) if len(b) else b
            if inst is not None:
                inst = inst[:, ::-1]
        if rng.random() < 0.5:
            img = img.flip(-2)
            b = np.stack([b[:, 0], h - b[:, 3], b[:, 2], h - b[:, 1]], 1) if len(b) else b
            if inst is not None:
                inst = inst[::-1]
    return Sample(
        normalise(img).contiguous(), sx, sy, b.astype(np.float32).reshape(-1, 4), labels,
        None if inst is None else np.ascontiguousarray(inst), category,
    )


def pad_batch(images: list[torch.Tensor]) -> torch.Tensor:
    """Stack (3, h, w) tensors into (B, 3, H, W), padding bottom/right with zeros (the mean colour)
    to the largest size rounded up to a multiple of 32."""
    H = max(STRIDE, math.ceil(max(t.shape[1] for t in images) / STRIDE) * STRIDE)
    W = max(STRIDE, math.ceil(max(t.shape[2] for t in images) / STRIDE) * STRIDE)
    out = images[0].new_zeros((len(images), 3, H, W))
    for i, t in enumerate(images):
        out[i, :, : t.shape[1], : t.shape[2]] = t
    return out
