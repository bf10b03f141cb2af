"""Frequency and uniform batch samplers on a growing key set."""

from __future__ import annotations

import hashlib
import json
import math
import time

import numpy as np
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


def _run(sampler, schedule, batch_size, on_batch=None, classes=None):
    nxt = 0
    for step, n_new in enumerate(schedule):
        for _ in range(n_new if step else max(1, n_new)):
            if classes is None:
                sampler.add(nxt)
            else:
                sampler.add(nxt, classes(nxt))
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


def _some_classes(key):
    """Detection-like labels: class 0 nearly everywhere (with repeats), 1 in a fifth, 2 rare, some empty."""
    if key % 9 == 4:
        return []
    return [0, 0, 0] + [1] * (key % 5 == 1) + [2] * (key % 13 == 6)


@settings(max_examples=30, deadline=None)
@given(schedule=schedules, batch_size=st.integers(1, 5), seed=st.integers(0, 2**16),
       cls=st.sampled_from([FrequencySampler, UniformSampler]), with_classes=st.booleans())
def test_state_round_trip_gives_identical_future(schedule, batch_size, seed, cls, with_classes):
    classes = _some_classes if with_classes else None
    a = cls(seed=seed)
    n = _run(a, schedule, batch_size, classes=classes)
    state = json.loads(json.dumps(a.state_dict()))  # checkpoints store it as JSON
    b = cls(seed=seed + 1)
    b.load_state_dict(state)
    for step in range(25):
        if step % 7 == 3:
            a.add(n + step, _some_classes(n + step) if with_classes else ())
            b.add(n + step, _some_classes(n + step) if with_classes else ())
        if step == 10 and with_classes:  # a relabel that changes the classes
            a.add(0, [2])
            b.add(0, [2])
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


def _growing_run(sampler, steps=2000, every=20, batch_size=4, classes=lambda k: ()):
    sampler.add(0, classes(0))
    n = 1
    for t in range(1, steps + 1):
        if t % every == 0:
            sampler.add(n, classes(n))
            n += 1
        sampler.next_batch(batch_size)
    st_ = sampler.stats()
    target = expected_views(sampler)
    old = [i for i, e in enumerate(st_["entered_step"] if "entered_step" in st_ else st_["added_step"])
           if st_["step"] - e >= 100]
    ratios = [st_["seen"][i] / target[st_["keys"][i]] for i in old]
    seen_first, seen_last = st_["seen"][old[0]], st_["seen"][old[-1]]
    return max(ratios) / min(ratios), seen_first / max(1, seen_last)


#: stated bound for this scenario (batch 4, one new key per 20 steps, 2000 steps); measured 2.2-2.7,
#: 2.2-2.9 with class balance on (12 seeds each)
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


# --------------------------------------------------------------------------------------- class balance
def _repeat_factor(classes_per_key, t):
    """Repeat-factor sampling written out naively (the reference for the vectorised sampler)."""
    n = len(classes_per_key)
    count = {}
    for cl in classes_per_key:
        for c in set(cl):
            count[c] = count.get(c, 0) + 1
    r = {c: max(1.0, math.sqrt(t / (m / n))) if t else 1.0 for c, m in count.items()}
    return [max((r[c] for c in cl), default=1.0) for cl in classes_per_key], r, count


def _rare_run(class_balance, seed=0, steps=3000, n_frequent=30, rare=15):
    """Blood cells: every image has many red cells (class 0), one also has a platelet (class 2)."""
    s = FrequencySampler(SamplerConfig(class_balance=class_balance), seed=seed)
    for k in range(n_frequent + 1):
        s.add(k, [0] * 7 + [2] if k == rare else [0] * 9)
    for _ in range(steps):
        s.next_batch(4)
    seen = np.array(s.stats()["seen"], np.float64)
    return seen[rare], np.delete(seen, rare).mean(), s


@pytest.mark.parametrize("seed", [0, 1])
def test_class_balance_lets_a_rare_class_be_seen_as_repeat_factor_sampling_predicts(seed):
    t, n = 0.3, 31
    r = math.sqrt(t * n)  # the platelet is in 1 of 31 samples: r = sqrt(0.3 / (1/31)) ~ 3.05
    rare_on, others_on, on = _rare_run(t, seed)
    rare_off, others_off, off = _rare_run(0.0, seed)
    st_on, st_off = on.stats(), off.stats()
    # without class balance the rare sample is one sample among 31; with it, r times a frequent one
    assert rare_off / others_off == pytest.approx(1.0, rel=0.1)
    assert 0.85 * r < rare_on / others_on < 1.1 * r  # measured 2.85 (sampling without replacement lags)
    # its share of all views goes from 1/31 to r/(30 + r)
    assert rare_on / rare_off == pytest.approx(r * n / (n - 1 + r), rel=0.1)
    assert st_on["factor"][15] == pytest.approx(r) and set(st_on["factor"][:15]) == {1.0}
    assert st_on["classes"][15] == [0, 2] and st_on["classes"][0] == [0]
    assert st_on["class_views"] == {0: sum(st_on["seen"]), 2: int(rare_on)}
    assert st_on["class_share"][2]["samples"] == pytest.approx(1 / n)
    assert st_on["class_share"][2]["views"] > 2.5 * st_off["class_share"][2]["views"]
    assert st_on["class_factor"] == {0: 1.0, 2: pytest.approx(r)}
    assert st_off["factor"] == [1.0] * n
    # the targets carry the factor, so the feedback keeps the boost instead of cancelling it
    assert st_on["target"][15] / st_on["target"][0] == pytest.approx(r)
    assert list(expected_views(on).values()) == pytest.approx(st_on["target"])


