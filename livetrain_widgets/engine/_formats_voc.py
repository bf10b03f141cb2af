"""Pascal VOC XML boxes.

VOC's ``xmin..xmax`` are 1-based pixel indices, both ends inclusive (the VOC devkit's convention,
which BCCD follows: its boxes reach ``xmax = 640`` on 640-wide images and start at ``xmin = 1``).
They become 0-based pixel edges as ``x0 = xmin - 1, x1 = xmax``, and are written back the same way,
so a round trip is exact and a box never shifts by one pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from xml.etree import ElementTree as ET
from xml.parsers import expat

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
    parse_xml,
    read_bytes,
    relative_hint,
)
from .annotation import Annotation, AnnotationError
from .images import ImageError


def _num(v: float) -> str:
    # Four decimals keep float32 boxes exact to well under 1e-3 px; whole numbers stay whole.
    s = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def _text(node: ET.Element, path: str) -> str | None:
    found = node.find(path)
    return found.text.strip() if found is not None and found.text is not None else None


def _size(root: ET.Element) -> tuple[int, int] | None:
    try:
        w, h = int(float(_text(root, "size/width") or 0)), int(float(_text(root, "size/height") or 0))
    except ValueError:
        return None
    return (w, h) if w > 0 and h > 0 else None


def load_voc(labels: Path, index: ImageIndex, names: ClassNames, out: LoadedLabels) -> None:
    root_dir = labels if labels.is_dir() else labels.parent
    files = sorted(labels.rglob("*.xml")) if labels.is_dir() else [labels]
    for file in files:
        try:
            image = index.by_stem(file.stem, relative_hint(file, root_dir))
        except AmbiguousImage as exc:
            out.errors.append(f"{file}: {exc}")
            continue
        try:
            root = parse_xml(read_bytes(file))
        except (ET.ParseError, expat.ExpatError, ValueError, OSError) as exc:
            # ValueError covers the DTD/entity refusal (ours and defusedxml's).
            if image is not None:
                out.errors.append(f"{file}: not valid VOC XML ({exc})")
            else:
                out.unmatched.append(str(file))
            continue
        if image is None and (file_name := _text(root, "filename")):
            try:
                image = index.by_file_name(file_name)
            except AmbiguousImage as exc:
                out.errors.append(f"{file}: {exc}")
                continue
        if image is None:
            out.unmatched.append(str(file))
            continue
        if root.tag != "annotation":
            out.errors.append(f"{file}: not a VOC annotation (root element <{root.tag}>)")
            continue
        try:
            actual = image_size(image)
        except ImageError as exc:
            out.errors.append(f"{file}: {exc}")
            continue
        size = _size(root) or actual
        if size != actual:
            out.errors.append(
                f"{file}: <size> says {size[0]}x{size[1]} but {image.name} is {actual[0]}x{actual[1]}; "
                "skipped (the boxes would land in the wrong place)"
            )
            continue
        w, h = size
        boxes, labels_ = [], []
        refused = 0
        for k, obj in enumerate(root.iter("object")):
            name = _text(obj, "name")
            try:
                if not name:
                    raise AnnotationError("no <name>")
                coords = [_text(obj, f"bndbox/{t}") for t in ("xmin", "ymin", "xmax", "ymax")]
                if any(c is None for c in coords):
                    raise AnnotationError("no complete <bndbox> (xmin, ymin, xmax, ymax)")
                xmin, ymin, xmax, ymax = (float(c) for c in coords)  # type: ignore[arg-type]
                # Inclusive indices: xmin == xmax is one pixel wide, and only xmax < xmin - 1 is
                # negative (a sub-pixel box we exported has xmin - 1 < xmax < xmin).
                if xmax < xmin - 1 or ymax < ymin - 1:
                    raise AnnotationError(
                        f"negative size: xmin={xmin:g}, xmax={xmax:g}, ymin={ymin:g}, ymax={ymax:g}"
                    )
                box = clean_box([xmin - 1, ymin - 1, xmax, ymax], w, h)
            except (AnnotationError, ValueError) as exc:
                out.errors.append(f"{file}: object {k} ({name or '?'}): {exc}")
                refused += 1
                continue
            boxes.append(box)
            labels_.append(names.index(name))
        out.add(image, assemble(w, h, boxes, labels_, [None] * len(boxes)), file, refused)


def _xml_doc(name: str, path: str, ann: Annotation, classes: Sequence[str]) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = Path(path).parent.name
    ET.SubElement(root, "filename").text = name
    ET.SubElement(root, "path").text = path
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(ann.width)
    ET.SubElement(size, "height").text = str(ann.height)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    for box, label in zip(ann.boxes, ann.labels, strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = classes[int(label)]
        ET.SubElement(obj, "pose").text = "Unspecified"
        truncated = box[0] <= 0 or box[1] <= 0 or box[2] >= ann.width or box[3] >= ann.height
        ET.SubElement(obj, "truncated").text = str(int(truncated))
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        # Back to VOC's 1-based inclusive indices (see the module docstring).
        voc = (box[0] + 1, box[1] + 1, box[2], box[3])
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), voc, strict=True):
            ET.SubElement(bb, tag).text = _num(float(v))
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def export_voc(items: list, classes: Sequence[str], task: str) -> ExportPlan:
    if task == "classification":
        raise ValueError("VOC holds boxes, not image classes: export classification as 'coco' or 'folders'")
    files: dict = {}
    for (rec, ann), name in zip(items, export_names(items, ".xml", "voc"), strict=True):
        check_labels(rec, ann, classes)
        files[name] = partial(_xml_bytes, rec.name, rec.path, ann, classes)
    return ExportPlan(files)


def _xml_bytes(name: str, path: str, ann: Annotation, classes: Sequence[str]) -> bytes:
    return _xml_doc(name, path, ann, classes).encode("utf-8")
