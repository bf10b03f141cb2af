"""``livetrain simulate --mode stream``: the LIT paper's correction protocol, with and without the adapter.

A base model is trained on the first frames of a stream (or on a few labels per class); then every
remaining frame is visited once, in order, twice over: once with the base alone, once with a LoRA
adapter that learns from each correction (same base, same frames). A frame whose quality is below the
threshold (IoU for masks; the true class outside the top ``top_k`` for labels) is corrected:

- masks: up to ``max_clicks`` clicks, each at the centre of the largest error region (the pixel
  farthest inside it, positive where the object was missed, negative where it was invented); if the
  IoU is still below the threshold, the full true mask is given;
- labels: the true class is given.

Every corrected frame trains the adapter (with the click-corrected mask when clicks sufficed). Costs
follow the paper: 1 s to locate an error and 1.5 s per click (SAM 2's figures), a full mask 80 s
(EVA-VOS, the "difficult object" figure the paper quotes), and choosing a class 3 s (our figure, as in
the labeling study's cost model); the adapter's own training time is added to the with-adapter time.

Classification follows the paper's variant: images are grouped by the base model's predicted label and
each group is one stream (the adapter is reset between groups); corrections are reported per group for
the groups that need at least ``min_group_corrections`` without the adapter.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..engine._output_folder import OutputFolder
from ..engine.annotation import Annotation
from ..engine.stream import StreamSession, frame_quality
from ..models.stream import AdapterConfig, StreamModel
from .dataset import Item, crop_annotation, tile_windows
from .results import environment, output_folder, spread, write_results

SOURCES = {
    "locate_s": "SAM 2 paper's annotation-time figures, as used by the LIT paper (1 s)",
    "click_s": "SAM 2 paper's annotation-time figures, as used by the LIT paper (1.5 s per click)",
    "full_mask_s": "EVA-VOS, quoted by the LIT paper for a difficult object's full mask (80 s)",
    "label_s": "ours: choosing a class among many (the labeling study's class_choose_s)",
}


@dataclass
class StreamStudyConfig:
    thresholds: list[float] = field(default_factory=lambda: [0.5, 0.75])
    max_clicks: int = 3
    #: classification: a correction when the true class is not in the top k
    top_k: int = 3
    min_group_corrections: int = 5
    #: segmentation: the first frames train the base model (with the engine's trainer)
    base_frames: int = 5
    base_steps: int = 150
    #: classification: labeled examples per class for the base model
    base_per_class: int = 3
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    model_options: dict[str, Any] = field(default_factory=dict)
    click_radius: float | None = None
    seed: int = 0
    locate_s: float = 1.0
    click_s: float = 1.5
    full_mask_s: float = 80.0
    label_s: float = 3.0


@dataclass
class StreamData:
    task: str
    classes: list[str]
    #: frames (segmentation) or labeled pool (classification) for the base model
    base: list[Item]
    #: the stream, in order (classification: the pool that the base model groups into streams)
    stream: list[Item]
    source: str = ""


# ------------------------------------------------------------------------------------------- data
def natural_key(path: Path) -> list[Any]:
    """``2.png`` before ``10.png``: slices of a stack are numbered, not zero-padded."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def load_stream_frames(
    images: str | os.PathLike[str], labels: str | os.PathLike[str], fmt: str, *,
    classes: Sequence[str] | None = None, tile: int | None = None, invert: bool = False,
) -> tuple[list[Item], list[str]]:
    """Frames in stream order (natural file order, then tiles row by row) with their true labels.

    ``invert``: the binary masks mark the background; the class is their complement (the membrane
    stack's labels mark cell interiors, and the membranes are what one segments)."""
    from ..engine.formats import load_labels
    from ..engine.images import list_images, load_image

    src = Path(images)
    paths = [src] if src.is_file() else sorted(list_images(src), key=natural_key)
    if not paths:
        raise ValueError(f"no images found in {images}")
    loaded = load_labels(fmt, labels, paths, classes)
    items: list[Item] = []
    for p in paths:
        ann = loaded.annotations.get(p.resolve())
        if ann is None:
            continue
        if invert:
            if ann.masks is None:
                raise ValueError("--invert flips masks; these labels have none")
            fg = ~np.logical_or.reduce(ann.masks, axis=0) if len(ann.masks) else np.ones((ann.height, ann.width), bool)
            ann = Annotation.from_masks(fg[None], [0], width=ann.width, height=ann.height)
        windows = tile_windows(ann.width, ann.height, tile) if tile else [(0, 0, ann.width, ann.height)]
        for x0, y0, w, h in windows:
            target = crop_annotation(ann, x0, y0, w, h) if tile else ann
            name = f"{p.name}@{x0},{y0}" if tile else p.name
            items.append(Item(name, _crop_loader(load_image, p, x0, y0, w, h), target))
    if not items:
        raise ValueError(f"none of the {len(paths)} images has labels in {labels} ({fmt})")
    return items, list(loaded.classes)


