"""Pieces every label format shares: the result type, image matching, class names, safe XML,
cheap image sizes and atomic file writes. Private: the public API is :mod:`.formats`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET
from xml.parsers import expat

import numpy as np

from .annotation import Annotation, AnnotationError
from .images import ImageError, load_image, open_image

#: Label files larger than this are refused (a label file is kilobytes; this is a mistake or an attack).
MAX_LABEL_FILE_BYTES = 512 * 1024 * 1024

#: Mask pixels one import may decode (an Annotation holds one full-image bool mask per object). A label file
#: is small whatever its masks cover: 33 KB of COCO RLE held 200 full-image masks and took 2.6 GB. 2**28
#: pixels are 256 MiB of masks (about three times that at the peak, while an image's masks are checked):
#: the nuclei image's 125 masks take an eighth of it.
MAX_IMPORT_MASK_PIXELS = 1 << 28


class ImportTooLarge(ValueError):
    """An import whose masks would take more memory than :data:`MAX_IMPORT_MASK_PIXELS` allows."""


@dataclass
class LoadedLabels:
    """What an import found.

    ``annotations`` is keyed by the resolved image path. ``errors`` holds one message per malformed
    file or entry, naming the file (the rest of the import goes on). ``unmatched`` lists label files
    (or COCO image entries) that match none of the given images: not an error, since importing labels
    for a subset of a dataset is normal, but worth showing when nothing matched. ``sources`` gives the
    label file each annotation came from, so later messages (e.g. the session's) can name it.
    """

    annotations: dict[Path, Annotation] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    sources: dict[Path, str] = field(default_factory=dict)
    #: class names of the files read as a given class of another case (``{"RBC": "rbc"}``), to be said
    renamed: dict[str, str] = field(default_factory=dict)
    #: the mask pixels the import may still decode (see :data:`MAX_IMPORT_MASK_PIXELS`)
    max_mask_pixels: int = MAX_IMPORT_MASK_PIXELS
    mask_pixels: int = 0

    def charge_masks(self, count: int, width: int, height: int, source: Path | str) -> None:
        """Account for ``count`` full-image masks about to be decoded from ``source``; raises
        :class:`ImportTooLarge` (before they are decoded) once the import would exceed its budget."""
        self.mask_pixels += int(count) * int(width) * int(height)
        if self.mask_pixels > self.max_mask_pixels:
            raise ImportTooLarge(
                f"{source}: the masks of this import would take {self.mask_pixels:,} pixels "
                f"({self.mask_pixels / 2**30:.1f} GiB in memory) with {count} more {width}x{height} masks from this "
                f"file, more than the {self.max_mask_pixels:,} one import may decode; nothing was imported. "
                "Import fewer images at a time (or check the file: its masks may not be what they claim)"
            )

    def add(self, image: Path, annotation: Annotation, source: Path | str, refused: int = 0) -> None:
        """An image's labels from ``source``; ``refused``: how many of its objects were refused (and
        reported). An image whose every object was refused stays unlabeled: stored as "labeled, nothing
        there", it would teach the model background exactly where the objects are."""
        if refused and len(annotation) == 0 and annotation.category is None:
            self.errors.append(
                f"{source}: {image.name}: every object was refused ({refused}), so the image is left unlabeled"
            )
            return
        if image in self.annotations:
            self.errors.append(f"{source}: {image.name} already has labels from another file; ignored")
            return
        self.annotations[image] = annotation
        self.sources[image] = str(source)


