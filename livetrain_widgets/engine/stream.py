"""The correction mode: a stream of related frames, a frozen model, and a LoRA adapter that learns from
each correction before the next frame is shown (Live Interactive Training, LIT).

    stream = StreamSession(stream_model, frames)        # frames: arrays or image paths, in order
    pred = stream.prediction()                          # the current frame, with the adapter so far
    stream.click(120, 80, positive=False)               # local fixes (or prompts, for SAM)
    stream.accept()                                     # or stream.correct(annotation): a full fix
    stream.stats()                                      # corrections, accepted, last update's seconds

A frame is *accepted* when the user takes the prediction as it is, and *corrected* when they fixed it
with clicks or gave the full answer; every corrected frame trains the adapter (one correction per
update, as the paper found batching several hurts), and the next frame's prediction uses it. The
adapter lives as long as the stream: :meth:`new_stream` resets it, after optionally saving it under a
name that :meth:`load_adapter` brings back for a similar stream later.

Only the adapter trains here; the base model is whatever a live-training session (or a saved model)
produced. The engine never imports Jupyter: the stream widget drives this class from a worker thread.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from scipy import ndimage as ndi

from ..models.base import check_model_folder, read_weights
from ..models.stream import Click, Prompt, StreamModel, StreamPrediction
from .annotation import Annotation, AnnotationError
from .images import load_image

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"


@dataclass
class UpdateReport:
    """One adapter update: how long it took and why it stopped."""

    seconds: float
    epochs: int
    loss_first: float
    loss_last: float
    #: quality of the corrected frame's own prediction after the update (IoU, or 1.0 if the class is top-1)
    fit: float
    stopped: str  # "fit", "patience", "epochs", or "reverted" (the guard took the update back)
    #: mean fit on the last confirmed frames before and after the update (None: no guard frames yet)
    guard_before: float | None = None
    guard_after: float | None = None


@dataclass
class FrameRecord:
    index: int
    name: str
    corrected: bool
    clicks: int
    full: bool
    update: UpdateReport | None = None


@dataclass
class _Current:
    index: int
    encoded: Any
    prompt: Prompt
    prediction: StreamPrediction
    #: the annotation on screen: the prediction with the user's local edits
    working: Annotation
    clicks: int = 0
    #: the user painted on this frame (its working annotation came from the screen): a full correction
    painted: bool = False


def frame_quality(pred: Annotation, truth: Annotation, top_k: int = 1) -> float:
    """The correction protocol's per-frame score: mean IoU over the classes present in either mask set
    (1.0 when both are empty), or for a class label 1.0 when the true class is in the top ``top_k``."""
    if truth.category is not None:
        if pred.category_scores is not None and len(pred.category_scores):
            top = np.argsort(-pred.category_scores, kind="stable")[:top_k]
            return float(truth.category in top)
        return float(pred.category == truth.category)
    a, b = class_masks(pred), class_masks(truth)
    ious = []
    for c in sorted(set(a) | set(b)):
        ma = a.get(c, np.zeros((truth.height, truth.width), bool))
        mb = b.get(c, np.zeros((truth.height, truth.width), bool))
        union = np.logical_or(ma, mb).sum()
        if union:
            ious.append(np.logical_and(ma, mb).sum() / union)
    return float(np.mean(ious)) if ious else 1.0


def class_masks(ann: Annotation) -> dict[int, np.ndarray]:
    """Class index -> union of that class's masks."""
    out: dict[int, np.ndarray] = {}
    if ann.masks is None:
        return out
    for m, c in zip(ann.masks, ann.labels, strict=True):
        c = int(c)
        out[c] = out[c] | m if c in out else m.copy()
    return out


