"""Soak: a long labeling session through the app, training running between submissions.

The whole loop a person drives (open an image, pre-labels predicted, label, Finish & Next) runs through
the LiveAnnotator's own messages, ``scale(200, 1000)`` times, while the trainer trains between them.
Resident memory and event-loop lag are measured over the first and the last stretch: a per-image leak
(a cache, a history, a list of timings) shows up as memory growing with the number of submissions.
"""

from __future__ import annotations

import asyncio
import gc
import time

import numpy as np
import psutil

from livetrain_widgets import SessionConfig, TrainerConfig
from livetrain_widgets.widgets.app import LiveAnnotator

from ..test_widget_canvas import custom, update
from ..tiny_model import TinyClassifier, two_class_images
from .report import record, scale


class LagProbe:
    """Event-loop lag: how late a 10 ms sleep wakes up (what a widget message waits, at worst)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            self.samples.append(time.perf_counter() - t0 - 0.01)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def take(self) -> list[float]:
        out, self.samples = self.samples, []
        return out

    def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()


def _mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def _ms(samples: list[float], q: float) -> float:
    return 1000 * float(np.quantile(samples, q))


async def test_soak_submissions_with_training_between(tmp_project) -> None:
    n = scale(200, 1000)
    window = max(20, n // 10)
    images, labels = two_class_images(n + 1, size=32)
    cfg = SessionConfig(trainer=TrainerConfig(batch_size=4, lr=1e-2, offer_min_steps=5, checkpoint_every_s=5))
    app = LiveAnnotator(images, "classification", ["left", "right"], project=tmp_project, model=TinyClassifier(),
                        config=cfg, plots=True)
    s = app.session
    probe = LagProbe()
    probe.start()
    await asyncio.sleep(0)
    await app.wait_idle()
    marks: dict[str, float] = {}
    lags: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for k in range(n):
        if k == window:  # warmed up: caches filled, model and optimizer state allocated
            marks["rss_start"] = _mb()
            lags["start"] = probe.take()
        if k == n - window:
            probe.take()
        image_id = app.image_id
        update(app.canvas, {"category": labels[s.image_ids.index(image_id)]})
        custom(app.canvas, {"type": "action", "action": "submit", "image_id": image_id})
        await asyncio.sleep(0)
        await app.wait_idle()
        assert app.image_id != image_id, app.panel.error  # the next image opened
        await s.wait_steps(1, timeout=30)  # training between submissions
    lags["end"] = probe.take()
    marks["rss_end"] = _mb()
    seconds = time.perf_counter() - t0
    probe.stop()
    assert s.store.labeled_count() == n and s.state.error is None
    assert s.store.integrity_check() == "ok"
    steps = s.state.step
    await app.close()

    growth = marks["rss_end"] - marks["rss_start"]
    per_image_kb = 1024 * growth / (n - 2 * window)
    start_p95, end_p95 = _ms(lags["start"], 0.95), _ms(lags["end"], 0.95)
    record(
        "soak",
        f"{n} submissions through the app, training between them ({steps} steps, {seconds:.0f} s)",
        n,
        f"RSS {marks['rss_start']:.0f} → {marks['rss_end']:.0f} MB ({per_image_kb:+.1f} KB per submission); "
        f"event-loop lag p50/p95/max {_ms(lags['start'], 0.5):.1f}/{start_p95:.1f}/{1000 * max(lags['start']):.1f} ms "
        f"at the start, {_ms(lags['end'], 0.5):.1f}/{end_p95:.1f}/{1000 * max(lags['end']):.1f} ms at the end",
        0,
    )
    # No unbounded growth: a leak of one small record per submission would already show as tens of KB.
    assert per_image_kb < 64, f"resident memory grew {growth:.1f} MB over {n} submissions"
    assert end_p95 < 3 * start_p95 + 20, (start_p95, end_p95)
