"""`livetrain simulate --mode stream`: the paper's correction protocol on tiny real files."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from PIL import Image

from livetrain_widgets.cli import main
from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.study.stream import (
    StreamStudyConfig,
    error_click,
    load_stream_frames,
    natural_key,
    read_idx,
    summarise,
)
from tests import _require


def _write_stack(folder, n: int = 8, size: int = 48) -> None:
    """A drifting bright disc, as image + binary mask PNGs numbered without zero padding (0..n-1)."""
    (folder / "image").mkdir(parents=True)
    (folder / "label").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        disc = (yy - 24) ** 2 + (xx - 14 - 2 * i) ** 2 <= 9**2
        img = rng.integers(0, 60, (size, size)).astype(np.uint8)
        img[disc] = 210
        Image.fromarray(img).save(folder / "image" / f"{i}.png")
        Image.fromarray(np.where(disc, 0, 255).astype(np.uint8)).save(folder / "label" / f"{i}.png")


def test_natural_order_and_inverted_masks(tmp_path) -> None:
    _write_stack(tmp_path, n=12)
    items, classes = load_stream_frames(tmp_path / "image", tmp_path / "label", "masks", classes=["disc"],
                                        invert=True)
    assert [it.name for it in items][:3] == ["0.png", "1.png", "2.png"] and items[10].name == "10.png"
    assert classes == ["disc"]
    t = items[0].target
    assert t.masks is not None and t.masks[0][24, 14] and not t.masks[0][0, 0]  # the disc, not the background
    tiles, _ = load_stream_frames(tmp_path / "image", tmp_path / "label", "masks", classes=["disc"], tile=32)
    assert len(tiles) == 12 * 4 and tiles[0].load().shape == (32, 32, 3)
    assert sorted(["10.png", "9.png"], key=lambda n: natural_key(tmp_path / n)) == ["9.png", "10.png"]


def test_error_click_picks_the_interior_of_the_largest_error() -> None:
    truth = np.zeros((1, 40, 40), bool)
    truth[0, 5:25, 5:25] = True
    pred = np.zeros((1, 40, 40), bool)
    pred[0, 5:25, 5:12] = True  # misses the right part of the square
    pred[0, 35:37, 35:37] = True  # and invents a small blob
    x, y, positive, label = error_click(Annotation.from_masks(pred, [0]), Annotation.from_masks(truth, [0]))
    assert positive and label == 0 and 12 <= x <= 25 and 5 <= y <= 25
    only_extra = truth.copy()
    only_extra[0, 30:38, 30:38] = True
    x, y, positive, _ = error_click(Annotation.from_masks(only_extra, [0]), Annotation.from_masks(truth, [0]))
    assert not positive and 30 <= x <= 38 and 30 <= y <= 38
    assert error_click(Annotation.from_masks(truth, [0]), Annotation.from_masks(truth, [0])) is None


def test_read_idx_round_trip_and_refusals(tmp_path) -> None:
    x = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    y = np.array([2, 0, 1], np.uint8)
    (tmp_path / "x.gz").write_bytes(gzip.compress(b"\0\0\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in x.shape)
                                                  + x.tobytes()))
    (tmp_path / "y").write_bytes(b"\0\0\x08\x01" + (3).to_bytes(4, "big") + y.tobytes())
    xi, yi = read_idx(tmp_path / "x.gz", tmp_path / "y")
    assert np.array_equal(xi, x) and yi.tolist() == [2, 0, 1]
    (tmp_path / "bad").write_bytes(b"\0\0\x08\x01" + (9).to_bytes(4, "big") + y.tobytes())
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "x.gz", tmp_path / "bad")
    (tmp_path / "png").write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "png", tmp_path / "y")


def test_summary_counts_and_reductions() -> None:
    def arm(corr: list[int]) -> dict:
        return {f"g{i}": {"corrections": c, "full_corrections": 0, "clicks": 0, "seconds": 3.0 * c,
                          "training_seconds": 0.0, "records": []} for i, c in enumerate(corr)}

    out = summarise({"base": arm([10, 2, 6]), "adapter": arm([5, 2, 3])}, "classification", StreamStudyConfig())
    assert out["base"]["corrections"] == 18 and out["adapter"]["corrections"] == 10
    assert out["reduction_corrections_pct"] == pytest.approx(44.4)
    assert out["groups"]["counted"] == ["g0", "g2"]  # groups needing at least five corrections without it
    assert out["groups"]["base_per_group"] == 8.0 and out["groups"]["adapter_per_group"] == 4.0
    assert out["groups"]["reduction_pct"] == 50.0


@pytest.mark.slow
def test_cli_stream_mode_segmentation(tmp_path, capsys) -> None:
    _write_stack(tmp_path / "stack")
    out = tmp_path / "out"
    code = main(["simulate", "--mode", "stream", "--quiet", "--task", "segmentation",
                 "--images", str(tmp_path / "stack" / "image"), "--labels", str(tmp_path / "stack" / "label"),
                 "--format", "masks", "--classes", "disc", "--invert", "--base-frames", "2", "--base-steps", "4",
                 "--model-option", "input_size=64", "--thresholds", "0.5,0.9", "--adapter", "epochs=5",
                 "--out", str(out)])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["mode"] == "stream" and res["streams"] == {"stream": 6} and res["adapter_parameters"] > 0
    for thr in ("0.5", "0.9"):
        r = res["thresholds"][thr]
        base = r["arms"]["base"]["stream"]
        # the base arm never trains, and each frame's record adds up to the totals
        assert all(rec["update_seconds"] is None for rec in base["records"])
        assert base["corrections"] == sum(rec["corrected"] for rec in base["records"])
        assert r["base"]["seconds"] == pytest.approx(sum(rec["human_seconds"] for rec in base["records"]), abs=0.1)
        adapted = r["arms"]["adapter"]["stream"]
        assert sum(rec["update_seconds"] is not None for rec in adapted["records"]) == adapted["corrections"]
    # a stricter threshold never needs fewer corrections from the same base
    assert res["thresholds"]["0.9"]["base"]["corrections"] >= res["thresholds"]["0.5"]["base"]["corrections"]
    assert "reduction" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_stream_mode_classification_groups_by_prediction(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n = 40
    y = np.arange(n) % 4
    x = np.zeros((n, 16, 16), np.uint8)
    for i, c in enumerate(y):  # class c lights up quadrant c
        x[i] = rng.integers(0, 40, (16, 16))
        x[i, (c // 2) * 8:(c // 2) * 8 + 8, (c % 2) * 8:(c % 2) * 8 + 8] += 180

    def idx(arr: np.ndarray) -> bytes:
        return b"\0\0\x08" + bytes([arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes()

    (tmp_path / "x-idx").write_bytes(idx(x))
    (tmp_path / "y-idx").write_bytes(idx(y.astype(np.uint8)))
    out = tmp_path / "out"
    code = main(["simulate", "--mode", "stream", "--quiet", "--task", "classification", "--format", "idx",
                 "--images", str(tmp_path / "x-idx"), "--labels", str(tmp_path / "y-idx"), "--classes", "a,b,c,d",
                 "--base-per-class", "1", "--base-steps", "3", "--top-k", "1", "--thresholds", "1",
                 "--model-option", "input_size=64", "--out", str(out)])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert sum(res["streams"].values()) == n - 4  # every pool image in exactly one group
    r = res["thresholds"]["1.0"]
    assert set(r["arms"]["base"]) == set(res["streams"]) and "groups" in r


def test_cli_refuses_idx_outside_stream_mode(tmp_path, capsys) -> None:
    code = main(["simulate", "--task", "classification", "--format", "idx", "--images", "x", "--labels", "y",
                 "--out", str(tmp_path)])
    assert code == 2 and "--mode stream" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_stream_mode_with_a_promptable_sam_checkpoint(tmp_path) -> None:
    """A SAM folder as the base: the first frame's box prompts it, clicks become point prompts."""
    _require.module("transformers")
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    from tests.test_stream_hf import _tiny_sam

    _tiny_sam().save_pretrained(str(tmp_path / "sam"))
    SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}).save_pretrained(
        str(tmp_path / "sam"))
    _write_stack(tmp_path / "stack", n=6)
    out = tmp_path / "out"
    code = main(["simulate", "--mode", "stream", "--quiet", "--task", "segmentation",
                 "--images", str(tmp_path / "stack" / "image"), "--labels", str(tmp_path / "stack" / "label"),
                 "--format", "masks", "--classes", "disc", "--invert", "--base-frames", "1",
                 "--base-model", str(tmp_path / "sam"), "--thresholds", "0.9", "--adapter", "epochs=3",
                 "--out", str(out)])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["base"]["steps"] is None and res["adapter_parameters"] > 0
    base = res["thresholds"]["0.9"]["arms"]["base"]["stream"]
    assert base["frames"] == 5 and base["mean_quality"] > 0  # the box prompt reached the model
    assert main(["simulate", "--mode", "stream", "--quiet", "--task", "segmentation",
                 "--images", str(tmp_path / "stack" / "image"), "--labels", str(tmp_path / "stack" / "label"),
                 "--format", "masks", "--classes", "disc", "--invert", "--base-model", str(tmp_path / "nothing"),
                 "--out", str(out)]) == 2
