"""Predict ahead: pre-labels for the next images are ready before the person opens them.

Predicting when an image opens makes the person wait for one forward pass plus the wait for the step in
flight to reach a yield point (:mod:`.gate`): on a 2-core CPU that is a few hundred milliseconds, every
image. But the next images are known (the queue after the current one), and the model changes slowly
between two training steps. So while the person labels image *i*, :class:`PredictAhead` predicts images
*i+1*, *i+2*, ... between training steps and keeps each result with the model step that made it. Opening
one of them shows the kept pre-labels at once.

The refresh rule: a kept prediction is recomputed once the model has taken ``refresh_steps`` steps since
it was made, so what the person sees is never more than about ``refresh_steps`` steps behind the
weights (plus the steps of one refresh round). A prediction older than ``max_age_steps`` (the
prefetcher could not keep up: a slow model, a long queue) is never shown; the image is predicted afresh
when it opens. A rollback of the weights or a restored checkpoint invalidates everything kept. The cost
is about ``images / refresh_steps`` forward passes per training step; ``stats()`` reports what was
served and how old it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .annotation import Annotation

log = logging.getLogger("livetrain_widgets")


@dataclass
class AheadConfig:
    """How far ahead pre-labels are computed, and how fresh they must be to be shown."""

    #: images after the current one whose pre-labels are kept ready (0 = predict when an image opens)
    images: int = 2
    #: a kept pre-label is recomputed once the model has taken this many steps since it was made
    refresh_steps: int = 10
    #: a kept pre-label this many steps older than the weights is never shown (the image is predicted
    #: afresh when it opens)
    max_age_steps: int = 30

    def __post_init__(self) -> None:
        if self.images < 0:
            raise ValueError(f"images must not be negative, got {self.images}")
        if self.refresh_steps < 1:
            raise ValueError(f"refresh_steps must be at least 1, got {self.refresh_steps}")
        if self.max_age_steps < self.refresh_steps:
            raise ValueError(f"max_age_steps ({self.max_age_steps}) must be at least refresh_steps "
                             f"({self.refresh_steps})")


@dataclass(frozen=True)
class Ahead:
    """A pre-label computed before its image was opened."""

    annotation: Annotation
    #: the model step whose weights made it
    step: int
    #: seconds the forward pass took (image decoding included)
    seconds: float


class PredictAhead:
    """Keeps the pre-labels of the queued images ready (see the module docstring).

    ``predict(images)`` is the trainer's awaitable prediction (served at the next yield point of the step in
    flight), ``load(image_id)`` reads an image, ``step()`` and ``weights()`` say which weights are current
    (``weights()`` changes on a rollback or a restored checkpoint). Everything here runs on the event loop's
    thread; :meth:`on_step` may be called from any thread.
    """

    def __init__(
        self,
        predict: Callable[[Sequence[np.ndarray]], Any],
        load: Callable[[int], np.ndarray],
        step: Callable[[], int],
        weights: Callable[[], int],
        config: AheadConfig | None = None,
    ) -> None:
        self.config = config or AheadConfig()
        self._predict = predict
        self._load = load
        self._step = step
        self._weights = weights
        self._queue: list[int] = []
        self._kept: dict[int, tuple[Ahead, int]] = {}  # image id -> (pre-label, weights version)
        self._failed: dict[int, int] = {}  # image id -> step of a failed prediction (retried after a refresh)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None
        # figures
        self.ages: deque[int] = deque(maxlen=5000)
        self.served = 0
        self.missed = 0
        self.too_old = 0
        self.predictions = 0
        self.refreshes = 0
        self.seconds = 0.0
        self.error: str | None = None

    # --------------------------------------------------------------------------------- the queue
    def want(self, image_ids: Sequence[int]) -> None:
        """These images open next, in this order: keep their pre-labels ready (others are dropped)."""
        queue = list(dict.fromkeys(int(i) for i in image_ids))[: self.config.images]
        if queue == self._queue:
            return
        self._queue = queue
        for key in [k for k in self._kept if k not in queue]:
            del self._kept[key]
        self._notify()

    @property
    def queue(self) -> list[int]:
        """The images whose pre-labels are being kept ready."""
        return list(self._queue)

    def discard(self, image_id: int) -> None:
        """Forget an image (it was labeled): no pre-label is kept or computed for it."""
        self._kept.pop(image_id, None)
        if image_id in self._queue:
            self._queue.remove(image_id)

    def take(self, image_id: int) -> Ahead | None:
        """The kept pre-label of an image that is opening, if it is recent enough; counts what was served."""
        ahead = self.usable(image_id)
        kept = self._kept.pop(image_id, None)
        if ahead is not None:
            self.served += 1
            self.ages.append(self._step() - ahead.step)
        elif kept is not None:
            self.too_old += 1
        elif self.config.images:
            self.missed += 1
        return ahead

    def usable(self, image_id: int) -> Ahead | None:
        """The kept pre-label of an image if it may be shown now (from these weights, at most
        ``max_age_steps`` old), without taking it or counting anything."""
        kept = self._kept.get(image_id)
        if kept is None:
            return None
        ahead, weights = kept
        age = self._step() - ahead.step
        return ahead if weights == self._weights() and 0 <= age <= self.config.max_age_steps else None

    def peek(self, image_id: int) -> Ahead | None:
        """The kept pre-label of an image without taking it (None if there is none)."""
        kept = self._kept.get(image_id)
        return None if kept is None else kept[0]

    # --------------------------------------------------------------------------------- the task
    def start(self) -> None:
        """Start computing on the running event loop (idempotent)."""
        if self.config.images == 0 or (self._task is not None and not self._task.done()):
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run(), name="livetrain-predict-ahead")

    async def stop(self) -> None:
        """Stop computing (a prediction in flight finishes first); what is kept stays kept."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def on_step(self, *_: Any) -> None:
        """The model took a step: kept pre-labels may need a refresh. Safe from any thread."""
        self._notify()

    def _notify(self) -> None:
        if self._wake is None or self._loop is None or self._loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _due(self) -> int | None:
        """The first queued image without a current pre-label."""
        step, weights, every = self._step(), self._weights(), self.config.refresh_steps
        for key in self._queue:
            failed = self._failed.get(key)
            if failed is not None and step - failed < every:
                continue
            kept = self._kept.get(key)
            if kept is None or kept[1] != weights or step - kept[0].step >= every:
                return key
        return None

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            key = self._due()
            if key is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            refresh = key in self._kept
            weights = self._weights()
            t0 = time.perf_counter()
            try:
                image = await asyncio.to_thread(self._load, key)
                (raw,), step = await self._predict([image])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # opening the image predicts afresh and shows the error there
                self._failed[key] = self._step()
                self.error = f"predicting image {key} ahead failed: {type(exc).__name__}: {exc}"
                log.warning("livetrain: %s", self.error)
                await asyncio.sleep(0.5)
                continue
            seconds = time.perf_counter() - t0
            self.predictions += 1
            self.refreshes += refresh
            self.seconds += seconds
            self._failed.pop(key, None)
            self.error = None
            if key in self._queue and weights == self._weights():
                self._kept[key] = (Ahead(raw, step, seconds), weights)

    # --------------------------------------------------------------------------------- figures
    def stats(self) -> dict[str, Any]:
        """What was served and how old it was (in model steps), and what predicting ahead cost."""
        ages = np.asarray(self.ages, np.float64)
        opened = self.served + self.missed + self.too_old
        return {
            "served": self.served,
            "missed": self.missed,
            "too_old": self.too_old,
            "hit_rate": self.served / opened if opened else None,
            "age_steps": {
                "p50": float(np.percentile(ages, 50)) if ages.size else None,
                "p95": float(np.percentile(ages, 95)) if ages.size else None,
                "max": int(ages.max()) if ages.size else None,
                "histogram": {int(a): int(n) for a, n in zip(*np.unique(ages, return_counts=True), strict=True)},
            },
            "predictions": self.predictions,
            "refreshes": self.refreshes,
            "seconds": self.seconds,
            "queue": list(self._queue),
            "error": self.error,
        }


__all__ = ["Ahead", "AheadConfig", "PredictAhead"]