def _crop_loader(load_image: Callable[[Any], np.ndarray], path: Path, x0: int, y0: int, w: int, h: int
                 ) -> Callable[[], np.ndarray]:
    return lambda: np.ascontiguousarray(load_image(path)[y0:y0 + h, x0:x0 + w])


def read_idx(images: str | os.PathLike[str], labels: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-family IDX files (gzip or plain): (N, H, W) uint8 images and (N,) labels."""

    def read(path: str | os.PathLike[str]) -> np.ndarray:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as fh:
            data = fh.read()
        if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 8:
            raise ValueError(f"{path}: not an unsigned-byte IDX file")
        ndim = data[3]
        dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
        if arr.size != int(np.prod(dims)):
            raise ValueError(f"{path}: holds {arr.size} values, its header says {dims}")
        return arr.reshape(dims)

    x, y = read(images), read(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"expected (N, H, W) images and N labels, got {x.shape} and {y.shape}")
    return x, y.astype(np.int64)


FASHION_MNIST = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]


def idx_items(images: np.ndarray, labels: np.ndarray, start: int = 0) -> list[Item]:
    out = []
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        rgb = np.repeat(img[:, :, None], 3, axis=2)
        out.append(Item(f"#{start + i}", (lambda a=rgb: a), Annotation(img.shape[1], img.shape[0], category=int(lab))))
    return out


# ---------------------------------------------------------------------------------------- base model
def train_base(task: str, classes: Sequence[str], items: Sequence[Item], cfg: StreamStudyConfig,
               progress: bool = True) -> Any:
    """The base model: the embedded model trained by the engine's own trainer for ``base_steps``."""
    import torch
    from tqdm.auto import tqdm

    from ..engine.trainer import Trainer, TrainerConfig
    from ..models import create_model

    options = {"seed": cfg.seed, **cfg.model_options}
    if task == "segmentation":
        options.setdefault("semantic", True)
    torch.manual_seed(cfg.seed)  # the fresh head's initial weights: both arms and reruns share one base
    net = create_model("embedded", task, list(classes), **options)
    trainer = Trainer(net, lambda k: items[k].load(), TrainerConfig(
        min_labeled=1, plateau=False, seed=cfg.seed, checkpoint_every_s=float("inf"), device="cpu"))
    try:
        for k, item in enumerate(items):
            trainer.set_sample(k, item.target)
        with tqdm(total=cfg.base_steps, desc="base model", unit="step", disable=not progress, leave=False) as bar:
            done = 0
            while done < cfg.base_steps:
                n = len(trainer.run_steps(min(25, cfg.base_steps - done)))
                if n == 0:
                    raise RuntimeError(f"base training failed: {trainer.error}")
                done += n
                bar.update(n)
    finally:
        trainer.close()
    return net


# ------------------------------------------------------------------------------------ the protocol
def error_click(working: Annotation, truth: Annotation) -> tuple[float, float, bool, int] | None:
    """The simulated click: the interior-most pixel of the largest error region (x, y, positive, class)."""
    want = truth.semantic_map().astype(np.int64)
    have = working.semantic_map().astype(np.int64) if working.masks is not None else np.zeros_like(want)
    err = want != have
    if not err.any():
        return None
    lab, n = ndi.label(err)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    region = lab == int(sizes.argmax())
    dist = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(dist.argmax()), dist.shape)
    c = int(want[y, x])
    # a pixel that should be some class is a positive click for it; one that should be background removes
    return float(x) + 0.5, float(y) + 0.5, c > 0, max(c - 1, 0)


