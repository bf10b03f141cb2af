"""A labeled dataset for the study: images with their true labels, a seeded walk order and a held-out split.

Any folder layout works because images and labels are given separately (e.g. ``JPEGImages/`` beside
``Annotations/``). Large images can be cut into tiles (``tile``) and a detection dataset can become a
classification one of its object crops (``crops``). Images load lazily with a small cache, so a
dataset of thousands of files does not sit in memory.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine.annotation import Annotation, masks_to_boxes
from ..engine.formats import load_labels
from ..engine.images import ImageCache, list_images, load_image


@dataclass
class Item:
    """One image of the study (a whole file, a tile of one, or an object crop)."""

    name: str
    load: Callable[[], np.ndarray]
    target: Annotation


@dataclass
class StudyData:
    task: str
    classes: list[str]
    #: labeled in this (seeded) order by the simulated annotator
    walk: list[Item]
    #: never labeled: the final models are scored on these
    holdout: list[Item]
    notes: list[str] = field(default_factory=list)

    @functools.cached_property
    def semantic(self) -> bool:
        """Segmentation with at most one mask per class in every image: read as semantic (class maps)."""
        items = self.walk + self.holdout
        return self.task == "segmentation" and any(len(i.target) for i in items) and all(
            len(set(i.target.labels.tolist())) == len(i.target) for i in items)

    def summary(self) -> dict[str, object]:
        objects = [len(i.target) for i in self.walk]
        return {
            "task": self.task, "classes": self.classes, "walk": len(self.walk), "holdout": len(self.holdout),
            "objects_per_image": float(np.mean(objects)) if objects and self.task != "classification" else None,
            "notes": self.notes,
        }


def crop_annotation(ann: Annotation, x0: int, y0: int, w: int, h: int, min_visible: float = 0.5) -> Annotation:
    """The objects of ``ann`` inside the window, in window coordinates.

    An object cut by the window edge is kept when at least ``min_visible`` of it (box area, or mask
    pixels) lies inside, clipped to the window; a sliver of an object at the edge is left out, as a
    person labeling the tile would not draw it either.
    """
    boxes = ann.boxes.astype(np.float64) - [x0, y0, x0, y0]
    clipped = np.clip(boxes, 0, [w, h, w, h])
    area = lambda b: np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)  # noqa: E731
    if ann.masks is not None:
        full = ann.masks.reshape(len(ann), -1).sum(1).astype(np.float64)
        masks = ann.masks[:, y0:y0 + h, x0:x0 + w]
        inside = masks.reshape(len(ann), -1).sum(1).astype(np.float64)
        keep = (inside > 0) & (inside >= min_visible * np.maximum(full, 1))
        masks = masks[keep]
        return Annotation(w, h, masks_to_boxes(masks), ann.labels[keep], masks=masks)
    keep = (area(clipped) > 0) & (area(clipped) >= min_visible * np.maximum(area(boxes), 1e-9))
    return Annotation(w, h, clipped[keep].astype(np.float32), ann.labels[keep])


def tile_windows(width: int, height: int, tile: int) -> list[tuple[int, int, int, int]]:
    """A grid of ``tile``-sized windows covering the image; the last row/column is shifted back to fit
    inside, so every tile has the full size (an image smaller than a tile is one window)."""

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        s = list(range(0, n - tile, tile))
        return [*s, n - tile]

    tw, th = min(tile, width), min(tile, height)
    return [(x, y, tw, th) for y in starts(height) for x in starts(width)]


#: Decoded whole images of a study by path. Every strategy walks the same images and every training step
#: loads a batch of them: decoding a JPEG again each time was a share of the study's wall time that no real
#: session pays (a session keeps its images decoded in the same cache).
_decoded = ImageCache(768 * 2**20)


def _load_decoded(path: Path) -> np.ndarray:
    return _decoded.get(path, functools.partial(load_image, path))


@functools.lru_cache(maxsize=8)
def _source(path: Path) -> np.ndarray:
    """Decoded source files of tiles and crops: the few most recent stay, the rest are decoded again."""
    return load_image(path)


def load_study_data(
    task: str,
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    labels: str | os.PathLike[str],
    fmt: str,
    *,
    classes: Sequence[str] | None = None,
    tile: int | None = None,
    crops: bool = False,
    crop_pad: float = 0.1,
    holdout: float = 0.2,
    holdout_max: int | None = 60,
    limit: int | None = None,
    seed: int = 0,
    merge_classes: str | None = None,
) -> StudyData:
    """Images and true labels, split into a seeded walk order and a held-out set.

    ``holdout`` is the fraction of images (of tiles or crops when those are made) kept out of labeling,
    at most ``holdout_max``; ``limit`` caps the walk. With ``crops``,
    every box of a detection dataset becomes one classification image (its class), cropped with
    ``crop_pad`` of margin. ``merge_classes`` puts every object in one class of that name (e.g. tree
    crowns some files split into alive and dead).
    """
    if isinstance(images, (str, os.PathLike)):
        paths = [Path(images)] if Path(images).is_file() else list_images(images)
    else:
        paths = [Path(p) for p in images]
    if not paths:
        raise ValueError(f"no images found in {images}")
    loaded = load_labels(fmt, labels, paths, classes)
    notes = [f"label import: {e}" for e in loaded.errors[:20]]
    if merge_classes:
        for ann in loaded.annotations.values():
            ann.labels = np.zeros_like(ann.labels)
            if ann.category is not None:
                ann.category = 0
        loaded.classes = [merge_classes]
    labeled = [p.resolve() for p in paths if p.resolve() in loaded.annotations]
    if not labeled:
        raise ValueError(f"none of the {len(paths)} images has labels in {labels} ({fmt})")
    if len(labeled) < len(paths):
        notes.append(f"{len(paths) - len(labeled)} images without labels were left out")
    rng = np.random.default_rng(seed)
    order = [labeled[i] for i in rng.permutation(len(labeled))]
    out_task = "classification" if crops else task

    def expand(files: list[Path]) -> list[Item]:
        items: list[Item] = []
        for path in files:
            ann = loaded.annotations[path]
            load = functools.partial(_source, path)
            if crops:
                items.extend(_crops(path, ann, load, crop_pad))
            elif tile and (ann.width > tile or ann.height > tile):
                items.extend(_tiles(path, ann, load, tile))
            else:
                items.append(Item(path.name, functools.partial(_load_decoded, path), ann))
        return items

    if crops or tile:
        # A few large files (or object crops) are the usual case here, so the split is over tiles/crops,
        # seeded, after expansion; tiles of one file then mix in the walk too.
        units = expand(order)
        units = [units[i] for i in rng.permutation(len(units))]
    else:
        units = [Item(p.name, functools.partial(_load_decoded, p), loaded.annotations[p]) for p in order]
    n_hold = min(round(holdout * len(units)), holdout_max if holdout_max is not None else len(units))
    if holdout > 0 and len(units) > 1:
        n_hold = max(1, min(n_hold, len(units) - 1))
    hold, walk = units[:n_hold], units[n_hold:]
    if limit is not None:
        walk = walk[:limit]
    classes_out = list(loaded.classes)
    return StudyData(out_task, classes_out, walk, hold, notes)


def _tiles(path: Path, ann: Annotation, load: Callable[[], np.ndarray], tile: int) -> list[Item]:
    items = []
    for x, y, w, h in tile_windows(ann.width, ann.height, tile):
        def load_tile(x: int = x, y: int = y, w: int = w, h: int = h) -> np.ndarray:
            return np.ascontiguousarray(load()[y:y + h, x:x + w])

        items.append(Item(f"{path.stem}@{x},{y}", _memo(load_tile), crop_annotation(ann, x, y, w, h)))
    return items


def _crops(path: Path, ann: Annotation, load: Callable[[], np.ndarray], pad: float) -> list[Item]:
    items = []
    for j, (box, label) in enumerate(zip(ann.boxes, ann.labels, strict=True)):
        x0, y0, x1, y1 = (float(v) for v in box)
        px, py = pad * (x1 - x0), pad * (y1 - y0)
        cx0, cy0 = max(0, int(x0 - px)), max(0, int(y0 - py))
        cx1, cy1 = min(ann.width, int(np.ceil(x1 + px))), min(ann.height, int(np.ceil(y1 + py)))
        if cx1 - cx0 < 2 or cy1 - cy0 < 2:
            continue

        def load_crop(a: int = cx0, b: int = cy0, c: int = cx1, d: int = cy1) -> np.ndarray:
            return np.ascontiguousarray(load()[b:d, a:c])

        target = Annotation(cx1 - cx0, cy1 - cy0, category=int(label))
        items.append(Item(f"{path.stem}#{j}", _memo(load_crop), target))
    return items


def _memo(fn: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """Tiles and crops are small: keep each once made (the source file stays lazily loaded)."""
    return functools.lru_cache(maxsize=1)(fn)


#: classes of :func:`synthetic_detection`, by index
SYNTHETIC_CLASSES = ("rectangle", "ellipse", "ring")


def synthetic_detection(n: int, *, seed: int = 0, size: tuple[int, int] = (480, 640),
                        objects: tuple[int, int] = (3, 8)) -> tuple[list[np.ndarray], list[Annotation]]:
    """``n`` RGB images (height, width = ``size``) of shapes on textured noise, with their true boxes.

    Classes are :data:`SYNTHETIC_CLASSES` by index: filled rectangles (reddish), filled ellipses
    (bluish) and ellipse outlines (greenish). Shapes do not overlap, so every box is fully visible.
    """
    from PIL import Image, ImageDraw

    h, w = size
    rng = np.random.default_rng(seed)
    base = np.array([[200, 60, 50], [50, 80, 210], [60, 190, 70]], np.float64)
    images, labels = [], []
    for _ in range(n):
        # Smooth blotches plus pixel noise: a background the model must learn to ignore, not a flat colour.
        coarse = Image.fromarray((rng.random((h // 40 + 2, w // 40 + 2, 3)) * 255).astype(np.uint8))
        bg = np.asarray(coarse.resize((w, h), Image.BICUBIC), np.float64) * 0.5 + 60
        bg += rng.normal(0, 14, (h, w, 3))
        img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        boxes: list[list[int]] = []
        cls: list[int] = []
        for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
            for _attempt in range(50):
                bw, bh = int(rng.integers(24, 100)), int(rng.integers(24, 100))
                x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                box = [x0, y0, x0 + bw, y0 + bh]
                if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes):
                    break
            else:
                continue
            c = int(rng.integers(0, len(SYNTHETIC_CLASSES)))
            colour = tuple(int(v) for v in np.clip(base[c] + rng.normal(0, 20, 3), 0, 255))
            # PIL shapes cover pixels x0..x1 inclusive; the box's pixel edges end one further.
            shape = [x0, y0, x0 + bw - 1, y0 + bh - 1]
            if c == 0:
                draw.rectangle(shape, fill=colour)
            elif c == 1:
                draw.ellipse(shape, fill=colour)
            else:
                draw.ellipse(shape, outline=colour, width=max(3, min(bw, bh) // 8))
            boxes.append(box)
            cls.append(c)
        images.append(np.asarray(img))
        labels.append(Annotation(w, h, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(cls, np.int64)))
    return images, labels


__all__ = ["SYNTHETIC_CLASSES", "Item", "StudyData", "crop_annotation", "load_study_data", "synthetic_detection",
           "tile_windows"]
