"""Anchor-free detection head: a class heatmap of object centres plus box-side distances, one level.

Design (CenterNet heatmap, TTFNet-style box regression): each cell of the stride-8 map predicts, per
class, how likely it holds an object's centre, and the distances from its centre to the four box
sides. Regression is trained not only at the centre cell but on a Gaussian patch around it (TTFNet),
which gives large objects many samples and makes training converge in the few hundred steps a live
session has. One level suffices for 25 px platelets and 150 px WBCs: the FPN feeds stride-16/32
context into the stride-8 map, and box sizes are regressed, not anchored.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Gaussian radius factor of TTFNet (sigma = ALPHA * side / 6)
ALPHA = 0.54


def conv_gn_relu(channels: int) -> list[nn.Module]:
    """3x3 conv + GroupNorm + ReLU: GroupNorm (not the frozen BatchNorm) keeps the fresh heads stable
    at the high learning rates that a short live session needs, whatever the batch size."""
    return [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(8, channels), nn.ReLU(inplace=True)]


class DetectionHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, stride: int = 8) -> None:
        super().__init__()
        self.stride = stride

        def branch(cout: int) -> nn.Sequential:
            return nn.Sequential(
                *conv_gn_relu(channels), *conv_gn_relu(channels), nn.Conv2d(channels, cout, 1),
            )

        self.heatmap = branch(num_classes)
        self.box = branch(4)
        # start with p = 0.01 everywhere so the focal loss is not swamped by easy negatives
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - 0.01) / 0.01))
        nn.init.normal_(self.box[-1].weight, std=0.01)
        nn.init.constant_(self.box[-1].bias, 0.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits (B, C, h, w) and box-side distances in input pixels (B, 4, h, w)."""
        # distances as stride * exp(): positive, and scale-invariant to learn (log space)
        dist = self.stride * torch.exp(self.box(x).clamp(max=6.0))
        return self.heatmap(x), dist


def build_targets(
    boxes_per_image: list[np.ndarray], labels_per_image: list[np.ndarray], num_classes: int,
    shape: tuple[int, int], stride: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Heatmap (B, C, h, w), box targets (B, 4, h, w) as x0,y0,x1,y1 and regression weights (B, h, w).

    Each object's regression weights sum to 1, so a platelet counts as much as a WBC. Where objects
    overlap, the smaller one owns the cell (drawn last).
    """
    h, w = shape
    B = len(boxes_per_image)
    heat = np.zeros((B, num_classes, h, w), np.float32)
    tgt = np.zeros((B, 4, h, w), np.float32)
    wgt = np.zeros((B, h, w), np.float32)
    cx_cells = (np.arange(w, dtype=np.float32) + 0.5) * stride
    cy_cells = (np.arange(h, dtype=np.float32) + 0.5) * stride
    for b, (boxes, labels) in enumerate(zip(boxes_per_image, labels_per_image, strict=True)):
        if not len(boxes):
            continue
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for i in np.argsort(-areas, kind="stable"):
            x0, y0, x1, y1 = boxes[i]
            bw, bh = x1 - x0, y1 - y0
            if bw <= 0 or bh <= 0:
                continue
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            ci = min(max(int(cx // stride), 0), w - 1)
            cj = min(max(int(cy // stride), 0), h - 1)
            sx = max(ALPHA * bw / 6 / stride, 0.25)
            sy = max(ALPHA * bh / 6 / stride, 0.25)
            # window of +-3 sigma, clipped to the map
            rx, ry = math.ceil(3 * sx), math.ceil(3 * sy)
            i0, i1 = max(ci - rx, 0), min(ci + rx + 1, w)
            j0, j1 = max(cj - ry, 0), min(cj + ry + 1, h)
            gx = np.exp(-((np.arange(i0, i1) - ci) ** 2) / (2 * sx * sx))
            gy = np.exp(-((np.arange(j0, j1) - cj) ** 2) / (2 * sy * sy))
            g = (gy[:, None] * gx[None, :]).astype(np.float32)
            c = int(labels[i])
            np.maximum(heat[b, c, j0:j1, i0:i1], g, out=heat[b, c, j0:j1, i0:i1])
            # regression only on cells whose centre lies inside the box
            inside = (
                (cx_cells[i0:i1][None, :] > x0) & (cx_cells[i0:i1][None, :] < x1)
                & (cy_cells[j0:j1][:, None] > y0) & (cy_cells[j0:j1][:, None] < y1)
            )
            inside[cj - j0, ci - i0] = True  # the centre cell always regresses (tiny boxes)
            gw = np.where(inside, g, 0.0)
            gw /= gw.sum()
            wgt[b, j0:j1, i0:i1] = np.where(inside, gw, wgt[b, j0:j1, i0:i1])
            tgt[b, :, j0:j1, i0:i1] = np.where(inside[None], boxes[i][:, None, None], tgt[b, :, j0:j1, i0:i1])
    return torch.from_numpy(heat), torch.from_numpy(tgt), torch.from_numpy(wgt)


def focal_loss(logits: torch.Tensor, heat: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed and divided by the number of objects (>= 1).

    ``class_weights`` (C,) scale each class's heatmap channel, positives and negatives alike: a rare class
    learns to fire on its objects *and* to stay quiet elsewhere at the same, raised rate."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    neg_w = (1 - heat).pow(4)
    pos_loss = -torch.log(p) * (1 - p).pow(2) * pos
    neg_loss = -torch.log(1 - p) * p.pow(2) * neg_w * (1 - pos)
    n = pos.sum().clamp(min=1.0)
    if class_weights is not None:
        w = class_weights.to(logits.dtype).view(1, -1, 1, 1)
        return ((pos_loss + neg_loss) * w).sum() / n
    return (pos_loss.sum() + neg_loss.sum()) / n


def cell_centres(h: int, w: int, stride: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
    return ys.view(h, 1).expand(h, w), xs.view(1, w).expand(h, w)


def distances_to_boxes(dist: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, 4, h, w) left/top/right/bottom distances -> (B, 4, h, w) boxes x0, y0, x1, y1."""
    cy, cx = cell_centres(dist.shape[2], dist.shape[3], stride, dist.device)
    return torch.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1)


