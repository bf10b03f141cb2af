"""Importing existing labels through the session, on real data, and exporting them again."""

from __future__ import annotations

import asyncio
import json
import shutil

import numpy as np
import pytest

from livetrain_widgets import Annotation, LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.engine.formats import load_labels
from livetrain_widgets.engine.session import SkippedFileWarning


def test_bccd_voc_import_trains_and_exports_the_same_boxes(data_dir, tmp_path) -> None:
    bccd = data_dir / "bccd"
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted((bccd / "JPEGImages").glob("*.jpg"))[:8]:
        shutil.copy(p, images / p.name)
    s = LiveSession(tmp_path / "p", "detection", ["RBC", "WBC", "Platelets"])
    ids = s.add_images(images, labels=bccd / "Annotations", format="voc")
    assert len(ids) == 8 and s.state.labeled == 8 and s.trainer.num_samples == 8
    assert {h.source for i in ids for h in s.store.annotation_history(i)} == {"imported"}
    out = s.export("voc", tmp_path / "out")
    back = load_labels("voc", out, sorted(images.iterdir()), s.classes)
    for i in ids:
        rec = s.store.image(i)
        a, b = s.annotation(i), back.annotations[next(p for p in back.annotations if p.name == rec.name)]
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_array_equal(a.labels, b.labels)
    asyncio.run(s.close())


async def test_nuclei_16bit_instances_import_train_and_predict_masks(data_dir, tmp_path) -> None:
    s = LiveSession(tmp_path / "p", "segmentation", ["nucleus"], config=SessionConfig(trainer=TrainerConfig(
        min_labeled=1, batch_size=2)))
    ids = s.add_images([data_dir / "nuclei" / "img2d.tif"], labels=data_dir / "nuclei" / "mask2d.tif",
                       format="instances")
    ann = s.annotation(ids[0])
    assert ann is not None and 100 <= len(ann) <= 150 and ann.masks.shape == (len(ann), 512, 512)
    im = s.image(ids[0])
    assert im.dtype == np.uint8 and im.shape == (512, 512, 3) and im.std() > 10  # stretched, not black
    out = s.export("coco", tmp_path / "coco")
    data = json.loads(out.read_text())
    assert len(data["annotations"]) == len(ann) and all("counts" in a["segmentation"] for a in data["annotations"])
    # Train on the one labeled image; its instance masks come back at the original size.
    await s.start()
    await s.wait_steps(25, timeout=300)
    pred = await s.predict(ids[0], threshold=0.0)
    assert pred.annotation.masks is not None and pred.annotation.masks.shape[1:] == (512, 512)
    assert len(pred.annotation) > 10  # touching nuclei come out as separate instances
    await s.close()


def test_class_names_of_another_case_are_matched_and_said(data_dir, tmp_path) -> None:
    """VOC's ``RBC`` into a project's ``rbc``: every image was stored as labeled with nothing there."""
    bccd = data_dir / "bccd"
    paths = sorted((bccd / "JPEGImages").glob("*.jpg"))[:3]
    truth = load_labels("voc", bccd / "Annotations", paths, ["RBC", "WBC", "Platelets"])
    s = LiveSession(tmp_path / "p", "detection", ["rbc", "wbc", "platelets"])
    with pytest.warns(UserWarning, match="matched ignoring case: 'RBC' as 'rbc', 'WBC' as 'wbc'"):
        ids = s.add_images(paths, labels=bccd / "Annotations", format="voc")
    for i, path in zip(ids, paths, strict=True):
        want = truth.annotations[path.resolve()]
        assert len(want) > 0
        np.testing.assert_array_equal(s.annotation(i).labels, want.labels)
        np.testing.assert_allclose(s.annotation(i).boxes, want.boxes)
    asyncio.run(s.close())


