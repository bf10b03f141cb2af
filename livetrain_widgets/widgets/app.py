"""``LiveAnnotator``: the whole labeling app in one call: canvas, live panel and live plots.

    app = LiveAnnotator("path/to/images", task="detection", classes=["RBC", "WBC", "Platelets"],
                        project="runs/cells")
    app                              # label; the model trains in this kernel while you do

This module is the only place that connects widgets to a :class:`~livetrain_widgets.LiveSession`:
the canvas and panel report what the person did, the app turns it into session calls on the kernel's
event loop, and nothing here trains or draws. Every action runs as a task on the loop, one at a time
(a double Enter does not submit twice); a failure shows in the panel and loses nothing — the canvas
keeps its objects until a submission is committed.

While the person labels an image, the app sends the image a submission will open (the next unlabeled
one) to the canvas ahead, with its pre-labels once the session has computed them ahead
(``LabelCanvas.set_next``): Finish & Next then shows it at once, and opening it here serves the same
pre-labels, so the view keeps what it showed. A refused submission answers ``stay``.

**A team** (several annotators, one trainer; see :mod:`livetrain_widgets.engine.team`): with ``store=``
(the team's store URL) and ``backend=`` (the trainer's Ray address), the session is a
:class:`~livetrain_widgets.engine.team.TeamSession` and the app is the same, with three differences.
Opening an image leases it: an image another annotator holds is not opened, the next free one is,
and the panel says why. The panel shows who else is labeling, and the quality and training state are
the team's trainer's. The trainer is not this notebook's to start or stop, and its live plots are not
here (they read the trainer's internals, which live in the trainer's process).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Coroutine, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..engine._sql import redact
from ..engine.annotation import Annotation
from ..engine.session import LiveSession, Prediction, SessionConfig
from ..engine.store import LeaseLost
from ..engine.team import TeamSession
from ._codec import WireError, display_image
from ._watch import SessionWatcher, kernel_loop
from .canvas import LabelCanvas
from .panel import LivePanel

log = logging.getLogger("livetrain_widgets")

#: pre-labels under this confidence are not sent to the canvas at all (the slider starts above it)
MIN_SENT_SCORE = 0.05


#: how many open/predict timings an app keeps (``LiveAnnotator.timings``)
MAX_TIMINGS = 2000

#: the panel's settings kept with the project (the store's meta ``app_settings``) and restored on reopening
PANEL_SETTINGS = ("threshold", "auto_threshold", "skip_predict_if_labeled", "semantic")


class LiveAnnotator(widgets.VBox):
    """The labeling app (see the module docstring). Parts are attributes: ``session``, ``canvas``,
    ``panel``, ``plots``; each is also usable on its own.

    Parameters
    ----------
    images: a folder, a list of paths / arrays / PIL images, or None to label what the project has.
    task, classes: as for :class:`~livetrain_widgets.LiveSession` (stored with a new project).
    project: the project folder (labels, checkpoints); default ``livetrain-<folder name>``.
    labels, format: existing labels to import (see ``LiveSession.add_images``).
    canvas: a :class:`LabelCanvas` of your own, or a ``jupyter_bbox_widget.BBoxWidget`` (detection).
    plots: show the live plots below the canvas (default: yes, alone; a team's app has none, see below).
    start: start training at once (otherwise the panel's button does).
    session: a :class:`~livetrain_widgets.LiveSession` (or a team's ``TeamSession``) opened already.

    A team's annotator (see the module docstring) gives instead:

    store: the team's store URL (``"postgresql://user@host/db"``); task and classes come from it (given,
        they must match).
    backend: where the team's trainer runs: a Ray address (``"ray://head:10001"``, ``"auto"``; see
        ``livetrain serve``), or a trainer object (a same-process ``TeamTrainer``, or a handle).
    user: the name the others see and the store records (default: the login name).

    ``project``, ``model`` and ``model_options`` are the trainer's there, and ``plots=True`` is refused:
    the plots read the trainer's internals, which are in the trainer's process, not in this kernel.
    """

    def __init__(
        self,
        images: str | os.PathLike[str] | Sequence[Any] | None = None,
        task: str | None = None,
        classes: Sequence[str] | None = None,
        *,
        project: str | os.PathLike[str] | None = None,
        model: Any = "embedded",
        model_options: dict[str, Any] | None = None,
        config: SessionConfig | None = None,
        labels: str | os.PathLike[str] | None = None,
        format: str | None = None,
        canvas: Any = None,
        plots: bool | None = None,
        start: bool = True,
        session: LiveSession | TeamSession | None = None,
        height: int = 440,
        backend: Any = None,
        store: str | os.PathLike[str] | None = None,
        user: str | None = None,
    ) -> None:
        team = store is not None or backend is not None or isinstance(session, TeamSession)
        if plots is None:
            plots = not team
        elif plots and team:
            raise ValueError("a team's app has no live plots: they read the trainer's internals, which are in "
                             "the trainer's process, not in this kernel (drop plots=True)")
        if store is not None or backend is not None:
            if session is not None:
                raise ValueError("give either session= or a team's store= and backend=, not both")
            if project is not None:
                raise ValueError("a team's annotator has no project folder: the trainer keeps the project "
                                 "(drop project=, or drop store= and backend= to label alone)")
            session = _team_session(backend, store, user, config)
            _check_same_project(session, task, classes)
        elif user is not None:
            raise ValueError("user= names an annotator of a team: give the team's store= and backend= too")
        if session is None:
            if project is None:
                if not isinstance(images, (str, os.PathLike)):
                    raise ValueError("say where to keep the labels and the model: project='runs/my-project'")
                project = Path(f"livetrain-{Path(images).resolve().name}")
            session = LiveSession(project, task, classes, model=model, config=config,
                                  model_options=model_options)
        self.session: Any = session
        #: a team's annotator (a TeamSession: leases, the team's trainer) rather than one person alone
        self.team = team
        if images is not None and not team:
            session.add_images(images, labels=labels, format=format)
        self.canvas = _as_canvas(canvas, session, height)
        self.panel = LivePanel(session)
        self.plots: widgets.Widget | None = None
        children: list[widgets.Widget] = [self.panel, self.canvas.widget]
        if plots:
            from .plots import LivePlots

            self.plots = LivePlots(session)
            children.append(self.plots)
        super().__init__(children=children)
        self.add_class("lt-app")

        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._history: list[int] = []  # images opened, for Back
        self._autolabel: asyncio.Task[int] | None = None
        # The last raw prediction of the images shown lately (the semantic switch redraws from it);
        # bounded like the display cache: with masks, one per image of a long session adds up.
        self._predictions: OrderedDict[int, Annotation] = OrderedDict()
        self._display_cache: OrderedDict[int, bytes] = OrderedDict()
        #: kernel-side figures: open and predict times (the newest ``MAX_TIMINGS``)
        self.timings: list[dict[str, Any]] = []
        # The image sent ahead to the canvas (what a submission opens next) and what was last sent of it.
        self._next_id: int | None = None
        self._next_sent: tuple[Any, ...] | None = None
        if isinstance(self.canvas, LabelCanvas):
            # The panel's Finish & Next goes through the canvas, which can show the next image at once.
            self.canvas.group = self.panel.group = uuid.uuid4().hex
            SessionWatcher.of(session).add(self._refresh_next)

        self.canvas.on_action(self._on_action)
        self.panel.on_action(self._on_action)
        self._settings = self._restore_settings()
        self.panel.observe(self._save_settings, names=list(PANEL_SETTINGS))
        self.canvas.threshold = self.panel.threshold
        self.canvas.semantic = self.panel.semantic
        self.panel.observe(self._on_threshold, names=["threshold", "auto_threshold"])
        self.panel.observe(self._on_semantic, names=["semantic"])
        self.canvas.on_change(self._count_prelabels)

        first = self._first_image()
        if start or team:  # a team's session always runs: its heartbeat keeps the lease and the state
            self._spawn(self._start())
        if team and images is not None:
            # Through the trainer (a coroutine there), so on the loop: the images join the project for
            # everyone, and their paths must be readable by the trainer and by the other annotators.
            self._spawn(self._locked(self._add_and_open(images, labels, format)))
        elif first is not None:
            self._spawn(self._locked(self._open_first(first)))
        elif team:
            self.panel.error = ("No images yet: the team's trainer adds them (or here: "
                                "await app.session.add_images(...), then app.next())")
        else:
            self.panel.error = "No images yet: add some with app.session.add_images(...) and call app.next()"

    # ------------------------------------------------------------------------------ public
    @property
    def image_id(self) -> int:
        """The image on the canvas (-1 = none)."""
        return self.canvas.image_id

    def next(self) -> None:
        """Open the next unlabeled image (what Skip does)."""
        self._on_action("skip")

    async def close(self) -> None:
        """Stop training (final checkpoint) and release the project."""
        self.stop_autolabel()
        for task in list(self._tasks):
            task.cancel()
        self.panel.unbind()
        SessionWatcher.of(self.session).remove(self._refresh_next)
        if self.plots is not None and hasattr(self.plots, "unbind"):
            self.plots.unbind()
        await self.session.close()

    def __del__(self) -> None:
        # ipywidgets' __del__ calls self.close(), a coroutine here that garbage collection cannot await
        # (it warned "never awaited" for every app dropped, e.g. one whose project was locked): only
        # the comm is closed, as for any widget. The session's own lock dies with the session.
        widgets.VBox.close(self)

    def autolabel(
        self,
        labeler: Callable[[str], Annotation | None],
        *,
        pause: float = 1.0,
        steps: int = 0,
        limit: int | None = None,
    ) -> asyncio.Task[int]:
        """Let a simulated labeler label by itself, through this app, while you watch (demos, lectures, CI).

        For each image the app opens, it waits until the pre-labels are on the canvas, lets you look
        at them for ``pause`` seconds (and for ``steps`` training steps, if given, so the model learns
        between images as it would while a person draws), then puts ``labeler(name)`` on the canvas and
        submits it like Finish & Next. Panel, plots and the evaluator move exactly as for a person.
        ``labeler`` gets the image's file name and returns its annotation, or None to skip the image
        (:meth:`livetrain_widgets.demo.DemoImages.truth` is one). Stops after ``limit`` submissions,
        when nothing is left to label, or on :meth:`stop_autolabel`; the task's result is the number of
        images it submitted. A submission that fails stops it, with the reason in the panel.
        """
        if self._autolabel is not None and not self._autolabel.done():
            raise RuntimeError("a simulated labeler is already running: app.stop_autolabel() first")
        loop = kernel_loop()
        if loop is None:
            raise RuntimeError("autolabel runs on a Jupyter kernel's event loop (or inside asyncio.run)")
        self._autolabel = loop.create_task(self._run_autolabel(labeler, pause, steps, limit))
        return self._autolabel

    def stop_autolabel(self) -> None:
        """Stop the simulated labeler after the image it is on (nothing half-submitted is stored)."""
        if self._autolabel is not None:
            self._autolabel.cancel()

    async def _run_autolabel(self, labeler: Callable[[str], Annotation | None], pause: float, steps: int,
                             limit: int | None) -> int:
        done = 0
        passed: set[int] = set()  # images the labeler had no answer for
        self.panel.busy = "Simulated labeler…"
        try:
            while limit is None or done < limit:
                await self.wait_idle()  # the image is open and its pre-labels are drawn
                image_id = self.canvas.image_id
                if image_id < 0:
                    break
                if self.session.is_labeled(image_id) or image_id in passed:
                    nxt = self._next_unlabeled(after=image_id, exclude=passed)
                    if nxt is None:
                        break  # everything is labeled or passed (the app stays where it is)
                    await self._locked(self._open(nxt))
                    continue
                ann = labeler(self.session.store.image(image_id).name)
                if ann is None:
                    passed.add(image_id)
                    continue
                if pause > 0:
                    await asyncio.sleep(pause)
                if steps > 0:
                    await self.session.wait_steps(steps, timeout=max(60.0, 10.0 * steps))
                self.canvas.set_annotation(ann)
                try:
                    await self._locked(self._submit(image_id), image_id)
                except Exception as exc:  # refused: say why and stop, rather than retry forever
                    self._error(str(exc) if isinstance(exc, WireError) else f"{type(exc).__name__}: {exc}")
                    break
                done += 1
                self.panel.busy = f"Simulated labeler: {done} submitted"
        finally:
            if self.panel.busy.startswith("Simulated labeler"):  # not a "Predicting…" of the next image
                self.panel.busy = ""
        return done

    async def wait_idle(self) -> None:
        """Wait until every action started so far has finished (for scripts and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ----------------------------------------------------------------------------- actions
    def _on_action(self, action: str) -> None:
        # The image the person was looking at when they acted: a queued action that finds another
        # image on the canvas (a double Enter) is dropped instead of acting on the wrong image.
        image_id = self.canvas.image_id
        if action == "discard":
            self.canvas.discard_prelabels()
        elif action == "accept":
            self.canvas.accept_prelabels()
        elif action == "predict":
            self._spawn(self._predict(image_id, forced=True))
        elif action in ("start", "stop") and self.team:
            # The trainer is the team's: one annotator does not stop it for the others (and stopping
            # this session would only drop its lease and its view of the trainer).
            self._error("The team's trainer trains for everyone: it is started and stopped where it is "
                        "served, not from an annotator's panel")
        elif action == "start":
            self._spawn(self._start(past_plateau=True))
        elif action == "stop":
            self._spawn(self._stop())
        elif action in ("submit", "skip", "back"):
            work = {"submit": self._submit, "skip": self._skip, "back": self._back}[action]
            self._spawn(self._locked(work(image_id), image_id))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        loop = kernel_loop()
        if loop is None:
            coro.close()
            raise RuntimeError("LiveAnnotator runs on a Jupyter kernel's event loop (or inside asyncio.run); "
                               "for a plain script, drive a LiveSession instead")
        task = loop.create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except WireError as exc:
            self._error(str(exc))
        except Exception as exc:  # shown where the person looks; the canvas keeps its objects
            log.exception("livetrain: action failed")
            self._error(f"{type(exc).__name__}: {exc}")

    async def _locked(self, coro: Coroutine[Any, Any, Any], image_id: int | None = None) -> None:
        async with self._lock:
            if image_id is not None and self.canvas.image_id != image_id:
                coro.close()  # stale: the canvas moved on while this waited
                return
            await coro

    def _error(self, message: str) -> None:
        self.panel.error = message
        self.canvas.show_error(message)

    async def _start(self, *, past_plateau: bool = False) -> None:
        if past_plateau:  # the Start button: a person asks for training (never a team's: refused above)
            await self.session.start(past_plateau=True)
        else:  # the app opening a project: a plateau it had stands (a TeamSession takes no past_plateau)
            await self.session.start()
        self.panel.refresh(self.session)

    async def _add_and_open(self, images: Any, labels: Any, format: str | None) -> None:
        await self.session.add_images(images, labels=labels, format=format)
        first = self._first_image()
        if first is None:
            raise WireError("No images yet: the team's trainer adds them")
        await self._open(first)

    async def _open_first(self, image_id: int) -> None:
        await self._open(image_id)
        if self.session.next_unlabeled() is None:  # a finished project reopened: it says so
            self.panel.notice = finished_message(len(self.session.image_ids))

    async def _stop(self) -> None:
        self.panel.busy = "Saving…"
        try:
            await self.session.stop()
        finally:
            self.panel.busy = ""
        self.panel.refresh(self.session)

    async def _submit(self, image_id: int) -> None:
        try:
            if image_id < 0:
                raise WireError("no image is shown")
            ann = self.canvas.annotation()  # WireError: a readable message, nothing stored
            self.panel.busy = "Saving…"
            try:
                await self.session.submit(image_id, ann, threshold=self.canvas.effective_threshold)
            except LeaseLost as exc:
                # A team's store refused it: the image went to someone else while this lease had lapsed
                # (nothing was written). Named, so the person knows whom to talk to; the canvas keeps
                # the objects (the finally below keeps the view on this image).
                name = self.session.store.image(image_id).name
                what = (f"{exc.holder} is labeling {name} now" if exc.holder else
                        f"{name} was released or labeled by someone else")
                raise WireError(f"Not saved: {what} (your hold on it had lapsed). Your labels are still "
                                "here; Skip to go on.") from exc
            finally:
                self.panel.busy = ""
            self.panel.error = ""
            if self.team:
                # Who holds what as of now, not as of the last heartbeat: the next image is then one
                # nobody else has open, and "opened another instead" is left for true races.
                await asyncio.to_thread(self.session.refresh)
            self.panel.refresh(self.session)
            nxt = self._next_unlabeled(after=image_id)
            if nxt is None:
                n = len(self.session.image_ids)
                if self.team:
                    self.panel.error = f"No image is free: the {n} images are labeled or being labeled by others."
                else:
                    self.panel.notice = finished_message(n)
                return
            await self._open(nxt)
        finally:
            # Refused, nothing left, or the next image failed to open: a view that already showed the
            # next image (sent ahead) goes back to this one, as it was.
            if self.canvas.image_id == image_id and isinstance(self.canvas, LabelCanvas):
                self.canvas.stay(image_id)

    async def _skip(self, image_id: int) -> None:
        nxt = self._next_unlabeled(after=image_id, include_labeled=True)
        if nxt is not None:
            await self._open(nxt)

    async def _back(self, image_id: int) -> None:
        if len(self._history) < 2:
            raise WireError("there is no previous image")
        self._history.pop()  # the current image
        prev = self._history.pop()
        await self._open(prev)

    # ------------------------------------------------------------------------------ images
    def _first_image(self) -> int | None:
        ids = self.session.image_ids
        if not ids:
            return None
        nxt = self.session.next_unlabeled()
        return ids[0] if nxt is None else nxt

    def _next_unlabeled(self, after: int, include_labeled: bool = False,
                        exclude: Collection[int] = ()) -> int | None:
        """The next image in the project's order after ``after`` (wrapping) that has no labels yet (and is
        not in ``exclude``); with ``include_labeled`` (Skip), simply the next image. A session of one person
        chooses the next unlabeled image in its queue order (``SessionConfig.order``); a team's annotators
        go in file order."""
        ids = self.session.image_ids
        if not ids:
            return None
        if not include_labeled and isinstance(self.session, LiveSession):
            return self.session.next_unlabeled(after=after, exclude=exclude)
        start = ids.index(after) + 1 if after in ids else 0
        order = ids[start:] + ids[:start]
        if include_labeled:
            return order[0] if order else None
        return next((i for i in order if not self.session.is_labeled(i) and i != after and i not in exclude), None)

    async def _display_bytes(self, image_id: int) -> bytes:
        data = self._display_cache.get(image_id)
        if data is None:
            path = self.session.store.image(image_id).path
            data = await asyncio.to_thread(display_image, path)
            self._display_cache[image_id] = data
            while len(self._display_cache) > 4:
                self._display_cache.popitem(last=False)
        return data

    async def _claim(self, image_id: int) -> int:
        """A team's annotator leases an image before it is shown, so nobody else labels it meanwhile.
        Held by someone else: the next free image instead, and the panel says so; none free: WireError."""
        try:
            await self.session.claim(image_id)
            return image_id
        except LeaseLost as exc:
            who = exc.holder or "another annotator"
        name = self.session.store.image(image_id).name
        # Not the image on the canvas either: Skip or Back must not "open instead" the one they leave.
        tried = {image_id, self.canvas.image_id}
        while True:
            # The session learns who holds what at its next heartbeat; read the store now, so the pick
            # below already skips every image held at this moment.
            await asyncio.to_thread(self.session.refresh)
            nxt = self._next_unlabeled(after=image_id, exclude=tried)
            if nxt is None:
                raise WireError(f"{who} is labeling {name}, and no other image is free now "
                                "(all are labeled or being labeled)")
            try:
                await self.session.claim(nxt)
            except LeaseLost:
                tried.add(nxt)  # taken between the refresh and the claim: on to the one after
                continue
            self.panel.error = f"{who} is labeling {name}; opened {self.session.store.image(nxt).name} instead"
            return nxt

    async def _open(self, image_id: int) -> None:
        t0 = time.perf_counter()
        if self.team:
            image_id = await self._claim(image_id)
        rec = self.session.store.image(image_id)
        try:
            data = await self._display_bytes(image_id)
        except Exception as exc:
            raise WireError(f"{rec.name} could not be shown: {exc}") from exc
        ann = self.session.annotation(image_id)
        predict = not (self.panel.skip_predict_if_labeled and ann is not None and not ann.is_empty)
        pred: Prediction | None = None
        if predict and self.session.kept_prelabel(image_id) is not None:
            # Computed ahead: served at once (no forward pass), and sent with the image in one update, so
            # a view that showed this image ahead with these pre-labels (set_next) sees the same objects.
            try:
                pred = await self.session.predict(image_id, threshold=MIN_SENT_SCORE)
            except Exception:  # the image still opens; predicting it the usual way shows the problem
                log.exception("livetrain: serving the pre-labels computed ahead failed")
        prelabels = pred.annotation if pred is not None and pred.offered else None
        self.canvas.set_image(data, (rec.width, rec.height), image_id=image_id, name=rec.name, annotation=ann,
                              prelabels=prelabels)
        self.panel.notice = ""
        ids = self.session.image_ids
        self.panel.position = f"{rec.name} ({ids.index(image_id) + 1} of {len(ids)})"
        if not self._history or self._history[-1] != image_id:
            self._history.append(image_id)
        self.panel.can_back = len(self._history) > 1
        self._timing({"event": "open", "image_id": image_id, "ms": 1000 * (time.perf_counter() - t0)})
        if pred is not None:
            self._predicted(image_id, pred, shown=True)
        elif predict:
            self._spawn(self._predict(image_id))
        else:
            self.session.prefetch(self.session.upcoming(image_id))
        self._spawn(self._prepare_next(image_id))

    async def _prepare_next(self, image_id: int) -> None:
        """Encode the image a submission of this one opens, and send it ahead to the canvas with its kept
        pre-labels (the view shows it at once on Finish & Next; see LabelCanvas.set_next)."""
        nxt = self._next_unlabeled(after=image_id)
        if nxt is not None and nxt not in self._display_cache:
            try:
                await self._display_bytes(nxt)
            except Exception:  # opening it will report the problem
                nxt = None
        if self.canvas.image_id != image_id:
            return  # the person moved on: the open of that image prepares its own next
        self._next_id = nxt
        self._refresh_next()

    def _refresh_next(self, *_: Any) -> None:
        """Send the next image ahead, or its pre-labels again once the kept ones were recomputed (a few
        times a second from the session watcher; only what changed is sent)."""
        if not isinstance(self.canvas, LabelCanvas):
            return
        nxt = self._next_id
        if nxt is not None and nxt == self.canvas.image_id:
            return  # it just opened (the view ignores a next that is the current image); its open sends a new one
        data = None if nxt is None else self._display_cache.get(nxt)
        if nxt is None or data is None or self.session.is_labeled(nxt):
            if self._next_sent is not None:
                self._next_sent = None
                self.canvas.clear_next()
            return
        kept = self.session.kept_prelabel(nxt)
        offered = kept is not None and self.session.offering
        key = (nxt, kept[1] if offered else None, self.canvas.semantic)
        if key == self._next_sent:
            return
        self._next_sent = key
        rec = self.session.store.image(nxt)
        prelabels = kept[0].filter(MIN_SENT_SCORE) if offered else None
        self.canvas.set_next(data, (rec.width, rec.height), nxt, rec.name, prelabels,
                             step=kept[1] if offered else None)

    async def _predict(self, image_id: int, forced: bool = False) -> None:
        if image_id < 0:
            return
        self.panel.busy = "Predicting…"
        try:
            # Opening an image shows the pre-labels computed ahead; the Predict button asks for fresh ones.
            pred = await self.session.predict(image_id, threshold=MIN_SENT_SCORE, fresh=forced)
        finally:
            if self.canvas.image_id == image_id:
                self.panel.busy = ""
        self._predicted(image_id, pred, forced=forced)

    def _predicted(self, image_id: int, pred: Prediction, *, forced: bool = False, shown: bool = False) -> None:
        """Figures and bookkeeping of a prediction; shows its pre-labels unless they were (``shown``)."""
        self.panel.predict_ms = round(pred.seconds * 1000, 1)
        self._timing({"event": "predict", "image_id": image_id, "ms": pred.seconds * 1000,
                      "step": pred.step, "offered": pred.offered, "age": pred.age, "ahead": pred.ahead})
        if self.canvas.image_id != image_id:
            return  # the person moved on; the stored prediction is still judged if they come back
        self._predictions[image_id] = pred.annotation
        self._predictions.move_to_end(image_id)
        while len(self._predictions) > 4:
            self._predictions.popitem(last=False)
        self._apply_auto_threshold()  # the tuner learns with every submission: its newest choice
        if (pred.offered or forced) and not shown:
            self.canvas.set_prelabels(pred.annotation)
        self._count_prelabels()

    def _timing(self, record: dict[str, Any]) -> None:
        self.timings.append(record)
        if len(self.timings) > MAX_TIMINGS:  # a day of labeling must not grow the kernel without end
            del self.timings[: len(self.timings) - MAX_TIMINGS]

    # ----------------------------------------------------------------------------- settings
    def _settings_key(self) -> str:
        # In a team the store is everyone's: each annotator keeps their own settings.
        return f"app_settings:{self.session.user}" if self.team else "app_settings"

    def _restore_settings(self) -> dict[str, Any]:
        """The panel's settings as the project last saved them, applied to the panel (values that do not
        fit a setting are left out with a warning in the log; the rest still apply)."""
        try:
            saved = self.session.store.get_meta(self._settings_key())
        except Exception:  # a settings problem must not keep the project from opening
            log.exception("livetrain: the saved panel settings could not be read")
            return {}
        if not isinstance(saved, dict):
            return {}
        ok: dict[str, Any] = {}
        for name in PANEL_SETTINGS:
            value = saved.get(name)
            if name == "threshold":
                good = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
            else:
                good = isinstance(value, bool)
            if good:
                ok[name] = value
            elif name in saved:
                log.warning("livetrain: ignored the saved setting %s=%r", name, value)
        if not ok.get("auto_threshold", True) and "threshold" in ok:
            self.panel.set_trait("auto_threshold", False)  # first: the threshold is then the person's own
        with self.panel.hold_trait_notifications():
            for name, value in ok.items():
                if name != "threshold" or not self.panel.auto_threshold:
                    setattr(self.panel, name, value)
        return ok

    def _save_settings(self, _: Any = None) -> None:
        """Keep the panel's settings with the project (only when one the person sets changed)."""
        values = {name: getattr(self.panel, name) for name in PANEL_SETTINGS}
        if values["auto_threshold"]:
            # the threshold shown follows the tuner then: keep the person's last own one
            values["threshold"] = self._settings.get("threshold", values["threshold"])
        values["threshold"] = round(float(values["threshold"]), 4)
        if values == self._settings:
            return
        try:
            self.session.store.set_meta(self._settings_key(), values)
        except Exception:  # labeling goes on; the setting just will not come back
            log.exception("livetrain: the panel settings could not be saved")
            return
        self._settings = values

    def _on_threshold(self, change: dict[str, Any]) -> None:
        if change["name"] == "threshold" and self.canvas.class_thresholds:
            return  # "auto": the panel shows the chosen threshold, the canvas has one per class
        self.canvas.threshold = float(self.panel.threshold)
        self._apply_auto_threshold()
        self._count_prelabels()

    def _apply_auto_threshold(self) -> None:
        """Per-class thresholds chosen from the history while the panel's "auto" is on (and chosen yet);
        otherwise the slider's one threshold."""
        tuned = self.session.tuned_thresholds() if (
            self.panel.auto_threshold and self.session.config.auto_threshold) else None
        values = [round(float(v), 4) for v in tuned] if tuned is not None else []
        if list(self.canvas.class_thresholds) != values:
            self.canvas.class_thresholds = values

    def _on_semantic(self, change: dict[str, Any]) -> None:
        self.canvas.semantic = bool(change["new"])
        pred = self._predictions.get(self.canvas.image_id)
        if pred is not None and self.canvas.prelabel_count:
            self.canvas.set_prelabels(pred)
        self._refresh_next()  # the next image's pre-labels in the new form

    def _count_prelabels(self, *_: Any) -> None:
        self.panel.prelabels = self.canvas.prelabel_count


def finished_message(n: int) -> str:
    """What the panel says once every image is labeled: done, and what to do next."""
    return (f"All {n} images are labeled. Next: export the labels with app.session.export('coco', 'labels/'), "
            "the model with app.session.export_model('model/'), or add images with "
            "app.session.add_images('more/') and label on with app.next().")


def _team_session(backend: Any, store: str | os.PathLike[str] | None, user: str | None,
                  config: SessionConfig | None) -> TeamSession:
    """A team's annotator session: the store's URL, and the trainer reached through ``backend``."""
    if store is None:
        raise ValueError("backend= needs the team's store= too (e.g. store='postgresql://user@host/project')")
    if backend is None:
        raise ValueError("a team's store= needs backend=: where the team's trainer runs (a Ray address such "
                         "as 'ray://head:10001', or a TeamTrainer)")
    if isinstance(backend, str):
        from ..engine import ray_trainer  # imports nothing of Ray until called; Ray only for teams

        handle: Any = ray_trainer.connect(backend, str(store))
    else:
        handle = backend  # a same-process TeamTrainer, or a handle (TeamSession checks which)
    return TeamSession(store, handle, user=user, config=config)


def _check_same_project(session: TeamSession, task: str | None, classes: Sequence[str] | None) -> None:
    """A team's task and classes are the store's; ones given must agree (a wrong notebook, not a new
    project)."""
    wrong = None
    if task is not None and task != session.task:
        wrong = f"a {session.task!r} project, not {task!r}"
    elif classes is not None and list(classes) != list(session.classes):
        wrong = f"classes {session.classes}, not {list(classes)}"
    if wrong is not None:
        where = redact(session.store.url)  # a URL may carry a password: not into messages
        session.store.close()
        raise ValueError(f"the team's store {where} holds {wrong}: drop task=/classes= to use the store's")


def _as_canvas(canvas: Any, session: Any, height: int) -> Any:
    """The app's canvas: ours, one the user made, or an adapter around a jupyter-bbox-widget."""
    if canvas is None:
        return LabelCanvas(session.task, session.classes, height=height, threshold=session.config.threshold)
    if isinstance(canvas, LabelCanvas):
        if canvas.task != session.task or list(canvas.classes) != list(session.classes):
            raise ValueError(f"the canvas is for {canvas.task} with {list(canvas.classes)}; the project is "
                             f"{session.task} with {session.classes}")
        return canvas
    if type(canvas).__name__ == "BBoxWidget":
        from .bbox_adapter import BBoxCanvasAdapter

        return BBoxCanvasAdapter(canvas, session.task, session.classes)
    raise TypeError(f"canvas must be a LabelCanvas or a jupyter_bbox_widget.BBoxWidget, got {type(canvas).__name__}")
