"""Label import/export: round trips (property tests), malformed files, unsafe XML, real datasets."""

from __future__ import annotations

import json
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from livetrain_widgets.engine import _formats_common as common
from livetrain_widgets.engine._formats_yolo import _yaml_names, _yaml_names_by_hand
from livetrain_widgets.engine._output_folder import MARKER
from livetrain_widgets.engine.annotation import Annotation, AnnotationError
from livetrain_widgets.engine.formats import FORMATS, export_labels, load_labels
from livetrain_widgets.engine.images import load_image
from livetrain_widgets.engine.store import ImageRecord

CLASSES = ["cat", "dog", "bird"]
SIZES = [(7, 5), (64, 48), (301, 199), (33, 97)]


def write_image(path: Path, w: int, h: int, **save: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(w * 1000 + h)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, **save)
    return path


def record(path: Path, i: int = 1) -> ImageRecord:
    w, h = Image.open(path).size
    return ImageRecord(i, str(path.resolve()), path.name, w, h, "sha", 1, 0.0)


@pytest.fixture(scope="module")
def images():
    with tempfile.TemporaryDirectory() as d:
        yield [write_image(Path(d) / f"im{i}.png", w, h) for i, (w, h) in enumerate(SIZES)]


def roundtrip(fmt: str, task: str, items: list, classes=CLASSES) -> tuple:
    with tempfile.TemporaryDirectory() as d:
        out = export_labels(fmt, Path(d) / "out", items, classes, task)
        leftovers = [p for p in Path(d).rglob("*.tmp")]
        assert not leftovers
        loaded = load_labels(fmt, out, [Path(r.path) for r, _ in items], classes)
    assert loaded.errors == []
    assert loaded.classes[: len(classes)] == list(classes)
    return loaded


# ---------------------------------------------------------------------------- property tests
@st.composite
def det_items(draw: st.DrawFn, images: list[Path]) -> list:
    chosen = draw(st.lists(st.integers(0, len(images) - 1), min_size=1, max_size=3, unique=True))
    items = []
    for k in chosen:
        w, h = SIZES[k]
        n = draw(st.integers(0, 5))
        boxes = []
        for _ in range(n):
            x0 = draw(st.floats(0, w - 0.5))
            y0 = draw(st.floats(0, h - 0.5))
            x1 = draw(st.floats(x0 + 0.25, w))
            y1 = draw(st.floats(y0 + 0.25, h))
            boxes.append([x0, y0, x1, y1])
        labels = [draw(st.integers(0, len(CLASSES) - 1)) for _ in range(n)]
        items.append((record(images[k], k + 1), Annotation(w, h, boxes, labels)))
    return items


@st.composite
def seg_items(draw: st.DrawFn, images: list[Path], overlapping: bool = False) -> list:
    """Instance masks without overlaps (what label images can hold), boxes derived from the masks."""
    chosen = draw(st.lists(st.integers(0, len(images) - 1), min_size=1, max_size=2, unique=True))
    items = []
    for k in chosen:
        w, h = SIZES[k]
        canvas = np.zeros((h, w), np.int64)
        for v in range(1, draw(st.integers(0, 5)) + 1):
            x0, y0 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
            x1, y1 = draw(st.integers(x0 + 1, w)), draw(st.integers(y0 + 1, h))
            canvas[y0:y1, x0:x1] = v
        ids = [int(v) for v in np.unique(canvas) if v]
        labels = [draw(st.integers(0, len(CLASSES) - 1)) for _ in ids]
        masks = np.stack([canvas == v for v in ids]) if ids else np.zeros((0, h, w), bool)
        items.append((record(images[k], k + 1), Annotation.from_masks(masks, labels, width=w, height=h)))
    return items


def by_path(items: list) -> dict[Path, Annotation]:
    return {Path(r.path): a for r, a in items}


# The fixtures used are read-only (module-scoped images, tmp folders made inside the test).
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
@SETTINGS
@given(data=st.data())
def test_property_boxes_round_trip(images: list[Path], fmt: str, data: st.DataObject) -> None:
    items = data.draw(det_items(images))
    loaded = roundtrip(fmt, "detection", items)
    want = by_path(items)
    assert set(loaded.annotations) == set(want)
    for path, ann in want.items():
        got = loaded.annotations[path]
        assert (got.width, got.height) == (ann.width, ann.height)
        np.testing.assert_allclose(got.boxes, ann.boxes, atol=1e-3)
        assert got.labels.tolist() == ann.labels.tolist()
        assert got.masks is None


