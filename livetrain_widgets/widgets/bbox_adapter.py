"""Use a plain ``jupyter_bbox_widget.BBoxWidget`` as the canvas of a detection app.

For people who already label with jupyter-bbox-widget: ``LiveAnnotator(..., canvas=BBoxWidget())``
keeps their widget and its shortcuts, and adds live training behind it. BBoxWidget has no notion of
pre-labels, so they appear as ordinary boxes (filtered by the app's threshold); the adapter remembers
which boxes it placed so that Accept / Discard and the evaluator still know which were pre-labels.
Coordinates: BBoxWidget works in the pixels of the image it displays; the app may send a downscaled
display image for very large originals, so boxes are scaled between the two.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..engine.annotation import Annotation
from ._codec import WireError


class BBoxCanvasAdapter:
    """Presents a ``BBoxWidget`` to :class:`~livetrain_widgets.LiveAnnotator` as its canvas."""

    def __init__(self, bbox_widget: Any, task: str, classes: Sequence[str]) -> None:
        if task != "detection":
            raise ValueError(f"a BBoxWidget draws boxes: it can be the canvas of a detection project, not {task}")
        self.widget = bbox_widget
        self.task = task
        self.classes = [str(c) for c in classes]
        self.image_id = -1
        self.semantic = False
        self._size = (0, 0)
        self._scale = 1.0  # display pixels per original pixel
        self._prelabels: list[dict[str, Any]] = []  # pre-label boxes as placed (display pixels)
        self._pred: Annotation | None = None
        self._threshold = 0.3
        self._class_thresholds: list[float] = []
        self._action_callbacks: list[Callable[[str], Any]] = []
        self._change_callbacks: list[Callable[[], Any]] = []
        bbox_widget.classes = self.classes
        bbox_widget.hide_buttons = False
        bbox_widget.on_submit(lambda: self._fire("submit"))
        bbox_widget.on_skip(lambda: self._fire("skip"))
        bbox_widget.observe(lambda _c: self._changed(), names=["bboxes"])
        self.last_error = ""

    # ------------------------------------------------------------------------- app interface
    def set_image(self, data: bytes, size: tuple[int, int], *, image_id: int, name: str = "",
                  annotation: Annotation | None = None, prelabels: Annotation | None = None) -> None:
        with Image.open(io.BytesIO(data)) as im:
            display_w = im.width
        self._size = (int(size[0]), int(size[1]))
        self._scale = display_w / max(1, self._size[0])
        self._prelabels = []
        self._pred = None
        self.image_id = int(image_id)
        with self.widget.hold_sync():
            self.widget.image_bytes = data
            self.widget.bboxes = self._to_bboxes(annotation) if annotation is not None else []
            self.widget.selected_index = -1
        if prelabels is not None:
            self.set_prelabels(prelabels)

    def set_prelabels(self, prediction: Annotation | None) -> None:
        self._pred = prediction
        keep = self._user_boxes()
        shown = prediction.filter(self.effective_threshold) if prediction is not None else None
        self._prelabels = self._to_bboxes(shown) if shown is not None else []
        self.widget.bboxes = keep + [dict(b) for b in self._prelabels]

    def set_annotation(self, annotation: Annotation | None) -> None:
        """Replace every box with ``annotation``'s, as the user's own (what a simulated labeler draws)."""
        self._prelabels = []
        self.widget.bboxes = self._to_bboxes(annotation) if annotation is not None else []

    def discard_prelabels(self) -> None:
        self.widget.bboxes = self._user_boxes()
        self._prelabels = []

    def accept_prelabels(self) -> None:
        self._prelabels = []
        self._changed()

    @property
    def prelabel_count(self) -> int:
        return sum(1 for b in self.widget.bboxes if self._is_prelabel(b))

    def annotation(self) -> Annotation:
        if self.image_id < 0:
            raise WireError("no image is shown")
        boxes, labels = [], []
        for n, b in enumerate(self.widget.bboxes):
            try:
                x, y, w, h = (float(b[k]) for k in ("x", "y", "width", "height"))
            except (KeyError, TypeError, ValueError) as exc:
                raise WireError(f"box {n} is malformed: {str(b)[:80]}") from exc
            label = b.get("label")
            if label not in self.classes:
                raise WireError(f"box {n} has no class: pick one of {', '.join(self.classes)}, then click the box")
            boxes.append(np.array([x, y, x + w, y + h]) / self._scale)
            labels.append(self.classes.index(label))
        return Annotation(self._size[0], self._size[1], np.asarray(boxes, np.float32).reshape(-1, 4), labels)

    def on_action(self, callback: Callable[[str], Any]) -> Callable[[str], Any]:
        self._action_callbacks.append(callback)
        return callback

    def on_change(self, callback: Callable[[], Any]) -> None:
        self._change_callbacks.append(callback)

    def show_error(self, message: str) -> None:
        self.last_error = message  # BBoxWidget has no message area; the app's panel shows it

    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = float(value)
        self._refilter()

    @property
    def class_thresholds(self) -> list[float]:
        """One threshold per class instead of ``threshold`` ([] = none), as ``LabelCanvas``."""
        return list(self._class_thresholds)

    @class_thresholds.setter
    def class_thresholds(self, values: list[float]) -> None:
        self._class_thresholds = [float(v) for v in values]
        self._refilter()

    @property
    def effective_threshold(self) -> float | list[float]:
        return list(self._class_thresholds) if self._class_thresholds else self._threshold

    def _refilter(self) -> None:
        if self._pred is not None and self._prelabels:
            self.set_prelabels(self._pred)  # re-filter what is shown

    # ------------------------------------------------------------------------------ helpers
    def _to_bboxes(self, ann: Annotation) -> list[dict[str, Any]]:
        s = self._scale
        return [
            {"x": round(float(b[0]) * s, 1), "y": round(float(b[1]) * s, 1),
             "width": round(float(b[2] - b[0]) * s, 1), "height": round(float(b[3] - b[1]) * s, 1),
             "label": self.classes[int(c)]}
            for b, c in zip(ann.boxes, ann.labels, strict=True)
        ]

    def _is_prelabel(self, box: dict[str, Any]) -> bool:
        return any(box == p for p in self._prelabels)

    def _user_boxes(self) -> list[dict[str, Any]]:
        return [dict(b) for b in self.widget.bboxes if not self._is_prelabel(b)]

    def _fire(self, action: str) -> None:
        for cb in list(self._action_callbacks):
            cb(action)

    def _changed(self) -> None:
        for cb in list(self._change_callbacks):
            cb()
