"""COCO JSON: boxes, instance masks (polygons or RLE) and, by this package's convention, image classes.

COCO has no field for a whole-image class. We write it as ``"category_id"`` on the *image* entry
(not as an annotation without a box), so that every entry of ``annotations`` stays a valid detection
object for other COCO tools, and the file still loads in pycocotools. Import reads the same field.
Category ids are ``class index + 1`` (COCO reserves 0 for the background by custom).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
)
from .annotation import AnnotationError, decode_rle, encode_rle
from .images import ImageError


def _segmentation_mask(seg: Any, width: int, height: int) -> np.ndarray | None:
    """COCO ``segmentation`` (polygon list, uncompressed or compressed RLE) -> (H, W) bool, or None."""
    if seg is None or (isinstance(seg, list) and not seg):
        return None
    if isinstance(seg, dict):
        return decode_rle(seg, height, width)
    if isinstance(seg, list):
        polys = [[float(v) for v in p] for p in seg]
        if any(len(p) < 6 or len(p) % 2 or not all(math.isfinite(v) for v in p) for p in polys):
            raise AnnotationError("a polygon needs at least 3 finite x, y points")
        rles = mask_utils.frPyObjects(polys, height, width)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    raise AnnotationError(f"segmentation must be polygons or RLE, got {type(seg).__name__}")


def load_coco(labels: Path, index: ImageIndex, names: ClassNames, out: LoadedLabels) -> None:
    try:
        data = json.loads(read_bytes(labels))
    except (OSError, ValueError) as exc:
        out.errors.append(f"{labels}: not valid JSON ({exc})")
        return
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        out.errors.append(f"{labels}: not a COCO file (no 'images' list)")
        return
    categories: dict[int, int] = {}
    for k, cat in enumerate(data.get("categories") or []):
        try:
            # The id first: with the name registered first, a category refused for its id still added
            # its name to the classes (and the session warned about a class that has no labels).
            cat_id = int(cat["id"])
            categories[cat_id] = names.index(str(cat["name"]))
        except (KeyError, TypeError, ValueError):
            out.errors.append(f"{labels}: categories[{k}] needs an integer 'id' and a 'name'")
    by_image: dict[Any, list[tuple[int, dict]]] = {}
    anns = data.get("annotations") or []
    if not isinstance(anns, list):
        # The whole file is refused: read as "no objects", every image in it was imported as labeled with
        # nothing there, a new latest version over whatever labels it had.
        out.errors.append(f"{labels}: 'annotations' is not a list; nothing imported from this file")
        return
    for k, a in enumerate(anns):
        if isinstance(a, dict) and "image_id" in a:
            by_image.setdefault(a["image_id"], []).append((k, a))
        else:
            out.errors.append(f"{labels}: annotations[{k}] has no image_id")
    known_ids = set()
    for k, entry in enumerate(data["images"]):
        where = f"{labels}: images[{k}]"
        if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("file_name"), str):
            out.errors.append(f"{where} needs an 'id' and a 'file_name'")
            continue
        known_ids.add(entry["id"])
        where = f"{labels}: image {entry['file_name']!r}"
        try:
            image = index.by_file_name(entry["file_name"])
        except AmbiguousImage as exc:
            out.errors.append(f"{where}: {exc}")
            continue
        if image is None:
            out.unmatched.append(f"{labels}: {entry['file_name']}")
            continue
        try:
            actual = image_size(image)
            w, h = int(entry.get("width") or actual[0]), int(entry.get("height") or actual[1])
        except (ImageError, TypeError, ValueError) as exc:
            out.errors.append(f"{where}: {exc}")
            continue
        if (w, h) != actual:
            out.errors.append(
                f"{where}: size {w}x{h} differs from the image's {actual[0]}x{actual[1]}; skipped"
            )
            continue
        objects = by_image.get(entry["id"], [])
        if any(isinstance(a.get("segmentation"), (dict, list)) and a.get("segmentation") for _, a in objects):
            # With one mask every object gets one (the others from their box): charged before decoding.
            out.charge_masks(len(objects), w, h, labels)
        boxes, labels_, masks = [], [], []
        refused = 0
        for j, a in objects:
            try:
                if a.get("category_id") not in categories:
                    raise AnnotationError(f"unknown category_id {a.get('category_id')!r}")
                bbox = [float(v) for v in a["bbox"]]
                if len(bbox) != 4:
                    raise AnnotationError(f"bbox must be [x, y, width, height], got {bbox}")
                if bbox[2] < 0 or bbox[3] < 0:
                    raise AnnotationError(f"negative box size {bbox[2:]}")
                box = clean_box([bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]], w, h)
                mask = _segmentation_mask(a.get("segmentation"), w, h)
                if mask is not None and not mask.any():
                    raise AnnotationError("its segmentation covers no pixel")
            except (AnnotationError, KeyError, TypeError, ValueError) as exc:
                msg = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
                out.errors.append(f"{labels}: annotations[{j}] (image {entry['file_name']!r}): {msg}")
                refused += 1
                continue
            boxes.append(box)
            labels_.append(categories[a["category_id"]])
            masks.append(mask)
        ann = assemble(w, h, boxes, labels_, masks)
        if "category_id" in entry:
            if entry["category_id"] in categories:
                ann.category = categories[entry["category_id"]]
            else:
                out.errors.append(f"{where}: unknown image category_id {entry['category_id']!r}")
        out.add(image, ann, labels, refused)
    for image_id, group in by_image.items():
        if image_id not in known_ids:
            out.errors.append(f"{labels}: annotations[{group[0][0]}] refers to unknown image_id {image_id!r}")


def _round(v: float) -> float:
    return round(float(v), 4)


def export_coco(items: list, classes: Sequence[str], task: str) -> ExportPlan:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    # Unique file names: two images "1.png" (from folders a/ and b/) are "a/1.png" and "b/1.png", which
    # the importer tells apart; both "1.png", the file could not be imported again.
    file_names = export_names(items, None, "coco")
    for (rec, ann), file_name in zip(items, file_names, strict=True):
        check_labels(rec, ann, classes)
        entry: dict[str, Any] = {"id": int(rec.id), "file_name": file_name, "width": rec.width,
                                 "height": rec.height}
        if task == "classification":
            if ann.category is not None:
                entry["category_id"] = int(ann.category) + 1
            images.append(entry)
            continue
        images.append(entry)
        with_masks = task == "segmentation" and ann.masks is not None
        for i, (box, label) in enumerate(zip(ann.boxes, ann.labels, strict=True)):
            x0, y0, x1, y1 = (float(v) for v in box)
            obj: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": int(rec.id),
                "category_id": int(label) + 1,
                "bbox": [_round(x0), _round(y0), _round(x1 - x0), _round(y1 - y0)],
                "area": _round((x1 - x0) * (y1 - y0)),
                "iscrowd": 0,
            }
            if with_masks:
                assert ann.masks is not None
                obj["segmentation"] = encode_rle(ann.masks[i])
                obj["area"] = int(ann.masks[i].sum())
            annotations.append(obj)
    doc = {
        "info": {"description": "exported by livetrain-widgets"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(classes)],
    }
    data = json.dumps(doc, allow_nan=False).encode("utf-8")
    return ExportPlan({"annotations.json": lambda: data}, result="annotations.json")

