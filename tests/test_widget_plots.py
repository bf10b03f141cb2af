"""Live plots in Python: the data computed from a real session, the wire format, and binding.

The front end (js/src/plots/) is tested with node:test units (js/test) and in a real browser; here everything a plot
shows is checked against the engine parts it reads (trainer losses, plateau events, sampler stats,
evaluator history).
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import traitlets

from livetrain_widgets import Annotation, LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.engine.evaluator import LiveEvaluator
from livetrain_widgets.engine.plateau import PlateauConfig, PlateauDetector
from livetrain_widgets.widgets._watch import SessionWatcher
from livetrain_widgets.widgets.plots import (
    DETECTION_CATEGORIES,
    LivePlot,
    LivePlots,
    LossPlot,
    PlotData,
    QualityPlot,
    SamplerPlot,
    bucket_means,
    decode,
    encode,
    loss_data,
    quality_data,
    sampler_data,
    trailing_mean,
)

from .tiny_model import TinyClassifier, plateaued_trainer, two_class_images

IMAGES, LABELS = two_class_images(30)


def open_session(project: Path, **trainer: Any) -> LiveSession:
    torch.manual_seed(0)
    cfg = SessionConfig(trainer=TrainerConfig(**{"batch_size": 4, "lr": 1e-2, "offer_min_steps": 5, **trainer}))
    return LiveSession(project, "classification", ["left", "right"], model=TinyClassifier(), config=cfg)


def cls(i: int) -> Annotation:
    return Annotation(16, 16, category=LABELS[i])


@pytest.fixture
async def session(tmp_path: Path):
    s = open_session(tmp_path / "p")
    s.add_images(IMAGES)
    yield s
    await s.close()


def f64(data: bytes) -> list[float]:
    """Decode independently of the module under test."""
    assert isinstance(data, bytes) and len(data) % 8 == 0
    return list(struct.unpack(f"<{len(data) // 8}d", data))


# ------------------------------------------------------------------------------------- helpers
def test_encode_is_float64_little_endian_and_decode_inverts_it() -> None:
    raw = encode([1, 2.5, float("nan"), -3])
    assert raw[:8] == struct.pack("<d", 1.0) and len(raw) == 32
    assert decode(raw)[1] == 2.5 and np.isnan(decode(raw)[2])
    assert encode(np.arange(3, dtype=">i4")) == struct.pack("<3d", 0, 1, 2)  # any input dtype / byte order


def test_bucket_means_bounds_the_points_and_keeps_the_mean() -> None:
    x = np.arange(1, 101, dtype=float)
    y = x.copy()
    y[:10] = np.nan  # gaps are left out of a bucket's mean
    out = bucket_means({"x": x, "y": y}, 10)
    assert len(out["x"]) == len(out["y"]) == 10
    np.testing.assert_allclose(out["x"], [x[i * 10 : i * 10 + 10].mean() for i in range(10)])
    assert np.isnan(out["y"][0]) and out["y"][1] == pytest.approx(15.5)
    small = bucket_means({"x": x[:5]}, 10)
    np.testing.assert_array_equal(small["x"], x[:5])
    uneven = bucket_means({"x": np.arange(7.0)}, 3)
    assert len(uneven["x"]) == 3 and uneven["x"].mean() == pytest.approx(3.0, abs=0.5)


def test_trailing_mean() -> None:
    np.testing.assert_allclose(trailing_mean(np.array([1.0, 0, 1, 1]), 2), [1, 0.5, 0.5, 1])
    out = trailing_mean(np.array([np.nan, 2.0, np.nan]), 2)
    assert np.isnan(out[0]) and out[1] == 2 and out[2] == 2


# ------------------------------------------------------------------------------------------ loss
async def test_loss_data_is_the_trainers_losses_with_a_moving_average(session) -> None:
    ids = session.image_ids
    empty = loss_data(session)
    assert len(empty.series["step"]) == 0 and empty.meta["step"] == 0
    assert empty.meta["empty"] == "No training steps yet · Label 2 more images to start"
    for i in range(6):
        await session.submit(ids[i], cls(i))
    await session.start()
    await session.wait_steps(40, timeout=30)
    await session.trainer.stop()
    d = loss_data(session)
    n = session.trainer.step
    assert n >= 40 and d.meta["step"] == n and "empty" not in d.meta
    np.testing.assert_array_equal(d.series["step"], np.arange(1, n + 1))
    np.testing.assert_allclose(d.series["loss"], list(session.trainer.losses))
    # a bias-corrected EMA with the detector's factor, which new labels do not restart: at each step the
    # mean of all losses so far, weighted (1 - a)^age
    a = session.trainer.plateau.config.smoothing
    x = d.series["loss"]
    want = [np.average(x[: t + 1], weights=(1 - a) ** np.arange(t, -1, -1)) for t in range(n)]
    np.testing.assert_allclose(d.series["smoothed"], want)
    assert d.meta["plateaus"] == [] and d.meta["paused"] is False

    few = loss_data(session, max_points=10)
    assert all(len(v) == 10 for v in few.series.values())
    assert few.series["loss"].mean() == pytest.approx(d.series["loss"].mean(), rel=0.05)


def test_loss_data_over_a_thinned_history_decays_the_average_by_steps_not_records() -> None:
    det = PlateauDetector(PlateauConfig(history_size=16, smoothing=0.1))
    losses = [1.0] * 60 + [0.0] * 60
    for v in losses:
        det.update(v)
    d = loss_data(SimpleNamespace(plateau=det, step=det.step, config=TrainerConfig(), paused_by_plateau=False))
    steps = d.series["step"]
    assert len(steps) <= 16 and steps[-1] == 120 and np.all(np.diff(steps) > 1)  # thinned
    a = 0.1
    full = np.average(losses, weights=(1 - a) ** np.arange(119, -1, -1))
    assert d.series["smoothed"][-1] == pytest.approx(full, abs=0.01)  # what the unthinned curve ends at


async def test_plateau_periods_follow_the_detectors_events() -> None:
    cfg = PlateauConfig(window=10, patience=2, check_every=5)
    tr = await plateaued_trainer(cfg)
    assert tr.plateau.plateaued
    fired = [r["step"] for r in tr.plateau.history if r.get("event") == "plateau"]
    assert len(fired) == 1
    d = loss_data(tr)
    # the later window of the first of `patience` firing checks, up to the pause
    assert d.meta["plateaus"] == [[fired[0] - 5 - 10, fired[0], False]] and d.meta["paused"] is True
    assert d.series["step"][-1] == fired[0] == tr.step

    tr.set_sample(9, Annotation(16, 16, category=1))  # new data: the detector resets, training resumes
    await tr.wait_steps(3, timeout=10)
    d = loss_data(tr)
    assert d.meta["plateaus"] == [[fired[0] - 15, fired[0], True]] and d.meta["paused"] is False
    assert d.series["step"][-1] == tr.step > fired[0]
    await tr.stop()
    tr.close()


def test_with_the_detector_switched_off_the_loss_is_still_plotted_and_nothing_pauses() -> None:
    from livetrain_widgets.engine.trainer import Trainer

    torch.manual_seed(0)
    img = two_class_images(1)[0][0]
    tr = Trainer(TinyClassifier(), lambda k: img, TrainerConfig(batch_size=4, lr=1e-2, plateau=False),
                 plateau_config=PlateauConfig(window=10, patience=2, check_every=5))
    for k in range(4):
        tr.set_sample(k, Annotation(16, 16, category=k % 2))  # contradictory: the loss must plateau
    assert len(tr.run_steps(120)) == 120  # never paused, though the detector would have
    assert tr.plateau.plateaued and not tr.paused_by_plateau and tr.status()["plateaued"] is False
    d = loss_data(tr)
    # the teaching notebook's "detector off" plot was empty: the detector did not watch the loss at all
    assert len(d.series["step"]) > 0 and d.series["step"][-1] == 120
    assert d.meta["plateaus"] == [] and d.meta["paused"] is False
    tr.close()


# --------------------------------------------------------------------------------------- sampler
def recent_share_by_definition(stats: dict[str, Any], log: list[Any], recent: int) -> list[float]:
    """The docstring's definition, spelled out naively."""
    joined = sorted(zip(stats["entered_step"], range(len(stats["keys"])), stats["keys"], strict=True))
    out = []
    for _, drawn_at, batch in log:
        members = [k for e, _, k in joined if e <= drawn_at]
        newest = set(members[-recent:])
        out.append(sum(k in newest for k in batch) / len(batch))
    return out


