"""Loss-plateau detector: tells the trainer when more steps on the current labels stop paying off.

Training on a handful of labels for ever only overfits them and burns the CPU the person's notebook
needs. The detector compares the mean training loss of the last ``window`` steps with the mean of the
``window`` steps before. When the loss improved by less than ``threshold`` (relative), or by less than
the noise of the two means can explain, that check is a *plateau signal*; ``patience`` signals in a
row make it fire. The trainer then pauses, and a new or changed label calls :meth:`reset`, which
clears the windows so the new data gets a full fresh comparison before the next pause.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ._state import check_keys


@dataclass
class PlateauConfig:
    """Settings of :class:`PlateauDetector`; the defaults were chosen on real-time study walks (below).

    window: losses per mean (50). With the frozen trunk's features cached a CPU step takes 30-100 ms, so
        50 steps are a few seconds; two windows and the patience let a pause come 150 steps (5-15 s of
        training) after a new label at the earliest. The reference uses 150 on a GPU. Measured in
        ``livetrain simulate`` walks with real-time compute (BENCHMARKS.md, issue 21), window 50 and
        threshold 0.03 against the earlier 100 and 0.01: the same working hours or fewer (BCCD 0.995x,
        nuclei tiles 0.96x, DeepForest tiles in BENCHMARKS.md) for about half the training steps; the
        longer window only went on fitting the few labels of the moment.
    threshold: least *relative* improvement of the window mean, ``(prev - last) / prev``, that counts
        as progress (0.03 = 3 % per window). Relative, because loss scales differ between models (the
        reference's absolute 0.002 would be meaningless for a loss summed over 100 anchors).
    patience: consecutive signals before firing (3, as the reference).
    check_every: steps between checks; ``None`` = ``window // 2``. Overlapping windows halve the
        reaction time compared with checking once per window while each check still compares two full
        windows. A flat loss therefore fires ``2 * window + (patience - 1) * check_every`` = 150 valid
        steps after a reset at the earliest.
    noise_z: an improvement smaller than ``noise_z`` standard errors of the difference of the two means
        also counts as a signal (the noise is estimated from step-to-step differences, which a smooth
        downward trend does not inflate). Without it a noisy flat loss "improves" by chance half the
        time and the detector could take arbitrarily long to fire; 0 disables it.
    smoothing: EMA factor of the ``smoothed`` curve kept for plots.
    history_size: most history records kept; older step records are thinned 2:1 when it is reached,
        so a day-long session (~400 000 steps) stays a few thousand dicts while the whole curve remains.
    """

    window: int = 50
    threshold: float = 0.03
    patience: int = 3
    check_every: int | None = None
    noise_z: float = 2.0
    smoothing: float = 0.05
    history_size: int = 4000

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window must be at least 2 steps, got {self.window}")
        if self.patience < 1:
            raise ValueError(f"patience must be at least 1, got {self.patience}")
        if self.check_every is not None and self.check_every < 1:
            raise ValueError(f"check_every must be at least 1, got {self.check_every}")
        if self.threshold < 0 or self.noise_z < 0:
            raise ValueError("threshold and noise_z must not be negative")
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"smoothing must lie in (0, 1], got {self.smoothing}")
        if self.history_size < 16:
            raise ValueError(f"history_size must be at least 16, got {self.history_size}")

    @property
    def every(self) -> int:
        return self.check_every or max(1, self.window // 2)


class PlateauDetector:
    """Windowed comparison of the training loss (see the module docstring)."""

    def __init__(self, config: PlateauConfig | None = None) -> None:
        self.config = config or PlateauConfig()
        self._step = 0  # update() calls ever, skipped ones included
        self._history: list[dict[str, Any]] = []
        self._stride = 1  # history keeps one step record per stride (events are always kept)
        self._clear()

    def _clear(self) -> None:
        self._losses: deque[float] = deque(maxlen=2 * self.config.window)
        self._valid = 0  # valid losses since the last reset
        self._signals = 0
        self._plateaued = False
        self._smoothed: float | None = None
        self._last_improvement: float | None = None
        self._since_reset = 0

    # ------------------------------------------------------------------------------ updating
    def update(self, loss: float) -> bool:
        """Record one training step's loss; returns whether training has plateaued.

        NaN and infinite losses are recorded as skipped and do not enter the windows (a single bad
        batch should neither fire nor delay the detector).
        """
        self._step += 1
        self._since_reset += 1
        rec: dict[str, Any] = {"step": self._step}
        try:
            value = float(loss)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            rec.update(loss=None, smoothed=self._smoothed, skipped=True)
            self._record(rec)
            return self._plateaued
        self._losses.append(value)
        self._valid += 1
        a = self.config.smoothing
        self._smoothed = value if self._smoothed is None else (1 - a) * self._smoothed + a * value
        rec.update(loss=value, smoothed=self._smoothed)
        w = self.config.window
        if not self._plateaued and self._valid >= 2 * w and (self._valid - 2 * w) % self.config.every == 0:
            self._check(rec)
        self._record(rec)
        return self._plateaued

    def _check(self, rec: dict[str, Any]) -> None:
        cfg = self.config
        x = np.fromiter(self._losses, np.float64)
        prev, last = x[: cfg.window], x[cfg.window :]
        mp, ml = float(prev.mean()), float(last.mean())
        scale = max(abs(mp), 1e-12)
        improvement = (mp - ml) / scale
        # i.i.d. noise sigma from first differences (a smooth trend barely moves them); standard error
        # of the difference of two window means is sigma * sqrt(2 / window)
        sigma = float(np.std(np.diff(x))) / math.sqrt(2.0)
        noise = cfg.noise_z * sigma * math.sqrt(2.0 / cfg.window) / scale
        signal = improvement < max(cfg.threshold, noise)
        self._signals = self._signals + 1 if signal else 0
        self._last_improvement = improvement
        rec.update(improvement=improvement, noise=noise, signal=signal)
        if self._signals >= cfg.patience:
            self._plateaued = True
            rec["event"] = "plateau"

    def reset(self, reason: str = "new data") -> None:
        """Un-fire and clear the windows: the (new) data gets two full windows before the next check."""
        self._clear()
        self._record({"step": self._step, "event": "reset", "reason": str(reason)})

    # ------------------------------------------------------------------------------ reading
    @property
    def plateaued(self) -> bool:
        return self._plateaued

    @property
    def step(self) -> int:
        return self._step

    @property
    def history(self) -> list[dict[str, Any]]:
        """Records for plots: per step ``loss`` (None if skipped) and ``smoothed``; at checks
        ``improvement``, ``noise`` and ``signal``; ``event`` is ``"plateau"`` or ``"reset"``. Older step
        records are thinned (see ``PlateauConfig.history_size``); events are kept."""
        return [dict(r) for r in self._history]

    def state(self) -> dict[str, Any]:
        """A summary for the UI and logs."""
        return {
            "plateaued": self._plateaued,
            "signals": self._signals,
            "steps_since_reset": self._since_reset,
            "last_improvement": self._last_improvement,
            "smoothed": self._smoothed,
            "step": self._step,
        }

    def _record(self, rec: dict[str, Any]) -> None:
        if "event" not in rec and rec["step"] % self._stride:
            return
        self._history.append(rec)
        if len(self._history) <= self.config.history_size:
            return
        # thin step records 2:1 (events survive) so the whole session stays plotted at a coarser grain
        self._stride *= 2
        kept = [r for r in self._history if "event" in r or r["step"] % self._stride == 0]
        if len(kept) > self.config.history_size * 3 // 4:  # events alone too many: drop the oldest half
            kept = kept[len(kept) // 2 :]
        self._history = kept

    # ------------------------------------------------------------------------------ checkpoints
    _STATE_KEYS = ("config", "step", "losses", "valid", "signals", "plateaued", "smoothed",
                   "last_improvement", "steps_since_reset", "history", "stride")

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "step": self._step,
            "losses": list(self._losses),
            "valid": self._valid,
            "signals": self._signals,
            "plateaued": self._plateaued,
            "smoothed": self._smoothed,
            "last_improvement": self._last_improvement,
            "steps_since_reset": self._since_reset,
            "history": [dict(r) for r in self._history],
            "stride": self._stride,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`, its config included (the windows only make sense with it)."""
        check_keys(state, self._STATE_KEYS, "PlateauDetector")
        check_keys(state["config"], [f.name for f in fields(PlateauConfig)], "PlateauConfig")
        config = PlateauConfig(**state["config"])
        losses = [float(v) for v in state["losses"]]
        if len(losses) > 2 * config.window:
            raise ValueError("PlateauDetector state: more losses than two windows")
        self.config = config
        self._clear()
        self._losses.extend(losses)
        self._step = int(state["step"])
        self._valid = int(state["valid"])
        self._signals = int(state["signals"])
        self._plateaued = bool(state["plateaued"])
        self._smoothed = None if state["smoothed"] is None else float(state["smoothed"])
        li = state["last_improvement"]
        self._last_improvement = None if li is None else float(li)
        self._since_reset = int(state["steps_since_reset"])
        self._history = [dict(r) for r in state["history"]]
        self._stride = int(state["stride"])


__all__ = ["PlateauConfig", "PlateauDetector"]
