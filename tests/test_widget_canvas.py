"""LabelCanvas and LivePanel in Python: traits, reading annotations back, and messages from the front
end, including malformed and hostile ones (a clear error reply, nothing changed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livetrain_widgets import Annotation
from livetrain_widgets.widgets._codec import WireError, encode_runs
from livetrain_widgets.widgets.canvas import LabelCanvas
from livetrain_widgets.widgets.panel import LivePanel

CLASSES = ["RBC", "WBC", "<img src=x onerror=alert(1)>"]


class Sent(list):
    """Messages a widget sent to its views."""


def capture(widget: Any) -> Sent:
    sent = Sent()
    widget.send = lambda content, buffers=None: sent.append(content)
    return sent


def custom(widget: Any, content: Any, buffers: list[Any] | None = None) -> None:
    """Deliver a custom message exactly as ipywidgets does when the front end sends one."""
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": buffers or []})


def update(widget: Any, state: dict[str, Any]) -> None:
    """Deliver a state update from the front end (what model.save_changes() sends)."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                        "buffers": []})


@pytest.fixture
def canvas() -> LabelCanvas:
    c = LabelCanvas("detection", CLASSES)
    c.set_image(b"\x89PNG fake", (200, 100), image_id=7, name="a.png",
                annotation=Annotation(200, 100, boxes=[[10, 10, 50, 40]], labels=[1]))
    return c


def test_set_image_loads_stored_labels_and_resets_state(canvas) -> None:
    assert canvas.image_id == 7 and canvas.image_size == [200, 100]
    assert canvas.objects == [{"id": "s0", "label": 1, "box": [10.0, 10.0, 50.0, 40.0], "source": "user"}]
    assert canvas.classes[2] == CLASSES[2]  # names are data; the front end renders them as text
    ann = canvas.annotation()
    np.testing.assert_allclose(ann.boxes, [[10, 10, 50, 40]])
    canvas.selected = "s0"
    canvas.set_image(b"x", (20, 20), image_id=8)
    assert canvas.objects == [] and canvas.selected == "" and canvas.category == -1


def test_prelabels_threshold_accept_and_discard(canvas) -> None:
    pred = Annotation(200, 100, boxes=[[60, 10, 90, 50], [100, 20, 150, 80]], labels=[0, 2], scores=[0.9, 0.2])
    canvas.set_prelabels(pred)
    assert canvas.prelabel_count == 1  # 0.2 is under the 0.3 threshold
    assert len(canvas.annotation()) == 2  # the stored box and the visible pre-label
    canvas.threshold = 0.1
    assert canvas.prelabel_count == 2 and len(canvas.annotation()) == 3
    canvas.threshold = 0.5
    canvas.accept_prelabels()
    assert [o["source"] for o in canvas.objects] == ["user", "user"] and canvas.prelabel_count == 0
    canvas.set_prelabels(pred)  # a fresh prediction replaces pending pre-labels only
    assert len(canvas.objects) == 4
    canvas.discard_prelabels()
    assert len(canvas.objects) == 2


def test_actions_reach_callbacks_and_stale_or_malformed_ones_do_not(canvas) -> None:
    got: list[str] = []
    canvas.on_action(got.append)
    sent = capture(canvas)
    custom(canvas, {"type": "action", "action": "submit", "image_id": 7})
    assert got == ["submit"] and sent == []
    bad = [
        {"type": "action", "action": "submit", "image_id": 6},  # stale: another image
        {"type": "action", "action": "explode", "image_id": 7},
        {"type": "action", "image_id": 7},
        {"type": "nonsense"},
        "submit",
        None,
        [1, 2, 3],
        {"type": "action", "action": ["submit"], "image_id": 7},
        {"type": "action", "action": "submit", "image_id": 7, "junk": "x" * 100_000},
    ]
    for content in bad:
        custom(canvas, content)
    assert got == ["submit"]
    assert len(sent) == len(bad) and all(m["type"] == "error" and m["message"] for m in sent)
    assert "no longer shown" in sent[0]["message"] and "unknown action" in sent[1]["message"]
    assert "too large" in sent[-1]["message"]


def test_a_failing_callback_becomes_an_error_reply(canvas) -> None:
    canvas.on_action(lambda a: 1 / 0)
    sent = capture(canvas)
    custom(canvas, {"type": "action", "action": "skip", "image_id": 7})
    assert sent and "ZeroDivisionError" in sent[0]["message"]


def test_front_end_may_only_change_its_own_traits(canvas) -> None:
    sent = capture(canvas)
    update(canvas, {"classes": ["hacked"], "image_id": 99, "task": "classification"})
    assert canvas.classes == CLASSES and canvas.image_id == 7 and canvas.task == "detection"
    assert "may not change classes, image_id, task" in sent[-1]["message"]
    update(canvas, {"tool": "chainsaw"})
    assert canvas.tool == "box" and "refused" in sent[-1]["message"]
    update(canvas, {"label": 3})  # only 3 classes
    assert canvas.label == 0
    update(canvas, {"brush_size": "huge"})
    assert canvas.brush_size == 12
    update(canvas, {"selected": "s0", "label": 2, "threshold": 0.4})
    assert (canvas.selected, canvas.label, canvas.threshold) == ("s0", 2, 0.4)
    # A mixed update: the allowed part applies, the rest is refused (and said so).
    update(canvas, {"label": 1, "classes": []})
    assert canvas.label == 1 and canvas.classes == CLASSES