def run_stream(model: StreamModel, items: Sequence[Item], threshold: float, *, adapt: bool,
               cfg: StreamStudyConfig, name: str = "stream", progress: bool = True) -> dict[str, Any]:
    """Walk one stream once (see the module docstring); per-frame records and the totals."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)  # the adapter's initial A matrices
    model.reset_adapter()
    frames = [it.load() for it in items]
    session = StreamSession(model, frames, names=[it.name for it in items], adapt=adapt,
                            click_radius=cfg.click_radius)
    if model.promptable and items and items[0].target.masks is not None and len(items[0].target.masks):
        # as in video object segmentation, the object is given on the first frame; the session then
        # prompts each frame with the box of the previous frame's final mask
        b = items[0].target.boxes
        session.set_box([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])
    top_k = cfg.top_k if model.task == "classification" else 1
    records: list[dict[str, Any]] = []
    human_s = 0.0
    desc = f"{name} {'adapter' if adapt else 'base'} {threshold}"
    for it in tqdm(items, desc=f"{desc:<24}", unit="frame", disable=not progress, leave=False):
        truth = it.target
        q0 = q = frame_quality(session.working(), truth, top_k)
        clicks, full, seconds = 0, False, 0.0
        if q >= threshold:
            rec = session.accept()
        elif model.task == "classification":
            seconds = cfg.label_s
            rec = session.correct(truth)
        else:
            seconds = cfg.locate_s
            while clicks < cfg.max_clicks and q < threshold:
                ck = error_click(session.working(), truth)
                if ck is None:
                    break
                session.click(ck[0], ck[1], positive=ck[2], label=ck[3])
                clicks += 1
                seconds += cfg.click_s
                q = frame_quality(session.working(), truth, top_k)
            if q >= threshold:
                rec = session.accept()
            else:
                full = True
                seconds += cfg.full_mask_s
                rec = session.correct(truth)
        human_s += seconds
        records.append({
            "frame": it.name, "quality": round(q0, 4), "corrected": rec.corrected, "clicks": clicks, "full": full,
            "human_seconds": seconds,
            "update_seconds": round(rec.update.seconds, 4) if rec.update else None,
            "update_epochs": rec.update.epochs if rec.update else None,
            "update_stop": rec.update.stopped if rec.update else None,
        })
    updates = [r["update_seconds"] for r in records if r["update_seconds"] is not None]
    train_s = float(sum(updates))
    return {
        "frames": len(items),
        "corrections": sum(r["corrected"] for r in records),
        "full_corrections": sum(r["full"] for r in records),
        "clicks": sum(r["clicks"] for r in records),
        "mean_quality": round(float(np.mean([r["quality"] for r in records])), 4) if records else None,
        "human_seconds": round(human_s, 1),
        "training_seconds": round(train_s, 2),
        "seconds": round(human_s + train_s, 1),
        "update_seconds": spread(updates),
        "records": records,
    }


def _reduction(before: float, after: float) -> float | None:
    return round(100.0 * (before - after) / before, 1) if before else None


def run_stream_study(data: StreamData, cfg: StreamStudyConfig | None = None, *, base_model: Any = None,
                     out: OutputFolder | str | os.PathLike[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Both arms (base alone, base + adapter) at every threshold; ``results.json`` under ``out`` (a new or
    empty folder, or one a livetrain command made: anything else is refused before the study starts)."""
    from ..models.stream import create_stream_model

    folder = None if out is None else output_folder(out, "livetrain simulate")
    cfg = cfg or StreamStudyConfig()
    t0 = time.perf_counter()
    base = base_model if base_model is not None else train_base(data.task, data.classes, data.base, cfg, progress)
    model = create_stream_model(base, adapter=cfg.adapter)  # a StreamModel given as the base is used as it is
    streams = group_streams(model, data, cfg) if data.task == "classification" else [("stream", data.stream)]
    results: dict[str, Any] = {
        "mode": "stream", "task": data.task, "classes": data.classes, "source": data.source,
        "config": asdict(cfg), "cost_sources": SOURCES, "machine": environment(),
        "base": {"items": len(data.base), "steps": cfg.base_steps if base_model is None else None},
        "adapter_parameters": model.num_adapter_parameters(),
        "base_parameters": sum(p.numel() for p in model.parameters()) - model.num_adapter_parameters(),
        "streams": {name: len(items) for name, items in streams},
        "thresholds": {},
    }
    for thr in cfg.thresholds:
        arms: dict[str, dict[str, Any]] = {}
        for adapt in (False, True):
            arm = "adapter" if adapt else "base"
            arms[arm] = {name: run_stream(model, items, thr, adapt=adapt, cfg=cfg, name=name, progress=progress)
                         for name, items in streams}
        results["thresholds"][str(thr)] = summarise(arms, data.task, cfg)
        if folder is not None:
            write_results(results, folder)
    results["wall_seconds"] = round(time.perf_counter() - t0, 1)
    if folder is not None:
        write_results(results, folder)
    return results


