"""Import and export of labels in the formats people already have: COCO, Pascal VOC, YOLO, mask
images, instance label images and class folders.

Imports never stop at the first bad file: each malformed file or entry becomes one message in
:attr:`LoadedLabels.errors` naming the file, and the rest is read. Boxes partly outside the image are
clipped (:meth:`Annotation.validate`); NaN coordinates, negative sizes and unknown class ids are
refused with a message. A refused object is left out and the image's other objects are imported; an
image whose every object was refused stays unlabeled (stored as "nothing there", it would teach the
model background where the objects are). Label files are matched to images by file stem (COCO by
``file_name``).

Untrusted XML (VOC) is parsed with ``defusedxml`` when it is installed, otherwise with the standard
library's expat with DTDs and entity declarations refused by hand, which closes XXE and
billion-laughs attacks just the same.

Exports write each file atomically (temporary file, fsync, rename), so an interrupted export never
leaves a half-written label file behind; boxes and masks survive an export -> import round trip
exactly (boxes to 1e-3 px). An export writes only into a new or empty folder, or one a livetrain
command made (:class:`~._output_folder.OutputFolder`: its marker lists what was written), and replaces
or deletes only what it wrote there: it refuses (:class:`OutputFolderError`, naming the path), before
writing anything, rather than overwrite a user's file (masks exported into the images folder replaced
the source PNGs). File names are unique: images of one name from different folders go to sub-folders
named after their last folders (``a/1.txt``, ``b/1.txt``; COCO ``file_name`` ``a/1.png``), which the
importers use to tell them apart, as is a name the format keeps (YOLO labels of ``classes.jpg``).
Format by format:

========== ========================================= ==============================================
format     import (``labels`` is ...)                export (``export_labels`` returns ...)
========== ========================================= ==============================================
coco       a JSON file                               ``annotations.json`` (boxes; masks as RLE for
                                                     segmentation; image class as the image entry's
                                                     ``category_id``, see ``_formats_coco``)
voc        a folder of XML files, or one XML file    the folder, one XML per image
yolo       a folder of txt files, or one txt file    the folder, one txt per image + classes.txt
masks      a folder of semantic PNG/TIFF             the folder, uint8 PNGs (16-bit from 255
                                                     classes) + classes.txt
instances  a folder of instance label PNG/TIFF       the folder, 16-bit PNGs + instance_classes.json
folders    the root of the class folders, or None    the folder, images hard-linked (or copied) into
                                                     ``<class>/``
========== ========================================= ==============================================
"""

from __future__ import annotations

import os
import shutil
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from ._disk import disk_full
from ._formats_coco import export_coco, load_coco
from ._formats_common import (
    MAX_IMPORT_MASK_PIXELS,
    ClassNames,
    ExportPlan,
    ImageIndex,
    ImportTooLarge,
    LoadedLabels,
    parse_xml,
)
from ._formats_masks import (
    export_folders,
    export_instances,
    export_masks,
    load_folders,
    load_instances,
    load_masks,
)
from ._formats_voc import export_voc, load_voc
from ._formats_yolo import export_yolo, load_yolo
from ._output_folder import OutputFolder, OutputFolderError, atomic_write
from .annotation import TASKS, Annotation
from .store import ImageRecord

FORMATS: tuple[str, ...] = ("coco", "voc", "yolo", "masks", "instances", "folders")

__all__ = ["FORMATS", "MAX_CLASS_NAME_CHARS", "MAX_IMPORT_MASK_PIXELS", "ImportTooLarge", "LoadedLabels",
           "OutputFolderError", "check_class_names", "export_labels", "load_labels", "parse_xml"]

#: A class name is a folder name in the "folders" export: 255 bytes on most file systems, and far more than
#: a name needs (the longest of COCO's, LVIS's and Open Images' is under 60 characters).
MAX_CLASS_NAME_CHARS = 128


def check_class_names(classes: Iterable[object], task: str | None = None) -> list[str]:
    """The class names of a new project, refused (``ValueError`` naming the name) unless every format
    carries them unchanged.

    A newline or other control character breaks the one-name-a-line ``classes.txt`` (a YOLO round trip
    read a different list back); ``/``, ``\\``, ``.`` and ``..`` cannot be folder names, which the "folders"
    export of a classification project needs (``task`` None applies that rule too; other tasks' formats carry
    any such name, and "N/A" or "car/truck" are fair names for a detection class);
    spaces at either end are stripped by VOC and YOLO readers; a 100,000-character name is no folder
    name either. Names that differ only in case would be one folder on macOS and Windows, and make the
    case-insensitive matching of imported class names ambiguous.
    """
    names = [str(c) for c in classes]
    folder_names = task in (None, "classification")
    for name in names:
        if not name.strip():
            raise ValueError(f"class names cannot be empty or blank, got {name!r}")
        if len(name) > MAX_CLASS_NAME_CHARS:
            raise ValueError(
                f"class name {name[:40]!r}… is {len(name):,} characters long: at most {MAX_CLASS_NAME_CHARS}, "
                "as it becomes a folder name in the 'folders' export"
            )
        # Lone surrogates (from undecodable file names) and U+FFFE/U+FFFF cannot be written as UTF-8 or XML.
        bad = next((ch for ch in name if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")
                    or ch in "\ufffe\uffff"), None)
        if bad is not None:
            raise ValueError(
                f"class name {name!r} holds the character {bad!r}, which label files cannot carry (a newline, tab, "
                "NUL or other control character: they keep one name a line); choose another name"
            )
        if name != name.strip():
            raise ValueError(f"class name {name!r} begins or ends with spaces, which VOC and YOLO readers strip")
        if not folder_names:
            continue
        if len(name.encode("utf-8")) > 255:
            raise ValueError(f"class name {name!r} is longer than a folder name can be (255 bytes in UTF-8)")
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(
                f"class name {name!r} cannot be a folder name (it holds '/' or '\\', or is '.' or '..'), "
                "as the 'folders' export of a classification project needs; choose another name"
            )
    folded: dict[str, int] = {}
    for i, name in enumerate(names):
        if (first := folded.setdefault(name.casefold(), i)) != i:
            raise ValueError(
                f"class names must be unique, also ignoring case: {names[first]!r} and {name!r}"
            )
    return names


