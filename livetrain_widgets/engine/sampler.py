"""Batch samplers for a training set that grows while the model trains.

Uniform epochs are the wrong default for live training: the first labeled images have been in the set
since step 0, so by the time the hundredth image arrives they have been seen a hundred times more often
than it. :class:`FrequencySampler` rebalances that; :class:`UniformSampler` is the textbook behaviour,
kept for comparison in the teaching notebooks.

Both samplers speak integer keys (the store's image ids) and know nothing about images or models,
except, optionally, which class indices each sample's label contains (for class balance).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from itertools import chain
from typing import Any

import numpy as np

from ._state import check_keys


@dataclass
class SamplerConfig:
    """Knobs of :class:`FrequencySampler`; the defaults are what the engine uses on a CPU.

    age_power: how a sample's share of all views grows with the time it has been in the set. Its
        target count is ``views_so_far * age**age_power / sum(age**age_power)``. ``1.0`` would give
        every sample the same rate per step *at the current set size*, which still leaves the first
        samples with far more views in total; ``0.0`` would give every sample the same total, so a new
        sample would monopolise batches until it caught up with the old ones (overfitting to it). The
        default ``0.5`` sits between: a sample 20 times older is targeted to have about 4.5 times the
        views instead of the ~100 times of uniform epochs, so focus shifts toward recent data while old
        samples keep appearing.
    feedback_power: weight = ``((target + 1) / (seen + 1)) ** feedback_power``. Larger values follow the
        target more tightly (less randomness); 2 keeps seen/target within a small factor (see tests)
        while batches stay random enough that the same samples do not always travel together.
    recency_boost, recency_steps: a (re)labeled sample's weight is multiplied by
        ``1 + recency_boost * exp(-steps_since_labeled / recency_steps)``. The queue already places it in
        the next batch; the boost makes it likely to come back a few times in the following ~20 steps,
        which is what a person who just corrected a label expects to see reflected in the next
        prediction. It decays fast enough not to matter for the long-run balance.
    min_weight: floor relative to the mean weight, so an over-seen sample is rarer but never vanishes
        (diversity over the whole set is kept).
    class_balance: the threshold ``t`` of repeat-factor sampling (Gupta et al., LVIS, CVPR 2019), so a
        class with few examples is not drowned by a frequent one (platelets among red blood cells:
        nearly every image has many red cells, few have a platelet). With ``f(c)`` the fraction of the
        present samples whose label contains class ``c``, ``r(c) = max(1, sqrt(t / f(c)))``, and a
        sample's factor is the largest ``r(c)`` over its classes (1 without classes, e.g. an empty
        label). The factor multiplies the sample's *target* share (``age**age_power * factor``), not
        only its weight: the feedback term pulls every sample toward its target, so a boost applied to
        the weight alone would be undone within a few batches. Classes in at least ``t`` of the samples
        are not boosted; the square root keeps a rare class's share of all views near ``sqrt(t * f)``
        instead of ``f``, so it is learnt without its handful of images being memorised. LVIS uses
        ``t = 0.001`` for >1000 classes; a labeling session has a few classes and tens to thousands of
        images, where a class in 10% of the samples is already rare. The default ``0.3`` gives a class
        in 10% of samples 1.7 times the views per sample, 3% -> 3.2 times, 1% -> 5.5 times. ``0`` turns
        class balance off (the batches are then exactly those of a sampler that never saw classes).
        Factors follow the current class frequencies: when a class becomes common its samples' targets
        drop and the feedback lets the others catch up, as it does for age.
    """

    age_power: float = 0.5
    feedback_power: float = 2.0
    recency_boost: float = 2.0
    recency_steps: float = 10.0
    min_weight: float = 0.02
    class_balance: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.age_power <= 2.0:
            raise ValueError(f"age_power must lie in [0, 2], got {self.age_power}")
        if self.feedback_power < 0 or self.recency_boost < 0 or self.min_weight < 0:
            raise ValueError("feedback_power, recency_boost and min_weight must not be negative")
        if self.recency_steps <= 0:
            raise ValueError(f"recency_steps must be positive, got {self.recency_steps}")
        if not 0.0 <= self.class_balance <= 1.0:
            raise ValueError(f"class_balance must lie in [0, 1], got {self.class_balance}")


#: config fields added after checkpoints existed: a stored config without them takes the default
_LATER_FIELDS = frozenset({"class_balance"})


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    # PCG64's state holds 128-bit integers; strings keep them exact in any JSON reader, not only Python's.
    st = rng.bit_generator.state
    return {
        "state": str(st["state"]["state"]),
        "inc": str(st["state"]["inc"]),
        "has_uint32": int(st["has_uint32"]),
        "uinteger": int(st["uinteger"]),
    }


def _set_rng_state(rng: np.random.Generator, data: dict[str, Any]) -> None:
    check_keys(data, ("state", "inc", "has_uint32", "uinteger"), "random generator")
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": int(data["state"]), "inc": int(data["inc"])},
        "has_uint32": int(data["has_uint32"]),
        "uinteger": int(data["uinteger"]),
    }


def _key(key: Any) -> int:
    if isinstance(key, (bool, float)) or not isinstance(key, (int, np.integer)):
        raise TypeError(f"sampler keys are integer ids, got {key!r}")
    return int(key)


def _classes(classes: Any) -> tuple[int, ...]:
    """The distinct class indices of a label, sorted: an iterable of ints (repeats allowed), or one int."""
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        classes = (classes,)
    elif isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
        raise TypeError(f"classes must be class indices (ints), got {classes!r}")
    out = set()
    for c in classes:
        if isinstance(c, (bool, float)) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"class indices are ints, got {c!r}")
        if c < 0:
            raise ValueError(f"class indices are not negative, got {c}")
        out.add(int(c))
    return tuple(sorted(out))


def _flatten(classes: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample class counts and all class indices in one array (CSR-style, sample by sample)."""
    lens = np.fromiter(map(len, classes), np.int64, count=len(classes))
    return lens, np.fromiter(chain.from_iterable(classes), np.int64, count=int(lens.sum()))


