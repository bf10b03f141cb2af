"""What crosses the wire between the kernel and the canvas: display images, objects and masks.

Masks travel as binary run lengths over a crop (see ``js/src/protocol.ts``: uint32 little-endian runs,
row-major, background first), never as JSON pixel lists. The crop keeps a small nucleus in a large
aerial image a few hundred bytes; row-major runs are what the front end paints line by line.

Everything coming *from* the front end is untrusted: :func:`objects_to_annotation` checks types,
ranges and sizes and raises :class:`WireError` with a message meant for the person at the canvas.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..engine.annotation import Annotation, AnnotationError, masks_to_boxes
from ..engine.images import open_image

#: an image whose longer side exceeds this is downscaled for display (annotations stay in original px)
MAX_DISPLAY_SIDE = 4096
#: a file larger than this is re-encoded for display even when the browser could show it as is: a
#: 15 MB aerial PNG takes longer to send and decode than its 1.5 MB JPEG takes to encode
PASSTHROUGH_MAX_BYTES = 3 << 20
#: the most objects one submission may carry (far above any real image; bounds a hostile payload)
MAX_OBJECTS = 10_000


class WireError(ValueError):
    """A message from the front end that cannot be accepted; the text is shown to the user."""


# ------------------------------------------------------------------------------------------ masks
def encode_runs(crop: np.ndarray) -> bytes:
    """Run lengths (uint32 LE, row-major, background first) of a 2-D bool array."""
    flat = np.ascontiguousarray(crop, dtype=bool).reshape(-1)
    if flat.size == 0:
        return b""
    # Positions where the value changes, with the ends; a leading foreground pixel gives a 0 run.
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(edges)
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return runs.astype("<u4").tobytes()


def decode_runs(rle: Any, width: int, height: int) -> np.ndarray:
    """Inverse of :func:`encode_runs`; checks that the runs cover exactly ``width × height`` pixels."""
    try:
        buf = memoryview(rle).cast("B")
    except TypeError as exc:
        raise WireError(f"a mask's run lengths must be bytes, got {type(rle).__name__}") from exc
    if len(buf) % 4:
        raise WireError(f"a mask's run lengths must be uint32 values ({len(buf)} bytes is not a multiple of 4)")
    runs = np.frombuffer(buf, dtype="<u4").astype(np.int64)
    total = int(runs.sum())
    if total != width * height:
        raise WireError(f"a mask's runs cover {total} pixels, its {width}x{height} crop has {width * height}")
    values = np.zeros(len(runs), bool)
    values[1::2] = True
    return np.repeat(values, runs).reshape(height, width)


def mask_to_wire(mask: np.ndarray) -> dict[str, Any] | None:
    """A full-image (H, W) bool mask as a cropped wire mask; None if it is empty."""
    m = np.asarray(mask, bool)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if not len(rows):
        return None
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return {"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0, "rle": encode_runs(m[y0:y1, x0:x1])}


def wire_to_mask(wire: Any, width: int, height: int) -> np.ndarray:
    """A wire mask as a full-image (height, width) bool mask; the crop must lie inside the image."""
    if not isinstance(wire, Mapping):
        raise WireError("a mask must be an object with x, y, w, h and rle")
    x, y, w, h = (_int(wire.get(k), f"mask {k}") for k in ("x", "y", "w", "h"))
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise WireError(f"a mask's crop ({x}, {y}, {w}x{h}) does not lie inside the {width}x{height} image")
    out = np.zeros((height, width), bool)
    out[y : y + h, x : x + w] = decode_runs(wire.get("rle"), w, h)
    return out


# ---------------------------------------------------------------------------------------- objects
def annotation_to_objects(
    ann: Annotation | None, *, source: str, prefix: str, semantic: bool = False
) -> list[dict[str, Any]]:
    """Wire objects of an annotation (stored labels with source "user", predictions "prelabel")."""
    if ann is None or not len(ann):
        return []
    if semantic and ann.masks is not None:
        scores = ann.scores
        merged = ann.to_semantic()
        if scores is not None:  # a merged mask's confidence: the best of the instances it took in
            merged.scores = np.array([scores[ann.labels == c].max() for c in merged.labels], np.float32)
        ann = merged
    out = []
    for i in range(len(ann)):
        obj: dict[str, Any] = {
            "id": f"{prefix}{i}",
            "label": int(ann.labels[i]),
            "box": [round(float(v), 2) for v in ann.boxes[i]],
            "source": source,
        }
        if ann.scores is not None:
            obj["score"] = round(float(ann.scores[i]), 4)
        if ann.masks is not None:
            wire = mask_to_wire(ann.masks[i])
            if wire is None:
                continue
            obj["mask"] = wire
        out.append(obj)
    return out


def visible(objects: Any, threshold: float | Sequence[float]) -> Any:
    """What the person sees: user objects, and pending pre-labels at or above the threshold (one for every
    class, or one per class: a class beyond the list shows everything, as the front end does).

    Anything malformed is passed through untouched, for :func:`objects_to_annotation` to refuse.
    """
    if not isinstance(objects, (list, tuple)):
        return objects
    return [o for o in objects if not _hidden(o, threshold)]


def _hidden(obj: Any, threshold: float | Sequence[float]) -> bool:
    if not isinstance(obj, Mapping) or obj.get("source") != "prelabel":
        return False
    score = obj.get("score")
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        return False
    if not isinstance(threshold, (int, float)):
        label = obj.get("label")
        ok = isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(threshold)
        threshold = threshold[label] if ok else 0.0
    return score < threshold


def objects_to_annotation(
    objects: Any, width: int, height: int, task: str, num_classes: int
) -> Annotation:
    """The annotation the front end holds, checked field by field (see the module docstring)."""
    if not isinstance(objects, (list, tuple)):
        raise WireError(f"objects must be a list, got {type(objects).__name__}")
    if len(objects) > MAX_OBJECTS:
        raise WireError(f"{len(objects)} objects in one image is more than the {MAX_OBJECTS} accepted")
    boxes, labels, masks = [], [], []
    for n, obj in enumerate(objects):
        if not isinstance(obj, Mapping):
            raise WireError(f"object {n} is not an object")
        label = _int(obj.get("label"), f"object {n}'s class")
        if not 0 <= label < num_classes:
            raise WireError(f"object {n} has class index {label}; there are {num_classes} classes")
        if task == "segmentation":
            mask = wire_to_mask(obj.get("mask"), width, height)
            if not mask.any():
                continue  # everything erased: the object is gone
            masks.append(mask)
        else:
            box = obj.get("box")
            if not isinstance(box, (list, tuple)) or len(box) != 4:
                raise WireError(f"object {n}'s box must be [x0, y0, x1, y1]")
            boxes.append([_float(v, f"object {n}'s box") for v in box])
        labels.append(label)
    try:
        if task == "segmentation":
            m = np.stack(masks) if masks else np.zeros((0, height, width), bool)
            ann = Annotation(width, height, masks_to_boxes(m), labels, masks=m)
        else:
            ann = Annotation(width, height, np.asarray(boxes, np.float32).reshape(-1, 4), labels)
        return ann.validate(num_classes)  # clips boxes to the image, refuses empty ones
    except AnnotationError as exc:
        raise WireError(str(exc)) from exc


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise WireError(f"{what} must be a whole number, got {value!r:.40}")
    if value != int(value):
        raise WireError(f"{what} must be a whole number, got {value!r}")
    return int(value)


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise WireError(f"{what} must hold finite numbers, got {value!r:.40}")
    return float(value)


# ----------------------------------------------------------------------------------------- images
def display_image(source: str | Path | np.ndarray, max_side: int = MAX_DISPLAY_SIDE) -> bytes:
    """Bytes the browser can decode, at most ``max_side`` on the longer side.

    A JPEG or 8-bit PNG of at most ``PASSTHROUGH_MAX_BYTES`` that needs no rotation and no downscaling
    is sent as the file's own bytes (no re-encoding: the fastest path, and exactly the pixels on disk).
    Anything else (16-bit, TIFF, CMYK, EXIF-rotated, very large files, arrays) is converted the way the
    model sees it and encoded: PNG up to 512×512 pixels (lossless, and small anyway), JPEG above.
    """
    from ..engine.images import load_image

    if isinstance(source, (str, Path)):
        path = Path(source)
        raw = _passthrough(path, max_side)
        if raw is not None:
            return raw
        arr = load_image(path)
    else:
        arr = load_image(source)
    img = Image.fromarray(arr)
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    if img.width * img.height <= 512 * 512:
        img.save(buf, format="PNG", compress_level=1)
    else:
        img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _passthrough(path: Path, max_side: int) -> bytes | None:
    try:
        if path.stat().st_size > PASSTHROUGH_MAX_BYTES:
            return None
        with open_image(path) as im:
            if im.format not in ("JPEG", "PNG") or max(im.size) > max_side:
                return None
            if im.mode not in ("RGB", "L", "RGBA", "P", "LA"):
                return None  # 16-bit, CMYK, ...: convert like the model does
            orientation = im.getexif().get(0x0112, 1)
            if orientation not in (0, 1):
                return None
    except Exception:
        return None  # load_image gives the error message that names the file
    return path.read_bytes()