def group_streams(model: StreamModel, data: StreamData, cfg: StreamStudyConfig) -> list[tuple[str, list[Item]]]:
    """The classification variant's streams: the pool grouped by the base model's predicted class."""
    groups: dict[int, list[Item]] = {}
    model.reset_adapter()
    model.eval()
    for it in data.stream:
        pred = model.predict(model.encode(it.load())).annotation
        groups.setdefault(int(pred.category), []).append(it)  # type: ignore[arg-type]
    return [(data.classes[c], groups[c]) for c in sorted(groups)]


def summarise(arms: dict[str, dict[str, dict[str, Any]]], task: str, cfg: StreamStudyConfig) -> dict[str, Any]:
    """Totals per arm, the reduction in corrections and time, and (classification) the per-group figures."""
    out: dict[str, Any] = {"arms": arms}
    for arm, streams in arms.items():
        out[arm] = {
            "corrections": sum(s["corrections"] for s in streams.values()),
            "full_corrections": sum(s["full_corrections"] for s in streams.values()),
            "clicks": sum(s["clicks"] for s in streams.values()),
            "seconds": round(sum(s["seconds"] for s in streams.values()), 1),
            "training_seconds": round(sum(s["training_seconds"] for s in streams.values()), 2),
            "corrections_per_stream": round(float(np.mean([s["corrections"] for s in streams.values()])), 2),
            # quality of the first prediction of each frame, before any correction
            "mean_quality": round(float(np.mean([r["quality"] for s in streams.values() for r in s["records"]])), 4)
            if any(s["records"] for s in streams.values()) else None,
        }
    updates = [r["update_seconds"] for s in arms["adapter"].values() for r in s["records"]
               if r["update_seconds"] is not None]
    out["update_seconds"] = spread(updates)
    out["reduction_corrections_pct"] = _reduction(out["base"]["corrections"], out["adapter"]["corrections"])
    out["reduction_seconds_pct"] = _reduction(out["base"]["seconds"], out["adapter"]["seconds"])
    if task == "classification":
        hard = [g for g, s in arms["base"].items() if s["corrections"] >= cfg.min_group_corrections]
        before = [arms["base"][g]["corrections"] for g in hard]
        after = [arms["adapter"][g]["corrections"] for g in hard]
        out["groups"] = {
            "counted": hard,
            "base_per_group": round(float(np.mean(before)), 2) if hard else None,
            "adapter_per_group": round(float(np.mean(after)), 2) if hard else None,
            "reduction_pct": _reduction(float(np.mean(before)), float(np.mean(after))) if hard else None,
        }
    return out


