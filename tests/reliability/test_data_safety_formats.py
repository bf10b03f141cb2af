"""Import and export never destroy, corrupt or lose what a user made (issue 19): class names no format
can carry are refused when the project is made, and a small label file cannot make an import take
gigabytes of memory."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from livetrain_widgets import Annotation, LiveSession
from livetrain_widgets.engine.formats import ImportTooLarge, OutputFolderError, check_class_names, load_labels
from livetrain_widgets.engine.images import file_sha256

from .. import _require
from .conftest import REPO
from .report import record
from .test_bad_annotations import open_session

BAD_CLASS_NAMES = ["two\nlines", "a/b", "back\\slash", "nul\0", "x" * 100_000, "tab\there", "..", " padded", "",
                   "\udcff (an undecodable file name's byte)"]


def test_class_names_no_format_can_carry_are_refused_at_creation(tmp_path: Path) -> None:
    """They were accepted and failed only at export (YOLO read a newline's halves back as two classes)."""
    for name in BAD_CLASS_NAMES:
        with pytest.raises(ValueError, match="class name") as caught:
            check_class_names(["cell", name])
        assert len(str(caught.value)) < 400  # names the class, without echoing 100,000 characters
    with pytest.raises(ValueError, match=r"class name 'two\\nlines' holds the character '\\n'"):
        LiveSession(tmp_path / "p", "detection", ["cell", "two\nlines"])
    # Folder rules are the "folders" export's, of classification projects only: other tasks' formats carry
    # "N/A" or "</b>" (a detection project refused them, though no format of its own has folders of classes).
    with pytest.raises(ValueError, match="cannot be a folder name"):
        LiveSession(tmp_path / "c", "classification", ["cell", "a/b"])
    assert check_class_names(["N/A", "..", "<b>x</b>"], "detection") == ["N/A", "..", "<b>x</b>"]
    # Nothing was made that stands in the way: the project is created with good names afterwards.
    s = LiveSession(tmp_path / "p", "detection", ["cell", "other cell", "été"])
    assert s.classes == ["cell", "other cell", "été"]
    asyncio.run(s.close())


def test_class_names_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    """One folder on macOS and Windows ("folders" export), and no way to match imported names."""
    with pytest.raises(ValueError, match="unique, also ignoring case: 'rbc' and 'RBC'"):
        LiveSession(tmp_path / "p", "detection", ["rbc", "RBC"])


def coco_mask_bomb(folder: Path, width: int, height: int, n: int = 200) -> tuple[Path, Path]:
    """An image and a COCO file of ``n`` full-image RLE masks on it: kilobytes on disk."""
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / "big.png"
    Image.new("RGB", (width, height), (90, 60, 120)).save(image)
    rle = mask_utils.encode(np.asfortranarray(np.ones((height, width), np.uint8)))
    seg = {"size": [height, width], "counts": rle["counts"].decode("ascii")}
    doc = {
        "images": [{"id": 1, "file_name": image.name, "width": width, "height": height}],
        "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, width, height],
                         "area": width * height, "iscrowd": 0, "segmentation": seg} for k in range(n)],
        "categories": [{"id": 1, "name": "cell"}],
    }
    labels = folder / "bomb.json"
    labels.write_text(json.dumps(doc))
    return image, labels


