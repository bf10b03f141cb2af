"""``LivePanel``: the trainer's status in a labeler's words, model quality, progress and the buttons.

Usable on its own, bound to any :class:`~livetrain_widgets.LiveSession`::

    panel = LivePanel(session)       # status, quality and progress follow the session
    panel.on_action(print)           # "submit", "skip", "back", "predict", "discard", "accept", ...

:class:`~livetrain_widgets.LiveAnnotator` wires the buttons to the labeling loop. The front end is
``js/src/panel/``; its traits are ``PanelModel`` in ``js/src/protocol.ts``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import traitlets as t

from ._base import GuardedWidget, Threshold
from ._messages import action_of
from ._static import asset
from ._watch import SessionWatcher

PANEL_ACTIONS = ("submit", "skip", "back", "predict", "discard", "accept", "start", "stop")


class LivePanel(GuardedWidget):
    """Status, quality, progress, buttons and prediction settings (see the module docstring)."""

    _esm = asset("panel.js")
    _css = asset("panel.css")
    _frontend_writable: ClassVar[frozenset[str]] = frozenset(
        {"threshold", "auto_threshold", "semantic", "skip_predict_if_labeled"})

    task = t.Unicode("detection").tag(sync=True)
    status = t.Unicode("Not started").tag(sync=True)
    phase = t.Unicode("idle").tag(sync=True)
    busy = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    #: good news and what to do next, shown apart from errors ("All 16 images are labeled. …"); "" = none
    notice = t.Unicode("").tag(sync=True)
    quality = t.Float(None, allow_none=True).tag(sync=True)
    evaluated = t.Int(0).tag(sync=True)
    labeled = t.Int(0).tag(sync=True)
    total = t.Int(0).tag(sync=True)
    position = t.Unicode("").tag(sync=True)
    step = t.Int(0).tag(sync=True)
    loss = t.Float(None, allow_none=True).tag(sync=True)
    training = t.Bool(False).tag(sync=True)
    can_back = t.Bool(False).tag(sync=True)
    prelabels = t.Int(0).tag(sync=True)
    threshold = Threshold(0.3).tag(sync=True)
    #: the threshold follows what the recent submissions say saves most time; moving the slider turns it off
    auto_threshold = t.Bool(True).tag(sync=True)
    #: the chosen thresholds and expected saving in words (empty: nothing chosen yet)
    threshold_info = t.Unicode("").tag(sync=True)
    semantic = t.Bool(False).tag(sync=True)
    #: an image with saved labels opens with them alone; its pre-labels only on Predict (they would lie on
    #: top of the saved objects, and "Accept all" would double them)
    skip_predict_if_labeled = t.Bool(True).tag(sync=True)
    predict_ms = t.Float(None, allow_none=True).tag(sync=True)
    #: pairs the panel with a LabelCanvas of the same group: its image buttons go through the canvas,
    #: which may show the next image at once (see LabelCanvas.set_next); "" = none
    group = t.Unicode("").tag(sync=True)
    #: a team's annotator: who else is labeling, in words ("Also labeling: bob (image 12)"); "" = not a team
    team = t.Unicode("").tag(sync=True)

    def __init__(self, session: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._action_callbacks: list[Callable[[str], Any]] = []
        self._session: Any = None
        if session is not None:
            self.bind(session)

    def bind(self, session: Any) -> None:
        """Follow a session's state (a few times a second, on the kernel's event loop)."""
        self.unbind()
        self._session = session
        self.task = session.task
        self.threshold = session.config.threshold
        self.auto_threshold = bool(session.config.auto_threshold)
        self._classes = list(session.classes)
        SessionWatcher.of(session).add(self.refresh)

    def unbind(self) -> None:
        """Stop following the session (the panel keeps showing its last state)."""
        if self._session is not None:
            SessionWatcher.of(self._session).remove(self.refresh)
            self._session = None

    def refresh(self, session: Any) -> None:
        """Copy the session's state into the traits (only those that changed are sent).

        A trainer error reaches the person through ``status`` (the session says "Problem: ..." until
        a good step clears it); ``error`` is for what the app itself refused."""
        s = session.state
        values = {
            "status": s.message, "phase": s.phase, "quality": s.quality, "evaluated": s.evaluated,
            "labeled": s.labeled, "total": s.images, "step": s.step, "loss": s.loss,
            "training": s.phase in ("waiting", "training", "paused"),
            "threshold_info": self._threshold_info(s),
            "team": _team_line(getattr(s, "team", None)),
        }
        if self.auto_threshold and s.threshold is not None:
            values["threshold"] = s.threshold
        changed = {k: v for k, v in values.items() if getattr(self, k) != v}
        if changed:
            with self.hold_sync():
                for k, v in changed.items():
                    setattr(self, k, v)

    def _threshold_info(self, s: Any) -> str:
        """The chosen thresholds and the expected saving, true for the settings shown: with "auto" the
        tuned thresholds' saving; with a threshold set by hand, the saving at that threshold (a session
        that cannot say, a team's, shows none rather than the tuned one's, which no longer applies)."""
        parts = []
        saving = None
        if self.auto_threshold and s.thresholds is not None:
            names = getattr(self, "_classes", [])
            per = sorted({round(v, 2) for v in s.thresholds})
            if len(per) > 1 and len(names) == len(s.thresholds):
                parts.append("auto: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(names, s.thresholds, strict=True)))
            else:
                parts.append(f"auto: {per[0]:.2f}")
            saving = s.saving_s
        elif self.auto_threshold:
            saving = s.saving_s  # classification: no threshold, the top-k list's saving
        elif s.saving_s is not None:
            saving = self._saving_at(float(self.threshold))
        if saving is not None:
            # "about 0 s" and "save 0" read as a contradiction: below a second it is "no time either way"
            if abs(saving) < 0.5:
                parts.append("pre-labels save no time now")
            else:
                parts.append(f"pre-labels {'save' if saving > 0 else 'cost'} ≈ {abs(saving):.0f} s per image")
        return " · ".join(parts)

    def _saving_at(self, threshold: float) -> float | None:
        """The expected saving at a threshold set by hand (None where the session cannot say)."""
        expected = getattr(self._session, "expected_saving", None)
        if expected is None:
            return None
        try:
            return expected(threshold)
        except Exception:  # a figure is not worth a broken panel
            return None

    def on_action(self, callback: Callable[[str], Any]) -> Callable[[str], Any]:
        """Call ``callback(action)`` when a button is pressed; usable as a decorator."""
        self._action_callbacks.append(callback)
        return callback

    def _handle_message(self, content: Any) -> None:
        action = action_of(content, PANEL_ACTIONS)
        for cb in list(self._action_callbacks):
            cb(action)


def _team_line(team: list[str] | None) -> str:
    """A team's "who else is labeling" line; "" for one person alone (None: not a team's session). A
    team's annotator with nobody else on it sees so, which also tells them they are in a team."""
    if team is None:
        return ""
    return "Also labeling: " + ", ".join(team) if team else "Nobody else is labeling now"
