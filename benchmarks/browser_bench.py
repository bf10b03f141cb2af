"""Figures of the Jupyter app in a real browser while the model trains (issue: canvases and live panel).

    python benchmarks/browser_bench.py --out bench-out/browser [--images 20] [--review 1.0]

Starts a throwaway JupyterLab, opens a notebook in Debian's Chromium (tests/e2e/harness.py), and:

1. runs ``LiveAnnotator`` on BCCD with the embedded model at its default size: the first 8 images come
   with their labels (imported VOC, as when a project continues), so the model trains at once; then a
   labeling run over ``--images`` images: each image is "reviewed" for ``--review`` seconds (training
   goes on meanwhile), its pre-labels are accepted with Y and Finish & Next is clicked;
2. from the canvas' timing marks: click on Finish & Next → next image drawn, and → its pre-labels drawn
   (p50 / p95), plus the kernel's own prediction time;
3. pans the 2299×2472 DeepForest image with its ~570 boxes (zoomed in 2.4×, a middle-button drag driven
   by pointer events from inside the page, one per animation frame, for 3 s) and reports the frames per
   second the canvas drew and its own drawing time per frame, with training running and stopped.

Prints a table and writes ``results.json``. Timings on a shared 2-core machine are noisy: compare the
two pan figures of one run, not figures of different runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.app_driver import AppView, latencies, open_app  # noqa: E402
from tests.e2e.harness import (  # noqa: E402
    JupyterServer,
    cell_output,
    launch_chromium,
    wait_for,
)

DATA = Path(os.environ.get("LIVETRAIN_DATA") or REPO.parent / "shared" / "data")
FOREST = DATA / "deepforest" / "2019_YELL_2_528000_4978000_image_crop2.png"


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def cells(n_images: int, ahead: int = 2) -> list[str]:
    bccd = DATA / "bccd"
    return [
        f"""import warnings; warnings.simplefilter("ignore")
from pathlib import Path
from livetrain_widgets import LabelCanvas, LiveAnnotator, LiveSession, SessionConfig
from livetrain_widgets.engine.ahead import AheadConfig
from livetrain_widgets.engine.formats import load_labels
paths = sorted(Path({str(bccd / "JPEGImages")!r}).glob("*.jpg"))[:{8 + n_images}]
session = LiveSession("cells", "detection", ["RBC", "WBC", "Platelets"],
                      config=SessionConfig(ahead=AheadConfig(images={ahead})))
session.add_images(paths[:8], labels={str(bccd / "Annotations")!r}, format="voc")
app = LiveAnnotator(paths[8:], session=session, height=480)""",
        "app",
        f"""forest = Path({str(FOREST)!r})
