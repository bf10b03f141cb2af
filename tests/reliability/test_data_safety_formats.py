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

from livetrain_widgets import LiveSession
from livetrain_widgets.engine.formats import ImportTooLarge, check_class_names, load_labels

from .conftest import REPO
from .report import record

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
    from livetrain_widgets.engine.formats import ImportTooLarge, check_class_names, load_labels

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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory is read from Linux's rusage")
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
