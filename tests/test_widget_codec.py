"""What crosses the wire: mask run lengths (shared vectors with the JS codec), objects, display images."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from livetrain_widgets import Annotation
from livetrain_widgets.engine.images import ImageError
from livetrain_widgets.widgets._codec import (
    WireError,
    annotation_to_objects,
    decode_runs,
    display_image,
    encode_runs,
    mask_to_wire,
    objects_to_annotation,
    visible,
    wire_to_mask,
)

REPO = Path(__file__).resolve().parents[1]
VECTORS = json.loads((REPO / "js" / "test" / "fixtures" / "rle.json").read_text())["cases"]


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_shared_rle_vectors(case) -> None:
    mask = np.array([[ch == "1" for ch in row] for row in case["rows"]], bool)
    rle = base64.b64decode(case["rle_base64"])
    assert encode_runs(mask) == rle
    assert np.frombuffer(rle, "<u4").tolist() == case["runs"]
    np.testing.assert_array_equal(decode_runs(rle, case["w"], case["h"]), mask)


@settings(max_examples=200, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 20), st.integers(1, 20))))
def test_runs_round_trip(mask) -> None:
    rle = encode_runs(mask)
    runs = np.frombuffer(rle, "<u4")
    assert runs.sum() == mask.size and (runs[1:] > 0).all()  # only the first run may be empty
    np.testing.assert_array_equal(decode_runs(rle, mask.shape[1], mask.shape[0]), mask)


def test_decode_runs_rejects_bad_payloads() -> None:
    with pytest.raises(WireError, match="multiple of 4"):
        decode_runs(b"\x01\x00\x00", 1, 1)
    with pytest.raises(WireError, match="cover 5 pixels"):
        decode_runs(np.array([5], "<u4").tobytes(), 2, 2)
    with pytest.raises(WireError, match="must be bytes"):
        decode_runs([1, 2, 3], 2, 3)
    with pytest.raises(WireError, match="cover"):  # a huge run must not allocate gigabytes
        decode_runs(np.array([4_000_000_000], "<u4").tobytes(), 2, 2)


def test_mask_wire_round_trip_and_crop_checks() -> None:
    full = np.zeros((30, 40), bool)
    full[5:9, 10:25] = True
    full[12, 3] = True
    wire = mask_to_wire(full)
    assert (wire["x"], wire["y"], wire["w"], wire["h"]) == (3, 5, 22, 8)
    np.testing.assert_array_equal(wire_to_mask(wire, 40, 30), full)
    assert mask_to_wire(np.zeros((4, 4), bool)) is None
    for bad in ({**wire, "x": 30}, {**wire, "w": 0}, {**wire, "y": -1}, {**wire, "x": 1.5}, {**wire, "h": True},
                {**wire, "x": "3"}, "not a mask", None):
        with pytest.raises(WireError):
            wire_to_mask(bad, 40, 30)


def test_detection_objects_round_trip_and_visibility() -> None:
    pred = Annotation(100, 80, boxes=[[1, 2, 30, 40], [50, 10, 90, 70]], labels=[0, 2], scores=[0.9, 0.2])
    objs = annotation_to_objects(pred, source="prelabel", prefix="p")
    assert [o["id"] for o in objs] == ["p0", "p1"] and objs[1]["score"] == pytest.approx(0.2)
    user = {"id": "u1", "label": 1, "box": [5, 5, 20, 20], "source": "user"}
    shown = visible([*objs, user], threshold=0.3)
    assert [o["id"] for o in shown] == ["p0", "u1"]
    ann = objects_to_annotation(shown, 100, 80, "detection", 3)
    np.testing.assert_allclose(ann.boxes, [[1, 2, 30, 40], [5, 5, 20, 20]])
    assert ann.labels.tolist() == [0, 1] and ann.scores is None


def test_segmentation_objects_round_trip_instance_and_semantic() -> None:
    masks = np.zeros((3, 20, 24), bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 10:15, 3:9] = True
    masks[2, 8:12, 15:22] = True
    pred = Annotation.from_masks(masks, [0, 1, 0], scores=[0.9, 0.8, 0.5])
    objs = annotation_to_objects(pred, source="prelabel", prefix="p")
    back = objects_to_annotation(objs, 24, 20, "segmentation", 2)
    np.testing.assert_array_equal(back.masks, masks)
    assert back.labels.tolist() == [0, 1, 0]
    sem = annotation_to_objects(pred, source="prelabel", prefix="p", semantic=True)
    assert [o["label"] for o in sem] == [0, 1]
    assert sem[0]["score"] == pytest.approx(0.9)  # the best of the merged instances
    merged = objects_to_annotation(sem, 24, 20, "segmentation", 2)
    np.testing.assert_array_equal(merged.masks[0], masks[0] | masks[2])
    # An instance erased to nothing disappears instead of failing the submission.
    empty = {**objs[1], "mask": {"x": 0, "y": 0, "w": 2, "h": 1, "rle": encode_runs(np.zeros((1, 2), bool))}}
    assert len(objects_to_annotation([objs[0], empty], 24, 20, "segmentation", 2)) == 1


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ("boxes", "must be a list"),
        ([["not", "an", "object"]], "is not an object"),
        ([{"label": "0", "box": [0, 0, 5, 5]}], "whole number"),
        ([{"label": 0.5, "box": [0, 0, 5, 5]}], "whole number"),
        ([{"label": True, "box": [0, 0, 5, 5]}], "whole number"),
        ([{"label": 7, "box": [0, 0, 5, 5]}], "class index 7"),
        ([{"label": -1, "box": [0, 0, 5, 5]}], "class index -1"),
        ([{"label": 0, "box": [0, 0, 5]}], r"\[x0, y0, x1, y1\]"),
        ([{"label": 0, "box": [0, float("nan"), 5, 5]}], "finite"),
        ([{"label": 0, "box": [0, 0, "5", 5]}], "finite"),
        ([{"label": 0, "box": [5, 5, 5, 9]}], "zero or negative size"),
        ([{"label": 0, "box": [0, 0, 1, 1]}] * 10_001, "more than"),
    ],
)
def test_hostile_detection_objects_are_refused_with_a_message(objects, message) -> None:
    with pytest.raises(WireError, match=message):
        objects_to_annotation(objects, 50, 40, "detection", 3)


def test_segmentation_objects_need_valid_masks() -> None:
    with pytest.raises(WireError, match="mask must be an object"):
        objects_to_annotation([{"label": 0, "box": [0, 0, 4, 4]}], 10, 10, "segmentation", 2)
    rle = encode_runs(np.ones((3, 3), bool))
    with pytest.raises(WireError, match="does not lie inside"):
        objects_to_annotation([{"label": 0, "mask": {"x": 8, "y": 8, "w": 3, "h": 3, "rle": rle}}], 10, 10,
                              "segmentation", 2)


def test_boxes_partly_outside_are_clipped() -> None:
    ann = objects_to_annotation([{"label": 0, "box": [-5, -5, 20, 200]}], 50, 40, "detection", 1)
    np.testing.assert_allclose(ann.boxes, [[0, 0, 20, 40]])


def test_display_image_passes_jpeg_through_and_converts_16_bit(data_dir, tmp_path) -> None:
    jpg = data_dir / "bccd" / "JPEGImages" / "BloodImage_00000.jpg"
    assert display_image(jpg) == jpg.read_bytes()  # no re-encoding for a plain JPEG
    tif = data_dir / "nuclei" / "img2d.tif"
    data = display_image(tif)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (512, 512) and im.mode == "RGB"
        assert np.asarray(im).std() > 5  # contrast survives the 16 → 8 bit conversion


def test_display_image_downscales_large_images_and_names_broken_files(tmp_path) -> None:
    big = np.zeros((300, 500, 3), np.uint8)
    big[:, 250:] = 200
    data = display_image(big, max_side=100)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (100, 60)
    exif_rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: the display must show what the model sees
    Image.fromarray(big).save(exif_rotated, exif=exif)
    with Image.open(io.BytesIO(display_image(exif_rotated))) as im:
        assert im.size == (300, 500)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageError, match=r"broken\.jpg"):
        display_image(broken)


def test_a_very_large_file_is_reencoded_for_display(data_dir) -> None:
    forest = data_dir / "deepforest" / "2019_YELL_2_528000_4978000_image_crop2.png"
    assert forest.stat().st_size > 10 << 20
    data = display_image(forest)
    assert len(data) < forest.stat().st_size / 4
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == (2299, 2472)  # full resolution, smaller bytes