def format_stream_table(results: dict[str, Any]) -> str:
    head = ["threshold", "corrections base", "with adapter", "reduction", "time base (s)", "with adapter",
            "reduction", "quality base/adapter", "update s p50/p95"]
    rows = [head]
    for thr, res in results["thresholds"].items():
        u = res.get("update_seconds") or {}
        p50, p95 = (f"{u[k]:.3f}" if u.get(k) is not None else "-" for k in ("p50", "p95"))
        b, a = res["base"], res["adapter"]
        cb, ca = b["corrections"], a["corrections"]
        if "groups" in res and res["groups"]["counted"]:
            g = res["groups"]
            cb, ca = f"{cb} ({g['base_per_group']}/grp)", f"{ca} ({g['adapter_per_group']}/grp)"
        rows.append([thr, str(cb), str(ca), f"{res['reduction_corrections_pct']}%", f"{b['seconds']:.0f}",
                     f"{a['seconds']:.0f}", f"{res['reduction_seconds_pct']}%",
                     f"{b['mean_quality']}/{a['mean_quality']}", f"{p50}/{p95}"])
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append(f"adapter: {results['adapter_parameters']} trainable parameters "
                 f"(base {results['base_parameters']}); streams: {results['streams']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Stream-mode options (``livetrain simulate --mode stream``)."""
    g = p.add_argument_group("stream mode (--mode stream)")
    g.add_argument("--thresholds", default="0.5,0.75", help="IoU (or top-k) thresholds that trigger a correction")
    g.add_argument("--base-frames", type=int, default=5, help="segmentation: first frames that train the base")
    g.add_argument("--base-steps", type=int, default=150, help="training steps of the base model")
    g.add_argument("--base-per-class", type=int, default=3, help="classification: base labels per class")
    g.add_argument("--base-model", help="the base instead of training one: a saved model folder, or a SAM / SAM 2 / "
                                        "CLIP checkpoint (folder or Hub name)")
    g.add_argument("--stream-limit", type=int, help="at most N stream frames / pool images")
    g.add_argument("--top-k", type=int, default=3, help="classification: correct when the truth is not in top k")
    g.add_argument("--invert", action="store_true", help="binary masks mark the background; segment the rest")
    g.add_argument("--max-clicks", type=int, default=3)
    g.add_argument("--click-radius", type=float, help="reach of a click edit in pixels (default 4%% of the side)")
    g.add_argument("--adapter", action="append", default=[], metavar="KEY=VALUE",
                   help="adapter setting: rank, alpha, dropout, lr, epochs, patience, fit")


def run(args: argparse.Namespace, kv: Callable[[Sequence[str], str], dict[str, Any]]) -> int:
    from .. import models  # noqa: F401  (registers the model families for --base-model)

    try:
        adapter = AdapterConfig(**kv(args.adapter, "--adapter"))
        cfg = StreamStudyConfig(
            thresholds=[float(v) for v in args.thresholds.split(",") if v], max_clicks=args.max_clicks,
            top_k=args.top_k, base_frames=args.base_frames, base_steps=args.base_steps,
            base_per_class=args.base_per_class, adapter=adapter, model_options=kv(args.model_option, "--model-option"),
            click_radius=args.click_radius, seed=args.seed,
        )
        out = output_folder(args.out, "livetrain simulate")  # refused now, not after the study
        data = load_stream_data(args, cfg)
    except (ValueError, OSError, TypeError) as exc:  # OSError: a missing file, an output folder not ours
        print(f"livetrain simulate --mode stream: {exc}", file=sys.stderr)
        return 2
    base = None
    if args.base_model:
        from ..models.stream import create_stream_model

        try:  # a saved livetrain model, or a SAM / SAM 2 / CLIP checkpoint folder or Hub name
            base = create_stream_model(args.base_model, data.task, data.classes, adapter=cfg.adapter)
        except (ValueError, OSError) as exc:
            print(f"livetrain simulate --mode stream: --base-model {args.base_model}: {exc}", file=sys.stderr)
            return 2
    print(f"{data.task} stream: {len(data.base)} base items, {len(data.stream)} stream items, classes "
          f"{data.classes}", file=sys.stderr)
    results = run_stream_study(data, cfg, base_model=base, out=out, progress=not args.quiet)
    print(format_stream_table(results))
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


def load_stream_data(args: argparse.Namespace, cfg: StreamStudyConfig) -> StreamData:
    classes = args.classes.split(",") if args.classes else None
    if args.format == "idx":
        if args.task != "classification":
            raise ValueError("IDX files hold class labels: use --task classification")
        x, y = read_idx(args.images, args.labels)
        names = classes or (FASHION_MNIST if int(y.max()) < 10 and "fashion" in str(args.images).lower()
                            else [str(c) for c in range(int(y.max()) + 1)])
        rng = np.random.default_rng(cfg.seed)
        base_idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: cfg.base_per_class]
                                   for c in range(len(names))])
        rest = np.setdiff1d(np.arange(len(y)), base_idx)
        pool = rng.permutation(rest)[: args.stream_limit or 1000]
        return StreamData("classification", list(names), idx_items(x[base_idx], y[base_idx]),
                          idx_items(x[pool], y[pool]), source=str(args.images))
    if args.task != "segmentation":
        raise ValueError("image-file streams are segmentation streams; class streams come from --format idx")
    items, names = load_stream_frames(args.images, args.labels, args.format, classes=classes, tile=args.tile,
                                      invert=args.invert)
    if len(items) <= cfg.base_frames:
        raise ValueError(f"{len(items)} frames: need more than --base-frames {cfg.base_frames}")
    stream = items[cfg.base_frames:]
    if args.stream_limit:
        stream = stream[: args.stream_limit]
    return StreamData("segmentation", names, items[: cfg.base_frames], stream, source=str(args.images))


__all__ = ["StreamData", "StreamStudyConfig", "error_click", "format_stream_table", "load_stream_frames", "read_idx",
           "run_stream", "run_stream_study"]
