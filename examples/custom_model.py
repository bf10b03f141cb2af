"""Plug your own model into livetrain-widgets: a small CNN image classifier behind the model protocol.

Everything the trainer, the session, the widgets, checkpoints and export need from a model is the
``LiveModel`` protocol (``livetrain_widgets/models/base.py``): ``loss`` and ``predict`` on raw images,
and ``config`` to rebuild the architecture. Register the class so a project folder can be reopened (and
an exported model reloaded) with it. See ``docs/architecture.md`` for where this fits.

Run it headless (about a minute on a CPU)::

    python examples/custom_model.py runs/custom-example

In a notebook, the same model drives the app: ``LiveAnnotator(images, "classification", classes,
project=..., model=SmallCNN("classification", classes))``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from livetrain_widgets import Annotation, LiveSession, SessionConfig, TrainerConfig, load_model
from livetrain_widgets.models.base import LiveModel, register


@register  # the family name goes into checkpoints and exports; reopening looks it up here
class SmallCNN(LiveModel):
    family = "example-small-cnn"
    tasks = ("classification",)

    def __init__(self, task: str, classes: Sequence[str], size: int = 64, width: int = 16) -> None:
        super().__init__(task, classes)
        self.size, self.width = size, width
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(2 * width, len(classes)),
        )

    def config(self) -> dict[str, Any]:
        # Everything __init__ needs to rebuild this architecture (weights travel separately).
        return {**super().config(), "size": self.size, "width": self.width}

    def _batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        # Raw (H, W, 3) uint8 images of any size come in; resizing is the model's job.
        x = [torch.from_numpy(np.array(im, copy=True)).permute(2, 0, 1).float() / 255 for im in images]
        x = [F.interpolate(t[None], size=(self.size, self.size), mode="bilinear", align_corners=False) for t in x]
        return torch.cat(x).to(self.device)

    def loss(self, images: Sequence[np.ndarray], targets: Sequence[Annotation]) -> torch.Tensor:
        x = self._batch(images)
        if self.training:  # augmentation belongs to the model too: a random horizontal flip here
            flip = torch.rand(len(x), device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        y = torch.tensor([t.category for t in targets], device=x.device)
        return F.cross_entropy(self.net(x), y)

    def predict(self, images: Sequence[np.ndarray]) -> list[Annotation]:
        # Called under torch.no_grad(); answers in the original image's size, with scores.
        probs = self.net(self._batch(images)).softmax(-1).cpu().numpy()
        return [
            Annotation(im.shape[1], im.shape[0], category=int(p.argmax()), category_scores=p)
            for im, p in zip(images, probs, strict=True)
        ]


def stripes(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """Images of horizontal (class 0) or vertical (class 1) stripes, of varied sizes, with noise.
    (A flip keeps the stripes' direction, so the augmentation above is safe for this task.)"""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        h, w = rng.integers(40, 90, 2)
        yy, xx = np.mgrid[0:h, 0:w]
        c = i % 2
        period = rng.integers(6, 12)
        wave = ((yy if c == 0 else xx) // (period // 2)) % 2
        im = (wave[..., None] * 160 + rng.integers(0, 70, (h, w, 3))).astype(np.uint8)
        images.append(im)
        labels.append(c)
    return images, labels


async def label_and_train(project: Path, n_label: int = 12, steps_per_label: int = 5) -> dict[str, Any]:
    """What a labeler's session does, headless: label images one by one while the model trains."""
    images, labels = stripes(n_label + 20)
    cfg = SessionConfig(trainer=TrainerConfig(batch_size=4, lr=3e-3, offer_min_steps=10))
    session = LiveSession(project, "classification", ["horizontal", "vertical"],
                          model=SmallCNN("classification", ["horizontal", "vertical"]), config=cfg)
    ids = session.add_images(images)
    await session.start()
    for image_id, label in zip(ids[:n_label], labels[:n_label], strict=True):
        await session.predict(image_id)  # the pre-label a person would see, judged by the live evaluator
        h, w = session.image(image_id).shape[:2]
        await session.submit(image_id, Annotation(w, h, category=label))
        await session.wait_steps(steps_per_label, timeout=60)
    await session.wait_steps(60, timeout=120)
    held_out = ids[n_label:]
    predictions = [await session.predict(i) for i in held_out]
    truth = labels[n_label:]
    accuracy = float(np.mean([p.annotation.category == c for p, c in zip(predictions, truth, strict=True)]))
    exported = session.export_model(project / "model")
    state = session.state
    await session.close()  # final checkpoint: reopening the folder resumes this model
    return {"accuracy": accuracy, "step": state.step, "quality": state.quality, "exported": exported,
            "held_out": images[n_label:], "held_out_labels": truth}


def main(project: str) -> None:
    result = asyncio.run(label_and_train(Path(project)))
    print(f"held-out accuracy {result['accuracy']:.2f} after {result['step']} steps; "
          f"live quality {result['quality']}")
    model = load_model(result["exported"])  # the exported model, outside any session
    print("exported model predicts:", [a.category for a in model.predict(result["held_out"][:6])])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/custom-example")