async def test_sampler_data_matches_the_samplers_stats_and_batches(session) -> None:
    ids = session.image_ids
    assert sampler_data(session).meta["empty"] == "No labeled samples yet · Label 2 more images to start"
    await session.start()
    # labels arrive while training runs, so "recent" keeps moving
    for i in range(12):
        await session.submit(ids[i], cls(i))
        if i >= 2:
            await session.wait_steps(4, timeout=10)
    await session.trainer.stop()
    d = sampler_data(session, recent=5)
    st = session.trainer.sampler.stats()
    log = list(session.trainer.batch_log)
    assert st["keys"] == ids[:12] and d.meta["samples"] == 12 and d.meta["recent"] == 5
    np.testing.assert_array_equal(d.series["order"], np.arange(1, 13))
    np.testing.assert_array_equal(d.series["seen"], st["seen"])
    np.testing.assert_allclose(d.series["target"], st["target"])
    assert sum(d.series["seen"]) == 4 * session.trainer.sampler.step
    np.testing.assert_array_equal(np.isnan(d.series["seen_recent"]), [True] * 7 + [False] * 5)
    np.testing.assert_array_equal(d.series["seen_recent"][7:], st["seen"][7:])

    assert len(log) == session.trainer.step
    np.testing.assert_array_equal(d.series["batch_step"], [s for s, _, _ in log])
    want = recent_share_by_definition(st, log, 5)
    np.testing.assert_allclose(d.series["recent_share"], want)
    # with 12 samples, uniform sampling would give the 5 newest 5/12 of a batch; the frequency sampler
    # queues each new label and boosts it for a while, so the newest get more than that
    assert d.series["uniform_share"][-1] == pytest.approx(5 / 12)
    assert max(want) == 1.0  # with at most 5 samples every sample is recent
    assert np.mean(want) > np.mean(d.series["uniform_share"])
    np.testing.assert_allclose(d.series["recent_avg"], trailing_mean(np.array(want), 20))

    small = sampler_data(session, recent=2, max_points=7)
    assert len(small.series["batch_step"]) == 7 and len(small.series["order"]) == 12


