"""Bad and unusual image files: every one is either read correctly (uint8 RGB, the size and orientation a
viewer shows) or skipped with a ``SkippedFileWarning`` naming it, and the rest of the folder still loads.

Also: decompression bombs are refused from the header (fast, no memory), 1-pixel-thin images train and
predict with the embedded model, and an image that changes on disk after it was added gives a clear
error for that image while training goes on with the others and its labels stay stored.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from livetrain_widgets import Annotation, ImageError, LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets.engine._formats_common import image_size
from livetrain_widgets.engine.images import MAX_PIXELS
from livetrain_widgets.engine.session import SkippedFileWarning

from .. import _require
from ..tiny_model import TinyClassifier, two_class_images
from .report import record

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------ image makers
def blocks(h: int, w: int) -> np.ndarray:
    """Four flat quadrants of distinct colours: survives JPEG, and any rotation or mirror changes it."""
    im = np.zeros((h, w, 3), np.uint8)
    im[: h // 2, : w // 2] = (230, 30, 30)
    im[: h // 2, w // 2 :] = (30, 200, 40)
    im[h // 2 :, : w // 2] = (40, 40, 220)
    im[h // 2 :, w // 2 :] = (240, 240, 60)
    return im


def encoded(image: np.ndarray | Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG of zeros: ~110 KB on disk for 30,000 x 30,000, 2.7 GB once decoded to RGB."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    parts = [z.compress(row * 512) for _ in range(height // 512)]
    parts += [z.compress(row * (height % 512)), z.flush()]
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
    )
    return path


def tiff_bomb(path: Path, side: int, tile: int = 2048) -> Path:
    """A valid planar RGB TIFF (3, side, side) of zlib tiles of zeros, written from one pre-compressed
    tile: a few MB on disk, 3 * side**2 bytes once decoded. Its shape[:2] is (3, side)."""
    data = zlib.compress(bytes(tile * tile), 9)
    n = 3 * (side // tile) ** 2
    tifffile.imwrite(
        path, (data for _ in range(n)), shape=(3, side, side), dtype=np.uint8, photometric="rgb",
        planarconfig="separate", tile=(tile, tile), compression="zlib",
    )
    return path


def exif_rotated_jpeg(path: Path, raw: np.ndarray, orientation: int = 6) -> Path:
    im = Image.fromarray(raw)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, "JPEG", exif=exif, quality=95)
    return path


RAW = blocks(24, 40)  # (H, W) = (24, 40): the pixels as stored in the files below


def build_folder(folder: Path) -> dict[str, tuple[str, str]]:
    """The test folder; returns file name -> (kind of file, expected fate: 'load' or a message part)."""
    folder.mkdir(parents=True)
    exp: dict[str, tuple[str, str]] = {}

    def put(name: str, data: bytes, kind: str, fate: str) -> None:
        (folder / name).write_bytes(data)
        exp[name] = (kind, fate)

    put("good_a.png", encoded(RAW, "PNG"), "good PNG", "load")
    put("good_b.jpg", encoded(RAW, "JPEG", quality=95), "good JPEG", "load")
    put("good_c.bmp", encoded(RAW, "BMP"), "good BMP", "load")
    put("zero_bytes.png", b"", "zero-byte file", "empty (0 bytes)")
    jpg, png = encoded(RAW, "JPEG", quality=95), encoded(RAW, "PNG")
    put("truncated.jpg", jpg[: len(jpg) // 2], "truncated JPEG", "damaged or truncated")
    put("truncated.png", png[: len(png) // 2], "truncated PNG", "damaged or truncated")
    put("text.png", b"just some text, not an image\n" * 10, "text file named .png", "not a readable image")
    put("random.jpg", np.random.default_rng(1).bytes(2000), "random bytes named .jpg", "not a readable image")
    g16 = (np.arange(24 * 40, dtype=np.uint32).reshape(24, 40) * 60 + 1000).astype(np.uint16)
    put("grey16.png", encoded(g16, "PNG"), "16-bit greyscale PNG", "load")
    tifffile.imwrite(folder / "rgb16.tif", RAW.astype(np.uint16) * 257, photometric="rgb")
    exp["rgb16.tif"] = ("16-bit RGB TIFF", "load")
    tifffile.imwrite(folder / "grey16.tif", g16)
    exp["grey16.tif"] = ("16-bit greyscale TIFF", "load")
    put("cmyk.jpg", encoded(Image.fromarray(RAW).convert("CMYK"), "JPEG", quality=95),
        "CMYK JPEG", "load")
    buf = io.BytesIO()
    Image.fromarray(RAW).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(buf, "PNG")
    put("palette.png", buf.getvalue(), "palette PNG", "load")
    pal = Image.fromarray(RAW).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    buf = io.BytesIO()
    pal.save(buf, "PNG", transparency=int(np.asarray(pal)[0, 0]))  # the top-left colour is transparent
    put("palette_transparent.png", buf.getvalue(), "palette PNG with a transparent colour", "load")
    rgba = np.dstack([RAW, np.full(RAW.shape[:2], 255, np.uint8)])
    rgba[:, :20, 3] = 0  # the left half fully transparent
    put("rgba.png", encoded(rgba, "PNG"), "RGBA PNG (half transparent)", "load")
    exif_rotated_jpeg(folder / "exif6.jpg", RAW)
    exp["exif6.jpg"] = ("JPEG with EXIF orientation 6", "load")
    put("one_pixel.png", encoded(RAW[:1, :1], "PNG"), "1×1 PNG", "load")
    png_bomb(folder / "bomb_30000.png", 30_000, 30_000)
    exp["bomb_30000.png"] = ("decompression bomb: 30,000×30,000 PNG (110 KB)", "refused before decoding")
    png_bomb(folder / "bomb_12000.png", 12_000, 12_000)
    exp["bomb_12000.png"] = ("decompression bomb: 12,000×12,000 PNG", "refused before decoding")
    tiff_bomb(folder / "bomb_planar.tif", 10_240)
    exp["bomb_planar.tif"] = ("decompression bomb: planar 3×10,240×10,240 TIFF", "refused before decoding")
    return exp


def open_session(project: Path, **cfg: object) -> LiveSession:
    config = SessionConfig(trainer=TrainerConfig(batch_size=4, lr=1e-2, min_labeled=2), **cfg)
    return LiveSession(project, "classification", ["left", "right"], model=TinyClassifier(), config=config)


def _rotation_error(arr: np.ndarray, k: int) -> float:
    ref = np.rot90(RAW, k)
    return float("inf") if ref.shape != arr.shape else float(np.abs(arr.astype(int) - ref).mean())


# -------------------------------------------------------------------------------------------- tests
async def test_a_folder_of_bad_and_unusual_images(tmp_path: Path) -> None:
    exp = build_folder(tmp_path / "images")
    s = open_session(tmp_path / "p")
    t0 = time.perf_counter()
    with pytest.warns(SkippedFileWarning) as caught:
        ids = s.add_images(tmp_path / "images")
    add_seconds = time.perf_counter() - t0
    messages = [str(w.message) for w in caught if issubclass(w.category, SkippedFileWarning)]
    by_name = {rec.name: rec for rec in s.store.images()}

    loads = sorted(n for n, (_, fate) in exp.items() if fate == "load")
    skips = sorted(n for n, (_, fate) in exp.items() if fate != "load")
    assert sorted(by_name) == loads and len(ids) == len(loads)
    assert len(messages) == len(skips), messages
    for name in skips:
        named = [m for m in messages if f"{name}:" in m]
        assert len(named) == 1, (name, messages)
        assert exp[name][1] in named[0], named[0]
    for name in ("bomb_30000.png", "bomb_12000.png", "bomb_planar.tif"):
        assert f"larger than {MAX_PIXELS:,} pixels" in next(m for m in messages if name in m)
    assert add_seconds < 30, f"adding the folder took {add_seconds:.1f} s"

    # Every file that loaded is (H, W, 3) uint8, with the stored size the model and canvas see.
    images = {n: s.image(by_name[n].id) for n in loads}
    for name, arr in images.items():
        rec = by_name[name]
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3 and arr.flags.c_contiguous
        assert (rec.width, rec.height) == (arr.shape[1], arr.shape[0]) == image_size(tmp_path / "images" / name)
    notes: dict[str, str] = {}
    for name in ("good_a.png", "good_c.bmp", "palette.png"):
        # Lossless files (four colours in a 4-colour palette too) come back exactly.
        assert np.array_equal(images[name], RAW), name
        notes[name] = "read exactly"
    # 16-bit RGB is stretched between its 0.1 and 99.9 percentiles (documented in images.to_uint8): a
    # linear map a * x + b with a > 0 of the 8-bit original, to the full 0..255 range.
    x, y = RAW.astype(float).ravel(), images["rgb16.tif"].astype(float).ravel()
    a, b = np.polyfit(x, y, 1)
    assert a > 1 and np.abs(a * x + b - y).max() < 1.5 and y.min() == 0 and y.max() == 255
    notes["rgb16.tif"] = "stretched linearly to 0..255 (documented), colours kept"
    for name in ("good_b.jpg", "cmyk.jpg"):
        err = np.abs(images[name].astype(int) - RAW).mean()
        assert err < 6, name  # JPEG: close to the original, not inverted
        notes[name] = f"RGB within {err:.1f} grey levels of the original on average"
    for name in ("grey16.png", "grey16.tif"):
        g = images[name]
        assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()  # grey stays grey
        assert g.min() <= 2 and g.max() >= 253  # stretched, not divided into a dark image
        assert np.all(np.diff(g[..., 0].astype(int).ravel()) >= 0)  # the ramp keeps its order
        notes[name] = "grey, stretched to the full 0..255 range, order kept"
    assert (images["rgba.png"][:, :20] == 255).all() and (images["rgba.png"][:, 20:] == RAW[:, 20:]).all()
    notes["rgba.png"] = "transparent half shown white, opaque half exact"
    transparent = images["palette_transparent.png"]
    top_left = (slice(0, 12), slice(0, 20))
    assert (transparent[top_left] == 255).all() and (transparent[12:, 20:] == RAW[12:, 20:]).all()
    notes["palette_transparent.png"] = "transparent colour shown white, the others exact"
    # EXIF orientation 6: shown turned a quarter clockwise, so the stored 40 wide x 24 high is 24 x 40.
    rot = images["exif6.jpg"]
    assert rot.shape == (40, 24, 3) and (by_name["exif6.jpg"].width, by_name["exif6.jpg"].height) == (24, 40)
    errors = {k: _rotation_error(rot, k) for k in range(4)}
    assert errors[3] < 6 and errors[3] < errors[1] / 5, errors  # np.rot90(k=3) is a clockwise quarter turn
    notes["exif6.jpg"] = ("stored 40×24, read turned a quarter clockwise as 24×40; the store, the model's "
                          "array and the import's image_size all say 24×40")
    assert images["one_pixel.png"].shape == (1, 1, 3) and (images["one_pixel.png"][0, 0] == RAW[0, 0]).all()
    notes["one_pixel.png"] = "read as 1×1×3, exact"
    assert sorted(notes) == loads

    # Each of them can be predicted on, labeled and trained on.
    await s.start()
    for n, name in enumerate(loads):
        rec = by_name[name]
        pred = await s.predict(rec.id)
        assert (pred.annotation.width, pred.annotation.height) == (rec.width, rec.height)
        assert await s.submit(rec.id, Annotation(rec.width, rec.height, category=n % 2)) == 1
    await s.wait_steps(10, timeout=60)
    st = s.state
    assert st.step >= 10 and st.error is None and st.labeled == len(loads)
    await s.close()

    for name in skips:
        kind, fate = exp[name]
        record("bad input", f"images: {kind}", 1, f"skipped with a SkippedFileWarning naming the file ({fate})")
    for name in loads:
        record("bad input", f"images: {exp[name][0]}", 1, f"uint8 RGB, {notes[name]}; predicted, labeled, trained on")
    record("bad input", "images: the whole mixed folder in one add_images call", len(exp),
           f"{len(loads)} added, {len(skips)} skipped and named, in {add_seconds:.1f} s; "
           f"{st.step} training steps after, no error", 0)


BOMB_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    sys.path.insert(0, {repo!r})
    from livetrain_widgets.engine.images import ImageError, image_info, read_label_image

    def vm_bytes():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))

    # Cap the address space 1 GiB above what the imports use: a bomb that does get decoded fails here
    # with MemoryError instead of taking gigabytes from the machine (and the test reports it).
    try:
        limit = vm_bytes() + (1 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError, StopIteration):
        pass
    out = []
    for path in sys.argv[1:]:
        for fn in (image_info, read_label_image):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.perf_counter()
            try:
                fn(path)
                result = "decoded"
            except ImageError as exc:
                result = "refused: " + str(exc)
            except MemoryError as exc:
                result = "MemoryError: " + str(exc)
            seconds = time.perf_counter() - t0
            grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
            out.append(dict(path=path, fn=fn.__name__, result=result, seconds=seconds, peak_growth_kb=grew))
    print(json.dumps(out))
""")