def apply_clicks(
    working: Annotation, probability: np.ndarray | None, clicks: Sequence[Click], *, label: int, radius: float,
) -> Annotation:
    """Local edits for models that take no prompts: a positive click adds, within ``radius`` of it, the
    connected region the model already half-believes in (probability ≥ 0.2 for class ``label``), or a
    dot of half the radius where it believes in nothing; a negative click removes, within ``radius``,
    the connected piece of any mask it lands on. Like a brush that snaps to the model's own evidence."""
    H, W = working.height, working.width
    masks = class_masks(working)
    yy, xx = np.ogrid[:H, :W]
    for ck in clicks:
        x, y = int(np.clip(round(ck.x), 0, W - 1)), int(np.clip(round(ck.y), 0, H - 1))
        disc = (yy - y) ** 2 + (xx - x) ** 2 <= radius**2
        if ck.positive:
            region = disc & ((yy - y) ** 2 + (xx - x) ** 2 <= (radius / 2) ** 2)
            if probability is not None and label < len(probability):
                belief = (probability[label] >= 0.2) & disc
                if belief[y, x]:
                    lab, _ = ndi.label(belief)
                    region = lab == lab[y, x]
            for c in list(masks):
                if c != label:
                    masks[c] &= ~region
            masks[label] = masks.get(label, np.zeros((H, W), bool)) | region
        else:
            for c, m in masks.items():
                if m[y, x]:
                    lab, _ = ndi.label(m & disc)
                    masks[c] = m & ~(lab == lab[y, x])
    keep = [c for c in sorted(masks) if masks[c].any()]
    if not keep:
        return Annotation(W, H, masks=np.zeros((0, H, W), bool))
    return Annotation.from_masks(np.stack([masks[c] for c in keep]), keep)


