"""Checks of the arguments a user hands to a session, made before anything is committed.

Python's ``int()`` and SQLite's type affinity accept what is not an id: ``submit("2", ...)`` and
``submit(2.7, ...)`` stored a label for image 2, and only the sampler raised, after the commit, so the
caller believed the label was lost. A NaN threshold compares false with every score, so it hid every
pre-label and, stored in a setting, spoilt every later comparison. Both are refused at the door.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np


def check_image_id(image_id: Any) -> int:
    """``image_id`` as an ``int``: a Python or NumPy integer (not a bool); anything else is a TypeError."""
    if isinstance(image_id, (bool, np.bool_)) or not isinstance(image_id, numbers.Integral):
        raise TypeError(
            f"an image id must be an integer (from add_images() or image_ids), got {image_id!r} "
            f"({type(image_id).__name__})"
        )
    return int(image_id)


def check_threshold(value: Any, num_classes: int | None = None) -> float | list[float]:
    """A confidence threshold: one number in [0, 1], or one per class (``num_classes`` of them, when given).

    NaN, infinity, numbers outside [0, 1] and a wrong count are ValueErrors; a bool, a string or anything
    else not a number is a TypeError. The message says which threshold was wrong."""
    if isinstance(value, np.ndarray):
        value = value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return check_threshold_value(value)
    values = [check_threshold_value(v, f"threshold of class {k}") for k, v in enumerate(value)]
    if num_classes is not None and len(values) != num_classes:
        raise ValueError(f"one threshold per class ({num_classes}) is needed, got {len(values)}")
    return values


def check_threshold_value(value: Any, what: str = "threshold") -> float:
    """One threshold (see :func:`check_threshold`) as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"a {what} must be a number in [0, 1], got {value!r} ({type(value).__name__})")
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ValueError(f"a {what} must be a number in [0, 1], got {value!r}")
    return v


__all__ = ["check_image_id", "check_threshold", "check_threshold_value"]
