"""Real images with their labels for demos, lectures and first tries, offline.

    from livetrain_widgets.demo import coins

    demo = coins()                     # 16 tiles of scikit-image's "coins" photograph, boxes of every coin
    demo.save("runs/coins-images")     # as PNG files, for LiveAnnotator("runs/coins-images", ...)
    app.autolabel(demo.truth)          # a simulated labeler that labels them by itself

The photograph ships with scikit-image (``pip install scikit-image``, part of the ``notebooks`` extra),
so nothing is downloaded. The labels are found the way scikit-image's own tutorial segments the coins
(edges, a watershed from dark and bright markers, holes filled): they are what a careful person would
draw, and they let a notebook label by itself in CI or in front of a class.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .engine.annotation import Annotation
from .engine.images import to_rgb

if TYPE_CHECKING:
    from .study.dataset import StudyData

#: coins whose box is smaller than this (pixels) are specks of the watershed, not coins
MIN_COIN_AREA = 150
#: a tile keeps a coin when at least this share of its area lies inside the tile
MIN_VISIBLE = 0.6


@dataclass
class DemoImages:
    """Images, their names and the labels a careful person would give them (``annotations``)."""

    task: str
    classes: list[str]
    names: list[str]
    images: list[np.ndarray]
    annotations: list[Annotation]
    #: where each image came from (for the captions of a lecture)
    source: str = ""
    _by_name: dict[str, Annotation] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.images) == len(self.annotations)):
            raise ValueError("names, images and annotations must have the same length")
        self._by_name = dict(zip(self.names, self.annotations, strict=True))

    def __len__(self) -> int:
        return len(self.images)

    def truth(self, name: str) -> Annotation | None:
        """The labels of the image saved under ``name`` (a file name or path), or None if unknown.

        This is the ``labeler`` that :meth:`LiveAnnotator.autolabel` expects.
        """
        return self._by_name.get(Path(name).name)

    def save(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write the images as PNG files (names as in ``names``); returns their paths in order."""
        from PIL import Image

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, image in zip(self.names, self.images, strict=True):
            path = out / name
            if not path.is_file():  # a second run must not rewrite files a project already hashed
                Image.fromarray(image).save(path)
            paths.append(path)
        return paths

    def study_data(self, holdout: int = 0) -> StudyData:
        """The images as a :class:`~livetrain_widgets.study.dataset.StudyData` for ``run_study``:
        labeled in order, the last ``holdout`` kept aside for scoring."""
        from .study.dataset import Item, StudyData

        rgb = [to_rgb(im) for im in self.images]  # the study's models take (H, W, 3) uint8, as load_image gives
        items = [Item(name, (lambda im=im: im), ann)
                 for name, im, ann in zip(self.names, rgb, self.annotations, strict=True)]
        cut = len(items) - holdout
        return StudyData(self.task, list(self.classes), items[:cut], items[cut:], notes=[self.source])


def coins(task: str = "detection", *, tile: tuple[int, int] = (160, 192),
          starts_y: Sequence[int] = (0, 48, 96, 143), starts_x: Sequence[int] = (0, 64, 128, 192)) -> DemoImages:
    """Tiles of scikit-image's ``coins`` photograph (303×384, greyscale) with every coin labeled.

    ``task`` is ``"detection"`` (boxes) or ``"segmentation"`` (one mask per coin). ``tile`` is (height,
    width); the default 16 tiles overlap, so the model meets each coin several times, in new places:
    the quickest way to see pre-labels appear on a CPU.
    """
    if task not in ("detection", "segmentation"):
        raise ValueError(f"the coins demo has boxes and masks: task 'detection' or 'segmentation', not {task!r}")
    photo, instances = coin_instances()
    areas = np.bincount(instances.ravel())  # each coin's whole area, for the share a tile shows
    th, tw = tile
    names, images, anns = [], [], []
    for y in starts_y:
        for x in starts_x:
            if y + th > photo.shape[0] or x + tw > photo.shape[1]:
                raise ValueError(f"tile ({th}, {tw}) at ({y}, {x}) runs outside the {photo.shape} photograph")
            window = instances[y : y + th, x : x + tw]
            names.append(f"coins_y{y:03d}_x{x:03d}.png")
            images.append(np.ascontiguousarray(photo[y : y + th, x : x + tw]))
            anns.append(_tile_annotation(areas, window, task))
    return DemoImages(task, ["coin"], names, images, anns, source="scikit-image data.coins(), Greek coins (CC0)")


def coin_instances() -> tuple[np.ndarray, np.ndarray]:
    """The coins photograph and an instance label image of it (0 = background, 1.. = one per coin)."""
    try:
        from skimage import data
        from skimage.filters import sobel
        from skimage.segmentation import watershed
    except ImportError as exc:
        raise ImportError("the coins demo needs scikit-image: pip install scikit-image "
                          "(or the notebooks extra: pip install 'livetrain-widgets[notebooks]')") from exc
    from scipy import ndimage

    photo = data.coins()
    markers = np.zeros(photo.shape, np.int32)
    markers[photo < 30] = 1
    markers[photo > 150] = 2
    fg = ndimage.binary_fill_holes(watershed(sobel(photo), markers) == 2)
    labels, _ = ndimage.label(fg)
    keep = np.zeros(labels.max() + 1, np.int32)
    n = 0
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if (sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start) >= MIN_COIN_AREA:
            n += 1
            keep[i] = n
    return photo, keep[labels]


def _tile_annotation(areas: np.ndarray, window: np.ndarray, task: str) -> Annotation:
    """The coins of one tile: those with at least MIN_VISIBLE of their area (``areas[id]``) inside it."""
    ids, counts = np.unique(window[window > 0], return_counts=True)
    ids = [int(i) for i, c in zip(ids, counts, strict=True) if c >= MIN_VISIBLE * areas[i]]
    h, w = window.shape
    masks = np.stack([window == i for i in ids]) if ids else np.zeros((0, h, w), bool)
    labels = np.zeros(len(ids), np.int64)
    ann = Annotation.from_masks(masks, labels, width=w, height=h)
    if task == "detection":
        return Annotation(w, h, boxes=ann.boxes, labels=labels)
    return ann
