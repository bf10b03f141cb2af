"""``LabelCanvas``: one drawing surface for boxes, masks and image classes, usable without training.

    canvas = LabelCanvas(task="detection", classes=["RBC", "WBC", "Platelets"])
    canvas.show_image("cells/BloodImage_00001.jpg")
    canvas                                   # draw; then read the result back:
    canvas.annotation()                      # an Annotation in original image pixels

The canvas only draws and edits. What happens on Enter / Space (next image, training) belongs to
whoever listens with :meth:`on_action` — :class:`~livetrain_widgets.LiveAnnotator`, or your own loop.
The front end lives in ``js/src/canvas/`` and its trait contract in ``js/src/protocol.ts``.

The click tool (segmentation, offered only while ``click_tool`` is set) does not edit on the canvas: it
asks the kernel, which answers by replacing ``objects`` (the correction mode's clicks, see
:class:`~livetrain_widgets.StreamAnnotator`). Whoever sets ``click_tool`` listens with :meth:`on_click`.

The next image, ahead (:meth:`set_next`): whoever answers "submit" by opening another image can send that
image and its pre-labels ahead. The view decodes it in the background and, on Enter, shows it at once
while the kernel commits the submission; the kernel then confirms with :meth:`set_image` of that image
(adopted without decoding again, keeping whatever the person did meanwhile) or :meth:`stay` (the view
goes back to the submitted image as it was). The view's state machine is ``js/src/canvas/advance.ts``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import traitlets as t

from ..engine.annotation import TASKS, Annotation
from ._base import GuardedWidget, Threshold
from ._codec import WireError, _float, _int, annotation_to_objects, display_image, objects_to_annotation, visible
from ._messages import action_of, reply_error, wire_text
from ._static import asset

#: matplotlib's tab10, the colours users of jupyter-bbox-widget know
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
         "#bcbd22", "#17becf"]
CANVAS_ACTIONS = ("submit", "skip", "back", "predict")
TOOLS = ("box", "brush", "eraser", "polygon", "fill", "pan", "click")
#: the longest request id a view may send (ids only pair a reply with its request)
MAX_REQUEST_ID = 64


@dataclass(frozen=True)
class ClickRequest:
    """A click of the click tool, checked: in original image pixels, on the image shown."""

    id: str | int
    image_id: int
    x: float
    y: float
    positive: bool
    label: int


class LabelCanvas(GuardedWidget):
    """Labeling canvas for one task (see the module docstring; traits in ``js/src/protocol.ts``)."""

    _esm = asset("canvas.js")
    _css = asset("canvas.css")
    _frontend_writable: ClassVar[frozenset[str]] = frozenset(
        {"objects", "category", "label", "selected", "tool", "brush_size", "threshold", "semantic"}
    )

    task = t.Unicode("detection").tag(sync=True)
    classes = t.List(t.Unicode(), default_value=[]).tag(sync=True)
    colors = t.List(t.Unicode(), default_value=TAB10).tag(sync=True)
    image = t.Bytes(b"").tag(sync=True)
    image_size = t.List(t.Int(), default_value=[0, 0], minlen=2, maxlen=2).tag(sync=True)
    image_id = t.Int(-1).tag(sync=True)
    image_name = t.Unicode("").tag(sync=True)
    objects = t.List(default_value=[]).tag(sync=True)
    category = t.Int(-1).tag(sync=True)
    category_scores = t.List(t.Float(), default_value=[]).tag(sync=True)
    threshold = Threshold(0.3).tag(sync=True)
    #: one threshold per class, used instead of ``threshold`` when set ([] = none)
    class_thresholds = t.List(Threshold(), default_value=[]).tag(sync=True)
    label = t.Int(0, min=0).tag(sync=True)
    selected = t.Unicode("").tag(sync=True)
    tool = t.Unicode("box").tag(sync=True)
    brush_size = t.Int(12, min=1, max=500).tag(sync=True)
    semantic = t.Bool(False).tag(sync=True)
    view_only = t.Bool(False).tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    height = t.Int(440, min=120, max=4000).tag(sync=True)
    click_tool = t.Bool(False).tag(sync=True)
    #: the image that opens after a submission, sent ahead so the view can show it at once (see set_next)
    next_image = t.Bytes(b"").tag(sync=True)
    #: {image_id, image_name, image_size, category_scores, step} of ``next_image`` ({} = none)
    next_meta = t.Dict().tag(sync=True)
    #: its pending pre-labels, in the wire form of ``objects``
    next_objects = t.List(default_value=[]).tag(sync=True)
    #: pairs this canvas with a LivePanel (its Finish & Next goes through the canvas); "" = none
    group = t.Unicode("").tag(sync=True)

    def __init__(self, task: str = "detection", classes: Sequence[str] = (), **kwargs: Any) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        kwargs.setdefault("tool", "box" if task == "detection" else "brush")
        super().__init__(task=task, classes=[str(c) for c in classes], **kwargs)
        self._action_callbacks: list[Callable[[str], Any]] = []
        self._click_callbacks: list[Callable[[ClickRequest], Any]] = []

    # ------------------------------------------------------------------------------ validation
    @t.validate("tool")
    def _check_tool(self, proposal: Any) -> str:
        if proposal["value"] not in TOOLS:
            raise t.TraitError(f"tool must be one of {TOOLS}")
        if proposal["value"] == "click" and not (self.click_tool and self.task == "segmentation"):
            raise t.TraitError("the click tool needs a kernel that answers clicks (click_tool, segmentation)")
        return proposal["value"]

    @t.validate("label")
    def _check_label(self, proposal: Any) -> int:
        if self.classes and proposal["value"] >= len(self.classes):
            raise t.TraitError(f"class index {proposal['value']} out of range ({len(self.classes)} classes)")
        return proposal["value"]

    @t.validate("category")
    def _check_category(self, proposal: Any) -> int:
        v = proposal["value"]
        if v < -1 or (self.classes and v >= len(self.classes)):
            raise t.TraitError(f"category {v} out of range ({len(self.classes)} classes)")
        return v

    # ---------------------------------------------------------------------------------- images
    def show_image(
        self,
        image: str | os.PathLike[str] | np.ndarray,
        annotation: Annotation | None = None,
        *,
        image_id: int | None = None,
        name: str | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        """Show an image (a path or an array) with its labels, if any; clears the previous image's.

        ``size`` is the original (width, height) when the caller knows it (saves reading the header).
        """
        data = display_image(Path(image) if isinstance(image, (str, os.PathLike)) else np.asarray(image))
        if size is None:
            size = _size_of(image)
        if name is None:
            name = Path(image).name if isinstance(image, (str, os.PathLike)) else ""
        self.set_image(data, size, image_id=self.image_id + 1 if image_id is None else image_id, name=name,
                       annotation=annotation)

    def set_image(
        self,
        data: bytes,
        size: tuple[int, int],
        *,
        image_id: int,
        name: str = "",
        annotation: Annotation | None = None,
        prelabels: Annotation | None = None,
    ) -> None:
        """Low level: display bytes, original size, and the objects to start from, in one update."""
        objects = self._objects_of(annotation, "user", "s") + self._objects_of(prelabels, "prelabel", "p")
        with self.hold_sync():
            self.image = data
            self.image_size = [int(size[0]), int(size[1])]
            self.image_name = name
            self.objects = objects
            self.selected = ""
            self.message = ""
            self.category = annotation.category if annotation is not None and annotation.category is not None else -1
            self.category_scores = _scores_of(prelabels) if self.task == "classification" else []
            self.image_id = int(image_id)

    def set_next(
        self,
        data: bytes,
        size: tuple[int, int],
        image_id: int,
        name: str = "",
        prelabels: Annotation | None = None,
        *,
        step: int | None = None,
    ) -> None:
        """The image that opens after the next submission, with its pending pre-labels, sent ahead.

        The view decodes it in the background and, on Finish & Next, shows it at once, before the kernel
        has committed the submission. Whoever sets it must then answer the submission with
        :meth:`set_image` of this image (same id; same ``prelabels`` so nothing flickers), or with
        :meth:`stay` when the submission was refused (the view goes back to the submitted image as it was).
        ``step``: the model step of the pre-labels (shown nowhere; a change tells the view they are new).
        """
        objects = [] if self.task == "classification" else self._objects_of(prelabels, "prelabel", "p")
        meta = {
            "image_id": int(image_id), "image_name": str(name), "image_size": [int(size[0]), int(size[1])],
            "category_scores": _scores_of(prelabels) if self.task == "classification" else [],
            "step": step,
        }
        with self.hold_sync():
            self.next_image = data
            self.next_objects = objects
            self.next_meta = meta

    def clear_next(self) -> None:
        """No next image (the last one, or the next is not known): Finish & Next waits for the kernel."""
        with self.hold_sync():
            self.next_image = b""
            self.next_objects = []
            self.next_meta = {}

    def stay(self, image_id: int) -> None:
        """Tell the views that the submission of ``image_id`` did not move on (refused, or nothing is
        next): a view that showed the next image ahead goes back to ``image_id`` exactly as it was."""
        with contextlib.suppress(Exception):  # no comm (plain Python): no view to tell
            self.send({"type": "stay", "image_id": int(image_id)})

    def _objects_of(self, ann: Annotation | None, source: str, prefix: str) -> list[dict[str, Any]]:
        return annotation_to_objects(ann, source=source, prefix=prefix, semantic=self.semantic)

    def set_annotation(self, annotation: Annotation | None) -> None:
        """Replace everything the canvas holds with ``annotation``, as the user's own (the image stays)."""
        self.objects = self._objects_of(annotation, "user", "s")
        if self.task == "classification":
            self.category = -1 if annotation is None or annotation.category is None else annotation.category

    def set_prelabels(self, prediction: Annotation | None) -> None:
        """Replace the pending pre-labels (keeps what the user drew or accepted)."""
        keep = [o for o in self.objects if not _is_prelabel(o)]
        if self.task == "classification":
            self.category_scores = _scores_of(prediction)
            return
        self.objects = keep + self._objects_of(prediction, "prelabel", "p")

    @property
    def effective_threshold(self) -> float | list[float]:
        """The threshold pending pre-labels are shown at: ``class_thresholds`` when set, else ``threshold``."""
        return list(self.class_thresholds) if self.class_thresholds else self.threshold

    def discard_prelabels(self) -> None:
        """Remove every pending pre-label (what X does); the user's own objects stay."""
        self.objects = [o for o in self.objects if not _is_prelabel(o)]
        self.category_scores = []

    def accept_prelabels(self) -> None:
        """Accept every visible pre-label as it is; those below the threshold are dropped."""
        shown = visible(self.objects, self.effective_threshold)
        # Whatever is not an object stays as it is, for annotation() to refuse with a readable message.
        self.objects = [{**o, "source": "user", "score": None} if isinstance(o, Mapping) else o for o in shown]

    @property
    def prelabel_count(self) -> int:
        """Pending pre-labels the person can see (at or above the threshold)."""
        shown = visible(self.objects, self.effective_threshold)
        return sum(1 for o in shown if isinstance(o, dict) and o.get("source") == "prelabel")

    # -------------------------------------------------------------------------------- reading
    def annotation(self) -> Annotation:
        """What the canvas holds now, as an :class:`Annotation` in original pixels.

        Visible pending pre-labels count (a reviewed image is submitted as it looks); pre-labels
        hidden by the threshold do not. Raises :class:`WireError` with a readable message when the
        front end's state cannot be turned into an annotation.
        """
        w, h = self.image_size
        if self.image_id < 0 or w <= 0 or h <= 0:
            raise WireError("no image is shown")
        if self.task == "classification":
            if self.category < 0:
                raise WireError("choose a class for this image first")
            return Annotation(w, h, category=self.category)
        shown = visible(self.objects, self.effective_threshold)
        return objects_to_annotation(shown, w, h, self.task, len(self.classes))

    # -------------------------------------------------------------------------------- actions
    @property
    def widget(self) -> LabelCanvas:
        """What to display (the app treats our canvas and adapters alike)."""
        return self

    def on_change(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` when the objects, the threshold or the class suggestions change."""
        self.observe(lambda _change: callback(), names=["objects", "threshold", "class_thresholds", "category_scores"])

    def show_error(self, message: str) -> None:
        """A short message over the canvas (for a lasting one, set ``message``)."""
        reply_error(self, message)

    def on_action(self, callback: Callable[[str], Any]) -> Callable[[str], Any]:
        """Call ``callback(action)`` for "submit" (Enter), "skip" (Space), "back", "predict".

        Usable as a decorator. Actions about an image other than the one shown are ignored.
        """
        self._action_callbacks.append(callback)
        return callback

    def on_click(self, callback: Callable[[ClickRequest], Any]) -> Callable[[ClickRequest], Any]:
        """Call ``callback(request)`` for each click of the click tool on the image shown.

        The callback owns the answer: :meth:`reply` with ``request.id`` once it replaced ``objects`` (or
        with the reason it did not); the view shows the click as pending until then.
        """
        self._click_callbacks.append(callback)
        return callback

    def _handle_message(self, content: Any) -> None:
        if isinstance(content, Mapping) and content.get("type") == "click":
            self._handle_click(content)
            return
        action = action_of(content, CANVAS_ACTIONS)
        image_id = content.get("image_id")
        if image_id != self.image_id:
            raise WireError("that action was for an image that is no longer shown")
        for cb in list(self._action_callbacks):
            cb(action)

    def _handle_click(self, content: Mapping[str, Any]) -> None:
        request_id = request_id_of(content)
        try:
            request = self._click_of(content, request_id)
        except WireError as exc:
            self.reply(request_id, str(exc))
            return
        for cb in list(self._click_callbacks):
            cb(request)

    def _click_of(self, content: Mapping[str, Any], request_id: str | int) -> ClickRequest:
        if not self._click_callbacks or not self.click_tool:
            raise WireError("this canvas takes no clicks (the click tool belongs to the correction mode)")
        if content.get("image_id") != self.image_id or self.image_id < 0:
            raise WireError("that click was for an image that is no longer shown")
        if self.view_only:
            raise WireError("this image is view-only")
        x, y = _float(content.get("x"), "a click's x"), _float(content.get("y"), "a click's y")
        w, h = self.image_size
        if not (0 <= x < w and 0 <= y < h):
            raise WireError(f"the click at ({x:.0f}, {y:.0f}) is outside the {w}x{h} image")
        positive = content.get("positive")
        if not isinstance(positive, bool):
            raise WireError(f"a click's 'positive' must be true or false, got {str(positive)[:40]!r}")
        label = content.get("label", self.label)
        label = _int(label, "a click's class")
        if not 0 <= label < len(self.classes):
            raise WireError(f"a click's class index {label} is out of range ({len(self.classes)} classes)")
        return ClickRequest(request_id, self.image_id, x, y, positive, label)


def request_id_of(content: Mapping[str, Any]) -> str | int:
    """The ``id`` of a request (a short string or an integer), which its reply carries back."""
    request_id = content.get("id")
    if isinstance(request_id, str) and 0 < len(request_id) <= MAX_REQUEST_ID and wire_text(request_id) == request_id:
        return request_id
    if isinstance(request_id, int) and not isinstance(request_id, bool):
        return request_id
    raise WireError(f"a request needs an id (a short string or an integer), got {str(request_id)[:40]!r}")


def _scores_of(prediction: Annotation | None) -> list[float]:
    """A classification pre-label's probabilities as the ``category_scores`` trait holds them."""
    scores = None if prediction is None else prediction.category_scores
    return [] if scores is None else [round(float(s), 5) for s in scores]


def _is_prelabel(obj: Any) -> bool:
    # objects come from the front end: an entry need not be a dict at all (refused on submission)
    return isinstance(obj, Mapping) and obj.get("source") == "prelabel"


def _size_of(image: Any) -> tuple[int, int]:
    if isinstance(image, (str, os.PathLike)):
        from ..engine._formats_common import image_size

        return image_size(Path(image))  # the header only, EXIF rotation applied like load_image
    arr = np.asarray(image)
    return int(arr.shape[1]), int(arr.shape[0])
