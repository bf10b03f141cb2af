"""What a person expects of the app (issue 20), headless: saved labels reopen without pre-labels on top,
the quality figure counts each offered pre-label once, a finished project is good news, the threshold
figures are true for the settings shown, and the panel's settings come back with the project.

The same in a real browser: tests/e2e/test_app_expectations_browser.py.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from livetrain_widgets import Annotation, LiveSession, SessionConfig
from livetrain_widgets.engine.autothreshold import TunerConfig
from livetrain_widgets.engine.evaluator import LiveEvaluator
from livetrain_widgets.widgets.app import LiveAnnotator

from .test_auto_threshold_session import RIGHT, TRUTH, WRONG
from .test_widget_canvas import custom, update
from .tiny_model import ScriptedDetector, indexed_images

IMAGES = indexed_images(6)


def session(tmp_path: Any, model: ScriptedDetector | None = None, **cfg: Any) -> LiveSession:
    return LiveSession(tmp_path / "p", "detection", ["a", "b"], model=model or ScriptedDetector(),
                       config=SessionConfig(tuner=TunerConfig(min_images=3, min_class_objects=100.0), **cfg))


def scripted(answer: Annotation, n: int = 12) -> ScriptedDetector:
    model = ScriptedDetector()
    model.answers.update({k: answer for k in range(n)})
    return model


async def settle(app: LiveAnnotator) -> None:
    await asyncio.sleep(0)
    await app.wait_idle()


def act(app: LiveAnnotator, action: str) -> None:
    custom(app.canvas, {"type": "action", "action": action, "image_id": app.canvas.image_id})


async def submit(app: LiveAnnotator, ann: Annotation = TRUTH) -> None:
    app.canvas.set_annotation(ann)
    act(app, "submit")
    await settle(app)


# ------------------------------------------------------------------------------ 1. the kernel's loop


async def test_a_message_from_another_thread_is_handled_on_the_widgets_loop(tmp_path) -> None:
    """ipykernel 7 hands widget messages to a subshell (another thread, its own loop): the app must still
    act on its own loop, or its tasks cannot be awaited from a cell (the real kernel: tests/test_kernel.py)."""
    app = LiveAnnotator(IMAGES[:2], session=session(tmp_path, scripted(RIGHT)), plots=False, start=False)
    await settle(app)
    seen: list[tuple[int, Any]] = []
    app.panel.on_action(lambda action: seen.append((threading.get_ident(), asyncio.get_running_loop())))
    other = threading.Thread(target=lambda: asyncio.run(_send(app.panel, "start")))
    other.start()
    other.join()
    for _ in range(50):
        await asyncio.sleep(0.01)
        if seen:
            break
    assert seen == [(threading.get_ident(), asyncio.get_running_loop())]
    await app.wait_idle()
    assert app.session.trainer.running
    await app.close()  # failed with "attached to a different loop" when the trainer started on the other one
    assert not app.session.trainer.running


async def _send(widget: Any, action: str) -> None:
    custom(widget, {"type": "action", "action": action})  # from inside another running loop, as a subshell


# ---------------------------------------------------------------------------------- 4. quality


def test_a_resubmitted_image_replaces_its_record_and_the_average() -> None:
    ev = LiveEvaluator("detection", 2)
    ev.evaluate(1, RIGHT, TRUTH)
    first = ev.evaluate(2, WRONG, TRUTH)["score"]
    again = ev.evaluate(1, WRONG, TRUTH)  # image 1 submitted again, judged against another pre-label
    assert [r["image_id"] for r in ev.history] == [2, 1] and ev.judged == 2
    a = ev.config.ema_alpha
    assert ev.ema == pytest.approx((1 - a) * first + a * again["score"])  # as if image 1 came once, last
    ev.evaluate(2, None, TRUTH)  # submitted again without a pre-label: the judgement stands
    assert [r["image_id"] for r in ev.history] == [2, 1] and ev.judged == 2 and ev.history[0]["score"] == first


async def test_quality_counts_only_offered_prelabels_each_image_once(tmp_path) -> None:
    s = session(tmp_path, scripted(RIGHT), auto_offer=False, auto_threshold=False)
    ids = s.add_images(IMAGES)
    s.trainer.offering = False  # the model has not learned enough: nothing is offered
    await s.predict(ids[0])
    await s.submit(ids[0], TRUTH)
    st = s.state
    assert st.quality is None and st.evaluated == 0, "an image labeled before any pre-label was offered was judged"
    s.trainer.offering = True
    assert (await s.predict(ids[1])).offered
    await s.submit(ids[1], TRUTH)
    assert s.state.evaluated == 1 and s.state.quality == s.evaluator.history[-1]["score"] > 0.5
    # Back, Predict again and resubmit: judged again, but counted once
    await s.predict(ids[1], fresh=True)
    await s.submit(ids[1], TRUTH)
    await s.submit(ids[1], TRUTH)  # once more without a new pre-label
    assert s.state.evaluated == 1 and [r["image_id"] for r in s.evaluator.history if r["offered"]] == [ids[1]]
    await s.close()


# ------------------------------------------------------------------------- 3 and 7. back, reopen, done


async def test_saved_labels_reopen_alone_and_a_finished_project_is_good_news(tmp_path) -> None:
    s = session(tmp_path, scripted(RIGHT), auto_offer=False, auto_threshold=False)
    s.trainer.offering = True
    app = LiveAnnotator(IMAGES[:2], session=s, plots=False, start=False)
    await settle(app)
    first = app.image_id
    assert app.canvas.prelabel_count == 2  # an unlabeled image opens with its pre-labels
    app.canvas.accept_prelabels()
    act(app, "submit")
    await settle(app)
    act(app, "back")
    await settle(app)
    assert app.image_id == first
    assert len(app.canvas.objects) == 2 and app.canvas.prelabel_count == 0, "pre-labels on top of saved labels"
    act(app, "predict")  # asked for: then they are shown
    await settle(app)
    assert app.canvas.prelabel_count == 2
    app._on_action("discard")  # the panel's button (X on the canvas is the view's own)
    act(app, "submit")
    await settle(app)
    await submit(app)  # the second and last image
    assert app.panel.error == "", app.panel.error
    assert app.panel.notice.startswith("All 2 images are labeled. Next: ") and "export_model" in app.panel.notice
    await app.close()

    # Reopened: the first image with its labels, no pre-labels, and the project still reads as done.
    s = session(tmp_path, scripted(RIGHT), auto_offer=False, auto_threshold=False)
    s.trainer.offering = True
    app = LiveAnnotator(session=s, plots=False, start=False)
    await settle(app)
    assert app.image_id == first and len(app.canvas.objects) == 2 and app.canvas.prelabel_count == 0
    assert app.panel.notice.startswith("All 2 images are labeled") and app.panel.error == ""
    await app.close()


# ---------------------------------------------------------------------------- 8. plain words, true figures


async def test_paused_prelabels_in_plain_words(tmp_path) -> None:
    s = session(tmp_path, scripted(WRONG))
    ids = s.add_images(IMAGES)
    await s.start()
    s.trainer.offering = True
    for k in range(3):
        await s.predict(ids[k])
        await s.submit(ids[k], TRUTH)
    assert s.tuner.verdict() is False
    msg = s.state.message
    assert "pre-labels are paused" in msg and "Predict shows them anyway" in msg, msg
    assert not any(ch.isdigit() for ch in msg), f"figures for a threshold the panel may not show: {msg}"
    await s.close()


async def test_the_saving_shown_is_the_one_at_the_threshold_shown(tmp_path) -> None:
    s = session(tmp_path, scripted(RIGHT))
    s.trainer.offering = True
    app = LiveAnnotator(IMAGES, session=s, plots=False, start=False)
    await settle(app)
    for _ in range(4):
        await submit(app)
    app.panel.refresh(s)
    tuned = app.panel.threshold_info
    assert tuned.startswith("auto: ") and "save ≈" in tuned, tuned
    # The person sets the slider: the figure is the one at their threshold, not the tuned one's.
    update(app.panel, {"auto_threshold": False, "threshold": 0.1})
    app.panel.refresh(s)
    at = s.expected_saving(0.1)
    assert at is not None and at < s.state.saving_s  # the doubtful extra is shown at 0.1 and costs a deletion
    assert app.panel.threshold_info == f"pre-labels save ≈ {at:.0f} s per image", app.panel.threshold_info
    update(app.panel, {"threshold": 0.99})  # above every score: nothing shown, nothing saved
    app.panel.refresh(s)
    assert app.panel.threshold_info == "pre-labels save no time now"
    await app.close()


# ------------------------------------------------------------------------------------ 9. settings


async def test_panel_settings_come_back_with_the_project(tmp_path) -> None:
    s = session(tmp_path, scripted(RIGHT))
    app = LiveAnnotator(IMAGES, session=s, plots=False, start=False)
    await settle(app)
    assert app.panel.skip_predict_if_labeled and app.panel.auto_threshold  # the defaults
    # what the front end sends when the person moves the slider and unticks the boxes
    update(app.panel, {"auto_threshold": False, "threshold": 0.55})
    update(app.panel, {"skip_predict_if_labeled": False, "semantic": True})
    await app.close()

    app = LiveAnnotator(session=session(tmp_path, scripted(RIGHT)), plots=False, start=False)
    await settle(app)
    p = app.panel
    assert (p.auto_threshold, p.threshold, p.skip_predict_if_labeled, p.semantic) == (False, 0.55, False, True)
    assert app.canvas.threshold == 0.55 and app.canvas.semantic
    app.panel.refresh(app.session)
    assert p.threshold == 0.55  # not overwritten by a tuned one
    update(p, {"auto_threshold": True})
    await app.close()

    # A damaged value is left out; the other settings still come back.
    s = session(tmp_path, scripted(RIGHT))
    saved = s.store.get_meta("app_settings")
    assert saved["auto_threshold"] is True and saved["threshold"] == 0.55  # the person's own, kept
    s.store.set_meta("app_settings", {**saved, "semantic": "yes", "threshold": 7})
    app = LiveAnnotator(session=s, plots=False, start=False)
    await settle(app)
    assert app.panel.semantic is False and app.panel.skip_predict_if_labeled is False
    assert np.isclose(app.panel.threshold, s.config.threshold)
    await app.close()