def giou_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted (1 - GIoU) over cells with weight > 0; boxes as (..., 4)."""
    px0, py0, px1, py1 = pred.unbind(-1)
    tx0, ty0, tx1, ty1 = target.unbind(-1)
    area_p = (px1 - px0).clamp(min=0) * (py1 - py0).clamp(min=0)
    area_t = (tx1 - tx0) * (ty1 - ty0)
    iw = (torch.minimum(px1, tx1) - torch.maximum(px0, tx0)).clamp(min=0)
    ih = (torch.minimum(py1, ty1) - torch.maximum(py0, ty0)).clamp(min=0)
    inter = iw * ih
    union = area_p + area_t - inter
    iou = inter / union.clamp(min=1e-6)
    hull_w = torch.maximum(px1, tx1) - torch.minimum(px0, tx0)
    hull = hull_w * (torch.maximum(py1, ty1) - torch.minimum(py0, ty0))
    giou = iou - (hull - union) / hull.clamp(min=1e-6)
    return ((1 - giou) * weight).sum()


def detection_loss(
    heat_logits: torch.Tensor, dist: torch.Tensor, heat: torch.Tensor, tgt: torch.Tensor, wgt: torch.Tensor,
    stride: int, box_weight: float = 2.0, class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss on the heatmap + GIoU on boxes (averaged over objects). Works with no objects."""
    hm = focal_loss(heat_logits, heat, class_weights)
    mask = wgt > 0
    if not bool(mask.any()):
        return hm + dist.sum() * 0.0  # keep the box branch in the graph
    boxes = distances_to_boxes(dist, stride).permute(0, 2, 3, 1)[mask]
    n_obj = wgt.sum().clamp(min=1.0)
    return hm + box_weight * giou_loss(boxes, tgt.permute(0, 2, 3, 1)[mask], wgt[mask]) / n_obj


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices kept by greedy per-class NMS (classes kept apart by offsetting boxes), best first."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    offset = labels.to(boxes.dtype)[:, None] * (boxes.max() + 1)
    b = boxes + offset
    order = scores.argsort(descending=True)
    b = b[order]
    area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    ious = inter / (area[:, None] + area[None, :] - inter).clamp(min=1e-6)
    suppressed = torch.zeros(len(b), dtype=torch.bool)
    ious_np = (ious > iou).cpu().numpy()
    keep = []
    sup = suppressed.numpy()
    for i in range(len(b)):
        if sup[i]:
            continue
        keep.append(i)
        sup |= ious_np[i]
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]


def decode(
    heat_logits: torch.Tensor, dist: torch.Tensor, stride: int, *, top_k: int = 100, min_score: float = 0.05,
    nms_iou: float = 0.6,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per image: boxes (N, 4) in input pixels, scores (N,), labels (N,).

    Peaks are local maxima of the heatmap (3x3 max-pool), then box NMS removes the duplicate peaks that
    large objects sometimes produce.
    """
    prob = torch.sigmoid(heat_logits)
    peaks = prob * (F.max_pool2d(prob, 3, stride=1, padding=1) == prob)
    boxes_all = distances_to_boxes(dist, stride)
    B, _, h, w = prob.shape
    out = []
    for b in range(B):
        flat = peaks[b].reshape(-1)
        k = min(top_k, flat.numel())
        scores, idx = flat.topk(k)
        keep = scores >= min_score
        scores, idx = scores[keep], idx[keep]
        labels = idx // (h * w)
        cell = idx % (h * w)
        boxes = boxes_all[b].reshape(4, -1)[:, cell].T
        k = batched_nms(boxes, scores, labels, nms_iou)
        out.append((boxes[k], scores[k], labels[k]))
    return out
