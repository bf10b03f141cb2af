"""LiveAnnotator driven headless: the messages a browser would send, a real session behind them.

The browser tests (tests/e2e) do the same through a real JupyterLab; these check the app's logic
fast and exactly: what gets stored, which image opens next, what a refused submission leaves behind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livetrain_widgets import Annotation, LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.widgets._codec import encode_runs
from livetrain_widgets.widgets.app import LiveAnnotator
from livetrain_widgets.widgets.bbox_adapter import BBoxCanvasAdapter
from livetrain_widgets.widgets.canvas import LabelCanvas

from . import _require
from .test_widget_canvas import capture, custom, update
from .tiny_model import ScriptedDetector, TinyClassifier, indexed_images, two_class_images

IMAGES, LABELS = two_class_images(12)


def fast_config(**trainer: Any) -> SessionConfig:
    return SessionConfig(trainer=TrainerConfig(batch_size=4, lr=1e-2, offer_min_steps=5, **trainer))


async def settle(app: LiveAnnotator) -> None:
    await asyncio.sleep(0)
    await app.wait_idle()


def act(app: LiveAnnotator, action: str) -> None:
    custom(app.canvas, {"type": "action", "action": action, "image_id": app.canvas.image_id})


async def classify_app(tmp_path: Path, **kw: Any) -> LiveAnnotator:
    app = LiveAnnotator(IMAGES, "classification", ["left", "right"], project=tmp_path / "p",
                        model=TinyClassifier(), config=fast_config(), plots=False, **kw)
    await settle(app)
    return app


async def test_one_key_classification_loop_trains_and_prelabels(tmp_path) -> None:
    app = await classify_app(tmp_path)
    s = app.session
    ids = s.image_ids
    assert app.image_id == ids[0] and app.panel.position.endswith("(1 of 12)")
    assert app.panel.training and s.trainer.running
    for k in range(6):
        assert app.image_id == ids[k]
        update(app.canvas, {"category": LABELS[k]})
        act(app, "submit")
        await settle(app)
        if k == 1:
            await s.wait_steps(40, timeout=30)
    assert s.store.labeled_count() == 6 and app.image_id == ids[6]
    await s.wait_steps(30, timeout=30)
    act(app, "predict")
    await settle(app)
    assert len(app.canvas.category_scores) == 2 and app.panel.predict_ms is not None
    assert int(np.argmax(app.canvas.category_scores)) == LABELS[6]  # the tiny task is easy
    # Next image: pre-labels arrive by themselves once the model offers them.
    update(app.canvas, {"category": LABELS[6]})
    act(app, "submit")
    await settle(app)
    assert s.trainer.offering and app.canvas.category_scores, app.timings[-3:]
    assert s.store.annotation_history(ids[6])[-1].source in ("prelabel_accepted", "prelabel_edited")
    app.panel.refresh(s)
    assert app.panel.labeled == 7 and app.panel.total == 12 and app.panel.evaluated >= 1
    await app.close()


async def test_back_skip_and_a_double_enter(tmp_path) -> None:
    app = await classify_app(tmp_path, start=False)
    ids = app.session.image_ids
    update(app.canvas, {"category": 1})
    act(app, "submit")
    act(app, "submit")  # a second Enter before the first was handled: about image 0, now stale
    await settle(app)
    assert app.session.store.labeled_ids() == [ids[0]] and app.image_id == ids[1]
    act(app, "skip")
    await settle(app)
    assert app.image_id == ids[2] and app.panel.can_back
    act(app, "back")
    await settle(app)
    assert app.image_id == ids[1]
    act(app, "back")
    await settle(app)
    assert app.image_id == ids[0] and app.canvas.category == 1  # with its stored label
    sent = capture(app.canvas)
    act(app, "back")
    await settle(app)
    assert app.image_id == ids[0] and "no previous image" in app.panel.error and sent
    assert not app.session.trainer.running  # start=False: the panel's button starts it
    custom(app.panel, {"type": "action", "action": "start"})
    await settle(app)
    assert app.session.trainer.running and app.panel.training
    custom(app.panel, {"type": "action", "action": "stop"})
    await settle(app)
    assert not app.session.trainer.running and not app.panel.training
    await app.close()


async def test_a_refused_submission_keeps_the_canvas_and_stores_nothing(tmp_path) -> None:
    session = LiveSession(tmp_path / "d", "detection", ["a", "b"], model=TinyClassifier("classification", ["a", "b"]))
    session.add_images([np.zeros((40, 60, 3), np.uint8) + i for i in range(3)])
    app = LiveAnnotator(session=session, plots=False, start=False)
    await settle(app)
    first = app.image_id
    bad = [{"id": "u1", "label": 5, "box": [1, 1, 10, 10], "source": "user"}]
    update(app.canvas, {"objects": bad})
    act(app, "submit")
    await settle(app)
    assert "class index 5" in app.panel.error
    assert app.image_id == first and app.canvas.objects == bad  # nothing lost, nothing stored
    assert session.store.labeled_count() == 0
    good = [{"id": "u1", "label": 1, "box": [1, 1, 10, 10], "source": "user"}]
    update(app.canvas, {"objects": good})
    custom(app.panel, {"type": "action", "action": "submit"})  # the panel's Finish & Next
    await settle(app)
    assert session.store.labeled_count() == 1 and app.panel.error == ""
    np.testing.assert_allclose(session.annotation(first).boxes, [[1, 1, 10, 10]])
    await app.close()


async def test_detection_prelabels_threshold_accept_discard_on_bccd(data_dir, tmp_path) -> None:
    bccd = data_dir / "bccd"
    paths = sorted((bccd / "JPEGImages").glob("*.jpg"))[:8]
    cfg = SessionConfig(trainer=TrainerConfig(offer_min_steps=1, offer_loss_ratio=1.5))
    session = LiveSession(tmp_path / "cells", "detection", ["RBC", "WBC", "Platelets"], config=cfg,
                          model_options={"input_size": 160, "seed": 0})
    session.add_images(paths[:4], labels=bccd / "Annotations", format="voc")
    app = LiveAnnotator(paths[4:], session=session, plots=False)
    await settle(app)
    s = app.session
    assert s.store.labeled_count() == 4 and app.image_id == s.image_ids[4]  # imported labels count
    await s.wait_steps(8, timeout=120)  # the first 5 losses set the reference the offer rule compares with
    act(app, "predict")
    await settle(app)
    assert s.trainer.offering
    objs = app.canvas.objects
    assert objs and all(o["source"] == "prelabel" and 0 <= o["score"] <= 1 for o in objs)
    update(app.panel, {"threshold": 0.0})
    assert app.canvas.threshold == 0.0 and app.panel.prelabels == len(objs)
    update(app.panel, {"threshold": 1.0})
    assert app.panel.prelabels == 0
    update(app.panel, {"threshold": 0.0})
    custom(app.panel, {"type": "action", "action": "accept"})
    assert app.panel.prelabels == 0 and all(o["source"] == "user" for o in app.canvas.objects)
    act(app, "predict")
    await settle(app)
    n_pre = app.panel.prelabels
    assert n_pre > 0
    custom(app.panel, {"type": "action", "action": "discard"})
    assert app.panel.prelabels == 0 and len(app.canvas.objects) == len(objs)
    await app.close()


async def test_segmentation_semantic_switch_and_mask_submission(data_dir, tmp_path) -> None:
    frames = [data_dir / "membrane" / "image" / f"{i}.png" for i in range(3)]
    cfg = SessionConfig(trainer=TrainerConfig(offer_min_steps=1, offer_loss_ratio=1.5))
    app = LiveAnnotator(frames, "segmentation", ["cell"], project=tmp_path / "em", config=cfg, plots=False,
                        model_options={"input_size": 128, "seed": 0})
    await settle(app)
    canvas: LabelCanvas = app.canvas
    w, h = canvas.image_size
    crop = np.zeros((40, 50), bool)
    crop[5:30, 10:45] = True
    obj = {"id": "u1", "label": 0, "box": [20, 30, 70, 70], "source": "user",
           "mask": {"x": 20, "y": 30, "w": 50, "h": 40, "rle": memoryview(encode_runs(crop))}}
    update(canvas, {"objects": [obj]})
    first = app.image_id
    act(app, "submit")
    await settle(app)
    stored = app.session.annotation(first)
    assert stored.masks.shape == (1, h, w) and stored.masks.sum() == crop.sum()
    assert stored.masks[0, 30:70, 20:70].sum() == crop.sum()
    act(app, "predict")
    await settle(app)
    n_instances = sum(o["source"] == "prelabel" for o in canvas.objects)
    update(app.panel, {"semantic": True})
    assert canvas.semantic
    if n_instances:
        labels = [o["label"] for o in canvas.objects if o["source"] == "prelabel"]
        assert labels == sorted(set(labels))  # one merged mask per class
    await app.close()


async def test_bbox_widget_adapter(data_dir, tmp_path) -> None:
    bbox_widget = _require.module("jupyter_bbox_widget")
    w = bbox_widget.BBoxWidget()
    path = data_dir / "bccd" / "JPEGImages" / "BloodImage_00000.jpg"
    app = LiveAnnotator([path, path.with_name("BloodImage_00001.jpg")], "detection", ["RBC", "WBC", "Platelets"],
                        project=tmp_path / "bb", canvas=w, plots=False, start=False)
    await settle(app)
    assert app.canvas.widget is w and w.image_bytes == path.read_bytes() and w.classes == ["RBC", "WBC", "Platelets"]
    first = app.image_id
    w.bboxes = [{"x": 10, "y": 20, "width": 30, "height": 40, "label": "WBC"}]
    w._handle_custom_msg({"type": "submit"}, [])  # the widget's own Submit button
    await settle(app)
    ann = app.session.annotation(first)
    np.testing.assert_allclose(ann.boxes, [[10, 20, 40, 60]])
    assert ann.labels.tolist() == [1] and app.image_id != first and w.bboxes == []
    # Pre-labels become ordinary boxes; Discard removes exactly those.
    app.canvas.threshold = 0.5
    app.canvas.set_prelabels(Annotation(640, 480, boxes=[[1, 1, 9, 9], [20, 20, 50, 50]], labels=[0, 2],
                                        scores=[0.9, 0.3]))
    w.bboxes = [*w.bboxes, {"x": 100, "y": 100, "width": 10, "height": 10, "label": "RBC"}]
    assert app.canvas.prelabel_count == 1 and len(w.bboxes) == 2
    app.canvas.threshold = 0.2
    assert app.canvas.prelabel_count == 2 and len(w.bboxes) == 3
    app.canvas.discard_prelabels()
    assert w.bboxes == [{"x": 100, "y": 100, "width": 10, "height": 10, "label": "RBC"}]
    w.bboxes = [{"x": 1, "y": 1, "width": 5, "height": 5, "label": ""}]
    w._handle_custom_msg({"type": "submit"}, [])
    await settle(app)
    assert "has no class" in app.panel.error
    with pytest.raises(ValueError, match="detection project"):
        BBoxCanvasAdapter(bbox_widget.BBoxWidget(), "segmentation", ["a"])
    await app.close()


async def test_an_app_on_a_locked_project_is_refused_and_dropped_quietly(tmp_path) -> None:
    import gc
    import warnings

    from livetrain_widgets.engine.project_lock import ProjectLockedError

    app = await classify_app(tmp_path, start=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ProjectLockedError, match="open in another process"):
            LiveAnnotator(IMAGES, "classification", ["left", "right"], project=tmp_path / "p",
                          model=TinyClassifier(), plots=False)
        gc.collect()  # ipywidgets' __del__ used to call the async close() and warn "never awaited"
    assert not [w for w in caught if "never awaited" in str(w.message)]
    await app.close()


# ------------------------------------------------------------------------------------ autolabel
def _truth_by_name(app: LiveAnnotator) -> dict[str, Annotation]:
    s = app.session
    return {s.store.image(i).name: Annotation(*IMAGES[k].shape[1::-1], category=LABELS[k])
            for k, i in enumerate(s.image_ids)}


async def test_autolabel_labels_through_the_app_and_stops_when_done(tmp_path) -> None:
    app = await classify_app(tmp_path)
    s = app.session
    truth = _truth_by_name(app)
    seen: list[str] = []

    def labeler(name: str) -> Annotation | None:
        seen.append(name)
        return None if len(seen) == 3 else truth[name]  # the third image is skipped

    assert await app.autolabel(labeler, pause=0, steps=5, limit=6) == 6
    # 5 steps looked at each image once training could start (from the 3rd submission: 4 images)
    assert s.store.labeled_count() == 6 and s.trainer.step >= 4 * 5
    for name in seen:
        image_id = next(i for i in s.image_ids if s.store.image(i).name == name)
        ann = s.annotation(image_id)
        assert (ann is None) == (name == seen[2]) and (ann is None or ann.category == truth[name].category)
    # its images' pre-labels were judged against what it submitted, as a person's would be
    assert not app.panel.busy.startswith("Simulated") and s.evaluator.history
    # The rest, without a limit, starting from a labeled image (Back): it moves on to the unlabeled ones,
    # the one it passed included, and stops by itself once everything is labeled.
    act(app, "back")
    await settle(app)
    assert s.is_labeled(app.image_id)
    assert await app.autolabel(truth.get, pause=0) == 12 - 6
    assert s.store.labeled_count() == 12 and "All 12 images are labeled" in app.panel.notice
    with pytest.raises(RuntimeError, match="already running"):
        app.autolabel(truth.get)
        app.autolabel(truth.get)
    app.stop_autolabel()
    await app.close()


async def test_autolabel_stops_on_a_refused_label_and_can_be_stopped(tmp_path) -> None:
    app = await classify_app(tmp_path, start=False)
    s = app.session
    # Boxes are not a class: refused with the reason in the panel, nothing stored, no retry loop.
    bad = Annotation(*IMAGES[0].shape[1::-1], boxes=[[1, 1, 5, 5]], labels=[0])
    assert await app.autolabel(lambda _name: bad, pause=0) == 0
    assert s.store.labeled_count() == 0 and app.panel.error
    truth = _truth_by_name(app)
    task = app.autolabel(truth.get, pause=30)  # a long look at each image: stopped while it looks
    await asyncio.sleep(0.2)
    app.stop_autolabel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert s.store.labeled_count() == 0 and not app.panel.busy.startswith("Simulated")
    await app.close()


# ------------------------------------------------------------------------------- the next image, ahead
def scripted_app(tmp_path: Path, n: int = 5) -> tuple[LiveAnnotator, list[int]]:
    """A detection app whose model answers ``RIGHT`` for every image and offers at once; the trainer has no
    labels to step on, so the pre-labels computed ahead stay those of step 0 (nothing is refreshed)."""
    model = ScriptedDetector()
    s = LiveSession(tmp_path / "d", "detection", ["a", "b"], model=model,
                    config=SessionConfig(auto_threshold=False, auto_offer=False))
    ids = s.add_images(indexed_images(n))
    model.answers.update({k: RIGHT for k in range(n)})
    s.trainer.offering = True
    return LiveAnnotator(session=s, plots=False), ids


RIGHT = Annotation(64, 64, np.array([[4, 4, 20, 20], [30, 30, 50, 50], [40, 2, 60, 12]], np.float32),
                   np.array([0, 0, 1]), np.array([0.8, 0.7, 0.2], np.float32))


async def next_with_prelabels(app: LiveAnnotator, image_id: int, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until the canvas holds ``image_id`` as its next image, with pre-labels (the session watcher
    sends them once computed ahead; called here too, so the test does not wait for its tick)."""
    for _ in range(int(timeout / 0.02)):
        app._refresh_next()
        meta = app.canvas.next_meta
        if meta.get("image_id") == image_id and meta.get("step") is not None:
            return dict(meta)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no pre-labels ahead for image {image_id}: {app.canvas.next_meta}, "
                         f"{app.session.ahead.stats()}")


