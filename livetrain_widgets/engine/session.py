"""``LiveSession``: one labeling project with a model that trains while you label.

The session ties the parts together and is what widgets, scripts and benchmarks drive::

    session = LiveSession("runs/cells", task="detection", classes=["RBC", "WBC", "Platelets"])
    session.add_images("path/to/folder")
    await session.start()
    pred = await session.predict(image_id)       # pre-labels from the latest weights
    await session.submit(image_id, annotation)   # durable before it returns; joins training at once
    session.state                                 # phase, step, loss, plateau, quality, ...
    await session.stop()                          # final checkpoint
    session.export("coco", "out/")

Everything lives in the project folder: ``labels.sqlite`` (images, every annotation version, the
pre-labels shown), ``checkpoints/`` and ``images/`` (images that were handed in as arrays). Opening the
folder again resumes labels, model, optimizer, sampler, plateau detector and evaluator.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import os
import time
import warnings
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from PIL import Image

from ..models import create_model
from ..models.base import LiveModel, full_config, model_from_config
from ._checks import check_image_id, check_threshold, check_threshold_value
from ._disk import DiskFullError, disk_full
from .ahead import AheadConfig, PredictAhead
from .annotation import TASKS, Annotation, AnnotationError
from .autothreshold import ThresholdTuner, TunerConfig
from .checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    had_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    recover_checkpoints,
    save_checkpoint,
)
from .costs import CostModel
from .evaluator import EvaluatorConfig, LiveEvaluator
from .formats import FORMATS, check_class_names, export_labels, load_labels
from .images import ImageCache, ImageError, image_info, list_images, load_image, to_rgb
from .plateau import PlateauConfig
from .project_lock import ProjectLock, ProjectReadOnlyError, read_only_error, unwritable
from .queue import check_order, most_uncertain, seeded_order
from .sampler import SamplerConfig
from .store import AnnotationStore
from .trainer import Trainer, TrainerConfig

#: label versions below the highest row seen that :meth:`LiveSession.sync` reads again (see there)
SYNC_WINDOW_ROWS = 256


class SkippedFileWarning(UserWarning):
    """A file that was not imported; the message names it and says why."""


@dataclass
class SessionConfig:
    """Everything tunable about a session, with defaults for the embedded model on a CPU."""

    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sampler: SamplerConfig | None = None
    plateau: PlateauConfig | None = None
    evaluator: EvaluatorConfig | None = None
    #: pre-labels below this confidence are not shown until the history chooses one (``auto_threshold``);
    #: the UI slider overrides both per view
    threshold: float = 0.3
    #: choose the threshold, per class where there is enough data, that minimises the expected correction
    #: time of the recent submissions under ``costs`` (see :mod:`livetrain_widgets.engine.autothreshold`)
    auto_threshold: bool = True
    #: don't offer pre-labels while the recent submissions say they cost more time than they save
    auto_offer: bool = True
    #: what a person's actions cost, for the two above (default: ``CostModel()``)
    costs: CostModel | None = None
    tuner: TunerConfig | None = None
    #: decoded images kept in memory for training and prediction
    image_cache_mb: int = 512
    keep_checkpoints: int = 2
    #: pre-labels of the next images computed between training steps (``AheadConfig(images=0)``: off)
    ahead: AheadConfig = field(default_factory=AheadConfig)
    #: which unlabeled image comes next: "file" (the order images were added), "random" (one seeded
    #: shuffle) or "uncertain" (the least certain of the images predicted ahead); see
    #: :mod:`livetrain_widgets.engine.queue`
    order: str = "file"
    #: the shuffle of ``order="random"``
    order_seed: int = 0

    def __post_init__(self) -> None:
        check_order(self.order)

    def __setattr__(self, name: str, value: Any) -> None:
        # Checked whenever set, not only when made: ``session.config.threshold = x`` is how a notebook moves it,
        # and a NaN there hid every pre-label (it compares false with every score).
        if name == "threshold":
            value = check_threshold_value(value)
        super().__setattr__(name, value)


@dataclass(frozen=True)
class Prediction:
    image_id: int
    annotation: Annotation
    #: the model step whose weights made it
    step: int
    #: False while the model has not yet learned enough for its pre-labels to help (see Trainer)
    offered: bool
    seconds: float
    prediction_id: int
    #: steps the model had taken since the weights that made it, when it was served
    age: int = 0
    #: computed ahead, before the image was opened (see :mod:`livetrain_widgets.engine.ahead`)
    ahead: bool = False


@dataclass(frozen=True)
class SessionState:
    phase: str
    message: str
    step: int
    loss: float | None
    smoothed_loss: float | None
    plateaued: bool
    offering: bool
    quality: float | None
    #: images whose offered pre-label was judged (each image once; see LiveEvaluator.evaluate)
    evaluated: int
    labeled: int
    images: int
    step_seconds: float | None
    device: str
    error: str | None
    last_checkpoint_step: int | None
    #: the confidence threshold chosen from the history (one value for a single slider), None until chosen
    threshold: float | None = None
    #: per class, the same
    thresholds: list[float] | None = None
    #: seconds per image the pre-labels are expected to save (negative: they cost), None without history
    saving_s: float | None = None
    #: a team's other annotators labeling now, e.g. "bob (image 12)" (None: not a team's session)
    team: list[str] | None = None
    #: a team's trainer does not answer now (the annotator labels on, without pre-labels)
    reconnecting: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The state as plain values (for logging or JSON)."""
        return asdict(self)


