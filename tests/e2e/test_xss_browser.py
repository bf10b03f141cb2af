"""Hostile text in a real browser: every string a user or a kernel provides is shown as text, never as markup.

One notebook in JupyterLab (Debian's Chromium through Playwright) builds

* a ``LiveAnnotator`` (detection, embedded model, 64 px, random weights) whose class names, image file
  names and plot title are HTML / script payloads, on images saved under such names;
* a ``StreamAnnotator`` (segmentation) with hostile class names, frame names and an adapter folder whose
  name is a payload (a plain file, so Save adapter fails with an error naming it).

It then provokes every way such text reaches the page: the class chips, the image name over the canvas,
the panel's position line, a plot title, the panel's error line and the canvas toast (an image file that
vanished after it was added), the panel toast and the canvas toast for messages a hostile front end sends
over the widget's comm (raw ``comm_msg`` frames built in the page, so they take the real route), the
strip's message after Accept and its toast after a failed Save.

Each payload, if it were parsed as HTML, would set ``window.__xss``, open a dialog, or add an element
with an event-handler attribute. The test checks none of that happened, that each string is present
*literally* as the text of the element meant to show it (with innerHTML the markup would be gone from
``textContent``), and, as a control, that the same payload does set ``window.__xss`` when a test element
is given it through ``innerHTML``: the detector works in this page. (The panel's and the strip's toasts
are positioned above their widget, outside JupyterLab's output area, which clips them: their text is
checked, their visibility is not.) Screenshots: ``test-artifacts/<test>/``.

A static check goes with it: no HTML sink (``innerHTML``, ``outerHTML``, ``insertAdjacentHTML``,
``document.write``, ...) in ``js/src`` or in the bundles under ``livetrain_widgets/static``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from ..reliability.report import record
from .app_driver import open_app
from .harness import cell_output, screenshot, wait_for

REPO = Path(__file__).resolve().parents[2]

# Class names (LiveAnnotator): each one sets window.__xss if parsed as HTML.
CLASSES = [
    '<img src=x onerror="window.__xss=(window.__xss||0)+1">',
    "<script>window.__xss=1</script>",
    '"><svg onload=window.__xss=1>',
]
# Image file names (no "/": the rest is allowed on Linux file systems). The third file is deleted after
# it was added, so opening it fails with an error that names it.
FILES = [
    '<img src=x onerror="window.__xss=(window.__xss||0)+1">.png',
    "<iframe src=javascript:parent.__xss=1>.png",
    '"><svg onload=window.__xss=1>.png',
]
PLOT_TITLE = "<img src=x onerror=window.__xss=10>Loss"
# What a hostile front end sends: echoed (quoted) in the kernel's error replies, so no quotes in them.
BAD_TYPE = "<img src=x onerror=window.__xss=2>"
BAD_TRAIT = "<img src=x onerror=window.__xss=9>"
# StreamAnnotator: class names, frame names, and the adapter folder (a file: Save fails naming it).
STREAM_CLASSES = ["<b onmouseover=window.__xss=1>cell</b>", "<img src=x onerror=window.__xss=5>"]
STREAM_NAMES = ["<img src=x onerror=window.__xss=6>", "<a href=javascript:window.__xss=7>frame two</a>"]
ADAPTER_FILE = "<img src=x onerror=window.__xss=8>"

SETUP = """
import warnings; warnings.simplefilter("ignore")
from pathlib import Path
import numpy as np
from PIL import Image
from livetrain_widgets import LiveAnnotator, LiveSession

rng = np.random.default_rng(0)
paths = []
for name in FILES:
    p = ROOT / "images" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(p)
    paths.append(p)
session = LiveSession(ROOT / "project", "detection", CLASSES, model_options={"input_size": 64, "pretrained": False})
session.add_images(paths)
paths[2].unlink()  # added, then gone: opening it fails with an error naming the file
app = LiveAnnotator(session=session, start=False, height=300)
"""

STREAM = """
import torch
from livetrain_widgets import AdapterConfig, StreamAnnotator
from livetrain_widgets.models.embedded import EmbeddedModel
from livetrain_widgets.models._stream_embedded import EmbeddedStreamModel

torch.manual_seed(0)
base = EmbeddedModel("segmentation", STREAM_CLASSES, pretrained=False, input_size=64, semantic=True)
frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
(ROOT / ADAPTER_FILE).write_text("a file, not a folder")
sapp = StreamAnnotator(EmbeddedStreamModel(base, AdapterConfig(epochs=2)), frames, names=STREAM_NAMES,
                       adapter_dir=ROOT / ADAPTER_FILE, height=300)