def repeat_factor(count: np.ndarray, total: float, t: float) -> np.ndarray:
    """LVIS's repeat factor ``max(1, sqrt(t / f))`` of classes found ``count`` times out of ``total``
    (samples here; objects for the trainer's per-object class weights). ``count`` must be positive."""
    return np.maximum(1.0, np.sqrt(t * total / np.asarray(count, np.float64)))


def _repeat_factors(classes: list[tuple[int, ...]], t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Repeat-factor sampling over per-sample class sets (see ``SamplerConfig.class_balance``).

    Returns ``(factor, class_ids, class_count, class_factor)``: the per-sample factor (aligned with
    ``classes``), the classes present (sorted), how many samples contain each, and each one's ``r(c)``.
    """
    n = len(classes)
    lens, flat = _flatten(classes)
    ids, inv, count = np.unique(flat, return_inverse=True, return_counts=True)
    r = repeat_factor(count, n, t) if t > 0 else np.ones(len(ids))
    factor = np.ones(n)
    if t > 0 and flat.size:
        np.maximum.at(factor, np.repeat(np.arange(n), lens), r[inv])
    return factor, ids, count, r


def _class_stats(classes: list[tuple[int, ...]], seen: np.ndarray, t: float) -> dict[str, Any]:
    """The per-sample and per-class class-balance entries of ``stats()``."""
    factor, ids, count, r = _repeat_factors(classes, t)
    lens, flat = _flatten(classes)
    views = np.zeros(len(ids), np.int64)
    np.add.at(views, np.searchsorted(ids, flat), np.repeat(seen, lens))
    total, n = int(seen.sum()), max(1, len(classes))
    cls = ids.tolist()
    return {
        "classes": [list(c) for c in classes],
        "factor": factor.tolist(),
        "class_views": dict(zip(cls, views.tolist(), strict=True)),
        "class_share": {
            c: {"views": v / total if total else 0.0, "samples": m / n}
            for c, v, m in zip(cls, views.tolist(), count.tolist(), strict=True)
        },
        "class_factor": dict(zip(cls, r.tolist(), strict=True)),
    }


def _load_classes(state: dict[str, Any], n: int, what: str) -> list[tuple[int, ...]]:
    # states written before class balance have no "classes": every sample then has none
    if "classes" not in state:
        return [()] * n
    if not isinstance(state["classes"], list) or len(state["classes"]) != n:
        raise ValueError(f"{what} state: 'classes' must list one class list per key")
    return [_classes(c) for c in state["classes"]]


def _check_state(state: Any, required: Iterable[str], optional: Iterable[str], what: str) -> None:
    """``check_keys`` where ``optional`` keys (added after checkpoints existed) may be missing."""
    present = [k for k in optional if isinstance(state, dict) and k in state]
    check_keys(state, [*required, *present], what)


def _top_k(x: np.ndarray, k: int) -> np.ndarray:
    """``np.argsort(x, kind="stable")[:k]`` in linear time (ties broken by index, as a stable sort does)."""
    if k >= len(x):
        return np.argsort(x, kind="stable")[:k]
    kth = np.partition(x, k - 1)[k - 1]
    cand = np.flatnonzero(x <= kth)  # ascending index: a stable sort of these keeps tie order
    return cand[np.argsort(x[cand], kind="stable")[:k]]


class _Keys:
    """What both samplers share: the labeled keys with their view counts, and the step counter."""

    _seen: dict[int, int]
    _step: int

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    @property
    def keys(self) -> list[int]:
        return list(self._seen)

    @property
    def step(self) -> int:
        return self._step


class FrequencySampler(_Keys):
    """Weighted batch sampler that keeps old and new samples' view counts balanced as the set grows.

    How it decides (all per key, updated every batch):

    1. **Queue.** A key that is added (or re-added because its label changed) joins a FIFO queue, and
       queued keys fill the next batches before anything is drawn. With batch size ``B``, a key that
       is ``q``-th in the queue when added is in one of the next ``ceil(q / B)`` batches; in the usual
       live case (one new label at a time) that is the very next batch.
    2. **Target.** Each present key has an *age* (batches since it first entered), a class factor
       ``r_i`` (repeat-factor sampling over the classes in its label, see
       ``SamplerConfig.class_balance``; 1 without classes) and a target view count
       ``target_i = V * age_i**a * r_i / sum_j age_j**a * r_j``, where ``V`` is the total number of
       views of the present keys after this batch and ``a`` is ``config.age_power``. Targets sum to
       the views actually handed out, so ``seen / target`` is centred on 1 for everybody. The factor
       sits in the target, not only in the weight below, because the weight's feedback term pulls
       every key back to its target and would cancel a boost applied to the weight alone.
    3. **Weight.** ``w_i = ((target_i + 1) / (seen_i + 1)) ** feedback_power``, times the base rate
       ``age_i**(a-1) * r_i`` (the slope of the target), times a recency boost that decays within
       ~``recency_steps`` after a (re)label, floored at ``min_weight`` times the mean. Over-seen
       samples (the early ones, which had batches to themselves while the set was tiny) are drawn
       rarely until the others catch up; under-seen ones are drawn more. This negative feedback is
       what keeps ``max(seen/target) / min(seen/target)`` bounded over a long run.
    4. **Draw.** Remaining slots are filled by weighted sampling *without* replacement (Gumbel top-k)
       when there are at least ``B`` keys, so a batch never repeats a key; with fewer keys every key
       appears once and the rest are weighted draws with replacement.

    Everything random comes from one seeded generator whose state is part of :meth:`state_dict`, so a
    resumed session draws exactly the batches the uninterrupted one would have drawn.

    Per-key state lives in numpy arrays (rows in insertion order, which keeps draws deterministic) so a
    batch costs a few vectorised passes even with thousands of keys; class factors are cached and
    recomputed only after an add, a remove or a load.
    """

    # rows of self._cols
    _KEY, _SEEN, _ENTERED, _LABELED = range(4)

    def __init__(self, config: SamplerConfig | None = None, seed: int = 0) -> None:
        self.config = config or SamplerConfig()
        self._rng = np.random.default_rng(seed)
        self._step = 0
        self._index: dict[int, int] = {}  # key -> column of self._cols / entry of self._classes
        self._cols = np.zeros((4, 16), np.int64)  # key, seen, entered step, (re)labeled step
        self._classes: list[tuple[int, ...]] = []
        self._factor_cache: tuple[float, np.ndarray] | None = None  # (class_balance it was made with, factors)
        self._queue: list[int] = []

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    @property
    def keys(self) -> list[int]:
        return self._col(self._KEY).tolist()

    def _col(self, row: int) -> np.ndarray:
        return self._cols[row, : len(self._index)]

    # ------------------------------------------------------------------------------- the set
    def add(self, key: int, classes: Iterable[int] | int = ()) -> None:
        """A newly labeled sample, or (if already present) a relabeled one: recent again, same counts.

        ``classes``: the class indices in its label, for class balance (an int or any iterable of ints;
        repeats are fine and count once: a detection label can pass the labels of all its objects,
        a classification label its category; an empty label, nothing). Re-adding replaces them.
        """
        k = _key(key)
        cls = _classes(classes)
        i = self._index.get(k)
        if i is None:
            i = len(self._index)
            if i == self._cols.shape[1]:
                self._cols = np.concatenate([self._cols, np.zeros_like(self._cols)], axis=1)
            self._cols[:, i] = (k, 0, self._step, self._step)
            self._index[k] = i
            self._classes.append(cls)
            self._factor_cache = None
        else:
            self._cols[self._LABELED, i] = self._step
            if self._classes[i] != cls:
                self._classes[i] = cls
                self._factor_cache = None
        if k not in self._queue:
            self._queue.append(k)

    def set_classes(self, key: int, classes: Iterable[int] | int = ()) -> None:
        """Replace a present sample's classes without counting it as relabeled (not queued, no recency
        boost): for giving classes to samples restored from a state written before class balance."""
        k = _key(key)
        if k not in self._index:
            raise KeyError(f"key {k} is not in the sampler")
        cls, i = _classes(classes), self._index[k]
        if self._classes[i] != cls:
            self._classes[i] = cls
            self._factor_cache = None

    def remove(self, key: int) -> None:
        """Forget a sample (deleted or discarded label). Adding it again later starts it afresh."""
        k = _key(key)
        if k not in self._index:
            raise KeyError(f"key {k} is not in the sampler")
        i, n = self._index.pop(k), len(self._index)
        self._cols[:, i:n] = self._cols[:, i + 1 : n + 1]
        del self._classes[i]
        for j, moved in enumerate(self._cols[self._KEY, i:n].tolist(), start=i):
            self._index[moved] = j
        self._factor_cache = None
        if k in self._queue:
            self._queue.remove(k)

    # ------------------------------------------------------------------------------- sampling
    def _factors(self) -> np.ndarray:
        t = self.config.class_balance
        if self._factor_cache is None or self._factor_cache[0] != t:
            self._factor_cache = (t, _repeat_factors(self._classes, t)[0])
        return self._factor_cache[1]

    def _age(self) -> np.ndarray:
        return (self._step - self._col(self._ENTERED) + 1).astype(np.float64)

    def _targets(self, views_after: int) -> np.ndarray:
        share = self._age() ** self.config.age_power * self._factors()
        return views_after * share / share.sum()

    def _weights(self, targets: np.ndarray) -> np.ndarray:
        cfg = self.config
        seen = self._col(self._SEEN).astype(np.float64)
        since = (self._step - self._col(self._LABELED)).astype(np.float64)
        # base rate: the slope of age**a * r, i.e. the share of this batch a key on target should get
        w = self._age() ** (cfg.age_power - 1.0) * self._factors()
        w *= ((targets + 1.0) / (seen + 1.0)) ** cfg.feedback_power
        w *= 1.0 + cfg.recency_boost * np.exp(-since / cfg.recency_steps)
        return np.maximum(w, cfg.min_weight * w.mean())

    def next_batch(self, batch_size: int) -> list[int]:
        """Keys of the next batch (see the class docstring); counts the views and advances the step."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        n = len(self._index)
        if not n:
            raise ValueError("the sampler is empty: add at least one labeled sample first")
        # a set no larger than the batch goes in whole; otherwise waiting (re)labeled keys go first
        if n <= batch_size:
            rows = np.arange(n)
            self._queue = []
        else:
            rows = np.array([self._index[k] for k in self._queue[:batch_size]], np.int64)
            self._queue = self._queue[batch_size:]
        need = batch_size - len(rows)
        if need:
            views_after = int(self._col(self._SEEN).sum()) + batch_size
            w = self._weights(self._targets(views_after))
            if n >= batch_size:
                free = np.ones(n, bool)
                free[rows] = False
                free_rows = np.flatnonzero(free)
                # Gumbel top-k = successive weighted sampling without replacement
                g = np.log(w[free_rows]) + self._rng.gumbel(size=len(free_rows))
                rows = np.concatenate([rows, free_rows[_top_k(-g, need)]])
            else:
                picks = self._rng.choice(n, size=need, replace=True, p=w / w.sum())
                rows = np.concatenate([rows, picks])
        np.add.at(self._cols[self._SEEN], rows, 1)
        self._step += 1
        return self._cols[self._KEY, rows].tolist()

    # ------------------------------------------------------------------------------- reporting
    def stats(self) -> dict[str, Any]:
        """Per-key lists (same order as ``keys``) for plots: views, targets, current weights, classes.

        ``classes`` (per key, sorted), ``factor`` (per key: its class factor ``r_i``), and per class
        (dicts keyed by class index, over the current labels): ``class_views`` (total views of the
        samples containing it), ``class_share`` (``{"views": share of all views, "samples": share of
        the samples}``; a sample with several classes counts for each, so neither sums to 1) and
        ``class_factor`` (its ``r(c)``). Class balance working shows as ``views > samples`` for rare
        classes.
        """
        keys = self.keys
        out: dict[str, Any] = {"step": self._step, "keys": keys, "queued": list(self._queue)}
        seen = self._col(self._SEEN)
        out["seen"] = seen.tolist()
        out["added_step"] = self._col(self._LABELED).tolist()
        out["entered_step"] = self._col(self._ENTERED).tolist()
        if keys:
            targets = self._targets(int(seen.sum()))
            w = self._weights(targets)
            out["target"] = [float(t) for t in targets]
            out["weights"] = [float(v) for v in w / w.sum()]
        else:
            out["target"], out["weights"] = [], []
        out.update(_class_stats(self._classes, seen, self.config.class_balance))
        return out

    # ------------------------------------------------------------------------------- checkpoints
    _STATE_KEYS = ("kind", "config", "step", "keys", "seen", "entered_step", "added_step", "queue", "rng")
    #: keys a state written before they existed may lack (loaded as: no classes)
    _OPTIONAL_KEYS = ("classes",)

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "frequency",
            "config": asdict(self.config),
            "step": self._step,
            "keys": self.keys,
            "seen": self._col(self._SEEN).tolist(),
            "entered_step": self._col(self._ENTERED).tolist(),
            "added_step": self._col(self._LABELED).tolist(),
            "classes": [list(c) for c in self._classes],
            "queue": list(self._queue),
            "rng": _rng_state(self._rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (its config included: future batches depend on it).

        States written before class balance existed (no ``classes``, no ``config.class_balance``) load
        as samples without classes under the default config, which draws the batches they always drew.
        """
        _check_state(state, self._STATE_KEYS, self._OPTIONAL_KEYS, "FrequencySampler")
        if state["kind"] != "frequency":
            raise ValueError(f"not a FrequencySampler state (kind {state['kind']!r})")
        config = _config_from(SamplerConfig, state["config"])
        keys = [_key(k) for k in state["keys"]]
        cols = [state["seen"], state["entered_step"], state["added_step"]]
        if any(len(c) != len(keys) for c in cols) or len(set(keys)) != len(keys):
            raise ValueError("FrequencySampler state: per-key lists differ in length or repeat a key")
        classes = _load_classes(state, len(keys), "FrequencySampler")
        queue = [_key(k) for k in state["queue"]]
        if not set(queue) <= set(keys):
            raise ValueError("FrequencySampler state: the queue names keys that are not in the set")
        _set_rng_state(self._rng, state["rng"])
        self.config = config
        self._step = int(state["step"])
        self._cols = np.zeros((4, max(16, len(keys))), np.int64)
        self._cols[:, : len(keys)] = np.array([keys, *cols], np.int64).reshape(4, len(keys))
        self._index = {k: i for i, k in enumerate(keys)}
        self._classes = classes
        self._factor_cache = None
        self._queue = queue


def _config_from(cls: type, data: Any) -> Any:
    # a field in _LATER_FIELDS may be missing (a config stored before it existed takes its default)
    names = [f.name for f in fields(cls) if f.name not in _LATER_FIELDS or (isinstance(data, dict) and f.name in data)]
    check_keys(data, names, cls.__name__)
    return cls(**data)


class UniformSampler(_Keys):
    """Reshuffled epochs over the current set: the conventional sampler, for comparison.

    New keys wait for the next epoch (so, unlike :class:`FrequencySampler`, nothing guarantees when a
    new label is first trained on). A batch that crosses an epoch boundary takes the rest of the old
    epoch and then the first keys of the new one that it does not already hold, so batches stay
    distinct whenever there are at least ``batch_size`` keys.

    Classes given to :meth:`add` do not change the batches (uniform epochs are the baseline that class
    balance is compared with); they are kept for :meth:`stats`, whose per-class figures show how far
    uniform epochs leave rare classes behind.
    """

    def __init__(self, config: SamplerConfig | None = None, seed: int = 0) -> None:
        # config is accepted for a drop-in interface; uniform sampling has nothing to configure (its
        # class_balance only sets the factors stats() reports, i.e. what FrequencySampler would aim at)
        self.config = config or SamplerConfig()
        self._rng = np.random.default_rng(seed)
        self._step = 0
        self._seen: dict[int, int] = {}
        self._labeled: dict[int, int] = {}
        self._classes: dict[int, tuple[int, ...]] = {}
        self._epoch: list[int] = []

    def add(self, key: int, classes: Iterable[int] | int = ()) -> None:
        """Add a labeled sample; its ``classes`` (as for :meth:`FrequencySampler.add`) only feed stats."""
        k = _key(key)
        self._classes[k] = _classes(classes)
        if k not in self._seen:  # re-adding (a relabel) changes nothing for uniform epochs
            self._seen[k] = 0
            self._labeled[k] = self._step

    def set_classes(self, key: int, classes: Iterable[int] | int = ()) -> None:
        """As :meth:`FrequencySampler.set_classes`."""
        k = _key(key)
        if k not in self._seen:
            raise KeyError(f"key {k} is not in the sampler")
        self._classes[k] = _classes(classes)

    def remove(self, key: int) -> None:
        k = _key(key)
        if k not in self._seen:
            raise KeyError(f"key {k} is not in the sampler")
        del self._seen[k], self._labeled[k], self._classes[k]
        self._epoch = [e for e in self._epoch if e != k]

    def _new_epoch(self) -> list[int]:
        keys = list(self._seen)
        return [keys[i] for i in self._rng.permutation(len(keys))]

    def next_batch(self, batch_size: int) -> list[int]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not self._seen:
            raise ValueError("the sampler is empty: add at least one labeled sample first")
        batch: list[int] = []
        if len(self._seen) <= batch_size:
            batch = self._new_epoch()
            batch += [batch[i] for i in self._rng.integers(len(batch), size=batch_size - len(batch))]
            self._epoch = []
        else:
            while len(batch) < batch_size:
                if not self._epoch:
                    self._epoch = self._new_epoch()
                fresh = [k for k in self._epoch if k not in batch][: batch_size - len(batch)]
                batch += fresh
                self._epoch = [k for k in self._epoch if k not in fresh]
        for k in batch:
            self._seen[k] += 1
        self._step += 1
        return batch

    def stats(self) -> dict[str, Any]:
        """As :meth:`FrequencySampler.stats`, without targets (``factor``: what the other would use)."""
        keys = list(self._seen)
        n = max(1, len(keys))
        out = {
            "step": self._step,
            "keys": keys,
            "seen": [self._seen[k] for k in keys],
            "added_step": [self._labeled[k] for k in keys],
            "weights": [1.0 / n] * len(keys),
        }
        seen = np.fromiter(self._seen.values(), np.int64, count=len(keys))
        out.update(_class_stats([self._classes[k] for k in keys], seen, self.config.class_balance))
        return out

    _STATE_KEYS = ("kind", "step", "keys", "seen", "added_step", "epoch", "rng")
    _OPTIONAL_KEYS = ("classes",)

    def state_dict(self) -> dict[str, Any]:
        keys = list(self._seen)
        return {
            "kind": "uniform",
            "step": self._step,
            "keys": keys,
            "seen": [self._seen[k] for k in keys],
            "added_step": [self._labeled[k] for k in keys],
            "classes": [list(self._classes[k]) for k in keys],
            "epoch": list(self._epoch),
            "rng": _rng_state(self._rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_state(state, self._STATE_KEYS, self._OPTIONAL_KEYS, "UniformSampler")
        if state["kind"] != "uniform":
            raise ValueError(f"not a UniformSampler state (kind {state['kind']!r})")
        keys = [_key(k) for k in state["keys"]]
        if len(state["seen"]) != len(keys) or len(state["added_step"]) != len(keys):
            raise ValueError("UniformSampler state: per-key lists differ in length")
        classes = _load_classes(state, len(keys), "UniformSampler")
        epoch = [_key(k) for k in state["epoch"]]
        if not set(epoch) <= set(keys):
            raise ValueError("UniformSampler state: the epoch names keys that are not in the set")
        _set_rng_state(self._rng, state["rng"])
        self._step = int(state["step"])
        self._seen = {k: int(v) for k, v in zip(keys, state["seen"], strict=True)}
        self._labeled = {k: int(v) for k, v in zip(keys, state["added_step"], strict=True)}
        self._classes = dict(zip(keys, classes, strict=True))
        self._epoch = epoch


def expected_views(sampler: FrequencySampler | UniformSampler) -> dict[int, float]:
    """Each key's target view count under :class:`FrequencySampler`'s rule, for any sampler.

    Lets a notebook (and the tests) put both samplers on the same scale: ``seen / target``. The class
    factors are those of the current labels (``stats()["factor"]``; 1 where a sampler reports none).
    """
    st = sampler.stats()
    keys = st["keys"]
    if not keys:
        return {}
    power = sampler.config.age_power
    entered = st.get("entered_step", st["added_step"])
    age = np.array([st["step"] - e + 1 for e in entered], np.float64) ** power
    share = age * np.asarray(st.get("factor", np.ones(len(keys))), np.float64)
    total = float(sum(st["seen"]))
    return {k: total * a / share.sum() for k, a in zip(keys, share, strict=True)}


__all__ = ["FrequencySampler", "SamplerConfig", "UniformSampler", "expected_views"]

