"""`livetrain simulate`: strategy parsing, tiling, the synchronous trainer API it drives, and quick
end-to-end runs of the command on real data (small --limit, small model input)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from livetrain_widgets import Annotation
from livetrain_widgets.cli import main as cli
from livetrain_widgets.study.dataset import crop_annotation, tile_windows
from livetrain_widgets.study.simulate import Strategy, _default_milestones
from tests._require import DATA, needs_data
from tests.tiny_model import TinyClassifier, two_class_images


def test_strategy_options_parse_and_bad_ones_are_named() -> None:
    s = Strategy.parse("live:uniform,noplateau,offer=5,steps=7")
    assert (s.kind, s.sampler, s.plateau, s.offer_from, s.steps) == ("live", "uniform", False, 5, 7)
    assert Strategy.parse("hitl:at=20/5/10").at == [5, 10, 20]
    s = Strategy.parse("live:fixedthreshold,nowithhold,nobalance,boost=3,restart=40")
    assert (s.auto_threshold, s.auto_offer, s.class_balance, s.lr_boost, s.restart_steps) == (
        False, False, False, 3.0, 40)
    with pytest.raises(ValueError, match="option 'boost'"):
        Strategy.parse("live:boost")
    assert Strategy.parse("live:front=4").front == 4.0
    with pytest.raises(ValueError, match=r"option 'front=0\.5'"):
        Strategy.parse("live:front=0.5")
    assert Strategy.parse("static:k=0,model=/tmp/m").model == "/tmp/m"
    with pytest.raises(ValueError, match="unknown strategy 'auto'"):
        Strategy.parse("auto")
    with pytest.raises(ValueError, match="option 'uniform'"):
        Strategy.parse("hitl:uniform")


def test_hitl_milestones_scale_the_reports_schedule() -> None:
    assert _default_milestones(10_000) == [200, 1000, 2000, 5000]
    assert _default_milestones(100) == [2, 10, 20, 50]
    assert _default_milestones(12) == [2, 6]


def test_tiles_cover_the_image_and_keep_mostly_visible_objects() -> None:
    wins = tile_windows(1000, 450, 400)
    assert {(x, y) for x, y, _, _ in wins} == {(0, 0), (400, 0), (600, 0), (0, 50), (400, 50), (600, 50)}
    assert all((w, h) == (400, 400) for *_, w, h in wins)
    assert tile_windows(300, 200, 400) == [(0, 0, 300, 200)]
    ann = Annotation(1000, 450, [[390, 10, 420, 40], [380, 100, 430, 140], [10, 10, 50, 50]], [0, 1, 0])
    tile = crop_annotation(ann, 400, 0, 400, 400)
    # box 0 has 2/3 inside -> kept (clipped); box 1 has 3/5 -> kept; box 2 is outside
    np.testing.assert_allclose(tile.boxes, [[0, 10, 20, 40], [0, 100, 30, 140]])
    assert tile.labels.tolist() == [0, 1]
    # at x=410 box 0 shows 1/3 and box 1 2/5 of itself: both left out
    assert len(crop_annotation(ann, 410, 0, 400, 400)) == 0


def test_masks_are_cropped_with_the_tile() -> None:
    m = np.zeros((2, 20, 30), bool)
    m[0, 2:6, 8:12] = True  # fully in the tile x>=5
    m[1, 2:6, 0:8] = True  # 3/8 in it: dropped
    ann = Annotation.from_masks(m, [0, 0])
    t = crop_annotation(ann, 5, 0, 20, 20)
    assert len(t) == 1 and t.masks.shape == (1, 20, 20) and t.masks.sum() == 16
    np.testing.assert_allclose(t.boxes, [[3, 2, 7, 6]])


def test_run_steps_trains_synchronously_and_stops_at_a_plateau() -> None:
    from livetrain_widgets.engine.plateau import PlateauConfig
    from livetrain_widgets.engine.trainer import Trainer, TrainerConfig

    images, labels = two_class_images(6)
    targets = [Annotation(16, 16, category=c) for c in labels]
    tr = Trainer(TinyClassifier(), lambda k: images[k], TrainerConfig(batch_size=2),
                 plateau_config=PlateauConfig(window=5, patience=1, threshold=10.0, noise_z=0))
    assert tr.run_steps(5) == []  # no samples yet: nothing to train on
    tr.set_sample(0, targets[0])
    tr.set_sample(1, targets[1])
    first = tr.run_steps(3)
    assert [r.step for r in first] == [1, 2, 3] and tr.step == 3
    # a 10x improvement per window is demanded: the detector fires at its first check (10 valid losses)
    rest = tr.run_steps(100)
    assert tr.plateau.plateaued and tr.step == 10 and len(rest) == 7
    assert tr.run_steps(5) == []
    preds, step = tr.predict_now([images[2]])
    assert step == 10 and preds[0].category_scores is not None
    tr.close()


def test_uniform_sampler_and_no_plateau_options() -> None:
    from livetrain_widgets.engine.sampler import UniformSampler
    from livetrain_widgets.engine.trainer import Trainer, TrainerConfig

    images, labels = two_class_images(4)
    targets = [Annotation(16, 16, category=c) for c in labels]
    tr = Trainer(TinyClassifier(), lambda k: images[k], TrainerConfig(batch_size=2, sampler="uniform", plateau=False))
    assert isinstance(tr.sampler, UniformSampler)
    for k in range(4):
        tr.set_sample(k, targets[k])
    # the detector watches (the loss plot draws its history) but never pauses training
    assert len(tr.run_steps(30)) == 30 and not tr.paused_by_plateau and tr.plateau.step == 30
    tr.close()
    with pytest.raises(ValueError, match="sampler must be"):
        TrainerConfig(sampler="random")


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "out"
    assert cli(["simulate", *args, "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "results.json").read_text())


@needs_data
@pytest.mark.slow
def test_simulate_bccd_quick_all_strategies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bccd = DATA / "bccd"
    res = _run(tmp_path, "--task", "detection", "--images", str(bccd / "JPEGImages"), "--labels",
               str(bccd / "Annotations"), "--format", "voc", "--limit", "6", "--holdout-max", "3",
               "--steps-per-image", "2", "--offline-max-steps", "6", "--eval-at", "4",
               "--model-option", "input_size=160", "--strategy", "live", "--strategy", "hitl:at=3",
               "--strategy", "static:k=3", "--strategy", "manual", "--strategy", "live:uniform,offer=3",
               "--strategy", "live:front=3")
    table = capsys.readouterr().out
    for name in ("live", "hitl", "static", "manual", "offline (ref.)", "ablation live:uniform,offer=3"):
        assert name in table
    strat = res["strategies"]
    assert set(strat) == {"live", "hitl:at=3", "static:k=3", "manual", "live:uniform,offer=3", "live:front=3"}
    # front-loaded compute: 3x the 2 steps at first, decaying with every label beyond the first two
    assert [r["steps_trained"] for r in strat["live:front=3"]["records"]] == [0, 0, 6, 6, 5, 5]
    man = strat["manual"]
    # manual: nothing offered, every image charged exactly the cost model's manual time
    assert all(not r["offered"] and r["seconds"] == r["manual_seconds"] for r in man["records"])
    assert man["summary"]["hours_vs_manual"] == 1.0 and man["heldout"] is None
    expected = sum(5.0 + 7.0 * r["objects"] for r in man["records"]) / 3600
    assert man["summary"]["work_hours"] == pytest.approx(expected, abs=1e-3)
    # hitl: one retrain after 3 images, pre-labels from image 4 on; labeling waits for the retrain (its own
    # seconds of training, with fixed steps per image there is no real-time rate to derive it from)
    hitl = strat["hitl:at=3"]
    (retrain,) = hitl["retrains"]
    assert retrain["after_images"] == 3
    assert hitl["summary"]["pause_days"] == pytest.approx(retrain["pause_days"], abs=1e-5)
    assert retrain["pause_days"] == pytest.approx(retrain["seconds"] / 3600 / 6, abs=1e-5)
    assert [r["offered"] for r in hitl["records"]] == [False] * 3 + [True] * 3
    assert hitl["records"][-1]["calendar_days"] == pytest.approx(
        hitl["records"][-1]["work_hours"] / 6 + retrain["pause_days"], abs=1e-4)
    # live: 2 steps while each image from the 3rd is labeled (training needs 2 labels), on the labels before it
    live = strat["live"]
    assert [r["steps_trained"] for r in live["records"]] == [0, 0, 2, 2, 2, 2]
    assert live["summary"]["training_steps"] == 8
    assert [r["model_step"] for r in live["records"]] == [0, 0, 0, 2, 4, 6]
    assert "4" in live["heldout_at"] and 0.0 <= live["heldout"]["map50"] <= 1.0
    # the rarest class in the walk, its recall at the fixed threshold on the held-out images
    assert live["summary"]["rarest_class"] in ("WBC", "Platelets")
    k = ["RBC", "WBC", "Platelets"].index(live["summary"]["rarest_class"])
    assert live["summary"]["rarest_recall"] == live["heldout"]["recall_per_class"][k]
    assert len(live["heldout"]["ap50_per_class"]) == 3 and "recall" in table
    # the threshold each image was shown at: one per class, chosen once the tuner has 3 judged images
    assert all(len(r["threshold"]) == 3 for r in live["records"])
    assert all(r["threshold"] == [0.3] * 3 for r in live["records"][:3])
    forced = strat["live:uniform,offer=3"]
    assert [r["offered"] for r in forced["records"]] == [False, False, True, True, True, True]
    assert "live:uniform,offer=3" in res["ablations"]
    # the offline reference gets at least the live model's 8 steps, though --offline-max-steps is 6
    assert res["offline"]["steps"] == 8 and "heldout_vs_offline" in live["summary"]
    assert res["costs"]["box_draw_s"] == 7.0 and "Papadopoulos" in res["cost_sources"]["box_draw_s"]
    for p in ("progress_calendar.png", "progress_hours.png", "speed_hours.png", "speed_images.png"):
        assert (tmp_path / "out" / p).stat().st_size > 5000


@needs_data
@pytest.mark.slow
def test_simulate_masks_and_classes_quick(tmp_path: Path) -> None:
    mem = DATA / "membrane"
    res = _run(tmp_path / "m", "--task", "segmentation", "--images", str(mem / "image"), "--labels",
               str(mem / "label"), "--format", "masks", "--limit", "4", "--holdout-max", "2",
               "--steps-per-image", "1", "--no-offline", "--model-option", "input_size=128",
               "--strategy", "live", "--strategy", "manual", "--cost", "mask_draw_s=100")
    assert res["metric"] == "mIoU" and res["costs"]["mask_draw_s"] == 100
    assert all(r["seconds"] == 130.0 for r in res["strategies"]["manual"]["records"])  # 30 s + 1 mask
    nuc = DATA / "nuclei"
    res = _run(tmp_path / "n", "--task", "segmentation", "--images", str(nuc / "img2d.tif"), "--labels",
               str(nuc / "mask2d.tif"), "--format", "instances", "--tile", "128", "--limit", "3",
               "--steps-per-image", "1", "--no-offline", "--model-option", "input_size=128",
               "--strategy", "live", "--strategy", "manual")
    assert res["metric"] == "mAP@0.5" and res["dataset"]["walk"] == 3
    # calibrated: a manual tile costs 210 s on average over the walk
    man = [r["seconds"] for r in res["strategies"]["manual"]["records"]]
    assert np.mean(man) == pytest.approx(210.0, abs=0.01)
    bccd = DATA / "bccd"
    res = _run(tmp_path / "c", "--task", "classification", "--crops", "--images", str(bccd / "JPEGImages"),
               "--labels", str(bccd / "Annotations"), "--format", "voc", "--limit", "5", "--holdout-max", "4",
               "--compute-ratio", "auto", "--max-steps-per-image", "3", "--no-offline",
               "--model-option", "input_size=64", "--strategy", "live:offer=3", "--strategy", "manual")
    assert res["dataset"]["task"] == "classification" and res["metric"] == "accuracy"
    # real-time training: the ratio is the inverse of the step time measured first, capped per image
    cfg = res["config"]
    assert cfg["measured_step_seconds"] > 0 and cfg["steps_per_image"] is None
    assert cfg["compute_ratio"] == pytest.approx(1 / cfg["measured_step_seconds"], rel=1e-3)
    trained = [r["steps_trained"] for r in res["strategies"]["live:offer=3"]["records"]]
    assert trained[:2] == [0, 0] and all(0 <= t <= 3 for t in trained) and sum(trained) > 0
    kinds = res["strategies"]["live:offer=3"]["summary"]["corrections"]
    assert sum(kinds.values()) == 5 and set(kinds) == {"confirmed", "picked", "chosen"}


def test_bad_arguments_give_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(["simulate", "--task", "detection", "--images", str(tmp_path), "--labels", str(tmp_path),
                "--format", "voc", "--out", str(tmp_path / "o")])
    assert code == 2 and "no images found" in capsys.readouterr().err
    code = cli(["simulate", "--task", "detection", "--images", str(tmp_path), "--labels", str(tmp_path),
                "--format", "voc", "--strategy", "live:fast", "--out", str(tmp_path / "o")])
    assert code == 2 and "option 'fast'" in capsys.readouterr().err


def test_recall_per_class_by_hand() -> None:
    from livetrain_widgets.study.simulate import recall_per_class

    b = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], np.float32)
    truth = Annotation(64, 64, b, np.array([0, 0, 1]))
    # class 0: one found, one predicted with the wrong class; class 1: found twice (counted once)
    pred = Annotation(64, 64, np.array([[0, 0, 10, 11], [20, 20, 30, 30], [40, 40, 50, 50], [40, 40, 50, 49]],
                                       np.float32), np.array([0, 1, 1, 1]), np.array([0.9, 0.8, 0.7, 0.6]))
    assert recall_per_class([pred], [truth], 3) == [0.5, 1.0, None]
    assert recall_per_class([Annotation.empty(64, 64)], [truth], 3) == [0.0, 0.0, None]


@needs_data
def test_saved_predictions_replay_each_display_policy_exactly(tmp_path: Path) -> None:
    """benchmarks/threshold_replay.py charges display policies on a walk's saved predictions; it must give
    the working hours of the runs it stands in for, digit for digit."""
    import importlib.util

    bccd = DATA / "bccd"
    res = _run(tmp_path, "--task", "detection", "--images", str(bccd / "JPEGImages"), "--labels",
               str(bccd / "Annotations"), "--format", "voc", "--classes", "RBC,WBC,Platelets", "--limit", "7",
               "--holdout-max", "2", "--steps-per-image", "3", "--eval-at", "7", "--no-offline",
               "--model-option", "input_size=128", "--save-predictions",
               "--strategy", "live", "--strategy", "live:fixedthreshold")
    out = tmp_path / "out"
    assert {p.name for p in (out / "predictions").iterdir()} == {"live.json.gz", "live_fixedthreshold.json.gz"}
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("threshold_replay", root / "benchmarks" / "threshold_replay.py")
    replay_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay_mod)
    results, rows = replay_mod.load(out, "live")
    assert [r["i"] for r in rows] == list(range(1, 8))
    from livetrain_widgets.engine.costs import CostModel

    costs = CostModel(**results["costs"])
    tuned = replay_mod.replay(rows, "detection", 3, costs, prior=0.3)
    fixed = replay_mod.replay(rows, "detection", 3, costs, fixed=0.3, prior=0.3)
    for r, name in ((tuned, "live"), (fixed, "live:fixedthreshold")):
        assert round(r["hours"], 4) == res["strategies"][name]["summary"]["work_hours"]
    assert round(tuned["manual_hours"], 4) == res["strategies"]["live"]["summary"]["manual_hours_same_images"]


def test_issue21_strategy_options_parse() -> None:
    assert Strategy.parse("hitl").schedule == "daily"
    assert Strategy.parse("hitl:proportional").schedule == "proportional"
    h = Strategy.parse("hitl:at=4/2,accept=charged")
    assert (h.schedule, h.at, h.accept) == (None, [2, 4], "charged")
    s = Strategy.parse("live:order=uncertain,accept=truth")
    assert (s.order, s.accept, Strategy.parse("live").accept, Strategy.parse("live").order) == (
        "uncertain", "truth", "stored", "random")
    for bad in ("live:order=hardest", "live:accept=maybe", "manual:accept=stored", "hitl:order=file",
                "live:plateau=1.5", "live:plateau=x", "live:window=1", "hitl:plateau=0.03"):
        with pytest.raises(ValueError, match="is not understood"):
            Strategy.parse(bad)


def test_a_strategy_may_pause_sooner_or_later_than_the_trainers_default() -> None:
    from livetrain_widgets.engine.plateau import PlateauConfig
    from livetrain_widgets.study.simulate import StudyConfig, _plateau_config

    default = _plateau_config(StudyConfig(plateau_window=80), Strategy.parse("live"))
    assert (default.window, default.threshold) == (80, PlateauConfig().threshold)
    own = _plateau_config(StudyConfig(plateau_window=80), Strategy.parse("live:plateau=0.03,window=50"))
    assert (own.window, own.threshold, own.patience) == (50, 0.03, PlateauConfig().patience)


def test_retrain_pauses_are_derived_from_steps_and_step_time() -> None:
    from livetrain_widgets.study.simulate import StudyConfig, _hitl_due, retrain_pause_days

    cfg = StudyConfig(measured_step_seconds=0.9, workday_hours=6.0)
    # labeling waits for a mid-day retrain: the 1,080 s it took = 0.3 h = 0.05 of a 6-hour day
    assert retrain_pause_days(1200, 1080.0, cfg, overnight=False) == pytest.approx(0.3 / 6)
    # overnight, the 18 hours off cover it: no day lost; a retrain of 20 h costs 2 h of the next day
    assert retrain_pause_days(1200, 1080.0, cfg, overnight=True) == 0.0
    assert retrain_pause_days(80_000, 20 * 3600.0, cfg, overnight=True) == pytest.approx(2 / 6)
    # no seconds recorded: its steps at the measured step time, else at the real-time rate of the ratio
    assert retrain_pause_days(1200, 0.0, cfg, overnight=False) == pytest.approx(0.3 / 6)
    assert retrain_pause_days(100, 0.0, StudyConfig(compute_ratio=2.0), overnight=False) == pytest.approx(
        50 / 3600 / 6)
    assert retrain_pause_days(100, 360.0, StudyConfig(hitl_pause_days=1.0), overnight=False) == 1.0  # as assumed
    daily = Strategy.parse("hitl")
    assert not _hitl_due(daily, 30, 100, 6 * 3600 - 1, cfg, [])
    assert _hitl_due(daily, 30, 100, 6 * 3600, cfg, [])
    assert not _hitl_due(daily, 100, 100, 9 * 3600, cfg, [])  # the last image: nothing left to pre-label
    assert _hitl_due(Strategy.parse("hitl:at=5"), 5, 100, 0.0, cfg, [5])


def test_compute_defaults_to_real_time_and_fixed_steps_is_the_ablation() -> None:
    from livetrain_widgets.study.simulate import StudyConfig, resolve_compute

    assert (StudyConfig().compute_ratio, StudyConfig().steps_per_image) == ("auto", None)
    fixed = resolve_compute(None, StudyConfig(steps_per_image=15))  # no measurement needed
    assert (fixed.steps_per_image, fixed.compute_ratio) == (15, None)
    assert resolve_compute(None, StudyConfig(compute_ratio=1.5)).compute_ratio == 1.5
    with pytest.raises(ValueError, match="steps_per_image or compute_ratio"):
        resolve_compute(None, StudyConfig(compute_ratio=None))


def test_sensitivity_reprices_counts_and_reports_ranges() -> None:
    from livetrain_widgets.study.sensitivity import sensitivity, sensitivity_table

    def rec(**counts: int) -> dict:
        return {"counts": {"correct": 0, "imprecise": 0, "wrong_class": 0, "extra": 0, "missed": 0, **counts}}

    strat = {
        "live": {"strategy": {"kind": "live"}, "records": [rec(missed=4), rec(correct=4), rec(correct=3, extra=2)]},
        "hitl": {"strategy": {"kind": "hitl"}, "records": [rec(missed=4), rec(missed=4), rec(correct=3, missed=1)]},
        "manual": {"strategy": {"kind": "manual"}, "records": [rec(missed=4)] * 3},
    }
    from livetrain_widgets.engine.costs import CostModel

    results = {"dataset": {"task": "detection"}, "costs": CostModel().as_dict(), "strategies": strat}
    sens = sensitivity(results)
    assert sens["combinations"] == 3 ** 6
    r = sens["ratios"]["live"]["manual"]
    # at the defaults: (5+28) + (5+4) + (5+3+3) = 53 s against 3 x 33 = 99 s
    assert r["at_defaults"] == pytest.approx(53 / 99, abs=1e-4)
    assert r["min"] < r["at_defaults"] < r["max"] < 1
    # cheapest for live: fast review and handling, 25.5 s per drawn box; dearest: the reverse
    lo = (3 + 25.5 * 4 + 3 + 0.5 * 4 + 3 + 1.5 + 2) / (3 * (3 + 4 * 25.5))
    hi = (8 + 7 * 4 + 8 + 2 * 4 + 8 + 6 + 5) / (3 * (8 + 4 * 7))
    assert r["min"] == pytest.approx(lo, abs=1e-4) and r["max"] == pytest.approx(hi, abs=1e-4)
    assert set(sens["ratios"]["live"]) == {"manual", "hitl"} and "hitl" not in sens["ratios"]["hitl"]
    assert "verify 2 s, fix 6 s, delete 2 s" in sensitivity_table({**results, "sensitivity": sens})


@needs_data
@pytest.mark.slow
def test_issue21_schedules_label_realism_and_queue_order_end_to_end(tmp_path: Path) -> None:
    bccd = DATA / "bccd"
    res = _run(tmp_path, "--task", "detection", "--images", str(bccd / "JPEGImages"), "--labels",
               str(bccd / "Annotations"), "--format", "voc", "--classes", "RBC,WBC,Platelets", "--limit", "6",
               "--holdout-max", "2", "--compute-ratio", "0.1", "--eval-at", "6", "--offline-max-steps", "4",
               "--offline-min-steps", "2", "--plateau-window", "5", "--model-option", "input_size=128",
               "--workday-hours", "0.03", "--order-pool", "3",
               "--strategy", "live", "--strategy", "hitl", "--strategy", "hitl:proportional",
               "--strategy", "live:order=uncertain,accept=charged", "--strategy", "live:order=file",
               "--strategy", "manual")
    strat, cfg = res["strategies"], res["config"]
    # the compute: 0.1 steps per simulated second of this image, on the labels before it
    live = strat["live"]
    for r in live["records"][2:]:
        assert abs(r["steps_trained"] - 0.1 * r["seconds"]) <= 1
    # daily hitl: a retrain each time 0.03 h (108 s) of labeling is done since the last one, overnight
    hitl = strat["hitl"]
    assert hitl["retrains"], "a workday's labeling was done at least once"
    done = [0.0] + [r["after_work_hours"] for r in hitl["retrains"]]
    assert all(b - a >= 0.03 - 1e-4 for a, b in itertools.pairwise(done))
    assert all(r["pause_days"] == 0.0 for r in hitl["retrains"])  # the night covers a few steps
    # proportional hitl at 2/10/20/50 % of 6 images = after 2 and 3: the team waits for each retrain
    prop = strat["hitl:proportional"]
    assert [r["after_images"] for r in prop["retrains"]] == [2, 3]
    for r in prop["retrains"]:  # the seconds each retrain took here, in days of 0.03 h
        assert r["pause_days"] == pytest.approx(r["seconds"] / 3600 / 0.03, abs=1e-3)
    last = prop["records"][-1]
    assert last["calendar_days"] == pytest.approx(last["work_hours"] / 0.03 + prop["summary"]["pause_days"], 1e-3)
    # the queue orders walk the same six images
    names = sorted(r["name"] for r in live["records"])
    assert sorted(r["name"] for r in strat["live:order=uncertain,accept=charged"]["records"]) == names
    by_file = [r["name"] for r in strat["live:order=file"]["records"]]
    assert by_file == sorted(names)
    # the offline reference trains at least as long as live did, on the labels the walk stored
    assert res["offline"]["steps"] >= live["summary"]["training_steps"]
    # every ratio over the cost grid, and in the table
    r = res["sensitivity"]["ratios"]["live"]["manual"]
    assert r["min"] <= r["at_defaults"] <= r["max"]
    assert set(res["sensitivity"]["ratios"]["live"]) == {"manual", "hitl", "hitl:proportional"}
    assert cfg["compute_ratio"] == 0.1 and cfg["steps_per_image"] is None and cfg["exact_iou"] == 0.9
    # where the wall time went: it adds up, and training is counted where it happened
    for res_s in (live, hitl, prop):
        t = res_s["timing"]
        assert set(t) == {"train_s", "predict_s", "heldout_s", "retrain_s", "other_s"}
        assert sum(t.values()) == pytest.approx(res_s["wall_seconds"], abs=0.6)
    assert live["timing"]["retrain_s"] == 0 and prop["timing"]["retrain_s"] > 0 and "wall_s" in res["offline"]


def test_real_time_compute_follows_the_trainers_own_step_time() -> None:
    """A step's cost changes during a walk (the trunk's features cached, the set growing): "auto" gives the
    person's seconds over the median of the trainer's last 50 steps, not over the first measurement."""
    from livetrain_widgets.study.simulate import _Engine

    eng = _Engine.__new__(_Engine)  # only its step-time bookkeeping
    eng.step_times = []
    assert eng.step_seconds(0.5) == 0.5  # before any step: the measurement made before the study
    eng.step_times = [0.9] * 10 + [0.07] * 50
    assert eng.step_seconds(0.5) == pytest.approx(0.07)


@needs_data
@pytest.mark.slow
def test_an_interrupted_study_continues_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Real-time studies take hours per seed: `--resume` keeps the strategies done, trains the offline reference
    from the labels the live walk stored on disk, and refuses to continue another study's results."""
    from livetrain_widgets.study import simulate

    bccd = DATA / "bccd"
    args = ["--task", "detection", "--images", str(bccd / "JPEGImages"), "--labels", str(bccd / "Annotations"),
            "--format", "voc", "--classes", "RBC,WBC,Platelets", "--limit", "5", "--holdout-max", "2",
            "--steps-per-image", "3", "--offline-max-steps", "8", "--offline-min-steps", "4", "--eval-at", "5",
            "--model-option", "input_size=128", "--resume"]
    out = tmp_path / "out"

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # the session ended while the offline reference trained

    monkeypatch.setattr(simulate, "_offline_reference", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli(["simulate", *args, "--strategy", "live", "--out", str(out), "--quiet"])
    first = json.loads((out / "results.json").read_text())
    assert set(first["strategies"]) == {"live"} and "offline" not in first
    assert "sensitivity" in first  # a partial file has its ratios and ranges so far
    ref = first["reference_labels"]
    assert ref["strategy"] == "live" and ref["steps"] == first["strategies"]["live"]["summary"]["training_steps"]
    assert (out / ref["file"]).is_file()
    monkeypatch.undo()

    walked: list[str] = []
    real_run_strategy = simulate.run_strategy

    def counting(data, strategy, *a, **k):
        walked.append(strategy.name)
        return real_run_strategy(data, strategy, *a, **k)

    monkeypatch.setattr(simulate, "run_strategy", counting)
    capsys.readouterr()
    assert cli(["simulate", *args, "--strategy", "live", "--strategy", "manual", "--out", str(out), "--quiet"]) == 0
    assert "continuing the study" in capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert walked == ["manual"]  # live was kept, not walked again
    assert res["strategies"]["live"]["records"] == first["strategies"]["live"]["records"]
    assert res["offline"]["steps"] >= ref["steps"] and res["offline"]["heldout"] is not None
    assert [r["did"] for r in res["runs"]] == [["live"], ["manual", "offline"]]
    assert res["strategies"]["live"]["summary"]["heldout_vs_offline"] is not None
    # the offline reference trained on the labels as the walk stored them, read back from the file
    data = simulate.load_study_data("detection", str(bccd / "JPEGImages"), str(bccd / "Annotations"), "voc",
                                    classes=["RBC", "WBC", "Platelets"], holdout_max=2, limit=5, seed=0)
    stored = simulate.read_stored(out / ref["file"], data)
    assert [i.name for i in stored] == [r["name"] for r in res["strategies"]["live"]["records"]]

    # nothing left to do: a third run only rewrites the results
    walked.clear()
    assert cli(["simulate", *args, "--strategy", "live", "--strategy", "manual", "--out", str(out), "--quiet"]) == 0
    assert walked == [] and json.loads((out / "results.json").read_text())["offline"] == res["offline"]
    # another study's results are refused, naming what differs, and left as they were
    before = (out / "results.json").read_bytes()
    capsys.readouterr()
    other = [a if a != "5" else "4" for a in args]
    assert cli(["simulate", *other, "--strategy", "live", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "another study" in err and "dataset differs" in err
    assert (out / "results.json").read_bytes() == before


def test_stored_labels_round_trip_masks_and_boxes(tmp_path: Path) -> None:
    import numpy as np

    from livetrain_widgets.engine._output_folder import OutputFolder
    from livetrain_widgets.study.dataset import Item, StudyData
    from livetrain_widgets.study.simulate import StudyConfig, read_stored, resumed_config, write_stored

    rng = np.random.default_rng(0)
    masks = rng.random((2, 9, 7)) > 0.5
    ann = Annotation.from_masks(masks, [0, 1])
    img = np.zeros((9, 7, 3), np.uint8)
    data = StudyData("segmentation", ["a", "b"], [Item(f"t{i}", lambda: img, ann) for i in range(3)], [])
    path = write_stored(data.walk[::-1], OutputFolder(tmp_path / "o", "test"), "live:order=file")
    assert path.name == "live_order=file.json.gz"
    back = read_stored(path, data)
    assert [i.name for i in back] == ["t2", "t1", "t0"]
    assert all(np.array_equal(i.target.masks, masks) and i.target.labels.tolist() == [0, 1] for i in back)
    with pytest.raises(ValueError, match="not in this study's walk"):
        read_stored(path, StudyData("segmentation", ["a", "b"], data.walk[:2], []))
    # a continued real-time study keeps the rate its first run measured
    prev = {"config": {"compute_ratio": 12.5, "measured_step_seconds": 0.08}}
    cfg = resumed_config(StudyConfig(), prev)
    assert (cfg.compute_ratio, cfg.measured_step_seconds) == (12.5, 0.08)
    assert resumed_config(StudyConfig(steps_per_image=3), prev).compute_ratio == "auto"
