"""Loss-plateau detector."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livetrain_widgets.engine.plateau import PlateauConfig, PlateauDetector

CFG = PlateauConfig(window=40, threshold=0.01, patience=3)
#: earliest firing on a flat loss: two windows, then patience - 1 more checks
EARLIEST = 2 * CFG.window + (CFG.patience - 1) * CFG.every
#: stated bound for a noisy flat loss (noise up to 50 % of the level): 20 checks more than the earliest
NOISY_BOUND = EARLIEST + 20 * CFG.every


def _feed(det, losses):
    for i, v in enumerate(losses):
        if det.update(v):
            return i + 1
    return None


def test_constant_loss_fires_at_the_earliest_step():
    det = PlateauDetector(CFG)
    assert _feed(det, [0.7] * 1000) == EARLIEST
    assert det.plateaued and det.state()["signals"] == CFG.patience
    events = [r for r in det.history if r.get("event") == "plateau"]
    assert [r["step"] for r in events] == [EARLIEST]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), level=st.floats(1e-3, 1e3), rel_noise=st.floats(0.0, 0.5))
def test_noisy_flat_loss_fires_within_bound(seed, level, rel_noise):
    rng = np.random.default_rng(seed)
    losses = level * (1 + rel_noise * rng.standard_normal(NOISY_BOUND + 10))
    fired = _feed(PlateauDetector(CFG), np.abs(losses))
    assert fired is not None and EARLIEST <= fired <= NOISY_BOUND


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    level=st.floats(1e-2, 1e3),
    factors=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50),
    speed=st.floats(2.0, 4.0),
)
def test_fast_decreasing_loss_never_fires(level, factors, speed):
    """Irregular but monotone decay of at least ``speed`` (>= 2) thresholds per window never fires."""
    base = speed * CFG.threshold / CFG.window  # each step drops by base * [1, 2): >= speed per window
    det = PlateauDetector(CFG)
    loss = level
    for i in range(1500):
        loss *= 1 - base * (1 + factors[i % len(factors)])
        assert not det.update(loss), f"fired at step {i + 1} on a loss falling fast"


def test_nan_and_inf_are_skipped_but_recorded():
    det = PlateauDetector(CFG)
    n = _feed(det, [1.0, math.nan] * 40 + [1.0] * 1000)
    assert n == 40 + EARLIEST  # the 40 NaN steps do not count toward the windows
    skipped = [r for r in det.history if r.get("skipped")]
    assert len(skipped) == 40 and all(r["loss"] is None for r in skipped)
    assert det.update(math.inf) is True  # still plateaued; a bad step does not un-fire it
    assert det.history[-1]["skipped"] and det.history[-1]["loss"] is None


def test_reset_unfires_and_gives_new_data_a_full_window():
    det = PlateauDetector(CFG)
    _feed(det, [0.5] * EARLIEST)
    assert det.plateaued
    det.reset("new label")
    assert not det.plateaued and det.state()["steps_since_reset"] == 0
    assert det.history[-1]["event"] == "reset" and det.history[-1]["reason"] == "new label"
    # after a reset the same flat loss needs the full EARLIEST steps again
    assert _feed(det, [0.5] * 1000) == EARLIEST


def test_slow_but_real_progress_is_not_a_plateau_until_it_slows():
    det = PlateauDetector(CFG)
    t = np.arange(3000)
    losses = 0.2 + np.exp(-t / 300)  # fast at first, then flattens at 0.2
    fired = _feed(det, losses)
    assert fired is not None and fired > 600  # still improving >1 %/window for the first ~hundreds


def test_state_round_trip_json():
    a = PlateauDetector(CFG)
    rng = np.random.default_rng(0)
    losses = 1 + 0.1 * rng.standard_normal(400)
    _feed(a, losses[:150])
    a.reset()
    _feed(a, losses[150:230])
    b = PlateauDetector()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.config == a.config and b.state() == a.state()
    for v in losses[230:]:
        assert a.update(v) == b.update(v)
    assert a.history == b.history


def test_load_state_rejects_bad_keys():
    good = PlateauDetector().state_dict()
    with pytest.raises(ValueError, match="unknown keys"):
        PlateauDetector().load_state_dict({**good, "bogus": 0})
    bad = {k: v for k, v in good.items() if k != "signals"}
    with pytest.raises(ValueError, match="missing keys"):
        PlateauDetector().load_state_dict(bad)
    with pytest.raises(ValueError, match="PlateauConfig"):
        PlateauDetector().load_state_dict({**good, "config": {"window": 10}})


def test_history_is_bounded_but_spans_the_session():
    det = PlateauDetector(PlateauConfig(window=20, history_size=200))
    for i in range(20000):
        det.update(1.0 + 0.01 * math.sin(i))
        if i % 500 == 0:
            det.reset()
    h = det.history
    assert len(h) <= 200
    steps = [r["step"] for r in h if "loss" in r]
    assert steps[0] < 2000 and steps[-1] > 18000  # the early session is still plotted, coarser
    assert [r["event"] for r in h if "event" in r].count("reset") >= 10


def test_config_validation():
    with pytest.raises(ValueError):
        PlateauConfig(window=1)
    with pytest.raises(ValueError):
        PlateauConfig(patience=0)
    assert PlateauConfig().every == 25