@_require.not_applicable(not sys.platform.startswith("linux"), "peak memory is read from Linux's rusage")
def test_decompression_bombs_are_refused_before_decoding(tmp_path: Path) -> None:
    """Peak memory is measured in a fresh process (the test process's own peak hides a few hundred MB)."""
    bombs = {
        "30,000×30,000 1-bit PNG (2.7 GB as RGB)": png_bomb(tmp_path / "bomb.png", 30_000, 30_000),
        "12,000×12,000 1-bit PNG, under PIL's own hard limit": png_bomb(tmp_path / "mid.png", 12_000, 12_000),
        "planar 3×30,720×30,720 TIFF (2.8 GB decoded)": tiff_bomb(tmp_path / "bomb.tif", 30_720),
    }
    for path in bombs.values():
        assert path.stat().st_size < 4 << 20  # a bomb is small on disk
    script = tmp_path / "child.py"
    script.write_text(BOMB_CHILD.format(repo=str(REPO)))
    proc = subprocess.run(
        [sys.executable, str(script), *map(str, bombs.values())], capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 2 * len(bombs)
    for what, path in bombs.items():
        rows = [r for r in results if r["path"] == str(path)]
        for r in rows:
            assert r["result"].startswith("refused: ") and path.name in r["result"], r
            assert "refused before decoding" in r["result"], r
            assert r["peak_growth_kb"] < 64 * 1024, r  # MB, not GB
            assert r["seconds"] < 2.0, r
        worst_mb = max(r["peak_growth_kb"] for r in rows) / 1024
        slowest = max(r["seconds"] for r in rows)
        record("security", f"decompression bomb: {what}, as an image and as a mask", len(rows),
               f"refused from the header in ≤ {slowest * 1000:.0f} ms, peak memory +{worst_mb:.1f} MB")


async def test_one_pixel_thin_images_train_and_predict_with_the_embedded_model(tmp_path: Path) -> None:
    """What a user expects of a 1×1 or 1×3000 image: it is an image like any other (no crash); the
    embedded model trains on it and predicts at its own size. (``input_size`` 128 instead of 384 keeps
    this a few seconds on a 2-core machine; the resize and padding code the odd sizes go through is the
    same.)"""
    sizes = [(1, 1), (1, 3000), (3000, 1), (2, 2), (48, 64)]  # (H, W)
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    cfg = SessionConfig(trainer=TrainerConfig(batch_size=2, min_labeled=2))
    s = LiveSession(tmp_path / "p", "detection", ["thing"], config=cfg, model_options={"input_size": 128})
    assert s.trainer.model.family == "embedded"
    ids = s.add_images(arrays)
    assert len(ids) == len(sizes)
    for i, (h, w) in zip(ids, sizes, strict=True):
        assert s.image(i).shape == (h, w, 3)
        await s.submit(i, Annotation(w, h, [[0, 0, w, h]], [0]))
    await s.start()
    await s.wait_steps(6, timeout=120)
    for i, (h, w) in zip(ids, sizes, strict=True):
        pred = await s.predict(i, threshold=0.0)
        assert (pred.annotation.width, pred.annotation.height) == (w, h)
        b = pred.annotation.boxes
        assert np.all(np.isfinite(b)) and np.all(b[:, [0, 2]] <= w) and np.all(b[:, [1, 3]] <= h)
    st = s.state
    assert st.step >= 6 and st.error is None
    await s.close()
    record("bad input", "images: 1×1, 1×3000, 3000×1, 2×2 with the embedded detection model", 4,
           f"added, labeled, {st.step} training steps and a prediction each at the image's own size", 0)


async def test_image_changed_deleted_or_corrupted_after_it_was_added(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    arrays, labels = two_class_images(8)
    paths = []
    for k, arr in enumerate(arrays):
        Image.fromarray(arr).save(folder / f"im{k}.png")
        paths.append(folder / f"im{k}.png")
    s = open_session(tmp_path / "p", image_cache_mb=0)  # no cache: every read goes to the disk
    ids = s.add_images(paths)
    for i, c in zip(ids, labels, strict=True):
        await s.submit(i, Annotation(16, 16, category=c))
    before = {i: (len(s.store.annotation_history(i)), s.annotation(i).category) for i in ids}

    paths[0].unlink()  # deleted
    paths[1].write_bytes(paths[1].read_bytes()[:-200])  # corrupted (truncated in place)
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(paths[2])  # replaced by an image of another size
    Image.fromarray(255 - arrays[3]).save(paths[3])  # edited in place, same size: read as it is now
    expected = {ids[0]: "no such file", ids[1]: "damaged or truncated", ids[2]: "changed on disk"}
    for i, why in expected.items():
        name = paths[ids.index(i)].name
        with pytest.raises(ImageError, match=why) as err:
            s.image(i)
        assert name in str(err.value)
        with pytest.raises(ImageError, match=why):
            await s.predict(i)
    with pytest.raises(ImageError, match="now 20x16, it was 16x16"):
        s.image(ids[2])
    np.testing.assert_array_equal(s.image(ids[3]), 255 - arrays[3])

    await s.start()
    await s.wait_steps(20, timeout=60)
    st = s.state
    # The three unreadable images left training (one failed step each, at most); the others go on.
    assert st.step >= 20 and s.trainer.num_samples == 5
    assert sorted(s.trainer.sampler.keys) == sorted(ids[3:])
    # Nothing stored was lost or changed.
    assert sorted(s.store.labeled_ids()) == sorted(ids)
    assert {i: (len(s.store.annotation_history(i)), s.annotation(i).category) for i in ids} == before

    # The file restored, the image is back: readable, and in training again once labeled again.
    Image.fromarray(arrays[0]).save(paths[0])
    np.testing.assert_array_equal(s.image(ids[0]), arrays[0])
    assert await s.submit(ids[0], Annotation(16, 16, category=labels[0])) == 2
    assert s.trainer.num_samples == 6
    await s.close()
    record("faults", "image file deleted / truncated / replaced by another size after labeling", 3,
           "ImageError naming the file and the cause from image() and predict(); left out of training, "
           f"which went on ({st.step} steps on the other 5); every stored label kept", 0)
    record("faults", "image file edited in place, same size, after labeling", 1,
           "read as it is now (the labels still fit); training unaffected", 0)


async def test_images_as_arrays_with_bad_values(tmp_path: Path) -> None:
    """Arrays handed in directly: NaN/inf floats, bool, 2-channel, channels-first, empty, wrong rank."""
    s = open_session(tmp_path / "p")
    nan = np.full((8, 8), np.nan, np.float32)
    nan[2:4, 2:4] = 1.0
    inf = np.linspace(0, 1, 64, dtype=np.float64).reshape(8, 8)
    inf[0, 0] = np.inf
    good = {
        "float with NaN": nan, "float with inf": inf, "bool": np.eye(8, dtype=bool),
        "grey + alpha (H, W, 2)": np.full((8, 8, 2), 100, np.uint8), "channels first (3, H, W)": np.zeros((3, 8, 9)),
    }
    bad = {
        "no pixels (0, 5)": np.zeros((0, 5)), "rank 4": np.zeros((2, 2, 2, 2)),
        "5 channels (6, 6, 5)": np.zeros((6, 6, 5)), "strings": np.full((4, 4), "x"), "rank 1": np.zeros(7),
    }
    ids = s.add_images(list(good.values()))
    assert len(set(ids)) == len(good)
    for i in ids:
        arr = s.image(i)
        assert arr.dtype == np.uint8 and arr.shape[2] == 3
    assert s.image(ids[-1]).shape == (8, 9, 3)
    for arr in bad.values():
        with pytest.warns(SkippedFileWarning, match="array"):
            assert s.add_images([arr]) == []
    assert len(s.image_ids) == len(good)
    await s.close()
    record("bad input", "images handed in as arrays: NaN/inf floats, bool, 2-channel, channels-first", len(good),
           "added as (H, W, 3) uint8")
    record("bad input", "images handed in as arrays: empty, rank 1 or 4, 5 channels, strings", len(bad),
           "skipped with a SkippedFileWarning saying what is wrong")


def test_loading_from_many_threads_leaves_the_warning_filters_as_they_were(tmp_path: Path) -> None:
    """Images load from the trainer, the predictor and the display at once; the warning filter that
    lets PIL read a big header is process-global, so an unguarded change could leave it switched for
    everyone (or drop filters set meanwhile)."""
    import threading
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from livetrain_widgets.engine.images import load_image

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    before = list(warnings.filters)
    start = threading.Barrier(8)

    def load(_: int) -> None:
        start.wait()
        for _ in range(200):
            load_image(path)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(load, range(8)))
    assert warnings.filters == before
    record("bad input", "8 threads loading images at once (1,600 loads)", 1600,
           "the process-wide warning filters are left exactly as they were", "–")
