"""Quickstart, headless: live training on real images that ship with scikit-image, in a few minutes.

    pip install torch==2.13.0 -e ".[notebooks]"
    python examples/quickstart_headless.py    # writes quickstart-out/prelabels_*.png

The notebook ``notebooks/quickstart.ipynb`` is the same in the labeling app, where you draw the boxes.

The images are tiles of scikit-image's ``coins`` photograph (``livetrain_widgets.demo.coins``). A
simulated labeler (classical segmentation, standing in for you) labels the coins on each tile; the
embedded model trains in the background while it does; from about the fourth tile on, the model's
pre-labels are drawn next to the labeler's boxes so you can watch them improve. The Jupyter widgets drive this same API.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from livetrain_widgets import Annotation, LiveSession
from livetrain_widgets.demo import coins

OUT = Path("quickstart-out")


def draw(tile: np.ndarray, truth: Annotation, pred: Annotation, path: Path) -> None:
    im = Image.fromarray(tile).convert("RGB").resize((tile.shape[1] * 2, tile.shape[0] * 2))
    d = ImageDraw.Draw(im)
    for b in truth.boxes:
        d.rectangle([v * 2 for v in b], outline=(0, 200, 0), width=2)
    for b, s in zip(pred.boxes, pred.scores if pred.scores is not None else [], strict=False):
        d.rectangle([v * 2 for v in b], outline=(255, 60, 60), width=2)
        d.text((b[0] * 2 + 3, b[1] * 2 + 2), f"{s:.2f}", fill=(255, 60, 60))
    im.save(path)


async def main(steps_between: int = 20, out: Path = OUT) -> float:
    """Returns the mean evaluator score of the pre-labels that were shown."""
    global OUT
    OUT = Path(out)
    OUT.mkdir(parents=True, exist_ok=True)
    # The tiles are small (192x160): a 256 px model input keeps steps quick without losing detail.
    session = LiveSession(OUT / "project", task="detection", classes=["coin"], model_options={"input_size": 256})
    demo = coins()  # 16 tiles of the photograph, with the boxes a careful labeler would draw
    tiles = demo.images
    ids = session.add_images(tiles)
    await session.start()
    print(session.state.message)
    scores = []
    for n, (image_id, tile) in enumerate(zip(ids, tiles, strict=True), start=1):
        pred = await session.predict(image_id)
        truth = demo.annotations[n - 1]
        await session.submit(image_id, truth)
        rec = session.evaluator.history[-1] if session.evaluator.history else {}
        if pred.offered:
            draw(tile, truth, pred.annotation, OUT / f"prelabels_{n}.png")
            scores.append(rec.get("score") or 0.0)
        shown = f"{len(pred.annotation)} pre-labels, score {rec.get('score', 0.0):.2f}" if pred.offered else (
            "no pre-labels yet")
        print(f"tile {n}: model step {pred.step}: {shown}; {len(truth)} coins labeled. {session.state.message}")
        await session.wait_steps(steps_between, timeout=300)
    await session.stop()
    session.export("coco", OUT / "labels")
    session.export_model(OUT / "model")
    print(f"labels in {OUT / 'labels'}, model in {OUT / 'model'}; pictures: {OUT}/prelabels_*.png "
          "(green: labeler, red: pre-labels)")
    await session.close()
    return float(np.mean(scores)) if scores else 0.0


if __name__ == "__main__":
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    asyncio.run(main(steps))
