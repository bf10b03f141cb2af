"""``StreamAnnotator``: the correction mode (Live Interactive Training) as a notebook app.

    app = StreamAnnotator(session, "path/to/slices", adapter_dir="adapters/membranes")
    app                     # each frame shows the model's prediction: Enter accepts it; clicks (K tool)
                            # or the brush correct it, and Enter then trains the adapter before the next

Parts: ``stream`` (the :class:`~livetrain_widgets.StreamSession` doing the work), ``canvas`` (a
:class:`~livetrain_widgets.LabelCanvas` with the click tool) and ``strip`` (:class:`StreamStrip`:
filmstrip, counters, adapter state, buttons). Like :class:`~livetrain_widgets.LiveAnnotator`, this
module only connects widgets to the engine: every action is a task on the kernel's event loop, one at
a time, and whatever takes time (predicting, a click, an adapter update, saving) runs in a worker
thread, so the kernel keeps answering the browser while the adapter trains.

What Enter does with the frame: the canvas is compared with the session's ``working()`` annotation
(the prediction with the session's own click edits), class mask by class mask, pixel for pixel (the
category for classification). The same: ``accept()`` (a correction that trains if clicks were made,
an acceptance otherwise). Different (brush, eraser, polygon, deleted masks, another class, or an
undo of a click): ``correct(canvas annotation)``, a full correction. Comparing what is on screen with
what the session holds, rather than tracking edits in the browser, cannot drift: a brush stroke
painted and erased again is no edit, and an undo is one.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import ipywidgets as widgets
import numpy as np
import traitlets as t
from PIL import Image

from ..engine.annotation import Annotation
from ..engine.images import list_images
from ..engine.stream import StreamSession, class_masks
from ..models.stream import AdapterConfig, StreamModel, create_stream_model
from ._base import GuardedWidget
from ._codec import WireError, display_image
from ._messages import action_of, log
from ._static import asset
from ._watch import kernel_loop
from .canvas import ClickRequest, LabelCanvas, request_id_of

STRIP_ACTIONS = ("accept", "reset", "save", "view")
#: thumbnails fit this box (CSS px at 2x, so they stay sharp on high-density screens)
THUMB_SIZE = (160, 112)


@dataclass(frozen=True)
class StripRequest:
    """A checked request from the strip: ``frame`` is the frame the person saw as current (accept),
    ``index`` the frame asked for (view)."""

    id: str | int
    action: str
    frame: int | None = None
    index: int | None = None


class StreamStrip(GuardedWidget):
    """The correction mode's panel: a filmstrip of the stream's frames (done ones marked accepted ✓ or
    corrected ✎, the current one highlighted), counters, the adapter's state, and the Accept / Reset
    adapter / Save adapter buttons. Every request carries an id and is answered (``done`` or
    ``error``). Front end: ``js/src/stream/``; traits: ``StripModel`` in ``js/src/protocol.ts``."""

    _esm = asset("stream.js")
    _css = asset("stream.css")
    _frontend_writable: ClassVar[frozenset[str]] = frozenset()

    task = t.Unicode("segmentation").tag(sync=True)
    names = t.List(t.Unicode(), default_value=[]).tag(sync=True)
    #: one small JPEG per frame (b"" until made); sent once, apart from the state that changes per frame
    thumbs = t.List(t.Bytes(), default_value=[]).tag(sync=True)
    #: per frame: "" (to do), "accepted" or "corrected"
    marks = t.List(t.Unicode(), default_value=[]).tag(sync=True)
    #: the frame being corrected (the number of frames once the stream is done)
    current = t.Int(0).tag(sync=True)
    #: a done frame shown for a look back (-1: none)
    viewing = t.Int(-1).tag(sync=True)
    #: ``StreamSession.stats()``
    stats = t.Dict(default_value={}).tag(sync=True)
    #: clicks made in this stream, and on the current frame
    clicks = t.Int(0).tag(sync=True)
    frame_clicks = t.Int(0).tag(sync=True)
    #: "" | "training" (an adapter update runs) | "predicting" | "saving"
    busy = t.Unicode("").tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    adapter_dir = t.Unicode("").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._callbacks: list[Callable[[StripRequest], Any]] = []

    def on_action(self, callback: Callable[[StripRequest], Any]) -> Callable[[StripRequest], Any]:
        """Call ``callback(request)`` for each button press; the callback answers with :meth:`reply`."""
        self._callbacks.append(callback)
        return callback

    def _handle_message(self, content: Any) -> None:
        action = action_of(content, STRIP_ACTIONS)
        request_id = request_id_of(content)
        try:
            request = self._request_of(content, action, request_id)
        except WireError as exc:
            self.reply(request_id, str(exc))
            return
        for cb in list(self._callbacks):
            cb(request)

    def _request_of(self, content: Mapping[str, Any], action: str, request_id: str | int) -> StripRequest:
        if action == "accept":
            frame = _index(content.get("frame"), "the frame to accept")
            if frame != self.current:
                raise WireError(f"frame {frame + 1} is no longer the current frame")
            return StripRequest(request_id, action, frame=frame)
        if action == "view":
            index = _index(content.get("index"), "the frame to view")
            if index >= len(self.names):
                raise WireError(f"there is no frame {index + 1} (the stream has {len(self.names)})")
            return StripRequest(request_id, action, index=index)
        return StripRequest(request_id, action)


class StreamAnnotator(widgets.VBox):
    """The correction-mode app (see the module docstring).

    Parameters
    ----------
    model: a :class:`LiveSession` (its model as it is now, copied between training steps), a
        :class:`StreamModel`, anything :func:`~livetrain_widgets.create_stream_model` takes (a
        trained :class:`EmbeddedModel`, a saved-model folder, a checkpoint name), or a
        :class:`StreamSession` (then ``frames``, ``names``, ``adapt`` and ``click_radius`` are its own).
    frames: the stream in order: image paths, arrays, or a folder (its images, sorted by path).
    names: one per frame (default: the file names, or "frame i").
    classes: the model's classes, checked (or given to a checkpoint that needs them).
    adapter: an :class:`AdapterConfig` for a new adapter, or a folder written by Save adapter to start
        from.
    adapt: False runs the same loop without training (the baseline).
    adapter_dir: where Save adapter writes (default ``adapters/<name>``).
    name: the stream's name (default: the frames' folder name).
    """

    def __init__(
        self,
        model: Any,
        frames: str | os.PathLike[str] | Sequence[Any] | None = None,
        *,
        names: Sequence[str] | None = None,
        classes: Sequence[str] | None = None,
        adapter: AdapterConfig | str | os.PathLike[str] | None = None,
        adapt: bool = True,
        adapter_dir: str | os.PathLike[str] | None = None,
        name: str | None = None,
        click_radius: float | None = None,
        height: int = 480,
    ) -> None:
        if kernel_loop() is None:
            raise RuntimeError("StreamAnnotator runs on a Jupyter kernel's event loop (or inside asyncio.run); "
                               "for a plain script, drive a StreamSession instead")
        frame_list = _frame_list(frames)
        self.stream = _make_stream(model, frame_list, names, classes, adapter, adapt, click_radius)
        if isinstance(adapter, (str, os.PathLike)):
            self.stream.load_adapter(adapter)
        self.name = name or _stream_name(frames, self.stream)
        self.adapter_dir = Path(adapter_dir) if adapter_dir is not None else Path("adapters") / self.name
        sm = self.stream.model
        self.segmentation = sm.task == "segmentation"
        self.canvas = LabelCanvas(sm.task, sm.classes, height=height, semantic=self.segmentation,
                                  click_tool=self.segmentation, view_only=True)
        if self.segmentation:
            self.canvas.tool = "click"
        n = len(self.stream)
        self.strip = StreamStrip(task=sm.task, names=self.stream.names, thumbs=[b""] * n,
                                 marks=_marks(self.stream), current=self.stream.index,
                                 adapter_dir=str(self.adapter_dir))
        super().__init__(children=[self.strip, self.canvas])
        self.add_class("lt-stream-app")

        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._viewing: int | None = None  # a done frame on the canvas instead of the current one
        self._stash: tuple[list[Any], int] | None = None  # the current frame's canvas meanwhile
        self._display: tuple[int, bytes, tuple[int, int]] | None = None  # the current frame's display bytes
        self._next_image_id = 0
        self._session_clicks = 0  # clicks the session took on the current frame (they make Enter train)
        self._refresh_stats()

        self.canvas.on_action(self._on_canvas_action)
        self.canvas.on_click(self._on_click)
        self.strip.on_action(self._on_strip_request)
        self._spawn(self._locked(self._show_current()))
        self._spawn(self._thumbnails())

    # ------------------------------------------------------------------------------ public
    @property
    def index(self) -> int:
        """The frame being corrected (``len(stream)`` once done)."""
        return self.stream.index

    async def wait_idle(self) -> None:
        """Wait until every action started so far has finished (for scripts and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        """Stop pending work and close the widgets (the session and its adapter stay usable)."""
        for task in list(self._tasks):
            task.cancel()
        self.canvas.close()
        self.strip.close()
        super().close()

    # ---------------------------------------------------------------------------- messages
    def _on_canvas_action(self, action: str) -> None:
        if action == "predict":
            raise WireError("the prediction is on the canvas already; it is made again, with what the adapter "
                            "learned, for each new frame")
        if action != "submit":
            raise WireError("frames are corrected in order: Enter accepts the frame (after your corrections); "
                            "click a done frame in the strip to look at it")
        self._spawn(self._locked(self._submit(self.canvas.image_id)))

    def _on_click(self, request: ClickRequest) -> None:
        self._spawn(self._locked(self._click(request)), reply=lambda err: self.canvas.reply(request.id, err))

    def _on_strip_request(self, request: StripRequest) -> None:
        work: Coroutine[Any, Any, Any]
        if request.action == "accept":
            work = self._submit(self.canvas.image_id, stale="that frame is no longer the current one")
        elif request.action == "reset":
            work = self._reset()
        elif request.action == "save":
            work = self._save()
        else:
            assert request.index is not None
            work = self._view(request.index)
        self._spawn(self._locked(work), reply=lambda err: self.strip.reply(request.id, err))

    def _spawn(self, coro: Coroutine[Any, Any, Any], reply: Callable[[str | None], None] | None = None) -> None:
        loop = kernel_loop()
        if loop is None:
            coro.close()
            raise RuntimeError("StreamAnnotator runs on a Jupyter kernel's event loop")
        task = loop.create_task(self._guard(coro, reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: Coroutine[Any, Any, Any], reply: Callable[[str | None], None] | None) -> None:
        """Run an action; a failure goes back to the view that asked (``reply``), or, for Enter and the
        app's own work, into the strip's error line and a toast over the canvas."""
        error: str | None = None
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except WireError as exc:
            error = str(exc)
        except Exception as exc:  # shown where the person looks; the canvas keeps its objects
            log.exception("livetrain: stream action failed")
            error = f"{type(exc).__name__}: {exc}"
        if reply is not None:
            reply(error)
        elif error is not None:
            self.strip.error = error
            self.canvas.show_error(error)

    async def _locked(self, coro: Coroutine[Any, Any, Any]) -> None:
        async with self._lock:
            await coro

    # ------------------------------------------------------------------------------ frames
    async def _show_current(self, objects: list[Any] | None = None) -> None:
        """The current frame with the session's working annotation (its prediction, plus clicks), or with
        ``objects`` (the canvas as it was before a look back)."""
        s = self.stream
        if s.done:
            self._finished()
            return
        self.strip.busy = "predicting"
        try:
            data, size, working, prediction = await asyncio.to_thread(self._prepare_current)
        finally:
            self.strip.busy = ""
        self._show(s.index, data, size, working, view_only=False, objects=objects)
        if not self.segmentation:
            self.canvas.set_prelabels(prediction)  # the class scores, as suggestions
        self.strip.current = s.index
        self._refresh_stats()

    def _prepare_current(self) -> tuple[bytes, tuple[int, int], Annotation, Annotation]:
        """In a worker thread: the current frame's prediction (encoded once) and its display bytes."""
        s = self.stream
        prediction = s.prediction().annotation
        working = s.working()
        index = s.index
        if self._display is None or self._display[0] != index:
            image = s.frame(index)
            self._display = (index, display_image(image), (int(image.shape[1]), int(image.shape[0])))
        return self._display[1], self._display[2], working, prediction

    def _show(self, index: int, data: bytes, size: tuple[int, int], ann: Annotation | None, *,
              view_only: bool, banner: str = "", objects: list[Any] | None = None) -> None:
        self._next_image_id += 1
        name = self.stream.names[index]
        with self.canvas.hold_sync():
            self.canvas.view_only = view_only
            self.canvas.set_image(data, size, image_id=self._next_image_id,
                                  name=f"{name} ({index + 1} of {len(self.stream)})", annotation=ann)
            if objects is not None:
                self.canvas.objects = objects
            self.canvas.message = banner

    def _finished(self) -> None:
        st = self.stream.stats()
        self.strip.current = len(self.stream)
        self.strip.message = (
            f"The stream is finished: all {st['frames']} frames done, {st['corrections']} corrected and "
            f"{st['accepted']} accepted as predicted. Save the adapter to start a similar stream from it.")
        self.canvas.view_only = True
        self.canvas.message = "The stream is finished"
        self._refresh_stats()

    async def _submit(self, image_id: int, stale: str | None = None) -> None:
        """Enter / Accept: the frame's final label is what the canvas shows (see the module docstring)."""
        s = self.stream
        if self.canvas.image_id != image_id:
            if stale is not None:
                raise WireError(stale)
            return  # a second Enter while the first one moved on: it was for the frame now done
        if self._viewing is not None:
            await self._back_to_current()  # Enter on a frame looked back at returns to the work
            return
        if s.done:
            raise WireError("the stream is finished")
        ann = self.canvas.annotation()  # WireError: a readable message, nothing changes
        edited = await asyncio.to_thread(lambda: not same_labels(ann, s.working()))
        trains = s.adapt and (edited or self._session_clicks > 0)
        self.canvas.view_only = True  # no edits to a frame while it is being submitted
        self.strip.busy = "training" if trains else "predicting"
        try:
            rec, nxt = await asyncio.to_thread(self._finish_frame, ann if edited else None)
        except BaseException:
            self.canvas.view_only = False
            raise
        finally:
            self.strip.busy = ""
        self._session_clicks = 0
        marks = list(self.strip.marks)
        marks[rec.index] = "corrected" if rec.corrected else "accepted"
        with self.strip.hold_sync():
            self.strip.marks = marks
            self.strip.frame_clicks = 0
            self.strip.message = _record_text(rec)
            self.strip.error = ""
        if nxt is None:
            self._finished()
            return
        data, size, working, prediction = nxt
        self._show(s.index, data, size, working, view_only=False)
        if not self.segmentation:
            self.canvas.set_prelabels(prediction)
        self.strip.current = s.index
        self._refresh_stats()

    def _finish_frame(self, correction: Annotation | None) -> tuple[Any, Any]:
        """In a worker thread: the frame's final label (training the adapter if it was corrected), then the
        next frame's prediction, with the adapter just trained."""
        s = self.stream
        rec = s.correct(correction) if correction is not None else s.accept()
        return rec, None if s.done else self._prepare_current()

    async def _click(self, request: ClickRequest) -> None:
        s = self.stream
        if self.canvas.image_id != request.image_id or self._viewing is not None or s.done:
            raise WireError("that click was for a frame that is no longer shown")
        ann = self.canvas.annotation()
        new = await asyncio.to_thread(self._apply_click, ann, request)
        if self.canvas.image_id != request.image_id:
            raise WireError("that click was for a frame that is no longer shown")
        self.canvas.set_annotation(new)
        with self.strip.hold_sync():
            self.strip.clicks = self.strip.clicks + 1
            self.strip.frame_clicks = self.strip.frame_clicks + 1

    def _apply_click(self, ann: Annotation, request: ClickRequest) -> Annotation:
        """In a worker thread: the session's click, on what the screen shows (after a brush stroke or an
        undone click the canvas differs from the session's working annotation, and the click edits the
        screen's version, which becomes the working one)."""
        s = self.stream
        painted = not same_labels(ann, s.working())
        if painted and s.model.promptable:
            raise WireError("you painted on this frame since your last click, and the model would redraw the "
                            "object over it: press Enter to submit your painting, or undo it first")
        new = s.click(request.x, request.y, request.positive, request.label, on=ann if painted else None)
        self._session_clicks += 1
        return new

    # ------------------------------------------------------------------------------ adapter
    async def _reset(self) -> None:
        if self._viewing is not None:
            await self._back_to_current(restore=False)
        self.strip.busy = "predicting"
        try:
            await asyncio.to_thread(self.stream.reset_adapter)  # re-predicts the current frame
        finally:
            self.strip.busy = ""
        self._session_clicks = 0
        self.strip.frame_clicks = 0
        message = "Adapter reset: predictions come from the base model again."
        if not self.stream.done:
            message += " This frame was predicted again; its corrections so far are gone."
            await self._show_current()
        self.strip.message = message
        self._refresh_stats()

    async def _save(self) -> None:
        self.strip.busy = "saving"
        try:
            path = await asyncio.to_thread(self.stream.save_adapter, self.adapter_dir)
        finally:
            self.strip.busy = ""
        self.strip.message = f"Adapter saved to {path}"
        self._refresh_stats()

    # ------------------------------------------------------------------------------ looking back
    async def _view(self, index: int) -> None:
        s = self.stream
        if index == s.index:
            if self._viewing is not None:
                await self._back_to_current()
            return
        if index not in s.labels:
            raise WireError(f"frame {index + 1} is not done yet: frames are corrected in order")
        if self._viewing is None and not s.done:
            self._stash = (list(self.canvas.objects), self.canvas.category)
        image = await asyncio.to_thread(s.frame, index)
        data = await asyncio.to_thread(display_image, image)
        mark = "corrected ✎" if self.strip.marks[index] == "corrected" else "accepted ✓"
        back = "the stream is finished" if s.done else f"Enter or frame {s.index + 1} in the strip goes back"
        self._show(index, data, (int(image.shape[1]), int(image.shape[0])), s.labels[index], view_only=True,
                   banner=f"Frame {index + 1}, {mark}: view only ({back})")
        self._viewing = index
        self.strip.viewing = index

    async def _back_to_current(self, restore: bool = True) -> None:
        stash, self._stash = self._stash, None
        self._viewing = None
        self.strip.viewing = -1
        if self.stream.done:
            self._finished()
            return
        if stash is None or not restore:
            await self._show_current()
            return
        objects, category = stash  # the corrections made before looking back
        await self._show_current(objects)
        if not self.segmentation:
            self.canvas.category = category

    # ------------------------------------------------------------------------------ strip
    def _refresh_stats(self) -> None:
        self.strip.stats = self.stream.stats()

    async def _thumbnails(self) -> None:
        """Small JPEGs of every frame, made in a worker thread while the person works, sent once."""
        thumbs = await asyncio.to_thread(lambda: [_thumbnail(self.stream.frame(i)) for i in range(len(self.stream))])
        self.strip.thumbs = thumbs


# ------------------------------------------------------------------------------------------ helpers
def same_labels(a: Annotation, b: Annotation) -> bool:
    """Whether two annotations of a frame say the same: the same category, or the same pixels for every
    class (instance splits, order and scores aside)."""
    if (a.width, a.height) != (b.width, b.height):
        return False
    if a.category is not None or b.category is not None:
        return a.category == b.category
    ma, mb = class_masks(a), class_masks(b)
    keys = {c for c, m in ma.items() if m.any()} | {c for c, m in mb.items() if m.any()}
    empty = np.zeros((a.height, a.width), bool)
    return all(np.array_equal(ma.get(c, empty), mb.get(c, empty)) for c in keys)


def _index(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WireError(f"{what} must be a frame number (0 or more), got {str(value)[:40]!r}")
    return value


def _frame_list(frames: str | os.PathLike[str] | Sequence[Any] | None) -> list[Any] | None:
    if frames is None:
        return None
    if isinstance(frames, (str, os.PathLike)):
        folder = Path(frames)
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder of frames; pass a folder or a list of frames")
        found = list_images(folder)
        if not found:
            raise ValueError(f"{folder} holds no images")
        return list(found)
    return list(frames)


def _make_stream(model: Any, frames: list[Any] | None, names: Sequence[str] | None,
                 classes: Sequence[str] | None, adapter: Any, adapt: bool,
                 click_radius: float | None) -> StreamSession:
    if isinstance(model, StreamSession):
        if frames is not None or names is not None:
            raise ValueError("a StreamSession brings its own frames: pass frames to it (or use its new_stream)")
        if isinstance(adapter, AdapterConfig):
            raise ValueError("the session's adapter is built already; an AdapterConfig applies to a new model")
        return model
    if frames is None:
        raise ValueError("frames are needed: a folder, or a list of paths or arrays in order")
    if not frames:
        raise ValueError("the stream has no frames")
    config = adapter if isinstance(adapter, AdapterConfig) else None
    if isinstance(model, StreamModel):
        if config is not None:
            raise ValueError("the model's adapter is built already; an AdapterConfig applies to a new model")
        if classes is not None and list(model.classes) != [str(c) for c in classes]:
            raise ValueError(f"the model knows classes {model.classes}, not {list(classes)}")
        stream_model = model
    elif hasattr(model, "correction_model"):  # a LiveSession: copy its model between training steps
        stream_model = model.correction_model(config)
        if classes is not None and list(stream_model.classes) != [str(c) for c in classes]:
            raise ValueError(f"the session's model knows classes {stream_model.classes}, not {list(classes)}")
    else:
        stream_model = create_stream_model(model, classes=classes, adapter=config)
    return StreamSession(stream_model, frames, names=names, adapt=adapt, click_radius=click_radius)


def _stream_name(frames: Any, stream: StreamSession) -> str:
    if isinstance(frames, (str, os.PathLike)):
        return Path(frames).resolve().name or "stream"
    first = stream.frames[0] if len(stream) else None
    if isinstance(first, (str, os.PathLike)):
        return Path(first).resolve().parent.name or "stream"
    return "stream"


def _marks(stream: StreamSession) -> list[str]:
    marks = [""] * len(stream)
    for rec in stream.records:
        marks[rec.index] = "corrected" if rec.corrected else "accepted"
    return marks


def _record_text(rec: Any) -> str:
    if not rec.corrected:
        return f"{rec.name}: accepted as predicted."
    how = "painted" if rec.full else f"{rec.clicks} click{'s' if rec.clicks != 1 else ''}"
    if rec.update is None:
        return f"{rec.name}: corrected ({how}); the adapter is off."
    u = rec.update
    if u.stopped == "reverted":
        return (f"{rec.name}: corrected ({how}); the adapter's update was taken back ({u.seconds:.2f} s): it "
                f"made the last confirmed frames worse.")
    return f"{rec.name}: corrected ({how}); adapter updated in {u.seconds:.2f} s ({u.epochs} epochs)."


def _thumbnail(image: np.ndarray) -> bytes:
    img = Image.fromarray(image)
    img.thumbnail(THUMB_SIZE, Image.BILINEAR)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=75)
    return buf.getvalue()


__all__ = ["StreamAnnotator", "StreamStrip", "same_labels"]