@pytest.mark.parametrize("fmt", ["coco", "instances"])
@SETTINGS
@given(data=st.data())
def test_property_instance_masks_round_trip(images: list[Path], fmt: str, data: st.DataObject) -> None:
    items = data.draw(seg_items(images))
    loaded = roundtrip(fmt, "segmentation", items)
    for path, ann in by_path(items).items():
        got = loaded.annotations[path]
        assert len(got) == len(ann)
        if len(ann):  # an image without objects may come back without a mask array
            assert got.masks is not None and np.array_equal(got.masks, ann.masks)
        assert got.labels.tolist() == ann.labels.tolist()
        np.testing.assert_allclose(got.boxes, ann.boxes, atol=1e-3)


@SETTINGS
@given(data=st.data())
def test_property_semantic_masks_round_trip(images: list[Path], data: st.DataObject) -> None:
    items = data.draw(seg_items(images))
    loaded = roundtrip("masks", "segmentation", items)
    for path, ann in by_path(items).items():
        got = loaded.annotations[path]
        assert np.array_equal(got.semantic_map(), ann.semantic_map())
        assert got.labels.tolist() == sorted(set(ann.labels.tolist()))  # one mask per class


@pytest.mark.parametrize("fmt", ["coco", "folders"])
@SETTINGS
@given(data=st.data())
def test_property_classification_round_trip(images: list[Path], fmt: str, data: st.DataObject) -> None:
    chosen = data.draw(st.lists(st.integers(0, len(images) - 1), min_size=1, max_size=4, unique=True))
    items = [
        (record(images[k], k + 1), Annotation(*SIZES[k], category=data.draw(st.integers(0, 2))))
        for k in chosen
    ]
    if fmt == "coco":
        loaded = roundtrip(fmt, "classification", items)
        for path, ann in by_path(items).items():
            assert loaded.annotations[path].category == ann.category
        return
    with tempfile.TemporaryDirectory() as d:
        out = export_labels("folders", Path(d) / "out", items, CLASSES, "classification")
        exported = sorted(p for p in out.rglob("*.png"))
        loaded = load_labels("folders", out, exported, CLASSES)
        assert loaded.errors == []
        got = {p.name: (a.category, a.width) for p, a in loaded.annotations.items()}
        assert got == {r.name: (a.category, a.width) for r, a in items}


def test_folders_export_again_after_a_class_change(images: list[Path], tmp_path: Path) -> None:
    first = [(record(images[k], k + 1), Annotation(*SIZES[k], category=k % 2)) for k in range(3)]
    export_labels("folders", tmp_path, first, CLASSES, "classification")
    changed = [(rec, Annotation(ann.width, ann.height, category=2)) for rec, ann in first]
    out = export_labels("folders", tmp_path, changed, CLASSES, "classification")  # into the same folder
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != MARKER)
    assert files == sorted(f"{CLASSES[2]}/{rec.name}" for rec, _ in first)  # no stale copy, no temporary link