def load_labels(
    fmt: str,
    labels: str | os.PathLike[str] | None,
    image_paths: Iterable[str | os.PathLike[str]],
    classes: Sequence[str] | None = None,
    *,
    max_mask_pixels: int = MAX_IMPORT_MASK_PIXELS,
) -> LoadedLabels:
    """Read labels of ``image_paths`` from ``labels`` (a file or folder, see the module table).

    ``classes`` fixes the first class names (and their indices); a name of the files that equals one of
    them ignoring case is that class (listed in :attr:`LoadedLabels.renamed`); other names are appended
    in order of first appearance. Images without a label file are simply not in the result (unlabeled).

    Raises :class:`ImportTooLarge` (before decoding them) when the masks would take more than
    ``max_mask_pixels`` pixels in all: a small file can describe gigabytes of masks.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown label format {fmt!r}; expected one of {FORMATS}")
    index = ImageIndex(image_paths)
    names = ClassNames(classes)
    out = LoadedLabels(max_mask_pixels=max_mask_pixels)
    given = list(classes) if classes else None
    if fmt == "folders":
        load_folders(None if labels is None else Path(labels), index, names, out)
    else:
        if labels is None:
            raise ValueError(f"the {fmt!r} format needs a labels file or folder")
        path = Path(labels)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such label file or folder")
        if path.is_file() and fmt != "coco" and len(index.paths) == 1:
            index.sole = index.paths[0]
        if fmt == "coco":
            if path.is_dir():
                raise ValueError(f"{path}: the 'coco' format needs the JSON file, not a folder")
            load_coco(path, index, names, out)
        elif fmt == "voc":
            load_voc(path, index, names, out)
        elif fmt == "yolo":
            load_yolo(path, index, names, out, given)
        elif fmt == "masks":
            load_masks(path, index, names, out, given)
        else:
            load_instances(path, index, names, out, given)
    out.classes = list(names.names)
    out.renamed = dict(names.renamed)
    return out


_EXPORTERS = {
    "coco": export_coco,
    "voc": export_voc,
    "yolo": export_yolo,
    "masks": export_masks,
    "instances": export_instances,
    "folders": export_folders,
}


def export_labels(
    fmt: str,
    out_dir: str | os.PathLike[str],
    items: Iterable[tuple[ImageRecord, Annotation]],
    classes: Sequence[str],
    task: str,
) -> Path:
    """Write ``(image, annotation)`` pairs (e.g. ``store.labeled_items()``) in ``fmt`` under ``out_dir``.

    Returns what :func:`load_labels` takes back as ``labels``: the JSON file for COCO, else the folder.
    Raises (nothing is skipped silently) when an annotation does not fit the format or the image, and
    :class:`OutputFolderError` when ``out_dir`` holds a file that livetrain did not write where the
    export would write; in either case nothing is written.
    """
    if fmt not in _EXPORTERS:
        raise ValueError(f"unknown label format {fmt!r}; expected one of {tuple(_EXPORTERS)}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if fmt in ("masks", "instances") and task != "segmentation":
        raise ValueError(f"the {fmt!r} format holds masks: it needs task='segmentation', not {task!r}")
    if fmt == "folders" and task != "classification":
        raise ValueError(
            f"the 'folders' format holds image classes: it needs task='classification', not {task!r}"
        )
    pairs = [(rec, ann) for rec, ann in items if ann is not None]
    out = Path(out_dir)
    # Every name worked out and every label checked before the folder is touched: a refused export
    # writes nothing.
    plan = _EXPORTERS[fmt](pairs, list(classes), task)
    try:
        folder = OutputFolder(out, f"export {fmt!r}")
        _write_plan(plan, folder)
    except OSError as exc:
        if disk_full(exc):
            # Every file is written beside its final name and renamed in, so what was there survives.
            raise OSError(exc.errno, f"could not export to {out}: the disk is full; files exported there "
                          "before are intact, free some space and export again") from exc
        raise
    return out / plan.result if plan.result else out


def _write_plan(plan: ExportPlan, folder: OutputFolder) -> None:
    """Write an export into ``folder``: only names no one but livetrain wrote there before, each file
    whole (temporary name, fsync, rename), images as hard links where the file system allows."""
    paths = folder.files(plan.files)  # refused as a whole when one of them is not ours to replace
    for what, path in zip(plan.files.values(), paths, strict=True):
        if isinstance(what, Path):
            _link_or_copy(what, path)
        else:
            atomic_write(path, what())
    if plan.stale is not None:
        for name in set(folder.written()) - set(plan.files):
            if plan.stale(name):
                folder.remove(name)


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists() and os.path.samefile(source, target):
        return  # exported before as a hard link: already the same file
    # A name no other export (nor one killed half-way) can hold, so the link cannot collide.
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)
        os.replace(tmp, target)
    finally:
        # rename() between two links of one file does nothing and leaves ``tmp`` behind.
        tmp.unlink(missing_ok=True)
