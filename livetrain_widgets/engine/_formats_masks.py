"""Label images and class folders.

- "masks": semantic PNG/TIFF per image, pixel ``c + 1`` = class ``c``, 0 = background. A mask holding
  only 0 and 255 is read as one class (the usual binary mask, e.g. the membrane data).
- "instances": one label image per image, 0 = background and every other value one object. All
  objects get class 0 unless an ``instance_classes.json`` beside the files (which our export writes)
  gives each object's class.
- "folders": classification, an image's class is the name of its folder.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ._formats_common import (
    AmbiguousImage,
    ClassNames,
    ExportPlan,
    ImageIndex,
    LoadedLabels,
    check_labels,
    export_names,
    image_size,
    read_bytes,
    relative_hint,
    safe_file_name,
)
from ._formats_yolo import find_class_names
from .annotation import Annotation, AnnotationError
from .images import ImageError, read_label_image

#: Lossless formats only: a JPEG "mask" has smeared values at every edge.
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
INSTANCE_CLASSES_FILE = "instance_classes.json"


def _label_files(labels: Path) -> list[Path]:
    if labels.is_file():
        return [labels]
    return sorted(p for p in labels.rglob("*") if p.is_file() and p.suffix.lower() in MASK_SUFFIXES)


def _read_matching(
    file: Path, root: Path, index: ImageIndex, out: LoadedLabels
) -> tuple[Path, np.ndarray] | None:
    """The image a label image belongs to and its integer values, or None (error/unmatched noted)."""
    try:
        image = index.by_stem(file.stem, relative_hint(file, root))
    except AmbiguousImage as exc:
        out.errors.append(f"{file}: {exc}")
        return None
    if image is None:
        out.unmatched.append(str(file))
        return None
    try:
        arr = read_label_image(file)
        w, h = image_size(image)
    except ImageError as exc:
        out.errors.append(f"{file}: {exc}")
        return None
    if arr.shape != (h, w):
        out.errors.append(
            f"{file}: the label image is {arr.shape[1]}x{arr.shape[0]} but {image.name} is {w}x{h}"
        )
        return None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            out.errors.append(f"{file}: label values must be whole numbers (got {arr.dtype} with fractions)")
            return None
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        out.errors.append(f"{file}: negative label value {int(arr.min())}")
        return None
    return image, arr


def load_masks(
    labels: Path, index: ImageIndex, names: ClassNames, out: LoadedLabels, given: Sequence[str] | None
) -> None:
    root = labels if labels.is_dir() else labels.parent
    found = find_class_names(root) if labels.is_dir() else None
    id_names = found[0] if found else (list(given) if given else None)
    names.add_all(id_names or ())
    for file in _label_files(labels):
        got = _read_matching(file, root, index, out)
        if got is None:
            continue
        image, arr = got
        values = [int(v) for v in np.unique(arr) if v != 0]
        out.charge_masks(len(values), arr.shape[1], arr.shape[0], file)  # one mask per class present
        # 0/255 is the usual binary mask; only a class list of 255+ names makes 255 a class id.
        binary = values == [255] and not (id_names and len(id_names) >= 255)
        try:
            # File value -> store class index + 1 (the store's order may differ from the file's ids).
            lut = {v: names.by_id(0 if binary else v - 1, id_names) + 1 for v in values}
        except AnnotationError as exc:
            out.errors.append(f"{file}: {exc}")
            continue
        class_map = np.zeros(arr.shape, np.int64)
        for v, c in lut.items():
            class_map[arr == v] = c
        out.add(image, Annotation.from_semantic(class_map), file)


def load_instances(
    labels: Path, index: ImageIndex, names: ClassNames, out: LoadedLabels, given: Sequence[str] | None
) -> None:
    root = labels if labels.is_dir() else labels.parent
    sidecar: dict = {}
    side_file = root / INSTANCE_CLASSES_FILE
    if side_file.is_file():
        try:
            sidecar = json.loads(read_bytes(side_file))
            if not isinstance(sidecar, dict):
                raise ValueError("expected a JSON object")
        except (OSError, ValueError) as exc:
            out.errors.append(f"{side_file}: ignored, not valid JSON ({exc}); every object gets class 0")
            sidecar = {}
    side_names = sidecar.get("classes") if isinstance(sidecar.get("classes"), list) else None
    id_names = [str(n) for n in side_names] if side_names else (list(given) if given else None)
    names.add_all(id_names or ())
    per_image = sidecar.get("images") if isinstance(sidecar.get("images"), dict) else {}
    for file in _label_files(labels):
        got = _read_matching(file, root, index, out)
        if got is None:
            continue
        image, arr = got
        ids = np.unique(arr)
        # One mask per object: a 16-bit label image can hold 65,535 of them, a few KB as a PNG.
        out.charge_masks(int(np.count_nonzero(ids)), arr.shape[1], arr.shape[0], file)
        try:
            default = names.by_id(0, id_names)
            key = file.relative_to(root).with_suffix("").as_posix() if file.is_relative_to(root) else file.stem
            mapping = per_image.get(key, per_image.get(file.stem))
            classes_of: dict[int, int] | int = default
            if isinstance(mapping, dict):
                given_of = {int(k): names.by_id(int(v), id_names) for k, v in mapping.items()}
                # Objects the mapping leaves out get the file's class 0 (not the store's index 0).
                classes_of = {int(i): given_of.get(int(i), default) for i in ids if i != 0}
            ann = Annotation.from_label_image(arr, classes_of)
        except (AnnotationError, TypeError, ValueError) as exc:
            out.errors.append(f"{file}: {exc}")
            continue
        out.add(image, ann, file)


def load_folders(labels: Path | None, index: ImageIndex, names: ClassNames, out: LoadedLabels) -> None:
    root = labels.resolve() if labels is not None else None
    for image in index.paths:
        if root is not None and image.is_relative_to(root):
            parts = image.relative_to(root).parts
            if len(parts) < 2:
                out.errors.append(f"{image}: not inside a class folder of {root}")
                continue
            name = parts[0]
        else:
            name = image.parent.name
        try:
            w, h = image_size(image)
        except ImageError as exc:
            out.errors.append(str(exc))
            continue
        out.add(image, Annotation(w, h, category=names.index(name)), image)


# ------------------------------------------------------------------------------------- export
def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _require_masks(rec: Any, ann: Annotation, fmt: str) -> None:
    if len(ann) and ann.masks is None:
        raise AnnotationError(f"{rec.name}: {fmt} export needs masks, but this annotation has only boxes")


def export_masks(items: list, classes: Sequence[str], task: str) -> ExportPlan:
    """Semantic PNGs, uint8 while the class values fit (< 255 classes), else 16-bit; overlapping
    objects: the later one wins, as in :meth:`Annotation.semantic_map`."""
    if len(classes) > 65534:
        raise ValueError(f"{len(classes)} classes do not fit in a 16-bit mask")
    dtype = np.uint8 if len(classes) < 255 else np.uint16
    files: dict = {}
    for (rec, ann), name in zip(items, export_names(items, ".png", "masks"), strict=True):
        check_labels(rec, ann, classes)
        _require_masks(rec, ann, "masks")
        files[name] = lambda ann=ann: _png(ann.semantic_map().astype(dtype))  # made while written: one at a time
    files["classes.txt"] = partial(str.encode, "".join(f"{n}\n" for n in classes), "utf-8")
    return ExportPlan(files)


def _instance_png(ann: Annotation) -> bytes:
    label_image = np.zeros((ann.height, ann.width), np.uint16)
    for i, m in enumerate(ann.masks if ann.masks is not None else []):
        label_image[m] = i + 1
    return _png(label_image)


def export_instances(items: list, classes: Sequence[str], task: str) -> ExportPlan:
    """16-bit label PNGs (object i -> value i + 1; where objects overlap the later one wins) and
    ``instance_classes.json`` with each object's class, so classes survive the round trip (keyed by
    the label image's name without ``.png``, e.g. ``a/1`` where two images share the name ``1``)."""
    files: dict = {}
    per_image: dict[str, dict[str, int]] = {}
    for (rec, ann), name in zip(items, export_names(items, ".png", "instances"), strict=True):
        check_labels(rec, ann, classes)
        _require_masks(rec, ann, "instances")
        if len(ann) > 65535:
            raise AnnotationError(f"{rec.name}: {len(ann)} objects do not fit in a 16-bit label image")
        files[name] = partial(_instance_png, ann)
        per_image[name[: -len(".png")]] = {str(i + 1): int(c) for i, c in enumerate(ann.labels)}
    doc = json.dumps({"classes": list(classes), "images": per_image}, indent=1).encode("utf-8")
    files[INSTANCE_CLASSES_FILE] = lambda: doc
    return ExportPlan(files)


