"""The async trainer: training steps in a worker thread, predictions cutting in between modules.

One asyncio task owns the training loop. Each step runs in a dedicated worker thread, so the event loop
(and with it the Jupyter kernel's widget messages) stays responsive. A prediction runs on a second
thread and takes the model at the next yield point of the step in flight (see :mod:`.gate`), so a
pre-label waits milliseconds, not a whole step.

Phases: ``idle`` (not started) → ``waiting`` (fewer than ``min_labeled`` samples) → ``training`` ⇄
``paused`` (the loss-plateau detector fired; a new sample resumes) → ``stopped``. A failing step (NaN
loss, out of memory, a sample that cannot be read) is reported in ``error`` and skipped; the task never
dies of it and the weights stay the last good ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..models.base import LiveModel
from .annotation import Annotation
from .gate import ModelGate
from .plateau import PlateauConfig, PlateauDetector
from .sampler import FrequencySampler, SamplerConfig, UniformSampler, repeat_factor


@dataclass
class TrainerConfig:
    """How the trainer trains. Defaults suit the embedded model on a 2-core CPU."""

    #: training starts once this many images are labeled
    min_labeled: int = 2
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    #: gradient-norm clip: a single odd sample must not wreck weights that took minutes to learn
    max_grad_norm: float = 10.0
    #: "cuda", "cpu", or None to take CUDA when present
    device: str | None = None
    #: mixed precision; None = on for CUDA, off on CPU (CPU autocast is slower for these convolutions)
    amp: bool | None = None
    #: pre-labels are offered once the smoothed loss fell to this fraction of its starting value ...
    offer_loss_ratio: float = 0.6
    #: ... or the live evaluator's moving average reached this score ...
    offer_quality: float = 0.3
    #: ... and at least this many steps were taken
    offer_min_steps: int = 20
    #: periodic checkpoint interval (seconds of training) and on-stop checkpoint
    checkpoint_every_s: float = 120.0
    #: consecutive failing steps after which the weights roll back to the last good copy
    rollback_after: int = 3
    #: steps between in-memory snapshots of the last good weights (for rollback)
    snapshot_every: int = 25
    #: "frequency" (the live-training sampler) or "uniform" (reshuffled epochs, for comparison)
    sampler: str = "frequency"
    #: False turns the loss-plateau detector off: training never pauses (for comparison)
    plateau: bool = True
    seed: int = 0
    #: learning-rate multiplier while the labeled set is small, where every label moves the model a lot
    #: and the model is far from fitting them: ``1 + (lr_boost - 1) * 0.5 ** (extra / boost_half_life)``,
    #: ``extra`` being the labeled images beyond ``min_labeled``. 1.0 = a constant rate.
    lr_boost: float = 1.0
    boost_half_life: float = 8.0
    #: a label with a class the model has not trained on yet restarts the boost, decaying to the size-based
    #: rate along a half cosine over this many steps (a warm restart); 0 = no restarts
    restart_steps: int = 0
    #: per-object class balance: image sampling cannot lift a class that shares its images with a frequent
    #: one (BCCD's platelets ride along with ten red cells per image), so the loss weighs each class by
    #: repeat-factor weights on *object* shares, ``max(1, sqrt(object_balance / share))``, for models that
    #: take class weights (:meth:`LiveModel.set_class_weights`; the embedded models do). 0 = off.
    object_balance: float = 0.0
    #: torch threads for training and predictions: a number, None (leave torch's setting alone), or "auto":
    #: the cores other processes leave free, by the load average, re-checked every ``threads_every`` steps.
    #: On a shared 2-core machine with other work running, 2 threads took 2-5x longer per step than 1
    #: (OpenMP workers spin and wait for each other when a core is taken away).
    threads: int | str | None = "auto"
    threads_every: int = 50

    def __post_init__(self) -> None:
        if not (self.threads is None or self.threads == "auto" or (isinstance(self.threads, int) and self.threads > 0)):
            raise ValueError(f"threads must be a positive number, 'auto' or None, got {self.threads!r}")
        if self.sampler not in ("frequency", "uniform"):
            raise ValueError(f"sampler must be 'frequency' or 'uniform', got {self.sampler!r}")
        if self.lr_boost < 1.0 or self.boost_half_life <= 0 or self.restart_steps < 0:
            raise ValueError("need lr_boost >= 1, boost_half_life > 0 and restart_steps >= 0")
        if not 0.0 <= self.object_balance <= 1.0:
            raise ValueError(f"object_balance must lie in [0, 1], got {self.object_balance}")


@dataclass
class StepResult:
    step: int
    loss: float
    seconds: float
    batch: list[int]


class Trainer:
    """Owns the model, optimizer, sampler and plateau detector; trains while asked to predict."""

    def __init__(
        self,
        model: LiveModel,
        load_image: Callable[[int], np.ndarray],
        config: TrainerConfig | None = None,
        *,
        sampler_config: SamplerConfig | None = None,
        plateau_config: PlateauConfig | None = None,
        quality: Callable[[], float | None] = lambda: None,
        on_step: Callable[[StepResult], None] | None = None,
        checkpoint: Callable[[dict[str, Any]], Any] | None = None,
        checkpoint_extra: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.config = config or TrainerConfig()
        cfg = self.config
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        self.model = model.to(self.device)
        self.model.train()
        self.optimizer = torch.optim.AdamW(model.param_groups(cfg.lr), lr=cfg.lr, weight_decay=cfg.weight_decay)
        for group in self.optimizer.param_groups:  # the schedule scales each group's own rate
            group["base_lr"] = group["lr"]
        # bfloat16 only where the GPU computes it natively (Ampere and later): is_bf16_supported() also says
        # yes for emulated bfloat16 (a T4, as on Colab), which is far slower than float16 with loss scaling.
        self._amp_dtype = (
            torch.bfloat16 if self.device.type != "cuda" or torch.cuda.get_device_capability(self.device)[0] >= 8
            else torch.float16
        )
        # float16 needs loss scaling; bfloat16 has float32's range and does not.
        self._scaler = torch.amp.GradScaler("cuda") if self.amp and self._amp_dtype == torch.float16 else None
        sampler_cls = FrequencySampler if cfg.sampler == "frequency" else UniformSampler
        self.sampler: FrequencySampler | UniformSampler = sampler_cls(sampler_config, seed=cfg.seed)
        self.plateau = PlateauDetector(plateau_config)
        self._load_image = load_image
        self._quality = quality
        self._on_step = on_step
        self._checkpoint = checkpoint
        self._checkpoint_extra = checkpoint_extra
        self._targets: dict[int, Annotation] = {}
        #: classes the labels so far contain, and the step at which a label brought a new one (warm restart)
        self._classes: set[int] = set()
        # objects per class of each labeled sample and their sum: the object shares of object_balance
        self._object_counts: dict[int, np.ndarray] = {}
        self._object_total = np.zeros(model.num_classes, np.int64)
        self._weights_sent: list[float] | None = None
        self._restart_step: int | None = None
        self._lock = threading.Lock()  # guards sampler and targets across the loop and worker threads
        self._gate = ModelGate()
        self._hooks = self._gate.attach(self.model)
        self._train_pool = ThreadPoolExecutor(1, thread_name_prefix="livetrain-train")
        self._predict_pool = ThreadPoolExecutor(1, thread_name_prefix="livetrain-predict")
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._step_waiters: list[tuple[int, asyncio.Future[None]]] = []

        self.step = 0
        #: changes whenever the weights jump other than by a training step (a rollback, a restored
        #: checkpoint): predictions kept from before are not from an ancestor of these weights
        self.weights_version = 0
        self.phase = "idle"
        self.error: str | None = None
        #: the last checkpoint write's failure (a full disk); unlike a step error, a good training step
        #: does not clear it: only a checkpoint that succeeds does, so the person keeps seeing it
        self.checkpoint_error: str | None = None
        self.last_loss: float | None = None
        self.losses: deque[float] = deque(maxlen=2000)
        #: (trainer step, sampler step at the draw, batch keys) of recent successful steps, for plots of
        #: what the model trained on. A key whose ``entered_step`` (sampler stats) is at most that sampler
        #: step was in the set when the batch was drawn. Not checkpointed: plots start afresh on resume.
        self.batch_log: deque[tuple[int, int, list[int]]] = deque(maxlen=2000)
        self._initial_loss: float | None = None
        self._smoothed: float | None = None
        self._step_seconds: deque[float] = deque(maxlen=50)
        self._failures = 0
        self._good_state: dict[str, Any] | None = None
        self._last_checkpoint = time.monotonic()
        self.offering = False
        #: torch threads the steps run with (``TrainerConfig.threads``), and the step it was decided at
        self.threads = torch.get_num_threads()
        self._threads_step: int | None = None

    # ------------------------------------------------------------------------------- samples
    def set_sample(self, key: int, target: Annotation) -> None:
        """A labeled image joins (or, relabeled, rejoins) training at once; a paused trainer resumes."""
        classes = _classes_of(target)
        with self._lock:
            self._targets[key] = target
            self._count_objects(key, target)
            self.sampler.add(key, classes)
            if self.config.restart_steps and self._classes and not classes <= self._classes:
                self._restart_step = self.step
            self._classes |= classes
        self.plateau.reset()
        if self.phase == "paused":
            self.phase = "training"
        self._notify()

    def _count_objects(self, key: int, target: Annotation | None) -> None:
        """Keep the per-class object totals of the labeled set (under ``_lock``)."""
        old = self._object_counts.pop(key, None)
        if old is not None:
            self._object_total -= old
        if target is None:
            return
        labels = _labels_of(target)
        labels = labels[(labels >= 0) & (labels < len(self._object_total))]
        counts = np.bincount(labels, minlength=len(self._object_total)).astype(np.int64)
        self._object_counts[key] = counts
        self._object_total += counts

    def class_weights(self) -> list[float] | None:
        """The loss weight of each class under ``object_balance`` (None when it is off): repeat-factor
        weights on the classes' shares of the labeled objects, 1 for a class with no objects yet."""
        t = self.config.object_balance
        if t <= 0:
            return None
        with self._lock:
            total = self._object_total.astype(np.float64)
        w = np.where(total > 0, repeat_factor(np.maximum(total, 1.0), total.sum(), t), 1.0)
        return [round(float(v), 4) for v in w]

    def remove_sample(self, key: int) -> None:
        with self._lock:
            self._targets.pop(key, None)
            self._count_objects(key, None)
            if key in self.sampler:
                self.sampler.remove(key)

    def load_samples(self, targets: dict[int, Annotation]) -> None:
        """Resume: set every stored label; only keys the sampler has not seen count as new."""
        with self._lock:
            self._targets.update(targets)
            for k, t in targets.items():
                self._count_objects(k, t)
            new = [k for k in targets if k not in self.sampler]
            for k, t in targets.items():
                if k in self.sampler:  # restored from a checkpoint (one from before class balance has none)
                    self.sampler.set_classes(k, _classes_of(t))
                else:
                    self.sampler.add(k, _classes_of(t))
            for t in targets.values():
                self._classes |= _classes_of(t)
        if new:
            self.plateau.reset()
            self._notify()

    def save_model(self, folder: Any) -> Any:
        """Export the current weights (consistent: taken at a yield point or between steps)."""
        return self.with_model(lambda model: model.save_pretrained(folder))

    def with_model(self, fn: Callable[[LiveModel], Any]) -> Any:
        """``fn(model)`` on consistent weights: at the step in flight's next yield point, or between steps."""
        return self._gate.run_prediction(lambda: fn(self.model))

    def sampler_stats(self) -> dict[str, Any]:
        """The sampler's per-sample statistics, read safely while the training thread draws batches."""
        from .sampler import expected_views

        with self._lock:
            stats = self.sampler.stats()
            if not stats.get("target"):
                stats["target"] = list(expected_views(self.sampler).values())
        return stats

    @property
    def num_samples(self) -> int:
        return len(self._targets)

    @property
    def labels_needed(self) -> int:
        """How many more labeled images training waits for (0 once it can start)."""
        return max(0, self.config.min_labeled - self.num_samples)

    # ----------------------------------------------------------------------------- lifecycle
    async def start(self, *, past_plateau: bool = False) -> None:
        """Start the training task. ``past_plateau`` also clears a plateau the detector had found, so that
        training runs again until the loss plateaus anew (a person pressed Start: they ask for training)."""
        if past_plateau:
            self.plateau.reset()
            self._notify()
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self.phase = self._next_phase()
        self._task = self._loop.create_task(self._run(), name="livetrain-trainer")

    async def stop(self) -> None:
        """Finish the step in flight and stop; weights, optimizer and sampler stay as they are."""
        self._stopping = True
        self._notify()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        self.phase = "stopped"
        for _, fut in self._step_waiters:
            if not fut.done():
                fut.set_result(None)
        self._step_waiters.clear()

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._train_pool.shutdown(wait=True)
        self._predict_pool.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _notify(self) -> None:
        """Wake the training loop; safe from any thread."""
        if self._wake is None or self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def wait_steps(self, n: int, timeout: float | None = None) -> int:
        """Wait until ``n`` more steps are done (or training pauses or stops); returns steps taken."""
        start = self.step
        if n <= 0:
            return 0
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._step_waiters.append((start + n, fut))
        self._resolve_waiters()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(fut, timeout)
        return self.step - start

    def _resolve_waiters(self) -> None:
        # Not the phase (it lags a just-added sample until the loop wakes) but whether steps can come.
        idle = (
            not self.running
            or self._stopping
            or self.num_samples < self.config.min_labeled
            or self.paused_by_plateau
        )
        keep = []
        for target, fut in self._step_waiters:
            if fut.done():
                continue
            if self.step >= target or idle:
                fut.set_result(None)
            else:
                keep.append((target, fut))
        self._step_waiters = keep

    @property
    def paused_by_plateau(self) -> bool:
        """Training is paused because the loss plateaued (never with ``TrainerConfig(plateau=False)``)."""
        return self.config.plateau and self.plateau.plateaued

    def _next_phase(self) -> str:
        if self.num_samples < self.config.min_labeled:
            return "waiting"
        return "paused" if self.paused_by_plateau else "training"

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        paused_saved = False
        try:
            while not self._stopping:
                self.phase = self._next_phase()
                if self.phase != "training":
                    self._resolve_waiters()
                    self._wake.clear()
                    if self.phase == "paused" and not paused_saved and self._checkpoint is not None:
                        # Nothing will change until new labels arrive: a good moment to save.
                        await self.checkpoint_now()
                        paused_saved = True
                    await self._wake.wait()
                    continue
                paused_saved = False
                try:
                    result = await loop.run_in_executor(self._train_pool, self._train_step)
                except Exception as exc:  # a failing step never kills the task
                    self._step_failed(exc)
                    await asyncio.sleep(min(2.0, 0.05 * 2**self._failures))
                    continue
                self._after_step(result)
                if self._checkpoint is not None and (
                    time.monotonic() - self._last_checkpoint > self.config.checkpoint_every_s
                ):
                    await self.checkpoint_now()
                await asyncio.sleep(0)  # let the loop run callbacks queued during the step
        finally:
            self.phase = "stopped" if self._stopping else self.phase
            self._resolve_waiters()

    def run_steps(self, n: int) -> list[StepResult]:
        """Take up to ``n`` training steps now, in the calling thread, without the asyncio task.

        For scripts and the simulator, which keep time on a virtual clock and need an exact amount of
        training between two submissions. Stops early, like the task, when fewer than ``min_labeled``
        samples are set or the plateau detector fires; a failing step is reported in ``error`` and
        counted against ``n``, exactly as in the task. Refused while the task runs.
        """
        if self.running:
            raise RuntimeError("run_steps() drives training itself; stop() the training task first")
        done: list[StepResult] = []
        for _ in range(max(0, int(n))):
            self.phase = self._next_phase()
            if self.phase != "training":
                break
            try:
                result = self._train_step()
            except Exception as exc:
                self._step_failed(exc)
                continue
            self._after_step(result)
            done.append(result)
        return done

    def predict_now(self, images: Sequence[np.ndarray]) -> tuple[list[Annotation], int]:
        """Synchronous :meth:`predict` for scripts that drive training with :meth:`run_steps`."""
        if self.running:
            raise RuntimeError("predict_now() is for a trainer without its task; await predict() instead")
        return self._predict_now(list(images))

    # ----------------------------------------------------------------------------- training
    def _autocast(self) -> Any:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._amp_dtype)

    def _size_threads(self) -> None:
        """Set torch's thread count (``TrainerConfig.threads``) on the training thread, between steps."""
        want = self.config.threads
        if want is None or (self._threads_step is not None and want != "auto"):
            return
        if self._threads_step is not None and self.step - self._threads_step < self.config.threads_every:
            return
        own = torch.get_num_threads() if self._threads_step is not None else 0
        n = free_cores(own) if want == "auto" else int(want)
        self._threads_step = self.step
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        self.threads = n

    def _train_step(self) -> StepResult:
        self._size_threads()
        t0 = time.perf_counter()
        lent0 = self._gate.lent_seconds
        with self._lock:
            batch = self.sampler.next_batch(self.config.batch_size)
            targets = [self._targets[k] for k in batch]
        images = []
        for key in batch:
            try:
                images.append(self._load_image(key))
            except Exception as exc:
                # A sample that cannot be read is taken out of training (its label stays stored).
                self.remove_sample(key)
                raise RuntimeError(f"image {key} could not be read and was left out of training: {exc}") from exc
        opt = self.optimizer
        weights = self.class_weights()
        if weights != self._weights_sent:  # only when the shares moved: the model keeps them as a tensor
            self.model.set_class_weights(weights)
            self._weights_sent = weights
        with self._gate.training():
            self.model.train()
            opt.zero_grad(set_to_none=True)
            with self._autocast():
                loss = self.model.loss(images, targets)
            value = float(loss.detach())
            if not math.isfinite(value):
                opt.zero_grad(set_to_none=True)
                raise FloatingPointError(f"the loss is {value}; the step was skipped")
            if self._scaler is not None:
                self._scaler.scale(loss).backward()
                self._scaler.unscale_(opt)
            else:
                loss.backward()
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            if not torch.isfinite(norm):
                opt.zero_grad(set_to_none=True)
                if self._scaler is not None:
                    self._scaler.update()  # lowers the scale; expected now and then with float16
                raise FloatingPointError("the gradients are not finite; the step was skipped")
            # Last chance for a waiting prediction before the weights change (no yield points below).
            self._gate.yield_point()
            scale = self.lr_scale()
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale
            if self._scaler is not None:
                self._scaler.step(opt)
                self._scaler.update()
            else:
                opt.step()
            self.step += 1
            step = self.step
            if step % self.config.snapshot_every == 0 or self._good_state is None:
                self._good_state = self._snapshot()
        # Step time without the predictions that ran inside it: what training alone costs.
        seconds = time.perf_counter() - t0 - (self._gate.lent_seconds - lent0)
        return StepResult(step, value, seconds, batch)

    def lr_scale(self) -> float:
        """The learning-rate multiplier of the next step (see ``TrainerConfig.lr_boost``)."""
        cfg = self.config
        if cfg.lr_boost == 1.0:
            return 1.0
        extra = max(0, self.num_samples - cfg.min_labeled)
        scale = 1.0 + (cfg.lr_boost - 1.0) * 0.5 ** (extra / cfg.boost_half_life)
        if self._restart_step is not None and cfg.restart_steps:
            t = self.step - self._restart_step
            if t < cfg.restart_steps:
                scale = max(scale, 1.0 + (cfg.lr_boost - 1.0) * 0.5 * (1.0 + math.cos(math.pi * t / cfg.restart_steps)))
        return scale

    def _snapshot(self) -> dict[str, Any]:
        # Kept in host memory: on a GPU a second copy of the weights and AdamW state would cost as much
        # device memory again (a gigabyte for Grounding DINO), for a copy that is read only on a rollback.
        return {
            "model": {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()},
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "step": self.step,
        }

    def _after_step(self, r: StepResult) -> None:
        self._failures = 0
        self.error = None
        self.last_loss = r.loss
        self.losses.append(r.loss)
        # Steps run one at a time, so the sampler has drawn exactly this batch since the last step.
        self.batch_log.append((r.step, self.sampler.step - 1, list(r.batch)))
        self._step_seconds.append(r.seconds)
        self._smoothed = r.loss if self._smoothed is None else 0.9 * self._smoothed + 0.1 * r.loss
        if self._initial_loss is None and len(self.losses) >= 5:
            self._initial_loss = float(np.mean(list(self.losses)[:5]))
        # The detector follows the loss even when it may not pause training: its history is what the loss
        # plot draws (it stayed empty with the switch off), and it shows where it would have paused.
        self.plateau.update(r.loss)
        self.offering = self.offering or self._ready_to_offer()
        if self._on_step is not None:
            self._on_step(r)
        self._resolve_waiters()

    def _ready_to_offer(self) -> bool:
        """Pre-labels are worth showing once the model has demonstrably learned something.

        Either the smoothed loss fell well below where it started (the model fits the labels), or the
        live evaluator scored its silent predictions on newly submitted images well enough.
        """
        cfg = self.config
        if self.step < cfg.offer_min_steps:
            return False
        q = self._quality()
        if q is not None and q >= cfg.offer_quality:
            return True
        if self._initial_loss and self._smoothed is not None:
            return self._smoothed <= cfg.offer_loss_ratio * self._initial_loss
        return False

    def _step_failed(self, exc: BaseException) -> None:
        self._failures += 1
        text = str(exc).lower()
        # CUDA raises OutOfMemoryError; the CPU allocator a RuntimeError "can't allocate memory".
        if isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in text or (
            "allocate memory" in text
        ):
            msg = "out of memory in a training step; the step was skipped"
            self.optimizer.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        else:
            msg = f"training step failed: {type(exc).__name__}: {exc}"
        if self._failures >= self.config.rollback_after and self._good_state is not None:
            self._rollback()
            msg += f"; rolled back to the weights of step {self._good_state['step']}"
        self.error = msg

    def _rollback(self) -> None:
        assert self._good_state is not None
        with self._gate.training():
            self.model.load_state_dict(self._good_state["model"])
            # load_state_dict moves the state to each parameter's device; the snapshot itself stays intact
            self.optimizer.load_state_dict(copy.deepcopy(self._good_state["optimizer"]))
            self.weights_version += 1

    # ---------------------------------------------------------------------------- prediction
    async def predict(self, images: Sequence[np.ndarray]) -> tuple[list[Annotation], int]:
        """Predictions from the current weights, served at the next yield point of the step in flight."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._predict_pool, self._predict, list(images))

    def _predict(self, images: list[np.ndarray]) -> tuple[list[Annotation], int]:
        return self._gate.run_prediction(lambda: self._predict_now(images))

    def _predict_now(self, images: list[np.ndarray]) -> tuple[list[Annotation], int]:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                out = self.model.predict(images)
        finally:
            if was_training:
                self.model.train()
        return out, self.step

    # --------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The trainer's part of the training state (model and optimizer tensors included)."""
        with self._gate.training(), self._lock:
            model = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            optimizer = copy.deepcopy(self.optimizer.state_dict())
            sampler = self.sampler.state_dict()
        return {
            "step": self.step,
            "model": model,
            "optimizer": optimizer,
            "sampler": sampler,
            "plateau": self.plateau.state_dict(),
            "trainer": {
                "initial_loss": self._initial_loss,
                "smoothed_loss": self._smoothed,
                "last_loss": self.last_loss,
                "offering": self.offering,
                "restart_step": self._restart_step,
                "losses": list(self.losses)[-200:],
                "config": asdict(self.config),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # a checkpoint from before the schedule: its rate is the base
            group.setdefault("base_lr", group["lr"])
        self.weights_version += 1
        with self._lock:
            self.sampler.load_state_dict(state["sampler"])
        self.plateau.load_state_dict(state["plateau"])
        t = state["trainer"]
        self.step = int(state["step"])
        self._initial_loss = t["initial_loss"]
        self._smoothed = t["smoothed_loss"]
        self.last_loss = t["last_loss"]
        self.offering = bool(t["offering"])
        self._restart_step = t.get("restart_step")  # absent in checkpoints from before warm restarts
        self.losses.extend(t["losses"])

    async def checkpoint_now(self) -> Any:
        """Snapshot the state between steps and hand it to the ``checkpoint`` callback (in a thread)."""
        if self._checkpoint is None:
            return None
        loop = asyncio.get_running_loop()
        self._last_checkpoint = time.monotonic()
        # On the training thread, so the snapshot falls between two steps.
        state = await loop.run_in_executor(self._train_pool, self.state_dict)
        state.update(self._checkpoint_extra())  # on the loop thread, where those parts change
        try:
            path = await asyncio.to_thread(self._checkpoint, state)
        except Exception as exc:
            self.checkpoint_error = f"checkpoint failed: {exc}"
            return None
        self.checkpoint_error = None
        return path

    # -------------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        secs = list(self._step_seconds)
        return {
            "phase": self.phase,
            "step": self.step,
            "loss": self.last_loss,
            "smoothed_loss": self._smoothed,
            "plateaued": self.paused_by_plateau,
            "offering": self.offering,
            "samples": self.num_samples,
            "step_seconds": float(np.median(secs)) if secs else None,
            "device": str(self.device),
            "amp": self.amp,
            "lr_scale": self.lr_scale(),
            "threads": self.threads,
            "class_weights": self._weights_sent,
            "error": self.error or self.checkpoint_error,
        }


def free_cores(own_threads: int = 0) -> int:
    """Cores this process may use without waiting on others: the usable cores less the 1-minute load
    average of everything else (the load counts this process's own ``own_threads`` busy threads too)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        others = max(0.0, os.getloadavg()[0] - own_threads)
    except (AttributeError, OSError):  # no load average (Windows): take every core
        return cores
    return max(1, min(cores, math.floor(cores - others + 0.5)))


def _labels_of(target: Annotation) -> np.ndarray:
    """A label's class per object, or its one image class."""
    return np.asarray([target.category] if target.category is not None else target.labels, np.int64)


def _classes_of(target: Annotation) -> set[int]:
    """The classes a label contains: its objects' classes, or its image class."""
    return {int(v) for v in np.unique(_labels_of(target))}


def _to_cpu(obj: Any) -> Any:
    """A deep copy of a (nested) state dict with every tensor in host memory."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)