# --------------------------------------------------------------------------------------- quality
async def test_quality_data_is_the_evaluators_history(session) -> None:
    ids = session.image_ids
    assert quality_data(session).meta["empty"].startswith("No pre-labels judged yet")
    for i in range(6):
        await session.submit(ids[i], cls(i))
    await session.start()
    await session.wait_steps(40, timeout=30)
    await session.submit(ids[6], cls(6))  # no pre-label: not judged
    for i in range(7, 15):
        await session.predict(ids[i])
        await session.submit(ids[i], cls(i))
    await session.trainer.stop()
    hist = session.evaluator.history
    judged = [r for r in hist if r["offered"]]
    assert len(hist) == 8 == len(judged)  # a submission without a pre-label leaves no record at all
    d = quality_data(session)
    assert d.meta["task"] == "classification" and d.meta["judged"] == 8 and d.meta["top_k"] == 3
    np.testing.assert_array_equal(d.series["order"], np.arange(1, 9))
    np.testing.assert_allclose(d.series["score"], [r["score"] for r in judged])
    np.testing.assert_allclose(d.series["ema"], [r["ema"] for r in judged])
    np.testing.assert_allclose(d.series["top1"], [float(r["top1"]) for r in judged])
    np.testing.assert_allclose(d.series["topk"], [float(r["topk"]) for r in judged])
    assert d.series["ema"][-1] == pytest.approx(session.evaluator.ema, abs=1e-6)