class StreamSession:
    """One stream of frames with an adapter that learns from each correction (see the module docstring).

    ``adapt=False`` runs the same loop without training (the baseline the simulator compares against).
    ``click_radius``: reach of a local click edit in pixels (default: 4 % of the frame's longer side).
    """

    def __init__(
        self,
        model: StreamModel,
        frames: Sequence[Any] = (),
        *,
        names: Sequence[str] | None = None,
        adapt: bool = True,
        click_radius: float | None = None,
        label: int = 0,
    ) -> None:
        self.model = model
        self.adapt = bool(adapt)
        self.click_radius = click_radius
        self.label = int(label)
        self._lock = threading.RLock()
        self._optimizer: torch.optim.Optimizer | None = None
        self.updates: list[UpdateReport] = []
        self.adapter_name: str | None = None
        self._set_frames(frames, names)

    # --------------------------------------------------------------------------------- frames
    def _set_frames(self, frames: Sequence[Any], names: Sequence[str] | None) -> None:
        self.frames = list(frames)
        if names is None:
            names = [str(f) if isinstance(f, (str, os.PathLike)) else f"frame {i}" for i, f in enumerate(self.frames)]
        if len(names) != len(self.frames):
            raise ValueError(f"{len(names)} names for {len(self.frames)} frames")
        self.names = [str(n) for n in names]
        self.index = 0
        self.records: list[FrameRecord] = []
        self.labels: dict[int, Annotation] = {}
        #: (encoded, prompt, final label) of the last confirmed frames, for the update guard
        self._recent: deque[tuple[Any, Prompt, Annotation]] = deque(maxlen=max(1, self.model.adapter_config.guard))
        self._current: _Current | None = None
        self._box: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def done(self) -> bool:
        """Every frame of the stream has been accepted or corrected."""
        return self.index >= len(self.frames)

    def frame(self, i: int | None = None) -> np.ndarray:
        """Frame ``i`` (default: the current one) as (H, W, 3) uint8 RGB."""
        i = self.index if i is None else i
        if not 0 <= i < len(self.frames):
            raise IndexError(f"frame {i} is outside the stream (0..{len(self.frames) - 1})")
        return load_image(self.frames[i])

    def new_stream(self, frames: Sequence[Any], names: Sequence[str] | None = None, *,
                   save_as: str | None = None, folder: str | os.PathLike[str] | None = None) -> None:
        """Start the next stream with a fresh adapter (optionally saving the current one first)."""
        with self._lock:
            if save_as is not None:
                if folder is None:
                    raise ValueError("save_as needs a folder to save the adapter in")
                self.save_adapter(Path(folder) / save_as)
            self.reset_adapter()
            self._set_frames(frames, names)

    def set_box(self, box: Sequence[float] | None) -> None:
        """The object's box on the current frame, for promptable models (the first frame of a stream)."""
        with self._lock:
            self._box = None if box is None else np.asarray(box, np.float32).reshape(4)
            self._current = None

    # ----------------------------------------------------------------------------- predicting
    def prediction(self) -> StreamPrediction:
        """The current frame's prediction with the adapter as it is now (encoded once per frame)."""
        with self._lock:
            return self._ensure_current().prediction

    def working(self) -> Annotation:
        """What is on screen for the current frame: the prediction with the user's edits so far."""
        with self._lock:
            return self._ensure_current().working

    def _ensure_current(self) -> _Current:
        if self.done:
            raise IndexError("the stream is finished: start a new one with new_stream()")
        cur = self._current
        if cur is None or cur.index != self.index:
            image = self.frame()
            self.model.eval()
            with torch.no_grad():
                encoded = self.model.encode(image)
                prompt = Prompt(box=self._box, label=self.label)
                pred = self.model.predict(encoded, prompt)
            cur = self._current = _Current(self.index, encoded, prompt, pred, pred.annotation)
        return cur

    def repredict(self) -> StreamPrediction:
        """Predict the current frame again (after loading an adapter), dropping local edits."""
        with self._lock:
            cur = self._ensure_current()
            self.model.eval()
            with torch.no_grad():
                cur.prediction = self.model.predict(cur.encoded, cur.prompt)
            cur.working, cur.clicks, cur.painted = cur.prediction.annotation, 0, False
            return cur.prediction

    # ------------------------------------------------------------------------------ correcting
    def click(self, x: float, y: float, positive: bool = True, label: int | None = None, *,
              on: Annotation | None = None) -> Annotation:
        """A correction click on the current frame; returns the edited annotation now on screen.

        ``on``: what the screen shows if the user also painted (models without prompts only); the click
        edits that, and it becomes the frame's working annotation."""
        if self.model.task != "segmentation":
            raise ValueError("clicks correct masks; for a class label use correct()")
        with self._lock:
            cur = self._ensure_current()
            if on is not None:
                if self.model.promptable:
                    raise ValueError("a promptable model redraws the object from its prompts: it cannot click "
                                     "on a painted annotation")
                if (on.width, on.height) != (cur.working.width, cur.working.height):
                    raise AnnotationError(f"the annotation is {on.width}x{on.height}; the frame is "
                                          f"{cur.working.width}x{cur.working.height}")
                cur.working = on.validate(len(self.model.classes))
                cur.painted = True
            lab = self.label if label is None else int(label)
            if not 0 <= lab < len(self.model.classes):
                raise ValueError(f"unknown class index {lab}")
            ck = Click(float(x), float(y), bool(positive))
            cur.clicks += 1
            if self.model.promptable:
                cur.prompt = Prompt(box=cur.prompt.box, clicks=(*cur.prompt.clicks, ck), label=lab)
                self.model.eval()
                with torch.no_grad():
                    cur.working = self.model.predict(cur.encoded, cur.prompt).annotation
            else:
                radius = self.click_radius or 0.04 * max(cur.working.width, cur.working.height)
                cur.working = apply_clicks(cur.working, cur.prediction.probability, [ck], label=lab, radius=radius)
            return cur.working

    def accept(self) -> FrameRecord:
        """The annotation on screen is final. Untouched: accepted; edited with clicks (or painted, see
        ``click(on=...)``): a correction that trains the adapter. Moves to the next frame."""
        with self._lock:
            cur = self._ensure_current()
            return self._finish(cur, cur.working, corrected=cur.clicks > 0 or cur.painted, full=cur.painted)

    def correct(self, annotation: Annotation) -> FrameRecord:
        """A full correction (brush-painted masks or the right class): final, trains the adapter, moves on."""
        with self._lock:
            cur = self._ensure_current()
            w, h = cur.prediction.annotation.width, cur.prediction.annotation.height
            if (annotation.width, annotation.height) != (w, h):
                raise AnnotationError(
                    f"the correction is for a {annotation.width}x{annotation.height} image; the frame is {w}x{h}"
                )
            annotation = annotation.validate(len(self.model.classes))
            if self.model.task == "classification" and annotation.category is None:
                raise AnnotationError("a class-label correction needs a category")
            return self._finish(cur, annotation, corrected=True, full=True)

    def _finish(self, cur: _Current, final: Annotation, *, corrected: bool, full: bool) -> FrameRecord:
        update = self._update(cur, final) if corrected and self.adapt else None
        rec = FrameRecord(cur.index, self.names[cur.index], corrected, cur.clicks, full, update)
        self.records.append(rec)
        if self.model.adapter_config.guard:
            self._recent.append((cur.encoded, Prompt(box=cur.prompt.box, label=cur.prompt.label), final))
        self.labels[cur.index] = final
        if self.model.promptable:
            # the object's box on this frame prompts the next one (the stream's propagation)
            mine = final.boxes[final.labels == cur.prompt.label]
            if len(mine):
                self._box = np.concatenate([mine[:, :2].min(0), mine[:, 2:].max(0)]).astype(np.float32)
        self.index += 1
        self._current = None
        return rec

    # ------------------------------------------------------------------------------- training
    def _update(self, cur: _Current, target: Annotation) -> UpdateReport:
        """Train the adapter on one corrected frame: up to ``epochs`` passes over the cached features,
        stopping early when the frame itself is fitted or the loss stops falling.

        The guard: an update must not make the adapter worse on the last ``guard`` frames the user
        confirmed in this stream (accepted or corrected; their final labels are free supervision). If
        their mean fit drops by more than ``guard_tolerance``, the update is taken back. One odd frame
        (a tile unlike the rest, an abrupt change in a video) then costs its own correction only,
        instead of spoiling the frames after it."""
        cfg = self.model.adapter_config
        if self._optimizer is None:
            self._optimizer = torch.optim.AdamW(self.model.adapter_parameters(), lr=cfg.lr,
                                                weight_decay=cfg.weight_decay)
        opt = self._optimizer
        prompt = Prompt(box=cur.prompt.box, label=cur.prompt.label)  # the adapter must work without the clicks
        t0 = time.perf_counter()
        snapshot = guard_before = None
        if cfg.guard and self._recent:
            guard_before = self._guard_quality()
            snapshot = (self.model.adapter_state(), copy.deepcopy(opt.state_dict()))
        losses: list[float] = []
        best, since_best, stopped, fit = float("inf"), 0, "epochs", 0.0
        for epoch in range(cfg.epochs):
            self.model.train()
            loss, seen_fit = self.model.loss_and_fit(cur.encoded, prompt, target)
            if seen_fit is None:
                seen_fit = self._fit(cur.encoded, prompt, target)
                self.model.train()
            # the fit seen in this forward pass reflects the steps so far: stop before stepping once the
            # frame is fitted, so an easy correction moves the adapter no further than needed; but always
            # take one step, since a frame the user corrected holds something the adapter has not learned
            fit = seen_fit
            if fit >= cfg.fit and epoch > 0:
                stopped = "fit"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            losses.append(value)
            if value < best * 0.99:
                best, since_best = value, 0
            else:
                since_best += 1
            if since_best >= cfg.patience:
                stopped = "patience"
                break
        self.model.eval()
        if stopped != "fit":
            fit = self._fit(cur.encoded, prompt, target)
        first = losses[0] if losses else float("nan")
        last = losses[-1] if losses else float("nan")
        guard_after = None
        if snapshot is not None and guard_before is not None:
            guard_after = self._guard_quality()
            if guard_after < guard_before - cfg.guard_tolerance:
                # the update undid what the user confirmed on the last frames: take it back
                self.model.load_adapter_state(snapshot[0])
                opt.load_state_dict(snapshot[1])
                stopped = "reverted"
                fit = self._fit(cur.encoded, prompt, target)
        report = UpdateReport(time.perf_counter() - t0, len(losses), first, last, fit, stopped,
                              guard_before, guard_after)
        self.updates.append(report)
        return report

    def _guard_quality(self) -> float:
        """Mean fit of the adapter on the stream's last confirmed frames (their final labels)."""
        return float(np.mean([self._fit(encoded, prompt, final) for encoded, prompt, final in self._recent]))

    def _fit(self, encoded: Any, prompt: Prompt, target: Annotation) -> float:
        """How well the adapter as it is fits ``target`` (eval mode; the model's own measure if it has one)."""
        self.model.eval()
        with torch.no_grad():
            fit = self.model.loss_and_fit(encoded, prompt, target)[1]
            if fit is None:
                fit = frame_quality(self.model.predict(encoded, prompt).annotation, target)
        return fit

    def reset_adapter(self) -> None:
        """Back to the base model (a new stream); the optimizer's moments go too."""
        with self._lock:
            self.model.reset_adapter()
            self._optimizer = None
            self.updates = []
            self.adapter_name = None
            if self._current is not None:
                self.repredict()

    # --------------------------------------------------------------------------- save / load
    def save_adapter(self, folder: str | os.PathLike[str]) -> Path:
        """Write the adapter (safetensors, no pickles) and what it was trained on into ``folder`` (a new folder,
        or one holding only livetrain's files under those names: see :func:`check_model_folder`)."""
        out = Path(folder)
        check_model_folder(out, (ADAPTER_WEIGHTS, ADAPTER_CONFIG), config=ADAPTER_CONFIG)
        out.mkdir(parents=True, exist_ok=True)
        with self._lock:
            state = {k: v.contiguous() for k, v in self.model.adapter_state().items()}
            info = {**self.model.describe(), "stats": self.stats(), "name": out.name}
        save_file(state, str(out / (ADAPTER_WEIGHTS + ".tmp")))
        os.replace(out / (ADAPTER_WEIGHTS + ".tmp"), out / ADAPTER_WEIGHTS)
        (out / (ADAPTER_CONFIG + ".tmp")).write_text(json.dumps(info, indent=2))
        os.replace(out / (ADAPTER_CONFIG + ".tmp"), out / ADAPTER_CONFIG)
        self.adapter_name = out.name
        return out

    def load_adapter(self, folder: str | os.PathLike[str]) -> None:
        """Bring back a saved adapter; refuses one made for another model family, task or classes."""
        src = Path(folder)
        if not (src / ADAPTER_WEIGHTS).is_file():
            raise FileNotFoundError(f"{src}: no {ADAPTER_WEIGHTS}; not a folder written by save_adapter")
        info = json.loads((src / ADAPTER_CONFIG).read_text()) if (src / ADAPTER_CONFIG).is_file() else {}
        mine = self.model.describe()
        for key in ("family", "task", "classes"):
            if key in info and info[key] != mine[key]:
                raise ValueError(f"{src}: adapter made for {key} {info[key]!r}, this model has {mine[key]!r}")
        with self._lock:
            self.model.load_adapter_state(read_weights(src / ADAPTER_WEIGHTS))
            self._optimizer = None
            self.adapter_name = src.name
            if self._current is not None:
                self.repredict()

    # ------------------------------------------------------------------------------- figures
    def stats(self) -> dict[str, Any]:
        """Counters for the panel and the simulator (JSON-able)."""
        recs = self.records
        secs = [u.seconds for u in self.updates]
        return {
            "frames": len(self.frames),
            "done": len(recs),
            "corrections": sum(r.corrected for r in recs),
            "full_corrections": sum(r.full for r in recs),
            "clicks": sum(r.clicks for r in recs),
            "accepted": sum(not r.corrected for r in recs),
            "updates": len(self.updates),
            "reverted": sum(u.stopped == "reverted" for u in self.updates),
            "last_update_seconds": secs[-1] if secs else None,
            "mean_update_seconds": float(np.mean(secs)) if secs else None,
            "last_update_epochs": self.updates[-1].epochs if self.updates else None,
            "adapter_parameters": self.model.num_adapter_parameters(),
            "adapt": self.adapt,
            "adapter_name": self.adapter_name,
        }

    def history(self) -> list[dict[str, Any]]:
        """One record per frame done: accepted or corrected, clicks, quality, adapter update time."""
        return [asdict(r) for r in self.records]


__all__ = ["FrameRecord", "StreamSession", "UpdateReport", "apply_clicks", "class_masks", "frame_quality"]