async def test_the_next_image_is_sent_ahead_and_opening_it_shows_the_same_prelabels(tmp_path) -> None:
    app, ids = scripted_app(tmp_path)
    await settle(app)
    c, s = app.canvas, app.session
    assert c.image_id == ids[0] and c.group and c.group == app.panel.group  # the panel goes through the canvas
    meta = await next_with_prelabels(app, ids[1])
    rec = s.store.image(ids[1])
    assert meta == {"image_id": ids[1], "image_name": rec.name, "image_size": [64, 64], "category_scores": [],
                    "step": 0}
    assert c.next_image == app._display_cache[ids[1]] and c.next_image[:2] in (b"\xff\xd8", b"\x89P")
    ahead = list(c.next_objects)
    assert [(o["id"], o["source"], o["score"]) for o in ahead] == [("p0", "prelabel", 0.8), ("p1", "prelabel", 0.7),
                                                                    ("p2", "prelabel", 0.2)]
    # Shown ahead, not served: no prediction row yet, and the kept one is still there for the open.
    assert s.store.prediction(ids[1]) is None and s.kept_prelabel(ids[1]) is not None
    changes: list[str] = []
    c.observe(lambda ch: changes.append(ch["name"]), names=["next_image", "next_meta", "next_objects"])
    app._refresh_next()
    assert changes == []  # nothing new: nothing sent again
    sent = capture(c)
    update(c, {"objects": [{"id": "u0", "label": 1, "box": [1, 1, 9, 9], "source": "user"}]})
    act(app, "submit")
    await settle(app)
    # The kernel's answer to the view that swapped already: the same image, with the same objects in the same
    # update, so the view adopts it as it is; the prediction stored (and judged later) is the one shown.
    assert c.image_id == ids[1] and c.objects == ahead and not [m for m in sent if m.get("type") == "stay"]
    stored = s.store.prediction(ids[1])
    assert stored.model_step == meta["step"] and stored.shown and len(stored.annotation) == 3
    opened = [t for t in app.timings if t["event"] == "predict" and t["image_id"] == ids[1]]
    assert len(opened) == 1 and opened[0]["ahead"]
    assert c.next_meta["image_id"] == ids[2]  # and the one after is on its way
    # The person hides the doubtful one with the threshold; the stored prediction judges what was shown.
    c.threshold = 0.5
    act(app, "submit")
    await settle(app)
    assert s.annotation(ids[1]).labels.tolist() == [0, 0] and s.store.annotation_history(ids[1])[-1].source == (
        "prelabel_accepted")
    await app.close()


