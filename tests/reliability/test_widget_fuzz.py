"""Fuzzing everything a front end can send to the widgets (issue 6: nothing labeled is ever lost).

The front ends (``js/src/**``) reach the kernel two ways: custom messages (``model.send``: actions, the
click tool's requests, the strip's buttons) and trait updates (``model.save_changes``: the objects with
their masks' run lengths as binary buffers, the chosen class, the tool, the threshold ...). ipywidgets
hands them to ``widget._handle_custom_msg(content, buffers)`` and, after ``_put_buffers``, to
``widget.set_state(state)``; these tests call exactly those, without the ``_show_traceback`` wrapper
around them, so anything that would escape into the kernel fails the test.

What is sent is what hypothesis makes of valid messages: fields dropped, replaced by values of the wrong
type, NaN, infinity, huge and negative numbers, unknown ids and actions, extra fields, unicode junk
(lone surrogates too: JSON carries them in), payloads past ``MAX_MESSAGE_CHARS`` or nested far deeper
than any real one, binary run lengths truncated, padded, misaligned or summing to the wrong size,
buffers where numbers belong; plus plain junk. Everything travels the wire the way jupyter_client
carries it: JSON text in (NaN allowed, surrogates escaped), replies out through jupyter_client's own
packer, strictly (a reply the front end could not decode is a failure, not a reply).

Every example checks: the entry point returns and nothing is logged at WARNING or above (the handlers'
catch-all logs, so a bug that is merely contained still fails); a message the protocol
(``js/src/protocol.ts``) does not allow gets an ``{"type": "error"}`` reply (carrying the request's id
when it had a valid one) and changes nothing, neither the widgets' synced state (``get_state()``) nor
the labels (the store's versions, the stream's records); a valid one does exactly what it should (a
trait takes exactly the value sent, a submission stores exactly the annotation on the canvas). Whether
a message is valid is decided here from the protocol, independently of the handlers. Counters show the
fuzzer gets past ``action_of`` into the handlers, and how many different refusals came back.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ipywidgets.widgets.widget as ipywidgets_widget
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from ipywidgets.widgets.widget import _put_buffers, _remove_buffers
from jupyter_client.session import json_packer, json_unpacker
from torch import nn

from livetrain_widgets import AdapterConfig, Annotation, LiveSession, SessionConfig, StreamAnnotator, TrainerConfig
from livetrain_widgets.engine.stream import class_masks
from livetrain_widgets.models import _lora
from livetrain_widgets.models.stream import Prompt, StreamModel, StreamPrediction
from livetrain_widgets.widgets import canvas as canvas_module
from livetrain_widgets.widgets import panel as panel_module
from livetrain_widgets.widgets import stream as stream_module
from livetrain_widgets.widgets._codec import WireError, encode_runs
from livetrain_widgets.widgets._messages import MAX_DEPTH, MAX_MESSAGE_CHARS
from livetrain_widgets.widgets.app import LiveAnnotator
from livetrain_widgets.widgets.canvas import CANVAS_ACTIONS, MAX_REQUEST_ID, TOOLS, LabelCanvas
from livetrain_widgets.widgets.panel import PANEL_ACTIONS, LivePanel
from livetrain_widgets.widgets.plots import LossPlot, QualityPlot, SamplerPlot
from livetrain_widgets.widgets.stream import STRIP_ACTIONS, StreamStrip, same_labels

from ..tiny_model import TinyClassifier
from .report import LONG, record, scale

# markup in a class name (no "/": a classification project's class is a folder name in the "folders" export)
CLASSES = ["cell", "membrane", "<b>x<i>"]
N = len(CLASSES)
W, H = 40, 30  # the standalone canvas' image

# hypothesis: no example database in the checkout; each test builds its widgets once, outside the examples.
# The quick form (CI) is derandomized so a run is reproducible: the coverage floors below (how many examples
# reached a valid path) once failed at 10 of 200 against a floor of 10. The long form explores a fresh seed.
FUZZ = settings(max_examples=scale(200, 2000), deadline=None, database=None, derandomize=not LONG)
# the apps' examples are sequences of events on a live app with a store behind it: fewer, each doing more
FUZZ_APP = settings(FUZZ, max_examples=scale(60, 600))


# ======================================================================================= the wire
@dataclass(frozen=True)
class Deep:
    """A value nested ``depth`` lists (or dicts) deep, made as JSON text (too deep to build in Python)."""

    depth: int
    kind: str = "list"


def _stack_depth() -> int:
    frame, n = sys._getframe(), 0
    while frame is not None:
        frame, n = frame.f_back, n + 1
    return n


def from_wire(value: Any) -> Any:
    """What the kernel holds when the front end sends ``value``: JSON text, parsed by jupyter_client."""
    deep: list[Deep] = []

    def marker(v: Any) -> Any:
        if isinstance(v, Deep):
            deep.append(v)
            return f"\x00deep{len(deep) - 1}"
        if isinstance(v, (bytes, memoryview)):
            return {}  # binary inside a custom message's JSON: what JSON.stringify makes of an ArrayBuffer
        raise TypeError(f"{type(v).__name__} cannot go into a message")

    text = json.dumps(value, allow_nan=True, default=marker)  # ensure_ascii: surrogates travel as \udxxx
    for i, d in enumerate(deep):
        # as deep as JSON can go here: a kernel parses ~1000 levels (its parser shares the stack limit)
        n = min(d.depth, sys.getrecursionlimit() - _stack_depth() - 20)
        nested = "[" * n + "]" * n if d.kind == "list" else '{"a":' * n + "1" + "}" * n
        text = text.replace(json.dumps(f"\x00deep{i}"), nested)
    return json_unpacker(text.encode())


def deliver_custom(widget: Any, content: Any, buffers: list[bytes] = ()) -> Any:
    """A custom message from the front end, as ipywidgets delivers it; returns what the kernel got."""
    wire = from_wire(content)
    widget._handle_custom_msg(wire, [memoryview(bytes(b)) for b in buffers])
    return wire


def deliver_update(widget: Any, state: Any) -> Any:
    """A state update from the front end (``save_changes``): binary parts split off and put back at their
    paths exactly as ipywidgets does; returns the state the widget got."""
    if isinstance(state, dict):
        plain, paths, buffers = _remove_buffers(state)
        wire = from_wire(plain)
        _put_buffers(wire, paths, [memoryview(bytes(b)) for b in buffers])
    else:
        wire = from_wire(state)
    widget.set_state(wire)
    return wire


@contextmanager
def echo(on: bool) -> Iterator[None]:
    """Kernels differ: ipywidgets 8 echoes every update back to the views (``JUPYTER_WIDGETS_ECHO``, on by
    default), which packs it, and that alone refuses a few values (a lone surrogate). Examples run both ways."""
    saved = ipywidgets_widget.JUPYTER_WIDGETS_ECHO
    ipywidgets_widget.JUPYTER_WIDGETS_ECHO = on
    try:
        yield
    finally:
        ipywidgets_widget.JUPYTER_WIDGETS_ECHO = saved


class Outbox:
    """A widget's comm as a kernel runs it: everything sent goes through jupyter_client's packer.

    Replies must pack strictly (the packer's lenient fallback warns, and mangles what the view gets);
    state syncs and echoes are packed like a kernel does, fallback included.
    """

    def __init__(self, widget: Any) -> None:
        self.replies: list[dict[str, Any]] = []
        widget._send = self._send

    def _send(self, msg: dict[str, Any], buffers: Any = None) -> None:
        if msg.get("method") == "custom":
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                json_packer(msg)
            self.replies.append(msg["content"])
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                json_packer(msg)

    def take(self) -> list[dict[str, Any]]:
        out, self.replies = self.replies, []
        return out


class _Trap(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def escapes() -> Iterator[_Trap]:
    """Anything logged at WARNING or above while fuzzing: a handler's catch-all, ipywidgets, asyncio."""
    trap = _Trap()
    root = logging.getLogger()
    root.addHandler(trap)
    try:
        yield trap
    finally:
        root.removeHandler(trap)


def assert_quiet(trap: _Trap) -> None:
    if trap.records:
        r = trap.records[0]
        detail = "".join(logging.Formatter().formatException(r.exc_info)) if r.exc_info else ""
        raise AssertionError(f"logged {r.levelname} from {r.name}: {r.getMessage()}\n{detail}")


def kind_of(message: str) -> str:
    """A refusal's kind: its words, with the values it quotes, its numbers and the trait names refused left out."""
    words = re.sub(r"'[^']*'|\"[^\"]*\"|-?\d+(\.\d+)?(e[+-]?\d+)?|\[.*?\]|\(.*?\)", "#", message)
    return re.sub(r"(may not change) .*", r"\1 …", words).strip()[:60]


class Counter(collections.Counter):
    def share(self, key: str, of: str) -> float:
        return self[key] / max(1, self[of])


def refusals(stats: Counter) -> int:
    """Messages and updates refused at the door ("canvas message refused", "strip update refused", ...)."""
    return sum(v for k, v in stats.items()
               if k.split()[0] in ("canvas", "panel", "strip") and k.endswith((" refused", " protected")))


@contextmanager
def counting(stats: Counter, module: Any, name: str, key: str) -> Iterator[None]:
    """Count calls of ``module.name`` that returned (got past that check)."""
    original = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        stats[key] += 1
        return out

    setattr(module, name, counted)
    try:
        yield
    finally:
        setattr(module, name, original)


# =========================================================================== what the protocol allows
def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def finite(v: Any) -> bool:
    return is_number(v) and math.isfinite(v)


def whole(v: Any) -> bool:
    return finite(v) and v == int(v)


def sendable_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def good_id(v: Any) -> bool:
    """A request id (protocol.ts: a short string; Python also takes integers)."""
    if isinstance(v, str):
        return 0 < len(v) <= MAX_REQUEST_ID and sendable_text(v)
    return isinstance(v, int) and not isinstance(v, bool)


def depth(value: Any) -> int:
    best, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            best = max(best, d)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            best = max(best, d)
            stack.extend((x, d + 1) for x in v)
    return best


def refused_outright(msg: Any) -> bool:
    """Too deep or too large: refused before any handler looks at it."""
    return depth(msg) > MAX_DEPTH or len(repr(msg)) > MAX_MESSAGE_CHARS


def strict_json(value: Any) -> bool:
    """Whether a value could be sent back to a view (strict JSON, buffers aside)."""
    if depth(value) > MAX_DEPTH:
        return False

    def buffer(v: Any) -> None:
        if isinstance(v, (bytes, memoryview)):
            return None
        raise TypeError

    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False, default=buffer).encode("utf-8")
    except (TypeError, ValueError):
        return False
    return True