def test_quality_data_breaks_detection_down_by_category() -> None:
    ev = LiveEvaluator("detection", 2)
    gt = Annotation(100, 100, boxes=[[0, 0, 20, 20], [50, 50, 70, 70], [10, 60, 30, 90]], labels=[0, 1, 0])
    good = Annotation(100, 100, boxes=[[0, 0, 20, 20], [50, 50, 70, 70]], labels=[0, 0], scores=[0.9, 0.8])
    extra = Annotation(100, 100, boxes=[[0, 0, 20, 20], [80, 0, 99, 10]], labels=[0, 1], scores=[0.9, 0.9])
    ev.evaluate(1, good, gt)
    ev.evaluate(2, None, gt)  # no pre-label offered: not plotted
    ev.evaluate(3, extra, gt)
    d = quality_data(ev)
    recs = [r for r in ev.history if r["offered"]]
    assert d.meta["judged"] == 2 and d.meta["not_offered"] == 1
    assert [k for k, _ in d.meta["categories"]] == list(DETECTION_CATEGORIES)
    for k in DETECTION_CATEGORIES:
        np.testing.assert_array_equal(d.series[k], [r[k] for r in recs], err_msg=k)
    assert d.series["correct"].tolist() == [1, 1] and d.series["wrong_class"].tolist() == [1, 0]
    assert d.series["extra"].tolist() == [0, 1] and d.series["missed"].tolist() == [1, 2]
    np.testing.assert_allclose(d.series["score"], [r["score"] for r in recs])


def test_quality_data_for_segmentation_names_its_score() -> None:
    ev = LiveEvaluator("segmentation", 1)
    m = np.zeros((1, 20, 20), bool)
    m[0, 2:10, 2:10] = True
    gt = Annotation(20, 20, boxes=[[2, 2, 10, 10]], labels=[0], masks=m)
    ev.evaluate(1, Annotation(20, 20, boxes=[[2, 2, 10, 10]], labels=[0], masks=m, scores=[1.0]), gt)
    d = quality_data(ev)
    assert d.meta["score_name"] == "mean IoU"
    assert d.series["mean_iou"].tolist() == [1.0] and d.series["semantic_miou"].tolist() == [1.0]


# --------------------------------------------------------------------------------------- widgets
def test_an_unbound_plot_is_empty_but_valid() -> None:
    for plot, kind in ((LossPlot(), "loss"), (SamplerPlot(), "sampler"), (QualityPlot(), "quality")):
        assert plot.kind == kind and plot.title and plot.data == {} and plot.meta["empty"]
        assert plot.session is None and plot.refresh() is False
        plot.close()
    with pytest.raises(traitlets.TraitError, match="kind"):
        LivePlot(kind="pie")


def test_show_sends_bytes_and_strict_json() -> None:
    plot = LivePlot(kind="loss")
    plot.show(PlotData({"step": np.array([1.0, 2.0])}, {"x": float("nan"), "y": [np.float32(1.5)]}))
    assert f64(plot.data["step"]) == [1.0, 2.0]
    assert plot.meta == {"x": None, "y": [1.5]}
    with pytest.raises(traitlets.TraitError):
        plot.data = {"step": [1.0, 2.0]}  # series are bytes, never JSON number lists
    plot.close()


async def test_the_front_end_cannot_change_a_plot(session) -> None:
    plot = LossPlot(session)
    sent: list[Any] = []
    plot.send = lambda content, buffers=None: sent.append(content)
    before = (plot.title, dict(plot.data), dict(plot.meta), plot.height)
    for state in ({"title": "hacked"}, {"data": {}}, {"meta": {"empty": "<b>x</b>"}}, {"height": 999}):
        plot._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                          "buffers": []})
    assert (plot.title, plot.data, plot.meta, plot.height) == before
    assert len(sent) == 4 and all(m["type"] == "error" and "may not change" in m["message"] for m in sent)
    plot.close()