MASK_BOMB_CHILD = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {repo!r})
    from livetrain_widgets.engine.formats import ImportTooLarge, load_labels

    def vm_bytes():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))

    # 1.5 GiB above what the imports use: decoded anyway, the bomb fails here with MemoryError instead
    # of taking gigabytes from the machine.
    try:
        limit = vm_bytes() + (3 << 29)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError, StopIteration):
        pass
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        out = load_labels("coco", sys.argv[2], [sys.argv[1]], ["cell"])
        result = "decoded " + str(sum(len(a) for a in out.annotations.values()))
    except ImportTooLarge as exc:
        result = "refused: " + str(exc)
    except MemoryError as exc:
        result = "MemoryError: " + str(exc)
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps(dict(result=result, peak_growth_kb=grew)))
""")


@_require.not_applicable(not sys.platform.startswith("linux"), "peak memory is read from Linux's /proc and rusage")
def test_a_small_coco_file_of_huge_masks_is_refused_before_decoding(tmp_path: Path) -> None:
    """200 full-image RLE masks in a file of kilobytes: 2.4 G mask pixels on a 4000x3000 image."""
    image, labels = coco_mask_bomb(tmp_path / "bomb", 4000, 3000)
    assert labels.stat().st_size < 64 << 10
    script = tmp_path / "child.py"
    script.write_text(MASK_BOMB_CHILD.format(repo=str(REPO)))
    proc = subprocess.run([sys.executable, str(script), str(image), str(labels)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["result"].startswith("refused: ") and "bomb.json" in got["result"], got
    assert "nothing was imported" in got["result"], got
    assert got["peak_growth_kb"] < 64 * 1024, got  # MB, not GB
    record("security", "COCO mask bomb: 200 full-image RLE masks of 4000×3000 in a 30 KB file", 1,
           f"refused before decoding, peak memory +{got['peak_growth_kb'] / 1024:.1f} MB")


def test_the_session_refuses_a_mask_bomb_and_adds_nothing(tmp_path: Path) -> None:
    # Just over the budget (300 M pixels), so that a regression costs this process about 1 GB, not 7.
    image, labels = coco_mask_bomb(tmp_path / "bomb", 1000, 1000, n=300)
    s = LiveSession(tmp_path / "p", "segmentation", ["cell"])
    with pytest.raises(ImportTooLarge, match=r"more than the .* one import may decode"):
        s.add_images([image], labels=labels, format="coco")
    assert s.store.image_count() == 0
    asyncio.run(s.close())


@pytest.mark.parametrize("fmt", ["yolo", "instances"])
def test_other_mask_formats_are_bounded_too(tmp_path: Path, fmt: str) -> None:
    """YOLO outlines and 16-bit instance label images also become one full-image mask per object (a
    label image can hold 65,535 in a few hundred KB). Just over the budget, like the session's test."""
    w, h, n = 1000, 1000, 300
    image = tmp_path / "big.png"
    Image.new("RGB", (w, h)).save(image)
    labels = tmp_path / "labels"
    labels.mkdir()
    if fmt == "yolo":
        (labels / "big.txt").write_text("0 0 0 1 0 1 1 0 1\n" * n)
    else:
        ids = (np.arange(w * h) % (n + 1)).astype(np.uint16).reshape(h, w)
        Image.fromarray(ids).save(labels / "big.png")
    with pytest.raises(ImportTooLarge, match="big"):
        load_labels(fmt, labels, [image], ["cell"])
    if fmt == "yolo":  # the same outlines on a small image are well within the budget
        Image.new("RGB", (100, 80)).save(image)
        assert len(load_labels(fmt, labels, [image], ["cell"]).annotations[image.resolve()]) == n


