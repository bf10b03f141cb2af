"""Let a prediction borrow the model in the middle of a training step.

On a CPU a training step of the embedded detector takes 0.2–0.4 s and a prediction 20–60 ms. Serving a
prediction only *after* the step in flight would make a pre-label wait up to a whole step, several
times its own cost. Instead, the training thread passes *yield points*, one per module call in the
forward pass and one per module output in the backward pass (a few milliseconds apart), and pauses at
the next one while a prediction is waiting. The prediction then runs on its own thread with both cores,
on exactly the weights the step is using: weights only change in ``optimizer.step()``, which has no
yield points. Grad mode and autocast are thread-local in torch, so the paused step is not disturbed;
the module train/eval flags are shared and are restored before the step resumes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class ModelGate:
    """A two-party lock: training holds the model except at yield points; predictions cut in there.

    Fairness: while training waits for the model, at most ``burst`` predictions go first; then the
    step moves on to its next yield point. A stream of predictions (prefetching, several viewers)
    slows training down but cannot stall it.
    """

    def __init__(self, burst: int = 1) -> None:
        self._cv = threading.Condition()
        self.burst = burst
        self._waiting = 0  # predictions that asked for the model
        self._training = False  # the training thread is using the model (not parked at a yield point)
        self._train_wants = False  # the training thread is waiting for the model
        self._served = 0  # predictions served since training last had the model
        self._predicting = False

    def _training_may_go(self) -> bool:
        return not self._predicting and (not self._waiting or self._served >= self.burst)

    def _acquire_for_training(self) -> None:
        self._train_wants = True
        try:
            while not self._training_may_go():
                self._cv.wait()
        finally:
            self._train_wants = False
        self._training = True
        self._served = 0

    @contextmanager
    def training(self) -> Iterator[None]:
        """Hold the model for one training step; queued predictions go first."""
        with self._cv:
            self._acquire_for_training()
        try:
            yield
        finally:
            with self._cv:
                self._training = False
                self._cv.notify_all()

    def yield_point(self) -> None:
        """Called from the training thread inside a step: park here while a prediction wants the model."""
        if not self._waiting:  # unlocked read: at worst one yield point later
            return
        with self._cv:
            if not self._training or not self._waiting:
                return  # not inside a step (e.g. a prediction's own forward), or nobody waits now
            self._training = False
            self._served = 0
            self._cv.notify_all()
            self._acquire_for_training()

    @contextmanager
    def predicting(self) -> Iterator[None]:
        """Hold the model for one prediction, as soon as training reaches a yield point or ends a step."""
        with self._cv:
            self._waiting += 1
            try:
                while (
                    self._training
                    or self._predicting
                    or (self._train_wants and self._served >= self.burst)
                ):
                    self._cv.wait()
            finally:
                self._waiting -= 1
            self._predicting = True
            self._served += 1
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
