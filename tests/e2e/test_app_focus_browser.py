"""The labeling app in a real JupyterLab, used with the mouse and keys as a person does (issue 20):

- a class chip clicked right after drawing a box chooses the class of the next box, and leaves the box
  drawn as it was (item 2);
- after a click on the panel (Finish & Next, the "auto" setting, Back) the canvas' keys work at once,
  and Enter never presses the last button clicked again (item 5);
- the plain mouse wheel over the canvas scrolls the notebook; Ctrl + wheel and the zoom buttons zoom
  (item 6).

One notebook, one app, a scripted model that offers the same two pre-labels on every image (the model is
not what is tested). Screenshots go to ``test-artifacts/<test>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .. import _require
from .app_driver import AppView, open_app
from .harness import screenshot, wait_for

REPO = Path(__file__).resolve().parents[2]
DATA = _require.DATA
CLASSES = ["RBC", "WBC", "Platelets"]

pytestmark = _require.needs_data  # skips without the data; fails in CI (LIVETRAIN_REQUIRE_DATA=1)

SETUP = f"""
import sys, warnings; warnings.simplefilter('ignore'); sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
from livetrain_widgets import Annotation, LiveAnnotator, LiveSession, SessionConfig
from tests.tiny_model import ScriptedDetector

class Fixed(ScriptedDetector):
    # the same two confident pre-labels on every image
    def predict(self, images):
        return [Annotation(im.shape[1], im.shape[0], boxes=[[40, 40, 200, 160], [300, 200, 420, 320]],
                           labels=[0, 1], scores=[0.9, 0.8]) for im in images]

paths = sorted(Path({str(DATA / "bccd" / "JPEGImages")!r}).glob("*.jpg"))[:6]
session = LiveSession("focus", "detection", {CLASSES!r}, model=Fixed(),
                      config=SessionConfig(auto_threshold=False, auto_offer=False))
