"""Segmentation head: per-pixel classes plus a "distance to the object's border" map that separates
touching instances.

The head runs on the stride-4 FPN level and is upsampled to input resolution. Besides class logits
(background + classes) it predicts, per pixel, the distance to the border of the object it lies in,
normalised to 1 at the object's centre. Touching objects meet where that distance is 0, so seeds
(distance > ``seed_threshold``) are separate; each foreground pixel then goes to the nearest seed of
its blob (a Voronoi split with ``scipy.ndimage.distance_transform_edt``). This is the StarDist/DCAN
idea in its simplest form and needs only scipy. (``scipy.ndimage.watershed_ift`` was tried first, but
its flooding handed the outer rings of objects to their neighbours.)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from torch import nn

from ._detection import conv_gn_relu


class SegmentationHead(nn.Module):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_gn_relu(channels), *conv_gn_relu(channels))
        self.classes = nn.Conv2d(channels, num_classes + 1, 1)
        self.distance = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (B, C + 1, H, W) and distance logits (B, H, W) at input resolution ``size``."""
        y = self.body(x)
        out = torch.cat([self.classes(y), self.distance(y)], 1)
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out[:, :-1], out[:, -1]


def build_targets(
    instances: list[np.ndarray], labels: list[np.ndarray], shape: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class map (B, H, W) int64 (0 = background, c + 1 = class c) and normalised border distance
    (B, H, W) float, from instance label images padded into ``shape``."""
    B = len(instances)
    cls = np.zeros((B, *shape), np.int64)
    dist = np.zeros((B, *shape), np.float32)
    for b, (inst, lab) in enumerate(zip(instances, labels, strict=True)):
        h, w = inst.shape
        lut = np.concatenate([[0], np.asarray(lab, np.int64) + 1])
        cls[b, :h, :w] = lut[inst]
        d = dist[b, :h, :w]
        for i, sl in enumerate(ndi.find_objects(inst), start=1):
            if sl is None:
                continue
            # pad the crop by one pixel so an object touching the crop edge still gets 0 at its border
            y0, y1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, h)
            x0, x1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, w)
            m = np.pad(inst[y0:y1, x0:x1] == i, 1)
            e = ndi.distance_transform_edt(m)[1:-1, 1:-1]
            inside = m[1:-1, 1:-1]
            d[y0:y1, x0:x1][inside] = (e / e.max())[inside]
    return torch.from_numpy(cls), torch.from_numpy(dist)


def segmentation_loss(
    cls_logits: torch.Tensor, dist_logits: torch.Tensor, cls: torch.Tensor, dist: torch.Tensor,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy + soft dice on the foreground (robust when objects cover few pixels) + BCE on the
    distance map. All terms are defined for images without objects. ``class_weights`` (C,) weigh the
    cross-entropy's classes (the background keeps weight 1)."""
    weight = None
    if class_weights is not None:
        weight = torch.cat([class_weights.new_ones(1), class_weights]).to(cls_logits.dtype)
    ce = F.cross_entropy(cls_logits, cls, weight=weight)
    prob = cls_logits.softmax(1)
    onehot = F.one_hot(cls, prob.shape[1]).permute(0, 3, 1, 2).float()
    inter = (prob[:, 1:] * onehot[:, 1:]).sum((0, 2, 3))
    denom = (prob[:, 1:] + onehot[:, 1:]).sum((0, 2, 3))
    dice = 1 - ((2 * inter + 1) / (denom + 1)).mean()
    bce = F.binary_cross_entropy_with_logits(dist_logits, dist)
    return ce + dice + 2.0 * bce


def decode_instances(
    prob: np.ndarray, dist: np.ndarray, *, seed_threshold: float = 0.5, min_area: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C + 1, H, W) class probabilities and (H, W) distance map -> instance label image (H, W) int32
    (1..N), labels (N,) and scores (N,) (mean foreground probability)."""
    fg = prob.argmax(0) > 0
    if not fg.any():
        return np.zeros(fg.shape, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float32)
    seeds, _ = ndi.label(fg & (dist > seed_threshold))
    comps, _ = ndi.label(fg)
    labels_img = np.zeros(fg.shape, np.int32)
    n = 0
    for c, sl in enumerate(ndi.find_objects(comps), start=1):
        if sl is None:
            continue
        comp = comps[sl] == c
        ids = np.unique(seeds[sl][comp & (seeds[sl] > 0)])
        if len(ids) <= 1:  # one object, or a blob too thin to hold a seed: the blob is the object
            labels_img[sl][comp] = n + 1
            n += 1
            continue
        # several seeds in one blob: each pixel goes to its nearest seed (a Voronoi split of the blob,
        # which for touching round objects cuts along the neck between their cores)
        local = np.searchsorted(ids, seeds[sl]) + 1
        local[~np.isin(seeds[sl], ids)] = 0
        _, (iy, ix) = ndi.distance_transform_edt(local == 0, return_indices=True)
        nearest = local[iy, ix]
        labels_img[sl][comp] = n + nearest[comp]
        n += len(ids)
    idx = np.arange(1, n + 1)
    area = ndi.sum_labels(np.ones_like(fg, np.float32), labels_img, idx)
    fg_prob = 1 - prob[0]
    score = ndi.mean(fg_prob, labels_img, idx)
    class_votes = np.stack([ndi.sum_labels(p, labels_img, idx) for p in prob[1:]], 1)
    keep = area >= min_area
    remap = np.zeros(n + 1, np.int32)
    remap[1:][keep] = np.arange(1, int(keep.sum()) + 1)
    out = remap[labels_img]
    return (
        out, class_votes[keep].argmax(1).astype(np.int64) if keep.any() else np.zeros(0, np.int64),
        np.asarray(score, np.float32)[keep],
    )


def decode_semantic(prob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C + 1, H, W) probabilities -> class map (H, W) (0 = background), present classes, and each
    class's mean probability over its pixels."""
    cmap = prob.argmax(0)
    present = np.array([c for c in np.unique(cmap) if c != 0], np.int64)
    scores = np.array([prob[c][cmap == c].mean() for c in present], np.float32)
    return cmap, present - 1, scores
