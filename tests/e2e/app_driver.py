"""Driving a LiveAnnotator output in the browser like a person would: shared by the browser tests and
the browser benchmark (``benchmarks/browser_bench.py``)."""

from __future__ import annotations

from typing import Any

from .harness import JupyterServer, KernelClient, cell_output, open_notebook, run_all, wait_for, write_notebook


class AppView:
    """The canvas and panel of one LiveAnnotator (or LabelCanvas) output."""

    def __init__(self, page: Any, output: Any) -> None:
        self.page = page
        self.root = output.locator(".ltc-root").first
        self.panel = output.locator(".lt-panel").first
        self.canvas = self.root.locator("canvas.ltc-canvas").first

    def attr(self, name: str) -> str:
        return self.root.get_attribute(f"data-{name}") or ""

    def wait_image(self, not_id: str | None = None, timeout: float = 60) -> str:
        def ready() -> str | None:
            image_id = self.attr("image-id")
            ok = self.attr("ready") == "1" and image_id not in ("", "-1") and image_id != not_id
            return image_id if ok else None

        return wait_for(ready, timeout=timeout, message=lambda: f"no new image (data: {self.attrs()})")

    def attrs(self) -> dict[str, str]:
        return self.root.evaluate("e => ({...e.dataset})")

    def to_screen(self, x: float, y: float) -> tuple[float, float]:
        scale, ox, oy = (float(v) for v in self.attr("view").split(","))
        box = self.canvas.bounding_box()
        assert box is not None
        return box["x"] + ox + float(x) * scale, box["y"] + oy + float(y) * scale

    def draw_box(self, box: Any, label: int) -> None:
        self.root.focus()
        self.page.keyboard.press(str(label + 1))  # the class hotkey, then drag like jupyter-bbox-widget
        x0, y0 = self.to_screen(box[0], box[1])
        x1, y1 = self.to_screen(box[2], box[3])
        self.page.mouse.move(x0, y0)
        self.page.mouse.down()
        self.page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=3)
        self.page.mouse.move(x1, y1, steps=3)
        self.page.mouse.up()

    def stroke(self, points: list[tuple[float, float]]) -> None:
        sx, sy = self.to_screen(*points[0])
        self.page.mouse.move(sx, sy)
        self.page.mouse.down()
        for x, y in points[1:]:
            self.page.mouse.move(*self.to_screen(x, y), steps=4)
        self.page.mouse.up()

    def button(self, action: str) -> Any:
        return self.panel.locator(f"button[data-action='{action}']")

    def timings(self) -> list[dict[str, Any]]:
        return self.page.evaluate("() => globalThis.__livetrainTimings || []")


def latencies(timings: list[dict[str, Any]]) -> dict[str, list[float]]:
    """From the canvas' marks: Finish & Next → next image drawn, and → its pre-labels drawn (ms); the
    first split into the kernel's round trip (→ the new image's traits arrived) and decoding + drawing."""
    out: dict[str, list[float]] = {"next_image_ms": [], "prelabels_ms": [], "round_trip_ms": [], "decode_draw_ms": []}
    for n, mark in enumerate(timings):
        if mark.get("event") != "action" or mark.get("action") != "submit":
            continue
        later = timings[n + 1 :]
        image = next((m for m in later if m.get("event") == "image"), None)
        if image is None:
            continue
        out["next_image_ms"].append(image["t"] - mark["t"])
        got = next((m for m in later if m.get("event") == "image_received" and m.get("image_id") == image["image_id"]),
                   None)
        if got is not None:
            out["round_trip_ms"].append(got["t"] - mark["t"])
            out["decode_draw_ms"].append(image["t"] - got["t"])
        pre = next((m for m in later if m.get("event") == "prelabels" and m.get("image_id") == image["image_id"]),
                   None)
        nxt = next((m for m in later if m.get("event") == "action"), None)
        if pre is not None and (nxt is None or pre["t"] < nxt["t"]):
            out["prelabels_ms"].append(pre["t"] - mark["t"])
    return out




def open_app(page: Any, server: JupyterServer, path: Any, cells: list[str], *, app_cell: int = 1,
             timeout: float = 180) -> tuple[AppView, KernelClient]:
    """Write a notebook of ``cells``, open it, run them all; the app shown by cell ``app_cell`` and a
    client of the page's kernel."""
    write_notebook(path, cells)
    open_notebook(page, server, path)
    run_all(page, server, path, timeout=timeout)
    return AppView(page, cell_output(page, app_cell)), server.kernel(path)
