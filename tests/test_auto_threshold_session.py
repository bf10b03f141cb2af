"""The threshold tuner inside a session and the app: chosen thresholds, withheld pre-labels, the override."""

from __future__ import annotations

import asyncio

import numpy as np

from livetrain_widgets import Annotation, LiveSession, SessionConfig
from livetrain_widgets.engine.autothreshold import TunerConfig
from livetrain_widgets.widgets.app import LiveAnnotator

from .test_widget_canvas import update
from .tiny_model import ScriptedDetector, indexed_images

IMAGES = indexed_images(12)
#: every image has the same two true objects of class 0
TRUTH = Annotation(64, 64, np.array([[4, 4, 20, 20], [30, 30, 50, 50]], np.float32), np.array([0, 0]))


def boxes(*objs: tuple[list[float], int, float]) -> Annotation:
    b, lab, sc = zip(*objs, strict=True)
    return Annotation(64, 64, np.array(b, np.float32), np.array(lab), np.array(sc, np.float32))


#: three confident boxes where nothing is: pre-labels that only cost
WRONG = boxes(([40, 2, 60, 12], 0, 0.9), ([2, 40, 12, 60], 0, 0.9), ([22, 2, 28, 8], 1, 0.9))
#: the two objects found, plus one doubtful extra
RIGHT = boxes(([4, 4, 20, 20], 0, 0.8), ([30, 30, 50, 50], 0, 0.8), ([40, 2, 60, 12], 1, 0.2))


def scripted_session(tmp_path, **cfg) -> tuple[LiveSession, ScriptedDetector, list[int]]:
    model = ScriptedDetector()
    s = LiveSession(tmp_path / "p", "detection", ["a", "b"], model=model,
                    config=SessionConfig(tuner=TunerConfig(min_images=3, min_class_objects=100.0), **cfg))
    return s, model, s.add_images(IMAGES)


async def label(s: LiveSession, image_id: int) -> None:
    await s.predict(image_id)
    await s.submit(image_id, TRUTH)


async def test_prelabels_are_withheld_while_they_cost_and_offered_again_once_they_save(tmp_path) -> None:
    s, model, ids = scripted_session(tmp_path)
    await s.start()
    s.trainer.offering = True  # the trainer's own rule would offer them: the evidence must overrule it
    # set before anything is predicted: the next images are predicted ahead, with these answers
    model.answers.update({k: WRONG if k < 3 else RIGHT for k in range(12)})
    for k in range(3):
        await label(s, ids[k])
    assert s.tuner.verdict() is False and not s.offering
    st = s.state
    assert not st.offering and st.saving_s is not None and st.saving_s <= 0
    assert "pre-labels are paused" in st.message and "by hand" in st.message
    assert not (await s.predict(ids[3])).offered
    await s.submit(ids[3], TRUTH)
    for k in range(4, 6):
        await label(s, ids[k])
    assert s.tuner.verdict() is True and s.offering and s.state.saving_s > 0
    thr = s.thresholds()
    assert 0.2 < thr[0] <= 0.8 and s.state.thresholds == s.tuner.thresholds()
    pred = await s.predict(ids[6])  # shown at the chosen thresholds: the doubtful extra is left out
    assert pred.offered and len(pred.annotation) == 2
    # what the evaluator judged is what was shown at those thresholds
    await s.submit(ids[6], TRUTH)
    rec = s.evaluator.history[-1]
    assert rec["n_pred"] == 2 and rec["correct"] == 2
    await s.close()


async def test_fixed_threshold_and_offer_rule_when_switched_off(tmp_path) -> None:
    s, model, ids = scripted_session(tmp_path, auto_threshold=False, auto_offer=False)
    for k in range(4):
        model.answers[k] = WRONG
        await label(s, ids[k])
    assert s.tuner.verdict() is False  # it still learns ...
    s.trainer.offering = True
    assert s.offering and s.thresholds() == [0.3, 0.3]  # ... but decides nothing
    assert s.state.threshold is None
    await s.close()


async def test_tuner_state_survives_a_restart(tmp_path) -> None:
    s, model, ids = scripted_session(tmp_path)
    for k in range(4):
        model.answers[k] = RIGHT
        await label(s, ids[k])
    before = s.tuner.summary()
    await s.checkpoint()
    await s.close()
    again = LiveSession(tmp_path / "p", model=ScriptedDetector(),
                        config=SessionConfig(tuner=TunerConfig(min_images=3, min_class_objects=100.0)))
    assert again.tuner.summary() == before and again.tuner.verdict() is True
    await again.close()


async def test_app_shows_the_chosen_thresholds_per_class_and_the_slider_overrides(tmp_path) -> None:
    s, model, _ = scripted_session(tmp_path)
    for k in range(12):
        model.answers[k] = RIGHT
    s.trainer.offering = True
    app = LiveAnnotator(session=s, plots=False, start=False)
    await app.wait_idle()
    assert app.canvas.class_thresholds == [] and app.panel.auto_threshold  # nothing chosen yet
    for _ in range(4):
        app.canvas.set_annotation(TRUTH)
        app._on_action("submit")
        await asyncio.sleep(0)
        await app.wait_idle()
    tuned = s.tuner.thresholds()
    assert tuned is not None and app.canvas.class_thresholds == [round(v, 4) for v in tuned]
    assert app.panel.prelabels == 2  # the 0.2 extra is hidden by its class's threshold
    app.panel.refresh(s)
    assert app.panel.threshold == s.state.threshold and "auto" in app.panel.threshold_info
    assert "save" in app.panel.threshold_info
    # the person moves the slider: their threshold, for every class (what the front end sends)
    update(app.panel, {"auto_threshold": False, "threshold": 0.1})
    assert app.canvas.class_thresholds == [] and app.canvas.threshold == 0.1 and app.panel.prelabels == 3
    app.panel.refresh(s)
    assert app.panel.threshold == 0.1  # no longer overwritten by the chosen one
    update(app.panel, {"auto_threshold": True})
    assert app.canvas.class_thresholds and app.panel.prelabels == 2
    await app.close()
