"""System figures of the live-training engine, measured on a real session.

    livetrain bench --out bench-out/engine
    livetrain bench --out bench-out/bccd --images $LIVETRAIN_DATA/bccd/JPEGImages \\
        --labels $LIVETRAIN_DATA/bccd/Annotations --format voc

Without --images it generates a small seeded detection dataset (coloured rectangles, ellipses and rings
on textured noise, 640x480, labeled with their true boxes), so it runs anywhere. One run, per device:

1. a headless labeling run in file order: predict, submit the true label, let --steps-per-image training
   steps pass; the live evaluator's score after 5, 10, 20, ... images; training step time;
2. time from a submission to the end of the first training step that trained on it, in seconds and in
   steps: for --submissions fresh images submitted at random points inside steps, and for the labeling
   run's submissions (each right after a step and a prediction);
3. prediction latency while the trainer trains (probes at random points inside steps) and idle, and
   their ratio; event-loop lag (delay of a 10 ms asyncio tick) while training;
4. checkpoint save (the session's own path) and load time, and the checkpoint's size;
5. peak resident memory of the process (and peak CUDA memory on a GPU).

Runs on the CPU, then on the GPU as well when CUDA is available (--device picks one). Prints a table and
writes OUT/results.json with the exact configuration; the session's project goes to OUT/project/<device>.
OUT must be a new or empty folder, or one bench made before: a folder holding anything else (a labeling
project, say) is refused, naming it, and bench deletes only the scratch projects it made itself.
Ratios measured in the same run are more telling than absolute times on shared machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.annotation import TASKS
from ..engine.formats import FORMATS  # neither imports torch: --help stays fast
from .dataset import SYNTHETIC_CLASSES, synthetic_detection
from .results import cpu_name, environment, output_folder, spread, write_results

if TYPE_CHECKING:
    from ..engine.annotation import Annotation
    from ..engine.session import LiveSession
    from ..engine.trainer import StepResult

#: evaluator score is reported after this many labeled images (those not beyond --labeled)
SCORE_AT = (5, 10, 20, 40, 60, 100)
CHECKPOINT_REPEATS = 3
#: period of the event-loop lag probe (the widgets' messages need the loop about this often)
LAG_TICK_S = 0.01


# ------------------------------------------------------------------------------------------- data
class BenchData:
    """What the session is fed: images (paths or arrays), their true labels, classes and task."""

    def __init__(self, images: list[Any], labels: list[Annotation], classes: list[str], task: str,
                 info: dict[str, Any]) -> None:
        self.images = images
        self.labels = labels
        self.classes = classes
        self.task = task
        self.info = info


def _synthetic_data(n: int, seed: int) -> BenchData:
    images, labels = synthetic_detection(n, seed=seed)
    info = {"source": "synthetic", "seed": seed, "images": n, "image_size": list(images[0].shape[:2]),
            "objects": int(sum(len(a) for a in labels))}
    return BenchData(images, labels, list(SYNTHETIC_CLASSES), "detection", info)


def _folder_data(images: str | os.PathLike[str], labels: str | os.PathLike[str] | None, fmt: str,
                 task: str | None, classes: Sequence[str] | None, n: int) -> BenchData:
    from ..engine.formats import load_labels
    from ..engine.images import list_images

    if fmt not in FORMATS:
        raise ValueError(f"unknown label format {fmt!r}; expected one of {FORMATS}")
    paths = list_images(images)
    loaded = load_labels(fmt, labels, paths, classes or None)
    # File order, labeled images only: the true label is what the simulated person submits.
    chosen = [p for p in paths if p.resolve() in loaded.annotations][:n]
    task = task or {"masks": "segmentation", "instances": "segmentation", "folders": "classification"}.get(
        fmt, "detection")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    anns = [loaded.annotations[p.resolve()] for p in chosen]
    from ..engine.images import image_info

    first = image_info(chosen[0]) if chosen else None
    info = {"source": "folder", "images_dir": str(Path(images).resolve()),
            "labels": None if labels is None else str(Path(labels).resolve()), "format": fmt,
            "images_found": len(paths), "images_labeled": len(loaded.annotations), "images": len(chosen),
            "label_errors": len(loaded.errors),
            "image_size": None if first is None else [first.height, first.width],
            "objects": int(sum(len(a) for a in anns))}
    return BenchData(list(chosen), anns, list(loaded.classes), task, info)


# ---------------------------------------------------------------------------------------- helpers
def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _mean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def _peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere


def _folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _bar(progress: bool, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, file=sys.stderr, leave=False)


async def _loop_lag(stop: asyncio.Event, out: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t0 = loop.time()
        await asyncio.sleep(LAG_TICK_S)
        out.append(max(0.0, loop.time() - t0 - LAG_TICK_S))


class _StepLog:
    """Completion time and batch of every training step, from the trainer's ``on_step`` hook.

    ``LiveSession`` passes no ``on_step`` of its own; chaining onto whatever is there keeps the engine's
    behaviour unchanged. The hook runs on the event loop right after the step is appended to
    ``trainer.batch_log``, so its timestamp is when the step's batch became part of the model.
    """

    def __init__(self, trainer: Any) -> None:
        self.records: list[tuple[float, StepResult]] = []
        self._trainer = trainer
        self._previous = trainer._on_step
        trainer._on_step = self

    def __call__(self, result: StepResult) -> None:
        self.records.append((time.perf_counter(), result))
        if self._previous is not None:
            self._previous(result)

    def detach(self) -> None:
        self._trainer._on_step = self._previous

    def first_with(self, key: int, after_step: int) -> tuple[float, int] | None:
        for t, r in self.records:
            if r.step > after_step and key in r.batch:
                return t, r.step
        return None


async def _click_to_prelabels(session: LiveSession, ids: list[int], truth: dict[int, Annotation],
                              steps_per_image: int, rng: random.Random, progress: bool,
                              device: str) -> dict[str, Any]:
    """Finish & Next as the app does it: submit the image on view, then the next image's pre-labels.

    The person spends a random 0.5-1.5x ``steps_per_image`` training steps on each image (plus a random
    fraction of a step, so clicks fall anywhere inside one). Every other image is opened with
    ``fresh=True`` (predicted when it opens, as before predicting ahead), the others with the pre-labels
    kept ahead: both in the same run, on the same machine load, so their ratio is the figure.
    """
    from ..engine.evaluator import LiveEvaluator

    if len(ids) < 3:
        return {"n": 0}
    trainer = session.trainer
    trainer.plateau.reset()  # a paused model never goes stale: measure while it trains
    ages0 = len(session.ahead.ages)
    step_median = trainer.status()["step_seconds"] or 0.2
    rows: list[dict[str, Any]] = []
    await session.predict(ids[0])
    with _bar(progress, len(ids) - 1, f"{device}: click to pre-labels") as bar:
        for k in range(len(ids) - 1):
            lo = max(1, steps_per_image // 2)
            await session.wait_steps(rng.randint(lo, lo + steps_per_image), timeout=600)
            await asyncio.sleep(rng.uniform(0.0, step_median))
            fresh = k % 2 == 1
            training = trainer.phase == "training"
            t0 = time.perf_counter()
            await session.submit(ids[k], truth[ids[k]])
            pred = await session.predict(ids[k + 1], fresh=fresh)
            seconds = time.perf_counter() - t0
            row = {"image_id": ids[k + 1], "fresh": fresh, "ahead": pred.ahead, "age": pred.age,
                   "seconds": seconds, "predict_s": pred.seconds, "training": training}
            if pred.ahead:
                # What the age cost: the served pre-label and one from the current weights, both judged
                # against the truth by the evaluator's score (after the timing; it does not count in it).
                (now,), _ = await trainer.predict([session.image(ids[k + 1])])
                thr = session.thresholds()
                judge = LiveEvaluator(session.task, len(session.classes), session.evaluator.config)
                row["score_ahead"] = judge.evaluate(0, pred.annotation.filter(thr), truth[ids[k + 1]])["score"]
                row["score_now"] = judge.evaluate(0, now.filter(thr), truth[ids[k + 1]])["score"]
            rows.append(row)
            bar.update()
    ahead = [r["seconds"] for r in rows if not r["fresh"]]
    fresh_s = [r["seconds"] for r in rows if r["fresh"]]
    ages = list(session.ahead.ages)[ages0:]
    stats = session.ahead.stats()
    judged = [r for r in rows if "score_ahead" in r]
    return {
        "score_ahead_vs_now": {"ahead": _mean([r["score_ahead"] for r in judged]),
                               "now": _mean([r["score_now"] for r in judged]), "n": len(judged)},
        "n": len(rows),
        "ahead_s": spread(ahead),
        "fresh_s": spread(fresh_s),
        "ratio_p95": _ratio(_pct(ahead, 95), _pct(fresh_s, 95)),
        "served_ahead": sum(r["ahead"] for r in rows),
        "age_steps": {"p50": _pct(ages, 50), "p95": _pct(ages, 95), "max": max(ages) if ages else None,
                      "histogram": {int(a): ages.count(a) for a in sorted(set(ages))}},
        "config": asdict(session.config.ahead),
        "predictions_ahead": stats["predictions"], "refreshes": stats["refreshes"],
        "seconds_ahead": stats["seconds"],
        "per_open": rows,
    }


# ------------------------------------------------------------------------------------ one device
async def _timed_submit(session: LiveSession, image_id: int, label: Annotation) -> dict[str, Any]:
    trainer = session.trainer
    # Only submissions that a running trainer can take at once measure the engine; the ones before
    # min_labeled wait for training to start at all.
    training = (trainer.running and trainer.num_samples >= trainer.config.min_labeled
                and not trainer.paused_by_plateau)
    step0 = trainer.step
    t0 = time.perf_counter()
    await session.submit(image_id, label)
    return {"image_id": image_id, "t": t0, "step": step0, "training": training}


def _submit_figures(submitted: list[dict[str, Any]], steps: _StepLog) -> dict[str, Any]:
    """Time and steps from each submission to the end of the first step that trained on it.

    ``steps`` 1 means the next step to finish; a submission during a step usually needs 2, since the
    step in flight drew its batch before the sample existed.
    """
    rows = []
    for s in submitted:
        hit = steps.first_with(s["image_id"], s["step"])
        rows.append({"image_id": s["image_id"], "step": s["step"], "training": s["training"],
                     "seconds": None if hit is None else hit[0] - s["t"],
                     "steps": None if hit is None else hit[1] - s["step"]})
    measured = [r for r in rows if r["training"] and r["seconds"] is not None]
    secs = [r["seconds"] for r in measured]
    nsteps = [r["steps"] for r in measured]
    return {
        "seconds": {"p50": _pct(secs, 50), "max": max(secs) if secs else None},
        "steps": {"p50": _pct(nsteps, 50), "max": max(nsteps) if nsteps else None},
        "n": len(measured),
        "not_seen": sum(1 for r in rows if r["training"] and r["seconds"] is None),
        "per_submission": rows,
    }


async def _bench_device(device: str, data: BenchData, project: Path, *, labeled: int, steps_per_image: int,
                        submissions: int, opens: int, probes: int, seed: int, input_size: int | None,
                        batch_size: int | None, progress: bool) -> dict[str, Any]:
    """Every figure for one device; the CPU and GPU runs are this same code."""
    import torch

    from ..engine.checkpoint import latest_checkpoint, load_checkpoint
    from ..engine.session import LiveSession, SessionConfig
    from ..engine.trainer import TrainerConfig
    from ..models._preprocess import target_size

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    tcfg = TrainerConfig(seed=seed, device=device)
    if batch_size is not None:
        tcfg.batch_size = batch_size
    options: dict[str, Any] = {"seed": seed}
    if input_size is not None:
        options["input_size"] = input_size
    session = LiveSession(project, data.task, data.classes, config=SessionConfig(trainer=tcfg),
                          model_options=options)
    trainer = session.trainer
    try:
        ids = session.add_images(data.images)
        if len(ids) != len(data.images):
            raise RuntimeError(f"only {len(ids)} of {len(data.images)} images could be added")
        # labeling run, then fresh submissions, then one never-labeled image for the prediction probes
        label_ids, sub_ids, probe_id = ids[:labeled], ids[labeled:labeled + submissions], ids[-1]
        open_ids = ids[labeled + submissions:labeled + submissions + opens + 1]
        truth = dict(zip(ids, data.labels, strict=True))
        steps = _StepLog(trainer)
        await session.start()

        # ---- 1: headless labeling run in file order
        per_image: list[dict[str, Any]] = []
        scores_at: dict[str, dict[str, Any]] = {}
        label_subs: list[dict[str, Any]] = []
        t_label = time.perf_counter()
        with _bar(progress, len(label_ids), f"{device}: labeling run") as bar:
            for n, image_id in enumerate(label_ids, start=1):
                pred = await session.predict(image_id)
                label_subs.append(await _timed_submit(session, image_id, truth[image_id]))
                rec = session.evaluator.history[-1] if session.evaluator.history else None
                per_image.append({"n": n, "step": pred.step, "offered": pred.offered,
                                  "predict_s": pred.seconds, "score": None if rec is None else rec.get("score"),
                                  "pred_boxes": len(pred.annotation), "true_boxes": len(truth[image_id])})
                if n in SCORE_AT:
                    scores_at[str(n)] = {"ema": session.evaluator.ema, "last": per_image[-1]["score"],
                                         "mean_last5": _mean([r["score"] for r in per_image[-5:]])}
                await session.wait_steps(steps_per_image, timeout=600)
                bar.update()
        labeling = {"images": len(label_ids), "steps_per_image": steps_per_image,
                    "seconds": time.perf_counter() - t_label, "final_step": trainer.step,
                    "predict_session_s": spread([r["predict_s"] for r in per_image]),
                    "submit_to_batch": {**_submit_figures(label_subs, steps), "phase": "after a step + a prediction"},
                    "scores_at": scores_at, "per_image": per_image}

        # ---- 2: fresh submissions at random points inside steps, as a person's clicks fall (in the
        # labeling run each one follows a step boundary plus a prediction: a fixed phase)
        stop = asyncio.Event()
        lags: list[float] = []
        lag_task = asyncio.create_task(_loop_lag(stop, lags))
        step_median = statistics.median([r.seconds for _, r in steps.records]) if steps.records else 0.2
        rng = random.Random(seed)
        fresh: list[dict[str, Any]] = []
        with _bar(progress, len(sub_ids), f"{device}: submissions") as bar:
            for image_id in sub_ids:
                await asyncio.sleep(rng.uniform(0.0, step_median))
                fresh.append(await _timed_submit(session, image_id, truth[image_id]))
                for _ in range(8):  # it lands within two steps; the slack allows for failing ones
                    if steps.first_with(image_id, fresh[-1]["step"]) is not None:
                        break
                    await session.wait_steps(1, timeout=600)
                bar.update()

        # ---- 2b: click to pre-labels: Finish & Next (submit) until the next image's pre-labels are there,
        # alternating images whose pre-labels were computed ahead with images predicted on opening
        opens_fig = await _click_to_prelabels(session, open_ids, truth, steps_per_image, rng, progress, device)

        # ---- 3: prediction latency and loop lag while training
        image = session.image(probe_id)
        trainer.plateau.reset()  # a pause would turn "while training" probes into idle ones
        busy: list[float] = []
        busy_training = 0
        with _bar(progress, probes, f"{device}: predictions while training") as bar:
            for _ in range(probes):
                # A delay spread over a whole step lands the probe at a random point inside one.
                await asyncio.sleep(rng.uniform(0.05, 0.05 + step_median))
                busy_training += trainer.phase == "training"
                t0 = time.perf_counter()
                await trainer.predict([image])
                busy.append(time.perf_counter() - t0)
                bar.update()
        stop.set()
        await lag_task

        # ---- 4a: a checkpoint requested while training waits for the step in flight
        save_busy = []
        for _ in range(2):
            t0 = time.perf_counter()
            await session.checkpoint()
            save_busy.append(time.perf_counter() - t0)
        step_times = [r.seconds for _, r in steps.records]
        await session.stop()
        steps.detach()

        idle: list[float] = []
        with _bar(progress, probes, f"{device}: predictions idle") as bar:
            for _ in range(probes):
                t0 = time.perf_counter()
                await trainer.predict([image])
                idle.append(time.perf_counter() - t0)
                bar.update()

        # ---- 4b: checkpoint save and load with the trainer stopped: the cost of the write itself
        save_idle, load = [], []
        ckpt_dir = session.project / "checkpoints"
        for _ in range(CHECKPOINT_REPEATS):
            t0 = time.perf_counter()
            await session.checkpoint()
            save_idle.append(time.perf_counter() - t0)
        state: dict[str, Any] = {}
        for _ in range(CHECKPOINT_REPEATS):
            t0 = time.perf_counter()
            path = latest_checkpoint(ckpt_dir)
            state = load_checkpoint(path) if path is not None else {}
            load.append(time.perf_counter() - t0)
        loads = bool(state) and int(state["step"]) == trainer.step and set(state["model"]) == set(
            trainer.model.state_dict())

        first = session.image(label_ids[0])
        net_in = target_size(first.shape[0], first.shape[1], trainer.model.input_size) if hasattr(
            trainer.model, "input_size") else None
        b50, b95, i50, i95 = _pct(busy, 50), _pct(busy, 95), _pct(idle, 50), _pct(idle, 95)
        result = {
            "device": str(trainer.device),
            "device_name": torch.cuda.get_device_name(trainer.device) if cuda else cpu_name(),
            "setup": {"image_size": list(first.shape[:2]), "input_size": getattr(trainer.model, "input_size", None),
                      "network_input": None if net_in is None else list(net_in), "batch_size": tcfg.batch_size,
                      "torch_threads": torch.get_num_threads(), "amp": trainer.amp,
                      "model": type(trainer.model).__name__, "classes": data.classes, "task": data.task},
            "step_s": {"median": statistics.median(step_times) if step_times else None,
                       "p95": _pct(step_times, 95), "n": len(step_times),
                       "first": step_times[0] if step_times else None},
            "predict_s": {"idle": spread(idle),
                          "training": {**spread(busy), "while_training": busy_training},
                          "ratio": {"p50": _ratio(b50, i50), "p95": _ratio(b95, i95)}},
            "loop_lag_s": {**spread(lags), "tick": LAG_TICK_S},
            "submit_to_batch": {**_submit_figures(fresh, steps), "phase": "random point inside a step"},
            "click_to_prelabels": opens_fig,
            "checkpoint": {"save_s": {"median": statistics.median(save_idle), "n": len(save_idle)},
                           "save_while_training_s": {"median": statistics.median(save_busy), "n": len(save_busy)},
                           "load_s": {"median": statistics.median(load), "n": len(load)},
                           "size_mb": _folder_mb(path) if path is not None else None,
                           "step": int(state["step"]) if state else None, "loads": loads},
            "labeling": labeling,
            # a failing step or checkpoint is skipped by the engine; its message makes the figures suspect
            "trainer_error": trainer.error,
        }
    finally:
        await session.close()
    result["memory"] = {"peak_rss_mb": _peak_rss_mb(), "rss_is_process_peak": True,
                        "cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}
    result["seconds"] = time.perf_counter() - t_start
    return result


# ------------------------------------------------------------------------------------------- API
def _devices(device: str | None) -> tuple[list[str], dict[str, str | None]]:
    import torch

    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or None (both where CUDA is present), got {device!r}")
    have_cuda = torch.cuda.is_available()
    if device == "cuda" and not have_cuda:
        raise ValueError("device='cuda' was asked for, but torch.cuda.is_available() is False")
    why_no_gpu = (
        "not asked for (device='cpu')" if device == "cpu"
        else None if have_cuda
        else f"torch.cuda.is_available() is False (torch {torch.__version__}"
             + (", a CPU-only build)" if torch.version.cuda is None else ", no usable CUDA device)")
    )
    reasons = {"cpu": "not asked for (device='cuda')" if device == "cuda" else None, "gpu": why_no_gpu}
    return [d for d, key in (("cpu", "cpu"), ("cuda", "gpu")) if reasons[key] is None], reasons


async def run_bench_async(
    out: str | os.PathLike[str],
    *,
    images: str | os.PathLike[str] | None = None,
    labels: str | os.PathLike[str] | None = None,
    format: str | None = None,
    task: str | None = None,
    classes: Sequence[str] | None = None,
    labeled: int = 20,
    steps_per_image: int = 15,
    submissions: int = 5,
    opens: int = 30,
    probes: int = 40,
    seed: int = 0,
    device: str | None = None,
    input_size: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`run_bench` on the running event loop (``await`` it in a notebook)."""
    if labeled < 2:
        raise ValueError("labeled must be at least 2 (training starts at two labeled images)")
    if steps_per_image < 1 or probes < 1 or submissions < 0 or opens < 0:
        raise ValueError("steps_per_image and probes must be at least 1, submissions and opens at least 0")
    if images is None and task not in (None, "detection"):
        raise ValueError(f"the synthetic data is for detection; give --images/--labels for task {task!r}")
    if images is not None and format is None:
        raise ValueError("say which format the labels are in: format='voc' | 'coco' | 'yolo' | ...")
    if images is not None and labels is None and format != "folders":
        raise ValueError(f"the {format!r} format needs labels (a file or folder)")
    arguments = {"out": str(out), "images": None if images is None else str(images),
                 "labels": None if labels is None else str(labels), "format": format, "task": task,
                 "classes": None if classes is None else list(classes), "labeled": labeled,
                 "steps_per_image": steps_per_image, "submissions": submissions, "opens": opens, "probes": probes,
                 "seed": seed,
                 "device": device, "input_size": input_size, "batch_size": batch_size}
    devices, reasons = _devices(device)
    # A folder of its own (new, empty, or an earlier bench's): its projects go into a scratch folder that
    # is deleted only while it carries bench's marker. ``--out`` once named a real project, which went.
    folder = output_folder(out, "livetrain bench")
    project_root = folder.scratch("project")

    # the last image is never labeled: the prediction probes run on it
    n = labeled + submissions + (opens + 1 if opens else 0) + 1
    data = (_synthetic_data(n, seed) if images is None
            else _folder_data(images, labels, format or "", task, classes, n))
    if len(data.images) < 3:
        raise ValueError(f"found {len(data.images)} labeled images; at least 3 are needed")
    # A small folder: the labeling run keeps its images first, the fresh submissions get the rest.
    labeled = min(labeled, len(data.images) - 1)
    submissions = min(submissions, len(data.images) - 1 - labeled)
    opens = max(0, min(opens + 1, len(data.images) - 1 - labeled - submissions) - 1)
    used = labeled + submissions + (opens + 1 if opens else 0)
    data.images, data.labels = data.images[:used] + data.images[-1:], data.labels[:used] + data.labels[-1:]
    data.info.update(labeled=labeled, submissions=submissions, opens=opens)

    results: dict[str, Any] = {"config": {"arguments": arguments, "environment": environment()},
                               "data": data.info, "cpu": None, "gpu": None,
                               "cpu_reason": reasons["cpu"], "gpu_reason": reasons["gpu"]}
    for dev in devices:
        results["cpu" if dev == "cpu" else "gpu"] = await _bench_device(
            dev, data, project_root / dev, labeled=labeled, steps_per_image=steps_per_image,
            submissions=submissions, opens=opens, probes=probes, seed=seed, input_size=input_size,
            batch_size=batch_size, progress=progress)
    results["config"]["environment"]["load_average_end"] = list(os.getloadavg()) if hasattr(
        os, "getloadavg") else None
    write_results(results, folder)
    return results