# ------------------------------------------------------------------------------ export checks
def test_coco_export_is_valid_coco(images: list[Path], tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    canvas = np.zeros((48, 64), bool)
    canvas[5:20, 10:30] = True
    ann = Annotation.from_masks(canvas[None], [2])
    path = export_labels("coco", tmp_path, [(record(images[1], 7), ann)], CLASSES, "segmentation")
    doc = json.loads(path.read_text())
    obj = doc["annotations"][0]
    assert isinstance(obj["segmentation"]["counts"], str)
    assert obj["area"] == 300 and obj["iscrowd"] == 0 and obj["category_id"] == 3
    assert [c["id"] for c in doc["categories"]] == [1, 2, 3]
    coco = COCO()
    coco.dataset = doc
    coco.createIndex()
    assert np.array_equal(coco.annToMask(coco.anns[obj["id"]]).astype(bool), canvas)


def test_export_refusals(images: list[Path], tmp_path: Path) -> None:
    rec = record(images[1])
    boxes = Annotation(64, 48, [[1, 1, 5, 5]], [0])
    with pytest.raises(ValueError, match="classification"):
        export_labels("voc", tmp_path, [(rec, Annotation(64, 48, category=1))], CLASSES, "classification")
    with pytest.raises(ValueError, match="segmentation"):
        export_labels("masks", tmp_path, [(rec, boxes)], CLASSES, "detection")
    with pytest.raises(AnnotationError, match="only boxes"):
        export_labels("instances", tmp_path, [(rec, boxes)], CLASSES, "segmentation")
    with pytest.raises(AnnotationError, match="class index 5"):
        bad = Annotation(64, 48, [[1, 1, 5, 5]], [5])
        export_labels("yolo", tmp_path, [(rec, bad)], CLASSES, "detection")
    with pytest.raises(AnnotationError, match="65x48"):
        export_labels("voc", tmp_path, [(rec, Annotation(65, 48))], CLASSES, "detection")
    # Two images of one stem in one folder: no file per stem can tell them apart (other folders can).
    twin = ImageRecord(2, str(Path(rec.path).with_suffix(".jpg")), "im1.jpg", 64, 48, "s", 1, 0.0)
    with pytest.raises(ValueError, match=r"same label file 'im1\.txt'"):
        export_labels("yolo", tmp_path, [(rec, boxes), (twin, boxes)], CLASSES, "detection")
    with pytest.raises(ValueError, match="unknown label format"):
        export_labels("csv", tmp_path, [], CLASSES, "detection")
    assert set(FORMATS) == {"coco", "voc", "yolo", "masks", "instances", "folders"}


def test_yolo_export_writes_empty_files_and_classes(images: list[Path], tmp_path: Path) -> None:
    out = export_labels("yolo", tmp_path, [(record(images[1]), Annotation(64, 48))], CLASSES, "detection")
    assert (out / "im1.txt").read_text() == ""
    assert (out / "classes.txt").read_text().split() == CLASSES
    loaded = load_labels("yolo", out, [images[1]])
    assert len(loaded.annotations[images[1].resolve()]) == 0 and loaded.classes == CLASSES


def test_masks_export_uses_16_bit_for_many_classes(images: list[Path], tmp_path: Path) -> None:
    many = [f"c{i}" for i in range(300)]
    m = np.zeros((1, 48, 64), bool)
    m[0, 2:4, 3:9] = True
    out = export_labels("masks", tmp_path, [(record(images[1]), Annotation.from_masks(m, [299]))], many,
                        "segmentation")
    with Image.open(out / "im1.png") as im:
        assert im.mode == "I;16"
    loaded = load_labels("masks", out, [images[1]], many)
    assert loaded.errors == [] and loaded.annotations[images[1].resolve()].labels.tolist() == [299]


# --------------------------------------------------------------------------- malformed input
def test_coco_malformed_entries(images: list[Path], tmp_path: Path) -> None:
    doc = {
        "images": [
            {"id": 1, "file_name": "im1.png", "width": 64, "height": 48},
            {"id": 2, "file_name": "sub/im2.png"},  # no size: read from the image
            {"id": 3, "file_name": "elsewhere.png"},
            {"file_name": "no_id.png"},
        ],
        "categories": [{"id": 10, "name": "dog"}, {"id": 11, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 10, "bbox": [60, 40, 10, 10]},  # clipped
            {"id": 2, "image_id": 1, "category_id": 10, "bbox": [float("nan"), 1, 2, 2]},
            {"id": 3, "image_id": 1, "category_id": 11, "bbox": [1, 1, -2, 2]},
            {"id": 4, "image_id": 1, "category_id": 99, "bbox": [1, 1, 2, 2]},
            {"id": 5, "image_id": 1, "category_id": 11},
            {"id": 6, "image_id": 2, "category_id": 11, "bbox": [1, 1, 4, 4],
             "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]},
            {"id": 7, "image_id": 2, "category_id": 10, "bbox": [10, 10, 3, 3]},
            {"id": 8, "image_id": 42, "category_id": 10, "bbox": [1, 1, 2, 2]},
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))  # json writes NaN as NaN, as sloppy exporters do
    loaded = load_labels("coco", path, images, classes=["bird"])
    assert loaded.classes == ["bird", "dog", "cat"]
    a1 = loaded.annotations[images[1].resolve()]
    np.testing.assert_allclose(a1.boxes, [[60, 40, 64, 48]])
    assert a1.labels.tolist() == [1]
    a2 = loaded.annotations[images[2].resolve()]
    assert a2.masks is not None and a2.labels.tolist() == [2, 1]
    assert a2.masks[0].sum() > 0 and a2.masks[1].sum() == 9  # the box-only object fills its box
    text = "\n".join(loaded.errors)
    assert len(loaded.errors) == 6, text
    assert all(str(path) in e for e in loaded.errors)
    for needle in ("not all numbers", "negative box size", "unknown category_id 99", "no 'bbox'",
                   "unknown image_id 42", "needs an 'id'"):
        assert needle in text
    assert loaded.unmatched == [f"{path}: elsewhere.png"]


def test_coco_bad_json_and_wrong_shape(images: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    loaded = load_labels("coco", bad, images)
    assert loaded.annotations == {} and len(loaded.errors) == 1 and "bad.json" in loaded.errors[0]
    bad.write_text("[1, 2]")
    assert "not a COCO file" in load_labels("coco", bad, images).errors[0]
    with pytest.raises(ValueError, match="JSON file"):
        load_labels("coco", tmp_path, images)
    with pytest.raises(FileNotFoundError):
        load_labels("coco", tmp_path / "missing.json", images)


VOC = """<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height></size>
{objects}</annotation>"""
OBJ = "<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>" \
      "<ymax>{b[3]}</ymax></bndbox></object>"


def voc(name: str, w: int, h: int, objs: list[tuple[str, tuple]]) -> str:
    return VOC.format(name=name, w=w, h=h, objects="".join(OBJ.format(n=n, b=b) for n, b in objs))


def test_class_names_of_the_files_match_the_given_ones_ignoring_case(images: list[Path], tmp_path: Path) -> None:
    """VOC's "RBC" for classes ["rbc"] was a new class: its objects left out, its images labeled empty."""
    labels = tmp_path / "xml"
    labels.mkdir()
    (labels / "im1.xml").write_text(voc("im1.png", 64, 48, [("Cat", (1, 1, 10, 10)), ("DOG", (2, 2, 9, 9))]))
    (labels / "im2.xml").write_text(voc("im2.png", 301, 199, [("CAT", (1, 1, 10, 10)), ("fox", (2, 2, 9, 9))]))
    loaded = load_labels("voc", labels, images[1:3], CLASSES)
    assert loaded.errors == [] and loaded.classes == [*CLASSES, "fox"]
    assert loaded.renamed == {"Cat": "cat", "DOG": "dog", "CAT": "cat"}  # one class spelled two ways: still one
    assert loaded.annotations[images[1].resolve()].labels.tolist() == [0, 1]
    assert loaded.annotations[images[2].resolve()].labels.tolist() == [0, 3]
    # Given names that differ only in case match nothing ignoring case (new projects refuse such names).
    assert load_labels("voc", labels, images[1:3], ["cat", "Cat", "dog"]).classes == ["cat", "Cat", "dog", "CAT",
                                                                                    "fox"]


def test_voc_malformed_files_and_objects(images: list[Path], tmp_path: Path) -> None:
    labels = tmp_path / "xml"
    labels.mkdir()
    (labels / "im0.xml").write_text("<annotation><object>")  # truncated
    (labels / "im1.xml").write_text(voc("im1.png", 64, 48, [
        ("dog", (1, 1, 10, 10)), ("cat", ("nan", 1, 5, 5)), ("cat", (20, 5, 10, 9)),
        ("bird", (50, 40, 80, 60)),
    ]))
    (labels / "im2.xml").write_text(voc("im2.png", 999, 999, [("dog", (1, 1, 3, 3))]))  # wrong size
    (labels / "renamed.xml").write_text(voc("im3.png", 33, 97, [("dog", (1, 1, 3, 3))]))  # by <filename>
    (labels / "stranger.xml").write_text(voc("zzz.png", 10, 10, []))
    loaded = load_labels("voc", labels, images)
    a1 = loaded.annotations[images[1].resolve()]
    np.testing.assert_allclose(a1.boxes, [[0, 0, 10, 10], [49, 39, 64, 48]])  # 1-based -> edges, clipped
    assert [loaded.classes[i] for i in a1.labels] == ["dog", "bird"]
    assert images[3].resolve() in loaded.annotations
    text = "\n".join(loaded.errors)
    assert len(loaded.errors) == 4, text
    assert "im0.xml: not valid VOC XML" in text
    assert "im1.xml: object 1 (cat)" in text and "im1.xml: object 2 (cat): negative size" in text
    assert "im2.xml: <size> says 999x999" in text
    assert loaded.unmatched == [str(labels / "stranger.xml")]


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><object><name>&lol3;</name></object></annotation>"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><size><width>64</width><height>48</height></size><object><name>&xxe;</name>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"""


@pytest.mark.parametrize("parser", ["default", "stdlib"])
@pytest.mark.parametrize("doc", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_voc_refuses_dtd_and_entities(
    images: list[Path], tmp_path: Path, doc: str, parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if parser == "stdlib":  # the hand-made guard, whether or not defusedxml is installed
        monkeypatch.setattr(common, "_defused_fromstring", None)
    (tmp_path / "im1.xml").write_text(doc)
    loaded = load_labels("voc", tmp_path, images)
    assert loaded.annotations == {}
    assert len(loaded.errors) == 1 and "im1.xml" in loaded.errors[0] and "refused" in loaded.errors[0]
    with pytest.raises(ValueError, match="refused"):
        common.parse_xml(doc.encode())


def test_parse_xml_handles_plain_voc() -> None:
    root = common.parse_xml(b'<?xml version="1.0" encoding="utf-8"?><a x="1"><b>t&amp;u</b></a>')
    assert root.tag == "a" and root.get("x") == "1" and root.find("b").text == "t&u"
    with pytest.raises(ET.ParseError):
        common.parse_xml(b"<a><b></a>")


def test_yolo_class_names_and_malformed_lines(images: list[Path], tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("dog\ncat\n")
    (tmp_path / "im1.txt").write_text(
        "0 0.5 0.5 0.25 0.5\n"
        "\n# a comment\n"
        "1 0.95 0.5 0.2 0.2\n"  # partly outside: clipped
        "7 0.5 0.5 0.1 0.1\n"  # unknown class id
        "1 nan 0.5 0.1 0.1\n"
        "0 0.5 0.5 -0.1 0.1\n"
        "0 0.5 0.5\n"
        "x 0.5 0.5 0.1 0.1\n"
        "1 0.1 0.1 0.4 0.1 0.4 0.4 0.1 0.4\n"  # a segmentation outline
    )
    loaded = load_labels("yolo", tmp_path, images, classes=["bird", "cat"])
    assert loaded.classes == ["bird", "cat", "dog"]
    ann = loaded.annotations[images[1].resolve()]
    assert [loaded.classes[i] for i in ann.labels] == ["dog", "cat", "cat"]
    np.testing.assert_allclose(ann.boxes[:2], [[24, 12, 40, 36], [54.4, 19.2, 64, 28.8]], atol=1e-3)
    np.testing.assert_allclose(ann.boxes[2], [6.4, 4.8, 25.6, 19.2], atol=1e-3)
    assert ann.masks is not None and ann.masks[2].sum() > 0 and ann.masks[0].sum() == 16 * 24
    text = "\n".join(loaded.errors)
    assert len(loaded.errors) == 5, text
    for needle in ("line 5: unknown class id 7", "line 6: coordinates", "line 7: negative box size",
                   "line 8: expected", "line 9"):
        assert f"im1.txt: {needle}" in text


@pytest.mark.parametrize("text", [
    "names: ['a', 'b']\n", "nc: 2\nnames:\n  - a\n  - b\n", "names:\n  0: a\n  1: b\npath: x\n",
])
def test_yolo_data_yaml(images: list[Path], tmp_path: Path, text: str) -> None:
    assert _yaml_names(text) == ["a", "b"]
    names = _yaml_names_by_hand(text)
    assert (list(names.values()) if isinstance(names, dict) else names) == ["a", "b"]
    labels = tmp_path / "labels" / "train"
    labels.mkdir(parents=True)
    (tmp_path / "data.yaml").write_text(text)  # two folders up, the Ultralytics layout
    (labels / "im1.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    loaded = load_labels("yolo", tmp_path / "labels" / "train", images)
    assert loaded.classes == ["a", "b"] and loaded.errors == []
    assert loaded.annotations[images[1].resolve()].labels.tolist() == [1]


def test_yolo_without_names_uses_ids(images: list[Path], tmp_path: Path) -> None:
    (tmp_path / "im1.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    loaded = load_labels("yolo", tmp_path, images)
    assert loaded.classes == ["class_0", "class_1", "class_2"]
    assert loaded.annotations[images[1].resolve()].labels.tolist() == [2]


def test_masks_binary_semantic_and_errors(images: list[Path], tmp_path: Path) -> None:
    binary = np.zeros((48, 64), np.uint8)
    binary[10:20, 5:9] = 255
    Image.fromarray(binary).save(tmp_path / "im1.png")
    semantic = np.zeros((5, 7), np.uint8)
    semantic[0, :3], semantic[2:, 4:] = 1, 3
    Image.fromarray(semantic).save(tmp_path / "im0.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "im2.png")  # wrong size
    (tmp_path / "im3.png").write_bytes(b"not a png")
    loaded = load_labels("masks", tmp_path, images, classes=["fg", "b", "c"])
    one = loaded.annotations[images[1].resolve()]
    assert one.labels.tolist() == [0] and np.array_equal(one.masks[0], binary == 255)
    sem = loaded.annotations[images[0].resolve()]
    assert sem.labels.tolist() == [0, 2] and np.array_equal(sem.semantic_map(), semantic)
    text = "\n".join(loaded.errors)
    assert len(loaded.errors) == 2 and "im2.png: the label image is 5x5" in text and "im3.png" in text
    semantic[0, 0] = 9
    Image.fromarray(semantic).save(tmp_path / "im0.png")
    loaded = load_labels("masks", tmp_path / "im0.png", [images[0]], classes=["a", "b", "c"])
    assert "unknown class id 8" in loaded.errors[0] and "im0.png" in loaded.errors[0]


def test_instances_tiff_and_sidecar(images: list[Path], tmp_path: Path) -> None:
    lab = np.zeros((97, 33), np.uint16)
    lab[1:5, 1:5], lab[10:30, 2:20], lab[50:60, 20:30] = 1, 700, 3
    tifffile.imwrite(tmp_path / "im3.tif", lab)
    loaded = load_labels("instances", tmp_path, images, classes=["cell"])
    ann = loaded.annotations[images[3].resolve()]
    assert len(ann) == 3 and ann.labels.tolist() == [0, 0, 0] and loaded.classes == ["cell"]
    np.testing.assert_allclose(ann.boxes[1], [20, 50, 30, 60])
    (tmp_path / "instance_classes.json").write_text(
        json.dumps({"classes": ["x", "y"], "images": {"im3": {"700": 1}}})
    )
    loaded = load_labels("instances", tmp_path, images)
    assert loaded.classes == ["x", "y"]
    assert loaded.annotations[images[3].resolve()].labels.tolist() == [0, 0, 1]
    tifffile.imwrite(tmp_path / "im3.tif", lab.astype(np.float32) + 0.5)
    loaded = load_labels("instances", tmp_path, images)
    assert "whole numbers" in loaded.errors[0] and "im3.tif" in loaded.errors[0]


def test_folders_classes(tmp_path: Path) -> None:
    a = write_image(tmp_path / "root" / "cat" / "a.png", 8, 6)
    b = write_image(tmp_path / "root" / "dog" / "deeper" / "b.png", 4, 4)
    c = write_image(tmp_path / "root" / "c.png", 4, 4)
    loaded = load_labels("folders", tmp_path / "root", [a, b, c], classes=["dog"])
    assert loaded.classes == ["dog", "cat"]
    assert loaded.annotations[a.resolve()].category == 1 and loaded.annotations[b.resolve()].category == 0
    assert len(loaded.errors) == 1 and "c.png" in loaded.errors[0]
    by_parent = load_labels("folders", None, [a, b])
    assert by_parent.classes == ["cat", "deeper"]


def test_matching_by_stem_uses_subfolders(tmp_path: Path) -> None:
    x1 = write_image(tmp_path / "img" / "train" / "x.png", 10, 10)
    x2 = write_image(tmp_path / "img" / "val" / "x.png", 10, 10)
    labels = tmp_path / "labels"
    (labels / "val").mkdir(parents=True)
    (labels / "val" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (labels / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # cannot tell which x
    loaded = load_labels("yolo", labels, [x1, x2], ["a"])
    assert list(loaded.annotations) == [x2.resolve()]
    assert len(loaded.errors) == 1 and "matches 2 images" in loaded.errors[0]


def test_exif_rotation_swaps_size(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: shown as 30 wide, 40 high
    path = write_image(tmp_path / "phone.jpg", 40, 30, exif=exif.tobytes())
    assert common.image_size(path) == (30, 40) == load_image(path).shape[1::-1]
    (tmp_path / "phone.txt").write_text("0 0.5 0.5 1 1\n")
    ann = load_labels("yolo", tmp_path / "phone.txt", [path], ["a"]).annotations[path.resolve()]
    assert (ann.width, ann.height) == (30, 40)
    np.testing.assert_allclose(ann.boxes, [[0, 0, 30, 40]])


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown label format"):
        load_labels("pascal", "x", [])


# ---------------------------------------------------------------------------------- real data
def test_bccd_voc(data_dir: Path) -> None:
    jpgs = sorted((data_dir / "bccd" / "JPEGImages").glob("*.jpg"))[:20]
    loaded = load_labels("voc", data_dir / "bccd" / "Annotations", jpgs)
    assert loaded.errors == []
    assert len(loaded.annotations) == 20
    assert set(loaded.classes) == {"RBC", "WBC", "Platelets"}
    assert len(loaded.unmatched) == len(list((data_dir / "bccd" / "Annotations").glob("*.xml"))) - 20
    for jpg in jpgs:
        root = ET.parse(data_dir / "bccd" / "Annotations" / f"{jpg.stem}.xml").getroot()
        names = [o.findtext("name").strip() for o in root.iter("object")]
        ann = loaded.annotations[jpg.resolve()]
        assert (ann.width, ann.height) == (640, 480)
        assert [loaded.classes[i] for i in ann.labels] == names
        assert np.all(ann.boxes[:, 2:] > ann.boxes[:, :2])
        assert ann.boxes.min() >= 0 and ann.boxes[:, 2].max() <= 640 and ann.boxes[:, 3].max() <= 480


def test_deepforest_voc(data_dir: Path) -> None:
    pngs = sorted((data_dir / "deepforest").glob("*.png"))
    loaded = load_labels("voc", data_dir / "deepforest", pngs)
    assert loaded.errors == [] and len(loaded.annotations) == 4
    assert "Tree" in loaded.classes
    assert 800 < sum(len(a) for a in loaded.annotations.values()) < 1100


def test_nuclei_instances(data_dir: Path) -> None:
    img = data_dir / "nuclei" / "img2d.tif"
    loaded = load_labels("instances", data_dir / "nuclei" / "mask2d.tif", [img], classes=["nucleus"])
    assert loaded.errors == []
    ann = loaded.annotations[img.resolve()]
    assert (ann.width, ann.height) == (512, 512) == load_image(img).shape[1::-1]
    assert len(ann) == len(np.unique(tifffile.imread(data_dir / "nuclei" / "mask2d.tif"))) - 1
    assert 110 <= len(ann) <= 140
    assert ann.labels.tolist() == [0] * len(ann) and loaded.classes == ["nucleus"]
    assert not np.any(ann.masks.sum(0) > 1)  # label images cannot overlap


def test_membrane_binary_mask(data_dir: Path) -> None:
    img = data_dir / "membrane" / "image" / "0.png"
    label = data_dir / "membrane" / "label" / "0.png"
    loaded = load_labels("masks", label, [img], classes=["cell"])
    assert loaded.errors == [] and loaded.classes == ["cell"]
    ann = loaded.annotations[img.resolve()]
    assert ann.labels.tolist() == [0]
    assert np.array_equal(ann.masks[0], np.asarray(Image.open(label)) == 255)


def test_an_image_whose_every_object_is_refused_stays_unlabeled(images: list[Path], tmp_path: Path) -> None:
    labels = tmp_path / "yolo"
    labels.mkdir()
    (labels / f"{images[0].stem}.txt").write_text("0 0.5 nan 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")  # both refused
    (labels / f"{images[1].stem}.txt").write_text("")  # a file with no object: really "nothing there"
    (labels / f"{images[2].stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n9 0.5 0.5 0.2 0.2\n")  # one of two
    loaded = load_labels("yolo", labels, images[:3], CLASSES)
    assert images[0].resolve() not in loaded.annotations  # unlabeled: "no objects" would teach background
    assert any("every object was refused (2), so the image is left unlabeled" in e for e in loaded.errors)
    assert len(loaded.annotations[images[1].resolve()]) == 0
    assert len(loaded.annotations[images[2].resolve()]) == 1