def as_set(key: str, value: Any) -> Any:
    """The value a trait holds once ``value`` was accepted for it."""
    return [value] if key == "objects" and isinstance(value, str) else value


@dataclass
class Expect:
    """What should come of a message: ``what`` is "error", or what reaches the widget's callback."""

    what: str
    value: Any = None
    request_id: Any = None  # an error reply carries it (None: it has no valid id to carry)


def expect_canvas(c: LabelCanvas, msg: Any, *, takes_clicks: bool) -> Expect:
    """CanvasAction / ClickMessage in protocol.ts."""
    if refused_outright(msg):
        return Expect("error")
    if isinstance(msg, dict) and msg.get("type") == "click":
        rid = msg.get("id")
        if not good_id(rid):
            return Expect("error")
        x, y, label = msg.get("x"), msg.get("y"), msg.get("label", c.label)
        w, h = c.image_size
        ok = (takes_clicks and c.click_tool and not c.view_only and c.image_id >= 0
              and msg.get("image_id") == c.image_id
              and finite(x) and finite(y) and 0 <= x < w and 0 <= y < h
              and isinstance(msg.get("positive"), bool) and whole(label) and 0 <= label < len(c.classes))
        return Expect("click", (rid, float(x), float(y), msg.get("positive"), int(label))) if ok else \
            Expect("error", request_id=rid)
    if (not isinstance(msg, dict) or msg.get("type") != "action" or not isinstance(msg.get("action"), str)
            or msg["action"] not in CANVAS_ACTIONS or msg.get("image_id") != c.image_id):
        return Expect("error")
    return Expect("action", msg["action"])


def expect_panel(msg: Any) -> Expect:
    """PanelActionMessage in protocol.ts."""
    if refused_outright(msg) or not isinstance(msg, dict) or msg.get("type") != "action":
        return Expect("error")
    action = msg.get("action")
    return Expect("action", action) if isinstance(action, str) and action in PANEL_ACTIONS else Expect("error")


def expect_strip(strip: StreamStrip, msg: Any) -> Expect:
    """StripMessage in protocol.ts: ``frame`` and ``index`` are frame numbers (whole, not 1.0)."""
    if refused_outright(msg) or not isinstance(msg, dict) or msg.get("type") != "action":
        return Expect("error")
    action = msg.get("action")
    if not isinstance(action, str) or action not in STRIP_ACTIONS or not good_id(msg.get("id")):
        return Expect("error")
    rid = msg["id"]

    def frame_number(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if action == "accept":
        frame = msg.get("frame")
        ok = frame_number(frame) and frame == strip.current
        return Expect("request", (rid, action, frame, None)) if ok else Expect("error", request_id=rid)
    if action == "view":
        index = msg.get("index")
        ok = frame_number(index) and index < len(strip.names)
        return Expect("request", (rid, action, None, index)) if ok else Expect("error", request_id=rid)
    return Expect("request", (rid, action, None, None))


def trait_verdict(widget: Any, key: str, value: Any) -> bool | None:
    """Whether the front end may set ``key`` to ``value`` (None: traitlets may coerce it either way)."""
    if not strict_json(value):
        return False
    n = len(getattr(widget, "classes", ()))
    if key == "objects":
        return isinstance(value, (list, str))  # traitlets' List takes a string as a list of that one string
    if key in ("threshold",):
        return None if isinstance(value, bool) else finite(value) and 0 <= value <= 1
    if key in ("semantic", "skip_predict_if_labeled", "auto_threshold"):
        return True if isinstance(value, bool) else None if value in (0, 1) and is_number(value) else False
    if key == "selected":
        return isinstance(value, str)
    if key == "tool":
        allowed = TOOLS if (widget.click_tool and widget.task == "segmentation") else TOOLS[:-1]
        return isinstance(value, str) and value in allowed
    if isinstance(value, bool):
        return None  # an Int trait takes True as 1
    if key == "label":
        return whole(value) and 0 <= value < n
    if key == "category":
        return whole(value) and -1 <= value < n
    if key == "brush_size":
        return whole(value) and 1 <= value <= 500
    raise AssertionError(f"no rule for {key}")


# ========================================================================================= strategies
SURROGATE = st.characters(categories=["Cs"])
ODD_TEXT = ["", " ", "\x00", "\u202e", "\ufeffsubmit", "submit\x00", "SUBMIT", " submit", "😀😀", "a" * 65,
            "%s%n{0}", "<img src=x onerror=alert(1)>", "../../etc/passwd", "null", "NaN", "IPY_MODEL_0", "7"]


def text_junk(max_size: int = 12) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=max_size), st.sampled_from(ODD_TEXT),
                     st.text(st.one_of(SURROGATE, st.characters()), min_size=1, max_size=max_size))


#: a request id JSON can bring in but no reply could carry back (a lone surrogate)
UNSENDABLE_ID = st.text(SURROGATE, min_size=1, max_size=3).map(lambda t: "v-" + t)
ODD_NUMBERS = [math.nan, math.inf, -math.inf, -0.0, 0.5, 1e308, -1e308, 5e-324, 2**31, 2**32, 2**53 + 1, 2**63,
               -(2**63) - 1, 2**64, 10**30, -1, -(10**30)]
NUMBER = st.one_of(st.integers(-3, 12), st.integers(), st.floats(), st.floats(-1e4, 1e4), st.sampled_from(ODD_NUMBERS))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, text_junk())
JUNK = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text_junk(8), inner,
                                                                                      max_size=4), max_leaves=10)
BYTES = st.one_of(st.binary(max_size=64), st.builds(lambda n: bytes(n), st.integers(0, 1 << 20)),
                  st.builds(lambda k: np.full(k, 0xFFFFFFFF, "<u4").tobytes(), st.integers(1, 8)))
BIG = st.one_of(st.builds(lambda n: "x" * n, st.integers(MAX_MESSAGE_CHARS - 10, MAX_MESSAGE_CHARS + 2000)),
                st.builds(lambda n: list(range(n)), st.integers(10_000, 14_000)))
DEEP = st.builds(Deep, st.integers(MAX_DEPTH - 2, 1200), st.sampled_from(["list", "dict"]))
#: a field's replacement: junk, a value of the wrong kind, or just off the valid range
ODD = st.one_of(JUNK, BYTES.map(memoryview), BIG, DEEP, st.sampled_from([7.0, 0.0, True, False, "0", [7], {"id": 7}]))


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any], fields: dict[str, st.SearchStrategy[Any]] | None = None) -> Any:
    """``template`` as it is, or with fields dropped, replaced (by junk or by ``fields``' own near misses),
    or added; sometimes not an object at all."""
    msg = dict(template)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["drop", "set", "set", "extra", "whole"]))
        if op == "drop" and msg:
            msg.pop(draw(st.sampled_from(sorted(msg))))
        elif op == "set" and msg:
            key = draw(st.sampled_from(sorted(msg)))
            near = (fields or {}).get(key)
            msg[key] = draw(ODD if near is None else st.one_of(ODD, near))
        elif op == "extra":
            msg[draw(text_junk(10))] = draw(ODD)
        elif op == "whole":
            return draw(st.one_of(JUNK, BIG, DEEP, st.just([msg]), st.just({"content": msg})))
    return msg


