"""StreamAnnotator driven headless: the messages a browser would send, a real stream model behind them.

The model is the embedded segmenter at 64 px with random weights (what it predicts does not matter
here; that a click edits it, that Enter trains its adapter and moves on, does). The browser test
(tests/e2e/test_stream_browser.py) does the same through a real JupyterLab.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from livetrain_widgets import AdapterConfig, Annotation, StreamAnnotator, StreamSession, create_stream_model
from livetrain_widgets.engine.stream import class_masks
from livetrain_widgets.models import _lora
from livetrain_widgets.models.stream import Prompt, StreamModel, StreamPrediction
from livetrain_widgets.widgets._codec import encode_runs
from livetrain_widgets.widgets.canvas import LabelCanvas
from livetrain_widgets.widgets.stream import same_labels

from .test_widget_canvas import capture, custom, update

H, W = 64, 80
FAST = AdapterConfig(epochs=6, patience=3)


@pytest.fixture(scope="module")
def base() -> Any:
    from livetrain_widgets.models.embedded import EmbeddedModel

    torch.manual_seed(0)
    return EmbeddedModel("segmentation", ["cell"], pretrained=False, input_size=64, semantic=True)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(4)]


async def settle(app: StreamAnnotator) -> None:
    await asyncio.sleep(0)
    await app.wait_idle()


async def seg_app(base: Any, frames: list[np.ndarray], tmp_path: Path, **kw: Any) -> StreamAnnotator:
    from livetrain_widgets.models._stream_embedded import EmbeddedStreamModel

    app = StreamAnnotator(EmbeddedStreamModel(base, FAST), frames, adapter_dir=tmp_path / "adapter", **kw)
    await settle(app)
    return app


def click(app: StreamAnnotator, x: float, y: float, positive: bool = True, rid: str = "v-1", **kw: Any) -> None:
    content = {"type": "click", "id": rid, "image_id": app.canvas.image_id, "x": x, "y": y, "positive": positive,
               "label": 0, **kw}
    custom(app.canvas, content)


def enter(app: StreamAnnotator) -> None:
    custom(app.canvas, {"type": "action", "action": "submit", "image_id": app.canvas.image_id})


def strip(app: StreamAnnotator, action: str, rid: str = "s-1", **kw: Any) -> None:
    custom(app.strip, {"type": "action", "action": action, "id": rid, **kw})


def square(x0: int, y0: int, x1: int, y1: int) -> dict[str, Any]:
    """A painted mask as the canvas sends it back (cropped run lengths)."""
    crop = np.ones((y1 - y0, x1 - x0), bool)
    return {"id": "u0", "label": 0, "box": [x0, y0, x1, y1], "source": "user",
            "mask": {"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0, "rle": memoryview(encode_runs(crop))}}


async def test_first_frame_shows_the_prediction_and_the_strip(base, frames, tmp_path) -> None:
    app = await seg_app(base, frames, tmp_path)
    c, s = app.canvas, app.strip
    assert c.task == "segmentation" and c.click_tool and c.tool == "click" and c.semantic and not c.view_only
    assert c.image_size == [W, H] and c.image and "frame 0 (1 of 4)" in c.image_name
    assert same_labels(c.annotation(), app.stream.working())
    assert s.names == app.stream.names and s.marks == [""] * 4 and s.current == 0 and s.viewing == -1
    assert all(t[:2] == b"\xff\xd8" for t in s.thumbs) and len(s.thumbs) == 4  # small JPEGs, sent once
    assert s.stats["frames"] == 4 and s.stats["updates"] == 0 and s.stats["adapter_parameters"] > 0
    assert s.adapter_dir == str(tmp_path / "adapter") and s.busy == ""


async def test_clicks_edit_the_frame_and_enter_trains_then_moves_on(base, frames, tmp_path) -> None:
    app = await seg_app(base, frames, tmp_path)
    sent = capture(app.canvas)
    click(app, 20.5, 20, rid="v-1")
    await settle(app)
    assert sent == [{"type": "done", "id": "v-1"}]
    working = app.stream.working()
    assert class_masks(working)[0][20, 20]  # a positive click adds where it lands
    assert same_labels(app.canvas.annotation(), working)
    click(app, 20, 21, positive=False, rid="v-2")
    await settle(app)
    assert sent[-1] == {"type": "done", "id": "v-2"}
    assert not class_masks(app.stream.working()).get(0, np.zeros((H, W), bool))[21, 20]
    assert same_labels(app.canvas.annotation(), app.stream.working())
    assert (app.strip.clicks, app.strip.frame_clicks) == (2, 2)

    first_image = app.canvas.image_id
    busy: list[str] = []
    app.strip.observe(lambda change: busy.append(change["new"]), names=["busy"])
    enter(app)
    await settle(app)
    assert busy[:2] == ["training", ""]  # the strip says so while the adapter trains
    rec = app.stream.records[-1]
    assert rec.index == 0 and rec.corrected and not rec.full and rec.clicks == 2 and rec.update is not None
    assert app.stream.index == 1 and app.stream.stats()["updates"] == 1
    assert app.canvas.image_id != first_image and "frame 1 (2 of 4)" in app.canvas.image_name
    assert not app.canvas.view_only and same_labels(app.canvas.annotation(), app.stream.working())
    s = app.strip
    assert s.marks == ["corrected", "", "", ""] and s.current == 1 and s.frame_clicks == 0 and s.clicks == 2
    assert s.stats["updates"] == 1 and s.stats["corrections"] == 1 and s.stats["last_update_epochs"] >= 0
    assert "2 clicks" in s.message and "adapter updated" in s.message and s.busy == ""


async def test_accept_untouched_and_a_double_enter(base, frames, tmp_path) -> None:
    app = await seg_app(base, frames, tmp_path)
    enter(app)
    enter(app)  # the second Enter was for the same frame: dropped once the first moved on
    await settle(app)
    assert app.stream.index == 1 and app.stream.stats()["accepted"] == 1 and app.stream.stats()["updates"] == 0
    assert app.strip.marks[0] == "accepted" and "accepted as predicted" in app.strip.message


async def test_a_brush_edit_is_a_full_correction(base, frames, tmp_path) -> None:
    app = await seg_app(base, frames, tmp_path)
    update(app.canvas, {"objects": [square(10, 10, 40, 30)]})  # what the brush sends
    enter(app)
    await settle(app)
    rec = app.stream.records[-1]
    assert rec.corrected and rec.full and app.stream.stats()["updates"] == 1
    assert app.stream.stats()["full_corrections"] == 1
    label = app.stream.labels[0]
    assert label.masks.sum() == 30 * 20 and app.strip.marks[0] == "corrected" and "painted" in app.strip.message


async def test_a_click_after_painting_edits_the_painting(base, frames, tmp_path) -> None:
    app = await seg_app(base, frames, tmp_path)
    update(app.canvas, {"objects": [square(10, 10, 40, 30)]})
    sent = capture(app.canvas)
    click(app, 12, 12, positive=False)  # removes the painted piece under it (within the click's reach)
    await settle(app)
    assert sent == [{"type": "done", "id": "v-1"}]
    painted = app.canvas.annotation()
    assert 0 < int(painted.masks.sum()) < 30 * 20 and not painted.masks[0][12, 12]
    enter(app)
    await settle(app)
    assert app.stream.records[-1].full and app.stream.labels[0].masks.sum() == painted.masks.sum()


async def test_reset_and_save_adapter_buttons(base, frames, tmp_path) -> None:
    app = await seg_app(base, frames, tmp_path)
    update(app.canvas, {"objects": [square(5, 5, 30, 30)]})
    enter(app)
    await settle(app)
    assert app.stream.stats()["updates"] == 1
    sent = capture(app.strip)
    strip(app, "save", rid="s-1")
    await settle(app)
    assert sent[-1] == {"type": "done", "id": "s-1"}
    saved = tmp_path / "adapter"
    assert (saved / "adapter.safetensors").is_file() and (saved / "adapter.json").is_file()
    assert app.strip.stats["adapter_name"] == "adapter" and "saved to" in app.strip.message
    strip(app, "reset", rid="s-2")
    await settle(app)
    assert sent[-1] == {"type": "done", "id": "s-2"}
    assert app.stream.stats()["updates"] == 0 and app.strip.stats["updates"] == 0 and "reset" in app.strip.message
    assert same_labels(app.canvas.annotation(), app.stream.working()) and app.stream.index == 1

    # a new annotator starts from the saved adapter
    app2 = await seg_app(base, frames, tmp_path, adapter=tmp_path / "adapter")
    assert app2.stream.adapter_name == "adapter"


async def test_accept_button_view_back_and_the_end(base, frames, tmp_path) -> None:
    app = await seg_app(base, frames, tmp_path)
    sent = capture(app.strip)
    strip(app, "accept", rid="a-1", frame=0)
    await settle(app)
    assert sent[-1] == {"type": "done", "id": "a-1"} and app.stream.index == 1
    strip(app, "accept", rid="a-2", frame=0)  # a second press for the frame already done
    await settle(app)
    assert sent[-1]["type"] == "error" and sent[-1]["id"] == "a-2" and app.stream.index == 1

    # look back at frame 0 with the current frame's corrections kept aside
    click(app, 30, 30)
    await settle(app)
    objects = list(app.canvas.objects)
    strip(app, "view", rid="w-1", index=0)
    await settle(app)
    assert sent[-1] == {"type": "done", "id": "w-1"}
    assert app.canvas.view_only and app.strip.viewing == 0 and "view only" in app.canvas.message
    assert same_labels(app.canvas.annotation(), app.stream.labels[0])
    strip(app, "view", rid="w-2", index=3)  # not done yet
    await settle(app)
    assert sent[-1]["type"] == "error" and "not done yet" in sent[-1]["message"]
    enter(app)  # Enter goes back to the current frame, not on
    await settle(app)
    assert app.stream.index == 1 and app.strip.viewing == -1 and not app.canvas.view_only
    assert app.canvas.objects == objects and app.strip.frame_clicks == 1

    for _ in range(3):
        enter(app)
        await settle(app)
    assert app.stream.done and app.strip.current == 4 and "finished" in app.strip.message
    assert app.canvas.view_only and app.strip.marks == ["accepted", "corrected", "accepted", "accepted"]
    sent_c = capture(app.canvas)
    enter(app)
    await settle(app)
    assert "finished" in app.strip.error and app.stream.index == 4
    click(app, 5, 5, rid="late")
    await settle(app)
    assert sent_c[-1]["type"] == "error" and sent_c[-1]["id"] == "late"


async def test_malformed_messages_get_an_error_reply_and_change_nothing(base, frames, tmp_path) -> None:
    app = await seg_app(base, frames, tmp_path)
    click(app, 20, 20)
    await settle(app)
    before = (list(app.canvas.objects), app.stream.index, app.stream.stats(), app.strip.clicks,
              app.stream.working().masks.copy())
    canvas_sent, strip_sent = capture(app.canvas), capture(app.strip)
    image_id = app.canvas.image_id
    good = {"type": "click", "id": "x-1", "image_id": image_id, "x": 10, "y": 10, "positive": True, "label": 0}
    bad_clicks = [
        {**good, "x": "10"},
        {**good, "y": None},
        {**good, "x": float("nan")},
        {**good, "positive": 1},
        {**good, "label": 5},
        {**good, "label": True},
        {**good, "image_id": image_id - 1},  # stale
        {**good, "x": W},  # outside the image
        {**good, "y": -0.5},
        {**good, "x": 1e9},
        {k: v for k, v in good.items() if k != "x"},
    ]
    for content in bad_clicks:
        custom(app.canvas, content)
    no_id = [{**good, "id": True}, {**good, "id": ""}, {**good, "id": "x" * 65},
             {k: v for k, v in good.items() if k != "id"}]
    for content in no_id:
        custom(app.canvas, content)
    bad_strip = [
        {"type": "action", "action": "explode", "id": "s"},
        {"type": "action", "action": "accept", "id": "s"},  # no frame
        {"type": "action", "action": "accept", "id": "s", "frame": "0"},
        {"type": "action", "action": "accept", "id": "s", "frame": 3},  # not the current frame
        {"type": "action", "action": "view", "id": "s", "index": 99},
        {"type": "action", "action": "view", "id": "s", "index": -1},
        {"type": "action", "action": "save"},  # no id
        {"type": "nonsense", "id": "s"},
        "accept",
        None,
        [1, 2],
    ]
    for content in bad_strip:
        custom(app.strip, content)
    custom(app.canvas, {"type": "action", "action": "skip", "image_id": image_id})  # no skipping in a stream
    await settle(app)
    assert len(canvas_sent) == len(bad_clicks) + len(no_id) + 1
    assert all(m["type"] == "error" and m["message"] for m in canvas_sent)
    assert all(m["id"] == "x-1" for m in canvas_sent[: len(bad_clicks)])
    assert "outside" in canvas_sent[7]["message"] and "no longer shown" in canvas_sent[6]["message"]
    assert len(strip_sent) == len(bad_strip) and all(m["type"] == "error" for m in strip_sent)
    after = (list(app.canvas.objects), app.stream.index, app.stream.stats(), app.strip.clicks,
             app.stream.working().masks.copy())
    assert after[:4] == before[:4] and np.array_equal(after[4], before[4])
    # the front end may not change the strip's state, nor the canvas' click tool
    update(app.strip, {"current": 3, "stats": {}})
    update(app.canvas, {"click_tool": False})
    assert app.strip.current == 0 and app.strip.stats and app.canvas.click_tool


async def test_a_plain_canvas_takes_no_clicks() -> None:
    c = LabelCanvas("segmentation", ["cell"])
    c.set_image(b"x", (W, H), image_id=1)
    sent = capture(c)
    custom(c, {"type": "click", "id": "v-1", "image_id": 1, "x": 3, "y": 3, "positive": True, "label": 0})
    assert sent[-1]["type"] == "error" and sent[-1]["id"] == "v-1" and "takes no clicks" in sent[-1]["message"]
    update(c, {"tool": "click"})
    assert c.tool == "brush" and "refused" in sent[-1]["message"]
    with pytest.raises(Exception, match="click tool"):
        LabelCanvas("detection", ["a"], click_tool=True, tool="click")


# ------------------------------------------------------------------------------- classification
class TinyStreamClassifier(StreamModel):
    """A real, small correction-mode classifier: mean colour → linear head with a LoRA adapter."""

    family = "tiny"

    def __init__(self, classes: list[str]) -> None:
        super().__init__("classification", classes, AdapterConfig(epochs=30, patience=30, lr=0.2, dropout=0.0))
        torch.manual_seed(0)
        self.head = nn.Linear(3, len(classes))
        _lora.inject_lora(self, ["head"], rank=2, alpha=4.0, dropout=0.0)

    def encode(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        return torch.from_numpy(image.reshape(-1, 3).mean(0) / 255.0).float()[None], image.shape[:2]

    def predict(self, encoded: Any, prompt: Prompt | None = None) -> StreamPrediction:
        x, (h, w) = encoded
        with torch.no_grad():
            p = self.head(x).softmax(1)[0].numpy()
        return StreamPrediction(Annotation(w, h, category=int(p.argmax()), category_scores=p))

    def loss(self, encoded: Any, prompt: Prompt | None, target: Annotation) -> torch.Tensor:
        return nn.functional.cross_entropy(self.head(encoded[0]), torch.tensor([target.category]))


async def test_classification_picks_a_class_or_accepts(frames, tmp_path) -> None:
    model = TinyStreamClassifier(["a", "b", "c"])
    app = StreamAnnotator(model, frames, adapter_dir=tmp_path / "ad")
    await settle(app)
    c = app.canvas
    predicted = app.stream.prediction().annotation.category
    assert c.task == "classification" and not c.click_tool and c.category == predicted
    assert len(c.category_scores) == 3
    enter(app)  # the suggestion as it is
    await settle(app)
    assert app.stream.records[-1].corrected is False and app.strip.marks[0] == "accepted"
    other = (app.stream.prediction().annotation.category + 1) % 3
    update(c, {"category": other})  # a digit key or a class button, then Enter
    enter(app)
    await settle(app)
    rec = app.stream.records[-1]
    assert rec.corrected and rec.full and app.stream.labels[1].category == other
    assert app.strip.stats["updates"] == 1 and app.strip.marks[1] == "corrected"
    sent = capture(c)
    click(app, 3, 3)
    assert sent[-1]["type"] == "error" and "takes no clicks" in sent[-1]["message"]


async def test_construction_choices(base, frames, tmp_path) -> None:
    session = StreamSession(create_stream_model(base, adapter=FAST), frames[:2], names=["a", "b"])
    app = StreamAnnotator(session, adapter_dir=tmp_path / "ad")
    await settle(app)
    assert app.stream is session and app.strip.names == ["a", "b"] and "a (1 of 2)" in app.canvas.image_name
    with pytest.raises(ValueError, match="brings its own frames"):
        StreamAnnotator(session, frames)
    with pytest.raises(ValueError, match="not \\['dog'\\]"):
        StreamAnnotator(base, frames, classes=["dog"])
    with pytest.raises(ValueError, match="frames are needed"):
        StreamAnnotator(base)
    # a folder of frames: sorted, named by file, the adapter folder named after it
    from PIL import Image

    folder = tmp_path / "slices"
    folder.mkdir()
    for i, f in enumerate(frames[:3]):
        Image.fromarray(f).save(folder / f"{i:02d}.png")
    app = StreamAnnotator(base, folder, adapter=FAST)
    await settle(app)
    assert len(app.stream) == 3 and app.adapter_dir == Path("adapters") / "slices"
    assert app.stream.model.adapter_config.epochs == FAST.epochs and "00.png" in app.strip.names[0]
