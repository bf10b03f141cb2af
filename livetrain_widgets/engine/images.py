"""Reading images of any kind a labeler may have into one form: (H, W, 3) uint8 RGB.

Microscopy and remote-sensing users bring 16-bit, greyscale, float and RGBA files; phones bring EXIF
rotation. Models and widgets should not each handle these, so they are normalised once, here. Every
failure is an :class:`ImageError` naming the file, so a folder import can skip one bad file and say
which.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")

#: Larger images are refused rather than decoded (a decompression bomb, or a mistake): 100 megapixels.
MAX_PIXELS = 100_000_000


class ImageError(ValueError):
    """An image that cannot be read; the message names the file."""


@dataclass(frozen=True)
class ImageInfo:
    path: str
    width: int
    height: int
    sha256: str
    nbytes: int


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files in ``folder`` (recursively), sorted by path so that order is reproducible."""
    root = Path(folder)
    if not root.is_dir():
        raise ImageError(f"{root}: not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def file_sha256(path: str | os.PathLike[str]) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def image_info(path: str | os.PathLike[str]) -> ImageInfo:
    """Size (after EXIF rotation) and content hash, reading the pixels once to prove they decode.

    A path that is not valid UTF-8 is an ImageError too: the store keeps paths as UTF-8 text, and such a
    name aborted a whole folder's import half-way (``UnicodeEncodeError``)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ImageError(
            f"{os.fsencode(path)!r}: the file name is not valid UTF-8 (as some old cameras and zip files "
            "write them); rename it to add it"
        ) from None
    arr = load_image(path)
    digest, nbytes = file_sha256(path)
    return ImageInfo(str(Path(path).resolve()), arr.shape[1], arr.shape[0], digest, nbytes)


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale any numeric image to uint8.

    uint8 passes through. Other integer and float images (16-bit microscopy, float maps) are
    stretched between their 0.1 and 99.9 percentiles, which keeps dim fluorescence visible where a
    plain ``/ 257`` would give a black image.
    """
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    a = arr.astype(np.float32)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(arr.shape, np.uint8)
    lo, hi = np.percentile(a[finite], [0.1, 99.9])
    if hi <= lo:
        hi = lo + 1.0
    a = np.where(finite, a, lo)
    return ((a - lo) * (255.0 / (hi - lo))).clip(0, 255).round().astype(np.uint8)


def to_rgb(arr: np.ndarray, name: str = "array") -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) of any dtype -> contiguous (H, W, 3) uint8."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channels-first (C, H, W), as tifffile and torch give
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"{name}: expected an image of shape (H, W), (H, W, 3) or (H, W, 4); got {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"{name}: image has no pixels ({arr.shape[1]}x{arr.shape[0]})")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise ImageError(f"{name}: {arr.shape[1]}x{arr.shape[0]} is larger than {MAX_PIXELS:,} pixels")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise ImageError(f"{name}: pixel type {arr.dtype} is not numeric")
    c = arr.shape[2]
    if c == 2:  # grey + alpha
        arr = arr[:, :, :1]
        c = 1
    alpha = None
    if c == 4:
        alpha = arr[:, :, 3]
        arr = arr[:, :, :3]
    out = to_uint8(arr)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    if alpha is not None:
        # Composite on white, as a viewer shows a transparent PNG; keeps labels where the user sees them.
        a = to_uint8(alpha).astype(np.float32)[:, :, None] / 255.0
        out = (out.astype(np.float32) * a + 255.0 * (1.0 - a)).round().astype(np.uint8)
    return np.ascontiguousarray(out)


def _too_large(path: Path, width: int, height: int) -> ImageError:
    return ImageError(
        f"{path}: {width}x{height} is larger than {MAX_PIXELS:,} pixels (refused before decoding: it could "
        "exhaust memory)"
    )


def _bomb_error(path: Path, exc: Exception) -> ImageError:
    # PIL raises DecompressionBombError in Image.open, from the header alone, before decoding: a size
    # refusal, not a damaged file.
    return ImageError(
        f"{path}: larger than {MAX_PIXELS:,} pixels (refused before decoding: it could exhaust memory; {exc})"
    )