def _old_scenario(sampler, with_classes=False):
    """Growth, relabels, a removal, batch sizes below and above the set size."""
    out = []
    for step in range(400):
        if step % 9 == 0:
            sampler.add(step // 9, [step % 3, 7] if with_classes else ())
        if step % 53 == 7:
            sampler.add(step % 5)
        if step == 200:
            sampler.remove(3)
        out.append(sampler.next_batch(1 + step % 6))
    return out


#: sha256 of json.dumps(_old_scenario(FrequencySampler(seed=11))), written by the sampler before class balance
OLD_BATCHES_SHA256 = "c4502fb824c1a1aaffa115d3f2b6540ccb50d0e30ec7fc853cf4938ea7b5c19b"


def test_class_balance_zero_gives_exactly_the_batches_of_before():
    def digest(batches):
        return hashlib.sha256(json.dumps(batches).encode()).hexdigest()

    # class_balance=0 with classes, and the default without classes
    off = _old_scenario(FrequencySampler(SamplerConfig(class_balance=0.0), seed=11), with_classes=True)
    plain = _old_scenario(FrequencySampler(seed=11))
    assert off == plain
    assert digest(off) == OLD_BATCHES_SHA256
    assert off[:3] == [[0], [0, 0], [0, 0, 0]] and off[-2:] == [[44, 1, 26], [13, 43, 44, 10]]


@settings(max_examples=25, deadline=None)
@given(schedule=schedules, batch_size=st.integers(1, 5), seed=st.integers(0, 2**16),
       labels=st.lists(st.lists(st.integers(0, 4), max_size=4), min_size=1, max_size=12))
def test_class_balance_zero_ignores_classes(schedule, batch_size, seed, labels):
    def run(classes):
        s = FrequencySampler(SamplerConfig(class_balance=0.0), seed=seed)
        out = []
        _run(s, schedule, batch_size, lambda _, b: out.append(b), classes)
        return out, s.stats()["weights"]

    assert run(lambda k: labels[k % len(labels)]) == run(None)


#: written by the sampler before class balance (no "classes", no config.class_balance), with the 8
#: batches it drew next
OLD_STATE = {
    "kind": "frequency",
    "config": {"age_power": 0.5, "feedback_power": 2.0, "recency_boost": 2.0, "recency_steps": 10.0,
               "min_weight": 0.02},
    "step": 6, "keys": [10, 20, 30, 40, 50, 60], "seen": [2, 3, 2, 3, 2, 0],
    "entered_step": [0, 0, 0, 0, 0, 6], "added_step": [0, 0, 0, 0, 0, 6], "queue": [60],
    "rng": {"state": "29287479138149045759364207458872477195", "inc": "278272906083703887290699702293328866393",
            "has_uint32": 0, "uinteger": 0},
}
OLD_NEXT = [[60, 50], [60, 10], [50, 10], [40, 30], [40, 10], [40, 60], [20, 30], [50, 60]]


def test_state_written_before_class_balance_loads_and_resumes_identically():
    s = FrequencySampler(SamplerConfig(class_balance=0.0), seed=99)
    s.load_state_dict(json.loads(json.dumps(OLD_STATE)))
    assert s.config == SamplerConfig()  # the missing field takes its default
    assert s.stats()["classes"] == [[]] * 6 and s.stats()["factor"] == [1.0] * 6
    assert [s.next_batch(2) for _ in range(8)] == OLD_NEXT
    # saved again, it is a current state
    assert s.state_dict()["classes"] == [[]] * 6 and s.state_dict()["config"]["class_balance"] == 0.3

    u = UniformSampler(seed=1)
    for k in range(5):
        u.add(k, [k % 2])
    old_u = u.state_dict()
    del old_u["classes"]
    v = UniformSampler()
    v.load_state_dict(old_u)
    assert v.stats()["classes"] == [[]] * 5
    assert [v.next_batch(2) for _ in range(6)] == [u.next_batch(2) for _ in range(6)]


def test_state_with_classes_still_rejects_bad_keys():
    s = FrequencySampler()
    s.add(1, [3])
    good = s.state_dict()
    with pytest.raises(ValueError, match="unknown keys"):
        FrequencySampler().load_state_dict({**good, "class_counts": [1]})
    with pytest.raises(ValueError, match="unknown keys"):
        FrequencySampler().load_state_dict({**good, "config": {**good["config"], "class_balanse": 0.3}})
    with pytest.raises(ValueError, match="missing keys"):
        FrequencySampler().load_state_dict({k: v for k, v in good.items() if k != "seen"})
    with pytest.raises(ValueError, match="classes"):
        FrequencySampler().load_state_dict({**good, "classes": []})
    with pytest.raises(ValueError, match="unknown keys"):
        UniformSampler().load_state_dict({**UniformSampler().state_dict(), "extra": 1})


def test_add_classes_forms_and_relabel():
    s = FrequencySampler()
    s.add(1, 4)  # classification: one category
    s.add(2, np.array([3, 3, 1]))  # detection labels as an array, repeats count once
    s.add(3)  # no classes (an empty label)
    assert s.stats()["classes"] == [[4], [1, 3], []]
    for _ in range(5):
        s.next_batch(2)
    seen = s.stats()["seen"]
    s.add(2, [4])  # relabel: classes replaced, counts kept, queued again
    assert s.stats()["classes"][1] == [4] and s.stats()["seen"] == seen and s.stats()["queued"] == [2]
    s.add(2)
    assert s.stats()["classes"][1] == []
    for bad in ("ab", [1.5], [True], 2.0, None):
        with pytest.raises(TypeError):
            s.add(5, bad)
    with pytest.raises(ValueError):
        s.add(5, [-1])
    assert 5 not in s
    with pytest.raises(ValueError, match="class_balance"):
        SamplerConfig(class_balance=1.5)


@pytest.mark.parametrize("cls", [FrequencySampler, UniformSampler])
def test_set_classes_changes_classes_only(cls):
    """For samples restored from an old state: classes given without counting as a relabel."""
    s = cls(seed=3)
    for k in range(6):
        s.add(k)
    for _ in range(4):
        s.next_batch(2)
    before = s.state_dict()
    s.set_classes(4, [2, 2, 0])
    after = s.state_dict()
    assert after.pop("classes")[4] == [0, 2] and before.pop("classes")[4] == []
    assert after == before  # not queued, not relabeled, counts kept
    with pytest.raises(KeyError):
        s.set_classes(99, [1])


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(st.tuples(st.sampled_from(["add", "remove", "batch"]), st.integers(0, 12),
                           st.lists(st.integers(0, 5), max_size=5)), min_size=1, max_size=40),
    t=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    batch_size=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_class_statistics_match_a_naive_model(ops, t, batch_size, seed):
    """Whatever the adds, relabels, removes and batches: keys keep insertion order, factors are the
    repeat factors of the present labels, per-class views add up, targets share out the views."""
    s = FrequencySampler(SamplerConfig(class_balance=t), seed=seed)
    model: dict[int, list[int]] = {}  # key -> sorted classes, in insertion order
    views: dict[int, int] = {}
    for op, key, cl in ops:
        if op == "add":
            if key not in model:
                views[key] = 0
            model[key] = sorted(set(cl))
            s.add(key, cl)
        elif op == "remove" and key in model:
            del model[key], views[key]
            s.remove(key)
        elif op == "batch" and model:
            for k in s.next_batch(batch_size):
                views[k] += 1
    st_ = s.stats()
    assert st_["keys"] == list(model) and st_["classes"] == list(model.values())
    assert st_["seen"] == list(views.values())
    factor, r, count = _repeat_factor(list(model.values()), t)
    assert st_["factor"] == pytest.approx(factor)
    assert all(f >= 1.0 for f in st_["factor"])
    assert st_["class_factor"] == pytest.approx(r)
    assert st_["class_views"] == {c: sum(v for k, v in views.items() if c in model[k]) for c in count}
    total = sum(views.values())
    assert st_["class_share"] == {
        c: {"views": st_["class_views"][c] / total if total else 0.0, "samples": m / len(model)}
        for c, m in count.items()
    }
    if model:
        assert sum(st_["target"]) == pytest.approx(total)
        assert list(expected_views(s).values()) == pytest.approx(st_["target"])
        assert sum(st_["weights"]) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("classes", [lambda k: [0, 1] if k % 10 == 3 else [0], _some_classes],
                         ids=["one-rare-in-ten", "detection-like"])
def test_long_run_balance_holds_with_class_balance(seed, classes):
    """The seen/target ratio stays bounded with class balance on (targets include the class factors)."""
    ratio, _ = _growing_run(FrequencySampler(seed=seed), classes=classes)
    assert ratio < RATIO_BOUND


def test_next_batch_stays_fast_with_thousands_of_keys():
    rng = np.random.default_rng(0)
    s = FrequencySampler(seed=0)
    for k in range(5000):
        s.add(k, [0] + ([int(rng.integers(1, 20))] if rng.random() < 0.3 else []))
    for _ in range(80):
        s.next_batch(64)  # drain the queue: then every batch is drawn
    best = math.inf
    for _ in range(30):
        t0 = time.perf_counter()
        s.next_batch(16)
        best = min(best, time.perf_counter() - t0)
    assert best < 0.005  # measured ~0.7 ms (the best of 30 is robust to a busy machine)