async def test_a_bound_plot_follows_training_and_pushes_only_changes(session) -> None:
    ids = session.image_ids
    loss, sampler, quality = LossPlot(session), SamplerPlot(session), QualityPlot(session)
    assert loss.data == {"step": b"", "loss": b"", "smoothed": b""}  # bound: the (empty) series, at once
    for i in range(4):
        await session.submit(ids[i], cls(i))
    await session.start()
    await session.wait_steps(20, timeout=30)
    await asyncio.sleep(0.6)  # the watcher polls 4 times a second on this event loop
    assert len(f64(loss.data["step"])) >= 20 - 2  # steps taken since the last poll are not shown yet
    assert len(f64(sampler.data["seen"])) == 4

    await session.trainer.stop()
    await asyncio.sleep(0.6)
    n = session.trainer.step
    assert f64(loss.data["step"])[-1] == n and loss.meta["step"] == n
    assert f64(sampler.data["batch_step"])[-1] == n
    assert quality.meta["judged"] == 0

    changes: list[str] = []
    for p in (loss, sampler, quality):
        p.observe(lambda c, kind=p.kind: changes.append(f"{kind}.{c['name']}"), names=["data", "meta"])
    computed = []
    original = loss._compute
    loss._compute = lambda s: computed.append(1) or original(s)  # type: ignore[method-assign]
    SessionWatcher.of(session).poll_now()
    await asyncio.sleep(0.6)
    assert changes == [] and computed == []  # nothing changed: nothing computed, nothing sent

    await session.predict(ids[5])
    await session.submit(ids[5], cls(5))  # a judged pre-label and a new sample
    SessionWatcher.of(session).poll_now()
    assert "quality.data" in changes and "sampler.data" in changes and "loss.data" not in changes
    assert quality.meta["judged"] == 1 and len(f64(quality.data["score"])) == 1

    loss.unbind()
    assert loss.session is None
    await session.start()
    await session.wait_steps(5, timeout=10)
    await session.trainer.stop()
    await asyncio.sleep(0.6)
    assert loss.meta["step"] == n  # unbound: keeps showing the last state
    assert sampler.meta["step"] == session.trainer.step > n
    for p in (loss, sampler, quality):
        p.close()
    assert not SessionWatcher.of(session)._listeners


async def test_plots_of_one_kind_on_one_session_compute_each_change_once(session, monkeypatch) -> None:
    from livetrain_widgets.widgets import plots as module

    calls: list[int] = []
    real = module.loss_data
    monkeypatch.setattr(module, "loss_data", lambda s: calls.append(s.trainer.step) or real(s))
    first, second = LossPlot(session), LossPlot(session)
    SessionWatcher.of(session).stop()  # only poll_now below drives the plots
    assert calls == [0] and first.data == second.data
    for i in range(3):
        await session.submit(session.image_ids[i], cls(i))
    await session.start()
    await session.wait_steps(5, timeout=10)
    await session.trainer.stop()
    SessionWatcher.of(session).poll_now()
    assert len(calls) == 2 and f64(first.data["step"]) == f64(second.data["step"]) != []
    first.close()
    second.close()


async def test_live_plots_holds_the_three_bound_to_one_session(session) -> None:
    plots = LivePlots(session, height=280)
    assert [p.kind for p in plots.children] == ["loss", "sampler", "quality"]
    assert all(p.session is session and p.height == 280 for p in plots.plots)
    assert plots.layout.flex_flow == "row wrap"
    plots.unbind()
    assert all(p.session is None for p in plots.plots)
    plots.bind(session)
    plots.close()
    assert all(p.session is None for p in plots.plots)