async def test_a_refused_submission_tells_the_view_to_stay_and_keeps_the_next_image(tmp_path) -> None:
    app, ids = scripted_app(tmp_path)
    await settle(app)
    c, s = app.canvas, app.session
    await next_with_prelabels(app, ids[1])
    bad = [{"id": "u1", "label": 5, "box": [1, 1, 10, 10], "source": "user"}]
    update(c, {"objects": bad})
    sent = capture(c)
    custom(app.panel, {"type": "action", "action": "submit"})  # the panel's own message (no canvas claimed it)
    await settle(app)
    assert {"type": "stay", "image_id": ids[0]} in sent and "class index 5" in app.panel.error
    assert c.image_id == ids[0] and c.objects == bad and s.store.labeled_count() == 0
    assert c.next_meta["image_id"] == ids[1] and c.next_objects  # still ready for the next try
    # A second Enter that reaches the kernel after it moved on is about an image no longer shown: dropped.
    update(c, {"objects": []})
    act(app, "submit")
    stale = {"type": "action", "action": "submit", "image_id": ids[0]}
    await settle(app)
    custom(c, stale)
    await settle(app)
    assert c.image_id == ids[1] and s.store.labeled_count() == 1 and not s.is_labeled(ids[1])
    await app.close()


async def test_the_last_image_has_no_next_and_its_submission_stays(tmp_path) -> None:
    app, ids = scripted_app(tmp_path, n=2)
    await settle(app)
    c = app.canvas
    await next_with_prelabels(app, ids[1])
    act(app, "submit")
    await settle(app)
    assert c.image_id == ids[1] and c.next_meta == {} and c.next_image == b"" and c.next_objects == []
    sent = capture(c)
    act(app, "submit")
    await settle(app)
    assert {"type": "stay", "image_id": ids[1]} in sent and "All 2 images are labeled" in app.panel.notice
    await app.close()


