"""Let a prediction borrow the model in the middle of a training step.

On a CPU a training step of the embedded detector takes most of a second and a prediction under a
tenth of that. Serving a prediction only *after* the step in flight would make a pre-label wait up to a
whole step, many times its own cost. Instead, the training thread passes *yield points*, one per module
call in the forward pass and one per module output in the backward pass (milliseconds apart), and at
the next one it runs the waiting prediction itself, then carries on with the step.

Why on the training thread and not on the caller's: torch's CPU kernels run on an OpenMP team that
belongs to the calling thread; a second thread brings a second team, which competes for the same cores
with the first team's spinning workers and made predictions ~1.5x slower. Running the prediction where
the step runs reuses the warm team.

The prediction sees exactly the weights the step is using: weights change only in
``optimizer.step()``, which has no yield points. Grad mode and autocast are thread-local and restored by
the prediction's own context managers; module train/eval flags are restored by the prediction.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import nn

T = TypeVar("T")


class _Job:
    __slots__ = ("done", "error", "fn", "result", "taken")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.taken = False
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # handed to the caller, never into the training step
            self.error = exc


class ModelGate:
    """Serialises the model between one training thread and any number of prediction callers.

    ``burst``: predictions run per yield point. A stream of predictions (prefetching, several
    viewers) slows training down but cannot stall it.
    """

    def __init__(self, burst: int = 1) -> None:
        self._cv = threading.Condition()
        self.burst = burst
        self._jobs: deque[_Job] = deque()
        self._training = False  # a training step holds the model
        self._trainer_thread = 0
        self._predicting = False  # a prediction runs on its caller's thread (no step in flight)
        #: seconds the training thread spent running predictions (so step times can exclude them)
        self.lent_seconds = 0.0

    @contextmanager
    def training(self) -> Iterator[None]:
        """Hold the model for one training step; queued predictions go first."""
        with self._cv:
            while self._predicting:
                self._cv.wait()
            self._training = True
            self._trainer_thread = threading.get_ident()
        try:
            self._run_jobs()
            yield
        finally:
            with self._cv:
                self._training = False
                self._cv.notify_all()

    def yield_point(self) -> None:
        """Called inside a step: run a waiting prediction here, then let the step go on."""
        if not self._jobs:  # unlocked read: at worst one yield point later
            return
        if not self._training or threading.get_ident() != self._trainer_thread:
            return
        self._run_jobs()

    def _run_jobs(self) -> None:
        for _ in range(self.burst):
            with self._cv:
                if not self._jobs:
                    return
                job = self._jobs.popleft()
                job.taken = True
            t0 = time.perf_counter()
            job.run()
            self.lent_seconds += time.perf_counter() - t0
            with self._cv:
                job.done = True
                self._cv.notify_all()

    def run_prediction(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` with the model: inside the step in flight at its next yield point, or right here
        when no step is running."""
        job = _Job(fn)
        with self._cv:
            if self._training:
                self._jobs.append(job)
                while self._training and not job.taken:
                    self._cv.wait()
                if job.taken:
                    while not job.done:
                        self._cv.wait()
                else:  # the step ended before reaching a yield point: run it here instead
                    self._jobs.remove(job)
            if not job.done:
                while self._predicting or self._training:
                    self._cv.wait()
                self._predicting = True
        if not job.done:
            try:
                job.run()
            finally:
                with self._cv:
                    self._predicting = False
                    job.done = True
                    self._cv.notify_all()
        if job.error is not None:
            raise job.error
        return job.result

    @contextmanager
    def predicting(self) -> Iterator[None]:
        """Hold the model outside any training step (e.g. to save weights consistently)."""
        with self._cv:
            while self._predicting or self._training:
                self._cv.wait()
            self._predicting = True
        try:
            yield
        finally:
            with self._cv:
                self._predicting = False
                self._cv.notify_all()

    def attach(self, model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        """Install yield points on every module that owns parameters (forward and backward)."""
        handles = []
        gate = self

        def _backward_hook(grad: torch.Tensor) -> None:
            gate.yield_point()

        def _forward_pre(module: nn.Module, args: object) -> None:
            if torch.is_grad_enabled():
                gate.yield_point()

        def _forward_post(module: nn.Module, args: object, output: object) -> None:
            # A hook on the output tensor runs when backward reaches this module: a yield point there.
            if isinstance(output, torch.Tensor) and output.requires_grad and torch.is_grad_enabled():
                output.register_hook(_backward_hook)

        for module in model.modules():
            if any(True for _ in module.parameters(recurse=False)):
                handles.append(module.register_forward_pre_hook(_forward_pre))
                handles.append(module.register_forward_hook(_forward_post))
        return handles
