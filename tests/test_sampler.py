"""Frequency and uniform batch samplers on a growing key set."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livetrain_widgets.engine.sampler import (
    FrequencySampler,
    SamplerConfig,
    UniformSampler,
    expected_views,
)

# schedule: per step, how many new keys arrive before that step's batch (mostly none)
schedules = st.lists(st.integers(0, 3).map(lambda n: n if n < 3 else 0), min_size=1, max_size=60)


def _run(sampler, schedule, batch_size, on_batch=None):
    nxt = 0
    for step, n_new in enumerate(schedule):
        for _ in range(n_new if step else max(1, n_new)):
            sampler.add(nxt)
            nxt += 1
        batch = sampler.next_batch(batch_size)
        if on_batch:
            on_batch(step, batch)
    return nxt


@settings(max_examples=60, deadline=None)
@given(schedule=schedules, batch_size=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_new_keys_appear_within_queue_bound(schedule, batch_size, seed):
    """A key added while q keys (itself included) wait is in one of the next ceil(q / B) batches."""
    s = FrequencySampler(seed=seed)
    deadline: dict[int, int] = {}
    first_seen: dict[int, int] = {}
    nxt = 0
    for step, n_new in enumerate(schedule):
        for _ in range(n_new if step else max(1, n_new)):
            s.add(nxt)
            queued = len(s.stats()["queued"])
            deadline[nxt] = step + math.ceil(queued / batch_size) - 1
            nxt += 1
        keys = set(s.keys)
        batch = s.next_batch(batch_size)
        assert len(batch) == batch_size
        assert set(batch) <= keys, "a batch named a key that is not in the set"
        if len(keys) >= batch_size:
            assert len(set(batch)) == batch_size, "repeated key although enough keys exist"
        else:
            assert set(batch) == keys, "a small set must go in whole"
        for k in batch:
            first_seen.setdefault(k, step)
    for k, d in deadline.items():
        if d < len(schedule):
            assert first_seen.get(k, math.inf) <= d, f"key {k} not trained on by step {d}"


def test_one_new_label_is_in_the_very_next_batch():
    s = FrequencySampler(seed=1)
    for k in range(50):
        s.add(k)
    for _ in range(30):
        s.next_batch(4)
    for new in range(100, 110):
        s.add(new)
        assert new in s.next_batch(4)
        for _ in range(5):
            s.next_batch(4)


def test_relabel_requeues_and_keeps_count():
    s = FrequencySampler(seed=2)
    for k in range(20):
        s.add(k)
    for _ in range(40):
        s.next_batch(3)
    before = dict(zip(s.stats()["keys"], s.stats()["seen"], strict=True))
    s.add(7)  # relabeled
    st_ = s.stats()
    i = st_["keys"].index(7)
    assert st_["seen"][i] == before[7] and st_["added_step"][i] == 40 and st_["entered_step"][i] == 0
    assert 7 in s.next_batch(3)
    assert len(s) == 20


def test_remove_and_errors():
    s = FrequencySampler()
    with pytest.raises(ValueError, match="empty"):
        s.next_batch(2)
    s.add(1)
    s.add(2)
    s.remove(1)
    assert s.keys == [2] and 1 not in s
    assert s.next_batch(3) == [2, 2, 2]
    with pytest.raises(KeyError):
        s.remove(1)
    with pytest.raises(TypeError):
        s.add(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        s.next_batch(0)


@settings(max_examples=30, deadline=None)
@given(schedule=schedules, batch_size=st.integers(1, 5), seed=st.integers(0, 2**16),
       cls=st.sampled_from([FrequencySampler, UniformSampler]))
def test_state_round_trip_gives_identical_future(schedule, batch_size, seed, cls):
    a = cls(seed=seed)
    n = _run(a, schedule, batch_size)
    state = json.loads(json.dumps(a.state_dict()))  # checkpoints store it as JSON
    b = cls(seed=seed + 1)
    b.load_state_dict(state)
    for step in range(25):
        if step % 7 == 3:
            a.add(n + step)
            b.add(n + step)
        assert a.next_batch(batch_size) == b.next_batch(batch_size)
    assert a.stats() == b.stats()


def test_load_state_rejects_bad_keys():
    s = FrequencySampler()
    s.add(1)
    good = s.state_dict()
    with pytest.raises(ValueError, match="unknown keys"):
        FrequencySampler().load_state_dict({**good, "extra": 1})
    bad = dict(good)
    del bad["queue"]
    with pytest.raises(ValueError, match="missing keys"):
        FrequencySampler().load_state_dict(bad)
    with pytest.raises(ValueError, match="SamplerConfig"):
        FrequencySampler().load_state_dict({**good, "config": {"age_power": 0.5}})
    with pytest.raises(ValueError, match="kind"):
        UniformSampler().load_state_dict({**UniformSampler().state_dict(), "kind": "frequency"})


def test_deterministic_given_seed():
    def batches(seed):
        s = FrequencySampler(seed=seed)
        out = []
        _run(s, [1, 0, 0, 2, 0, 1] * 10, 3, lambda _, b: out.append(b))
        return out

    assert batches(5) == batches(5)
    assert batches(5) != batches(6)


def _growing_run(sampler, steps=2000, every=20, batch_size=4):
    sampler.add(0)
    n = 1
    for t in range(1, steps + 1):
        if t % every == 0:
            sampler.add(n)
            n += 1
        sampler.next_batch(batch_size)
    st_ = sampler.stats()
    target = expected_views(sampler)
    old = [i for i, e in enumerate(st_["entered_step"] if "entered_step" in st_ else st_["added_step"])
           if st_["step"] - e >= 100]
    ratios = [st_["seen"][i] / target[st_["keys"][i]] for i in old]
    seen_first, seen_last = st_["seen"][old[0]], st_["seen"][old[-1]]
    return max(ratios) / min(ratios), seen_first / max(1, seen_last)


#: stated bound for this scenario (batch 4, one new key per 20 steps, 2000 steps); measured 2.2-2.7
RATIO_BOUND = 3.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_long_run_balance_beats_uniform(seed):
    freq_ratio, freq_first_last = _growing_run(FrequencySampler(seed=seed))
    uni_ratio, uni_first_last = _growing_run(UniformSampler(seed=seed))
    assert freq_ratio < RATIO_BOUND
    # uniform epochs: the first key ends with ~100x the views of a key added 100 steps before the end
    assert uni_first_last > 50
    assert freq_first_last < uni_first_last / 5
    assert uni_ratio > 5 * freq_ratio


def test_uniform_epochs_cover_everything_and_new_keys_wait():
    s = UniformSampler(seed=3)
    for k in range(10):
        s.add(k)
    seen = [k for _ in range(5) for k in s.next_batch(2)]
    assert sorted(seen) == list(range(10))  # one full epoch, each key once
    s.add(99)
    first = [s.next_batch(3) for _ in range(4)]
    assert all(len(set(b)) == 3 for b in first)
    assert s.stats()["weights"] == [1 / 11] * 11


def test_stats_lists_align():
    s = FrequencySampler(SamplerConfig(age_power=1.0))
    for k in (5, 3, 9):
        s.add(k)
    s.next_batch(2)
    st_ = s.stats()
    assert st_["keys"] == [5, 3, 9]
    for name in ("seen", "added_step", "weights", "target"):
        assert len(st_[name]) == 3
    assert math.isclose(sum(st_["weights"]), 1.0)
    json.dumps(st_)
