"""A team labels one project with one live trainer.

Two sides, both plain asyncio (no Ray, no Jupyter here; :mod:`livetrain_widgets.engine.ray_trainer` puts
the trainer in a Ray actor and :class:`~livetrain_widgets.LiveAnnotator` puts a UI on an annotator)::

    trainer = TeamTrainer("runs/cells-trainer", "postgresql://lt@db/cells", "detection", ["RBC", "WBC"])
    await trainer.start()                       # trains, follows the store, predicts ahead

    me = TeamSession("postgresql://lt@db/cells", trainer, user="alice")   # or a Ray actor's handle
    await me.start()
    image_id = await me.claim_next()            # a lease: nobody else labels it while alice does
    pred = await me.predict(image_id)           # from the trainer, usually computed ahead
    await me.submit(image_id, annotation)       # committed to the store before it returns

**The store is the truth.** An annotator writes its labels straight to the shared store under its
lease (:meth:`AnnotationStore.submit`), so a submission is committed before it is acknowledged whether
or not the trainer is up; the trainer follows the store (:meth:`LiveSession.sync`, a few times a second
and at once when an annotator says it submitted) and trains on every label it finds. A trainer that
dies loses no label: restarted, it reopens its last checkpoint and reads the store again.

**Pre-labels for everyone.** The trainer predicts ahead, between training steps, the images each
annotator will open next: for each annotator's current image (its lease), the first free images after
it, in the project's order, which is the order annotators take them in.

**While the trainer is away** (restarting after a crash, a network cut), an annotator's session says
"reconnecting", keeps labeling without pre-labels, and picks the trainer up again when it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ._checks import check_image_id, check_threshold
from .ahead import AheadConfig
from .annotation import Annotation
from .formats import export_labels
from .images import load_image
from .store import AnnotationStore, Lease, LeaseLost

log = logging.getLogger("livetrain_widgets")

#: what an annotator's session may ask of the trainer (anything else is refused by the actor)
TRAINER_CALLS = frozenset({"status", "predict", "kept", "wait_steps", "add_images", "checkpoint", "ping"})


class TrainerUnavailable(ConnectionError):
    """The team's trainer does not answer now (restarting, or unreachable); labels still save."""


