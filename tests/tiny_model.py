"""A tiny classifier behind the LiveModel protocol: lets trainer/session tests run in milliseconds.

It can also be told to fail (NaN loss, an exception) to test how the trainer copes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.models.base import LiveModel, register


def features(image: np.ndarray) -> torch.Tensor:
    """Mean colour of a 4x4 grid: 48 numbers that tell bright-left from bright-right images apart."""
    t = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float()[None] / 255.0
    return F.adaptive_avg_pool2d(t, 4).flatten()


@register
class TinyClassifier(LiveModel):
    family = "tiny-test"
    tasks = ("classification",)

    def __init__(self, task: str = "classification", classes: Sequence[str] = ("a", "b"), hidden: int = 16,
                 step_delay: float = 0.0) -> None:
        super().__init__(task, classes)
        self.hidden = hidden
        self.step_delay = step_delay
        self.net = nn.Sequential(nn.Linear(48, hidden), nn.ReLU(), nn.Linear(hidden, len(classes)))
        # "nan", "error", "oom" (CUDA's error), "alloc" (a real failed CPU allocation), "inf_grad" or
        # "predict": the next losses (or predictions) misbehave
        self.fail_with: str | None = None

    def config(self) -> dict[str, Any]:
        return {**super().config(), "hidden": self.hidden, "step_delay": self.step_delay}

    def loss(self, images: Sequence[np.ndarray], targets: Sequence[Annotation]) -> torch.Tensor:
        if self.fail_with == "error":
            raise RuntimeError("simulated failure inside the model")
        if self.fail_with == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if self.fail_with == "alloc":
            torch.empty(1 << 46, dtype=torch.uint8)  # 64 TiB: the allocator refuses, nothing is used
        x = torch.stack([features(im) for im in images]).to(self.device)
        y = torch.tensor([t.category for t in targets], device=self.device)
        if self.step_delay:
            import time

            time.sleep(self.step_delay)
        loss = F.cross_entropy(self.net(x), y)
        if self.fail_with == "nan":
            loss = loss * float("nan")
        if self.fail_with == "inf_grad":  # a finite loss whose gradients overflow
            w = self.net[0].weight * 1.0
            w.register_hook(lambda g: torch.full_like(g, float("inf")))
            loss = loss + (w * 0).sum()
        return loss

    def predict(self, images: Sequence[np.ndarray]) -> list[Annotation]:
        if self.fail_with == "predict":
            raise RuntimeError("simulated failure inside the model's predict")
        x = torch.stack([features(im) for im in images]).to(self.device)
        p = self.net(x).softmax(-1).float().cpu().numpy()
        return [
            Annotation(im.shape[1], im.shape[0], category=int(pi.argmax()), category_scores=pi)
            for im, pi in zip(images, p, strict=True)
        ]


def two_class_images(n: int, size: int = 16, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """Images bright on the left (class 0) or right (class 1), with noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        c = i % 2
        im = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        half = slice(0, size // 2) if c == 0 else slice(size // 2, size)
        im[:, half] += 150
        images.append(im)
        labels.append(c)
    return images, labels


async def plateaued_trainer(plateau_config: Any, image: np.ndarray | None = None) -> Any:
    """A started trainer on one image with contradictory labels, run until its plateau detector fires.

    The loss cannot fall below ln 2 there, so a plateau is certain; returns the paused trainer.
    """
    from livetrain_widgets.engine.trainer import Trainer, TrainerConfig

    torch.manual_seed(0)
    img = two_class_images(1)[0][0] if image is None else image
    tr = Trainer(TinyClassifier(), lambda k: img, TrainerConfig(batch_size=4, lr=1e-2), plateau_config=plateau_config)
    for k in range(4):
        tr.set_sample(k, Annotation(16, 16, category=k % 2))
    await tr.start()
    for _ in range(100):
        await tr.wait_steps(20, timeout=10)
        if tr.phase == "paused":
            break
    return tr


@register
class ScriptedDetector(LiveModel):
    """A detector whose predictions are set by the test: ``answers[i]`` for the image whose first pixel is i.

    Its loss is a real (trivial) function of one parameter, so the trainer can step it; what it predicts
    does not depend on training. For tests of what happens *around* predictions (thresholds, offering).
    """

    family = "scripted-test"
    tasks = ("detection",)

    def __init__(self, task: str = "detection", classes: Sequence[str] = ("a", "b")) -> None:
        super().__init__(task, classes)
        self.w = nn.Parameter(torch.ones(1))
        self.answers: dict[int, Annotation] = {}

    def loss(self, images: Sequence[np.ndarray], targets: Sequence[Annotation]) -> torch.Tensor:
        return (self.w**2).sum()

    def predict(self, images: Sequence[np.ndarray]) -> list[Annotation]:
        out = []
        for im in images:
            ann = self.answers.get(int(im[0, 0, 0]))
            out.append(ann if ann is not None else Annotation.empty(im.shape[1], im.shape[0]))
        return out


def indexed_images(n: int, size: int = 64) -> list[np.ndarray]:
    """Grey images whose first pixel is their index (what ScriptedDetector reads)."""
    images = []
    for i in range(n):
        im = np.full((size, size, 3), 128, np.uint8)
        im[0, 0] = i
        images.append(im)
    return images