# ------------------------------------------------------------------------------------------ exports
def tricky_images(root: Path) -> list[Path]:
    """Names that collided in an export: one name in two folders, and the names a format keeps for itself."""
    names = ["a/1.png", "b/1.png", "c/classes.png", "c/obj.png", "c/annotations.png", "c/instance_classes.png"]
    paths = []
    for k, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(k)
        Image.fromarray(rng.integers(0, 255, (24 + k, 32, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def labels_for(task: str, k: int, w: int, h: int) -> Annotation:
    if task == "classification":
        return Annotation(w, h, category=k % 2)
    masks = np.zeros((2, h, w), bool)
    masks[0, 2:9, 3 + k : 12 + k] = True
    masks[1, 12:20, 15:30] = True
    if task == "segmentation":  # one object per class (in class order), so that semantic masks round-trip too
        return Annotation.from_masks(masks, [0, 1])
    return Annotation(w, h, [[3 + k, 2, 12.5 + k, 9.25], [15, 12, 30, 20]], [k % 2, 1])


ROUND_TRIPS = {"detection": ["coco", "voc", "yolo"], "segmentation": ["coco", "masks", "instances"],
               "classification": ["coco", "folders"]}


@pytest.mark.parametrize("task", list(ROUND_TRIPS))
def test_every_format_round_trips_images_of_one_name_and_reserved_names(tmp_path: Path, task: str) -> None:
    """Export, import into a new project, same labels: a COCO export of a/1.png and b/1.png could not be
    imported again, and YOLO's labels of classes.jpg replaced classes.txt."""
    paths = tricky_images(tmp_path / "data")
    # names with a slash and markup where the task's formats carry them (every one but "folders")
    classes = ["cell", "other"] if task == "classification" else ["N/A", "</b>x"]
    s = open_session(tmp_path / "p", task, classes)
    ids = s.add_images(paths)
    want = {}
    for k, i in enumerate(ids):
        rec = s.store.image(i)
        want[paths[k].resolve()] = labels_for(task, k, rec.width, rec.height)
        asyncio.run(s.submit(i, want[paths[k].resolve()]))
    for fmt in ROUND_TRIPS[task]:
        out = s.export(fmt, tmp_path / "out" / fmt)
        t = open_session(tmp_path / f"q-{fmt}", task, classes)
        if fmt == "folders":  # the exported copies are the images, their folders the classes
            new = t.add_images(out, labels=out, format="folders")
            by_sha = {s.store.image(i).sha256: s.annotation(i).category for i in ids}
            assert len(new) == len(ids)
            assert {t.store.image(i).sha256: t.annotation(i).category for i in new} == by_sha
        else:
            new = t.add_images(paths, labels=out, format=fmt)
            for path, i in zip(paths, new, strict=True):
                a, b = want[path.resolve()], t.annotation(i)
                assert b is not None, (fmt, path)
                assert a.category == b.category and a.labels.tolist() == b.labels.tolist(), (fmt, path)
                np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
                if task == "segmentation":
                    np.testing.assert_array_equal(a.masks, b.masks)
        asyncio.run(t.close())
    asyncio.run(s.close())
    record("bad input", f"{task} export and import into a new project ({', '.join(ROUND_TRIPS[task])}) of images "
           "a/1.png, b/1.png, classes.png, obj.png, annotations.png, instance_classes.png", len(paths),
           "every label read back as exported", 0)


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): file_sha256(p)[0] for p in sorted(root.rglob("*")) if p.is_file()}


def small_mask() -> Annotation:
    m = np.zeros((1, 12, 16), bool)
    m[0, 2:6, 3:9] = True
    return Annotation.from_masks(m, [0])


def test_an_export_never_replaces_or_deletes_a_file_it_did_not_write(tmp_path: Path) -> None:
    """export("masks", images_folder) replaced a source PNG with its mask; export("folders", root) unlinked
    a source image of the same name in another class folder."""
    data = tmp_path / "data"
    paths = [data / "cat" / "im.png", data / "dog" / "im.png", data / "dog" / "other.png"]
    for k, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 16, 3), 40 * k, np.uint8)).save(path)
    before = tree(data)
    seg = open_session(tmp_path / "seg", "segmentation")
    for i in seg.add_images(paths):
        asyncio.run(seg.submit(i, small_mask()))
    cls = open_session(tmp_path / "cls", "classification")
    ids = cls.add_images(paths)
    asyncio.run(cls.submit(ids[0], Annotation(16, 12, category=1)))  # cat/im.png labeled dog
    for s, fmt, folder in [(seg, "masks", data / "dog"), (seg, "instances", data / "cat"), (cls, "folders", data),
                           (cls, "coco", data / "cat"), (seg, "voc", data), (seg, "yolo", data)]:
        with pytest.raises(OutputFolderError, match="livetrain did not write"):
            s.export(fmt, folder)
        assert tree(data) == before, fmt
    # In a folder an export made, a file the user put there since is not replaced either.
    out = seg.export("yolo", tmp_path / "out")
    (out / "notes.txt").write_text("mine")
    extra = data / "notes.png"
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(extra)
    asyncio.run(seg.submit(seg.add_images([extra])[0], small_mask()))
    exported = tree(out)
    with pytest.raises(OutputFolderError, match=r"out/notes\.txt is not .* to replace"):
        seg.export("yolo", out)
    assert tree(out) == exported and (out / "notes.txt").read_text() == "mine"  # the refused export wrote nothing
    # Exported again into its own folder: fine, and a class change moves the image's link.
    cls_out = cls.export("folders", tmp_path / "classes")
    asyncio.run(cls.submit(ids[0], Annotation(16, 12, category=0)))
    cls.export("folders", cls_out)
    assert sorted(p.relative_to(cls_out).as_posix() for p in cls_out.rglob("*.png")) == ["cat/im.png"]
    assert tree(data) == {**before, "notes.png": file_sha256(extra)[0]}
    for s in (seg, cls):
        asyncio.run(s.close())
    record("faults", "export into the images' own folders (masks, instances, folders, coco, voc, yolo) and over a "
           "user's file in an export folder", 7, "refused with OutputFolderError naming the path; every source file "
           "unchanged", 0)
