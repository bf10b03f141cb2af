"""System figures of the headless engine on BCCD (2 CPU cores in CI-like machines).

    python benchmarks/engine_bench.py --out bench-out/engine [--images 20] [--steps-per-image 15]

Prints a table and writes ``results.json``. Ratios (prediction latency while training vs idle) are
measured in the same run, since absolute times on shared machines are noisy.

1. training step and prediction time of the embedded detector at BCCD size (640x480);
2. prediction latency while the trainer runs, p50/p95, and its ratio to the same prediction idle;
3. event-loop lag while training runs: p95 delay of a 10 ms asyncio tick;
4. a headless labeling run in file order: predict, then submit the ground truth, with a fixed number of
   training steps allowed between images; the live evaluator's score after 5, 10 and 20 images;
5. peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from livetrain_widgets import LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.engine.formats import load_labels
from livetrain_widgets.engine.images import load_image

CLASSES = ["RBC", "WBC", "Platelets"]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def data_root() -> Path:
    return Path(os.environ.get("LIVETRAIN_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


async def loop_lag_probe(stop: asyncio.Event, out: list[float], tick: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t0 = loop.time()
        await asyncio.sleep(tick)
        out.append(loop.time() - t0 - tick)


async def run(args: argparse.Namespace) -> dict:
    bccd = data_root() / "bccd"
    paths = sorted((bccd / "JPEGImages").glob("*.jpg"))[: args.images + 1]
    gt = load_labels("voc", bccd / "Annotations", paths, CLASSES)
    results: dict = {"images": len(paths), "steps_per_image": args.steps_per_image, "torch_threads": None}
    import torch

    results["torch_threads"] = torch.get_num_threads()
    project = Path(args.out) / "project"
    if project.exists():
        import shutil

        shutil.rmtree(project)
    cfg = SessionConfig(trainer=TrainerConfig(seed=args.seed))
    session = LiveSession(project, "detection", CLASSES, config=cfg, model_options={"seed": args.seed})
    ids = session.add_images(paths)
    anns = {i: gt.annotations[p.resolve()] for i, p in zip(ids, paths, strict=True)}
    await session.start()

    # 4. headless labeling run in file order (first two images go in unlabelled-by-model)
    scores_at: dict[int, dict] = {}
    per_image = []
    t_label = time.perf_counter()
    for n, image_id in enumerate(ids[: args.images], start=1):
        pred = await session.predict(image_id)
        await session.submit(image_id, anns[image_id])
        rec = session.evaluator.history[-1] if session.evaluator.history else None
        per_image.append({"n": n, "step": pred.step, "offered": pred.offered,
                          "score": None if rec is None else rec.get("score"),
                          "pred_boxes": len(pred.annotation), "gt_boxes": len(anns[image_id])})
        if n in (5, 10, 20, 40, 60):
            scores_at[n] = {"ema": session.evaluator.ema, "last": per_image[-1]["score"],
                            "mean_last5": _mean([r["score"] for r in per_image[-5:]])}
        await session.wait_steps(args.steps_per_image, timeout=600)
    results["labeling"] = {"scores_at": scores_at, "per_image": per_image,
                           "seconds": time.perf_counter() - t_label, "final_step": session.state.step}

    # 1 + 2 + 3: keep training running (new label resets any plateau) and probe.
    probe_id = ids[-1]
    image = session.image(probe_id)
    stop = asyncio.Event()
    lags: list[float] = []
    session.trainer.plateau.reset()
    lag_task = asyncio.create_task(loop_lag_probe(stop, lags))
    await session.wait_steps(5, timeout=120)
    busy = []
    rng = random.Random(args.seed)
    for _ in range(args.probes):
        await asyncio.sleep(rng.uniform(0.05, 0.4))  # land at random points inside steps
        t0 = time.perf_counter()
        await session.trainer.predict([image])
        busy.append(time.perf_counter() - t0)
    stop.set()
    await lag_task
    step_s = list(session.trainer._step_seconds)
    await session.stop()
    idle = []
    for _ in range(args.probes):
        t0 = time.perf_counter()
        await session.trainer.predict([image])
        idle.append(time.perf_counter() - t0)
    results["step_seconds"] = {"median": statistics.median(step_s), "p95": pct(step_s, 95), "n": len(step_s)}
    results["predict_idle_s"] = {"p50": pct(idle, 50), "p95": pct(idle, 95)}
    results["predict_training_s"] = {"p50": pct(busy, 50), "p95": pct(busy, 95)}
    results["predict_ratio"] = {"p50": pct(busy, 50) / pct(idle, 50), "p95": pct(busy, 95) / pct(idle, 95)}
    results["loop_lag_s"] = {"p50": pct(lags, 50), "p95": pct(lags, 95), "max": max(lags), "n": len(lags)}
    results["image_size"] = list(load_image(paths[0]).shape[:2])
    await session.close()
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def _mean(v: list) -> float | None:
    v = [x for x in v if x is not None]
    return float(np.mean(v)) if v else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench-out/engine")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--steps-per-image", type=int, default=15)
    ap.add_argument("--probes", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    res = asyncio.run(run(args))
    (Path(args.out) / "results.json").write_text(json.dumps(res, indent=2))
    f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    print(f"torch threads: {res['torch_threads']}, image {res['image_size'][1]}x{res['image_size'][0]}")
    print(f"training step (batch {TrainerConfig().batch_size}): median {f(res['step_seconds']['median'])} s, "
          f"p95 {f(res['step_seconds']['p95'])} s")
    print(f"prediction idle: p50 {f(res['predict_idle_s']['p50'])} s, p95 {f(res['predict_idle_s']['p95'])} s")
    print(f"prediction while training: p50 {f(res['predict_training_s']['p50'])} s, "
          f"p95 {f(res['predict_training_s']['p95'])} s")
    print(f"ratio training/idle: p50 {res['predict_ratio']['p50']:.2f}, p95 {res['predict_ratio']['p95']:.2f}")
    print(f"event-loop lag while training: p50 {1000 * res['loop_lag_s']['p50']:.1f} ms, "
          f"p95 {1000 * res['loop_lag_s']['p95']:.1f} ms, max {1000 * res['loop_lag_s']['max']:.1f} ms")
    print(f"labeling run: {res['steps_per_image']} steps between images, "
          f"{res['labeling']['seconds']:.0f} s, final step {res['labeling']['final_step']}")
    for n, s in res["labeling"]["scores_at"].items():
        print(f"  after {n:>2} images: evaluator EMA {f(s['ema'])}, last image {f(s['last'])}, "
              f"mean of last 5 {f(s['mean_last5'])}")
    print(f"peak RSS: {res['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