# ------------------------------------------------------------------------------------------ trainer
class TeamTrainer:
    """The one trainer of a team's project: a :class:`LiveSession` on the shared store that follows what
    annotators submit, predicts ahead for all of them, and answers their requests.

    ``project`` is the trainer's own folder (checkpoints, and the lock that keeps a second trainer off
    the project); ``store`` the team's store URL. The other arguments are :class:`LiveSession`'s. Without
    a ``config``, pre-labels of up to 8 images are kept ready (2 per annotator for 4 annotators).
    """

    def __init__(
        self,
        project: str | os.PathLike[str],
        store: str | os.PathLike[str],
        task: str | None = None,
        classes: Sequence[str] | None = None,
        *,
        model: Any = "embedded",
        model_options: dict[str, Any] | None = None,
        config: Any = None,
        poll_s: float = 0.5,
    ) -> None:
        from .session import LiveSession, SessionConfig

        if config is None:
            config = SessionConfig(ahead=AheadConfig(images=8))
        self.session = LiveSession(project, task, classes, model=model, model_options=model_options,
                                   config=config, store=store, user="livetrain-trainer")
        self.poll_s = float(poll_s)
        self.opened_at = time.time()
        #: the checkpoint step it resumed from (None: a fresh model), for "restarted from step N"
        self.resumed_step = self.session.last_checkpoint_step
        self._leases: list[Lease] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.sync_error: str | None = None
        self._rate: tuple[float, int] | None = None
        self._steps_per_s: float | None = None

    @property
    def running(self) -> bool:
        """Whether it follows the store (started, not closed)."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Take in the store, start training and following the store (idempotent)."""
        if self.running:
            return
        await self.session.sync()
        await self.session.start()
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="livetrain-team-follow")

    async def close(self) -> None:
        """Stop following and training; final checkpoint; release the project."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.session.close()

    def notify(self) -> None:
        """An annotator committed a label: look at the store now rather than at the next poll."""
        if self._wake is not None:
            self._wake.set()

    async def _follow(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await self.sync()
                self.sync_error = None
            except Exception as exc:  # a store hiccup: say it, keep training on what is there, retry
                if self.sync_error is None:
                    log.warning("livetrain: the trainer could not read the store: %s", exc)
                self.sync_error = f"the trainer could not read the store: {exc}"
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()

    async def sync(self) -> list[int]:
        """Take in new labels and images, and re-aim the pre-labels computed ahead at the annotators."""
        fresh = await self.session.sync()
        self._leases = await asyncio.to_thread(self.session.store.active_leases)
        self.session.prefetch(self.queue())
        now, step = time.monotonic(), self.session.trainer.step
        if self._rate is None or now - self._rate[0] >= 5.0:
            if self._rate is not None and step >= self._rate[1]:
                self._steps_per_s = (step - self._rate[1]) / (now - self._rate[0])
            self._rate = (now, step)
        return fresh

    def queue(self) -> list[int]:
        """The images annotators open next, most urgent first: for each annotator's current image, the
        first two free ones after it (free: unlabeled, no live lease); with nobody labeling, the first
        free ones."""
        s = self.session
        held = {lease.image_id for lease in self._leases}
        ids = s.image_ids
        free = [i for i in ids if not s.is_labeled(i) and i not in held]
        n = s.config.ahead.images
        if not self._leases:
            return free[:n]
        want: list[int] = []
        for lease in sorted(self._leases, key=lambda x: x.image_id):
            after = [i for i in free if i > lease.image_id] + [i for i in free if i < lease.image_id]
            want.extend(i for i in after[:2] if i not in want)
        return want[:n]

    # ----------------------------------------------------------------- what annotators ask for
    async def ping(self) -> int:
        """The trainer's process id: it answers, and which process it is (a restart changes it)."""
        return os.getpid()

    async def predict(self, image_id: int, threshold: Any = None, fresh: bool = False) -> Any:
        """:meth:`LiveSession.predict`, then the ahead queue goes back to the team's order."""
        pred = await self.session.predict(int(image_id), threshold=threshold, fresh=fresh)
        self.session.prefetch(self.queue())
        return pred

    async def kept(self, image_ids: Sequence[int], known: dict[int, int] | None = None
                   ) -> dict[int, tuple[Annotation, int] | None]:
        """The pre-labels kept ready for these images (all candidates, unfiltered) and their model step;
        None for an image with none. An image whose kept step the caller already has (``known``: image
        -> step) is left out, so a heartbeat only carries what changed (masks are large)."""
        known = known or {}
        out: dict[int, tuple[Annotation, int] | None] = {}
        for i in image_ids:
            kept = self.session.kept_prelabel(int(i))
            if kept is None:
                out[int(i)] = None
            elif known.get(int(i)) != kept[1]:
                out[int(i)] = kept
        return out

    async def wait_steps(self, n: int, timeout: float | None = None) -> int:
        """Wait for ``n`` more training steps (returns early when training pauses)."""
        return await self.session.wait_steps(int(n), timeout)

    async def add_images(self, source: Any, labels: Any = None, format: str | None = None, *,
                         ignore_classes: Sequence[str] = ()) -> list[int]:
        """:meth:`LiveSession.add_images` on the trainer's side (paths must be readable there and by
        every annotator: a shared folder)."""
        return await asyncio.to_thread(self.session.add_images, source, labels, format,
                                       ignore_classes=list(ignore_classes))

    async def checkpoint(self) -> int | None:
        """Write a checkpoint now; returns its training step."""
        await self.session.checkpoint()
        return self.session.last_checkpoint_step

    async def status(self) -> dict[str, Any]:
        """The session's state, who holds which image, and the trainer's own figures."""
        state = self.session.state
        if self.sync_error and not state.error:
            state = replace(state, error=self.sync_error, message=f"Problem: {self.sync_error}")
        return {
            "state": state.as_dict(),
            "leases": [(lease.holder, lease.image_id) for lease in self._leases],
            "offering": self.session.offering,
            "thresholds": self.session.thresholds(),
            "steps_per_s": self._steps_per_s,
            "pid": os.getpid(),
            "opened_at": self.opened_at,
            "resumed_step": self.resumed_step,
            "queue": self.queue(),
        }