trees = load_labels("voc", forest.with_suffix(".xml"), [forest], ["Tree"]).annotations[forest.resolve()]
big = LabelCanvas("detection", ["Tree"], height=600)
big.show_image(forest, trees)
print(len(trees), "boxes")""",
        "big",
    ]


PAN_JS = """
async (canvas, seconds) => {
  // Pointer events from inside the page, one per animation frame: the browser, not the test driver's
  // round trips, sets the pace, so the figure is what a person dragging the image would see.
  const r = canvas.getBoundingClientRect();
  const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
  const fire = (type, x, y, buttons) => canvas.dispatchEvent(new PointerEvent(type, {
    clientX: x, clientY: y, button: type === "pointermove" ? -1 : 1, buttons, pointerId: 1,
    pointerType: "mouse", bubbles: true, cancelable: true }));
  globalThis.__livetrainTimings = [];
  globalThis.__livetrainCountFrames = true;
  fire("pointerdown", cx, cy, 4);  // the middle button pans
  const t0 = performance.now();
  let moves = 0;
  await new Promise((done) => {
    const step = () => {
      const t = performance.now() - t0;
      if (t > seconds * 1000) return done();
      const ph = (t / 2000) * 2 * Math.PI;
      fire("pointermove", cx + 250 * Math.sin(ph), cy + 150 * Math.sin(2 * ph), 4);
      moves += 1;
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  });
  fire("pointerup", cx, cy, 0);
  globalThis.__livetrainCountFrames = false;
  return { moves, seconds: (performance.now() - t0) / 1000, marks: globalThis.__livetrainTimings };
}
"""


def pan_fps(page, view: AppView, seconds: float = 3.0) -> dict[str, float]:
    """Pan the zoomed-in image for ``seconds``; frames counted by the canvas itself."""
    view.root.scroll_into_view_if_needed()
    view.root.focus()
    for _ in range(4):
        page.keyboard.press("+")  # zoom in 2.4×: the view moves over a larger image
    out = view.canvas.evaluate(PAN_JS, seconds)
    frames = [m for m in out["marks"] if m.get("event") == "frame"]
    draw = [m.get("draw_ms", 0.0) for m in frames]
    return {"fps": round(len(frames) / out["seconds"], 1), "frames": len(frames), "pointer_moves": out["moves"],
            "draw_ms_p50": pct(draw, 50), "draw_ms_p95": pct(draw, 95)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench-out/browser"))
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--review", type=float, default=1.0, help="seconds a person looks at each image")
    ap.add_argument("--ahead", type=int, default=2,
                    help="images predicted ahead (0: predict each image when it opens, as before)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    results: dict[str, object] = {"images": args.images, "review_s": args.review, "ahead": args.ahead}
    with tempfile.TemporaryDirectory() as tmp, JupyterServer(Path(tmp) / "root", "lab") as server, \
            sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        nb = server.root / "bench.ipynb"
        app, kernel = open_app(page, server, nb, cells(args.images, args.ahead), timeout=300)
        t0 = time.monotonic()
        kernel.wait_for("app.session.trainer.offering", True, timeout=600)
        results["seconds_until_prelabels_offered"] = round(time.monotonic() - t0, 1)
        page.evaluate("() => { globalThis.__livetrainTimings = []; }")
        if int(app.attr("prelabels") or 0) == 0:
            app.button("predict").click()
        image_id = app.wait_image()
        with_prelabels = 0
        for _ in range(args.images):
            app.root.scroll_into_view_if_needed()
            try:
                wait_for(lambda: int(app.attr("prelabels") or 0) > 0, timeout=10)
                with_prelabels += 1
            except AssertionError:
                pass
            time.sleep(args.review)  # the person looks at the image; the model trains
            app.root.focus()
            page.keyboard.press("y")
            app.button("submit").click()
            try:
                image_id = app.wait_image(not_id=image_id, timeout=30)
            except AssertionError:
                break  # the last image
        lat = latencies(app.timings())
        predicts = [t for t in kernel.eval("app.timings") if t["event"] == "predict"]
        kernel_predict = [t["ms"] for t in predicts]
        ages = [t["age"] for t in predicts if t.get("ahead")]
        state = kernel.eval("app.session.state.as_dict()")
        results.update({
            "images_with_prelabels": with_prelabels,
            "finish_to_next_image_ms": {"p50": pct(lat["next_image_ms"], 50), "p95": pct(lat["next_image_ms"], 95),
                                        "n": len(lat["next_image_ms"])},
            "round_trip_ms": {"p50": pct(lat["round_trip_ms"], 50), "p95": pct(lat["round_trip_ms"], 95)},
            "decode_draw_ms": {"p50": pct(lat["decode_draw_ms"], 50), "p95": pct(lat["decode_draw_ms"], 95)},
            "shown_ahead": int(sum(lat["shown_ahead"])),
            "confirmed_other_objects": int(sum(lat["confirmed_other_objects"])),
            "finish_to_prelabels_ms": {"p50": pct(lat["prelabels_ms"], 50), "p95": pct(lat["prelabels_ms"], 95),
                                       "n": len(lat["prelabels_ms"])},
            "kernel_predict_ms": {"p50": pct(kernel_predict, 50), "p95": pct(kernel_predict, 95)},
            "served_ahead": len(ages), "predictions": len(predicts),
            "age_steps": {"p50": pct(ages, 50), "p95": pct(ages, 95), "max": max(ages) if ages else None},
            "training_step_s": state["step_seconds"],
            "steps": state["step"],
            "phase_after_run": state["phase"],
        })
        forest_view = AppView(page, cell_output(page, 3))
        wait_for(lambda: forest_view.attr("ready") == "1", timeout=60)
        kernel.run("app.session.trainer.plateau.reset('bench'); app.session.trainer._notify()")
        time.sleep(1.0)
        results["pan_training"] = pan_fps(page, forest_view) | {"phase": kernel.eval("app.session.state.phase")}
        kernel.run("await app.session.stop()")
        forest_view.root.focus()
        page.keyboard.press("Home")
        results["pan_idle"] = pan_fps(page, forest_view) | {"phase": kernel.eval("app.session.state.phase")}
        page.screenshot(path=str(args.out / "forest.png"))
        kernel.run("await app.close()")
        browser.close()

    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    rows = [
        ("pre-labels offered after", f"{results['seconds_until_prelabels_offered']} s"),
        ("images with pre-labels", f"{results['images_with_prelabels']} / {args.images}"),
        ("Finish & Next → next image (p50/p95)", "{p50} / {p95} ms (n={n})".format(
            **results["finish_to_next_image_ms"])),
        ("  shown ahead (before the kernel answered)", "{} of {}".format(
            results["shown_ahead"], results["finish_to_next_image_ms"]["n"])),
        ("  confirmed with other pre-labels (recomputed)", "{} of {}".format(
            results["confirmed_other_objects"], results["shown_ahead"])),
        ("kernel round trip (p50/p95)", "{p50} / {p95} ms".format(**results["round_trip_ms"])),
        ("decoding + drawing, not shown ahead (p50/p95)", "{p50} / {p95} ms".format(**results["decode_draw_ms"])),
        ("Finish & Next → pre-labels shown (p50/p95)", "{p50} / {p95} ms (n={n})".format(
            **results["finish_to_prelabels_ms"])),
        ("kernel prediction time (p50/p95)", "{p50} / {p95} ms".format(**results["kernel_predict_ms"])),
        ("pre-labels computed ahead", f"{results['served_ahead']} of {results['predictions']} opens"),
        ("  their age at opening (p50/p95/max)", "{p50} / {p95} / {max} steps".format(**results["age_steps"])),
        ("training step (median)", f"{results['training_step_s']:.3f} s" if results["training_step_s"] else "-"),
        ("pan 2299×2472 + 570 boxes, training", f"{results['pan_training']['fps']} fps"),
        ("pan 2299×2472 + 570 boxes, idle", f"{results['pan_idle']['fps']} fps"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"(all figures in {args.out / 'results.json'})")


if __name__ == "__main__":
    main()