class LiveSession:
    """A labeling project with a live-training model. See the module docstring for the workflow."""

    def __init__(
        self,
        project: str | os.PathLike[str],
        task: str | None = None,
        classes: Sequence[str] | None = None,
        *,
        model: str | os.PathLike[str] | LiveModel = "embedded",
        config: SessionConfig | None = None,
        user: str | None = None,
        model_options: dict[str, Any] | None = None,
        store: str | os.PathLike[str] | None = None,
    ) -> None:
        self.project = Path(project)
        try:
            self.project.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _raise_folder_error(self.project, "could not create the project folder", exc)
        self.config = config or SessionConfig()
        self.user = user or _default_user()
        self._lock = ProjectLock(self.project / ".lock")  # ProjectReadOnlyError: a sentence, not EROFS
        try:
            self._lock.acquire()
        except OSError as exc:
            _raise_folder_error(self.project, "could not open the project", exc)
        try:
            # A team's shared store (``postgresql://...``) or the project's own file; checkpoints stay in
            # the project folder either way.
            self.store = AnnotationStore(self.project / "labels.sqlite" if store is None else store)
            self.task, self.classes = self._resolve_project(task, classes)
            self._checkpoint_dir = self.project / "checkpoints"
            recover_checkpoints(self._checkpoint_dir)  # complete copies a killed process left aside
            ckpt_path = latest_checkpoint(self._checkpoint_dir)
            ckpt = load_checkpoint(ckpt_path) if ckpt_path is not None else None
            # A project that had a checkpoint and has none now starts from untrained weights: said where the
            # person looks (the state and the panel, and as a warning), never silently.
            no_checkpoint = None
            if ckpt is None and had_checkpoint(self._checkpoint_dir):
                no_checkpoint = (
                    f"no checkpoint in {self._checkpoint_dir} could be loaded, so the model starts again from "
                    "untrained weights; every label is kept and is trained on again"
                )
                warnings.warn(no_checkpoint, RuntimeWarning, stacklevel=2)
            if ckpt is not None:
                net = model_from_config(ckpt["model_config"], where=str(ckpt_path))
            else:
                net = create_model(model, self.task, self.classes, **(model_options or {}))
            self.evaluator = LiveEvaluator(self.task, len(self.classes), self.config.evaluator)
            self.tuner = ThresholdTuner(self.task, len(self.classes), self.config.costs, self.config.tuner,
                                        prior=self.config.threshold)
            self._cache = ImageCache(self.config.image_cache_mb << 20)
            self._paths: dict[int, str] = {r.id: r.path for r in self.store.images()}
            self.trainer = Trainer(
                net,
                self._image,
                self.config.trainer,
                sampler_config=self.config.sampler,
                plateau_config=self.config.plateau,
                quality=lambda: self.evaluator.ema,
                checkpoint=self._write_checkpoint,
                checkpoint_extra=self._checkpoint_extra,
                on_step=self._on_step,
            )
            self.ahead = PredictAhead(
                self.trainer.predict, self._image, lambda: self.trainer.step,
                lambda: self.trainer.weights_version, self.config.ahead,
            )
            self.last_checkpoint_step: int | None = None
            self.trainer.checkpoint_error = no_checkpoint  # shown until a checkpoint is written again
            if ckpt is not None:
                self.trainer.load_state_dict(ckpt)
                self.evaluator.load_state_dict(ckpt["evaluator"])
                if "tuner" in ckpt:  # absent in checkpoints from before the tuner: it learns afresh
                    self.tuner.load_state_dict(ckpt["tuner"])
                self.last_checkpoint_step = int(ckpt["step"])
            # Without a checkpoint every judgement is replayed: a process killed before its first checkpoint
            # lost them all, but the store kept both sides of each.
            self._replay_evaluations(float(ckpt["time"]) if ckpt is not None else None)
            # Ids with a label, kept here so "which image is next" costs no store query per submission
            # (it grew linearly with the project and lagged the event loop in long sessions). Exact
            # while only this process writes the store (the project lock); on a store shared with other
            # writers (a team's annotators), :meth:`sync` keeps it so.
            self._labeled: set[int] = set(self.store.labeled_ids())
            self._random_order: list[int] | None = None  # config.order == "random", made when first needed
            # The label version of each image this session trains on, and the highest store row seen:
            # what sync() compares with to find versions written by others.
            rows = self.store.version_rows_after(0)
            self._applied: dict[int, int] = {}
            for _, image_id, version in rows:
                self._applied[image_id] = max(version, self._applied.get(image_id, 0))
            self._row_seen = max((r[0] for r in rows), default=0)
            self._sync_lock: asyncio.Lock | None = None  # made on first use, on the loop that syncs
            labels = {i: a for i in self._labeled if (a := self.store.annotation(i)) is not None}
            self.trainer.load_samples(labels)
        except BaseException as exc:
            self._lock.release()
            if isinstance(exc, Exception) and disk_full(exc):
                raise DiskFullError("could not open the project", self.project) from exc
            raise
        self._closed = False

    # --------------------------------------------------------------------------------- setup
    def _resolve_project(self, task: str | None, classes: Sequence[str] | None) -> tuple[str, list[str]]:
        stored_task = self.store.get_meta("task")
        stored_classes = self.store.get_meta("classes")
        if stored_task is not None and stored_classes is None and task is None:
            # Only a process killed while creating the project (before task and classes were one write)
            # leaves this; there can be no labels, so naming the task and classes finishes the creation.
            raise ValueError(
                f"{self.project} was never completely created (it has a task but no classes): open it with "
                "its task and classes, e.g. LiveSession(project, 'detection', ['cat', 'dog']), to finish it"
            )
        if stored_task is not None and stored_classes is not None:
            if task is not None and task != stored_task:
                raise ValueError(f"{self.project} is a {stored_task!r} project; it cannot be opened as {task!r}")
            if classes is not None and list(classes) != stored_classes:
                raise ValueError(
                    f"{self.project} has classes {stored_classes}; got {list(classes)}. Open it without "
                    "`classes` to use the stored ones, or start a new project for other classes."
                )
            return stored_task, list(stored_classes)
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if not classes:
            raise ValueError("a new project needs its class names, e.g. classes=['cat', 'dog']")
        names = check_class_names(classes, task)  # what its formats cannot carry is refused now, not at export
        self.store.set_metas({"task": task, "classes": names})  # one transaction: created, or not at all
        return task, names

    def _replay_evaluations(self, since: float | None) -> None:
        """Judge again the pre-labels of submissions made after the checkpoint, or all of them when there
        is none (a crash lost those evaluator records, but the store kept both sides of every comparison)."""
        judged = {r.get("prediction_id") for r in self.evaluator.history}
        # A margin before the checkpoint: a submission committed just before it may have been judged
        # just after it. Records carry the prediction id, so nothing is judged twice.
        for image_id, version in self.store.versions_since(0.0 if since is None else since - 600.0):
            if version.prediction_id is not None and version.prediction_id not in judged:
                self._evaluate(image_id, self.store.prediction_by_id(version.prediction_id), version.annotation)

    def _evaluate(self, image_id: int, pred: Any, final: Annotation,
                  threshold: float | Sequence[float] | None = None) -> None:
        thr = self.thresholds() if threshold is None else threshold
        # A pre-label the model held back (not offered yet) is no pre-label to the person: judging it
        # made "0% (1 judged)" of the first image, labeled before the model had learned anything.
        offered = pred.annotation.filter(thr) if pred.shown else None
        rec = self.evaluator.evaluate(image_id, offered, final, step=pred.model_step)
        rec.update(prediction_id=pred.id, shown=pred.shown)
        # Every candidate the model proposed against what was submitted, shown or not: the threshold tuner
        # learns from silent predictions too, so it can say when pre-labels start (again) to pay off.
        try:
            self.tuner.record(image_id, pred.annotation, final)
        except Exception as exc:  # a tuning problem must never cost a submission
            warnings.warn(f"the threshold tuner skipped image {image_id}: {exc}", RuntimeWarning, stacklevel=2)

    def _image(self, image_id: int) -> np.ndarray:
        path = self._paths.get(image_id)
        if path is None:
            raise KeyError(f"no image with id {image_id} in this project")
        return self._cache.get(image_id, lambda: self._load_checked(image_id, path))

    def _load_checked(self, image_id: int, path: str) -> np.ndarray:
        """Read an image from disk and check it still has the size it was added with.

        The file can change after ``add_images`` (edited, replaced, deleted). A missing or unreadable
        file already raised ImageError; a file replaced by an image of another size used to load
        silently, so its stored labels were trained on (and shown) at the wrong place. The trainer
        takes an image that raises out of training; its labels stay stored.
        """
        arr = load_image(path)
        rec = self.store.image(image_id)
        if (arr.shape[1], arr.shape[0]) != (rec.width, rec.height):
            raise ImageError(
                f"{path}: the file changed on disk since it was added: it is now {arr.shape[1]}x{arr.shape[0]}, "
                f"it was {rec.width}x{rec.height} (its labels are kept; restore the file, or add it again)"
            )
        return arr

    # -------------------------------------------------------------------------------- images
    def add_images(
        self,
        source: str | os.PathLike[str] | Iterable[Any],
        labels: str | os.PathLike[str] | None = None,
        format: str | None = None,
        *,
        ignore_classes: Sequence[str] = (),
    ) -> list[int]:
        """Add a folder, a list of paths, PIL images or arrays; optionally import existing labels.

        Returns the image ids in the order given. A file that cannot be read is skipped with a
        :class:`SkippedFileWarning` naming it; the others are added. Adding the same file again returns
        its existing id. ``labels`` + ``format`` ("coco", "voc", "yolo", "masks", "instances",
        "folders") import annotations, stored with source "imported" and trained on like any other.

        Class names of the files match the project's ignoring case (``RBC`` is ``rbc``; a warning says
        so). Objects of any other class are refused with a ``ValueError`` that names the classes and the
        files, and nothing is added, since leaving them out would store their images as labeled with
        nothing there; ``ignore_classes`` names classes whose objects are to be left out on purpose.
        Importing again replaces labels that came from an earlier import (so a corrected file repairs
        them) but never labels a person has submitted since.
        """
        if labels is not None:
            # The labels argument is checked before any image is added: a call that raised on it left the
            # images added without their labels (the project changed by a call that failed).
            if format not in FORMATS:
                raise ValueError(
                    f"say which format the labels are in: format= one of {FORMATS}, got {format!r}"
                )
            if not Path(labels).exists():
                raise FileNotFoundError(f"{labels}: no such label file or folder")
        items: list[Any]
        if isinstance(source, (str, os.PathLike)):
            p = Path(source)
            items = list_images(p) if p.is_dir() else [p]
        else:
            items = list(source)
        incoming = None
        if labels is not None:
            # Read and checked before any image is added: a refused import changes nothing.
            incoming = self._read_labels(
                labels, format, [Path(i) for i in items if isinstance(i, (str, os.PathLike))], ignore_classes
            )
        ids: list[int] = []
        paths: list[Path] = []
        for item in items:
            try:
                path = item if isinstance(item, (str, os.PathLike)) else self._save_array(item)
                info = image_info(path)
            except ImageError as exc:
                warnings.warn(f"skipped {exc}", SkippedFileWarning, stacklevel=2)
                continue
            image_id = self.store.add_image(
                info.path, width=info.width, height=info.height, sha256=info.sha256, nbytes=info.nbytes,
                name=Path(info.path).name,
            )
            self._paths[image_id] = info.path
            ids.append(image_id)
            paths.append(Path(info.path))
        if incoming is not None:
            self._store_labels(incoming, paths, ids)
        return ids

    def _save_array(self, item: Any) -> Path:
        arr = load_image(item) if isinstance(item, Image.Image) else to_rgb(np.asarray(item))
        folder = self.project / "images"
        folder.mkdir(exist_ok=True)
        name = hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()[:20] + ".png"
        path = folder / name
        if not path.exists():
            tmp = path.with_suffix(".tmp.png")
            try:
                Image.fromarray(arr).save(tmp)
                os.replace(tmp, path)
            except OSError as exc:
                tmp.unlink(missing_ok=True)  # a full disk left it behind, taking the space that was left
                _raise_folder_error(folder, "could not save an image handed in as an array", exc)
        return path

    def _read_labels(self, labels: Any, fmt: str | None, paths: list[Path],
                     ignore_classes: Sequence[str]) -> dict[Path, tuple[Annotation, str]]:
        """The labels of ``paths`` in this project's class indices, with the file each came from.

        Raises ValueError, naming classes and files, when objects are of classes this project does not
        have (and not in ``ignore_classes``): an image whose objects were all left out was stored as
        labeled with nothing there (trained as background, out of the queue), and one whose objects
        were partly left out taught background where the others are.
        """
        if fmt is None:
            raise ValueError("say which format the labels are in: format='coco' | 'voc' | 'yolo' | ...")
        if isinstance(ignore_classes, str):
            raise TypeError(f"ignore_classes takes a list of class names, e.g. [{ignore_classes!r}]")
        loaded = load_labels(fmt, labels, paths, self.classes)
        for msg in loaded.errors:
            warnings.warn(msg, SkippedFileWarning, stacklevel=3)
        n = len(self.classes)
        ignored = {str(c).casefold() for c in ignore_classes}
        unknown: dict[str, list[str]] = {}  # class name -> the label files with objects of it
        for path, ann in loaded.annotations.items():
            used = {int(v) for v in ann.labels} | ({int(ann.category)} if ann.category is not None else set())
            for j in sorted(used):
                if j >= n and loaded.classes[j].casefold() not in ignored:
                    unknown.setdefault(loaded.classes[j], []).append(loaded.sources.get(path, str(path)))
        if unknown:
            def where(files: list[str]) -> str:
                files = sorted(set(files))
                return ", ".join(files[:3]) + (f" and {len(files) - 3} more files" if len(files) > 3 else "")

            listed = "; ".join(f"{name!r} in {where(files)}" for name, files in unknown.items())
            raise ValueError(
                f"the labels have objects of classes this project does not have: {listed}. This project's "
                f"classes are {self.classes}. Nothing was added: correct the class names in the files, create "
                f"the project with these classes too, or pass ignore_classes={list(unknown)} to import the "
                "other objects without them"
            )
        if loaded.renamed:
            order = sorted(loaded.renamed.items(), key=lambda ab: self.classes.index(ab[1]))
            pairs = ", ".join(f"{a!r} as {b!r}" for a, b in order)
            warnings.warn(f"class names of the labels were matched ignoring case: {pairs}", UserWarning,
                          stacklevel=3)
        keep = {j: j for j in range(n)}
        out: dict[Path, tuple[Annotation, str]] = {}
        for path, ann in loaded.annotations.items():
            mapped = _remap_classes(ann, keep)  # leaves out only objects of ignore_classes
            if mapped is not None:
                out[Path(path).resolve()] = (mapped, loaded.sources.get(path, str(path)))
        return out

    def _store_labels(self, incoming: dict[Path, tuple[Annotation, str]], paths: list[Path], ids: list[int]) -> None:
        """Store imported labels of the images just added (``paths``, ``ids``)."""
        by_path = {p.resolve(): i for p, i in zip(paths, ids, strict=True)}
        imported: dict[int, Annotation] = {}
        kept: list[str] = []  # images whose labels in the project (a person's) differ from the file's
        replaced: list[str] = []  # images whose earlier imported labels the file's replace
        for path, (ann, source) in incoming.items():
            image_id = by_path.get(path)
            if image_id is None:
                continue
            try:
                ann = check_annotation(self.store, self.task, len(self.classes), image_id, ann)
            except AnnotationError as exc:
                where = source if source == str(path) else f"{source}: {path.name}"
                warnings.warn(f"{where}: {exc}", SkippedFileWarning, stacklevel=3)
                continue
            current = self.annotation(image_id)
            if current is not None:
                if _same(current, ann):
                    continue
                # A person's labels win: re-running an import cell must not bury the corrections made
                # since. Labels an earlier import wrote are the file's to correct (one that stored images
                # as labeled-empty could otherwise never be repaired); every version stays in the history.
                if self.store.annotation_history(image_id)[-1].source != "imported":
                    kept.append(path.name)
                    continue
                replaced.append(path.name)
            self.store.submit(image_id, ann, source="imported", user=self.user)
            self._labeled.add(image_id)
            self.ahead.discard(image_id)
            imported[image_id] = ann
        self.trainer.load_samples(imported)

        def names(found: list[str]) -> str:
            return ", ".join(found[:5]) + (" …" if len(found) > 5 else "")

        if replaced:
            warnings.warn(
                f"{len(replaced)} images had labels from an earlier import and now have the file's ({names(replaced)})",
                UserWarning, stacklevel=3,
            )
        if kept:
            warnings.warn(
                f"{len(kept)} images already had other labels in this project and kept them ({names(kept)}): "
                "an import never replaces labels a person submitted; submit an annotation to change them",
                SkippedFileWarning, stacklevel=3,
            )

    @property
    def image_ids(self) -> list[int]:
        """Every image of the project, in the order they were added."""
        return list(self._paths)  # in id order: ids only grow, and a re-added image keeps its place

    def image(self, image_id: int) -> np.ndarray:
        """The image as the model sees it: (H, W, 3) uint8 RGB."""
        return self._image(image_id)

    def annotation(self, image_id: int) -> Annotation | None:
        """The latest submitted annotation of an image, or None."""
        return self.store.annotation(image_id)

    def is_labeled(self, image_id: int) -> bool:
        """Whether the image has a submitted (or imported) label."""
        return image_id in self._labeled

    def next_unlabeled(self, after: int | None = None, exclude: Collection[int] = ()) -> int | None:
        """The image to label next, in the queue order of ``config.order`` after ``after`` (wrapping), or
        None when every image is labeled (or excluded).

        ``"file"`` and ``"random"`` take the first unlabeled image after ``after`` in their order; with
        ``"uncertain"`` it is the least certain (:mod:`livetrain_widgets.engine.queue`) of the first
        unlabeled images in file order, as many as are predicted ahead (:meth:`upcoming`): an image left
        for later stays in that pool, so the easy ones come when nothing harder is near. While none of
        them has a pre-label ready, the first."""
        if self.config.order != "uncertain":
            pool = self._queue_after(after, exclude)
            return pool[0] if pool else None

        def pre_label(i: int) -> Annotation | None:
            kept = self.ahead.usable(i)
            return None if kept is None else kept.annotation

        return most_uncertain(self._uncertain_pool(after, exclude), pre_label)

    def _uncertain_pool(self, current: int | None, exclude: Collection[int] = ()) -> list[int]:
        """``order="uncertain"``: the first unlabeled images in file order, ``current`` left out, as many as
        are predicted ahead."""
        return [i for i in self._queue_after(None, exclude) if i != current][: max(1, self.config.ahead.images)]

    def _queue_after(self, after: int | None, exclude: Collection[int] = ()) -> list[int]:
        """The unlabeled images in queue order, starting after ``after`` (wrapping), ``after`` itself left
        out."""
        if self.config.order == "random":
            if self._random_order is None or len(self._random_order) != len(self._paths):
                self._random_order = seeded_order(list(self._paths), self.config.order_seed)
            ids = self._random_order
        else:
            ids = list(self._paths)
        start = ids.index(after) + 1 if after is not None and after in self._paths else 0
        return [i for i in ids[start:] + ids[:start] if i not in self._labeled and i != after and i not in exclude]

    # ------------------------------------------------------------------------------ training
    async def start(self, *, past_plateau: bool = False) -> None:
        """Start the trainer task on the running event loop (a Jupyter kernel's, or asyncio.run's).

        ``past_plateau=True`` trains again even where the loss had plateaued (the panel's Start training
        button: a person who stopped a paused trainer and starts it again expects steps, not a pause)."""
        self._check_open()
        await self.trainer.start(past_plateau=past_plateau)
        self.ahead.start()

    async def stop(self) -> None:
        """Stop training after the step in flight and write a final checkpoint."""
        if self._closed:
            return
        await self.ahead.stop()
        await self.trainer.stop()
        await self.trainer.checkpoint_now()

    async def close(self) -> None:
        """Stop, checkpoint, and release the project (another process may open it then).

        Raises CheckpointError, once the project is released, when the final checkpoint could not be
        written (a full disk): the labels are all saved, the training since the last checkpoint is not.
        """
        if self._closed:
            return
        try:
            await self.stop()
        finally:
            self.trainer.close()
            self.store.close()
            self._lock.release()
            self._closed = True
        if self.trainer.checkpoint_error is not None:
            resumes = ("from untrained weights" if self.last_checkpoint_step is None
                       else f"from step {self.last_checkpoint_step}")
            raise CheckpointError(
                f"{self.trainer.checkpoint_error}. The project is closed; when it is opened again the model "
                f"resumes {resumes}"
            )

    async def __aenter__(self) -> LiveSession:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_steps(self, n: int, timeout: float | None = None) -> int:
        """Wait for ``n`` more training steps (returns early if training pauses); for scripts and tests."""
        return await self.trainer.wait_steps(n, timeout)

    async def predict(self, image_id: int, *, threshold: float | Sequence[float] | None = None,
                      fresh: bool = False) -> Prediction:
        """Pre-labels for an image, kept in the store beside the image.

        When the image was among the next ones (see :meth:`prefetch`), its pre-labels were computed ahead,
        between training steps, and come back at once; ``Prediction.age`` says how many steps behind the
        current weights they are (at most ``config.ahead.max_age_steps``). ``fresh=True`` (the Predict
        button) always predicts with the current weights. Afterwards the images following this one (in
        :attr:`image_ids` order, unlabeled) are predicted ahead. Objects below ``threshold`` (one value, or
        one per class) are left out; the default is :meth:`thresholds`.
        """
        self._check_open()
        image_id = check_image_id(image_id)
        thr = self.thresholds() if threshold is None else check_threshold(threshold, len(self.classes))
        t0 = time.perf_counter()
        kept = None if fresh else self.ahead.take(image_id)
        if kept is not None:
            raw, step = kept.annotation, kept.step
        else:
            image = await asyncio.to_thread(self._image, image_id)
            (raw,), step = await self.trainer.predict([image])
        # the age when served, as PredictAhead counted it: steps ending while it is stored do not age it
        age = self.trainer.step - step
        offered = self.offering
        # The store keeps every candidate with its score, so a threshold can be tuned afterwards.
        pid = await asyncio.to_thread(self.store.save_prediction, image_id, raw, model_step=step, shown=offered)
        seconds = time.perf_counter() - t0
        self.prefetch(self.upcoming(image_id))
        return Prediction(image_id, raw.filter(thr), step, offered, seconds, pid,
                          age=age, ahead=kept is not None)

    def kept_prelabel(self, image_id: int) -> tuple[Annotation, int] | None:
        """The pre-label computed ahead that :meth:`predict` would serve for an image if it opened now (all
        candidates, unfiltered) and the model step that made it; None when there is none, or it is too old
        or from replaced weights. Read-only: nothing is stored, served or counted (an app shows it early,
        then :meth:`predict` serves the same one when the image opens)."""
        ahead = self.ahead.usable(image_id)
        return None if ahead is None else (ahead.annotation, ahead.step)

    def prefetch(self, image_ids: Sequence[int]) -> None:
        """These images open next, in this order: compute their pre-labels ahead, between training steps.

        :meth:`predict` calls it with :meth:`upcoming`; an app with another order calls it itself. Only the
        first ``config.ahead.images`` are kept; images not named any more are dropped.
        """
        self.ahead.want([i for i in image_ids if i in self._paths and i not in self._labeled])

    def upcoming(self, after: int) -> list[int]:
        """The unlabeled images after ``after`` in queue order (``config.order``, wrapping), as many as are
        predicted ahead (with ``order="uncertain"`` these are the images the next one is chosen from)."""
        n = self.config.ahead.images
        if n == 0:
            return []
        if self.config.order == "uncertain":
            return self._uncertain_pool(after)
        return self._queue_after(after)[:n]

    def _on_step(self, _: Any) -> None:
        self.ahead.on_step()

    def thresholds(self) -> list[float]:
        """The confidence threshold per class that pre-labels are shown at: the one chosen from the recent
        submissions (``config.auto_threshold``), else ``config.threshold`` for every class."""
        tuned = self.tuner.thresholds() if self.config.auto_threshold else None
        return tuned if tuned is not None else [self.config.threshold] * len(self.classes)

    def tuned_thresholds(self) -> list[float] | None:
        """The per-class thresholds the tuner chose from the recent submissions (None: none chosen yet,
        or classification); what the app's "auto" applies, the same call on a team's session."""
        return self.tuner.thresholds()

    def expected_saving(self, threshold: float | Sequence[float]) -> float | None:
        """Seconds per image that pre-labels shown at ``threshold`` (one, or one per class) are expected to
        save over labeling by hand, from the recent submissions (negative: they cost); None without any.
        What the panel shows for a threshold set by hand (the state's ``saving_s`` is the tuned one's)."""
        e = self.tuner.expected(threshold)
        return None if e["with_s"] is None else float(e["manual_s"] - e["with_s"])

    @property
    def offering(self) -> bool:
        """Whether pre-labels are shown now.

        Once the tuner has judged enough submissions (``config.auto_offer``), its verdict decides: pre-labels
        are offered while they are expected to save time and withheld while they cost more than they save.
        Before that, the trainer's rule: the loss fell well below its start, or the evaluator's score rose.
        """
        verdict = self.tuner.verdict() if self.config.auto_offer else None
        return self.trainer.offering if verdict is None else verdict

    async def submit(
        self,
        image_id: int,
        annotation: Annotation | dict[str, Any],
        *,
        source: str | None = None,
        user: str | None = None,
        threshold: float | Sequence[float] | None = None,
    ) -> int:
        """Store the final annotation (committed before this returns) and train on it at once.

        The pre-label last shown for the image is compared with it by the live evaluator. ``source``
        is inferred when not given: "prelabel_accepted" if it equals the pre-label shown,
        "prelabel_edited" if a pre-label was shown, else "manual". ``threshold`` is the confidence
        threshold the pre-label was shown at (the UI slider; default ``config.threshold``), so the
        evaluator judges exactly what the person saw (one value, or one per class; default
        :meth:`thresholds`). Returns the annotation's version.
        """
        self._check_open()
        # Everything checked before the commit: an id of "2" or 2.7 stored a label for image 2, then raised.
        image_id = check_image_id(image_id)
        thr = self.thresholds() if threshold is None else check_threshold(threshold, len(self.classes))
        ann = annotation if isinstance(annotation, Annotation) else Annotation.from_json(annotation)
        ann = check_annotation(self.store, self.task, len(self.classes), image_id, ann)
        pred, source = infer_source(self.store, image_id, ann, thr, source)
        async with self._applying():
            version = await asyncio.to_thread(
                self.store.submit, image_id, ann, source=source, user=user or self.user,
                prediction_id=None if pred is None else pred.id,
            )
            self._apply(image_id, ann, version, pred, thr)
        return version

    def _apply(self, image_id: int, ann: Annotation, version: int, pred: Any,
               threshold: float | Sequence[float] | None) -> None:
        """A committed label version joins training; its pre-label (if any) is judged."""
        self._applied[image_id] = max(version, self._applied.get(image_id, 0))
        self._labeled.add(image_id)
        self.ahead.discard(image_id)
        if pred is not None:
            self._evaluate(image_id, pred, ann, threshold)
        self.trainer.set_sample(image_id, ann)

    async def sync(self) -> list[int]:
        """Take in what other processes wrote to a shared store: images they added, and labels they
        submitted straight to the store (a team's annotators, see :mod:`livetrain_widgets.engine.team`).
        Each such label joins training at once and its pre-label is judged, as if submitted here.
        Returns the images whose labels were new to this session. Cheap when nothing changed.
        """
        self._check_open()
        async with self._applying():
            return await self._sync()

    def _applying(self) -> asyncio.Lock:
        """Held while label versions are taken in (a sync, or a submission's write and apply): two at once
        would both find a version new, and train on it and judge its pre-label twice."""
        if self._sync_lock is None:
            self._sync_lock = asyncio.Lock()
        return self._sync_lock

    async def _sync(self) -> list[int]:
        # Row ids are handed out before commit: on PostgreSQL a submission can become visible after a
        # later one. Re-reading the last SYNC_WINDOW_ROWS ids (only ids, no labels) catches such a row
        # unless that many others committed while it was in flight, which a submission's millisecond
        # transaction never allows. _applied makes re-reads harmless.
        rows = await asyncio.to_thread(self.store.version_rows_after, max(0, self._row_seen - SYNC_WINDOW_ROWS))
        fresh: dict[int, int] = {}
        for row_id, image_id, version in rows:
            self._row_seen = max(self._row_seen, row_id)
            if version > self._applied.get(image_id, 0):
                fresh[image_id] = version
        if await asyncio.to_thread(self.store.image_count) != len(self._paths):
            images = await asyncio.to_thread(self.store.images)
            self._paths = {r.id: r.path for r in images}
        judged = {r.get("prediction_id") for r in self.evaluator.history} if fresh else set()
        for image_id in fresh:
            latest = (await asyncio.to_thread(self.store.annotation_history, image_id))[-1]
            pred = None
            if latest.prediction_id is not None and latest.prediction_id not in judged:
                pred = await asyncio.to_thread(self.store.prediction_by_id, latest.prediction_id)
            self._apply(image_id, latest.annotation, latest.version, pred, None)
        return list(fresh)

    # ---------------------------------------------------------------------------- checkpoints
    def _checkpoint_extra(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "time": time.time(),
            "model_config": full_config(self.trainer.model),
            "evaluator": self.evaluator.state_dict(),
            "tuner": self.tuner.state_dict(),
        }

    def _write_checkpoint(self, state: dict[str, Any]) -> Path:
        path = save_checkpoint(self._checkpoint_dir, state, keep=self.config.keep_checkpoints)
        self.last_checkpoint_step = int(state["step"])
        return path

    async def checkpoint(self) -> None:
        """Write a checkpoint now (between two training steps).

        Raises CheckpointError saying why when it could not be written (a full disk); the previous one is
        kept, and ``state.error`` (the panel) shows the reason until a checkpoint succeeds. A periodic
        checkpoint that fails only shows it there: training and labeling go on.
        """
        await self.trainer.checkpoint_now()
        if self.trainer.checkpoint_error is not None:
            raise CheckpointError(self.trainer.checkpoint_error)

    # -------------------------------------------------------------------------------- status
    @property
    def state(self) -> SessionState:
        """A snapshot of where training stands, in the words the panel shows (see :class:`SessionState`)."""
        t = self.trainer.status()
        labeled = self.trainer.num_samples
        tuned = self.tuner.summary()
        return SessionState(
            phase=t["phase"],
            message=self._message(t, tuned),
            step=t["step"],
            loss=t["loss"],
            smoothed_loss=t["smoothed_loss"],
            plateaued=t["plateaued"],
            offering=self.offering,
            quality=self.evaluator.ema,
            evaluated=self.evaluator.judged,
            labeled=labeled,
            images=len(self._paths),
            step_seconds=t["step_seconds"],
            device=t["device"],
            error=t["error"],
            last_checkpoint_step=self.last_checkpoint_step,
            threshold=tuned["threshold"] if self.config.auto_threshold else None,
            thresholds=tuned["thresholds"] if self.config.auto_threshold else None,
            saving_s=tuned["saved_s"],
        )

    def _message(self, t: dict[str, Any], tuned: dict[str, Any]) -> str:
        """The status in words a labeler understands."""
        if t["error"]:
            return f"Problem: {t['error']}"
        phase = t["phase"]
        if phase == "idle":
            return "Not started"
        if phase == "stopped":
            return "Stopped"
        if self.trainer.labels_needed:
            return labels_needed_message(self.trainer.labels_needed)
        if phase == "paused":
            return "Paused: the loss has plateaued, waiting for new labels"
        # ``tuned`` is the tuner's summary the state was built from: read once per state, not per line
        verdict = tuned["verdict"] if self.config.auto_offer else None
        if verdict is False:
            # Plain words and no figures: the figures are the panel's, for the threshold it shows (these
            # would be for the tuned one). "held back: 122 s against 122 s" read as nonsense.
            worse = tuned["saved_s"] is not None and tuned["saved_s"] < -0.5
            return ("Learning… pre-labels are paused: on your recent images they "
                    + ("took longer than labeling by hand" if worse else "saved no time over labeling by hand")
                    + ". Predict shows them anyway.")
        if verdict is None and not t["offering"]:
            return "Learning… pre-labels appear once the model has learned enough"
        return "Learning…"

    # -------------------------------------------------------------------------------- export
    def export(self, format: str, out: str | os.PathLike[str]) -> Path:
        """Write the labels ("coco", "voc", "yolo", "masks", "instances", "folders") into ``out``."""
        return export_labels(format, out, self.store.labeled_items(), self.classes, self.task)

    def export_model(self, out: str | os.PathLike[str]) -> Path:
        """Save the trained model (safetensors + config); reload with ``livetrain_widgets.load_model``."""
        folder = Path(out)
        before = set(folder.glob("*.tmp")) if folder.is_dir() else set()
        try:
            return Path(self.trainer.save_model(out))
        except OSError as exc:
            for tmp in set(folder.glob("*.tmp")) - before:  # the model's half-written files, ours to remove
                tmp.unlink(missing_ok=True)
            _raise_folder_error(folder, "could not export the model", exc)

    def correction_model(self, adapter: Any = None) -> Any:
        """A frozen copy of the model as it is now, with a fresh LoRA adapter, for the correction mode
        (``StreamSession`` / ``StreamAnnotator``); ``adapter`` is an ``AdapterConfig``. The copy is taken
        on consistent weights while training runs, and training here goes on untouched."""
        from ..models.stream import create_stream_model

        self._check_open()
        return self.trainer.with_model(lambda model: create_stream_model(model, adapter=adapter))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this session is closed; open the project again with LiveSession(...)")