def test_labels_of_unknown_classes_are_refused_and_nothing_is_added(data_dir, tmp_path) -> None:
    bccd = data_dir / "bccd"
    paths = sorted((bccd / "JPEGImages").glob("*.jpg"))[2:5]
    s = LiveSession(tmp_path / "p", "detection", ["RBC"])
    with pytest.raises(ValueError, match=r"'WBC' in .*BloodImage_00002\.xml.*'Platelets' in .*_00003\.xml.*"
                       r"Nothing was added"):
        s.add_images(paths, labels=bccd / "Annotations", format="voc")
    # Refused before any image was added: none of them is stored (as unlabeled or as labeled-empty).
    assert s.store.image_count() == 0 and s.state.labeled == 0
    # Named on purpose, their objects are left out and the other classes' are imported.
    ids = s.add_images(paths, labels=bccd / "Annotations", format="voc", ignore_classes=["WBC", "platelets"])
    truth = load_labels("voc", bccd / "Annotations", paths, ["RBC"])
    for i, path in zip(ids, paths, strict=True):
        want = truth.annotations[path.resolve()]
        assert len(s.annotation(i)) == int((want.labels == 0).sum()) > 0
    asyncio.run(s.close())


def test_a_second_import_repairs_labels_an_earlier_import_stored_but_keeps_a_persons(data_dir, tmp_path) -> None:
    """Images that an import stored as labeled-empty (as one with mismatched class names did) get the
    file's labels when it is imported again; an image a person labeled since keeps theirs."""
    bccd = data_dir / "bccd"
    paths = sorted((bccd / "JPEGImages").glob("*.jpg"))[:3]
    s = LiveSession(tmp_path / "p", "detection", ["rbc", "wbc", "platelets"])
    ids = s.add_images(paths)
    for i in ids[:2]:  # what the import with the other class names did
        s.store.submit(i, Annotation.empty(640, 480), source="imported", user="u")
    asyncio.run(s.submit(ids[2], Annotation(640, 480, [[1, 1, 20, 20]], [0])))
    with pytest.warns(UserWarning) as caught:
        s.add_images(paths, labels=bccd / "Annotations", format="voc")
    said = " ".join(str(w.message) for w in caught)
    assert "2 images had labels from an earlier import" in said and "1 images already had other labels" in said
    for i in ids[:2]:
        assert len(s.annotation(i)) > 0
        assert [h.source for h in s.store.annotation_history(i)] == ["imported", "imported"]
        assert len(s.trainer._targets[i]) == len(s.annotation(i))  # trained on the repaired labels
    assert len(s.annotation(ids[2])) == 1 and s.store.annotation_history(ids[2])[-1].source == "manual"
    asyncio.run(s.close())


async def test_importing_again_never_buries_later_corrections(tmp_path) -> None:
    from PIL import Image

    from livetrain_widgets.study.dataset import SYNTHETIC_CLASSES, synthetic_detection

    images, truth = synthetic_detection(3, size=(200, 240))
    folder = tmp_path / "images"
    folder.mkdir()
    for n, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{n}.png")
    classes = list(SYNTHETIC_CLASSES)
    s = LiveSession(tmp_path / "p", "detection", classes)
    ids = s.add_images(folder)
    for i, ann in zip(ids, truth, strict=True):
        await s.submit(i, ann)
    coco = s.export("coco", tmp_path / "coco")
    await s.close()

    # A fresh project imports the file; the person then corrects image 0 and re-runs the import cell.
    s = LiveSession(tmp_path / "q", "detection", classes)
    ids = s.add_images(folder, labels=coco, format="coco")
    fixed = Annotation(truth[0].width, truth[0].height, truth[0].boxes[:1], truth[0].labels[:1])
    await s.submit(ids[0], fixed)
    with pytest.warns(SkippedFileWarning, match=r"1 images already had other labels .*0\.png"):
        s.add_images(folder, labels=coco, format="coco")
    assert len(s.annotation(ids[0])) == 1 and [h.source for h in s.store.annotation_history(ids[0])] == [
        "imported", "manual"]
    # Images whose labels equal the file's are left alone without a word.
    assert [h.source for h in s.store.annotation_history(ids[1])] == ["imported"]
    await s.close()
    s = LiveSession(tmp_path / "q")
    with pytest.warns(SkippedFileWarning, match="already had other labels"):
        s.add_images(folder, labels=coco, format="coco")
    assert len(s.annotation(ids[0])) == 1 and s.trainer.num_samples == 3
    await s.close()
