"""YOLO text labels: one ``.txt`` per image, a line ``class cx cy w h`` normalised to the image size
(YOLO segmentation lines ``class x1 y1 x2 y2 ...`` are read as outlines). Class names come from the
``classes`` argument, else a ``classes.txt`` / ``obj.names`` / ``data.yaml`` beside the labels (or
one or two folders up, as in the Ultralytics layout ``dataset/labels/train``)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from ._formats_common import (
    AmbiguousImage,
    ClassNames,
    ExportPlan,
    ImageIndex,
    LoadedLabels,
    assemble,
    check_labels,
    clean_box,
    export_names,
    image_size,
    read_bytes,
    relative_hint,
)
from .annotation import AnnotationError
from .images import ImageError

_NAME_FILES = ("classes.txt", "obj.names")
_YAML_FILES = ("data.yaml", "dataset.yaml", "data.yml")


def _yaml_names(text: str) -> list[str] | None:
    """``names`` of a YOLO data.yaml: a list, or a mapping id -> name. PyYAML when available."""
    try:
        import yaml

        names = (yaml.safe_load(text) or {}).get("names")
    except ImportError:
        names = _yaml_names_by_hand(text)
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    return None


def _yaml_names_by_hand(text: str) -> list[str] | dict[int, str] | None:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^names\s*:\s*(.*)$", line)
        if not m:
            continue
        rest = m.group(1).split("#")[0].strip()
        if rest.startswith("["):
            return [n.strip().strip("'\"") for n in rest.strip("[]").split(",") if n.strip()]
        items: list[str] = []
        mapping: dict[int, str] = {}
        for sub in lines[i + 1 :]:
            if not sub.startswith((" ", "\t", "-")) and sub.strip():
                break
            s = sub.split("#")[0].strip()
            if s.startswith("- "):
                items.append(s[2:].strip().strip("'\""))
            elif (kv := re.match(r"^(\d+)\s*:\s*(.+)$", s)) is not None:
                mapping[int(kv.group(1))] = kv.group(2).strip().strip("'\"")
        return mapping or items
    return None


def find_class_names(folder: Path) -> tuple[list[str], Path] | None:
    for d in (folder, folder.parent, folder.parent.parent):
        for n in _NAME_FILES:
            if (d / n).is_file():
                names = [s.strip() for s in (d / n).read_text(encoding="utf-8").splitlines() if s.strip()]
                return names, d / n
        for n in _YAML_FILES:
            if (d / n).is_file():
                names = _yaml_names((d / n).read_text(encoding="utf-8"))
                if names:
                    return names, d / n
    return None


def _parse_line(line: str, w: int, h: int) -> tuple[int, np.ndarray, np.ndarray | None]:
    parts = line.split()
    if len(parts) != 5 and (len(parts) < 7 or len(parts) % 2 == 0):
        raise AnnotationError(f"expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...', got {line!r}")
    cls = float(parts[0])
    if not math.isfinite(cls) or cls != int(cls) or cls < 0:
        raise AnnotationError(f"class id {parts[0]!r} is not a whole number >= 0")
    vals = [float(v) for v in parts[1:]]
    if not all(math.isfinite(v) for v in vals):
        raise AnnotationError(f"coordinates are not all numbers: {parts[1:]}")
    if len(parts) == 5:
        cx, cy, bw, bh = vals
        if bw < 0 or bh < 0:
            raise AnnotationError(f"negative box size {bw:g} x {bh:g}")
        box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
        return int(cls), clean_box(box, w, h), None
    xy = np.array(vals, np.float64).reshape(-1, 2) * (w, h)
    box = clean_box([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()], w, h)
    rle = mask_utils.frPyObjects([xy.reshape(-1).tolist()], h, w)
    mask = mask_utils.decode(mask_utils.merge(rle)).astype(bool)
    if not mask.any():
        raise AnnotationError("the outline covers no pixel")
    return int(cls), box, mask


def load_yolo(
    labels: Path, index: ImageIndex, names: ClassNames, out: LoadedLabels, given: Sequence[str] | None
) -> None:
    folder = labels if labels.is_dir() else labels.parent
    found = find_class_names(folder)
    # The file's ids are read with the dataset's own names when it has them (mapped onto the given
    # classes by name), else with the given classes, else as class_<id>.
    id_names = found[0] if found else (list(given) if given else None)
    names.add_all(id_names or ())
    skip = {found[1]} if found else set()
    files = sorted(labels.rglob("*.txt")) if labels.is_dir() else [labels]
    for file in files:
        # The class list is the file found above; a classes.txt deeper down holds an image's labels (the
        # export puts those of an image "classes.jpg" there).
        if file in skip or (file.name in _NAME_FILES and file.parent == folder):
            continue
        try:
            image = index.by_stem(file.stem, relative_hint(file, folder))
        except AmbiguousImage as exc:
            out.errors.append(f"{file}: {exc}")
            continue
        if image is None:
            out.unmatched.append(str(file))
            continue
        try:
            w, h = image_size(image)
            text = read_bytes(file).decode("utf-8")
        except (ImageError, OSError, ValueError) as exc:
            out.errors.append(f"{file}: {exc}")
            continue
        boxes, labels_, masks = [], [], []
        refused = 0
        lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
                 if line.strip() and not line.lstrip().startswith("#")]
        if any(len(line.split()) > 5 for _, line in lines):
            # With one outline every object gets a full-image mask (the others from their box): charged
            # before any is drawn.
            out.charge_masks(len(lines), w, h, file)
        for n, line in lines:
            try:
                cls, box, mask = _parse_line(line, w, h)
                label = names.by_id(cls, id_names)
            except (AnnotationError, ValueError) as exc:
                out.errors.append(f"{file}: line {n}: {exc}")
                refused += 1
                continue
            boxes.append(box)
            labels_.append(label)
            masks.append(mask)
        out.add(image, assemble(w, h, boxes, labels_, masks), file, refused)


def _num(v: float) -> str:
    return f"{v:.10g}"


def export_yolo(items: list, classes: Sequence[str], task: str) -> ExportPlan:
    """Boxes only (also for segmentation: turning masks into polygons would lose detail). The labels of
    an image ``classes.jpg`` go one folder down (``<its folder>/classes.txt``): at the top they replaced
    the class list."""
    if task == "classification":
        raise ValueError("YOLO text labels hold boxes, not image classes: export as 'coco' or 'folders'")
    files: dict = {}
    for (rec, ann), name in zip(items, export_names(items, ".txt", "yolo", reserved=_NAME_FILES), strict=True):
        check_labels(rec, ann, classes)
        lines = []
        for box, label in zip(ann.boxes.astype(np.float64), ann.labels, strict=True):
            x0, y0, x1, y1 = box
            cx, cy = (x0 + x1) / 2 / ann.width, (y0 + y1) / 2 / ann.height
            bw, bh = (x1 - x0) / ann.width, (y1 - y0) / ann.height
            lines.append(f"{int(label)} {_num(cx)} {_num(cy)} {_num(bw)} {_num(bh)}\n")
        # An empty file for an image without objects: "labeled, nothing there" is not "unlabeled".
        files[name] = partial(str.encode, "".join(lines), "utf-8")
    files["classes.txt"] = partial(str.encode, "".join(f"{n}\n" for n in classes), "utf-8")
    return ExportPlan(files)