def check_annotation(store: AnnotationStore, task: str, n_classes: int, image_id: int, ann: Annotation) -> Annotation:
    """A submitted annotation checked against the project (image size, task, classes), scores dropped;
    AnnotationError says what is wrong."""
    rec = store.image(image_id)
    if (ann.width, ann.height) != (rec.width, rec.height):
        raise AnnotationError(
            f"the annotation is for a {ann.width}x{ann.height} image, but image {image_id} "
            f"({rec.name}) is {rec.width}x{rec.height}"
        )
    if task == "classification" and ann.category is None:
        raise AnnotationError("a classification annotation needs a category")
    # The wrong kind of annotation for the project was stored as is: an image class in a detection
    # or segmentation project became an empty label (no objects) for training, boxes in a
    # classification project were kept but never used.
    if task == "classification" and len(ann):
        raise AnnotationError(
            f"a classification project takes an image class (category), not {len(ann)} boxes/masks"
        )
    if task != "classification" and ann.category is not None:
        raise AnnotationError(
            f"a {task} project takes objects (boxes{' and masks' if task == 'segmentation' else ''}), "
            f"not an image class (category={ann.category})"
        )
    if task == "segmentation" and len(ann) and ann.masks is None:
        raise AnnotationError("a segmentation annotation needs masks")
    ann = ann.validate(n_classes)
    # Scores belong to predictions; a submitted label is certain.
    ann.scores = None
    ann.category_scores = None
    return ann


