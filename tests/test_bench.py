"""``livetrain bench``: every system figure is measured and written, on synthetic data and on BCCD.

Tiny settings (a few images, steps and probes, 128 px input) keep each run to seconds; the values are
only checked for sanity, not for speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from livetrain_widgets import Annotation, LiveSession
from livetrain_widgets.cli import main
from livetrain_widgets.engine._output_folder import MARKER, OutputFolder
from livetrain_widgets.engine.formats import FORMATS as ENGINE_FORMATS
from livetrain_widgets.study import bench

from . import _require
from .tiny_model import TinyClassifier, two_class_images

IMAGES, _ = two_class_images(2)

TINY = ["--steps-per-image", "2", "--probes", "4", "--input-size", "128", "--batch-size", "2", "--no-progress"]


def check_device_figures(r: dict[str, Any], labeled: int, submissions: int) -> None:
    assert r["device"] == "cpu"
    s = r["setup"]
    assert s["batch_size"] == 2 and s["torch_threads"] >= 1 and s["input_size"] == 128
    assert max(s["network_input"]) == 128 and len(s["image_size"]) == 2

    step = r["step_s"]
    assert step["n"] >= labeled and 0 < step["median"] <= step["p95"]

    p = r["predict_s"]
    for key in ("idle", "training"):
        assert p[key]["n"] == 4 and 0 < p[key]["p50"] <= p[key]["p95"]
    assert p["training"]["while_training"] >= 1
    assert p["ratio"]["p50"] == pytest.approx(p["training"]["p50"] / p["idle"]["p50"])
    assert p["ratio"]["p95"] > 0

    lag = r["loop_lag_s"]
    assert lag["n"] > 0 and 0 <= lag["p50"] <= lag["p95"] <= lag["max"]

    # Every submission made while the trainer ran was trained on within the steps that followed it
    # (in the labeling run, the first two wait for training to start and are not counted).
    for sb, n in ((r["submit_to_batch"], submissions), (r["labeling"]["submit_to_batch"], labeled - 2)):
        assert sb["n"] == n and sb["not_seen"] == 0
        assert 0 <= sb["seconds"]["p50"] <= sb["seconds"]["max"]
        assert 1 <= sb["steps"]["p50"] <= sb["steps"]["max"] <= 8
    assert len(r["labeling"]["submit_to_batch"]["per_submission"]) == labeled

    ck = r["checkpoint"]
    assert ck["loads"] is True and ck["step"] >= step["n"]
    assert ck["save_s"]["median"] > 0 and ck["load_s"]["median"] > 0 and ck["save_while_training_s"]["median"] > 0
    assert ck["size_mb"] > 1

    assert r["memory"]["peak_rss_mb"] > 50 and r["memory"]["cuda_max_allocated_mb"] is None

    lab = r["labeling"]
    assert lab["images"] == labeled and lab["seconds"] > 0 and lab["final_step"] >= 1
    assert len(lab["per_image"]) == labeled


def test_bench_on_synthetic_data_writes_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["bench", "--out", str(out), "--labeled", "5", "--submissions", "2", "--opens", "4", "--seed", "3",
                 *TINY]) == 0
    res = json.loads((out / "results.json").read_text())

    assert set(res) >= {"config", "data", "cpu", "gpu", "cpu_reason", "gpu_reason"}
    env = res["config"]["environment"]
    assert env["torch"] == torch.__version__ and env["cpu_count"] >= 1 and env["platform"]
    assert res["config"]["arguments"]["labeled"] == 5 and res["config"]["arguments"]["seed"] == 3
    assert res["data"]["source"] == "synthetic" and res["data"]["image_size"] == [480, 640]
    assert res["data"]["images"] == 5 + 2 + (4 + 1) + 1 and res["data"]["opens"] == 4
    check_device_figures(res["cpu"], labeled=5, submissions=2)
    # Finish & Next: two opens served from pre-labels computed ahead, two predicted on opening
    c = res["cpu"]["click_to_prelabels"]
    assert c["n"] == 4 and c["ahead_s"]["n"] == 2 and c["fresh_s"]["n"] == 2
    assert c["served_ahead"] == sum(r["ahead"] for r in c["per_open"]) >= 1
    assert not any(r["ahead"] for r in c["per_open"] if r["fresh"])
    assert 0 <= c["age_steps"]["max"] <= c["config"]["max_age_steps"]
    assert all(r["age"] <= 1 for r in c["per_open"] if r["fresh"])  # a step may end while it is stored
    judged = [r for r in c["per_open"] if r["ahead"]]
    assert c["score_ahead_vs_now"]["n"] == len(judged) and all(-1 <= r["score_ahead"] <= 1 for r in judged)
    assert set(res["cpu"]["labeling"]["scores_at"]) == {"5"}
    if torch.cuda.is_available():
        assert res["gpu"]["device"].startswith("cuda") and res["gpu"]["memory"]["cuda_max_allocated_mb"] > 0
    else:
        assert res["gpu"] is None and "cuda" in res["gpu_reason"]
    assert (out / "project" / "cpu" / "labels.sqlite").exists()

    table = capsys.readouterr().out
    for words in ("training step", "prediction idle", "prediction while training", "ratio training/idle",
                  "event-loop lag", "submission -> first batch", "checkpoint save", "peak RSS",
                  "evaluator after 5 images", "results.json", "2 submitted", "Finish & Next -> pre-labels",
                  "pre-label age at opening", "served ahead / current weights"):
        assert words in table
    if not torch.cuda.is_available():
        assert "GPU: not run" in table


def test_bench_on_bccd_folder(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bccd = _require.data("bccd", "JPEGImages").parent
    out = tmp_path / "bccd"
    argv = ["bench", "--out", str(out), "--images", str(bccd / "JPEGImages"), "--labels",
            str(bccd / "Annotations"), "--format", "voc", "--classes", "RBC,WBC,Platelets",
            "--labeled", "3", "--submissions", "1", "--opens", "0", "--device", "cpu", *TINY]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["source"] == "folder" and res["data"]["format"] == "voc" and res["data"]["images"] == 5
    assert res["data"]["image_size"] == [480, 640]
    check_device_figures(res["cpu"], labeled=3, submissions=1)
    assert res["cpu"]["setup"]["classes"][:3] == ["RBC", "WBC", "Platelets"]
    assert res["gpu"] is None and res["gpu_reason"] == "not asked for (device='cpu')"
    assert "JPEGImages (voc)" in capsys.readouterr().out


async def test_run_bench_api_from_a_running_loop(tmp_path: Path) -> None:
    # A notebook cell has a running loop: run_bench must still work there (and not need `await`).
    # Run again into the folder of an earlier bench: its scratch project is replaced, and a file the user put
    # beside bench's own is left alone.
    earlier = OutputFolder(tmp_path / "api", "livetrain bench")
    (earlier.scratch("project") / "stale.txt").write_text("from an earlier run")
    earlier.write("results.json", "{}")
    (tmp_path / "api" / "notes.txt").write_text("the user's")
    res = bench.run_bench(tmp_path / "api", labeled=2, steps_per_image=1, submissions=0, opens=0, probes=1,
                          input_size=96,
                          batch_size=2, device="cpu", progress=False)
    assert res == json.loads((tmp_path / "api" / "results.json").read_text())
    assert not (tmp_path / "api" / "project" / "stale.txt").exists()
    assert (tmp_path / "api" / "project" / "cpu" / "labels.sqlite").exists()
    assert (tmp_path / "api" / "notes.txt").read_text() == "the user's"
    assert res["cpu"]["checkpoint"]["loads"] and res["cpu"]["predict_s"]["idle"]["n"] == 1
    assert res["cpu"]["submit_to_batch"]["n"] == 0 and res["cpu"]["submit_to_batch"]["seconds"]["p50"] is None
    assert "n/a" in bench.format_table(res)


def test_synthetic_data_is_seeded_and_boxed_exactly() -> None:
    images, labels = bench.synthetic_detection(3, seed=7, size=(120, 160), objects=(2, 3))
    again, labels2 = bench.synthetic_detection(3, seed=7, size=(120, 160), objects=(2, 3))
    assert all(np.array_equal(a, b) for a, b in zip(images, again, strict=True))
    assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(labels, labels2, strict=True))
    for img, ann in zip(images, labels, strict=True):
        assert img.shape == (120, 160, 3) and img.dtype == np.uint8
        assert (ann.width, ann.height) == (160, 120) and 1 <= len(ann) <= 3
        assert set(ann.labels.tolist()) <= {0, 1, 2}
        x0, y0, x1, y1 = ann.boxes.T
        assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 160).all() and (y1 <= 120).all()
    # tight boxes: a filled rectangle is one colour exactly inside its box, and not all of it just outside
    rects = [(img, box) for img, ann in zip(images, labels, strict=True)
             for box, c in zip(ann.boxes.astype(int), ann.labels, strict=True) if c == 0]
    assert rects
    for img, (x0, y0, x1, y1) in rects:
        fill = img[y0, x0]
        assert (img[y0:y1, x0:x1] == fill).all()
        ring = [img[y0 - 1, x0:x1]] if y0 > 0 else [img[y1, x0:x1]]
        assert not (ring[0] == fill).all()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--labels", "x", "--format", "voc"], "need --images"),
        (["--images", "x"], "needs --labels and --format"),
        (["--images", "x", "--labels", "y"], "needs --labels and --format"),
        (["--task", "segmentation"], "synthetic data is for detection"),
        (["--labeled", "1"], "at least 2"),
    ],
)
def test_bad_arguments_fail_before_any_training(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--out", str(tmp_path / "o"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.json").exists()


@_require.not_applicable(torch.cuda.is_available(), "checks the refusal where there is no GPU")
def test_cuda_without_a_gpu_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err


def test_help_and_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.FORMATS == ENGINE_FORMATS
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "System figures of the live-training engine" in text and "--steps-per-image" in text


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


async def test_bench_never_touches_a_labeling_project_at_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --out named the folder of a real project, open in a session (a notebook): bench deleted out/project with
    # everything labeled, and the open session went on acknowledging labels into a deleted file.
    out = tmp_path / "work"
    session = LiveSession(out / "project", "classification", ["left", "right"], model=TinyClassifier())
    try:
        ids = session.add_images(IMAGES[:2])
        await session.submit(ids[0], Annotation(16, 16, category=0))
        before = tree(out)
        assert main(["bench", "--out", str(out), *TINY]) == 2
        err = capsys.readouterr().err
        assert f"{out} already holds files that livetrain did not write (project)" in err, err
        assert tree(out) == before  # nothing deleted, nothing written (not even a marker)
        await session.submit(ids[1], Annotation(16, 16, category=1))
        assert session.store.labeled_ids() == ids
    finally:
        await session.close()
    # bench's own scratch folder replaced by something else later: not deleted either
    mine = tmp_path / "mine"
    OutputFolder(mine, "livetrain bench").scratch("project")
    (mine / "project" / MARKER).unlink()
    (mine / "project" / "labels.sqlite").write_bytes(b"a project's labels")
    assert main(["bench", "--out", str(mine), *TINY]) == 2
    assert f"{mine / 'project'} is not the scratch folder livetrain bench made" in capsys.readouterr().err
    assert (mine / "project" / "labels.sqlite").read_bytes() == b"a project's labels"
