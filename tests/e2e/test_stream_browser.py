"""The correction mode in a real JupyterLab: click corrections on the canvas, Enter, the adapter learns.

A notebook builds a StreamAnnotator on four small random frames with the embedded segmenter (64 px,
random weights: this is about the widget, not the model). The test clicks with the click tool (a
positive click, then a Shift+click negative one), checks that the kernel answered each by redrawing
the masks, presses Enter, and reads the strip: one correction, one adapter update, the next frame
current. Screenshots go to the test's tmp folder and ``test-artifacts/<test>/``; one is copied to
``/tmp/stream_widget.png`` for a person to look at.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .app_driver import open_app
from .harness import cell_output, screenshot, wait_for

SETUP = """
import warnings; warnings.simplefilter("ignore")
import numpy as np, torch
from livetrain_widgets import AdapterConfig, StreamAnnotator
from livetrain_widgets.models.embedded import EmbeddedModel
from livetrain_widgets.models._stream_embedded import EmbeddedStreamModel

torch.manual_seed(0)
base = EmbeddedModel("segmentation", ["cell"], pretrained=False, input_size=64, semantic=True)
rng = np.random.default_rng(0)
frames = [rng.integers(0, 255, (64, 80, 3), dtype=np.uint8) for _ in range(4)]
frames = [np.clip(f // 2 + 64 + 60 * (np.hypot(*np.ogrid[-32:32, -40:40]) < 18)[..., None], 0, 255).astype(np.uint8)
          for f in frames]  # a bright disc in each: something for the eye
app = StreamAnnotator(EmbeddedStreamModel(base, AdapterConfig(epochs=12)), frames,
                      names=["slice 0", "slice 1", "slice 2", "slice 3"], adapter_dir=ADAPTER_DIR, height=360)
"""


def test_click_corrections_train_the_adapter(page, lab_server, console_log, tmp_path) -> None:
    path = lab_server.root / "stream" / "notebook.ipynb"
    setup = f"ADAPTER_DIR = {str(tmp_path / 'adapter')!r}\n{SETUP}"
    ui, kernel = open_app(page, lab_server, path, [setup, "app"], timeout=120)
    output = cell_output(page, 1)
    strip = output.locator(".lts-root").first
    image_id = ui.wait_image(timeout=60)
    assert ui.attr("tool") == "click" and ui.attr("view-only") == "0"
    assert output.locator(".ltc-tool[data-tool='click']").is_visible()
    wait_for(lambda: output.locator(".lts-thumb img").count() == 4, timeout=20, message="no thumbnails")
    assert "Frame 1 / 4" in strip.inner_text()

    def dataset() -> dict[str, str]:
        return strip.evaluate("e => ({...e.dataset})")

    # a positive click inside the disc, then a Shift+click (negative) beside it
    page.mouse.click(*ui.to_screen(40.5, 32.5))
    wait_for(lambda: ui.attr("clicks") == "1" and ui.attr("clicks-pending") == "0", timeout=20,
             message=lambda: f"the kernel did not answer the click: {ui.attrs()}")
    assert kernel.eval("bool(app.stream.working().masks.any(0)[32, 40])")
    page.keyboard.down("Shift")
    page.mouse.click(*ui.to_screen(41.5, 33.5))
    page.keyboard.up("Shift")
    wait_for(lambda: ui.attr("clicks") == "2", timeout=20, message=lambda: f"second click: {ui.attrs()}")
    assert not kernel.eval("bool(app.stream.working().masks.any(0)[33, 41])")
    assert kernel.eval("bool(app.canvas.annotation().masks.sum() == app.stream.working().masks.sum())")
    wait_for(lambda: dataset().get("clicks") == "2", timeout=10)
    assert "2 (2 here)" in strip.inner_text()
    shot = tmp_path / "01-clicked.png"
    output.screenshot(path=str(shot))
    screenshot(output, "01-clicked")

    ui.root.focus()
    page.keyboard.press("Enter")
    ui.wait_image(not_id=image_id, timeout=60)
    wait_for(lambda: dataset().get("updates") == "1" and dataset().get("current") == "1", timeout=30,
             message=lambda: f"strip: {dataset()}")
    d = dataset()
    assert d["corrections"] == "1" and d["accepted"] == "0" and d["busy"] == ""
    text = strip.inner_text()
    assert "adapter: 1 update" in text and "epoch" in text and "params" in text, text
    assert "Frame 2 / 4" in text and "Corrected 1" in text
    assert "slice 0: corrected (2 clicks)" in text
    first = output.locator(".lts-thumb").nth(0)
    assert "lts-corrected" in (first.get_attribute("class") or "") and first.inner_text().strip().endswith("✎")
    assert "lts-current" in (output.locator(".lts-thumb").nth(1).get_attribute("class") or "")
    assert ui.attr("clicks") == "0"  # the new frame starts without click marks
    assert kernel.eval("app.stream.stats()['updates']") == 1
    assert kernel.eval("app.stream.records[0].clicks") == 2

    # Accept the next one untouched with the strip's button
    image_id = ui.attr("image-id")
    strip.locator("button[data-action='accept']").click()
    ui.wait_image(not_id=image_id, timeout=60)
    wait_for(lambda: dataset().get("accepted") == "1" and dataset().get("current") == "2", timeout=30)
    page.wait_for_timeout(300)  # let the last frame draw
    shot = tmp_path / "02-after-enter.png"
    output.screenshot(path=str(shot))
    screenshot(output, "02-after-enter")
    shutil.copy(shot, Path("/tmp/stream_widget.png"))

    # look back at the corrected frame, then return with the current frame's thumbnail
    image_id = ui.attr("image-id")
    output.locator(".lts-thumb").nth(0).click()
    ui.wait_image(not_id=image_id, timeout=20)
    wait_for(lambda: dataset().get("viewing") == "0" and ui.attr("view-only") == "1", timeout=10)
    assert "view only" in output.locator(".ltc-banner").inner_text()
    image_id = ui.attr("image-id")
    output.locator(".lts-thumb").nth(2).click()
    ui.wait_image(not_id=image_id, timeout=20)
    wait_for(lambda: dataset().get("viewing") == "-1" and ui.attr("view-only") == "0", timeout=10)

    # Save, then Reset (two presses: the first only arms it)
    strip.locator("button[data-action='save']").click()
    wait_for(lambda: (tmp_path / "adapter" / "adapter.safetensors").is_file(), timeout=20)
    wait_for(lambda: "saved to" in strip.inner_text() and "from adapter" in strip.inner_text(), timeout=10)
    reset = strip.locator("button[data-action='reset']")
    reset.click()
    assert reset.inner_text() == "Click again to reset" and kernel.eval("app.stream.stats()['updates']") == 1
    reset.click()
    wait_for(lambda: dataset().get("updates") == "0", timeout=20, message=lambda: f"strip: {dataset()}")
    assert "adapter: 0 updates" in strip.inner_text()

    # keys pressed on the canvas never reached the notebook
    assert page.locator(".jp-Notebook .jp-Cell").count() == 2
    assert not console_log.errors(), console_log.text()