#: Guards the warning filters while PIL reads a header (see :func:`open_image`).
_OPEN_LOCK = threading.Lock()


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """``Image.open`` (the header only; pixels are decoded later, lazily) without PIL's size warning.

    PIL warns above its MAX_IMAGE_PIXELS (~89 M) and raises above twice that, inside ``Image.open``.
    :data:`MAX_PIXELS` is the limit that counts, checked by the caller from the header before any pixel
    is decoded: turning PIL's warning into an error refused 89-100 M pixel images that MAX_PIXELS allows,
    and reported 89-179 M pixel bombs as "damaged or truncated". PIL's error above ~179 M pixels is still
    raised. The warning filters are process-global (``catch_warnings`` is not thread-safe before Python
    3.14) and images load from several threads at once (trainer, predictor, display), so the filter
    change and the header read hold a lock; decoding runs outside it.
    """
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def _open_pil(path: Path) -> np.ndarray:
    with open_image(path) as im:
        if im.width * im.height > MAX_PIXELS:
            raise _too_large(path, im.width, im.height)
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return np.asarray(im)
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV", "1"):
            im = im.convert("RGB")
        elif im.mode == "LA":
            im = im.convert("RGBA")
        elif im.mode not in ("L", "RGB", "RGBA"):
            im = im.convert("RGB")
        im.load()
        return np.asarray(im)


def load_image(source: Any) -> np.ndarray:
    """A path, PIL image or array -> (H, W, 3) uint8 RGB. Raises :class:`ImageError` naming the file."""
    if isinstance(source, np.ndarray):
        return to_rgb(source)
    if isinstance(source, Image.Image):
        im = ImageOps.exif_transpose(source)
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode not in ("L", "RGB", "RGBA", "I;16", "I", "F"):
            im = im.convert("RGB")
        return to_rgb(np.asarray(im), "PIL image")
    path = Path(source)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes)")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            try:
                arr = _read_tiff(path)
            except ImageError:
                raise
            except Exception:
                arr = _open_pil(path)
        else:
            arr = _open_pil(path)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise _bomb_error(path, exc) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path}: the image is damaged or truncated ({exc})") from exc
    return to_rgb(arr, str(path))


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        # The pixel count from the header's width and length, not from shape[:2]: a planar (C, H, W)
        # page made shape[:2] = C * H, so a 3 x 30,000 x 30,000 TIFF passed the check and was decoded
        # (2.7 GB) before to_rgb refused it.
        width, height = _tiff_size(page)
        if width * height > MAX_PIXELS:
            raise _too_large(path, width, height)
        arr = page.asarray()
    if arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4) and arr.shape[0] not in (1, 3, 4):
        arr = arr[0]  # a stack: the first plane
    return arr


def _tiff_size(page: Any) -> tuple[int, int]:
    """(width, height) of a TIFF page from its header (tifffile's imagewidth / imagelength tags)."""
    return int(page.imagewidth), int(page.imagelength)


def read_label_image(path: str | os.PathLike[str]) -> np.ndarray:
    """A mask or instance label image as a 2-D integer array, values kept exactly (no rescaling).

    Like :func:`load_image`, a file larger than :data:`MAX_PIXELS` is refused from its header, before
    decoding (a mask file is as untrusted as an image).
    """
    p = Path(path)
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(p) as tif:
                width, height = _tiff_size(tif.pages[0])
                if width * height > MAX_PIXELS:
                    raise _too_large(p, width, height)
                arr = tif.asarray()
        else:
            with open_image(p) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise _too_large(p, im.width, im.height)
                arr = np.asarray(im.convert("L") if im.mode in ("RGB", "RGBA") else im)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise _bomb_error(p, exc) from exc
    except Exception as exc:
        raise ImageError(f"{p}: not a readable mask image ({exc})") from exc
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ImageError(f"{p}: a mask image must be 2-D, got shape {arr.shape}")
    return arr


class ImageCache:
    """Decoded images by key (an id, a path), least recently used dropped first, bounded in bytes; thread-safe.

    ``get(key, load)`` calls ``load()`` on a miss. The arrays are shared: callers never change them in place
    (the models copy an image as they resize it)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        arr = load()
        with self._lock:
            if key not in self._items and arr.nbytes <= self.max_bytes:
                self._items[key] = arr
                self._bytes += arr.nbytes
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= old.nbytes
        return arr
