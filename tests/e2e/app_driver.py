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

    def wait_image(self, not_id: str | None = None, timeout: float = 60, confirmed: bool = True) -> str:
        """Wait for an image other than ``not_id`` to be drawn; with ``confirmed``, also for the kernel to have
        opened it (an image shown ahead on Finish & Next is drawn before its submission is committed)."""

        def ready() -> str | None:
            image_id = self.attr("image-id")
            ok = self.attr("ready") == "1" and image_id not in ("", "-1") and image_id != not_id
            return image_id if ok and not (confirmed and self.attr("pending") == "1") else None

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
    """From the canvas' marks: Finish & Next → next image drawn, and → its pre-labels drawn (ms); the kernel's
    round trip (→ the new image's traits arrived) and, for an image not shown ahead, decoding + drawing
    after it. ``shown_ahead``: 1 per submission whose next image was shown before the kernel answered, else 0;
    ``confirmed_other_objects``: per one shown ahead, 1 when the kernel's confirmation brought other objects."""
    out: dict[str, list[float]] = {"next_image_ms": [], "prelabels_ms": [], "round_trip_ms": [], "decode_draw_ms": [],
                                   "shown_ahead": [], "confirmed_other_objects": []}
    for n, mark in enumerate(timings):
        if mark.get("event") != "action" or mark.get("action") != "submit":
            continue
        later = timings[n + 1 :]
        image = next((m for m in later if m.get("event") == "image"), None)
        if image is None:
            continue
        out["next_image_ms"].append(image["t"] - mark["t"])
        ahead = next((m for m in later if m.get("event") == "advance"), None)
        shown_ahead = ahead is not None and ahead["image_id"] == image["image_id"] and ahead["t"] <= image["t"]
        out["shown_ahead"].append(1.0 if shown_ahead else 0.0)
        answer = ("image_confirmed", "image_received")
        got = next((m for m in later if m.get("event") in answer and m.get("image_id") == image["image_id"]), None)
        if got is not None:
            out["round_trip_ms"].append(got["t"] - mark["t"])
            if not shown_ahead:
                out["decode_draw_ms"].append(image["t"] - got["t"])
            elif got.get("event") == "image_confirmed":
                # 1: the kernel's objects differed from those shown ahead (pre-labels recomputed meanwhile)
                out["confirmed_other_objects"].append(0.0 if got.get("same", True) else 1.0)
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
