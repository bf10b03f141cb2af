"""Where a training step of the embedded detector spends its time, on real BCCD images (issue 21 A).

    python benchmarks/profile_step.py --threads 1 2 --steps 12

Times each part of the step the trainer takes (``Trainer._train_step`` → ``EmbeddedModel.loss``):
decoding (once per image, cached by the session), resizing + augmentation + normalising, the frozen
trunk's forward (stem and blocks up to stride 8), the trainable rest's forward (stride-16/32 blocks, FPN,
head), target building, the loss, backward, and the optimizer (clip + AdamW). With ``--cached`` the frozen
trunk's features come from the feature cache instead, filled beforehand (hits only: a miss costs one trunk
forward of one image). Medians over ``--steps`` steps after 2 warm-up steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from livetrain_widgets.engine.formats import load_labels
from livetrain_widgets.engine.images import list_images, load_image
from livetrain_widgets.models import _detection as det
from livetrain_widgets.models._preprocess import pad_batch
from livetrain_widgets.models.embedded import EmbeddedModel


def _data(root: Path, n: int) -> tuple[list[np.ndarray], list, float]:
    paths = list_images(root / "JPEGImages")[:n]
    loaded = load_labels("voc", root / "Annotations", paths, ["RBC", "WBC", "Platelets"])
    t0 = time.perf_counter()
    images = [load_image(p) for p in paths]
    decode = (time.perf_counter() - t0) / len(paths)
    return images, [loaded.annotations[p.resolve()] for p in paths], decode


def profile(threads: int, steps: int, input_size: int, batch: int, cached: bool, root: Path,
            freeze_stride: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    images, targets, decode = _data(root, 16)
    model = EmbeddedModel("detection", ["RBC", "WBC", "Platelets"], seed=0, input_size=input_size,
                          freeze_stride=freeze_stride, feature_cache_mb=256 if cached else 0)
    model.train()
    opt = torch.optim.AdamW(model.param_groups(1e-3), lr=1e-3, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    parts: dict[str, list[float]] = {}

    def tick(name: str, t0: float) -> float:
        t = time.perf_counter()
        parts.setdefault(name, []).append(t - t0)
        return t

    if cached:  # fill the cache first (every image meets its 12 variants within ~50 draws): hits only below
        for _ in range(60):
            for j in range(len(images)):
                model.cached_batch([images[j]], [targets[j]])
    warmup = 2
    for i in range(steps + warmup):
        idx = rng.choice(len(images), batch, replace=False)
        imgs, tg = [images[j] for j in idx], [targets[j] for j in idx]
        t = t_start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if cached:
            low, boxes, labels = model.cached_batch(imgs, tg)
            t = tick("frozen features from the cache, augmented", t)
        else:
            samples = model._prepare(imgs, tg)
            boxes, labels = [s.boxes for s in samples], [s.labels for s in samples]
            x = pad_batch([s.image for s in samples]).contiguous(memory_format=torch.channels_last)
            t = tick("prepare (resize, augment, normalise)", t)
            with torch.no_grad():
                low = model.backbone.forward_frozen(x)
            t = tick("frozen trunk forward", t)
        feats = model.backbone.forward_trainable(low)
        pyr = model.neck(feats, (8,))
        heat_logits, dist = model.head(pyr[8])
        t = tick("trainable forward (unfrozen blocks, FPN, head)", t)
        heat, tgt, wgt = det.build_targets(boxes, labels, model.num_classes, tuple(heat_logits.shape[-2:]), 8)
        t = tick("target building", t)
        loss = det.detection_loss(heat_logits, dist, heat, tgt, wgt, 8)
        t = tick("loss", t)
        loss.backward()
        t = tick("backward", t)
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        tick("optimizer (clip + AdamW)", t)
        tick("whole step", t_start)
        if i < warmup:
            parts.clear()
    out = {k: statistics.median(v) for k, v in parts.items()}
    out["decode one image (once; the session caches it)"] = decode
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.environ.get("LIVETRAIN_DATA", "../shared/data"))
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--input-size", type=int, default=384)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--cached", action="store_true", help="the frozen trunk's features from the feature cache")
    p.add_argument("--freeze-stride", type=int, default=8, help="frozen up to this stride (8: before issue 21)")
    a = p.parse_args()
    root = Path(a.data) / "bccd"
    for n in a.threads:
        res = profile(n, a.steps, a.input_size, a.batch, a.cached, root, a.freeze_stride)
        total = res["whole step"]
        print(f"\n{n} torch thread(s), input {a.input_size}, batch {a.batch}, cached={a.cached}, "
              f"freeze_stride={a.freeze_stride}, "
              f"load average {os.getloadavg()[0]:.1f}")
        for k, v in res.items():
            share = "" if k.startswith("decode") else f"{100 * v / total:5.1f} %"
            print(f"  {k:48s} {1000 * v:8.1f} ms  {share}")


if __name__ == "__main__":
    main()