def run_bench(out: str | os.PathLike[str], **kwargs: Any) -> dict[str, Any]:
    """Measure the system figures (see the module docstring); writes ``out/results.json`` and returns it.
    ``out`` is a new or empty folder, or one bench made before (anything else: ``OutputFolderError``).

    Keyword arguments mirror the command line: ``images``, ``labels``, ``format``, ``task``, ``classes``,
    ``labeled``, ``steps_per_image``, ``submissions``, ``opens``, ``probes``, ``seed``, ``device`` ("cpu", "cuda",
    or None for the CPU plus the GPU where there is one), ``input_size``, ``batch_size``, ``progress``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_bench_async(out, **kwargs))
    # Called from a running loop (a notebook cell): give the benchmark a loop of its own in a thread.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(run_bench_async(out, **kwargs))
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name="livetrain-bench")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


# --------------------------------------------------------------------------------------- report
def _f(x: float | None, scale: float = 1.0, nd: int = 0) -> str:
    return "n/a" if x is None else f"{x * scale:.{nd}f}"


def _submit_cell(sb: dict[str, Any]) -> str:
    return (f"{_f(sb['seconds']['p50'], nd=2)} / {_f(sb['seconds']['max'], nd=2)} s, "
            f"{_f(sb['steps']['p50'], nd=1)} / {_f(sb['steps']['max'])} steps (n={sb['n']})")


def _device_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    s, p, lag, sb, ck, lab = r["setup"], r["predict_s"], r["loop_lag_s"], r["submit_to_batch"], r["checkpoint"], \
        r["labeling"]
    ms = 1000.0
    net = "x".join(str(v) for v in reversed(s["network_input"])) if s["network_input"] else "n/a"
    rows = [
        ("device", r["device"] + (f" ({r['device_name']})" if r.get("device_name") else "")),
        ("image / network input (WxH)", f"{s['image_size'][1]}x{s['image_size'][0]} / {net}"),
        ("batch size / torch threads / amp", f"{s['batch_size']} / {s['torch_threads']} / {s['amp']}"),
        ("training step median / p95 (n)",
         f"{_f(r['step_s']['median'], ms)} / {_f(r['step_s']['p95'], ms)} ms ({r['step_s']['n']})"),
        ("prediction idle p50 / p95", f"{_f(p['idle']['p50'], ms)} / {_f(p['idle']['p95'], ms)} ms"),
        ("prediction while training p50 / p95",
         f"{_f(p['training']['p50'], ms)} / {_f(p['training']['p95'], ms)} ms"),
        ("ratio training/idle p50 / p95", f"{_f(p['ratio']['p50'], nd=2)} / {_f(p['ratio']['p95'], nd=2)}"),
        ("event-loop lag p50 / p95 / max",
         f"{_f(lag['p50'], ms, 1)} / {_f(lag['p95'], ms, 1)} / {_f(lag['max'], ms, 1)} ms"),
        ("submission -> first batch p50 / max", _submit_cell(sb)),
        ("  same, labeling run (after step + predict)", _submit_cell(lab["submit_to_batch"])),
        *_click_rows(r.get("click_to_prelabels") or {"n": 0}),
        ("checkpoint save / load (size)",
         f"{_f(ck['save_s']['median'], ms)} / {_f(ck['load_s']['median'], ms)} ms ({_f(ck['size_mb'], nd=1)} MB)"),
        ("checkpoint save while training", f"{_f(ck['save_while_training_s']['median'], ms)} ms"),
        ("peak RSS (process)", f"{_f(r['memory']['peak_rss_mb'])} MB"),
    ]
    if r.get("trainer_error"):
        rows.append(("trainer error (figures suspect)", r["trainer_error"]))
    if r["memory"]["cuda_max_allocated_mb"] is not None:
        rows.append(("peak CUDA memory allocated", f"{_f(r['memory']['cuda_max_allocated_mb'])} MB"))
    rows.append(("labeling run", f"{lab['images']} images x {lab['steps_per_image']} steps, "
                 f"{_f(lab['seconds'])} s, final step {lab['final_step']}"))
    for n, sc in lab["scores_at"].items():
        rows.append((f"evaluator after {n} images: EMA / mean last 5",
                     f"{_f(sc['ema'], nd=2)} / {_f(sc['mean_last5'], nd=2)}"))
    return rows


def _click_rows(c: dict[str, Any]) -> list[tuple[str, str]]:
    if not c["n"]:
        return []
    ms = 1000.0
    a, f, age = c["ahead_s"], c["fresh_s"], c["age_steps"]
    return [
        ("Finish & Next -> pre-labels, ahead p50 / p95",
         f"{_f(a['p50'], ms)} / {_f(a['p95'], ms)} ms ({c['served_ahead']} of {a['n']} served ahead)"),
        ("  same, predicted on opening p50 / p95", f"{_f(f['p50'], ms)} / {_f(f['p95'], ms)} ms (n={f['n']})"),
        ("  pre-label age at opening p50 / p95 / max",
         f"{_f(age['p50'], nd=1)} / {_f(age['p95'], nd=1)} / {_f(age['max'])} steps "
         f"(refresh every {c['config']['refresh_steps']})"),
        ("  evaluator score: served ahead / current weights",
         f"{_f(c['score_ahead_vs_now']['ahead'], nd=3)} / {_f(c['score_ahead_vs_now']['now'], nd=3)} "
         f"(n={c['score_ahead_vs_now']['n']})"),
    ]


def format_table(results: dict[str, Any]) -> str:
    """The aligned text table ``livetrain bench`` prints (one value column per device run)."""
    runs = [(name.upper(), results[name]) for name in ("cpu", "gpu") if results.get(name)]
    columns = [dict(_device_rows(r)) for _, r in runs]
    labels: list[str] = []
    for col in columns:
        labels += [k for k in col if k not in labels]
    header = ["figure", *[name for name, _ in runs]]
    body = [[label, *[col.get(label, "") for col in columns]] for label in labels]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths), *[line(row) for row in body]]
    d = results["data"]
    src = "synthetic shapes" if d["source"] == "synthetic" else f"{d['images_dir']} ({d['format']})"
    out.append(f"data: {src}, {d['labeled']} labeled + {d['submissions']} submitted + {d.get('opens', 0)} opened "
               "+ 1 probe image")
    for key, name in (("cpu", "CPU"), ("gpu", "GPU")):
        if results.get(key) is None:
            out.append(f"{name}: not run: {results.get(f'{key}_reason')}")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``livetrain bench``."""
    parser.add_argument("--out", required=True, help="output folder (results.json, project/)")
    g = parser.add_argument_group("data (default: a synthetic detection set generated in memory)")
    g.add_argument("--images", help="folder of images (used in sorted file order)")
    g.add_argument("--labels", help="labels file or folder for --images")
    g.add_argument("--format", choices=FORMATS, help="label format of --labels")
    g.add_argument("--task", choices=TASKS, help="default: from --format (detection for boxes)")
    g.add_argument("--classes", help="comma-separated class names that come first, e.g. RBC,WBC,Platelets")
    r = parser.add_argument_group("run")
    r.add_argument("--labeled", type=int, default=20, help="images labeled in the labeling run (default 20)")
    r.add_argument("--steps-per-image", type=int, default=15,
                   help="training steps between two submissions (default 15)")
    r.add_argument("--submissions", type=int, default=5,
                   help="fresh images submitted at random points inside steps (default 5)")
    r.add_argument("--opens", type=int, default=30,
                   help="images opened with Finish & Next for click-to-pre-labels, half predicted ahead (default 30)")
    r.add_argument("--probes", type=int, default=40, help="prediction probes, busy and idle each (default 40)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", choices=("cpu", "cuda"),
                   help="only this device (default: the CPU, and the GPU as well where CUDA is available)")
    r.add_argument("--input-size", type=int, help="longer image side the model sees (default: the model's)")
    r.add_argument("--batch-size", type=int, help="training batch size (default: TrainerConfig's)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    c = parser.add_argument_group("learning per CPU second (instead of the system figures)")
    c.add_argument("--compare", choices=("baseline",),
                   help="held-out mAP@0.5 against training CPU seconds: today's defaults against the trainer "
                        "before issue 21 ('baseline') and any --variant, interleaved in one run (detection)")
    c.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="another trainer: model options and TrainerConfig fields, e.g. fs16:freeze_stride=16")
    c.add_argument("--learn-labeled", type=int, nargs="+", default=[20, 50], help="labeled-set sizes (20 50)")
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one labeled draw per seed (0 1 2)")
    c.add_argument("--budget", type=float, default=150.0, help="baseline's training CPU seconds per run (150)")
    c.add_argument("--fraction", type=float, default=0.5,
                   help="the other variants' budget as a fraction of the baseline's (0.5)")
    c.add_argument("--first-mark", type=float, default=10.0, help="first CPU-second mark; marks double (10)")
    c.add_argument("--holdout", type=int, default=30, help="last images in file order, never labeled (30)")
    c.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU seconds are the work done)")