"""

# A raw comm_msg on the page's own kernel connection: what a hostile or buggy front end could send.
_JS_SEND = """
({path, commId, data}) => {
  const app = window.jupyterapp;
  let panel = null;
  for (const w of app.shell.widgets("main")) {
    if (w.context && w.context.path === path && w.sessionContext) panel = w;
  }
  const k = panel.sessionContext.session.kernel;
  const id = "xss-" + Math.random().toString(36).slice(2) + Date.now();
  k.sendShellMessage({
    header: {msg_id: id, msg_type: "comm_msg", username: k.username, session: k.clientId,
             date: new Date().toISOString(), version: "5.3"},
    parent_header: {}, metadata: {}, channel: "shell", buffers: [],
    content: {comm_id: commId, data},
  }, false, true);
  return id;
}
"""

# Elements a payload would have created if it had been parsed as HTML, anywhere in the page.
_JS_INJECTED = """
() => [...document.querySelectorAll("[onerror], [onload], [onmouseover], iframe[src^='javascript'], "
    + "a[href^='javascript'], .jp-OutputArea script")].map(e => e.outerHTML.slice(0, 120))
"""

SINKS = re.compile(
    r"\.innerHTML\b|\.outerHTML\s*=|insertAdjacentHTML|document\.write|createContextualFragment|\bsrcdoc\b"
    r"|DOMParser|\.html\(|dangerouslySetInnerHTML|new Function\(|\beval\("
)


def test_no_html_sinks_in_the_front_ends() -> None:
    """The sources and the shipped bundles (uPlot included) never turn a string into markup."""
    files = sorted((REPO / "js" / "src").rglob("*.ts")) + sorted((REPO / "livetrain_widgets" / "static").glob("*.js"))
    assert len(files) > 10, files
    hits = [
        f"{f.relative_to(REPO)}:{n}: {line.strip()[:120]}"
        for f in files
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1)
        if SINKS.search(line)
    ]
    record("security", "HTML sinks (innerHTML, insertAdjacentHTML, document.write, …) in js/src and bundles",
           f"{len(files)} files", "none found" if not hits else f"{len(hits)} found", "–")
    assert not hits, "\n".join(hits)


def test_hostile_names_and_messages_render_as_text(page, lab_server, console_log, tmp_path) -> None:
    t0 = time.monotonic()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    root = tmp_path / "xss"
    constants = "\n".join(
        f"{k} = {v!r}" for k, v in {
            "FILES": FILES, "CLASSES": CLASSES, "STREAM_CLASSES": STREAM_CLASSES, "STREAM_NAMES": STREAM_NAMES,
            "ADAPTER_FILE": ADAPTER_FILE,
        }.items()
    )
    setup = f"{constants}\nROOT = __import__('pathlib').Path({str(root)!r})\n{SETUP}"
    path = lab_server.root / "xss" / "notebook.ipynb"
    ui, kernel = open_app(page, lab_server, path, [setup, "app", STREAM, "sapp"], app_cell=1, timeout=150)
    rel = lab_server.relpath(path)
    out, sout = cell_output(page, 1), cell_output(page, 3)
    checked: list[str] = []  # one entry per (string, place) shown literally

    def text_of(locator: Any) -> str:
        return locator.evaluate("e => e.textContent")

    def literal(locator: Any, expected: str, what: str, *, exact: bool = True, visible: bool = True) -> None:
        wait_for(lambda: (text_of(locator) == expected) if exact else (expected in text_of(locator)), timeout=20,
                 message=lambda: f"{what}: textContent {text_of(locator)!r}, expected {expected!r}")
        if visible:
            assert locator.is_visible(), what
        checked.append(what)

    def send(model: str, data: dict[str, Any]) -> None:
        comm_id = kernel.eval(f"{model}.model_id")
        page.evaluate(_JS_SEND, {"path": rel, "commId": comm_id, "data": data})

    # ---- LiveAnnotator: class chips, image name, position line
    ui.wait_image(timeout=90)
    chips = out.locator(".ltc-chip-name")
    assert chips.count() == len(CLASSES)
    for i, name in enumerate(CLASSES):
        literal(chips.nth(i), name, f"class chip {i}")
        assert out.locator(".ltc-chip").nth(i).get_attribute("title") == f"{name} (key {i + 1})"
        assert page.get_by_text(name, exact=True).first.is_visible()
    literal(out.locator(".ltc-name"), FILES[0], "image name over the canvas")
    literal(out.locator(".lt-position"), f"{FILES[0]} (1 of 3)", "panel position line")

    # ---- LivePlots: a title of the user's
    kernel.run(f"app.plots.loss.title = {PLOT_TITLE!r}")
    literal(out.locator(".ltw-plot-title").first, PLOT_TITLE, "plot title")

    # ---- a hostile front end: an unknown message type (panel toast), a trait it may not set (canvas toast)
    send("app.panel", {"method": "custom", "content": {"type": BAD_TYPE}})
    # (the panel's and the strip's toasts sit above their widget, where JupyterLab's output area clips them:
    # their text is checked, not their visibility)
    literal(out.locator(".lt-toast"), f"unknown message type {BAD_TYPE!r}", "panel toast (hostile message)",
            visible=False)
    send("app.canvas", {"method": "update", "state": {BAD_TRAIT: 1}, "buffer_paths": []})
    literal(out.locator(".ltc-toast"), f"the front end may not change {BAD_TRAIT}", "canvas toast (hostile update)")
    out.locator(".ltc-stage").scroll_into_view_if_needed()
    screenshot(page, "01-canvas-toast")

    # ---- an error naming a file: Skip to the second image, then to the third, whose file is gone
    image_id = ui.attr("image-id")
    ui.button("skip").click()
    image_id = ui.wait_image(not_id=image_id)
    literal(out.locator(".ltc-name"), FILES[1], "second image name")
    ui.button("skip").click()
    literal(out.locator(".lt-error"), f"{FILES[2]} could not be shown", "panel error line", exact=False)
    literal(out.locator(".ltc-toast"), f"{FILES[2]} could not be shown", "canvas toast (error)", exact=False)
    out.scroll_into_view_if_needed()
    out.locator(".lt-panel").scroll_into_view_if_needed()
    shot = screenshot(page, "02-app-error")

    # ---- StreamAnnotator: class chips, frame names, thumbnails, strip message, strip toast
    strip = sout.locator(".lts-root").first
    wait_for(lambda: sout.locator(".ltc-root").first.get_attribute("data-ready") == "1", timeout=60,
             message="the stream canvas did not show its first frame")
    schips = sout.locator(".ltc-chip-name")
    for i, name in enumerate(STREAM_CLASSES):
        literal(schips.nth(i), name, f"stream class chip {i}")
    literal(sout.locator(".ltc-name"), f"{STREAM_NAMES[0]} (1 of 2)", "stream frame name over the canvas")
    wait_for(lambda: sout.locator(".lts-thumb img").count() == 2, timeout=30, message="no thumbnails")
    for i, name in enumerate(STREAM_NAMES):
        thumb = sout.locator(".lts-thumb").nth(i)
        assert thumb.get_attribute("title") == name and thumb.locator("img").get_attribute("alt") == name
    strip.locator("button[data-action='accept']").click()
    literal(sout.locator(".lts-message"), f"{STREAM_NAMES[0]}: accepted as predicted.", "strip message")
    literal(sout.locator(".ltc-name"), f"{STREAM_NAMES[1]} (2 of 2)", "second frame name")
    strip.locator("button[data-action='save']").click()
    literal(sout.locator(".lts-toast"), f"{ADAPTER_FILE}'", "strip toast (failed save)", exact=False,
            visible=False)
    assert "FileExistsError" in text_of(sout.locator(".lts-toast")) or "File exists" in text_of(
        sout.locator(".lts-toast"))
    strip.scroll_into_view_if_needed()
    screenshot(page, "03-stream")

    # ---- nothing ran, nothing was injected
    page.wait_for_timeout(500)  # an img onerror fires asynchronously once its load fails
    assert page.evaluate("() => typeof window.__xss") == "undefined"
    assert page.evaluate("() => typeof window.parent.__xss") == "undefined"
    assert dialogs == []
    injected = page.evaluate(_JS_INJECTED)
    assert injected == [], injected
    assert not console_log.errors(), console_log.text()
    elapsed = time.monotonic() - t0

    # ---- control: the same payload through innerHTML does fire here (the detector works)
    fired = page.evaluate("""async (html) => {
        const d = document.createElement("div");
        d.innerHTML = html;
        document.body.append(d);
        for (let i = 0; i < 50 && window.__xss === undefined; i++) await new Promise(r => setTimeout(r, 50));
        d.remove();
        const v = window.__xss;
        delete window.__xss;
        return v;
    }""", CLASSES[0])
    assert fired == 1, f"control: innerHTML with the payload gave window.__xss = {fired!r}"

    kernel.run("import asyncio; sapp.close(); await app.close()")
    strings = len(set(CLASSES + FILES + STREAM_CLASSES + STREAM_NAMES + [PLOT_TITLE, BAD_TYPE, BAD_TRAIT,
                                                                         ADAPTER_FILE]))
    record("security",
           "hostile class / file / frame names, plot title, error lines and toasts in Chromium "
           "(LiveAnnotator, StreamAnnotator, LivePlots; 2 messages from a hostile front end)",
           f"{strings} payloads, {len(checked)} places",
           f"all shown as literal text; window.__xss unset, {len(dialogs)} dialogs, {len(injected)} injected "
           f"elements (control through innerHTML fires); {elapsed:.0f} s", "–")
    (shot.parent / "checked.json").write_text(json.dumps(checked, indent=1))