def buffers() -> st.SearchStrategy[list[bytes]]:
    return st.lists(st.one_of(st.binary(max_size=32), BYTES), max_size=2)


@dataclass
class Drawn:
    """A valid object drawn for a canvas, with what it should become once submitted."""

    wire: dict[str, Any]
    label: int
    box: list[float] | None = None
    mask: np.ndarray | None = None  # full-image
    score: float | None = None


#: a fraction of the image's width or height: what is drawn does not depend on the image shown (the apps'
#: images differ in size, and hypothesis needs the same draws to make the same choices)
FRAC = st.integers(0, 9999).map(lambda i: i / 10_000)


@st.composite
def valid_object(draw: st.DrawFn, task: str, w: int, h: int, n: int, i: int) -> Drawn:
    label = draw(st.integers(0, n - 1))
    prelabel = draw(st.integers(0, 4)) == 0
    score = draw(st.floats(0, 1).map(lambda s: round(s, 4))) if prelabel else None
    wire: dict[str, Any] = {"id": f"u{i}", "label": label, "source": "prelabel" if prelabel else "user"}
    if prelabel:
        wire["score"] = score
    if task == "segmentation":
        x, y = int(draw(FRAC) * w), int(draw(FRAC) * h)
        cw, ch = 1 + int(draw(FRAC) * (w - x)), 1 + int(draw(FRAC) * (h - y))
        density = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))  # 0: everything erased, the object is gone
        crop = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).random((ch, cw)) < density
        full = np.zeros((h, w), bool)
        full[y : y + ch, x : x + cw] = crop
        wire.update(box=[x, y, x + cw, y + ch], mask={"x": x, "y": y, "w": cw, "h": ch, "rle": encode_runs(crop)})
        return Drawn(wire, label, mask=full, score=score)
    # in hundredths of a pixel, like the front end's boxes; at least 0.05 px wide and high
    x0, y0 = int(draw(FRAC) * (w * 100 - 10)), int(draw(FRAC) * (h * 100 - 10))
    x1, y1 = x0 + 5 + int(draw(FRAC) * (w * 100 - x0 - 5)), y0 + 5 + int(draw(FRAC) * (h * 100 - y0 - 5))
    x0, y0, x1, y1 = x0 / 100, y0 / 100, x1 / 100, y1 / 100
    wire["box"] = [x0, y0, x1, y1]
    return Drawn(wire, label, box=[x0, y0, x1, y1], score=score)


@st.composite
def broken_object(draw: st.DrawFn, task: str, w: int, h: int, n: int) -> dict[str, Any]:
    """A valid object with one thing wrong: its run lengths above all, its crop, box or class."""
    obj = draw(valid_object("segmentation" if task == "segmentation" else "detection", w, h, n, 0)).wire
    if task == "segmentation":
        mask = dict(obj["mask"])
        rle = bytes(mask["rle"])
        near_misses = st.sampled_from([  # truncated, padded, misaligned, overflowing, summing wrong
            rle[:-1], rle[:-4], rle + b"\x00", rle + b"\x01\x00\x00\x00", rle[:2], b"",
            np.full(3, 0xFFFFFFFF, "<u4").tobytes(), bytes(1 << 16),
            np.array([mask["w"] * mask["h"] + 1], "<u4").tobytes(),
        ])
        mask["rle"] = draw(st.one_of(near_misses, near_misses, BYTES, JUNK))
        for key in draw(st.lists(st.sampled_from(["x", "y", "w", "h"]), max_size=2)):
            mask[key] = draw(st.one_of(st.sampled_from([-1, 0, w + 1, h * 1000, 1.5, 2**40, -(2**63)]), NUMBER, JUNK))
        obj["mask"] = draw(st.sampled_from([mask, None, [mask], memoryview(rle)])) if draw(st.integers(0, 5)) == 0 \
            else mask
    else:
        obj["box"] = draw(st.one_of(
            st.lists(st.sampled_from([math.nan, math.inf, -1e9, 1e9, 0, w, -0.0]), min_size=4, max_size=4),
            st.lists(NUMBER, max_size=6), JUNK, BYTES.map(memoryview),
            st.just([5, 5, 5, 9]), st.just([w + 5, 0, w + 9, 5])))
    if draw(st.integers(0, 3)) == 0:
        obj["label"] = draw(st.one_of(st.sampled_from([-1, n, 1.5, True, "0", None, 2**70]), JUNK))
    return obj


# ========================================================================================== 1. canvas
def _canvas(task: str, clicks: list[Any] | None = None) -> LabelCanvas:
    c = LabelCanvas(task, CLASSES, click_tool=task == "segmentation")
    box = Annotation(W, H, boxes=[[3, 4, 20, 25]], labels=[1])
    mask = np.zeros((1, H, W), bool)
    mask[0, 5:12, 8:30] = True
    ann = {"detection": box, "segmentation": Annotation.from_masks(mask, [2]),
           "classification": Annotation(W, H, category=1)}[task]
    c.set_image(b"\x89PNG fake", (W, H), image_id=7, name="a.png", annotation=ann)
    if clicks is not None:
        c.on_click(lambda request: (clicks.append(request), c.reply(request.id)))
    return c


def canvas_message(c: LabelCanvas) -> st.SearchStrategy[Any]:
    action = mutated({"type": "action", "action": "submit", "image_id": c.image_id},
                     {"action": st.sampled_from([*CANVAS_ACTIONS, "discard", "Submit", "submit "]),
                      "image_id": st.sampled_from([c.image_id - 1, c.image_id + 1, -1, float(c.image_id)])})
    click = mutated({"type": "click", "id": "v1-3", "image_id": c.image_id, "x": 12.5, "y": 3, "positive": True,
                     "label": 1},
                    {"id": st.one_of(text_junk(70), st.integers(), st.just("x" * (MAX_REQUEST_ID + 1))),
                     "x": st.sampled_from([-0.01, 0, W - 0.01, W, 1e-300, -1e-300]),
                     "y": st.sampled_from([-0.5, 0, H - 1, H]),
                     "label": st.sampled_from([0, N - 1, N, -1, 1.0, 1.5]),
                     "image_id": st.sampled_from([c.image_id - 1, float(c.image_id)])})
    valid_actions = st.sampled_from(CANVAS_ACTIONS).map(
        lambda a: {"type": "action", "action": a, "image_id": c.image_id})
    w, h = (max(1, v) for v in c.image_size)
    valid_click = st.builds(
        lambda rid, fx, fy, positive, label: {"type": "click", "id": rid, "image_id": c.image_id, "x": fx * w,
                                              "y": fy * h, "positive": positive, "label": label},
        st.one_of(st.text("abc-0123", min_size=1, max_size=8), st.integers(), UNSENDABLE_ID), FRAC, FRAC,
        st.booleans(), st.integers(0, len(c.classes) - 1))
    return st.one_of(action, action, click, click, valid_actions, valid_click, JUNK)


@pytest.mark.parametrize("task", ["detection", "segmentation", "classification"])
def test_canvas_messages(task: str) -> None:
    """Every custom message the canvas can get: an action reaches the callbacks only when valid and about
    the image shown; a click only on a canvas with the click tool; everything else is answered."""
    actions: list[str] = []
    clicks: list[Any] = []
    c = _canvas(task, clicks)
    c.on_action(actions.append)
    out = Outbox(c)
    stats = Counter()

    @FUZZ
    @given(msg=canvas_message(c), bufs=buffers())
    def run(msg: Any, bufs: list[bytes]) -> None:
        before = c.get_state()
        actions.clear()
        clicks.clear()
        wire = deliver_custom(c, msg, bufs)
        exp = expect_canvas(c, wire, takes_clicks=True)
        replies = out.take()
        stats["examples"] += 1
        stats[exp.what] += 1
        assert c.get_state() == before
        if exp.what == "action":
            assert actions == [exp.value] and replies == [] and clicks == []
        elif exp.what == "click":
            (request,) = clicks
            assert (request.id, request.x, request.y, request.positive, request.label) == exp.value
            assert request.image_id == c.image_id and replies == [{"type": "done", "id": exp.value[0]}]
        else:
            assert actions == [] and clicks == []
            assert len(replies) == 1 and replies[0]["type"] == "error" and replies[0]["message"], replies
            if exp.request_id is not None:
                assert replies[0]["id"] == exp.request_id
            else:
                assert "id" not in replies[0]
            stats["kind:" + kind_of(replies[0]["message"])] += 1

    with escapes() as trap, counting(stats, canvas_module, "action_of", "past action_of"), \
            counting(stats, canvas_module, "request_id_of", "past request id"):
        run()
    assert_quiet(trap)
    kinds = [k for k in stats if k.startswith("kind:")]
    # the fuzzer reaches the handlers: many examples get past the first checks, and refusals vary
    deeper = stats["past action_of"] + stats["past request id"]
    assert deeper > 0.3 * stats["examples"], stats
    assert stats.share("past action_of", "examples") > 0.05 and stats.share("past request id", "examples") > 0.05, stats
    assert stats["action"] > 0.05 * stats["examples"] and len(kinds) >= 6, stats
    if task == "segmentation":
        assert stats["click"] > 0.02 * stats["examples"], stats
    record("fuzzing", f"LabelCanvas ({task}) custom messages: actions, clicks, junk (hypothesis)", stats["examples"],
           f"0 exceptions escaped, 0 logged; {stats['error']} refused with an error reply (with the request's id "
           f"where it had one), state unchanged; {stats['action'] + stats['click']} valid ones reached the "
           f"callbacks exactly once; {stats['past action_of']} got past action_of, {stats['past request id']} past "
           f"the request id check; {len(kinds)} different refusals")


