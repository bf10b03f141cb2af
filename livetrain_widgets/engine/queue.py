"""The order in which unlabeled images come up for labeling (``SessionConfig.order``).

- ``"file"`` (default): the order the images were added, i.e. file order;
- ``"random"``: one seeded shuffle, the same every time the project opens (``SessionConfig.order_seed``);
- ``"uncertain"``: among the next few unlabeled images in file order (the *pool*: the images whose
  pre-labels are computed ahead, ``AheadConfig.images``), the one the model is least sure about comes
  first. Labeling what the model cannot yet do is expected to teach it most per label; whether that saves
  the person time over the whole set is measured by the study (``livetrain simulate`` with
  ``live:order=uncertain`` against ``live:order=file`` and ``live:order=random``), see BENCHMARKS.md.

The uncertainty of a pre-label (:func:`uncertainty`) uses only the model's own scores, so it needs no
label: each object the model proposes adds the binary entropy of its score (an object at 0.5 adds 1
bit, one at 0.95 or 0.05 about 0.29), and an image class adds the entropy of its class scores. Objects
below ``floor`` are ignored: a detector lists many near-zero candidates that nobody would see.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .annotation import Annotation

QUEUE_ORDERS = ("file", "random", "uncertain")


def check_order(order: str) -> str:
    """``order`` if it is one of :data:`QUEUE_ORDERS`, else a ValueError that lists them."""
    if order not in QUEUE_ORDERS:
        raise ValueError(f"unknown queue order {order!r}; expected one of {', '.join(QUEUE_ORDERS)}")
    return order


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def uncertainty(pred: Annotation, *, floor: float = 0.05) -> float:
    """How unsure the model is about an image, in bits (see the module docstring); 0.0 for nothing."""
    if pred.category_scores is not None and len(pred.category_scores):
        s = np.clip(np.asarray(pred.category_scores, np.float64), 0, None)
        if s.sum() <= 0:
            return 0.0
        p = s / s.sum()
        p = p[p > 0]
        return float(-(p * np.log2(p)).sum())
    if pred.scores is None or not len(pred):
        return 0.0
    s = np.asarray(pred.scores, np.float64)
    return float(_entropy_bits(s[s >= floor]).sum())


def seeded_order(ids: Sequence[int], seed: int) -> list[int]:
    """``ids`` in one shuffled order that depends only on the ids and the seed."""
    ordered = sorted(int(i) for i in ids)
    rng = np.random.default_rng(seed)
    return [ordered[k] for k in rng.permutation(len(ordered))]


def most_uncertain(pool: Sequence[int], prediction: Callable[[int], Annotation | None]) -> int | None:
    """The image of ``pool`` whose pre-label (``prediction(id)``, None: none yet) is the most uncertain;
    ties, and a pool with no pre-label at all, keep the pool's own order (the first image wins)."""
    best, best_u = None, -1.0
    for i in pool:
        pred = prediction(i)
        u = -0.5 if pred is None else uncertainty(pred)
        if u > best_u:
            best, best_u = i, u
    return best


__all__ = ["QUEUE_ORDERS", "check_order", "most_uncertain", "seeded_order", "uncertainty"]
