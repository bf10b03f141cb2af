"""Path traversal: names taken from label files cannot make an import read outside the folders the user
gave, and names stored for images cannot make an export write (or delete) outside ``out``.

Import: COCO ``file_name``, VOC ``<filename>`` / ``<path>``, a YOLO ``data.yaml``'s paths and an
instance sidecar's keys hold ``../`` climbs, absolute paths and Windows-style paths to sentinel files
beside the data. Every file the import opens or lists is recorded with an audit hook (``sys.addaudithook``
sees each ``open()``, whoever calls it: PIL, tifffile, pathlib) and must lie inside the data folder.
Label names only ever *match* the images the user gave, by their base name.

Export: image names come from ``add_images`` (a file's base name; arrays get a content hash), but the
store takes any name (``add_image(name=...)``; a project made by another tool or copied from someone
else), so records with names like ``../../../outside/secret.png`` are stored directly, labeled, and
exported in every format of every task, plus ``export_model``. Every file under the test's folder
outside the export folders must be byte for byte what it was. A symlink planted in ``out`` pointing at a
sentinel is replaced, never written through.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from livetrain_widgets import Annotation, LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.engine._output_folder import MARKER, OutputFolderError
from livetrain_widgets.engine.images import file_sha256

from .report import record
from .test_bad_annotations import StubModel

W, H = 16, 12
CLASSES = ["cat", "dog"]

# ------------------------------------------------------------------------------------ read audit
_seen: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _seen is not None and event in ("open", "os.listdir", "os.scandir") and args:
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)):
            _seen.append(os.path.abspath(os.fsdecode(path)))


if not getattr(sys, "_livetrain_reliability_audit", False):  # audit hooks cannot be removed: add one once
    sys.addaudithook(_audit)
    sys._livetrain_reliability_audit = True  # type: ignore[attr-defined]


@contextmanager
def recorded_reads() -> Iterator[list[str]]:
    """Every path opened or listed (by this process, any thread) inside the block."""
    global _seen
    _seen = []
    try:
        yield _seen
    finally:
        _seen = None


def _inside(path: str | Path, folder: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


# --------------------------------------------------------------------------------------- setup
def png(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format="PNG")  # by name, PIL sees no extension in "..png"
    return path


def sentinels(root: Path) -> dict[Path, str]:
    """Files outside the data and export folders that nothing may read or write: name -> sha256."""
    out = root / "outside"
    files = [png(out / "secret.png", 101), png(out / "other.png", 102), png(out / "third.png", 103),
             png(out / "fourth.png", 104)]
    (out / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    files.append(out / "passwd")
    return {p: file_sha256(p)[0] for p in files}


def tree(root: Path, skip: Sequence[Path] = ()) -> dict[str, str]:
    """Every file under ``root`` (not under ``skip``) -> sha256 of its bytes (symlinks by their target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if any(Path(dirpath).is_relative_to(s) for s in skip):
            dirnames[:] = []
            continue
        for name in filenames:
            p = Path(dirpath) / name
            out[str(p)] = "link -> " + os.readlink(p) if p.is_symlink() else file_sha256(p)[0]
    return out


def open_session(project: Path, task: str) -> LiveSession:
    cfg = SessionConfig(trainer=TrainerConfig(batch_size=2, min_labeled=1))
    return LiveSession(project, task, CLASSES, model=StubModel(task, CLASSES), config=cfg)


def check_import(tmp_path: Path, s: LiveSession, seen: list[str], secrets: dict[Path, str]) -> int:
    """No read outside data/, no sentinel added or changed; returns how many paths were opened or listed."""
    data = tmp_path / "data"
    ours = [p for p in seen if _inside(p, tmp_path)]
    assert ours, "the audit hook saw nothing: the check would prove nothing"
    outside = [p for p in ours if not (_inside(p, data) or _inside(p, s.project))]
    assert not outside, outside
    assert not [p for p in seen if p in ("/etc/passwd", "/etc/shadow")]
    stored = {r.sha256 for r in s.store.images()} | {r.path for r in s.store.images()}
    for p, sha in secrets.items():
        assert sha not in stored and str(p) not in stored
        assert file_sha256(p)[0] == sha
    return len(ours)


def box_json(image_id: int) -> list[dict]:
    return [{"image_id": image_id, "category_id": 1, "bbox": [1, 1, 4, 3]}]


# ------------------------------------------------------------------------------------- imports
def test_coco_file_names_cannot_reach_outside(tmp_path: Path) -> None:
    secrets = sentinels(tmp_path)
    images = [png(tmp_path / "data" / "images" / "a.png", 1), png(tmp_path / "data" / "images" / "secret.png", 2)]
    hostile = [
        "../../outside/secret.png", str(tmp_path / "outside" / "other.png"), "/etc/passwd",
        "..\\..\\outside\\third.png", "images/../../outside/fourth.png", "file:///etc/passwd",
        str(tmp_path / "outside"), "../" * 30 + "etc/passwd",
    ]
    entries = [{"id": k + 1, "file_name": name, "width": W, "height": H} for k, name in enumerate(hostile)]
    entries.append({"id": 99, "file_name": "a.png", "width": W, "height": H})
    doc = {
        "images": entries,
        "annotations": [a for e in entries for a in box_json(e["id"])],
        "categories": [{"id": 1, "name": "cat"}],
    }
    coco = tmp_path / "data" / "coco.json"
    coco.write_text(json.dumps(doc))
    s = open_session(tmp_path / "data" / "p", "detection")
    with recorded_reads() as seen:
        ids = s.add_images(images, labels=coco, format="coco")
    n = check_import(tmp_path, s, seen, secrets)
    # "../../outside/secret.png" matched the user's own secret.png by its base name; never the sentinel.
    assert sorted(s.store.labeled_ids()) == sorted(ids)
    assert s.store.image(ids[1]).path == str(images[1].resolve())
    asyncio.run(s.close())
    record("security", "COCO file_name with ../, absolute, Windows-style, file:// paths to files outside", len(hostile),
           f"only the given images matched, by base name; {n} reads, none outside the data folder; "
           "sentinels not read, added or changed")


def test_voc_filename_and_path_cannot_reach_outside(tmp_path: Path) -> None:
    secrets = sentinels(tmp_path)
    images = [png(tmp_path / "data" / "images" / "a.png", 1), png(tmp_path / "data" / "images" / "b.png", 2)]
    voc = tmp_path / "data" / "voc"
    voc.mkdir()
    obj = "<object><name>cat</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>6</xmax><ymax>5</ymax></bndbox></object>"
    cases = {
        "a.xml": ("../../outside/secret.png", str(tmp_path / "outside" / "secret.png")),
        "zzz.xml": (str(tmp_path / "outside" / "other.png"), "/etc/passwd"),
        "passwd.xml": ("/etc/passwd", "../../../../../../etc/passwd"),
        "third.xml": ("..\\..\\outside\\third.png", "C:\\Windows\\win.ini"),
    }
    for name, (filename, path) in cases.items():
        (voc / name).write_text(f"<annotation><filename>{filename}</filename><path>{path}</path>{obj}</annotation>")
    s = open_session(tmp_path / "data" / "p", "detection")
    with recorded_reads() as seen:
        ids = s.add_images(images, labels=voc, format="voc")
    n = check_import(tmp_path, s, seen, secrets)
    assert s.store.labeled_ids() == [ids[0]]  # a.xml -> a.png by its own name; the rest match no image
    asyncio.run(s.close())
    record("security", "VOC <filename> / <path> with ../, absolute and Windows-style paths", 2 * len(cases),
           f"label files matched by their own name to given images only; {n} reads, none outside the data "
           "folder; sentinels untouched")


def test_yolo_and_mask_folders_cannot_reach_outside(tmp_path: Path) -> None:
    secrets = sentinels(tmp_path)
    images = [png(tmp_path / "data" / "images" / "a.png", 1), png(tmp_path / "data" / "images" / "b.png", 2)]
    yolo = tmp_path / "data" / "labels" / "train"
    yolo.mkdir(parents=True)
    (yolo / "data.yaml").write_text(
        f"path: ../../../outside\ntrain: {tmp_path / 'outside'}\nval: /etc\ntest: ../../../outside/secret.png\n"
        "names: [cat, dog]\n"
    )
    (yolo / "a.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    (yolo / "secret.txt").write_text("0 0.5 0.5 0.25 0.5\n")  # no image of that name among those given
    s = open_session(tmp_path / "data" / "p", "detection")
    with recorded_reads() as seen:
        ids = s.add_images(images, labels=yolo, format="yolo")
    n_yolo = check_import(tmp_path, s, seen, secrets)
    assert s.store.labeled_ids() == [ids[0]] and s.annotation(ids[0]).labels.tolist() == [1]
    asyncio.run(s.close())

    inst = tmp_path / "data" / "instances"
    inst.mkdir()
    label = np.zeros((H, W), np.uint16)
    label[2:6, 3:8] = 1
    Image.fromarray(label).save(inst / "a.png")
    (inst / "instance_classes.json").write_text(json.dumps({
        "classes": CLASSES,
        "images": {"a": {"1": 1}, "../../outside/secret": {"1": 0}, str(tmp_path / "outside" / "other"): {"1": 0}},
    }))
    s = open_session(tmp_path / "data" / "p2", "segmentation")
    with recorded_reads() as seen:
        ids = s.add_images(images, labels=inst, format="instances")
    n_inst = check_import(tmp_path, s, seen, secrets)
    assert s.store.labeled_ids() == [ids[0]] and s.annotation(ids[0]).labels.tolist() == [1]
    asyncio.run(s.close())
    record("security", "YOLO data.yaml paths (../, absolute) and an instance sidecar keyed by ../ and absolute "
           "names", 6, f"only names / classes read from them; {n_yolo + n_inst} reads, none outside the data "
           "folder; sentinels untouched")


# -------------------------------------------------------------------------------------- exports
def hostile_names(tmp_path: Path) -> list[str]:
    """Stored names that, used as paths under ``out/<class>/``, would land on the sentinels."""
    return [
        "../../../outside/secret.png",  # out/<cls>/../../../outside = tmp_path/outside
        str(tmp_path / "outside" / "other.png"),  # absolute
        "..\\..\\..\\outside\\third.png",  # Windows separators
        "sub/dir/../../../../../outside/fourth.png",
    ]


def labeled_project(tmp_path: Path, task: str) -> tuple[LiveSession, list[int]]:
    """A project whose images have every odd name we know of, each labeled."""
    data = tmp_path / "data" / task
    odd_files = [png(data / "a b.png", 11), png(data / "ü.png", 12), png(data / "x\\..\\..\\evil.png", 13),
                 png(data / "..png", 14)]
    s = open_session(tmp_path / "projects" / task, task)
    ids = s.add_images(odd_files)
    ids += s.add_images([np.random.default_rng(15).integers(0, 255, (H, W, 3), dtype=np.uint8)])
    for name in hostile_names(tmp_path):
        # Stored as a project from elsewhere could hold it: the file itself is an ordinary image of ours.
        path = png(data / f"h{len(ids)}.png", len(ids))
        sha, nbytes = file_sha256(path)
        ids.append(s.store.add_image(str(path.resolve()), width=W, height=H, sha256=sha, nbytes=nbytes, name=name))
    names = [s.store.image(i).name for i in ids]
    assert names[:4] == ["a b.png", "ü.png", "x\\..\\..\\evil.png", "..png"]  # base names, as given
    assert re.fullmatch(r"[0-9a-f]{20}\.png", names[4])  # an array: its content hash
    assert names[5:] == hostile_names(tmp_path)
    for k, i in enumerate(ids):
        c = k % 2  # both classes, so class-folder export also has "other" folders to clean
        if task == "classification":
            ann = Annotation(W, H, category=c)
        elif task == "detection":
            ann = Annotation(W, H, [[1, 1, 6, 5]], [c])
        else:
            m = np.zeros((1, H, W), bool)
            m[0, 1:5, 1:6] = True
            ann = Annotation.from_masks(m, [c])
        s.store.submit(i, ann)
    return s, ids


EXPORTS = {
    "detection": ["coco", "voc", "yolo"],
    "segmentation": ["coco", "voc", "yolo", "masks", "instances"],
    "classification": ["coco", "folders"],
}


@pytest.mark.parametrize("task", list(EXPORTS))
def test_export_never_writes_outside_out(tmp_path: Path, task: str) -> None:
    secrets = sentinels(tmp_path)
    s, ids = labeled_project(tmp_path, task)
    exports = tmp_path / "exports"
    # A symlink planted in an export folder, pointing at a sentinel, is never written through: in a folder
    # livetrain did not make the export is refused (it replaced the link before: issue 19 asks that an
    # export never replaces a file it did not write). "secret" is the stem of the stored name
    # "../../../outside/secret.png", class dog.
    planted = {"voc": "secret.xml", "yolo": "secret.txt", "masks": "secret.png", "instances": "secret.png",
               "folders": "dog/secret.png"}
    for fmt in EXPORTS[task]:
        if fmt in planted:
            link = exports / fmt / planted[fmt]
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(tmp_path / "outside" / "secret.png")
            with pytest.raises(OutputFolderError, match="livetrain did not write"):
                s.export(fmt, exports / fmt)
            shutil.rmtree(exports / fmt)
    before = tree(tmp_path, skip=[exports, tmp_path / "projects"])
    written = 0
    for fmt in EXPORTS[task]:
        out = exports / fmt
        s.export(fmt, out)
        files = [p for p in out.rglob("*") if p.is_file() or p.is_symlink()]
        assert files and not [p for p in files if p.is_symlink()]
        assert all(_inside(p, out) for p in files)
        written += len(files)
        # A file the export wrote, replaced by a link since: the next export refuses rather than follow it.
        ours = next(p for p in files if p.name != MARKER)
        ours.unlink()
        ours.symlink_to(tmp_path / "outside" / "secret.png")
        with pytest.raises(OutputFolderError, match="replaced by a link"):
            s.export(fmt, out)
    model_dir = s.export_model(exports / "model")
    assert sorted(p.name for p in model_dir.iterdir()) == ["livetrain_model.json", "model.safetensors"]
    assert tree(tmp_path, skip=[exports, tmp_path / "projects"]) == before
    for p, sha in secrets.items():
        assert file_sha256(p)[0] == sha
    if task == "classification":
        # One image per class folder and stored name, each under its base name.
        got = sorted(str(p.relative_to(exports / "folders")) for p in (exports / "folders").rglob("*.png"))
        assert got == sorted(f"{CLASSES[k % 2]}/{n.replace(chr(92), '/').rsplit('/', 1)[-1]}"
                             for k, n in enumerate(s.store.image(i).name for i in ids))
    asyncio.run(s.close())
    record("security", f"export of a {task} project ({', '.join(EXPORTS[task])}, model) with stored image names "
           "'../../../outside/…', absolute, Windows-style, 'a/../../…', odd file names, arrays; a symlink to a "
           "sentinel planted in out", len(ids),
           f"{written} files written, all inside out; links replaced, not followed; every other file "
           "unchanged, sentinels intact")


def test_folders_export_refuses_names_that_are_not_file_names(tmp_path: Path) -> None:
    secrets = sentinels(tmp_path)
    bad = ["..", ".", "", "../"]
    for k, name in enumerate(bad):
        s = open_session(tmp_path / "projects" / f"c{k}", "classification")
        path = png(tmp_path / "data" / f"i{k}.png", k)
        sha, nbytes = file_sha256(path)
        i = s.store.add_image(str(path.resolve()), width=W, height=H, sha256=sha, nbytes=nbytes, name=name)
        s.store.submit(i, Annotation(W, H, category=0))
        with pytest.raises(ValueError, match=f"image name {re.escape(repr(name))} cannot be a file name"):
            s.export("folders", tmp_path / "exports" / f"f{k}")
        asyncio.run(s.close())
    assert not list((tmp_path / "exports").rglob("*.png"))
    for p, sha in secrets.items():
        assert file_sha256(p)[0] == sha
    record("security", "class-folder export of images stored as '..', '.', '', '../'", len(bad),
           "refused with a ValueError naming the image; nothing written")


def test_folders_export_keeps_two_images_of_one_class_with_one_name_apart(tmp_path: Path) -> None:
    """Before: the second image replaced the first, and the export silently held one labeled image less.
    Then it was refused; now each goes under its own last folder (which the import reads as the class's)."""
    paths = [png(tmp_path / "data" / "x" / "im.png", 1), png(tmp_path / "data" / "y" / "im.png", 2)]
    s = open_session(tmp_path / "projects" / "c", "classification")
    ids = s.add_images(paths)
    for i in ids:
        s.store.submit(i, Annotation(W, H, category=1))
    s.export("folders", tmp_path / "exports")
    got = {str(p.relative_to(tmp_path / "exports")): file_sha256(p)[0] for p in (tmp_path / "exports").rglob("*.png")}
    assert got == {"dog/x/im.png": file_sha256(paths[0])[0], "dog/y/im.png": file_sha256(paths[1])[0]}
    s.store.submit(ids[1], Annotation(W, H, category=0))  # in two class folders they do not collide
    s.export("folders", tmp_path / "exports")
    got = {str(p.relative_to(tmp_path / "exports")): file_sha256(p)[0] for p in (tmp_path / "exports").rglob("*.png")}
    assert got == {"dog/im.png": file_sha256(paths[0])[0], "cat/im.png": file_sha256(paths[1])[0]}
    asyncio.run(s.close())
    record("bad input", "class-folder export of two labeled images of one class with one file name", 2,
           "refused before writing, naming both (was: one silently overwrote the other)", 0)


def test_array_and_odd_names_round_trip_safely(tmp_path: Path) -> None:
    """Images handed in as arrays are stored under a content hash in the project's images/ folder."""
    s = open_session(tmp_path / "projects" / "d", "detection")
    arrays = [np.full((H, W, 3), v, np.uint8) for v in (0, 128, 255)]
    ids = s.add_images(arrays)
    for i in ids:
        rec = s.store.image(i)
        assert re.fullmatch(r"[0-9a-f]{20}\.png", rec.name)
        assert _inside(rec.path, s.project / "images")
    asyncio.run(s.close())
    record("security", "image names of arrays handed in", len(ids), "a content hash, inside the project's images/")
