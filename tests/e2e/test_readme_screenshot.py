"""The quickstart in a real JupyterLab, labeled by the simulated labeler: the README's picture.

The quickstart notebook's app (coins tiles, embedded model) is opened in Chromium; ``app.autolabel``
labels six tiles through the app while the page shows them; the seventh must open with pre-labels drawn
on the canvas and the three live plots drawn below it. The whole app is then photographed: that picture
is the README's (``LIVETRAIN_DOCS_SCREENSHOT=docs/images/app.png`` writes it there), so the README always
shows the app as it really is.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import _require
from .app_driver import open_app
from .harness import screenshot, wait_for

_require.module("skimage")

REPO = Path(__file__).resolve().parents[2]

SETUP = """\
import warnings; warnings.simplefilter("ignore")
from livetrain_widgets import LiveAnnotator
from livetrain_widgets.demo import coins

demo = coins()
paths = demo.save("images")
app = LiveAnnotator(paths, task="detection", classes=demo.classes, project="coins",
                    model_options={"input_size": 256}, height=420)
"""


def test_the_quickstart_labeled_by_the_simulated_labeler(page, lab_server, console_log) -> None:
    page.set_viewport_size({"width": 1400, "height": 1600})  # the whole app fits: one picture of it
    ui, kernel = open_app(page, lab_server, lab_server.root / "readme" / "notebook.ipynb", [SETUP, "app"],
                          timeout=180)
    first = ui.wait_image()
    kernel.run("n = await app.autolabel(demo.truth, pause=0, steps=15, limit=6)", timeout=600)
    assert kernel.eval("n") == 6 and kernel.eval("app.session.store.labeled_count()") == 6
    # The page followed: it shows the seventh tile, and the model's boxes are drawn on it.
    seventh = kernel.eval("app.session.store.image(app.image_id).name")
    assert seventh == kernel.eval("demo.names[6]")
    ui.wait_image(not_id=first)
    wait_for(lambda: ui.attr("image-id") == str(kernel.eval("app.image_id")), timeout=30)
    if not kernel.eval("app.canvas.prelabel_count"):
        ui.button("predict").click()  # offered a step too late for the automatic prediction
    wait_for(lambda: int(ui.attr("prelabels") or 0) > 0, timeout=90,
             message=lambda: f"no pre-labels on the seventh tile: {ui.attrs()}")
    drawn = int(ui.attr("prelabels"))
    coins_there = kernel.eval("len(demo.annotations[6])")
    assert abs(drawn - coins_there) <= 3, (drawn, coins_there)
    app = page.locator(".lt-app").first
    plots = app.locator(".ltw-plot")
    assert plots.count() == 3
    wait_for(lambda: app.locator(".ltw-plot-chart canvas").count() >= 3, timeout=30,
             message="the live plots were not drawn")
    page.wait_for_timeout(1500)  # the plots redraw on a timer: let the newest figures land
    path = screenshot(app, "readme-app")
    if os.environ.get("LIVETRAIN_DOCS_SCREENSHOT"):
        target = REPO / os.environ["LIVETRAIN_DOCS_SCREENSHOT"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    assert not console_log.errors(), console_log.text()
    kernel.run("await app.close()")