def infer_source(store: AnnotationStore, image_id: int, ann: Annotation, threshold: float | Sequence[float],
                 source: str | None) -> tuple[Any, str]:
    """The pre-label a submission is judged against (None: none, or it was judged at an earlier
    submission) and the submission's source: as given, else "prelabel_accepted" if ``ann`` is the
    pre-label shown (at ``threshold``) unchanged, "prelabel_edited" if one was shown, else "manual"."""
    previous = store.annotation_history(image_id)
    pred = store.prediction(image_id)
    if pred is not None and any(v.prediction_id == pred.id for v in previous):
        pred = None  # that pre-label was judged at an earlier submission
    if source is None:
        if pred is None or not pred.shown:
            source = "manual"
        else:
            source = "prelabel_accepted" if _same(pred.annotation.filter(threshold), ann) else "prelabel_edited"
    return pred, source


def labels_needed_message(n: int) -> str:
    """The words for a trainer waiting for ``n`` more labeled images."""
    return f"Label {n} more image{'s' if n > 1 else ''} to start"


def _remap_classes(ann: Annotation, remap: dict[int, int]) -> Annotation | None:
    """``ann`` with class indices mapped and objects of classes not in ``remap`` left out (None: its
    image class is not in ``remap``)."""
    if ann.category is not None:
        if ann.category not in remap:
            return None
        return Annotation(ann.width, ann.height, category=remap[ann.category])
    keep = np.array([int(v) in remap for v in ann.labels], bool)
    labels = np.array([remap[int(v)] for v in ann.labels[keep]], np.int64)
    return Annotation(
        ann.width, ann.height, ann.boxes[keep], labels, None,
        None if ann.masks is None else ann.masks[keep],
    )


def _same(a: Annotation | None, b: Annotation) -> bool:
    """Whether a submitted annotation is the pre-label unchanged (to the pixel)."""
    if a is None or len(a) != len(b) or a.category != b.category:
        return False
    if not (np.array_equal(a.labels, b.labels) and np.allclose(a.boxes, b.boxes, atol=0.5)):
        return False
    if (a.masks is None) != (b.masks is None):
        return False
    return a.masks is None or bool(np.array_equal(a.masks, b.masks))


def _raise_folder_error(folder: Path, what: str, exc: OSError) -> NoReturn:
    """Raise a failed write into ``folder`` in words (called in the ``except`` block that caught ``exc``): a
    full disk or a read-only folder say so; any other error is raised as it is (returned and raised ``from
    exc``, it became its own cause)."""
    if disk_full(exc):
        raise DiskFullError(what, folder) from exc
    if unwritable(exc) and not isinstance(exc, ProjectReadOnlyError):
        raise read_only_error(folder, exc) from exc
    raise exc


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "user"