#: values a front end can send (JSON has NaN, infinity, lone surrogates and deep nesting) but a kernel could not
#: send back: a trait that took one would hold what no view can be shown
UNSENDABLE = st.sampled_from([math.nan, math.inf, -math.inf, "\ud800", "s\udc80", [math.nan], {"a": "\udfff"},
                              Deep(MAX_DEPTH + 1), Deep(990), Deep(400, "dict")])


def unsendable_update(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """One of ``keys`` set to such a value, or a trait name with a lone surrogate (its refusal names it)."""
    return st.one_of(st.tuples(st.sampled_from(keys), UNSENDABLE), st.tuples(UNSENDABLE_ID, JUNK)).map(
        lambda kv: {kv[0]: kv[1]})


def canvas_update(c: LabelCanvas) -> st.SearchStrategy[Any]:
    task, n = c.task, len(c.classes)
    w, h = (max(1, v) for v in c.image_size)  # the image shown
    allowed = TOOLS if c.click_tool else TOOLS[:-1]
    valid = {
        "objects": st.integers(0, 4).flatmap(lambda k: st.tuples(*[valid_object(task, w, h, n, i) for i in range(k)]))
        .map(lambda objs: [o.wire for o in objs]),
        "category": st.integers(-1, n - 1), "label": st.integers(0, n - 1), "selected": st.text(max_size=10),
        "tool": st.sampled_from(allowed), "brush_size": st.integers(1, 500),
        "threshold": st.one_of(st.floats(0, 1), st.sampled_from([0, 1])), "semantic": st.booleans(),
    }
    near = {
        "objects": st.one_of(st.lists(broken_object(task, w, h, n), min_size=1, max_size=3), JUNK, BIG, DEEP,
                             st.lists(st.one_of(JUNK, st.just("s0")), max_size=3)),
        "category": st.sampled_from([-2, n, 1.5, 2**70, "1", None]),
        "label": st.sampled_from([-1, n, 1.0, 0.5, "0", [0]]),
        "selected": st.one_of(st.text(SURROGATE, min_size=1, max_size=3), st.integers(), st.none()),
        "tool": st.sampled_from(["click", "chainsaw", "BOX", "", "box ", "pan\x00"]),
        "brush_size": st.sampled_from([0, -5, 501, 10**9, 12.5, math.nan, "12"]),
        "threshold": st.sampled_from([math.nan, math.inf, -math.inf, -0.01, 1.01, 1e308, "0.3", None, True]),
        "semantic": st.sampled_from(["true", 2, None, [True]]),
    }
    protected = ["task", "classes", "colors", "image", "image_size", "image_id", "image_name", "category_scores",
                 "view_only", "message", "height", "click_tool", "layout", "_model_name", "_esm", "tabbable",
                 "class_thresholds", "next_image", "next_meta", "next_objects", "group"]
    good = st.sampled_from(sorted(valid)).flatmap(lambda k: st.tuples(st.just(k), valid[k]))
    pair = st.one_of(
        good,
        st.sampled_from(sorted(near)).flatmap(lambda k: st.tuples(st.just(k), st.one_of(near[k], ODD))),
        st.tuples(st.sampled_from(protected), ODD),
        st.tuples(text_junk(10), ODD),
    )
    return st.one_of(st.lists(good, min_size=1, max_size=3).map(dict), st.lists(pair, min_size=1, max_size=3).map(dict),
                     st.lists(pair, min_size=1, max_size=1).map(dict), unsendable_update(sorted(valid)), JUNK, DEEP)


def check_update(widget: Any, before: dict[str, Any], wire: Any, replies: list[dict[str, Any]],
                 stats: Counter, derived: frozenset[str] = frozenset()) -> str:
    """The GuardedWidget contract for one update; returns "applied", "refused" or "protected".

    ``derived``: traits the kernel itself recomputes when an update is taken (the panel's pre-label count).
    """
    after = {k: v for k, v in widget.get_state().items() if k not in derived}
    before = {k: v for k, v in before.items() if k not in derived}
    assert all(r["type"] == "error" and r["message"] for r in replies), replies
    for r in replies:
        stats["kind:" + kind_of(r["message"])] += 1
    if not isinstance(wire, dict):
        assert after == before and len(replies) == 1
        return "refused"
    writable = {k: v for k, v in wire.items() if k in widget._frontend_writable}
    protected = len(writable) < len(wire)
    verdicts = [trait_verdict(widget, k, v) for k, v in writable.items()]
    changed = {k for k in after if after[k] != before[k]}
    assert changed <= set(writable), f"the front end changed {sorted(changed - set(writable))}"
    took = all(after[k] == as_set(k, v) for k, v in writable.items())
    if False in verdicts or not writable:  # refused whole (or nothing of it was the front end's to set)
        assert after == before
        refused: bool | None = bool(writable)
    elif None not in verdicts:  # valid: taken exactly
        assert took, (writable, {k: after[k] for k in writable})
        refused = False
    else:  # traitlets may coerce it, or refuse it: whole either way (a value equal to the old one tells nothing)
        assert took or after == before
        refused = None if all(before[k] == as_set(k, v) for k, v in writable.items()) else not took
    errors = len(replies) - int(protected)
    assert errors in (0, 1) if refused is None else errors == int(refused), replies
    if writable and errors == 0:
        return "applied"
    return "protected" if protected and not writable else "refused"


@pytest.mark.parametrize("task", ["detection", "segmentation", "classification"])
def test_canvas_trait_updates(task: str) -> None:
    """Every trait update the canvas can get (objects with their mask buffers above all): the front end's
    own traits take exactly a valid value; anything else is refused whole, answered, and changes nothing."""
    c = _canvas(task, [])
    out = Outbox(c)
    stats = Counter()

    @FUZZ
    @given(update=canvas_update(c), echoed=st.booleans())
    def run(update: Any, echoed: bool) -> None:
        before = c.get_state()
        with echo(echoed):
            wire = deliver_update(c, update)
        outcome = check_update(c, before, wire, out.take(), stats)
        stats["examples"] += 1
        stats[outcome] += 1
        if isinstance(wire, dict) and "objects" in wire and outcome == "applied":
            stats["objects applied"] += 1
            try:  # what a submission would make of them: an annotation, or a readable refusal
                c.annotation()
                stats["objects readable"] += 1
            except WireError as exc:
                stats["kind:" + kind_of(str(exc))] += 1

    with escapes() as trap:
        run()
    assert_quiet(trap)
    kinds = [k for k in stats if k.startswith("kind:")]
    # Both sides explored: valid updates applied and invalid ones refused (about 1 in 5 applied since the
    # front end may no longer set the panel's kept settings; 0.2 was at the edge of the drawn examples)
    assert stats["applied"] > 0.12 * stats["examples"] and stats["refused"] > 0.12 * stats["examples"], stats
    assert len(kinds) >= 6, stats
    record("fuzzing", f"LabelCanvas ({task}) trait updates: objects + mask buffers, class, tool, threshold ... "
           "(hypothesis)", stats["examples"],
           f"0 exceptions escaped, 0 logged; {stats['refused'] + stats['protected']} refused with an error reply, "
           f"state unchanged; {stats['applied']} valid ones applied exactly ({stats['objects applied']} object lists, "
           f"{stats['objects readable']} of them read back as annotations, the rest refused readably); "
           f"{len(kinds)} different refusals")


# =================================================================================== 2. panel, plots
def test_panel_messages_and_updates() -> None:
    panel = LivePanel()
    got: list[str] = []
    panel.on_action(got.append)
    out = Outbox(panel)
    stats = Counter()
    message = mutated({"type": "action", "action": "submit"},
                      {"action": st.sampled_from([*PANEL_ACTIONS, "rm -rf", "Start", "save", ""])})
    valid = {"threshold": st.floats(0, 1), "semantic": st.booleans(), "skip_predict_if_labeled": st.booleans(),
             "auto_threshold": st.booleans()}
    near = {"threshold": st.sampled_from([math.nan, math.inf, -0.1, 7.0, "0.5", None]),
            "semantic": st.sampled_from([2, "yes", None]), "skip_predict_if_labeled": st.sampled_from([[], {}, -1]),
            "auto_threshold": st.sampled_from([2, "no", None])}
    protected = ["status", "phase", "busy", "error", "quality", "evaluated", "labeled", "total", "position", "step",
                 "loss", "training", "can_back", "prelabels", "task", "predict_ms", "layout", "threshold_info",
                 "group"]
    good = st.sampled_from(sorted(valid)).flatmap(lambda k: st.tuples(st.just(k), valid[k]))
    pair = st.one_of(good,
                     st.sampled_from(sorted(near)).flatmap(lambda k: st.tuples(st.just(k), st.one_of(near[k], ODD))),
                     st.tuples(st.sampled_from(protected), ODD), st.tuples(text_junk(10), ODD))
    update = st.one_of(st.lists(good, min_size=1, max_size=3).map(dict),
                       st.lists(pair, min_size=1, max_size=3).map(dict), unsendable_update(sorted(valid)), JUNK, DEEP)

    valid_action = st.sampled_from(PANEL_ACTIONS).map(lambda a: {"type": "action", "action": a})

    @FUZZ
    @given(event=st.one_of(st.tuples(st.just("message"), st.one_of(valid_action, message, message, JUNK)),
                           st.tuples(st.just("update"), update)), bufs=buffers(), echoed=st.booleans())
    def run(event: tuple[str, Any], bufs: list[bytes], echoed: bool) -> None:
        before = panel.get_state()
        got.clear()
        stats["examples"] += 1
        if event[0] == "update":
            with echo(echoed):
                wire = deliver_update(panel, event[1])
            stats["update " + check_update(panel, before, wire, out.take(), stats)] += 1
            return
        wire = deliver_custom(panel, event[1], bufs)
        exp = expect_panel(wire)
        replies = out.take()
        assert panel.get_state() == before
        stats["message " + exp.what] += 1
        if exp.what == "action":
            assert got == [exp.value] and replies == []
        else:
            assert got == [] and len(replies) == 1 and replies[0]["type"] == "error" and replies[0]["message"]
            stats["kind:" + kind_of(replies[0]["message"])] += 1

    with escapes() as trap, counting(stats, panel_module, "action_of", "past action_of"):
        run()
    assert_quiet(trap)
    assert stats["message action"] > 0.03 * stats["examples"] and stats["update applied"] > 0.02 * stats["examples"]
    assert stats["past action_of"] == stats["message action"], stats
    refused = stats["message error"] + stats["update refused"] + stats["update protected"]
    record("fuzzing", "LivePanel custom messages and trait updates (hypothesis)", stats["examples"],
           f"0 exceptions escaped, 0 logged; {refused} refused with an error reply, state unchanged; "
           f"{stats['message action']} valid actions reached the callback once, {stats['update applied']} valid "
           f"updates applied exactly")


def test_plots_take_nothing_from_the_front_end() -> None:
    plots = [LossPlot(), SamplerPlot(), QualityPlot()]
    boxes = [Outbox(p) for p in plots]
    stats = Counter()
    names = sorted(plots[0].keys)

    @FUZZ
    @given(which=st.integers(0, 2), msg=st.one_of(JUNK, DEEP, BIG, st.just({"type": "action", "action": "submit"})),
           update=st.one_of(st.dictionaries(st.sampled_from(names) | text_junk(8), ODD, min_size=1, max_size=3),
                            unsendable_update(names), JUNK),
           bufs=buffers())
    def run(which: int, msg: Any, update: Any, bufs: list[bytes]) -> None:
        plot, out = plots[which], boxes[which]
        before = plot.get_state()
        deliver_custom(plot, msg, bufs)
        wire = deliver_update(plot, update)
        replies = out.take()
        assert plot.get_state() == before
        assert len(replies) == 1 + (1 if not isinstance(wire, dict) or wire else 0)
        assert all(r["type"] == "error" for r in replies)
        stats["examples"] += 1

    with escapes() as trap:
        run()
    assert_quiet(trap)
    record("fuzzing", "LivePlot (loss, sampler, quality): messages and trait updates, which they take none of",
           2 * stats["examples"], "0 exceptions escaped, 0 logged; every one answered with an error reply; "
           "state unchanged")


# ========================================================================================== 3. strip
def test_strip_requests() -> None:
    strip = StreamStrip(names=[f"frame {i}" for i in range(6)], marks=["accepted"] * 2 + [""] * 4, current=2)
    got: list[Any] = []
    strip.on_action(lambda request: (got.append(request), strip.reply(request.id)))
    out = Outbox(strip)
    stats = Counter()
    ids = st.one_of(text_junk(70), st.integers(), st.just("x" * (MAX_REQUEST_ID + 1)), st.just("v-1"))
    frames = st.sampled_from([0, 1, 2, 3, 5, 6, 99, -1, 2.0, True, "2", None])
    message = st.one_of(
        mutated({"type": "action", "action": "accept", "id": "s-1", "frame": 2}, {"id": ids, "frame": frames}),
        mutated({"type": "action", "action": "view", "id": 17, "index": 1}, {"id": ids, "index": frames}),
        st.sampled_from(STRIP_ACTIONS).flatmap(lambda a: mutated({"type": "action", "action": a, "id": "s-2"},
                                                                 {"action": st.sampled_from(["Accept", "undo", ""])})),
    )
    protected = sorted(strip.keys)

    valid = st.one_of(st.just({"type": "action", "action": "accept", "id": "s-1", "frame": 2}),
                      st.integers(0, 5).map(lambda i: {"type": "action", "action": "view", "id": i, "index": i}),
                      st.sampled_from(["reset", "save"]).map(lambda a: {"type": "action", "action": a, "id": a}),
                      UNSENDABLE_ID.map(lambda rid: {"type": "action", "action": "save", "id": rid}))

    @FUZZ
    @given(msg=st.one_of(valid, message, message, JUNK), update=st.one_of(
        st.dictionaries(st.sampled_from(protected), ODD, min_size=1, max_size=3), JUNK, st.none()), bufs=buffers())
    def run(msg: Any, update: Any, bufs: list[bytes]) -> None:
        before = strip.get_state()
        got.clear()
        wire = deliver_custom(strip, msg, bufs)
        exp = expect_strip(strip, wire)
        replies = out.take()
        stats["examples"] += 1
        stats[exp.what] += 1
        assert strip.get_state() == before
        if exp.what == "request":
            (request,) = got
            assert (request.id, request.action, request.frame, request.index) == exp.value
            assert replies == [{"type": "done", "id": exp.value[0]}]
        else:
            assert got == [] and len(replies) == 1 and replies[0]["type"] == "error", replies
            assert replies[0].get("id") == exp.request_id and ("id" in replies[0]) == (exp.request_id is not None)
            stats["kind:" + kind_of(replies[0]["message"])] += 1
        if update is not None:  # the front end may change nothing of the strip
            wire = deliver_update(strip, update)
            replies = out.take()
            assert strip.get_state() == before and all(r["type"] == "error" for r in replies)
            assert len(replies) == (1 if not isinstance(wire, dict) or wire else 0)
            stats["updates"] += 1

    with escapes() as trap, counting(stats, stream_module, "action_of", "past action_of"), \
            counting(stats, stream_module, "request_id_of", "past request id"):
        run()
    assert_quiet(trap)
    kinds = [k for k in stats if k.startswith("kind:")]
    assert stats["request"] > 0.1 * stats["examples"] and stats["past request id"] > 0.2 * stats["examples"], stats
    assert len(kinds) >= 5, stats
    record("fuzzing", "StreamStrip requests (accept, view, reset, save) and trait updates (hypothesis)",
           stats["examples"] + stats["updates"],
           f"0 exceptions escaped, 0 logged; {stats['error']} requests refused with an error reply (with their id "
           f"where valid), all {stats['updates']} updates refused; state unchanged; {stats['request']} valid "
           f"requests reached the app once; {stats['past request id']} got past the id check; {len(kinds)} different "
           "refusals")


# ======================================================================= 4. LiveAnnotator with a store
class StopFuzzing(BaseException):
    """Ends a hypothesis run at once (hypothesis lets BaseExceptions through, without replaying)."""


def first_failure(failures: list[BaseException]) -> Any:
    """For examples that act on one live app: the app's state carries over from example to example, so
    hypothesis could neither replay nor shrink a failure (it would report its own "Flaky" error instead).
    The first failure is kept, with the events of its sequence, and the run stops there."""

    def wrap(fn: Any) -> Any:
        def run(data: st.DataObject) -> None:
            trace: list[Any] = []
            try:
                fn(data, trace)
            except Exception as exc:
                events = "\n".join(f"  {kind}: {payload!r:.300}" for kind, payload in trace)
                failures.append(AssertionError(f"{type(exc).__name__}: {exc}\nafter these events:\n{events}"))
                failures[-1].__cause__ = exc
                raise StopFuzzing from exc

        return run

    return wrap


@contextmanager
def fuzzing(failures: list[BaseException]) -> Iterator[None]:
    """Runs a ``first_failure`` test; raises its failure, if any, with the events that led to it."""
    with suppress(StopFuzzing):
        yield
    if failures:
        raise failures[0]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The kernel's event loop, run only while an event is delivered and settled (hypothesis drives the test
    synchronously); an exception an action task left unretrieved fails the test."""
    loop = asyncio.new_event_loop()
    leaked: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: leaked.append(context))
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    assert not leaked, leaked


async def settle(app: Any) -> None:
    await asyncio.sleep(0)
    await app.wait_idle()


def versions(session: LiveSession) -> list[tuple[int, int]]:
    """Every label version in the store, in commit order (read without decoding the labels: after every
    event, so ``versions_since``, which decodes each mask, would make the long form quadratic)."""
    return [(int(i), int(v)) for i, v in session.store._query("SELECT image_id, version FROM annotations ORDER BY id")]


def same_annotation(a: Annotation, b: Annotation) -> bool:
    if (a.width, a.height, a.category) != (b.width, b.height, b.category) or len(a) != len(b):
        return False
    if a.masks is not None or b.masks is not None:
        return a.masks is not None and b.masks is not None and np.array_equal(a.masks, b.masks) and \
            a.labels.tolist() == b.labels.tolist()
    return a.labels.tolist() == b.labels.tolist() and np.allclose(a.boxes, b.boxes, atol=2e-3)


@dataclass
class AppModel:
    """What the test knows the canvas holds: objects it drew itself (None: not known exactly)."""

    drawn: list[Drawn] | None = None
    category: int | None = None

    def expected(self, task: str, w: int, h: int, threshold: float | list[float]) -> Annotation | None:
        if task == "classification":
            return None if self.category is None else Annotation(w, h, category=self.category)
        if self.drawn is None:
            return None
        # one threshold, or one per class (the tuner's choice once the app has one)
        per = [threshold] * (max([d.label for d in self.drawn], default=0) + 1) if isinstance(
            threshold, (int, float)) else threshold
        shown = [d for d in self.drawn
                 if d.score is None or d.score >= (per[d.label] if d.label < len(per) else 0.0)]
        if task == "segmentation":
            shown = [d for d in shown if d.mask.any()]
            masks = np.stack([d.mask for d in shown]) if shown else np.zeros((0, h, w), bool)
            return Annotation.from_masks(masks, [d.label for d in shown], width=w, height=h)
        return Annotation(w, h, np.array([d.box for d in shown], np.float32).reshape(-1, 4), [d.label for d in shown])


@dataclass
class AppRun:
    app: LiveAnnotator
    canvas_out: Outbox
    panel_out: Outbox
    model: AppModel = field(default_factory=AppModel)
    stats: Counter = field(default_factory=Counter)


def app_event(run: AppRun) -> st.SearchStrategy[tuple[str, Any]]:
    c = run.app.canvas
    task, n = c.task, len(c.classes)
    w, h = c.image_size
    drawn = st.integers(0, 4).flatmap(lambda k: st.tuples(*[valid_object(task, w, h, n, i) for i in range(k)]))
    enter = st.just({"type": "action", "action": "submit", "image_id": c.image_id})
    # what a person does most: draws (or picks the class), then Enter
    label = st.tuples(st.just("choose"), st.integers(0, n - 1)) if task == "classification" else \
        st.tuples(st.just("draw"), drawn)
    return st.one_of(
        label,
        label,
        st.tuples(st.just("scribble"), st.tuples(st.lists(broken_object(task, w, h, n), min_size=1, max_size=3),
                                                 st.lists(st.one_of(JUNK, st.just("s0")), max_size=2))
                  .map(lambda parts: parts[0] + parts[1])),  # and Enter, or a button (not all are even objects)
        st.tuples(st.just("canvas message"), st.one_of(enter, enter, canvas_message(c))),
        st.tuples(st.just("canvas update"), canvas_update(c)),
        st.tuples(st.just("panel message"), st.one_of(
            st.sampled_from([a for a in PANEL_ACTIONS if a not in ("start", "stop")]).map(
                lambda a: {"type": "action", "action": a}),
            mutated({"type": "action", "action": "submit"}, {"action": st.sampled_from(["start", "stop", "x"])}))),
        st.tuples(st.just("panel update"), st.one_of(
            st.dictionaries(st.sampled_from(["threshold", "semantic", "skip_predict_if_labeled", "auto_threshold"]),
                            st.one_of(st.floats(0, 1), st.booleans(), ODD), min_size=1, max_size=2),
            st.dictionaries(st.sampled_from(["labeled", "status", "error", "total"]), ODD, min_size=1, max_size=1))),
    )


async def app_step(run: AppRun, kind: str, payload: Any) -> None:
    """Deliver one event to the app, let it finish, and check what it did against what it should have."""
    app, c, stats = run.app, run.app.canvas, run.stats
    session = app.session
    before_versions, before_canvas, before_panel = versions(session), c.get_state(), app.panel.get_state()
    image_id, history = c.image_id, list(app._history)
    w, h = c.image_size
    expected = run.model.expected(c.task, w, h, c.effective_threshold)
    try:
        readable: Annotation | WireError = c.annotation()
    except WireError as exc:
        readable = exc
    submit = exp = None
    stats["events"] += 1

    if kind in ("draw", "choose"):  # valid: taken exactly as sent, nothing stored yet
        if kind == "draw":
            deliver_update(c, {"objects": [d.wire for d in payload]})
            run.model.drawn = list(payload)
        else:
            deliver_update(c, {"category": payload})
            run.model.category = payload
        await settle(app)
        assert run.canvas_out.take() == [] and versions(session) == before_versions
        stats["valid updates"] += 1
        return

    if kind == "canvas message":
        wire = deliver_custom(c, payload)
        exp = expect_canvas(c, wire, takes_clicks=False)
        submit = exp.what == "action" and exp.value == "submit"
    elif kind == "panel message":
        wire = deliver_custom(app.panel, payload)
        exp = expect_panel(wire)
        submit = exp.what == "action" and exp.value == "submit"
    elif kind == "canvas update":
        wire = deliver_update(c, payload)
    else:
        wire = deliver_update(app.panel, payload)
    await settle(app)
    canvas_replies, panel_replies = run.canvas_out.take(), run.panel_out.take()
    # "stay": a submission that did not move on tells a view that showed the next image ahead to go back
    stays = [r for r in canvas_replies if r.get("type") == "stay"]
    canvas_replies = [r for r in canvas_replies if r.get("type") != "stay"]
    assert not stays or (submit and all(r["image_id"] == image_id for r in stays)), stays
    assert all(r["type"] == "error" and r["message"] for r in canvas_replies + panel_replies)
    after = versions(session)

    if kind in ("canvas update", "panel update"):
        widget, replies, before = (c, canvas_replies, before_canvas) if kind == "canvas update" else \
            (app.panel, panel_replies, before_panel)
        outcome = check_update(widget, before, wire, replies, stats, frozenset({"prelabels"}))
        stats[f"{kind} {outcome}"] += 1
        assert after == before_versions and app.panel.prelabels == c.prelabel_count
        if kind == "panel update":  # the canvas follows the panel's settings when they change
            for key in ("threshold", "semantic"):
                if key == "threshold" and c.class_thresholds:
                    continue  # "auto" with a choice: the canvas shows the chosen thresholds per class
                if app.panel.get_state()[key] != before_panel[key]:
                    assert getattr(c, key) == getattr(app.panel, key)
        elif outcome == "applied" and isinstance(wire, dict) and ("objects" in wire or "category" in wire):
            run.model = AppModel()  # what the canvas holds now is not known exactly: annotation() judges
        return

    if exp.what == "error":  # refused at the door: nothing at all changed
        replies = canvas_replies if kind == "canvas message" else panel_replies
        assert len(replies) == 1 and after == before_versions, replies
        assert c.get_state() == before_canvas and app.panel.get_state() == before_panel
        stats[f"{kind} refused"] += 1
        stats["kind:" + kind_of(replies[0]["message"])] += 1
        return
    stats[f"{kind} {exp.value}"] += 1
    if submit:
        new = after[len(before_versions):]
        assert after[: len(before_versions)] == before_versions  # nothing labeled is ever lost
        if isinstance(readable, WireError):  # refused: stored nothing, kept the canvas, said why
            assert new == [] and c.image_id == image_id and c.objects == before_canvas["objects"]
            assert str(readable) in app.panel.error and canvas_replies, (readable, canvas_replies)
            stats["submissions refused"] += 1
            stats["kind:" + kind_of(str(readable))] += 1
        else:
            assert len(new) == 1 and new[0][0] == image_id, new
            stored = session.annotation(image_id)
            assert same_annotation(stored, readable)
            if expected is not None:  # drawn by the test: stored exactly as drawn
                assert same_annotation(stored, expected), (stored, expected)
                stats["exact submissions"] += 1
            stats["submissions stored"] += 1
            run.model = AppModel()
        return
    assert after == before_versions
    if exp.value == "skip":
        ids = session.image_ids
        assert c.image_id == ids[(ids.index(image_id) + 1) % len(ids)]
    elif exp.value == "back":
        if len(history) >= 2:
            assert c.image_id == history[-2]
        else:
            assert c.image_id == image_id and "no previous image" in app.panel.error
    if c.image_id != image_id or exp.value in ("accept", "discard", "predict"):
        run.model = AppModel()


APP_SIZES = [(40, 30), (33, 47), (24, 24)]
ENTER = object()


async def _make_app(tmp_path: Path, task: str) -> LiveAnnotator:
    # torch warns once per process when a prediction shares a read-only image (Pillow's arrays are); under
    # pytest's warnings-as-errors that first prediction would fail, in any test. Let it warn here, harmlessly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = np.zeros(1)
        frozen.flags.writeable = False
        torch.from_numpy(frozen)
    rng = np.random.default_rng(0)
    session = LiveSession(tmp_path / task, task, CLASSES, model=TinyClassifier("classification", CLASSES),
                          config=SessionConfig(trainer=TrainerConfig(batch_size=2)))
    session.add_images([rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for w, h in APP_SIZES * 2])
    app = LiveAnnotator(session=session, plots=False, start=False)
    await settle(app)
    return app


@pytest.mark.parametrize("task", ["detection", "segmentation", "classification"])
def test_live_annotator_with_a_store(task: str, tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    """The whole app behind a real store: sequences of drawn objects, Enter, junk messages and updates to
    the canvas and the panel. A valid submission stores exactly what was drawn; a refused one stores
    nothing and keeps the canvas; no label version ever changes or goes away."""
    app = loop.run_until_complete(_make_app(tmp_path, task))
    run = AppRun(app, Outbox(app.canvas), Outbox(app.panel))
    stats = run.stats
    failures: list[BaseException] = []
    t0 = time.perf_counter()

    @FUZZ_APP
    @given(data=st.data())
    @first_failure(failures)
    def fuzz(data: st.DataObject, trace: list[Any]) -> None:
        stats["examples"] += 1
        echoed = data.draw(st.booleans())
        for _ in range(data.draw(st.integers(1, 4))):
            kind, payload = data.draw(app_event(run))
            then: tuple[str, Any] | None = None
            if kind == "scribble":  # objects a buggy view could hold (or no class): taken, refused on Enter
                kind, payload = "canvas update", {"category": -1} if task == "classification" else {"objects": payload}
                # what acts on the objects next: Enter, or the panel's buttons (which edit them in the kernel)
                button = data.draw(st.sampled_from(["enter", "enter", "submit", "accept", "discard", "predict"]))
                then = ("panel message", {"type": "action", "action": button}) if button != "enter" else None
                enter_next = then is None
            else:
                enter_next = kind in ("draw", "choose") and data.draw(st.integers(0, 3)) > 0  # then Enter, mostly
            if enter_next:
                then = ("canvas message", ENTER)
            for event_kind, event in [(kind, payload)] + ([then] if then else []):
                if event is ENTER:  # Enter on the image shown by then
                    event = {"type": "action", "action": "submit", "image_id": app.canvas.image_id}
                trace.append((event_kind, event))
                with echo(echoed):
                    loop.run_until_complete(app_step(run, event_kind, event))

    with escapes() as trap:
        with fuzzing(failures):
            fuzz()
        loop.run_until_complete(app.close())
    assert_quiet(trap)
    kinds = [k for k in stats if k.startswith("kind:")]
    refused = refusals(stats)
    assert stats["exact submissions"] >= 5, stats
    assert stats["submissions refused"] > 0 and len(kinds) >= 6, stats
    record("fuzzing", f"LiveAnnotator ({task}) with a real store: drawn objects, Enter, junk messages and updates "
           "to canvas and panel (hypothesis)", f"{stats['events']} events in {stats['examples']} sequences",
           f"0 exceptions escaped, 0 logged; {refused} bad messages / updates refused with an error reply, "
           f"{stats['submissions refused']} submissions of unreadable objects refused in words, the canvas kept, "
           f"nothing stored; {stats['submissions stored']} submissions stored, {stats['exact submissions']} "
           f"of them checked equal to what was drawn (or the class picked); every earlier label version intact "
           f"({time.perf_counter() - t0:.0f} s)", lost=0)


# ===================================================================================== 5. the stream
class TinySegStream(StreamModel):
    """A real, small correction-mode segmenter: per-pixel colour → linear head with a LoRA adapter."""

    family = "tiny-seg"

    def __init__(self, classes: list[str]) -> None:
        super().__init__("segmentation", classes, AdapterConfig(epochs=1, patience=1, guard=0))
        torch.manual_seed(0)
        self.head = nn.Linear(3, len(classes))
        _lora.inject_lora(self, ["head"], rank=2, alpha=4.0, dropout=0.0)

    def encode(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        return torch.from_numpy(image.reshape(-1, 3) / 255.0).float(), image.shape[:2]

    def predict(self, encoded: Any, prompt: Prompt | None = None) -> StreamPrediction:
        x, (h, w) = encoded
        with torch.no_grad():
            p = torch.sigmoid(self.head(x)).T.reshape(-1, h, w).numpy()
        keep = [c for c in range(len(self.classes)) if (p[c] >= 0.5).any()]
        masks = np.stack([p[c] >= 0.5 for c in keep]) if keep else np.zeros((0, h, w), bool)
        ann = Annotation.from_masks(masks, keep, width=w, height=h)
        return StreamPrediction(ann, probability=p.astype(np.float32))

    def loss(self, encoded: Any, prompt: Prompt | None, target: Annotation) -> torch.Tensor:
        x, (h, w) = encoded
        t = torch.zeros(len(self.classes), h * w)
        for c, m in class_masks(target).items():
            t[c] = torch.from_numpy(m.reshape(-1)).float()
        return F.binary_cross_entropy_with_logits(self.head(x).T, t)


def stream_labels(app: StreamAnnotator) -> dict[int, bytes]:
    """The stream's final labels, as bytes (a done frame's label must never change)."""
    out = {}
    for i, ann in app.stream.labels.items():
        m = class_masks(ann)
        out[i] = b"".join(bytes([c]) + np.packbits(m[c]).tobytes() for c in sorted(m))
    return out


def stream_paint(app: StreamAnnotator) -> st.SearchStrategy[tuple[Drawn, ...]]:
    """Masks painted with the brush (what the canvas sends back: cropped run lengths)."""
    w, h = app.canvas.image_size if app.canvas.image_size[0] > 0 else (1, 1)
    n = len(app.canvas.classes)
    return st.integers(0, 3).flatmap(lambda k: st.tuples(*[valid_object("segmentation", w, h, n, i)
                                                           for i in range(k)]))


def stream_event(app: StreamAnnotator) -> st.SearchStrategy[tuple[str, Any]]:
    c, s = app.canvas, app.strip
    w, h = c.image_size if c.image_size[0] > 0 else (1, 1)
    n = len(c.classes)
    click = st.builds(lambda rid, x, y, pos, lab: {"type": "click", "id": rid, "image_id": c.image_id, "x": x, "y": y,
                                                   "positive": pos, "label": lab},
                      st.text("abc-0123", min_size=1, max_size=8), FRAC.map(lambda f: f * w), FRAC.map(lambda f: f * h),
                      st.booleans(), st.integers(0, n - 1))
    enter = st.just({"type": "action", "action": "submit", "image_id": c.image_id})
    painted = stream_paint(app)
    strip_valid = st.one_of(
        st.just({"type": "action", "action": "accept", "id": "s-a", "frame": s.current}),
        st.integers(0, max(0, len(s.names) - 1)).map(
            lambda i: {"type": "action", "action": "view", "id": 5, "index": i}),
        st.sampled_from(["reset", "save"]).map(lambda a: {"type": "action", "action": a, "id": f"s-{a}"}),
    )
    return st.one_of(
        st.tuples(st.just("canvas message"), st.one_of(click, click, enter, enter, canvas_message(c))),
        st.tuples(st.just("paint"), painted),  # then Enter, half the time
        st.tuples(st.just("scribble"), st.lists(broken_object("segmentation", w, h, n), min_size=1, max_size=2)),
        st.tuples(st.just("canvas update"), canvas_update(c)),
        st.tuples(st.just("strip message"), st.one_of(strip_valid, strip_valid, mutated(
            {"type": "action", "action": "accept", "id": "s-1", "frame": s.current},
            {"frame": st.sampled_from([s.current + 1, s.current - 1, float(s.current)])}), JUNK)),
        st.tuples(st.just("strip update"), st.dictionaries(st.sampled_from(sorted(s.keys)), ODD, min_size=1,
                                                            max_size=2)),
    )


@dataclass
class StreamRun:
    app: StreamAnnotator
    canvas_out: Outbox
    strip_out: Outbox
    stats: Counter = field(default_factory=Counter)
    painted: list[Drawn] | None = None  # what the canvas holds, when the test painted it itself


def painted_masks(drawn: list[Drawn], threshold: float) -> dict[int, np.ndarray]:
    """Class masks a frame done with these painted objects must have (pre-labels under the threshold hidden)."""
    out: dict[int, np.ndarray] = {}
    for d in drawn:
        if (d.score is None or d.score >= threshold) and d.mask.any():
            out[d.label] = out[d.label] | d.mask if d.label in out else d.mask.copy()
    return out


async def stream_step(run: StreamRun, kind: str, payload: Any) -> None:
    app, stats = run.app, run.stats
    c, strip, s = app.canvas, app.strip, app.stream
    canvas_out, strip_out = run.canvas_out, run.strip_out
    labels, records, index, viewing = stream_labels(app), len(s.records), s.index, app._viewing
    expected = None if run.painted is None else painted_masks(run.painted, c.threshold)
    working = None if s.done else s.working()
    before_canvas, before_strip = c.get_state(), strip.get_state()
    try:
        readable: Annotation | WireError = c.annotation()
    except WireError as exc:
        readable = exc
    stats["events"] += 1
    exp = None
    if kind == "canvas message":
        wire = deliver_custom(c, payload)
        exp = expect_canvas(c, wire, takes_clicks=True)
    elif kind == "strip message":
        wire = deliver_custom(strip, payload)
        exp = expect_strip(strip, wire)
    elif kind == "paint":
        wire = deliver_update(c, {"objects": [d.wire for d in payload]})
    elif kind == "canvas update":
        wire = deliver_update(c, payload)
    else:
        wire = deliver_update(strip, payload)
    await settle(app)
    canvas_replies, strip_replies = canvas_out.take(), strip_out.take()
    new_labels = stream_labels(app)
    # nothing labeled is ever lost: a done frame's label never changes, and frames never come undone
    assert {i: new_labels[i] for i in labels} == labels and len(s.records) >= records
    replies = strip_replies if kind.startswith("strip") else canvas_replies

    if c.objects != before_canvas["objects"] or c.image_id != before_canvas["image_id"]:
        run.painted = None  # the canvas holds something else now: annotation() judges
    if exp is None:  # a trait update
        widget, before = (strip, before_strip) if kind == "strip update" else (c, before_canvas)
        outcome = check_update(widget, before, wire, replies, stats)
        stats[f"{kind} {outcome}"] += 1
        assert len(s.records) == records and s.index == index
        if kind == "paint":
            assert outcome == "applied", replies
            run.painted = list(payload)
        return
    if exp.what == "error":
        assert len(replies) == 1 and replies[0]["type"] == "error", replies
        assert ("id" in replies[0]) == (exp.request_id is not None) and replies[0].get("id") == exp.request_id
        assert (len(s.records), s.index, stream_labels(app)) == (records, index, labels)
        assert c.get_state() == before_canvas and strip.get_state() == before_strip
        if working is not None:
            assert same_labels(s.working(), working)
        stats[f"{kind} refused"] += 1
        stats["kind:" + kind_of(replies[0]["message"])] += 1
        return
    action = exp.value if exp.what == "action" else exp.value[0] if exp.what == "click" else exp.value[1]
    action = "click" if exp.what == "click" else action
    stats[f"{kind} {action}"] += 1
    if exp.what == "click" or exp.what == "request":  # answered, with its id
        rid = exp.value[0]
        assert [r.get("id") for r in replies] == [rid], replies
        if replies[0]["type"] == "error":
            stats["answered with a reason"] += 1
            stats["kind:" + kind_of(replies[0]["message"])] += 1
    if action in ("submit", "accept"):
        if len(s.records) == records + 1:  # the frame was done: with exactly what the canvas showed
            assert not isinstance(readable, WireError) and same_labels(s.labels[index], readable)
            assert s.records[-1].index == index
            stats["frames done"] += 1
            if expected is not None:  # painted by the test: done with exactly that painting
                done = {k: m for k, m in class_masks(s.labels[index]).items() if m.any()}
                assert done.keys() == expected.keys() and all(np.array_equal(done[k], expected[k]) for k in done)
                stats["exact frames"] += 1
        else:
            assert len(s.records) == records
            if isinstance(readable, WireError) and viewing is None and index < len(s):  # refused, and said why
                assert any(str(readable) in r.get("message", "") for r in canvas_replies + strip_replies)
                assert c.objects == before_canvas["objects"] and strip.error == str(readable)
                stats["submissions refused"] += 1
                stats["kind:" + kind_of(str(readable))] += 1
    else:
        assert len(s.records) == records
        if exp.what == "action":  # Skip, Back, Predict: refused by the app, in words
            assert len(replies) == 1 and replies[0]["type"] == "error", replies


def test_stream_annotator(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    """The correction mode behind a real (tiny) stream model: clicks, Enter, painting, strip requests and
    junk. Done frames keep exactly the label they were done with; a bad message changes nothing."""
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (18, 26, 3), dtype=np.uint8) for _ in range(scale(120, 1000))]

    async def make() -> StreamAnnotator:
        app = StreamAnnotator(TinySegStream(["cell", "wall"]), frames, adapter_dir=tmp_path / "adapter")
        await settle(app)
        return app

    app = loop.run_until_complete(make())
    run = StreamRun(app, Outbox(app.canvas), Outbox(app.strip))
    stats = run.stats
    t0 = time.perf_counter()

    failures: list[BaseException] = []

    @FUZZ_APP
    @given(data=st.data())
    @first_failure(failures)
    def fuzz(data: st.DataObject, trace: list[Any]) -> None:
        stats["examples"] += 1
        echoed = data.draw(st.booleans())
        for _ in range(data.draw(st.integers(1, 4))):
            kind, payload = data.draw(stream_event(app))
            enter_next = kind == "scribble" or (kind == "paint" and data.draw(st.booleans()))
            if kind == "scribble":  # objects a buggy view could hold: taken as they are, refused on Enter
                kind, payload = "canvas update", {"objects": payload}
            trace.append((kind, payload))
            with echo(echoed):
                loop.run_until_complete(stream_step(run, kind, payload))
            if enter_next:
                enter = {"type": "action", "action": "submit", "image_id": app.canvas.image_id}
                trace.append(("canvas message", enter))
                with echo(echoed):
                    loop.run_until_complete(stream_step(run, "canvas message", enter))
            if kind == "canvas update" and data.draw(st.integers(0, 3)) > 0:  # mostly, the person paints it over
                painting = data.draw(stream_paint(app))
                trace.append(("paint", painting))
                with echo(echoed):
                    loop.run_until_complete(stream_step(run, "paint", painting))

    with escapes() as trap:
        with fuzzing(failures):
            fuzz()
        app.close()
        loop.run_until_complete(asyncio.sleep(0))
    assert_quiet(trap)
    kinds = [k for k in stats if k.startswith("kind:")]
    refused = refusals(stats)
    assert stats["frames done"] > 0.1 * stats["examples"] and stats["canvas message click"] > 0, stats
    assert stats["submissions refused"] > 0 and stats["exact frames"] >= 3, stats
    assert len(kinds) >= 6, stats
    record("fuzzing", "StreamAnnotator (correction mode, tiny LoRA segmenter): clicks, Enter, painting, strip "
           "requests, junk (hypothesis)", f"{stats['events']} events in {stats['examples']} sequences",
           f"0 exceptions escaped, 0 logged; {refused} bad messages / updates refused with an error reply, nothing "
           f"changed; {stats['submissions refused']} Enters on unreadable objects refused in words, the canvas kept; "
           f"{stats['frames done']} frames done, each with exactly the label on the canvas ({stats['exact frames']} "
           f"checked equal to what was painted); every done "
           f"frame's label intact ({time.perf_counter() - t0:.0f} s)", lost=0)


def test_protocol_rules_here_are_not_vacuous() -> None:
    """The oracle above must itself refuse what the protocol refuses (else every check would pass)."""
    c = _canvas("segmentation", [])
    ok = {"type": "click", "id": "v-1", "image_id": 7, "x": 1, "y": 1, "positive": True, "label": 0}
    assert expect_canvas(c, ok, takes_clicks=True).what == "click"
    for bad in ({**ok, "x": W}, {**ok, "positive": 1}, {**ok, "label": N}, {**ok, "id": "\ud800"},
                {**ok, "x": math.nan}):
        assert expect_canvas(c, bad, takes_clicks=True).what == "error", bad
    assert expect_canvas(c, {"type": "action", "action": "submit", "image_id": 7, "pad": "x" * MAX_MESSAGE_CHARS},
                         takes_clicks=True).what == "error"
    assert trait_verdict(c, "threshold", math.nan) is False and trait_verdict(c, "tool", "click") is True
    assert trait_verdict(LabelCanvas("detection", CLASSES), "tool", "click") is False
    assert depth(from_wire({"a": Deep(100)})) > MAX_DEPTH
    assert from_wire({"x": math.nan, "s": "\ud800"})["s"] == "\ud800"