async def test_next_prelabels_are_sent_again_only_when_they_change(tmp_path) -> None:
    app, ids = scripted_app(tmp_path)
    await settle(app)
    c, s = app.canvas, app.session
    await next_with_prelabels(app, ids[1])
    changes: list[str] = []
    c.observe(lambda ch: changes.append(ch["name"]), names=["next_image", "next_meta", "next_objects"])
    for _ in range(3):
        app._refresh_next()
    assert changes == []
    s.trainer.offering = False  # pre-labels withheld: the next image goes without them
    app._refresh_next()
    assert c.next_objects == [] and c.next_meta["step"] is None and "next_image" not in changes
    s.trainer.offering = True
    changes.clear()
    app._refresh_next()
    assert c.next_meta["step"] == 0 and len(c.next_objects) == 3 and "next_image" not in changes
    # The kept pre-label recomputed at a later step (as every refresh_steps steps): sent again, once.
    kept, weights = s.ahead._kept[ids[1]]
    s.ahead._kept[ids[1]] = (type(kept)(kept.annotation, 0, kept.seconds), weights)
    app._refresh_next()
    assert changes.count("next_meta") == 1
    s.trainer.step = 3
    s.ahead._kept[ids[1]] = (type(kept)(kept.annotation, 3, kept.seconds), weights)
    app._refresh_next()
    app._refresh_next()
    assert c.next_meta["step"] == 3 and changes.count("next_meta") == 2
    # Too old for the open to serve it: not shown ahead either.
    s.trainer.step = 3 + s.config.ahead.max_age_steps + 1
    app._refresh_next()
    assert c.next_meta["step"] is None and c.next_objects == []
    s.trainer.step = 3
    await app.close()


async def test_classification_next_image_carries_its_class_suggestion(tmp_path) -> None:
    app = await classify_app(tmp_path)
    c, s = app.canvas, app.session
    s.trainer.offering = True  # before the trainer has labels to step on: the model of step 0
    ids = s.image_ids
    meta = await next_with_prelabels(app, ids[1])
    assert len(meta["category_scores"]) == 2 and c.next_objects == []
    update(c, {"category": 1})
    act(app, "submit")
    await settle(app)
    assert c.image_id == ids[1] and c.category == -1
    assert c.category_scores == meta["category_scores"] or s.trainer.step != meta["step"]
    await app.close()