def run(args: argparse.Namespace) -> int:
    """``livetrain bench``: measure, print the table, write OUT/results.json."""
    if args.images is None and (args.labels is not None or args.format is not None):
        print("livetrain bench: --labels and --format need --images", file=sys.stderr)
        return 2
    if args.images is not None and (args.format is None or (args.labels is None and args.format != "folders")):
        print("livetrain bench: --images needs --labels and --format", file=sys.stderr)
        return 2
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    if args.compare:
        return _run_compare(args, classes)
    try:
        results = run_bench(
            args.out, images=args.images, labels=args.labels, format=args.format, task=args.task,
            classes=classes, labeled=args.labeled, steps_per_image=args.steps_per_image,
            submissions=args.submissions, opens=args.opens, probes=args.probes,
            seed=args.seed, device=args.device, input_size=args.input_size, batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    except (ValueError, OSError) as exc:  # OSError: a missing file, or an output folder that is not bench's
        print(f"livetrain bench: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


def _run_compare(args: argparse.Namespace, classes: list[str] | None) -> int:
    """``livetrain bench --compare baseline``: see :mod:`.learning`."""
    from .learning import BASELINE, format_learning, parse_variant, run_learning

    if args.images is None:
        print("livetrain bench: --compare needs --images, --labels and --format (a detection set)", file=sys.stderr)
        return 2
    try:
        variants: dict[str, dict[str, Any]] = {"baseline": BASELINE, "current": {"model": {}, "trainer": {}}}
        for text in args.variant:
            name, spec = parse_variant(text)
            variants[name] = spec
        data = _folder_data(args.images, args.labels, args.format, "detection", classes, 10**9)
        results = run_learning(
            data.images, data.labels, data.classes, variants=variants, labeled=args.learn_labeled, seeds=args.seeds,
            budget=args.budget, holdout=args.holdout, first_mark=args.first_mark,
            fraction={name: args.fraction for name in variants if name != "baseline"}, threads=args.threads,
            progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"livetrain bench: {exc}", file=sys.stderr)
        return 2
    results = {"config": {"arguments": {k: v for k, v in vars(args).items() if k != "func"},
                          "variants": variants, "environment": environment()}, **results}
    env = results["config"]["environment"]
    env["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_results(results, out)
    print(format_learning(results))
    print(f"results: {out / 'results.json'}")
    return 0