def test_malformed_objects_from_the_front_end_give_a_readable_error(canvas) -> None:
    canvas.objects = [{"id": "u1", "label": 9, "box": [0, 0, 5, 5], "source": "user"}]
    with pytest.raises(WireError, match="class index 9"):
        canvas.annotation()
    canvas.objects = "garbage"  # traitlets makes a list of characters of it
    with pytest.raises(WireError, match="is not an object"):
        canvas.annotation()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )
)
def test_fuzzed_objects_never_raise_anything_but_wire_error(canvas, objects) -> None:
    canvas.objects = objects if isinstance(objects, list) else [objects]
    try:
        ann = canvas.annotation()
    except WireError:
        return
    assert (ann.width, ann.height) == (200, 100)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["type", "action", "image_id", "x"]),
                       st.none() | st.integers() | st.text(max_size=12) | st.lists(st.integers(), max_size=3)))
def test_fuzzed_messages_get_an_error_reply_or_act(canvas, content) -> None:
    got: list[str] = []
    canvas._action_callbacks = [got.append]
    sent = capture(canvas)
    before = (list(canvas.objects), canvas.image_id, canvas.selected)
    custom(canvas, content)
    assert len(got) + len(sent) == 1  # exactly one outcome
    assert (list(canvas.objects), canvas.image_id, canvas.selected) == before


def test_segmentation_canvas_reads_masks_back() -> None:
    c = LabelCanvas("segmentation", ["cell", "membrane"])
    assert c.tool == "brush"
    m = np.zeros((30, 40), bool)
    m[3:10, 5:20] = True
    c.set_image(b"x", (40, 30), image_id=1, annotation=Annotation.from_masks(m[None], [1]))
    assert c.objects[0]["mask"]["w"] == 15 and isinstance(c.objects[0]["mask"]["rle"], bytes)
    # What the front end sends back: memoryviews in place of bytes (ipywidgets' buffer handling).
    crop = np.ones((2, 3), bool)
    c.objects = [*c.objects, {"id": "u1", "label": 0, "box": [0, 0, 3, 2], "source": "user",
                              "mask": {"x": 0, "y": 0, "w": 3, "h": 2, "rle": memoryview(encode_runs(crop))}}]
    ann = c.annotation()
    assert ann.labels.tolist() == [1, 0]
    np.testing.assert_array_equal(ann.masks[0], m)
    assert ann.masks[1, :2, :3].all() and ann.masks[1].sum() == 6


def test_classification_canvas() -> None:
    c = LabelCanvas("classification", ["cat", "dog"])
    c.set_image(b"x", (10, 10), image_id=3)
    with pytest.raises(WireError, match="choose a class"):
        c.annotation()
    c.set_prelabels(Annotation(10, 10, category=1, category_scores=[0.25, 0.75]))
    assert c.category_scores == [0.25, 0.75] and c.category == -1
    update(c, {"category": 1})
    assert c.annotation().category == 1
    sent = capture(c)
    update(c, {"category": 5})
    assert c.category == 1 and sent


def test_panel_actions_and_guard() -> None:
    p = LivePanel()
    got: list[str] = []
    p.on_action(got.append)
    sent = capture(p)
    for action in ("submit", "skip", "back", "predict", "discard", "accept", "start", "stop"):
        custom(p, {"type": "action", "action": action})
    custom(p, {"type": "action", "action": "rm -rf"})
    assert len(got) == 8 and len(sent) == 1
    update(p, {"status": "hacked", "threshold": 0.45, "skip_predict_if_labeled": True})
    assert p.status == "Not started" and p.threshold == 0.45 and p.skip_predict_if_labeled
    update(p, {"threshold": 7.0})
    assert p.threshold == 0.45


def test_canvas_rejects_unknown_task() -> None:
    with pytest.raises(ValueError, match="task must be one of"):
        LabelCanvas("keypoints", ["a"])


def test_set_next_sends_the_next_image_ahead_and_the_front_end_cannot_change_it(canvas) -> None:
    pre = Annotation(200, 100, boxes=[[1, 2, 30, 40]], labels=[2], scores=[0.61234])
    canvas.set_next(b"\xff\xd8next", (200, 100), 8, "b.png", pre, step=12)
    assert canvas.next_image == b"\xff\xd8next"
    assert canvas.next_meta == {"image_id": 8, "image_name": "b.png", "image_size": [200, 100], "category_scores": [],
                                "step": 12}
    assert canvas.next_objects == [{"id": "p0", "label": 2, "box": [1.0, 2.0, 30.0, 40.0], "source": "prelabel",
                                    "score": 0.6123}]
    assert canvas.image_id == 7 and len(canvas.objects) == 1  # the current image is untouched
    sent = capture(canvas)
    update(canvas, {"next_meta": {"image_id": 99}, "next_objects": [], "group": "x"})
    assert canvas.next_meta["image_id"] == 8 and canvas.next_objects and canvas.group == ""
    assert sent and "may not change" in sent[0]["message"]
    canvas.stay(7)
    assert sent[-1] == {"type": "stay", "image_id": 7}
    canvas.clear_next()
    assert canvas.next_image == b"" and canvas.next_meta == {} and canvas.next_objects == []


def test_set_next_and_set_image_carry_a_class_suggestion() -> None:
    c = LabelCanvas("classification", ["cat", "dog"])
    pre = Annotation(20, 10, category_scores=[0.25, 0.75])
    c.set_next(b"x", (20, 10), 3, "c.png", pre)
    assert c.next_objects == [] and c.next_meta["category_scores"] == [0.25, 0.75]
    c.set_image(b"x", (20, 10), image_id=3, prelabels=pre)
    assert c.category_scores == [0.25, 0.75] and c.category == -1 and c.objects == []