session.trainer.offering = True
app = LiveAnnotator(paths, session=session, plots=False)
"""

# a page taller than the window below the app, so that there is a notebook to scroll
BELOW = "from IPython.display import HTML\nHTML('<div style=\"height: 1500px\">below the app</div>')"

_SCROLLER = """(el) => {
  for (let e = el.parentElement; e; e = e.parentElement) {
    const s = getComputedStyle(e);
    if (/(auto|scroll)/.test(s.overflowY) && e.scrollHeight > e.clientHeight + 10) {
      e.dataset.testScroller = "1";
      return true;
    }
  }
  return false;
}"""


def _scroll_top(page: Any) -> float:
    return page.evaluate("() => document.querySelector('[data-test-scroller]').scrollTop")


def _focus_on_canvas(page: Any) -> bool:
    return page.evaluate("() => !!document.activeElement && document.activeElement.classList.contains('ltc-root')")


def _centre(ui: AppView) -> tuple[float, float]:
    box = ui.canvas.bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_chips_panel_clicks_and_the_wheel_as_a_person_uses_them(page, lab_server, console_log) -> None:
    notebook_path = lab_server.root / "focus" / "notebook.ipynb"
    ui, kernel = open_app(page, lab_server, notebook_path, [SETUP, "app", BELOW], timeout=180)
    ids = kernel.eval("app.session.image_ids")
    first = ui.wait_image()
    wait_for(lambda: ui.attr("prelabels") == "2", timeout=30, message=lambda: f"no pre-labels: {ui.attrs()}")
    assert int(ui.canvas.bounding_box()["height"]) == kernel.eval("app.canvas.height") == 440  # the new default
    # Panel and canvas together fit the notebook area JupyterLab leaves on a 1440×900 laptop screen (about
    # 680 px: 900 less the OS and browser bars, JupyterLab's menu, tabs, toolbar and status bar).
    app_height = page.locator(".lt-app").first.bounding_box()["height"]
    assert app_height <= 650, f"the app is {app_height} px tall"
    screenshot(page, "01-opened")

    # Item 6: the plain wheel over the canvas scrolls the notebook and leaves the zoom alone.
    assert ui.canvas.evaluate(_SCROLLER), "the notebook should be taller than the window"
    zoom0 = float(ui.attr("zoom"))
    top0 = _scroll_top(page)
    page.mouse.move(*_centre(ui))
    page.mouse.wheel(0, 300)
    wait_for(lambda: _scroll_top(page) > top0 + 100, timeout=5,
             message=lambda: f"the wheel over the canvas did not scroll the notebook (zoom {ui.attr('zoom')})")
    assert float(ui.attr("zoom")) == zoom0
    screenshot(page, "02-wheel-scrolled")
    # Ctrl + wheel (and a trackpad's pinch, which arrives as the same event) zooms at the pointer
    top1 = _scroll_top(page)
    page.mouse.move(*_centre(ui))
    page.keyboard.down("Control")
    page.mouse.wheel(0, -200)
    page.keyboard.up("Control")
    wait_for(lambda: float(ui.attr("zoom")) > zoom0 * 1.2, timeout=5, message=lambda: f"no zoom: {ui.attrs()}")
    assert abs(_scroll_top(page) - top1) < 2, "Ctrl + wheel scrolled the notebook"
    zoom1 = float(ui.attr("zoom"))
    ui.root.locator(".ltc-zoom-in").click(timeout=3000)
    assert float(ui.attr("zoom")) == pytest.approx(zoom1 * 1.25, rel=1e-3)
    ui.root.locator(".ltc-zoom-out").click()
    ui.root.locator(".ltc-btn", has_text="Fit").click()
    assert float(ui.attr("zoom")) == pytest.approx(zoom0, rel=1e-3)
    ui.root.scroll_into_view_if_needed()
    ui.panel.scroll_into_view_if_needed()

    # Item 2: draw a box of class RBC, then click the WBC chip to draw the next one: the box stays RBC.
    ui.draw_box([460, 40, 600, 140], 0)
    wait_for(lambda: ui.attr("objects") == "3", timeout=5, message=lambda: f"{ui.attrs()}")
    assert ui.attr("selected") == "", "a box just drawn is not selected behind the person's back"
    ui.root.locator(".ltc-chip", has_text="WBC").click()
    assert ui.attr("label") == "1"
    user_labels = "sorted(o['label'] for o in app.canvas.objects if o['source'] == 'user')"
    kernel.wait_for("app.canvas.label", 1, timeout=5)
    page.wait_for_timeout(300)  # a relabel would be the next message after the label's
    assert kernel.eval(user_labels) == [0], "the chip relabeled the box just drawn"
    screenshot(page, "03-chip-after-drawing")
    # a box clicked on purpose shows its handles, and then a chip gives it the class
    x, y = ui.to_screen(530, 90)
    page.mouse.click(x, y)
    wait_for(lambda: ui.attr("selected") != "" and ui.attr("picked") == "1", timeout=5,
             message=lambda: f"{ui.attrs()}")
    ui.root.locator(".ltc-chip", has_text="Platelets").click()
    kernel.wait_for(user_labels, [2], timeout=5)
    screenshot(page, "04-clicked-box-relabeled")

    # Item 5: after ticking "auto" in the panel, Y accepts the pre-labels and Enter submits this image.
    ui.panel.locator(".lt-auto-threshold").click()
    kernel.wait_for("app.panel.auto_threshold", True, timeout=5)
    assert int(ui.attr("prelabels")) > 0
    page.keyboard.press("y")
    wait_for(lambda: ui.attr("prelabels") == "0", timeout=5,
             message=lambda: f"Y after ticking auto did not accept (focus on the canvas: {_focus_on_canvas(page)})")
    page.keyboard.press("Enter")
    second = ui.wait_image(not_id=first)
    assert kernel.eval(f"len(app.session.annotation({ids[0]}))") == 3
    # after a click on Finish & Next, Y works on the next image
    wait_for(lambda: ui.attr("prelabels") == "2", timeout=30, message=lambda: f"{ui.attrs()}")
    ui.button("submit").click()
    third = ui.wait_image(not_id=second)
    wait_for(lambda: ui.attr("prelabels") == "2", timeout=30, message=lambda: f"{ui.attrs()}")
    assert _focus_on_canvas(page), "the keyboard stayed on Finish & Next"
    page.keyboard.press("y")
    wait_for(lambda: ui.attr("prelabels") == "0", timeout=5, message="Y after Finish & Next did nothing")
    screenshot(page, "05-y-after-finish-and-next")
    # after a click on Back, Enter submits the image Back opened; it does not go back again
    ui.button("back").click()
    wait_for(lambda: ui.attr("image-id") == second and ui.attr("pending") == "0", timeout=15,
             message=lambda: f"Back did not reopen the previous image: {ui.attrs()}")
    assert _focus_on_canvas(page), "the keyboard stayed on Back"
    page.keyboard.press("Enter")
    after = ui.wait_image(not_id=second)
    assert after != first, "Enter after Back went back again"
    assert after == third
    screenshot(page, "06-enter-after-back")
    # the plain wheel over the canvas the person works on says once how to zoom
    page.mouse.move(*_centre(ui))
    page.mouse.wheel(0, 100)
    toast = ui.root.locator(".ltc-toast.ltc-show")
    wait_for(lambda: toast.count() == 1 and "Ctrl + wheel" in toast.inner_text(), timeout=5,
             message="no hint on how to zoom")
    screenshot(page, "07-wheel-hint")
    # the keys never reached the notebook (Y, Enter in command mode would have changed its cells)
    assert page.locator(".jp-Notebook .jp-Cell").count() == 3
    assert not console_log.errors(), console_log.text()
    kernel.run("await app.close()")
