"""One image's labels, the single currency of the engine.

Everything that produces or consumes labels (the store, the models, the evaluator, the importers and
exporters, later the widgets) speaks :class:`Annotation`. Coordinates are always in the original
image's pixels, so nothing downstream has to know at which size a model looked at the image.

- detection: ``boxes`` (N, 4) as ``x0, y0, x1, y1`` and ``labels`` (N,) class indices;
- segmentation: additionally ``masks`` (N, H, W) bool, one per instance. A *semantic* annotation is the
  same thing with at most one mask per class, so both modes share one representation;
- classification: ``category`` (the image's class index).

Predictions also carry ``scores`` (per box/mask) or ``category_scores`` (per class probabilities).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

Task = Literal["detection", "segmentation", "classification"]
TASKS: tuple[str, ...] = ("detection", "segmentation", "classification")


class AnnotationError(ValueError):
    """An annotation that cannot be accepted, with a message meant for the person who made it."""


def _numbers(value: Any, what: str, dtype: Any) -> np.ndarray:
    """``np.asarray(value, dtype)``, with numpy's TypeError/ValueError (strings, dicts, ragged lists)
    turned into an AnnotationError that says which field was wrong."""
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{what} must be numbers ({exc})") from exc


def _as_boxes(boxes: Any) -> np.ndarray:
    arr = _numbers(boxes if boxes is not None else [], "boxes", np.float32)
    if arr.size == 0:
        return np.zeros((0, 4), np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise AnnotationError(f"boxes must have shape (N, 4) as x0, y0, x1, y1; got {arr.shape}")
    return arr


def _as_labels(labels: Any, n: int) -> np.ndarray:
    arr = _numbers(labels if labels is not None else [], "labels (class indices)", np.float64).reshape(-1)
    if arr.size != n:
        raise AnnotationError(f"got {n} boxes/masks but {arr.size} labels")
    if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        raise AnnotationError("labels must be whole class indices")
    return arr.astype(np.int64)


def _as_masks(masks: np.ndarray) -> np.ndarray:
    """Masks as bool. Integers follow numpy's rule (non-zero is inside, e.g. 0/255 mask images); float
    masks must hold only 0 and 1, since soft masks (probabilities) or NaN would be thresholded by a
    guess; other dtypes (strings, objects) are refused. Before, every one of those became True."""
    if masks.dtype == bool:
        return masks
    if np.issubdtype(masks.dtype, np.integer):
        return masks.astype(bool)
    if np.issubdtype(masks.dtype, np.floating):
        if not np.all((masks == 0) | (masks == 1)):
            raise AnnotationError(
                "float masks must hold only 0 and 1 (threshold soft masks first, e.g. masks > 0.5); "
                f"got values such as {float(masks[(masks != 0) & (masks != 1)].flat[0])}"
            )
        return masks.astype(bool)
    raise AnnotationError(f"masks must be boolean (True inside the object), got dtype {masks.dtype}")


@dataclass(eq=False)
class Annotation:
    """Labels of one image in original pixel coordinates (see the module docstring)."""

    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    scores: np.ndarray | None = None
    masks: np.ndarray | None = None
    category: int | None = None
    category_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        try:
            self.width, self.height = int(self.width), int(self.height)
        except (TypeError, ValueError, OverflowError) as exc:
            raise AnnotationError(f"image size must be whole numbers, got {self.width!r}x{self.height!r}") from exc
        if self.width <= 0 or self.height <= 0:
            raise AnnotationError(f"image size must be positive, got {self.width}x{self.height}")
        self.boxes = _as_boxes(self.boxes)
        self.labels = _as_labels(self.labels, len(self.boxes))
        if self.scores is not None:
            self.scores = np.asarray(self.scores, np.float32).reshape(-1)
            if len(self.scores) != len(self.boxes):
                raise AnnotationError(f"got {len(self.boxes)} boxes but {len(self.scores)} scores")
        if self.masks is not None:
            masks = np.asarray(self.masks)
            if masks.ndim == 2:
                masks = masks[None]
            if masks.size == 0:
                masks = np.zeros((0, self.height, self.width), bool)
            if masks.ndim != 3 or masks.shape[1:] != (self.height, self.width):
                raise AnnotationError(
                    f"masks must have shape (N, {self.height}, {self.width}) to match the image; "
                    f"got {masks.shape}"
                )
            if len(masks) != len(self.boxes):
                raise AnnotationError(f"got {len(masks)} masks but {len(self.boxes)} boxes")
            self.masks = _as_masks(masks)
        if self.category is not None:
            try:
                c = float(self.category)
            except (TypeError, ValueError) as exc:
                raise AnnotationError(f"category must be a class index, got {self.category!r}") from exc
            if not math.isfinite(c) or c != round(c):
                raise AnnotationError(f"category must be a class index, got {self.category!r}")
            self.category = int(c)
        if self.category_scores is not None:
            self.category_scores = np.asarray(self.category_scores, np.float32).reshape(-1)

    # ----------------------------------------------------------------------------------- builders
    @classmethod
    def empty(cls, width: int, height: int) -> Annotation:
        return cls(width, height)

    @classmethod
    def from_masks(
        cls,
        masks: np.ndarray | Sequence[np.ndarray],
        labels: Sequence[int] | np.ndarray,
        scores: Sequence[float] | np.ndarray | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> Annotation:
        """Instance masks (N, H, W) with one class each; boxes are derived from the masks."""
        m = np.asarray(masks, bool) if len(masks) else None
        if m is None:
            if width is None or height is None:
                raise AnnotationError("an empty mask list needs width and height")
            return cls(width, height, masks=np.zeros((0, height, width), bool), scores=scores)
        if m.ndim == 2:
            m = m[None]
        return cls(m.shape[2], m.shape[1], boxes=masks_to_boxes(m), labels=labels, masks=m, scores=scores)

    @classmethod
    def from_label_image(
        cls, label_image: np.ndarray, classes_of: dict[int, int] | int = 0
    ) -> Annotation:
        """An instance label image (0 = background, 1..N = one object each) as instance masks.

        ``classes_of`` maps instance id to class index, or is one class index for every instance.
        """
        img = np.asarray(label_image)
        if img.ndim != 2:
            raise AnnotationError(f"an instance label image must be 2-D, got shape {img.shape}")
        ids = [int(i) for i in np.unique(img) if i != 0]
        masks = np.stack([img == i for i in ids]) if ids else np.zeros((0, *img.shape), bool)
        by_id = classes_of if isinstance(classes_of, dict) else {}
        default = 0 if isinstance(classes_of, dict) else int(classes_of)
        labels = [by_id.get(i, default) for i in ids]
        return cls(img.shape[1], img.shape[0], boxes=masks_to_boxes(masks), labels=labels, masks=masks)

    @classmethod
    def from_semantic(cls, class_map: np.ndarray) -> Annotation:
        """A semantic class map (0 = background, c + 1 = class c) as one mask per present class."""
        img = np.asarray(class_map)
        if img.ndim != 2:
            raise AnnotationError(f"a semantic class map must be 2-D, got shape {img.shape}")
        present = [int(v) for v in np.unique(img) if v != 0]
        masks = np.stack([img == v for v in present]) if present else np.zeros((0, *img.shape), bool)
        return cls(
            img.shape[1], img.shape[0], boxes=masks_to_boxes(masks), labels=[v - 1 for v in present],
            masks=masks,
        )

    # ---------------------------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def is_empty(self) -> bool:
        """No object and no image class: "nothing here" when submitted."""
        return len(self) == 0 and self.category is None

    def semantic_map(self) -> np.ndarray:
        """(H, W) uint16 map: 0 background, ``c + 1`` where a mask of class ``c`` lies (later wins)."""
        out = np.zeros((self.height, self.width), np.uint16)
        if self.masks is not None:
            for m, c in zip(self.masks, self.labels, strict=True):
                out[m] = c + 1
        return out

    def to_semantic(self) -> Annotation:
        """Merge instances of the same class (semantic mode)."""
        return Annotation.from_semantic(self.semantic_map())

    def filter(self, min_score: float | Sequence[float] | np.ndarray) -> Annotation:
        """Keep objects whose score is at least ``min_score`` (objects without scores are kept).

        ``min_score`` is one threshold for every object, or one per class (``min_score[label]`` applies
        to the objects of class ``label``), since a model is often sure of one class and unsure of
        another (see :mod:`livetrain_widgets.engine.autothreshold`). Thresholds are compared in the
        scores' own precision (float32), so a float and the same value repeated per class keep the
        same objects. An object whose class has no threshold in the sequence is an error.
        """
        if self.scores is None:
            return self
        if np.ndim(min_score) == 0:
            keep = self.scores >= min_score
        else:
            thr = np.asarray(min_score, self.scores.dtype).reshape(-1)
            if len(self) and (self.labels.min() < 0 or self.labels.max() >= len(thr)):
                bad = int(self.labels[(self.labels < 0) | (self.labels >= len(thr))][0])
                raise ValueError(f"no threshold for class {bad}: got {len(thr)} per-class thresholds")
            keep = self.scores >= thr[self.labels]
        return Annotation(
            self.width, self.height, self.boxes[keep], self.labels[keep], self.scores[keep],
            None if self.masks is None else self.masks[keep], self.category, self.category_scores,
        )

    def validate(self, num_classes: int, *, clip: bool = True) -> Annotation:
        """Check what a user or a file handed in; returns a cleaned copy or raises AnnotationError.

        Boxes partly outside the image are clipped to it (documented behaviour); boxes with NaN
        coordinates, zero or negative size after clipping, and unknown class indices are rejected.
        """
        boxes = self.boxes.copy()
        if boxes.size and not np.all(np.isfinite(boxes)):
            bad = int(np.flatnonzero(~np.all(np.isfinite(boxes), axis=1))[0])
            raise AnnotationError(f"box {bad} has a coordinate that is not a number: {boxes[bad].tolist()}")
        if clip and boxes.size:
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, self.width)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, self.height)
        if boxes.size:
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            bad = np.flatnonzero((w <= 0) | (h <= 0))
            if bad.size:
                i = int(bad[0])
                raise AnnotationError(
                    f"box {i} has zero or negative size (or lies outside the "
                    f"{self.width}x{self.height} image): {self.boxes[i].tolist()}"
                )
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= num_classes):
            bad_label = int(self.labels[(self.labels < 0) | (self.labels >= num_classes)][0])
            raise AnnotationError(f"unknown class index {bad_label}; there are {num_classes} classes")
        if self.category is not None and not 0 <= self.category < num_classes:
            raise AnnotationError(f"unknown class index {self.category}; there are {num_classes} classes")
        if self.masks is not None and len(self.masks):
            empty = np.flatnonzero(~self.masks.reshape(len(self.masks), -1).any(1))
            if empty.size:
                raise AnnotationError(f"mask {int(empty[0])} is empty")
        return Annotation(
            self.width, self.height, boxes, self.labels.copy(),
            None if self.scores is None else self.scores.copy(),
            None if self.masks is None else self.masks.copy(), self.category,
            None if self.category_scores is None else self.category_scores.copy(),
        )

    # ---------------------------------------------------------------------------- serialisation
    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict; masks travel as COCO RLE (compact, and what COCO export needs)."""
        out: dict[str, Any] = {
            "width": self.width,
            "height": self.height,
            "boxes": [[round(float(v), 3) for v in b] for b in self.boxes],
            "labels": [int(v) for v in self.labels],
        }
        if self.scores is not None:
            out["scores"] = [round(float(v), 5) for v in self.scores]
        if self.masks is not None:
            out["masks"] = [encode_rle(m) for m in self.masks]
        if self.category is not None:
            out["category"] = int(self.category)
        if self.category_scores is not None:
            out["category_scores"] = [round(float(v), 6) for v in self.category_scores]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Annotation:
        if not isinstance(data, dict):
            raise AnnotationError(f"an annotation must be a JSON object, got {type(data).__name__}")
        try:
            width, height = int(data["width"]), int(data["height"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AnnotationError("an annotation needs integer 'width' and 'height'") from exc
        masks = None
        if data.get("masks") is not None:
            rles = data["masks"]
            if not isinstance(rles, list):
                raise AnnotationError(f"'masks' must be a list of COCO RLE masks, got {type(rles).__name__}")
            masks = (
                np.stack([decode_rle(r, height, width) for r in rles])
                if rles
                else np.zeros((0, height, width), bool)
            )
        return cls(
            width, height, boxes=data.get("boxes") or None, labels=data.get("labels") or None,
            scores=data.get("scores"), masks=masks, category=data.get("category"),
            category_scores=data.get("category_scores"),
        )

    def __repr__(self) -> str:
        parts = [f"{self.width}x{self.height}", f"{len(self)} objects"]
        if self.masks is not None:
            parts.append("masks")
        if self.category is not None:
            parts.append(f"category={self.category}")
        return f"Annotation({', '.join(parts)})"


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight ``x0, y0, x1, y1`` boxes (pixel edges, so a 1-pixel mask is 1 wide) of (N, H, W) masks."""
    masks = np.asarray(masks, bool)
    out = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        ys = np.flatnonzero(m.any(1))
        xs = np.flatnonzero(m.any(0))
        if len(xs):
            out[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return out


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of one (H, W) bool mask, with ``counts`` as a str so it is JSON-safe."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_rle` (also accepts uncompressed COCO RLE with a counts list)."""
    try:
        size = [int(v) for v in rle["size"]]
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise AnnotationError("a mask must be COCO RLE: {'size': [h, w], 'counts': ...}") from exc
    if size != [height, width]:
        raise AnnotationError(f"mask size {size} does not match the image ({height}x{width})")
    # pycocotools raises TypeError / ValueError ("Invalid RLE mask representation") on garbage counts;
    # the caller (submit, from_json) should get the same AnnotationError as for every other bad field.
    try:
        if isinstance(counts, list):
            obj = mask_utils.frPyObjects({"size": size, "counts": counts}, height, width)
        else:
            obj = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        return mask_utils.decode(obj).astype(bool)
    except (TypeError, ValueError, UnicodeError) as exc:
        raise AnnotationError(f"a mask is not valid COCO RLE ({exc})") from exc