def _safe_folder_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"class name {name!r} cannot be a folder name")
    return name


def export_folders(items: list, classes: Sequence[str], task: str) -> ExportPlan:
    """Images linked (hard link, else copied) into ``<class>/<image name>``; unclassified images are
    left out, as a class folder layout has no place for them. Two images of one class and one name
    (from folders ``x/`` and ``y/``) go to ``<class>/x/`` and ``<class>/y/``: before, the second replaced
    the first, and the export silently held one labeled image less."""
    by_class: dict[int, list] = {}
    for rec, ann in items:
        check_labels(rec, ann, classes)
        if ann.category is not None:
            by_class.setdefault(int(ann.category), []).append((rec, ann))
    files: dict = {}
    for c, group in by_class.items():
        folder = _safe_folder_name(classes[c])
        for (rec, _), name in zip(group, export_names(group, None, "folders"), strict=True):
            files[f"{folder}/{name}"] = Path(rec.path)
    bases = {safe_file_name(rec.name) for rec, _ in items}
    class_folders = {_safe_folder_name(c) for c in classes}

    def stale(name: str) -> bool:
        # Exported before into another class folder (the class changed), or under another sub-folder: an
        # image must be in one class folder only. Only files an export wrote are candidates.
        parts = name.split("/")
        return len(parts) >= 2 and parts[0] in class_folders and parts[-1] in bases

    return ExportPlan(files, stale=stale)
