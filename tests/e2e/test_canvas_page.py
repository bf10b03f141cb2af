"""The canvas on its own, in a real browser, without Jupyter or training.

The canvas bundle is built from ``js/src/canvas`` (``js/dev/build-canvas.mjs``) into a temporary folder
beside ``js/dev/harness.html`` and ``js/dev/fake-model.js``, served over local HTTP, and LabelCanvas
views are mounted on fake anywidget models. Their state is a real :class:`LabelCanvas`'s traits, set
by the Python side (``set_image`` with stored labels and pre-labels, through the wire codec), and what
the page saves goes back through ``LabelCanvas.set_state`` and ``objects_to_annotation``, so both ends
of the wire format are the kernel's. One page serves the whole module (a test empties it first).

Screenshots go to ``test-artifacts/<test>/``; the pan benchmark writes ``pan.json`` there too.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.formats import load_labels
from livetrain_widgets.widgets._codec import display_image, objects_to_annotation, visible
from livetrain_widgets.widgets.canvas import LabelCanvas

from .. import _require
from .conftest import FAILED
from .harness import ConsoleLog, artifacts_for_test, safe_name, screenshot, wait_for

REPO = Path(__file__).resolve().parents[2]
DEV = REPO / "js" / "dev"
DATA = _require.DATA
BCCD = ["RBC", "WBC", "Platelets"]
FOREST = "deepforest/2019_YELL_2_528000_4978000_image_crop2.png"

pytestmark = _require.needs_data  # skips without the data; fails in CI (LIVETRAIN_REQUIRE_DATA=1)

Point = tuple[float, float]


# ------------------------------------------------------------------------------------- the page
def _build_missing() -> str | None:
    if shutil.which("node") is None:
        return "node not found (it bundles the canvas: js/dev/build-canvas.mjs)"
    if not (REPO / "js" / "node_modules" / "esbuild").is_dir():
        return "js/node_modules is missing (cd js && npm ci)"
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Served:
    url: str  # of harness.html
    root: Path  # the folder served: files written here can be fetched by the page


@pytest.fixture(scope="module")
def served_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The harness page with a fresh canvas bundle, served from a temporary folder."""
    missing = _build_missing()
    if missing:
        if os.environ.get("LIVETRAIN_REQUIRE_E2E") == "1":
            pytest.fail(f"LIVETRAIN_REQUIRE_E2E=1 but the canvas page cannot be built: {missing}", pytrace=False)
        pytest.skip(f"canvas page: {missing}")
    out = tmp_path_factory.mktemp("canvas-page")
    build = subprocess.run(
        ["node", str(DEV / "build-canvas.mjs"), str(out)], cwd=REPO / "js", capture_output=True, text=True, timeout=120
    )
    if build.returncode:
        pytest.fail(f"building the canvas bundle failed:\n{build.stdout}\n{build.stderr}", pytrace=False)
    for name in ("harness.html", "fake-model.js"):
        shutil.copy(DEV / name, out / name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Served(f"http://127.0.0.1:{server.server_address[1]}/harness.html", out)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _jsonable(value: Any, large: Callable[[bytes], str] | None = None) -> Any:
    """Binary values as {"$b64": ...}, or as {"$fetch": url} where ``large`` serves them; the harness turns
    both into DataViews (as ipywidgets delivers binary traits)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if large is not None and len(data) > 256 * 1024:
            return {"$fetch": large(data)}
        return {"$b64": base64.b64encode(data).decode()}
    if isinstance(value, dict):
        return {k: _jsonable(v, large) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, large) for v in value]
    return value


def _unwire(value: Any) -> Any:
    if isinstance(value, dict):
        if "$b64" in value:
            return base64.b64decode(value["$b64"])
        return {k: _unwire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwire(v) for v in value]
    return value


# Reads a model's value as JSON, binary as {"$b64"} (the page's side of _unwire).
_JS_READ = """([i, path]) => {
  let v = window.models[i];
  for (const k of path) v = v[k];
  const b64 = (x) => { let s = ""; const u = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    for (let j = 0; j < u.length; j += 8192) s += String.fromCharCode(...u.subarray(j, j + 8192)); return btoa(s); };
  return JSON.parse(JSON.stringify(v ?? null, (k, x) => (ArrayBuffer.isView(x) ? { $b64: b64(x) } : x)));
}"""


class View:
    """One mounted LabelCanvas view, driven with the mouse and keyboard."""

    def __init__(self, owner: CanvasPage, index: int, model: int) -> None:
        self.owner = owner
        self.page = owner.page
        self.index = index
        self.model = model
        self.root = self.page.locator(".ltc-root").nth(index)
        self.canvas = self.root.locator("canvas.ltc-canvas")

    def data(self) -> dict[str, str]:
        return self.root.evaluate("e => ({...e.dataset})")

    def wait_ready(self, image_id: int | None = None) -> None:
        def ready() -> bool:
            d = self.data()
            return d.get("ready") == "1" and (image_id is None or d.get("imageId") == str(image_id))

        wait_for(ready, timeout=15, interval=0.05, message=lambda: f"view {self.index} not ready: {self.data()}")

    def to_screen(self, x: float, y: float) -> Point:
        """Page coordinates of the image point (x, y) in original pixels."""
        scale, ox, oy = (float(v) for v in self.data()["view"].split(","))
        box = self.canvas.bounding_box()
        assert box is not None
        return box["x"] + ox + x * scale, box["y"] + oy + y * scale

    def scale(self) -> float:
        return float(self.data()["view"].split(",")[0])

    def state(self, *path: str | int) -> Any:
        return _unwire(self.page.evaluate(_JS_READ, [self.model, ["state", *path]]))

    def objects(self) -> list[dict[str, Any]]:
        return self.state("objects")

    def obj(self, oid: str) -> dict[str, Any]:
        return next(o for o in self.objects() if o["id"] == oid)

    def saves(self) -> list[dict[str, Any]]:
        return _unwire(self.page.evaluate(_JS_READ, [self.model, ["saves"]]))

    def sent(self) -> list[dict[str, Any]]:
        return self.page.evaluate("(i) => window.models[i].sent", self.model)

    def py_set(self, partial: dict[str, Any]) -> None:
        """A trait update from "Python" (what the kernel sends), then one frame for the view to react."""
        self.page.evaluate("([i, p]) => window.pySet(i, p)", [self.model, self.owner.wire(partial)])
        self.page.wait_for_timeout(50)

    def key(self, *keys: str) -> None:
        self.root.focus()
        for k in keys:
            self.page.keyboard.press(k)
        self.page.wait_for_timeout(30)

    def click(self, x: float, y: float) -> None:
        self.page.mouse.click(*self.to_screen(x, y))
        self.page.wait_for_timeout(30)

    def drag(self, a: Point, b: Point, *, steps: int = 6, button: str = "left", screen: bool = False) -> None:
        """Press at a, move to b in ``steps`` pointer moves, release (image px unless ``screen``)."""
        sa = a if screen else self.to_screen(*a)
        sb = b if screen else self.to_screen(*b)
        self.page.mouse.move(*sa)
        self.page.mouse.down(button=button)
        self.page.mouse.move(*sb, steps=steps)
        self.page.mouse.up(button=button)
        self.page.wait_for_timeout(30)

    def stroke(self, points: Sequence[Point]) -> None:
        self.page.mouse.move(*self.to_screen(*points[0]))
        self.page.mouse.down()
        for p in points[1:]:
            self.page.mouse.move(*self.to_screen(*p), steps=2)
        self.page.mouse.up()
        self.page.wait_for_timeout(30)

    def cursor_at(self, x: float, y: float) -> str:
        self.page.mouse.move(*self.to_screen(x, y))
        return self.canvas.evaluate("c => c.style.cursor")

    def pixels(self) -> np.ndarray:
        """What the canvas shows now (RGB, CSS px at device scale 1)."""
        self.page.wait_for_timeout(40)  # a frame after the last change
        return np.asarray(Image.open(io.BytesIO(self.canvas.screenshot())).convert("RGB")).astype(np.int16)

    def shot(self, name: str) -> Path:
        return screenshot(self.root, name)


class CanvasPage:
    """The harness page: mounts views, and collects console errors and dialogs."""

    def __init__(self, page: Any, served: Served) -> None:
        self.page = page
        self.served = served
        self.log = ConsoleLog().attach(page)
        self.dialogs: list[str] = []

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(served.url)
        page.wait_for_function("window.harnessReady === true")

    def wire(self, state: dict[str, Any]) -> Any:
        """Trait values as the page's harness takes them (large binaries are fetched over HTTP)."""
        return _jsonable(state, self._serve)

    def _serve(self, data: bytes) -> str:
        name = f"blobs/{hashlib.sha1(data).hexdigest()}.bin"
        path = self.served.root / name
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
        return name

    def reset(self) -> None:
        self.page.evaluate("() => window.reset()")
        self.page.mouse.move(0, 0)
        self.log.messages.clear()
        self.log.page_errors.clear()
        self.dialogs.clear()

    def mount(self, canvas: LabelCanvas, width: int = 900) -> View:
        model = self.page.evaluate("([s, w]) => window.mount(s, w)", [self.wire(canvas_state(canvas)), width])
        view = View(self, self.page.locator(".ltc-root").count() - 1, model)
        view.wait_ready()
        return view

    def mount_view(self, model: int, width: int = 900) -> View:
        """A further view of the same model."""
        self.page.evaluate("([i, w]) => window.mountView(i, w)", [model, width])
        view = View(self, self.page.locator(".ltc-root").count() - 1, model)
        view.wait_ready()
        return view

    def assert_clean(self) -> None:
        assert not self.log.errors(), self.log.text()
        assert not self.dialogs, self.dialogs


@pytest.fixture(scope="module")
def harness_page(served_harness: Served, browser: Any) -> Iterator[CanvasPage]:
    context = browser.new_context(viewport={"width": 1000, "height": 1300}, device_scale_factor=1)
    context.set_default_timeout(20_000)
    yield CanvasPage(context.new_page(), served_harness)
    context.close()


@pytest.fixture
def ui(request: pytest.FixtureRequest, harness_page: CanvasPage) -> Iterator[CanvasPage]:
    """The module's page, emptied; on failure its screenshot and console go to the test's artifacts."""
    harness_page.reset()
    yield harness_page
    if request.node.stash.get(FAILED, False):
        folder = artifacts_for_test(safe_name(request.node.nodeid.split("/")[-1]))
        harness_page.page.screenshot(path=str(folder / "failure.png"), full_page=True)
        (folder / "console.txt").write_text(harness_page.log.text() + "\n")


# --------------------------------------------------------------------------------- Python side
CANVAS_TRAITS = ("task", "classes", "colors", "image", "image_size", "image_id", "image_name", "objects", "category",
                 "category_scores", "threshold", "label", "selected", "tool", "brush_size", "semantic", "view_only",
                 "message", "height")  # fmt: skip


#: what LabelCanvas.set_image changes, in one update (a new image)
SET_IMAGE_TRAITS = ("image", "image_size", "image_name", "objects", "selected", "message", "category",
                    "category_scores", "image_id")  # fmt: skip


def canvas_state(canvas: LabelCanvas) -> dict[str, Any]:
    """The traits the front end reads (js/src/protocol.ts: CanvasModel), as the kernel holds them."""
    return {name: getattr(canvas, name) for name in CANVAS_TRAITS}


def python_reads(canvas: LabelCanvas, objects: list[dict[str, Any]]) -> Annotation:
    """Deliver objects saved by the page to the Python widget, as a front-end update, and read them back."""
    errors: list[Any] = []
    canvas.send = lambda content, buffers=None: errors.append(content)  # type: ignore[method-assign]
    canvas.set_state({"objects": objects})
    assert not errors, errors
    return canvas.annotation()


def bccd_canvas(name: str = "BloodImage_00000.jpg", classes: Sequence[str] = BCCD, image_id: int = 0) -> LabelCanvas:
    """Half the true boxes as stored labels, the other half jittered as pre-labels with random scores."""
    path = DATA / "bccd" / "JPEGImages" / name
    truth = load_labels("voc", DATA / "bccd" / "Annotations", [path], BCCD).annotations[path.resolve()]
    w, h, n = truth.width, truth.height, len(truth)
    rng = np.random.default_rng(0)
    user = Annotation(w, h, truth.boxes[: n // 2], truth.labels[: n // 2])
    jitter = np.clip(truth.boxes[n // 2 :] + rng.normal(0, 4, (n - n // 2, 4)), 0, [w, h, w, h]).astype(np.float32)
    pre = Annotation(w, h, jitter, truth.labels[n // 2 :], scores=rng.uniform(0.15, 0.99, n - n // 2))
    canvas = LabelCanvas("detection", list(classes))
    canvas.set_image(display_image(path), (w, h), image_id=image_id, name=name, annotation=user, prelabels=pre)
    return canvas


def inside(box: Sequence[float], x: float, y: float, margin: float = 0.0) -> bool:
    return box[0] - margin <= x <= box[2] + margin and box[1] - margin <= y <= box[3] + margin


def free_point(objects: list[dict[str, Any]], size: Sequence[int], margin: float = 15) -> Point:
    """An image point at least ``margin`` px from every object's box (a click there hits nothing)."""
    w, h = size
    for y in np.linspace(h * 0.1, h * 0.9, 17):
        for x in np.linspace(w * 0.1, w * 0.9, 17):
            if not any(inside(o["box"], x, y, margin) for o in objects):
                return float(x), float(y)
    raise AssertionError("no free spot on the image")


def by_id(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in objects}


def assert_box(got: Sequence[float], want: Sequence[float], tol: float = 1.0) -> None:
    assert np.allclose(got, want, atol=tol), f"box {list(got)} != {list(want)} (±{tol} px)"


# ---------------------------------------------------------------------------------- detection
def test_detection_select_move_resize_and_draw_with_the_mouse(ui: CanvasPage) -> None:
    canvas = bccd_canvas()
    objs0 = canvas.objects
    n_user = sum(o["source"] == "user" for o in objs0)
    n_pre = sum(o["source"] == "prelabel" and o["score"] >= 0.3 for o in objs0)
    assert n_pre < len(objs0) - n_user, "the data should include a pre-label below the threshold"
    v = ui.mount(canvas)
    assert v.data()["objects"] == str(n_user + n_pre) and v.data()["prelabels"] == str(n_pre)
    v.shot("01-bccd")

    # a click selects; only then does a drag inside the box move it
    wbc = by_id(objs0)["s0"]
    x0, y0, x1, y1 = wbc["box"]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    assert v.cursor_at(cx, cy) == "crosshair"  # a drag over an unselected box draws
    v.click(cx, cy)
    assert v.data()["selected"] == "s0" and v.state("selected") == "s0"
    assert v.cursor_at(cx, cy) == "move"
    v.shot("02-selected")
    saves = len(v.saves())
    a, b = v.to_screen(cx, cy), v.to_screen(cx + 30, cy + 20)
    v.page.mouse.move(*a)
    v.page.mouse.down()
    v.page.mouse.move(*b, steps=5)
    assert len(v.saves()) == saves, "the objects must not sync while the mouse is down"
    v.page.mouse.up()
    v.page.wait_for_timeout(30)
    assert_box(v.obj("s0")["box"], [x0 + 30, y0 + 20, x1 + 30, y1 + 20], tol=0.5)
    assert len(v.objects()) == len(objs0), "moving drew no box"

    # the south-east handle resizes, the opposite corner stays
    v.drag((x1 + 30, y1 + 20), (x1 + 45, y1 + 32))
    assert_box(v.obj("s0")["box"], [x0 + 30, y0 + 20, x1 + 45, y1 + 32], tol=0.5)

    # a drag starting inside an UNSELECTED box draws a new box and leaves that box alone
    others = [o for o in v.objects() if o["id"] != "s0" and o["source"] == "user"]
    target = next(o for o in others if sum(inside(p["box"], *_centre(o), 2) for p in visible(v.objects(), 0.3)) == 1)
    tx, ty = _centre(target)
    v.key("2")  # class WBC for new boxes
    v.drag((tx, ty), (tx + 50, ty + 35))
    new = [o for o in v.objects() if o["id"] not in by_id(objs0)]
    assert len(new) == 1 and new[0]["label"] == 1 and new[0]["source"] == "user", new
    assert_box(new[0]["box"], [tx, ty, tx + 50, ty + 35], tol=0.5)
    assert v.obj(target["id"])["box"] == target["box"], "the box under the drag's start must not move"
    assert v.data()["selected"] == "", "drawing selects nothing (it ends the selection of s0)"
    v.shot("03-drawn-over-a-box")

    # a click inside an unselected box selects it and adds nothing (away from the new box' handles);
    # a click on empty image deselects
    v.click(tx - (target["box"][2] - target["box"][0]) / 4, ty - (target["box"][3] - target["box"][1]) / 4)
    assert v.data()["selected"] == target["id"] and len(v.objects()) == len(objs0) + 1
    fx, fy = free_point(v.objects(), canvas.image_size)
    v.click(fx, fy)
    assert v.data()["selected"] == ""
    v.drag((fx, fy), (fx + 1.5 / v.scale(), fy + 1 / v.scale()), steps=1)
    assert len(v.objects()) == len(objs0) + 1, "a 1.5 px drag is a click, not a box"

    # Python reads back the boxes where they were drawn, in original pixels
    ann = python_reads(canvas, v.objects())
    shown = visible(v.objects(), 0.3)
    assert len(ann) == len(shown) == n_user + n_pre + 1
    at = {o["id"]: k for k, o in enumerate(shown)}
    assert_box(ann.boxes[at["s0"]], [x0 + 30, y0 + 20, x1 + 45, y1 + 32], tol=0.5)
    assert_box(ann.boxes[at[new[0]["id"]]], [tx, ty, tx + 50, ty + 35], tol=0.5)
    assert ann.labels[at[new[0]["id"]]] == 1
    ui.assert_clean()


def _handles_shown(v: View, box: Sequence[float]) -> bool:
    """Whether the white resize handles are drawn at the box's east, south and south-east handles."""
    px = v.pixels()
    scale, ox, oy = (float(t) for t in v.data()["view"].split(","))
    x0, y0, x1, y1 = (ox + box[0] * scale, oy + box[1] * scale, ox + box[2] * scale, oy + box[3] * scale)
    points = [(x1, (y0 + y1) / 2), ((x0 + x1) / 2, y1), (x1, y1)]
    return all((px[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3] >= 250).all() for x, y in points)


def test_a_class_chip_after_drawing_chooses_the_next_class_and_relabels_only_a_box_picked(ui: CanvasPage) -> None:
    """Issue 20, item 2: a chip clicked right after drawing a box relabeled that box (it was selected
    without showing it). A chip chooses the class for new boxes, as the keys 1-9 do; it gives a box its
    class only once the person picked the box (a click, or Tab), which then shows its handles."""
    canvas = bccd_canvas()
    v = ui.mount(canvas)
    fx, fy = free_point(v.objects(), canvas.image_size)  # 15 px from every box: a click there hits the new box only
    drawn = [fx - 12, fy - 10, fx + 12, fy + 10]
    v.key("1")  # RBC
    v.drag((drawn[0], drawn[1]), (drawn[2], drawn[3]))
    new = [o for o in v.objects() if o["id"] not in by_id(canvas.objects)]
    assert len(new) == 1 and new[0]["label"] == 0
    assert v.data()["selected"] == "" and not _handles_shown(v, drawn)
    chips = v.root.locator(".ltc-chip")
    chips.nth(1).click()  # WBC, for the next box
    assert v.obj(new[0]["id"])["label"] == 0, "the chip relabeled the box just drawn"
    assert v.data()["label"] == "1" and v.state("label") == 1
    v.shot("01-chip-after-drawing")

    # a click on the box picks it up: handles show, and now a chip gives it the class
    v.click(fx, fy)
    assert v.data()["selected"] == new[0]["id"] and v.data()["picked"] == "1"
    assert _handles_shown(v, drawn)
    v.shot("02-picked")
    chips.nth(2).click()  # Platelets
    assert v.obj(new[0]["id"])["label"] == 2 and v.data()["selected"] == new[0]["id"]
    # the next box drawn is a Platelet, and the box picked before is let go
    gy = fy + 60 if fy < canvas.image_size[1] / 2 else fy - 95
    v.drag((fx - 25, gy), (fx + 25, gy + 35))
    newer = [o for o in v.objects() if o["id"] not in by_id(canvas.objects) and o["id"] != new[0]["id"]]
    assert len(newer) == 1 and newer[0]["label"] == 2 and v.data()["selected"] == ""
    # Tab selects on purpose too: the box shows its handles
    v.key("Shift+Tab")
    assert v.data()["selected"] == newer[0]["id"] and v.data()["picked"] == "1"
    assert _handles_shown(v, newer[0]["box"])
    v.shot("03-tab-selected")
    ui.assert_clean()


def _centre(o: dict[str, Any]) -> Point:
    x0, y0, x1, y1 = o["box"]
    return (x0 + x1) / 2, (y0 + y1) / 2


def test_detection_keys_prelabels_undo_and_actions(ui: CanvasPage) -> None:
    canvas = bccd_canvas()
    objs0 = canvas.objects
    n_user = sum(o["source"] == "user" for o in objs0)
    n_pre = sum(o["source"] == "prelabel" and o["score"] >= 0.3 for o in objs0)
    v = ui.mount(canvas)

    # jupyter-bbox-widget's keys on the selected box: W/A/S/D move (Shift ×10), Q/E width, F/R height
    v.key("Tab")
    first = v.data()["selected"]
    assert first == visible(objs0, 0.3)[0]["id"]
    v.key("Tab", "Shift+Tab")
    assert v.data()["selected"] == first
    b0 = v.obj(first)["box"]
    v.key("d", "Shift+D", "s", "e", "e", "q", "r")
    b1 = v.obj(first)["box"]
    assert_box(b1, [b0[0] + 11, b0[1] + 1, b0[2] + 12, b0[3] + 2], tol=0.02)
    v.key("a", "w", "f")
    assert_box(v.obj(first)["box"], [b1[0] - 1, b1[1] - 1, b1[2] - 1, b1[3] - 2], tol=0.02)
    v.key("3", "c")
    assert v.obj(first)["label"] == 2 and v.data()["label"] == "2"
    v.key("Delete")
    assert first not in by_id(v.objects()) and v.data()["selected"] == ""
    v.key("Control+z")
    assert first in by_id(v.objects())

    # pre-labels: Y accepts the shown ones (hidden ones go), X discards, undo / redo in between
    v.key("y")
    objs = v.objects()
    assert v.data()["prelabels"] == "0" and len(objs) == n_user + n_pre
    assert all(o["source"] == "user" and o.get("score") is None for o in objs)
    v.key("Control+z")
    assert v.data()["prelabels"] == str(n_pre)
    v.key("x")
    assert v.data()["prelabels"] == "0" and not any(o["source"] == "prelabel" for o in v.objects())
    v.key("Control+z", "Control+Shift+Z")
    assert v.data()["prelabels"] == "0"
    v.key("Control+z")
    assert v.data()["prelabels"] == str(n_pre)
    v.key("Control+y")
    assert v.data()["prelabels"] == "0"
    v.key("Control+z")
    # V accepts only the selected pre-label
    for _ in range(len(objs0)):
        v.key("Tab")
        if v.obj(v.data()["selected"])["source"] == "prelabel":
            break
    chosen = v.data()["selected"]
    assert v.obj(chosen)["source"] == "prelabel"
    v.key("v")
    assert v.obj(chosen)["source"] == "user" and v.obj(chosen).get("score") is None
    assert v.data()["prelabels"] == str(n_pre - 1)

    # Enter / Space / Shift+Space / Shift+P send actions about this image
    v.key("Enter", "Space", "Shift+Space", "Shift+P")
    assert v.sent() == [{"type": "action", "action": a, "image_id": 0} for a in ("submit", "skip", "back", "predict")]
    marks = v.page.evaluate("() => globalThis.__livetrainTimings")
    assert {"image", "prelabels"} <= {m["event"] for m in marks}
    assert sum(m["event"] == "action" for m in marks) == 4

    # Python replaces the objects (discard): undo brings them back; its threshold hides more
    v.py_set({"objects": [o for o in v.objects() if o["source"] != "prelabel"]})
    assert v.data()["prelabels"] == "0"
    v.key("Control+z")
    assert v.data()["prelabels"] == str(n_pre - 1)
    v.py_set({"threshold": 0.6})
    canvas.threshold = 0.6  # the kernel's side of the same update
    n_high = sum(o["source"] == "prelabel" and o["score"] >= 0.6 and o["id"] != chosen for o in objs0)
    assert 0 < n_high < n_pre - 1 and v.data()["prelabels"] == str(n_high)
    # an error reply shows as a toast, the message trait as a banner
    v.page.evaluate("(i) => window.models[i].pyMsg({type: 'error', message: 'that image is no longer shown'})", v.model)
    v.py_set({"message": "Label 2 more images to start training"})
    assert v.root.locator(".ltc-toast").text_content() == "that image is no longer shown"
    assert v.root.locator(".ltc-banner").text_content() == "Label 2 more images to start training"
    v.shot("01-toast-and-banner")
    ann = python_reads(canvas, v.objects())
    assert len(ann) == len(visible(v.objects(), canvas.threshold))

    # a new image from Python: no objects, no selection, no undo into the previous image
    nxt = bccd_canvas("BloodImage_00001.jpg", image_id=1)
    v.py_set({k: getattr(nxt, k) for k in SET_IMAGE_TRAITS})
    v.wait_ready(image_id=1)
    v.key("Control+z")
    assert v.data()["selected"] == "" and v.data()["objects"] == str(len(visible(nxt.objects, 0.6)))
    ui.assert_clean()


def _colour_share(pixels: np.ndarray, xs: Sequence[int], ys: range, colour: str) -> float:
    """Share of rows in ``ys`` where one of the columns ``xs`` has (nearly) the colour."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    near = np.abs(pixels[ys.start : ys.stop, list(xs)] - rgb).max(axis=2) < 60
    return float(near.any(axis=1).mean())


def test_prelabels_are_dashed_and_the_threshold_hides_them(ui: CanvasPage) -> None:
    path = DATA / "bccd" / "JPEGImages" / "BloodImage_00000.jpg"
    canvas = LabelCanvas("detection", BCCD)
    # WBC's orange is nowhere in a blood smear: only the outlines have it
    boxes = np.array([[20, 60, 160, 200], [240, 60, 380, 200], [460, 60, 600, 200]], np.float32)
    canvas.set_image(
        display_image(path),
        (640, 480),
        image_id=0,
        annotation=Annotation(640, 480, boxes[:1], [1]),
        prelabels=Annotation(640, 480, boxes[1:], [1, 1], scores=np.array([0.8, 0.2])),
    )
    v = ui.mount(canvas, 700)
    orange = canvas.colors[1]

    def left_edges() -> list[float]:
        px = v.pixels()
        scale, ox, oy = (float(s) for s in v.data()["view"].split(","))
        rows = range(round(oy + 100 * scale), round(oy + 180 * scale))  # below the tags
        return [
            _colour_share(px, range(round(ox + b[0] * scale) - 1, round(ox + b[0] * scale) + 2), rows, orange)
            for b in boxes
        ]

    user, shown, hidden = left_edges()
    v.shot("01-solid-dashed-hidden")
    assert user > 0.95, f"a user box is outlined solid ({user:.2f} of its edge)"
    assert 0.35 < shown < 0.85, f"a pre-label is outlined dashed ({shown:.2f} of its edge)"
    assert hidden < 0.05, f"a pre-label below the threshold is not drawn ({hidden:.2f})"
    assert v.data()["prelabels"] == "1"
    v.py_set({"threshold": 0.1})
    assert 0.35 < left_edges()[2] < 0.85 and v.data()["prelabels"] == "2"
    v.py_set({"threshold": 0.9})
    assert left_edges()[1:] == [0.0, 0.0] and v.data()["prelabels"] == "0"
    v.py_set({"threshold": 0.3})
    v.key("y")
    assert left_edges()[1] > 0.95, "an accepted pre-label is the user's: solid"
    ui.assert_clean()


def test_downscaled_display_bytes_line_up_with_original_pixels(ui: CanvasPage) -> None:
    path = DATA / "bccd" / "JPEGImages" / "BloodImage_00000.jpg"
    full = bccd_canvas()
    small = bccd_canvas()
    buf = io.BytesIO()
    Image.open(path).resize((320, 240), Image.BILINEAR).save(buf, format="PNG")
    small.image = buf.getvalue()  # what display_image sends for an image too large to send whole
    a = ui.mount(full, 640)
    b = ui.mount(small, 640)
    assert a.data()["view"] == b.data()["view"], "the view is in original pixels whatever the display size"
    diff = np.abs(a.pixels() - b.pixels()).mean()
    shifted = np.abs(a.pixels()[:, 4:] - a.pixels()[:, :-4]).mean()
    b.shot("01-quarter-size-display")
    assert diff < shifted / 2, f"the image does not line up with its boxes ({diff:.1f}; shifted 4 px: {shifted:.1f})"
    x, y = free_point(small.objects, small.image_size, 5)
    b.key("3")
    b.drag((x, y), (x + 40, y + 30))
    new = [o for o in b.objects() if o["id"].startswith("u")]
    assert len(new) == 1
    assert_box(new[0]["box"], [x, y, x + 40, y + 30], tol=0.5)
    ui.assert_clean()


def test_class_names_render_as_text(ui: CanvasPage) -> None:
    names = ["RBC", "<img src=x onerror=alert(1)>", "Platelets & <b>bold</b>"]
    v = ui.mount(bccd_canvas(classes=names))
    assert v.root.locator(".ltc-chip-name").all_text_contents() == names
    x, y = free_point(v.objects(), [640, 480], 5)
    v.key("2")
    v.drag((x, y), (x + 60, y + 40))  # its tag draws the name on the canvas
    v.shot("01-markup-in-class-names")
    v.key("?")
    v.page.wait_for_timeout(300)
    v.shot("02-help")
    assert v.page.evaluate("document.querySelectorAll('img, b').length") == 0, "markup became elements"
    assert not ui.dialogs, "a class name ran a script"
    ui.assert_clean()


# ------------------------------------------------------------------------------- segmentation
def membrane_canvas(semantic: bool) -> LabelCanvas:
    from scipy import ndimage

    path = DATA / "membrane" / "image" / "0.png"
    interior = np.asarray(Image.open(DATA / "membrane" / "label" / "0.png").convert("L")) > 127
    if semantic:
        canvas = LabelCanvas("segmentation", ["cell", "membrane"], semantic=True, brush_size=10)
        pre = Annotation.from_semantic(np.where(interior, 1, 2).astype(np.uint16))
        pre.scores = np.array([0.91, 0.64], np.float32)
        canvas.set_image(display_image(path), (512, 512), image_id=0, prelabels=pre)
        return canvas
    comp, n = ndimage.label(interior)
    sizes = ndimage.sum(interior, comp, range(1, n + 1))
    masks = np.stack([comp == i + 1 for i in np.argsort(sizes)[::-1][:12]])
    rng = np.random.default_rng(1)
    pre = Annotation.from_masks(masks[:8], [0] * 8, scores=rng.uniform(0.2, 0.95, 8))
    user = Annotation.from_masks(masks[8:], [1] * 4)
    canvas = LabelCanvas("segmentation", ["cell", "organelle"], brush_size=10)
    canvas.set_image(display_image(path), (512, 512), image_id=0, annotation=user, prelabels=pre)
    return canvas


def _mask_of(canvas: LabelCanvas, objects: list[dict[str, Any]], oid: str) -> np.ndarray:
    shown = visible(objects, canvas.threshold)
    ann = objects_to_annotation(shown, 512, 512, "segmentation", len(canvas.classes))
    assert len(ann) == len(shown), "Python decodes every mask the canvas sent"
    return ann.masks[[o["id"] for o in shown].index(oid)]


def test_segmentation_brush_eraser_polygon_and_fill(ui: CanvasPage) -> None:
    canvas = membrane_canvas(semantic=False)
    v = ui.mount(canvas, 700)
    v.shot("01-instances")

    # brush with nothing selected: a new instance of the current class, where the stroke went
    v.key("2")
    path = [(40 + k * 8, 40 + k * 3) for k in range(12)]
    v.stroke(path)
    new = [o for o in v.objects() if o["id"].startswith("u")]
    assert len(new) == 1 and new[0]["label"] == 1 and v.data()["selected"] == new[0]["id"]
    uid = new[0]["id"]
    m = _mask_of(canvas, v.objects(), uid)
    assert all(m[round(y), round(x)] for x, y in path), "every point of the stroke is painted"
    assert not m[80, 40] and not m[40, 140], "nothing painted away from the stroke"
    assert 700 < m.sum() < 1600, m.sum()  # about 12 × 8 px long × 10 px wide

    # the eraser takes pixels from the selected instance only
    v.key("e")
    v.drag((80, 20), (80, 80), steps=8)
    m = _mask_of(canvas, v.objects(), uid)
    assert not m[55, 80] and not m[50, 79] and m[42, 41] and m[73, 128]

    # polygon: four clicks and Enter make a new instance (N: the next shape starts one)
    v.key("n", "p")
    for x, y in [(300, 300), (380, 300), (380, 360), (300, 360)]:
        v.click(x, y)
    v.shot("02-polygon-drawing")
    v.key("Enter")
    poly = next(o for o in v.objects() if o["id"].startswith("u") and o["id"] != uid)
    m = _mask_of(canvas, v.objects(), poly["id"])
    assert m[330, 340] and m[302, 302] and m[358, 378] and not m[330, 390] and not m[290, 340]
    assert_box(poly["box"], [300, 300, 380, 360], tol=1.5)

    # fill: erase a hole into the polygon, then fill it; outside the mask it explains why not
    v.key("e")
    v.click(340, 330)
    assert not _mask_of(canvas, v.objects(), poly["id"])[330, 340]
    v.key("f")
    v.click(340, 330)
    assert _mask_of(canvas, v.objects(), poly["id"])[330, 340], "fill filled the hole"
    v.click(450, 450)
    assert "not enclosed" in (v.root.locator(".ltc-toast").text_content() or "")
    v.key("b")
    v.page.mouse.move(*v.to_screen(250, 250))
    v.shot("03-edited")

    # a double click closes a polygon; Backspace drops a vertex and Esc cancels, changing nothing
    v.key("n", "p")
    v.click(420, 40)
    v.click(480, 60)
    v.page.mouse.dblclick(*v.to_screen(450, 110))
    tri = [o for o in v.objects() if o["id"] not in (uid, poly["id"]) and o["id"].startswith("u")]
    assert len(tri) == 1
    assert_box(tri[0]["box"], [420, 40, 480, 110], tol=1.5)
    count = len(v.objects())
    v.click(20, 400)
    v.click(60, 400)
    v.key("Backspace", "Escape")
    assert len(v.objects()) == count

    # Tab selects a pre-label, V accepts it, 2 + C relabels it; the brush then adds to it
    v.key("Escape")
    pre = next(o["id"] for o in visible(v.objects(), 0.3) if o["source"] == "prelabel")
    for _ in range(len(v.objects())):
        if v.data()["selected"] == pre:
            break
        v.key("Tab")
    assert v.data()["selected"] == pre
    n_pre = int(v.data()["prelabels"])
    v.key("v")
    assert v.obj(pre)["source"] == "user" and int(v.data()["prelabels"]) == n_pre - 1
    v.key("2", "c")
    assert v.obj(pre)["label"] == 1
    v.key("b")
    bx0, _, bx1, by1 = v.obj(pre)["box"]
    cx = (bx0 + bx1) / 2
    v.drag((cx, by1 - 5), (cx, by1 + 30), steps=5)
    assert v.obj(pre)["box"][3] > by1 + 25 and len(v.objects()) == count
    v.page.mouse.move(*v.to_screen(cx + 60, by1 + 60))
    v.shot("04-selected-grown")
    v.key("?")
    v.shot("05-help")
    v.key("Escape")

    # view only: neither keys nor the brush change anything
    v.py_set({"view_only": True})
    before = v.objects()
    v.key("Delete", "x", "y")
    v.stroke([(200, 450), (260, 460)])
    assert v.objects() == before
    ui.assert_clean()


def test_a_class_chip_after_a_stroke_starts_the_next_instance_in_that_class(ui: CanvasPage) -> None:
    """Issue 20, item 2, for masks: the instance a stroke just painted stays selected for the next stroke,
    the eraser and fill, but a chip clicked then chooses the class of the next instance and does not
    relabel it; an instance selected on purpose (a click with the select tool) takes the chip's class."""
    canvas = membrane_canvas(semantic=False)
    v = ui.mount(canvas, 700)
    chips = v.root.locator(".ltc-chip")
    v.key("1", "b")  # cell
    v.stroke([(40 + k * 8, 40) for k in range(10)])
    first = next(o for o in v.objects() if o["id"].startswith("u"))
    assert first["label"] == 0 and v.data()["selected"] == first["id"] and v.data()["picked"] == "0"
    chips.nth(1).click()  # organelle, for the next instance
    assert v.obj(first["id"])["label"] == 0, "the chip relabeled the instance just painted"
    assert v.data()["selected"] == "" and v.data()["label"] == "1"
    v.stroke([(40 + k * 8, 120) for k in range(10)])
    second = next(o for o in v.objects() if o["id"].startswith("u") and o["id"] != first["id"])
    assert second["label"] == 1 and v.obj(first["id"])["label"] == 0
    objs = v.objects()
    assert _mask_of(canvas, objs, second["id"])[120, 80] and not _mask_of(canvas, objs, first["id"])[120, 80]
    v.shot("01-two-instances")
    # picked with the select tool: the chip gives it the class
    v.key("s")
    v.click(80, 40)
    assert v.data()["selected"] == first["id"] and v.data()["picked"] == "1"
    chips.nth(1).click()
    assert v.obj(first["id"])["label"] == 1
    ui.assert_clean()


def test_segmentation_semantic_mode(ui: CanvasPage) -> None:
    canvas = membrane_canvas(semantic=True)
    v = ui.mount(canvas, 700)
    v.shot("01-semantic-prelabels")
    v.key("1")  # paint "cell" across the membranes, fast: 4 pointer events over 300 px
    v.drag((100, 250), (400, 250), steps=4)
    objs = v.objects()
    ann = objects_to_annotation(visible(objs, 0.3), 512, 512, "segmentation", 2)
    assert not (ann.masks.sum(0) > 1).any(), "no pixel in two classes"
    cell = ann.masks[list(ann.labels).index(0)]
    assert cell[250, 100:400].all(), "a fast stroke is continuous"
    assert cell[247:254, 110:390].all() and not ann.masks[list(ann.labels).index(1)][247:254, 110:390].any()
    assert next(o for o in objs if o["label"] == 0)["source"] == "user", "the painted pre-label is the user's"
    v.page.mouse.move(*v.to_screen(250, 200))
    v.shot("02-semantic-painted")
    ui.assert_clean()


# ----------------------------------------------------------------------------- classification
def test_classification_suggestions_and_one_key_labels(ui: CanvasPage) -> None:
    classes = ["RBC-rich", "WBC present", "Platelets", "Artifact", "Blurry"]
    canvas = LabelCanvas("classification", classes, tool="pan")
    path = DATA / "bccd" / "JPEGImages" / "BloodImage_00003.jpg"
    canvas.set_image(display_image(path), (640, 480), image_id=3, name=path.name)
    canvas.category_scores = [0.08, 0.71, 0.15, 0.04, 0.02]
    v = ui.mount(canvas, 700)
    top = v.root.locator(".ltc-sugg-top").inner_text()
    assert "WBC present" in top and "71%" in top
    v.shot("01-suggestions")
    v.key("Enter")
    assert v.state("category") == 1 and v.sent() == [{"type": "action", "action": "submit", "image_id": 3}]
    v.key("3")
    assert v.state("category") == 2 and len(v.sent()) == 2
    v.root.locator(".ltc-chip").nth(4).click()
    assert v.state("category") == 4 and len(v.sent()) == 3
    # a held digit classifies one image, not every image while it repeats
    v.root.focus()
    v.page.keyboard.down("4")
    v.page.keyboard.down("4")
    v.page.keyboard.up("4")
    assert v.state("category") == 3 and len(v.sent()) == 4
    ui.assert_clean()


# ------------------------------------------------------------------------- a large aerial image
def forest_canvas() -> LabelCanvas:
    path = DATA / FOREST
    truth = load_labels("voc", path.parent, [path], ["Tree"]).annotations[path.resolve()]
    rng = np.random.default_rng(2)
    n = len(truth)
    pre = Annotation(
        truth.width,
        truth.height,
        truth.boxes[n // 3 :],
        truth.labels[n // 3 :],
        scores=rng.uniform(0.3, 0.99, n - n // 3),
    )
    user = Annotation(truth.width, truth.height, truth.boxes[: n // 3], truth.labels[: n // 3])
    canvas = LabelCanvas("detection", ["Tree"])
    canvas.set_image(
        display_image(path), (truth.width, truth.height), image_id=0, name=path.name, annotation=user, prelabels=pre
    )
    return canvas


def test_forest_zoom_at_the_cursor_and_pan(ui: CanvasPage) -> None:
    canvas = forest_canvas()
    assert canvas.image_size == [2299, 2472] and len(canvas.objects) > 500
    v = ui.mount(canvas)
    assert v.data()["objects"] == str(len(canvas.objects))
    fit = v.scale()
    v.shot("01-fit")
    # browsers report wheel positions in whole CSS px: aim at a whole pixel
    sx, sy = (round(c) for c in v.to_screen(1900.0, 700.0))
    box = v.canvas.bounding_box()
    scale, ox, oy = (float(s) for s in v.data()["view"].split(","))
    target = ((sx - box["x"] - ox) / scale, (sy - box["y"] - oy) / scale)
    v.page.mouse.move(sx, sy)
    v.page.keyboard.down("Control")  # the plain wheel scrolls the page; Ctrl + wheel zooms
    for _ in range(5):
        v.page.mouse.wheel(0, -200)
        v.page.wait_for_timeout(30)
    v.page.keyboard.up("Control")
    wait_for(lambda: v.scale() > 4 * fit, timeout=5, message=lambda: f"Ctrl + wheel did not zoom in: {v.data()}")
    after = v.to_screen(*target)
    assert abs(after[0] - sx) < 0.5 and abs(after[1] - sy) < 0.5, f"zoom moved the point under the cursor: {after}"
    v.shot("02-zoomed-at-cursor")
    # a right-button drag pans by exactly the drag
    view0 = [float(s) for s in v.data()["view"].split(",")]
    v.drag((sx, sy), (sx - 120, sy - 70), button="right", screen=True)
    view1 = [float(s) for s in v.data()["view"].split(",")]
    assert np.allclose(view1, [view0[0], view0[1] - 120, view0[2] - 70], atol=0.01), (view0, view1)
    assert len(v.objects()) == len(canvas.objects) and not v.saves(), "panning edits nothing"
    v.key("Home")
    assert abs(v.scale() - fit) < 1e-4
    ui.assert_clean()


# The same pan driven from the page at display rate (no test-driver latency between moves), and a
# bare canvas drawing the same bitmap at the same zoom as a baseline (software raster on a shared CPU).
_JS_PAN = """([i, steps]) => new Promise((done) => {
  const c = document.querySelectorAll('.ltc-canvas')[i];
  const r = c.getBoundingClientRect();
  const at = (k) => ({ clientX: r.left + 450 - k * 3, clientY: r.top + 300 - k * 2, button: 2, buttons: 2,
                       pointerId: 7, bubbles: true });
  c.dispatchEvent(new PointerEvent('pointerdown', at(0)));
  globalThis.__livetrainTimings = []; globalThis.__livetrainCountFrames = true;
  let k = 0;
  const step = () => {
    c.dispatchEvent(new PointerEvent('pointermove', at(++k)));
    if (k < steps) { requestAnimationFrame(step); return; }
    c.dispatchEvent(new PointerEvent('pointerup', at(k)));
    requestAnimationFrame(() => {
      globalThis.__livetrainCountFrames = false;
      done(globalThis.__livetrainTimings.filter((t) => t.event === 'frame'));
    });
  };
  requestAnimationFrame(step);
})"""

_JS_BARE = """async ([i, scale, steps, w, h]) => {
  const c = document.createElement('canvas'); c.width = 900; c.height = 560; document.body.append(c);
  const g = c.getContext('2d');
  const img = await createImageBitmap(new Blob([window.models[i].state.image]));
  const ts = [];
  return await new Promise((done) => {
    const f = (t) => {
      ts.push(t); g.setTransform(1, 0, 0, 1, 0, 0); g.clearRect(0, 0, 900, 560);
      g.setTransform(scale, 0, 0, scale, -1500 - ts.length * 3, -500 - ts.length * 2); g.drawImage(img, 0, 0, w, h);
      if (ts.length < steps) requestAnimationFrame(f); else { c.remove(); img.close(); done(ts); }
    };
    requestAnimationFrame(f);
  });
}"""


def test_forest_pan_frame_rate(ui: CanvasPage) -> None:
    """Benchmark, not a gate: frames per second while panning the 2299×2472 image with its ~574 boxes."""
    canvas = forest_canvas()
    v = ui.mount(canvas)
    fit = v.scale()
    v.page.mouse.move(*v.to_screen(1500, 1000))
    v.page.keyboard.down("Control")
    for _ in range(5):
        v.page.mouse.wheel(0, -200)
        v.page.wait_for_timeout(30)
    v.page.keyboard.up("Control")
    v.page.mouse.move(0, 0)
    view0 = [float(s) for s in v.data()["view"].split(",")]
    assert view0[0] > 4 * fit, f"the pan is measured zoomed in, not at {view0[0]} (fit {fit})"
    steps = 120
    frames = v.page.evaluate(_JS_PAN, [v.index, steps])
    view1 = [float(s) for s in v.data()["view"].split(",")]
    v.shot("01-panned")
    assert len(frames) > 10, f"only {len(frames)} frames were drawn while panning"
    assert np.allclose(view1, [view0[0], view0[1] - 3 * steps, view0[2] - 2 * steps], atol=0.01), (view0, view1)
    gaps = np.diff([f["t"] for f in frames])
    draw = np.array([f["draw_ms"] for f in frames])
    bare = np.diff(v.page.evaluate(_JS_BARE, [v.model, view0[0], steps, *canvas.image_size]))
    figures = {
        "image": FOREST, "objects": len(canvas.objects), "zoom": round(view0[0], 4), "pointer_moves": steps,
        "frames": len(frames), "fps": round(1000 / float(gaps.mean()), 1),
        "frame_gap_ms": {"median": round(float(np.median(gaps)), 1), "p95": round(float(np.percentile(gaps, 95)), 1)},
        "draw_ms": {"median": round(float(np.median(draw)), 2), "p95": round(float(np.percentile(draw, 95)), 2),
                    "max": round(float(draw.max()), 2)},
        "bare_drawimage_fps": round(1000 / float(bare.mean()), 1),
        "cpus": os.cpu_count(),
    }  # fmt: skip
    (artifacts_for_test() / "pan.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(
        f"\npan {FOREST} ({len(canvas.objects)} boxes, zoom {view0[0]:.2f}): {figures['fps']} fps over "
        f"{len(frames)} frames, draw median {figures['draw_ms']['median']} ms / p95 {figures['draw_ms']['p95']} ms "
        f"(bare drawImage loop: {figures['bare_drawimage_fps']} fps)"
    )
    ui.assert_clean()


# ------------------------------------------------------------------------ two views of a model
def test_two_views_of_one_model_stay_in_step(ui: CanvasPage) -> None:
    canvas = bccd_canvas()
    a = ui.mount(canvas, 600)
    b = ui.mount_view(a.model, 500)
    n_pre = a.data()["prelabels"]
    assert b.data()["prelabels"] == n_pre != "0"
    a.key("x")
    wait_for(lambda: b.data()["prelabels"] == "0", timeout=5, message="the other view did not follow the discard")
    b.key("Control+z")  # to b the discard came from outside, like a change from Python: undoable there too
    wait_for(lambda: a.data()["prelabels"] == n_pre, timeout=5, message="the first view did not follow the undo")
    ui.page.evaluate("(j) => { window.views[j].cleanup(); window.views[j].cleanup = null; }", b.index)
    assert ui.page.locator(".ltc-root").count() == 1, "cleanup removes the view"
    a.key("x")
    assert a.data()["prelabels"] == "0", "the remaining view still works"
    a.key("Control+z")
    assert a.data()["prelabels"] == n_pre
    ui.assert_clean()