class ClassNames:
    """Class names in a stable order: the given ones first, then new ones as they first appear.

    A name of the files that is not among the given ones but equals exactly one of them ignoring case
    (VOC's ``RBC`` for a project's ``rbc``) is that class: read as a new class, its objects were left out
    and their images stored as labeled with nothing there. :attr:`renamed` records each such match. Files
    that spell one class several ways (``RBC``, ``Rbc``) are read as that one class too; only given names
    that differ in case alone (which new projects refuse) match nothing ignoring case.
    """

    def __init__(self, given: Sequence[str] | None) -> None:
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        self.renamed: dict[str, str] = {}
        for name in given or ():
            self._add(str(name))
        folded: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            folded.setdefault(name.casefold(), []).append(i)
        # Only a match with exactly one given name is unambiguous.
        self._folded = {k: v[0] for k, v in folded.items() if len(v) == 1}

    def _add(self, name: str) -> int:
        if name not in self._index:
            self._index[name] = len(self.names)
            self.names.append(name)
        return self._index[name]

    def add_all(self, names: Iterable[str]) -> None:
        """Register a dataset's own class list up front (COCO categories, classes.txt), so classes
        without any object yet keep their place."""
        for name in names:
            self.index(str(name))

    def index(self, name: str) -> int:
        i = self._index.get(name)
        if i is None and (j := self._folded.get(name.casefold())) is not None:
            i = j
            self.renamed[name] = self.names[j]
        return self._add(name) if i is None else i

    def by_id(self, class_id: int, id_names: Sequence[str] | None) -> int:
        """Index of a numeric class id (YOLO, mask pixel values) read with the file's own names.

        With names (given or from the dataset) an id past their end is an error; without any, ids
        become ``class_<id>`` and are registered in id order so the store's indices equal the file's.
        """
        if id_names:
            if not 0 <= class_id < len(id_names):
                raise AnnotationError(f"unknown class id {class_id}; there are {len(id_names)} classes")
            return self.index(id_names[class_id])
        if class_id < 0:
            raise AnnotationError(f"unknown class id {class_id}")
        for i in range(class_id):
            self.index(f"class_{i}")
        return self.index(f"class_{class_id}")


class AmbiguousImage(ValueError):
    pass


class ImageIndex:
    """Finds the image a label file belongs to, by file name stem (or full name), using the label
    file's sub-folders to choose between images that share a name."""

    def __init__(self, image_paths: Iterable[str | os.PathLike[str]]) -> None:
        self.paths: list[Path] = list(dict.fromkeys(Path(p).resolve() for p in image_paths))
        self._by_stem: dict[str, list[Path]] = {}
        self._by_name: dict[str, list[Path]] = {}
        #: One label file for one image pairs them whatever their names ("mask2d.tif" for "img2d.tif").
        self.sole: Path | None = None
        for p in self.paths:
            self._by_stem.setdefault(p.stem, []).append(p)
            self._by_name.setdefault(p.name, []).append(p)

    @staticmethod
    def _pick(found: list[Path], hint: Sequence[str], what: str) -> Path | None:
        if len(found) <= 1:
            return found[0] if found else None
        if hint:
            narrowed = [p for p in found if tuple(p.parent.parts[-len(hint):]) == tuple(hint)]
            if len(narrowed) == 1:
                return narrowed[0]
        raise AmbiguousImage(f"{what} matches {len(found)} images ({', '.join(map(str, found[:3]))})")

    def by_stem(self, stem: str, hint: Sequence[str] = ()) -> Path | None:
        found = self._pick(self._by_stem.get(stem, []), hint, f"name {stem!r}")
        return found if found is not None else self.sole

    def by_file_name(self, file_name: str) -> Path | None:
        """COCO/VOC ``file_name``: the base name (sub-folders in it break ties), else the stem."""
        rel = Path(file_name.replace("\\", "/"))
        hint = rel.parent.parts if rel.parent != Path(".") else ()
        found = self._pick(self._by_name.get(rel.name, []), hint, f"file name {file_name!r}")
        return found if found is not None else self.by_stem(rel.stem, hint)


def relative_hint(file: Path, root: Path) -> tuple[str, ...]:
    """Sub-folders of a label file below the label root: they must match the image's last folders."""
    try:
        return file.parent.relative_to(root).parts
    except ValueError:
        return ()