# ------------------------------------------------------------------------------------ annotators
class TrainerHandle(Protocol):
    """How an annotator reaches the trainer: a same-process :class:`TeamTrainer` or a Ray actor."""

    async def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any: ...

    def notify(self) -> None: ...


class LocalTrainer:
    """A :class:`TeamTrainer` on this event loop as a :class:`TrainerHandle` (tests, one machine)."""

    def __init__(self, trainer: TeamTrainer) -> None:
        self.trainer = trainer

    async def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        if method not in TRAINER_CALLS:
            raise AttributeError(f"the trainer has no call {method!r}")
        await self.trainer.start()
        return await asyncio.wait_for(getattr(self.trainer, method)(*args, **kwargs), timeout)

    def notify(self) -> None:
        self.trainer.notify()


def as_handle(trainer: Any) -> TrainerHandle:
    if isinstance(trainer, TeamTrainer):
        return LocalTrainer(trainer)
    if hasattr(trainer, "call") and hasattr(trainer, "notify"):
        return trainer  # type: ignore[no-any-return]
    raise TypeError("expected a TeamTrainer or a trainer handle (see livetrain_widgets.engine.ray_trainer), "
                    f"got {trainer!r}")


class TeamSession:
    """One annotator of a team's project: labels go to the shared store under a lease, pre-labels and
    the shared model state come from the team's trainer. Offers what :class:`LiveAnnotator` uses of a
    :class:`LiveSession`, so the app is the same for one person and for a team.

    ``trainer``: a :class:`TeamTrainer` (same process) or a handle from
    :func:`livetrain_widgets.engine.ray_trainer.connect`. ``lease_ttl_s``: how long an image stays this
    annotator's without a heartbeat (it is renewed every third of that while the session runs), i.e.
    how soon an image comes back to the queue after its annotator went away.
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | AnnotationStore,
        trainer: Any,
        *,
        user: str | None = None,
        config: Any = None,
        lease_ttl_s: float = 60.0,
        poll_s: float = 0.5,
        call_timeout_s: float = 30.0,
    ) -> None:
        from .images import ImageCache
        from .session import SessionConfig, _default_user

        self.store = store if isinstance(store, AnnotationStore) else AnnotationStore(store)
        task, classes = self.store.get_meta("task"), self.store.get_meta("classes")
        if task is None or not classes:
            raise ValueError(f"{self.store.where} holds no project yet: start the team's trainer first "
                             "(livetrain serve ..., which creates it)")
        self.task: str = task
        self.classes: list[str] = list(classes)
        self.config = config or SessionConfig()
        self.user = user or _default_user()
        self.handle = as_handle(trainer)
        self.lease_ttl_s = float(lease_ttl_s)
        self.poll_s = float(poll_s)
        self.call_timeout_s = float(call_timeout_s)
        self._cache = ImageCache(self.config.image_cache_mb << 20)
        self._paths: dict[int, str] = {}
        self._labeled: set[int] = set()
        self._others: dict[int, str] = {}  # image -> who else holds it
        self._lease: Lease | None = None
        self._renewed = 0.0
        self._kept: dict[int, tuple[Annotation, int]] = {}
        self._want: list[int] = []
        self._remote: dict[str, Any] | None = None
        #: None: not asked yet; False: the last call failed (shown as "reconnecting")
        self.reachable: bool | None = None
        self._since_unreachable: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.lease_error: str | None = None
        self._refresh_store()

    # ------------------------------------------------------------------------------- the store
    def _refresh_store(self) -> None:
        if self.store.image_count() != len(self._paths):
            self._paths = {r.id: r.path for r in self.store.images()}
        self._labeled = set(self.store.labeled_ids())
        self._others = {x.image_id: x.holder for x in self.store.active_leases()
                        if self._lease is None or x.token != self._lease.token}

    def refresh(self) -> None:
        """Read the store now (images, labels, who holds what) rather than at the next heartbeat: the app
        does before it picks the next image (after a submission, after a refused lease), so that the
        image it picks is one nobody holds."""
        self._refresh_store()

    @property
    def image_ids(self) -> list[int]:
        """Every image of the project, in the order they were added (as :attr:`LiveSession.image_ids`)."""
        return list(self._paths)

    def image(self, image_id: int) -> np.ndarray:
        """The image as the model sees it: (H, W, 3) uint8 RGB, read from its shared path."""
        path = self._paths.get(image_id)
        if path is None:
            raise KeyError(f"no image with id {image_id} in this project")
        return self._cache.get(image_id, lambda: load_image(path))

    def annotation(self, image_id: int) -> Annotation | None:
        """The latest label of an image in the store, whoever submitted it, or None."""
        return self.store.annotation(image_id)

    def is_labeled(self, image_id: int) -> bool:
        """Labeled, or being labeled by another annotator now: either way not this annotator's next."""
        return image_id in self._labeled or image_id in self._others

    def next_unlabeled(self) -> int | None:
        """The first image nobody labeled and nobody else holds, or None."""
        return next((i for i in self._paths if not self.is_labeled(i)), None)

    def upcoming(self, after: int) -> list[int]:
        """The next two free images this annotator would open after ``after`` (wrapping)."""
        ids = list(self._paths)
        start = ids.index(after) + 1 if after in self._paths else 0
        return [i for i in ids[start:] + ids[:start] if i != after and not self.is_labeled(i)][:2]

    def prefetch(self, image_ids: Sequence[int]) -> None:
        """The images this annotator opens next: their kept pre-labels are fetched with each poll."""
        self._want = [int(i) for i in image_ids]

    def kept_prelabel(self, image_id: int) -> tuple[Annotation, int] | None:
        """The pre-label the trainer keeps ready for an image (fetched with the heartbeat) and its
        model step, or None."""
        return self._kept.get(image_id)

    def export(self, format: str, out: str | os.PathLike[str]) -> Path:
        """Write the team's labels so far (see :meth:`LiveSession.export`)."""
        return export_labels(format, out, self.store.labeled_items(), self.classes, self.task)

    # -------------------------------------------------------------------------------- leases
    @property
    def lease(self) -> Lease | None:
        """The lease on the image this annotator has open (None: none)."""
        return self._lease

    async def claim(self, image_id: int) -> Lease:
        """Hold the image while this annotator has it open; :class:`LeaseLost` names who holds it."""
        image_id = check_image_id(image_id)  # a lease is written too: "2" or 2.7 leased image 2
        if self._lease is not None and self._lease.image_id == image_id:
            return self._lease
        lease = await asyncio.to_thread(self.store.lease_image, image_id, self.user, self.lease_ttl_s)
        await self._release()
        self._lease, self._renewed = lease, time.monotonic()
        self._others.pop(image_id, None)
        return lease

    async def claim_next(self, after: int | None = None) -> int | None:
        """Lease the next free image from the store's queue (None: nothing free now)."""
        lease = await asyncio.to_thread(self.store.lease_next, self.user, self.lease_ttl_s, after=after)
        if lease is None:
            return None
        await self._release()
        self._lease, self._renewed = lease, time.monotonic()
        return lease.image_id

    async def _release(self) -> None:
        old, self._lease = self._lease, None
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.release, old)

    # ---------------------------------------------------------------------------- the trainer
    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            out = await self.handle.call(method, *args, timeout=self.call_timeout_s, **kwargs)
        except (TrainerUnavailable, asyncio.TimeoutError) as exc:
            if self.reachable is not False:
                self._since_unreachable = time.monotonic()
            self.reachable = False
            raise TrainerUnavailable(str(exc) or "the trainer did not answer in time") from exc
        self.reachable = True
        self._since_unreachable = None
        return out

    async def start(self) -> None:
        """Start the heartbeat: lease renewal, store and trainer state a few times a second."""
        if self._closed:
            raise RuntimeError("this session is closed")
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="livetrain-team-session")

    async def stop(self) -> None:
        """Stop this annotator's heartbeat and give its image back (the team's trainer goes on)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._release()

    async def close(self) -> None:
        """Stop the heartbeat, give the open image back, close the store connection."""
        if self._closed:
            return
        await self.stop()
        self.store.close()
        self._closed = True

    async def _run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.poll_s)

    async def poll(self) -> None:
        """One heartbeat (the running session does it every ``poll_s``)."""
        lease = self._lease
        if lease is not None and time.monotonic() - self._renewed > self.lease_ttl_s / 3:
            try:
                self._lease = await asyncio.to_thread(self.store.renew, lease)
                self._renewed = time.monotonic()
                self.lease_error = None
            except LeaseLost as exc:
                self._lease = None
                self.lease_error = str(exc)
            except Exception as exc:  # the store is away: the lease may lapse; submit says if it did
                self.lease_error = f"could not renew the lease: {exc}"
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._refresh_store)
        try:
            self._remote = await self._call("status")
            want = [i for i in self._want if i not in self._labeled]
            known = {i: self._kept[i][1] for i in want if i in self._kept}
            changed = await self._call("kept", want, known) if want else {}
            kept = {i: self._kept[i] for i in known}
            for i, k in changed.items():
                if k is None:
                    kept.pop(i, None)
                else:
                    kept[i] = k
            self._kept = kept
        except TrainerUnavailable:
            self._kept = {}
        except Exception as exc:  # a trainer-side bug must not stop the heartbeat
            log.warning("livetrain: asking the trainer failed: %s", exc)

    async def wait_steps(self, n: int, timeout: float | None = None) -> int:
        """Wait for ``n`` more training steps of the trainer (returns 0 at once while it is away)."""
        try:
            return int(await self._call("wait_steps", n, timeout))
        except TrainerUnavailable:
            return 0

    async def add_images(self, source: Any, labels: Any = None, format: str | None = None, *,
                         ignore_classes: Sequence[str] = ()) -> list[int]:
        """Add images through the trainer (their paths must be readable by it and by every annotator);
        ``labels``, ``format`` and ``ignore_classes`` as in :meth:`LiveSession.add_images`."""
        ids = await self._call("add_images", source, labels, format, ignore_classes=list(ignore_classes))
        await asyncio.to_thread(self._refresh_store)
        return list(ids)

    # ------------------------------------------------------------------------- predict, submit
    def thresholds(self) -> list[float]:
        """The confidence threshold per class the trainer shows pre-labels at (its tuner's choice)."""
        remote = (self._remote or {}).get("thresholds")
        return list(remote) if remote else [self.config.threshold] * len(self.classes)

    def tuned_thresholds(self) -> list[float] | None:
        """The per-class thresholds the trainer's tuner chose (None: none yet, or the trainer did not
        answer yet); :meth:`LiveSession.tuned_thresholds` for the team."""
        tuned = ((self._remote or {}).get("state") or {}).get("thresholds")
        return None if tuned is None else [float(v) for v in tuned]

    @property
    def offering(self) -> bool:
        """Whether the trainer offers pre-labels now (never while it does not answer)."""
        return bool((self._remote or {}).get("offering", False)) and self.reachable is not False

    async def predict(self, image_id: int, *, threshold: Any = None, fresh: bool = False) -> Any:
        """Pre-labels from the trainer; while it is away, none (``offered=False``) and the session says
        "reconnecting", so the image still opens and is labeled by hand."""
        from .session import Prediction

        image_id = check_image_id(image_id)
        if threshold is not None:
            threshold = check_threshold(threshold, len(self.classes))
        t0 = time.perf_counter()
        try:
            pred = await self._call("predict", int(image_id), threshold, fresh)
        except TrainerUnavailable:
            rec = self.store.image(image_id)
            return Prediction(int(image_id), Annotation(rec.width, rec.height), -1, False,
                              time.perf_counter() - t0, -1)
        # The images after this one open next: the heartbeat keeps their pre-labels here, so the app can
        # show the next image with them before it is opened (as alone; see LiveSession.predict).
        self.prefetch(self.upcoming(int(image_id)))
        self._kept.pop(int(image_id), None)
        # the round trip, as the annotator waits for it (the trainer's own figure leaves the network out)
        return replace(pred, seconds=time.perf_counter() - t0)

    async def submit(self, image_id: int, annotation: Annotation | dict[str, Any], *, source: str | None = None,
                     user: str | None = None, threshold: Any = None) -> int:
        """Commit the label to the store under this annotator's lease (taken now if it has none), then
        tell the trainer; returns the version. :class:`LeaseLost` if another annotator took the image
        over after this one's lease lapsed (nothing written; the message says who)."""
        from .session import check_annotation, infer_source

        image_id = check_image_id(image_id)  # before the commit, as LiveSession.submit
        thr = self.thresholds() if threshold is None else check_threshold(threshold, len(self.classes))
        ann = annotation if isinstance(annotation, Annotation) else Annotation.from_json(annotation)
        ann = check_annotation(self.store, self.task, len(self.classes), image_id, ann)
        pred, source = infer_source(self.store, image_id, ann, thr, source)
        lease = self._lease if self._lease is not None and self._lease.image_id == image_id else None
        if lease is None:
            lease = await self.claim(image_id)
        version = await asyncio.to_thread(
            self.store.submit, image_id, ann, source=source, user=user or self.user,
            prediction_id=None if pred is None else pred.id, lease=lease,
        )
        self._lease = None  # used up by the submission
        self._labeled.add(image_id)
        self._kept.pop(image_id, None)
        with contextlib.suppress(Exception):  # a hint only: the trainer also polls the store
            self.handle.notify()
        return int(version)

    # ---------------------------------------------------------------------------------- state
    @property
    def annotators(self) -> list[tuple[str, int]]:
        """(who, image id) of the other annotators labeling now."""
        return sorted(((who, i) for i, who in self._others.items()), key=lambda x: x[1])

    @property
    def state(self) -> Any:
        """The trainer's state (shared by the team), with this annotator's view of who else labels and
        whether the trainer answers."""
        from .session import SessionState

        remote = self._remote
        if remote is not None:
            state = SessionState(**remote["state"])
        else:
            state = SessionState("idle", "Connecting to the team's trainer…", 0, None, None, False, False, None, 0,
                                 len(self._labeled), len(self._paths), None, "", None, None)
        state = replace(state, labeled=len(self._labeled), images=len(self._paths),
                        team=[f"{who} (image {i})" for who, i in self.annotators])
        if self.reachable is False:
            away = time.monotonic() - (self._since_unreachable or time.monotonic())
            state = replace(state, phase="reconnecting", reconnecting=True, offering=False,
                            message=f"Reconnecting to the trainer ({away:.0f} s)… labels still save; "
                                    "pre-labels come back when it answers")
        elif self.lease_error:
            state = replace(state, message=f"{state.message} · {self.lease_error}")
        return state

