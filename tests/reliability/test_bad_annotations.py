"""Bad annotations and malformed label files: refused where they enter, with a message saying what and
where, and nothing stored changes because of them.

- ``Annotation(...)`` / ``Annotation.from_json``: malformed values raise :class:`AnnotationError` (a
  ``ValueError``) saying which field; never a bare numpy TypeError.
- ``session.submit``: boxes with NaN/inf, zero/negative size, outside the image, unknown classes, masks
  that do not fit, the wrong kind of annotation for the project: AnnotationError, and the store (label
  ids, versions, contents) and the trainer's samples are exactly as before. Boxes *partly* outside
  the image are clipped to it: the documented behaviour (``Annotation.validate``).
- Imports (COCO, VOC, YOLO, masks, instances): the documented behaviour of ``formats`` is that a
  malformed file or entry is skipped with one message naming the file while the rest imports; the
  session turns each into a ``SkippedFileWarning``. Only a wrong *argument* (no such labels path, no or
  an unknown format) raises, and then before anything is added. Nothing is written to the store for a
  skipped file or entry (imports are per image, not all-or-nothing: the code promises no more).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from livetrain_widgets import Annotation, AnnotationError, LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.engine.annotation import encode_rle
from livetrain_widgets.engine.session import SkippedFileWarning
from livetrain_widgets.models.base import LiveModel

from .report import record

CLASSES = ["cat", "dog"]
W, H = 16, 12  # a non-square image, so that a swapped width/height shows


class StubModel(LiveModel):
    """A model for every task that learns nothing: these tests are about what is stored, not trained."""

    family = "reliability-stub"
    tasks = ("detection", "segmentation", "classification")

    def __init__(self, task: str = "detection", classes: Sequence[str] = ("a",)) -> None:
        super().__init__(task, classes)
        self.w = nn.Parameter(torch.zeros(1))

    def loss(self, images: Sequence[np.ndarray], targets: Sequence[Annotation]) -> torch.Tensor:
        return (self.w - 1.0).pow(2).sum()

    def predict(self, images: Sequence[np.ndarray]) -> list[Annotation]:
        if self.task == "classification":
            return [Annotation(im.shape[1], im.shape[0], category=0, category_scores=[1.0, 0.0]) for im in images]
        return [Annotation(im.shape[1], im.shape[0]) for im in images]


def open_session(project: Path, task: str, classes: Sequence[str] = CLASSES) -> LiveSession:
    cfg = SessionConfig(trainer=TrainerConfig(batch_size=2, min_labeled=1))
    return LiveSession(project, task, list(classes), model=StubModel(task, classes), config=cfg)


def snapshot(s: LiveSession) -> dict[str, Any]:
    """Everything a rejected submit or a failed import must leave as it was."""
    return {
        "labeled": s.store.labeled_ids(),
        "versions": {
            i: [(v.version, json.dumps(v.annotation.to_json(), sort_keys=True), v.source)
                for v in s.store.annotation_history(i)]
            for i in s.store.image_ids()
        },
        "samples": sorted(s.trainer.sampler.keys),
    }


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


# ------------------------------------------------------------------------------- Annotation(...)
CONSTRUCTION: list[tuple[str, Callable[[], Any], str]] = [
    ("box coordinates that are strings", lambda: Annotation(W, H, [["a", 0, 4, 4]], [0]), "boxes must be numbers"),
    ("boxes of shape (1, 3)", lambda: Annotation(W, H, [[0, 0, 4]], [0]), r"shape \(N, 4\)"),
    ("boxes of shape (1, 4, 1)", lambda: Annotation(W, H, np.zeros((1, 4, 1)), [0]), r"shape \(N, 4\)"),
    ("ragged boxes", lambda: Annotation(W, H, [[0, 0, 4, 4], [1, 2]], [0, 0]), "boxes must be numbers"),
    ("2 labels for 1 box", lambda: Annotation(W, H, [[0, 0, 4, 4]], [0, 1]), "1 boxes/masks but 2 labels"),
    ("label 1.5", lambda: Annotation(W, H, [[0, 0, 4, 4]], [1.5]), "whole class indices"),
    ("label NaN", lambda: Annotation(W, H, [[0, 0, 4, 4]], [float("nan")]), "whole class indices"),
    ("label 'cat' (a name, not an index)", lambda: Annotation(W, H, [[0, 0, 4, 4]], ["cat"]), "labels"),
    ("category 1.5", lambda: Annotation(W, H, category=1.5), "category must be a class index"),
    ("category NaN", lambda: Annotation(W, H, category=float("nan")), "category must be a class index"),
    ("category 'dog'", lambda: Annotation(W, H, category="dog"), "category must be a class index"),
    ("image size 0", lambda: Annotation(0, H), "size must be positive"),
    ("image size -3", lambda: Annotation(W, -3), "size must be positive"),
    ("image size NaN", lambda: Annotation(float("nan"), H), "size must be whole numbers"),
    ("image size 'wide'", lambda: Annotation("wide", H), "size must be whole numbers"),
    ("2 scores for 1 box", lambda: Annotation(W, H, [[0, 0, 4, 4]], [0], scores=[0.5, 0.5]), "2 scores"),
    ("mask of the wrong size", lambda: Annotation(W, H, [[0, 0, 4, 4]], [0], masks=np.ones((1, 8, 8), bool)),
     rf"shape \(N, {H}, {W}\)"),
    ("mask transposed (W, H)", lambda: Annotation(W, H, [[0, 0, 4, 4]], [0], masks=np.ones((1, W, H), bool)),
     rf"shape \(N, {H}, {W}\)"),
    ("2 masks for 1 box", lambda: Annotation(W, H, [[0, 0, 4, 4]], [0], masks=np.ones((2, H, W), bool)),
     "2 masks but 1 boxes"),
    ("masks of rank 4", lambda: Annotation(W, H, [[0, 0, 4, 4]], [0], masks=np.ones((1, 1, H, W), bool)),
     "masks must have shape"),
    ("soft float mask (0.3 everywhere)",
     lambda: Annotation(W, H, [[0, 0, 4, 4]], [0], masks=np.full((1, H, W), 0.3)), "float masks must hold only 0"),
    ("float mask with NaN", lambda: Annotation(W, H, [[0, 0, 4, 4]], [0], masks=np.full((1, H, W), np.nan)),
     "float masks must hold only 0"),
    ("mask of strings", lambda: Annotation(W, H, [[0, 0, 4, 4]], [0], masks=np.full((1, H, W), "x")),
     "masks must be boolean"),
    ("mask of Python objects",
     lambda: Annotation(W, H, [[0, 0, 4, 4]], [0], masks=np.full((1, H, W), None, dtype=object)),
     "masks must be boolean"),
    ("JSON: a list, not an object", lambda: Annotation.from_json([1, 2]), "must be a JSON object"),
    ("JSON: no width", lambda: Annotation.from_json({"height": H}), "integer 'width' and 'height'"),
    ("JSON: boxes as an object", lambda: Annotation.from_json({"width": W, "height": H, "boxes": {"a": 1}}),
     "boxes must be numbers"),
    ("JSON: masks not a list", lambda: Annotation.from_json({"width": W, "height": H, "masks": 5}),
     "'masks' must be a list"),
    ("JSON: RLE of another size", lambda: Annotation.from_json(
        {"width": W, "height": H, "boxes": [[0, 0, 4, 4]], "labels": [0],
         "masks": [{"size": [8, 8], "counts": "PP"}]}), "does not match the image"),
    ("JSON: RLE counts garbage", lambda: Annotation.from_json(
        {"width": W, "height": H, "boxes": [[0, 0, 4, 4]], "labels": [0],
         "masks": [{"size": [H, W], "counts": "%%%%"}]}), "not valid COCO RLE"),
    ("JSON: RLE counts a number", lambda: Annotation.from_json(
        {"width": W, "height": H, "boxes": [[0, 0, 4, 4]], "labels": [0], "masks": [{"size": [H, W], "counts": 5}]}),
     "not valid COCO RLE"),
    ("JSON: RLE without size", lambda: Annotation.from_json(
        {"width": W, "height": H, "boxes": [[0, 0, 4, 4]], "labels": [0], "masks": [{"counts": "PP"}]}),
     "must be COCO RLE"),
]


def test_annotation_construction_refuses_malformed_values() -> None:
    for what, build, message in CONSTRUCTION:
        with pytest.raises(AnnotationError, match=message) as err:
            build()
        assert err.type is AnnotationError, what
    # Integer masks follow numpy's rule (non-zero is inside, as in 0/255 mask images); 0/1 floats are fine.
    m = np.zeros((1, H, W), np.uint8)
    m[0, 2:5, 3:9] = 255
    a = Annotation(W, H, [[3, 2, 9, 5]], [0], masks=m)
    assert a.masks.dtype == bool and a.masks.sum() == 18
    b = Annotation(W, H, [[3, 2, 9, 5]], [0], masks=m.astype(np.float32) / 255)
    assert np.array_equal(a.masks, b.masks)
    record("bad input", "annotations: malformed Annotation(...) / from_json values (strings, NaN, ragged or "
           "wrong-shaped boxes, masks of the wrong size, rank or dtype, garbage RLE)", len(CONSTRUCTION),
           "each refused on construction with an AnnotationError naming the field")


# ----------------------------------------------------------------------------------- submit
def bad_submissions(task: str) -> list[tuple[str, Any, str]]:
    """(what, annotation or JSON dict, message part) for one task; each must be refused by submit."""
    box = [[2, 2, 8, 8]]
    common: list[tuple[str, Any, str]] = [
        ("annotation for a 12x16 image (width and height swapped)", Annotation(H, W), "image {id}"),
        ("annotation for another image size", Annotation(W + 1, H), "is 16x12"),
        ("JSON that is not an annotation", {"boxes": box}, "integer 'width' and 'height'"),
    ]
    if task == "classification":
        return [
            *common,
            ("no category", Annotation(W, H), "needs a category"),
            ("category 2 of 2 classes", Annotation(W, H, category=2), "unknown class index 2"),
            ("category -1", Annotation(W, H, category=-1), "unknown class index -1"),
            ("boxes in a classification project (wrong task kind)", Annotation(W, H, box, [0], category=0),
             "takes an image class"),
            ("JSON category 'dog'", {"width": W, "height": H, "category": "dog"}, "category must be a class index"),
        ]
    seg = task == "segmentation"

    def objects(boxes: list[list[float]], labels: list[int]) -> Annotation:
        # In a segmentation project every object needs its mask (else "needs masks" comes first).
        return Annotation(W, H, boxes, labels, masks=np.ones((len(boxes), H, W), bool) if seg else None)

    cases: list[tuple[str, Any, str]] = [
        ("box with NaN", objects([[np.nan, 2, 8, 8]], [0]), "not a number"),
        ("box with inf", objects([[2, 2, np.inf, 8]], [0]), "not a number"),
        ("box of zero width", objects([[4, 2, 4, 8]], [0]), "zero or negative size"),
        ("box of negative height", objects([[2, 8, 8, 2]], [0]), "zero or negative size"),
        ("box entirely outside the image", objects([[20, 20, 30, 30]], [0]), "outside the 16x12 image"),
        ("box entirely left of the image", objects([[-9, 2, -1, 8]], [0]), "outside the 16x12 image"),
        ("class index 2 of 2 classes", objects(box, [2]), "unknown class index 2"),
        ("class index -1", objects(box, [-1]), "unknown class index -1"),
        ("an image class in an object project (wrong task kind)", Annotation(W, H, category=1),
         "not an image class"),
        ("JSON box with a string", {"width": W, "height": H, "boxes": [["x", 2, 8, 8]], "labels": [0]},
         "boxes must be numbers"),
        ("JSON with 2 labels for 1 box", {"width": W, "height": H, "boxes": box, "labels": [0, 1]}, "2 labels"),
    ]
    if not seg:
        return common + cases
    rle = encode_rle(mask(2, 8, 2, 8))
    return [
        *common,
        *cases,
        ("boxes without masks", Annotation(W, H, box, [0]), "needs masks"),
        ("an empty mask", Annotation(W, H, box, [0], masks=np.zeros((1, H, W), bool)), "mask 0 is empty"),
        ("JSON RLE of another size", {"width": W, "height": H, "boxes": box, "labels": [0],
                                      "masks": [{"size": [W, H], "counts": rle["counts"]}]}, "does not match"),
        ("JSON RLE garbage", {"width": W, "height": H, "boxes": box, "labels": [0],
                              "masks": [{"size": [H, W], "counts": "%%%%"}]}, "not valid COCO RLE"),
        ("objects with masks and an image class (wrong task kind)",
         Annotation(W, H, box, [0], masks=mask(2, 8, 2, 8)[None], category=1), "not an image class"),
    ]


_OBJECTS = ("NaN/inf coordinates, zero/negative size, boxes entirely outside, unknown class 2 / -1, an image "
            "class instead of objects, malformed JSON")
SUBMIT_CASES = {
    "detection": f"wrong or swapped image size, {_OBJECTS}",
    "segmentation": f"wrong or swapped image size, {_OBJECTS}, boxes without masks, an empty mask, RLE of "
                    "another size or garbage",
    "classification": "wrong or swapped image size, no category, category 2 / -1, boxes instead of a class, "
                      "malformed JSON",
}


@pytest.mark.parametrize("task", ["detection", "segmentation", "classification"])
async def test_submit_refuses_bad_annotations_and_changes_nothing(tmp_path: Path, task: str) -> None:
    s = open_session(tmp_path / "p", task)
    ids = s.add_images(images(3))
    good = {
        "detection": Annotation(W, H, [[1, 1, 6, 5]], [1]),
        "segmentation": Annotation.from_masks(mask(1, 5, 1, 6)[None], [1]),
        "classification": Annotation(W, H, category=1),
    }[task]
    await s.submit(ids[0], good)
    await s.submit(ids[0], good)  # two versions of one image, one of another, one image unlabeled
    await s.submit(ids[1], good)
    await s.predict(ids[2])
    before = snapshot(s)
    cases = bad_submissions(task)
    for what, ann, message in cases:
        for i in ids:
            with pytest.raises(AnnotationError, match=message.format(id=i)) as err:
                await s.submit(i, ann)
            assert str(err.value), what
            assert snapshot(s) == before, what
    with pytest.raises(KeyError, match="no image with id 999"):
        await s.submit(999, good)
    assert snapshot(s) == before
    await s.close()
    record("bad input", f"annotations: bad submits to a {task} project ({SUBMIT_CASES[task]}), each to a "
           "labeled, a relabeled and an unlabeled image", len(cases) * len(ids),
           "each an AnnotationError at submit saying what is wrong; store and trainer unchanged (label ids, "
           "every version, samples)", 0)


async def test_boxes_partly_outside_the_image_are_clipped_as_documented(tmp_path: Path) -> None:
    assert "clipped" in (Annotation.validate.__doc__ or "")  # the behaviour this test checks is documented
    s = open_session(tmp_path / "p", "detection")
    (i,) = s.add_images(images(1))
    await s.submit(i, Annotation(W, H, [[-5, -3, 30, 6], [10, 4, 99, 99]], [0, 1]))
    stored = s.annotation(i)
    np.testing.assert_allclose(stored.boxes, [[0, 0, W, 6], [10, 4, W, H]])
    assert stored.labels.tolist() == [0, 1]
    await s.close()
    record("bad input", "annotations: boxes partly outside the image", 2,
           "clipped to the image, as Annotation.validate documents", 0)


# ----------------------------------------------------------------------------------- imports
def write_images(folder: Path, names: Sequence[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, name in enumerate(names):
        Image.fromarray(images(1, seed=k)[0]).save(folder / name)
        paths.append(folder / name)
    return paths


def import_with_warnings(s: LiveSession, paths: list[Path], labels: Path, fmt: str,
                         **options: Any) -> tuple[list[int], list[str]]:
    with pytest.warns(SkippedFileWarning) as caught:
        # pycocotools' NumPy 2 DeprecationWarning (see tests/conftest.py): pytest.warns records it and
        # re-emits it past that module filter, so it is ignored here too.
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        ids = s.add_images(paths, labels=labels, format=fmt, **options)
    return ids, [str(w.message) for w in caught if issubclass(w.category, SkippedFileWarning)]


def expect_messages(messages: list[str], expected: list[tuple[str, str]]) -> None:
    """Each (file part, message part) is in exactly one warning, and every warning is expected."""
    for where, what in expected:
        hits = [m for m in messages if where in m and what in m]
        assert len(hits) == 1, (where, what, messages)
    unexplained = [m for m in messages if not any(where in m and what in m for where, what in expected)]
    assert not unexplained, unexplained


async def test_malformed_coco_files(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "images", ["a.png", "b.png", "c.png", "d.png", "e.png"])
    s = open_session(tmp_path / "p", "segmentation")
    ok = {"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 3], "segmentation": encode_rle(mask(1, 4, 1, 5))}
    doc = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": W, "height": H},
            {"id": 2, "file_name": "b.png", "width": "wide", "height": H},
            {"id": 3},
            {"id": 4, "file_name": "c.png", "width": 20, "height": H},
            {"id": 5, "file_name": 7},
            {"id": 6, "file_name": "d.png"},
        ],
        "annotations": [
            ok,
            {**ok, "bbox": [float("nan"), 1, 4, 3]},
            {**ok, "category_id": 99},
            {**ok, "bbox": "1 1 4 3"},
            {**ok, "bbox": [1, 1, 4]},
            {**ok, "bbox": [1, 1, -4, 3]},
            {"image_id": 1, "category_id": 1, "segmentation": ok["segmentation"]},
            {**ok, "segmentation": [[1, 2]]},
            {**ok, "segmentation": {"size": [H, W], "counts": "%%%%"}},
            {**ok, "segmentation": "a cat"},
            {**ok, "segmentation": {"size": [8, 8], "counts": "PP"}},
            {**ok, "image_id": 42},
            17,
            {**ok, "image_id": 6, "bbox": [30, 30, 4, 4]},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": "x", "name": "dog"}, {"name": "nameless"}],
    }
    coco = tmp_path / "labels" / "bad.json"
    coco.parent.mkdir()
    coco.write_text(json.dumps(doc))  # allow_nan: a NaN literal, as some tools write
    ids, messages = import_with_warnings(s, paths, coco, "coco")
    f = str(coco)
    expected = [
        (f, "annotations[1] (image 'a.png'): box coordinates are not all numbers"),
        (f, "annotations[2] (image 'a.png'): unknown category_id 99"),
        (f, "annotations[3] (image 'a.png'): could not convert string to float"),
        (f, "annotations[4] (image 'a.png'): bbox must be [x, y, width, height]"),
        (f, "annotations[5] (image 'a.png'): negative box size"),
        (f, "annotations[6] (image 'a.png'): no 'bbox'"),
        (f, "annotations[7] (image 'a.png'): a polygon needs at least 3"),
        (f, "annotations[8] (image 'a.png'): a mask is not valid COCO RLE"),
        (f, "annotations[9] (image 'a.png'): segmentation must be polygons or RLE"),
        (f, "annotations[10] (image 'a.png'): mask size [8, 8] does not match"),
        (f, "annotations[11] refers to unknown image_id 42"),
        (f, "annotations[12] has no image_id"),
        (f, "annotations[13] (image 'd.png'): box has zero or negative size"),
        (f, "image 'b.png': invalid literal for int()"),
        (f, "images[2] needs an 'id' and a 'file_name'"),
        (f, "images[4] needs an 'id' and a 'file_name'"),
        (f, "image 'c.png': size 20x12 differs from the image's 16x12; skipped"),
        (f, "categories[1] needs an integer 'id' and a 'name'"),
        (f, "categories[2] needs an integer 'id' and a 'name'"),
        (f, "d.png: every object was refused (1), so the image is left unlabeled"),
    ]
    expect_messages(messages, expected)
    assert len(ids) == 5
    # a.png: its one good object, with its mask (the refused ones left out, each named above). d.png:
    # its only object was refused, so it stays unlabeled rather than "labeled, nothing there", which
    # would teach background where the object is.
    a = s.annotation(ids[0])
    np.testing.assert_allclose(a.boxes, [[1, 1, 5, 4]])
    assert a.masks is not None and a.masks[0].sum() == 12 and s.annotation(ids[3]) is None
    assert s.store.labeled_ids() == [ids[0]]

    # Whole files that cannot be read: one message naming the file; nothing is written.
    before = snapshot(s)
    whole = {
        "not JSON": (b"{'images': [", "not valid JSON"),
        "binary garbage": (bytes(range(256)), "not valid JSON"),
        "a JSON list": (b"[1, 2, 3]", "not a COCO file"),
        "no images list": (b'{"annotations": []}', "not a COCO file"),
        "images as an object": (b'{"images": {"id": 1}}', "not a COCO file"),
    }
    for k, (data, message) in enumerate(whole.values()):
        bad = tmp_path / "labels" / f"whole{k}.json"
        bad.write_bytes(data)
        _, messages = import_with_warnings(s, paths, bad, "coco")
        expect_messages(messages, [(str(bad), message)])
        assert snapshot(s) == before
    annotations_object = tmp_path / "labels" / "annotations_object.json"
    annotations_object.write_text(json.dumps({"images": doc["images"][:1], "annotations": {"a": 1}}))
    _, messages = import_with_warnings(s, paths, annotations_object, "coco")
    expect_messages(messages, [(str(annotations_object), "'annotations' is not a list; nothing imported")])
    # Before: a.png was imported again "without objects", a new empty latest version over its label.
    assert snapshot(s) == before
    await s.close()
    record("bad input", "COCO: malformed entries in one file (NaN/string/short/negative bbox, unknown category "
           "and image ids, garbage segmentation: short polygon, bad RLE, wrong RLE size, a string; bad image "
           "entries and sizes; bad categories)", len(expected),
           "one SkippedFileWarning per bad entry naming the file and entry; the valid objects imported", 0)
    record("bad input", "COCO: whole file not JSON / binary / not a COCO object / 'annotations' not a list",
           len(whole) + 1, "one SkippedFileWarning naming the file; store unchanged", 0)


async def test_malformed_voc_files(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "images", ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png"])
    s = open_session(tmp_path / "p", "detection")
    voc = tmp_path / "voc"
    voc.mkdir()

    def obj(name: str | None, *coords: str | None) -> str:
        tags = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), coords, strict=False)
                       if v is not None)
        return f"<object>{'' if name is None else f'<name>{name}</name>'}<bndbox>{tags}</bndbox></object>"

    size = f"<size><width>{W}</width><height>{H}</height></size>"
    (voc / "a.xml").write_text(
        f"<annotation><filename>a.png</filename>{size}{obj('cat', '2', '2', '6', '5')}"
        f"{obj('dog', 'abc', '2', '6', '5')}{obj('dog', '2', '2', '6', None)}{obj(None, '2', '2', '6', '5')}"
        f"{obj('zebra', '2', '2', '6', '5')}{obj('cat', '9', '2', '4', '5')}</annotation>"
    )
    (voc / "b.xml").write_text("<annotation><object><name>cat</name>")
    (voc / "c.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        f"<annotation>{size}<object><name>&x;</name></object></annotation>"
    )
    (voc / "d.xml").write_text(f"<notvoc>{size}</notvoc>")
    (voc / "e.xml").write_text(f"<annotation><size><width>99</width><height>99</height></size>"
                               f"{obj('cat', '2', '2', '6', '5')}</annotation>")
    (voc / "f.xml").write_bytes(b"\x00\xff\xfe garbage")
    # An object of a class the project does not have refuses the import (issue 19: left out, it stored its
    # image as labeled without it), naming the class and the file; nothing is added.
    with pytest.raises(ValueError, match=r"'zebra' in .*a\.xml"), warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFileWarning)
        s.add_images(paths, labels=voc, format="voc")
    assert s.store.image_count() == 0
    ids, messages = import_with_warnings(s, paths, voc, "voc", ignore_classes=["zebra"])
    expect_messages(messages, [
        (str(voc / "a.xml"), "object 1 (dog): could not convert string to float: 'abc'"),
        (str(voc / "a.xml"), "object 2 (dog): no complete <bndbox>"),
        (str(voc / "a.xml"), "object 3 (?): no <name>"),
        (str(voc / "a.xml"), "object 5 (cat): negative size"),
        (str(voc / "b.xml"), "not valid VOC XML"),
        (str(voc / "c.xml"), "not valid VOC XML"),
        (str(voc / "d.xml"), "not a VOC annotation (root element <notvoc>)"),
        (str(voc / "e.xml"), "<size> says 99x99 but e.png is 16x12"),
        (str(voc / "f.xml"), "not valid VOC XML"),
    ])
    c = next(m for m in messages if "c.xml" in m)
    assert "DTD" in c and "root:" not in c  # refused, /etc/passwd never read into a class name
    a = s.annotation(ids[0])
    np.testing.assert_allclose(a.boxes, [[1, 1, 6, 5]])  # VOC's 1-based inclusive xmin=2 is pixel edge 1
    assert a.labels.tolist() == [0]
    assert s.store.labeled_ids() == [ids[0]]
    await s.close()
    record("bad input", "VOC: broken XML, binary file, DTD/XXE, wrong root, <size> mismatch, non-numeric / "
           "missing coordinates, no <name>, negative size, unknown class name", 10,
           "one SkippedFileWarning each naming the XML file (and object); the valid object imported", 0)


async def test_malformed_yolo_files(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "images", ["a.png", "b.png", "c.png"])
    s = open_session(tmp_path / "p", "detection")
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "classes.txt").write_text("cat\ndog\n")
    lines = [
        "0 0.5 0.5 0.25 0.5",  # good
        "1 0.5 0.5",  # 3 fields
        "0 0.1 0.1 0.2 0.2 0.3",  # 6 fields
        "0 a b c d",  # not numbers
        "5 0.5 0.5 0.1 0.1",  # class id out of range
        "-1 0.5 0.5 0.1 0.1",  # negative class
        "0.5 0.5 0.5 0.1 0.1",  # class not whole
        "0 nan 0.5 0.1 0.1",  # NaN
        "0 inf 0.5 0.1 0.1",  # inf
        "0 1.5 1.5 0.2 0.2",  # entirely outside 0..1
        "0 0.5 0.5 -0.1 0.1",  # negative size
        "1 0.9 0.9 0.5 0.5",  # partly outside: clipped (documented)
        "# a comment, and a blank line next",
        "",
    ]
    (yolo / "a.txt").write_text("\n".join(lines) + "\n")
    (yolo / "b.txt").write_bytes(b"\xff\xfe\x00 not utf-8")
    (yolo / "c.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    ids, messages = import_with_warnings(s, paths, yolo, "yolo")
    a = str(yolo / "a.txt")
    expect_messages(messages, [
        (a, "line 2: expected 'class cx cy w h'"),
        (a, "line 3: expected 'class cx cy w h'"),
        (a, "line 4: could not convert string to float"),
        (a, "line 5: unknown class id 5; there are 2 classes"),
        (a, "line 6: class id '-1' is not a whole number"),
        (a, "line 7: class id '0.5' is not a whole number"),
        (a, "line 8: coordinates are not all numbers"),
        (a, "line 9: coordinates are not all numbers"),
        (a, "line 10: box has zero or negative size (or lies outside"),
        (a, "line 11: negative box size"),
        (str(yolo / "b.txt"), "codec can't decode"),
    ])
    ann = s.annotation(ids[0])
    np.testing.assert_allclose(ann.boxes, [[6, 3, 10, 9], [0.65 * W, 0.65 * H, W, H]], atol=1e-4)
    assert ann.labels.tolist() == [0, 1]
    assert s.store.labeled_ids() == [ids[0], ids[2]]
    await s.close()
    record("bad input", "YOLO: lines with 3 or 6 fields, non-numbers, NaN/inf, class ids out of range / "
           "negative / fractional, boxes outside 0..1 or of negative size; a non-UTF-8 file", 11,
           "one SkippedFileWarning per line naming file and line; valid lines imported, a box partly "
           "outside 0..1 clipped (documented)", 0)


async def test_malformed_mask_images(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "images", ["a.png", "b.png", "c.png", "d.png", "e.png"])
    s = open_session(tmp_path / "p", "segmentation")
    masks = tmp_path / "masks"
    masks.mkdir()
    good = np.zeros((H, W), np.uint8)
    good[2:6, 3:8] = 1
    Image.fromarray(good).save(masks / "a.png")
    Image.fromarray(np.ones((8, 8), np.uint8)).save(masks / "b.png")  # wrong size
    Image.fromarray(np.ones((W, H), np.uint8)).save(masks / "c.png")  # transposed
    Image.fromarray(np.full((H, W), 7, np.uint8)).save(masks / "d.png")  # class value 7 of 2 classes
    (masks / "e.png").write_bytes(b"not a png at all")
    ids, messages = import_with_warnings(s, paths, masks, "masks")
    expect_messages(messages, [
        (str(masks / "b.png"), "the label image is 8x8 but b.png is 16x12"),
        (str(masks / "c.png"), "the label image is 12x16 but c.png is 16x12"),
        (str(masks / "d.png"), "unknown class id 6; there are 2 classes"),
        (str(masks / "e.png"), "not a readable mask image"),
    ])
    assert s.store.labeled_ids() == [ids[0]] and s.annotation(ids[0]).masks[0].sum() == 20

    before = snapshot(s)
    inst = tmp_path / "instances"
    inst.mkdir()
    (inst / "instance_classes.json").write_text("{not json")
    Image.fromarray(np.ones((8, 8), np.uint16)).save(inst / "b.png")
    _, messages = import_with_warnings(s, paths, inst, "instances")
    expect_messages(messages, [
        (str(inst / "instance_classes.json"), "ignored, not valid JSON"),
        (str(inst / "b.png"), "the label image is 8x8 but b.png is 16x12"),
    ])
    assert snapshot(s) == before
    await s.close()
    record("bad input", "mask / instance images: wrong size, transposed, unknown class value, not an image; "
           "instance sidecar not JSON", 6, "one SkippedFileWarning each naming the file; store unchanged by them", 0)


async def test_wrong_kind_of_labels_for_the_project_at_import(tmp_path: Path) -> None:
    """Class folders (image classes) imported into a detection project: refused per image, with a warning."""
    paths = write_images(tmp_path / "data" / "cat", ["a.png", "b.png"])
    s = open_session(tmp_path / "p", "detection")
    ids, messages = import_with_warnings(s, paths, tmp_path / "data", "folders")
    assert len(ids) == 2 and len(messages) == 2
    for p, m in zip(paths, messages, strict=True):
        assert str(p) in m and "not an image class" in m
    assert s.store.labeled_ids() == []
    await s.close()
    record("bad input", "image classes (class folders) imported into a detection project", 2,
           "refused per image with a SkippedFileWarning naming it; nothing stored", 0)


async def test_a_bad_labels_argument_adds_nothing(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "images", ["a.png"])
    s = open_session(tmp_path / "p", "detection")
    calls = [
        (dict(labels=tmp_path / "missing.json", format="coco"), FileNotFoundError, "no such label file"),
        (dict(labels=tmp_path / "images"), ValueError, "say which format"),
        (dict(labels=tmp_path / "images", format="pascal"), ValueError, "say which format"),
    ]
    for kw, exc, message in calls:
        with pytest.raises(exc, match=message):
            s.add_images(paths, **kw)
        assert s.image_ids == []  # before: the images were added, then the call raised
    await s.close()
    record("bad input", "add_images with a missing labels path, no format, an unknown format", len(calls),
           "refused before any image is added; project unchanged", 0)