def read_bytes(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_LABEL_FILE_BYTES:
        raise ValueError(f"the file is {size:,} bytes, more than a label file should be")
    return path.read_bytes()


# ------------------------------------------------------------------------------------ safe XML
class UnsafeXML(ValueError):
    """XML with a DTD or entity declarations: refused, as XXE and billion-laughs attacks need them."""


try:  # defusedxml when installed; otherwise the same guard, by hand, on the stdlib's expat.
    from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
    from defusedxml.ElementTree import fromstring as _defused_fromstring  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - depends on the environment
    _defused_fromstring = None
    DefusedXmlException = UnsafeXML


def _forbid(what: str) -> Callable[..., None]:
    def handler(*_args: Any) -> None:
        raise UnsafeXML(f"XML with {what} is refused (it could read local files or exhaust memory)")

    return handler


def parse_xml(data: bytes) -> ET.Element:
    """Parse untrusted XML: DTDs and entity declarations are refused, external entities never load.

    Expat with an ElementTree builder, so the handlers that could expand entities can be replaced
    (the C ``XMLParser`` does not expose its expat parser).
    """
    if _defused_fromstring is not None:
        try:
            return _defused_fromstring(data, forbid_dtd=True)
        except DefusedXmlException as exc:
            raise UnsafeXML(f"XML with a DTD or entities is refused ({exc!r})") from exc
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _forbid("a DTD")
    parser.EntityDeclHandler = _forbid("an entity declaration")
    parser.UnparsedEntityDeclHandler = _forbid("an entity declaration")
    parser.ExternalEntityRefHandler = _forbid("an external entity")
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:  # the same exception type as ElementTree (and defusedxml) raise
        err = ET.ParseError(str(exc))
        err.code, err.position = exc.code, (exc.lineno, exc.offset)
        raise err from None
    return builder.close()


# ------------------------------------------------------------------------------------- images
def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as :func:`images.load_image` will see the image, reading only the header.

    EXIF orientations 5-8 (a quarter turn) swap width and height, because ``load_image`` applies the
    rotation and label coordinates refer to the image as displayed.
    """
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tuple(tif.pages[0].shape)
            # The same axis rules as load_image (a plane of a stack; channels-first arrays).
            if len(shape) == 2:
                return int(shape[1]), int(shape[0])
            if len(shape) == 3:
                if shape[2] not in (1, 2, 3, 4) or (shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4)):
                    return int(shape[2]), int(shape[1])
                return int(shape[1]), int(shape[0])
            h, w = load_image(path).shape[:2]
            return int(w), int(h)
        with open_image(path) as im:  # without PIL's size warning: MAX_PIXELS applies when it is loaded
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                w, h = h, w
            return int(w), int(h)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from exc


def clean_box(box: Sequence[float], width: int, height: int) -> np.ndarray:
    """One box checked and clipped to the image, with the rules of :meth:`Annotation.validate`.

    Per box, in plain Python, so one bad box costs only itself (and a 5,000-box import does not
    build 5,000 Annotations); :func:`assemble` then runs ``validate`` once per image.
    """
    vals = [float(v) for v in box]
    if any(not math.isfinite(v) for v in vals):
        raise AnnotationError(f"box coordinates are not all numbers: {vals}")
    x0, y0, x1, y1 = vals
    out = np.array(
        [min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width),
         min(max(y1, 0.0), height)],
        np.float32,
    )
    if out[2] <= out[0] or out[3] <= out[1]:
        raise AnnotationError(
            f"box has zero or negative size (or lies outside the {width}x{height} image): {vals}"
        )
    return out


def box_mask(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """A box as a mask, for objects without an outline among objects with one (every pixel the box
    touches)."""
    m = np.zeros((height, width), bool)
    x0, y0 = math.floor(box[0]), math.floor(box[1])
    x1, y1 = math.ceil(box[2]), math.ceil(box[3])
    m[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)] = True
    return m


def assemble(
    width: int, height: int, boxes: list[np.ndarray], labels: list[int], masks: list[np.ndarray | None]
) -> Annotation:
    """Objects of one image -> Annotation; masks only if some object has one (the others get theirs
    from their box, since an Annotation has masks for all objects or none)."""
    arr = np.array(boxes, np.float32).reshape(-1, 4)
    full = None
    if any(m is not None for m in masks):
        # Filled one mask at a time, each let go of once copied: a list of masks and its stack, both held,
        # made an import's peak memory three times its masks (see MAX_IMPORT_MASK_PIXELS).
        full = np.empty((len(boxes), height, width), bool)
        for i, b in enumerate(boxes):
            full[i] = masks[i] if masks[i] is not None else box_mask(b, width, height)
            masks[i] = None
    ann = Annotation(width, height, arr, labels, masks=full)
    return ann.validate(max(labels, default=-1) + 1)


# --------------------------------------------------------------------------------------- writes
@dataclass
class ExportPlan:
    """What an export writes, worked out (and every label checked) before anything is written.

    ``files`` maps each name (relative to the export folder) to a function making its bytes, or to an
    image file to link (or copy) there. ``result`` is what :func:`load_labels` takes back: a file in the
    folder, or ``""`` for the folder itself. ``stale`` picks, among files an earlier export wrote there
    and this one does not, those to delete (an image whose class changed leaves its old class folder).
    """

    files: dict[str, Callable[[], bytes] | Path]
    result: str = ""
    stale: Callable[[str], bool] | None = None


def safe_file_name(name: str) -> str:
    """The last part of a stored image name, for a file written under the export folder.

    Names from ``add_images`` are base names already, but the store takes any name (``add_image``'s
    ``name``, a project from elsewhere): ``out_dir / cls / "../../x.png"`` or ``/ "/etc/x"`` wrote
    outside ``out_dir``. Both separators count, so a Windows-style name cannot climb out either.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if not base or base in (".", "..") or "\0" in base:
        raise ValueError(f"image name {name!r} cannot be a file name")
    return base


def export_names(items: Sequence[tuple[Any, Annotation]], suffix: str | None, fmt: str,
                 reserved: Collection[str] = ()) -> list[str]:
    """The file each image's labels go to, relative to the export folder (``/``-separated): the image's
    name, with ``suffix`` for its extension (None: the name as it is, COCO's ``file_name``).

    Images of one name from different folders (``a/1.png``, ``b/1.png``) get as many of their last
    folders as tell them apart (``a/1.txt``, ``b/1.txt``), and so does a name the format keeps for
    itself (YOLO's ``classes.txt`` for an image ``classes.jpg``): the importer matches a label file in
    sub-folders to the image in the same last folders. Only two images of one stem in one folder
    (``x.jpg``, ``x.png``) cannot be told apart by a file per stem: refused, naming both.
    """
    bases = []
    for rec, _ in items:
        base = safe_file_name(rec.name)
        bases.append(base if suffix is None else Path(base).stem + suffix)
    folders = [Path(rec.path).parent.parts[1:] if Path(rec.path).is_absolute() else Path(rec.path).parent.parts
               for rec, _ in items]
    depth = [0] * len(items)
    taken = set(reserved)
    while True:
        names = ["/".join((*f[len(f) - d:], b)) if d else b for f, d, b in zip(folders, depth, bases, strict=True)]
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(name, []).append(i)
        clash = [i for name, group in groups.items() if len(group) > 1 or name in taken for i in group]
        if not clash:
            return names
        stuck = [i for i in clash if depth[i] >= len(folders[i])]
        if stuck:
            i = stuck[0]
            other = next((j for j in groups[names[i]] if j != i), None)
            what = f"images {items[other][0].path!r} and {items[i][0].path!r}" if other is not None else \
                f"image {items[i][0].path!r} and the format's own file"
            raise ValueError(
                f"{fmt} export: {what} would write the same label file {bases[i]!r} (in every sub-folder); "
                "rename one or export to COCO"
            )
        for i in clash:
            depth[i] += 1


def check_item(rec: Any, ann: Annotation) -> None:
    if (ann.width, ann.height) != (rec.width, rec.height):
        raise AnnotationError(
            f"{rec.name}: the annotation is for a {ann.width}x{ann.height} image but the image is "
            f"{rec.width}x{rec.height}"
        )


def check_labels(rec: Any, ann: Annotation, classes: Sequence[str]) -> None:
    check_item(rec, ann)
    n = len(classes)
    bad = [int(v) for v in ann.labels if not 0 <= v < n]
    if ann.category is not None and not 0 <= ann.category < n:
        bad.append(int(ann.category))
    if bad:
        raise AnnotationError(
            f"{rec.name}: class index {bad[0]} is not among the {n} classes {list(classes)}"
        )
