"""Quickstart, headless: live training on real images that ship with scikit-image, in a few minutes.

    pip install torch==2.13.0 -e ".[examples]"
    python notebooks/quickstart.py            # writes quickstart-out/prelabels_*.png

The images are tiles of scikit-image's ``coins`` photograph. A simulated labeler (classical
thresholding, standing in for you) labels the coins on each tile; the embedded model trains in the
background while it does; from about the fourth tile on, the model's pre-labels are drawn next to the
labeler's boxes so you can watch them improve. The Jupyter widgets drive this same API.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from livetrain_widgets import Annotation, LiveSession

OUT = Path("quickstart-out")


TILES = [(y, x) for y in (0, 72, 143) for x in (0, 96, 192)]
TILE_H, TILE_W = 160, 192


def coin_tiles() -> list[np.ndarray]:
    """Nine overlapping 160x192 tiles of the 303x384 coins photograph."""
    from skimage import data

    coins = data.coins()
    return [coins[y : y + TILE_H, x : x + TILE_W] for y, x in TILES]


def coin_boxes() -> np.ndarray:
    """Boxes around every coin of the whole photograph, found the way scikit-image's tutorial does
    (edges + watershed from dark/bright markers, holes filled): the simulated labeler's answers."""
    from skimage import data
    from skimage.filters import sobel
    from skimage.segmentation import watershed

    coins = data.coins()
    markers = np.zeros(coins.shape, np.int32)
    markers[coins < 30] = 1
    markers[coins > 150] = 2
    fg = ndimage.binary_fill_holes(watershed(sobel(coins), markers) == 2)
    labels, _ = ndimage.label(fg)
    boxes = []
    for sl in ndimage.find_objects(labels):
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if h * w >= 150:
            boxes.append([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop])
    return np.array(boxes, np.float32)


def simulated_labeler(index: int, boxes: np.ndarray) -> Annotation:
    """The coins of one tile: those with at least 60% of their box inside it, clipped to the tile."""
    y, x = TILES[index]
    b = boxes - np.array([x, y, x, y], np.float32)
    clipped = b.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, TILE_W)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, TILE_H)
    area = lambda a: (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)  # noqa: E731
    keep = area(clipped) >= 0.6 * area(b)
    return Annotation(TILE_W, TILE_H, boxes=clipped[keep], labels=np.zeros(int(keep.sum()), np.int64))


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
    tiles = coin_tiles()
    all_boxes = coin_boxes()
    ids = session.add_images(tiles)
    await session.start()
    print(session.state.message)
    scores = []
    for n, (image_id, tile) in enumerate(zip(ids, tiles, strict=True), start=1):
        pred = await session.predict(image_id)
        truth = simulated_labeler(n - 1, all_boxes)
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
