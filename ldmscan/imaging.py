"""Bytes -> RGB pixels at native resolution, with limits, sniffing and hashing.

Nothing here resizes: the autoencoder fingerprint lives in the highest frequencies and any
resampling before cropping erases it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image

from .errors import ImageError

log = logging.getLogger(__name__)

# A header this long is enough for every Pillow format test (they look at <= 16 bytes, TIFF/ICO
# a few more); reading only this much lets a folder walk skip videos and archives cheaply.
SNIFF_BYTES = 64
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_BYTES = 200 * 1024 * 1024

# Formats that Pillow can open but that are never photographs a moderation team receives, and
# whose format tests are loose enough to match arbitrary text or binary files.
_IGNORED_SNIFF_FORMATS = {"MPEG", "SPIDER", "XVTHUMB", "FITS", "PCD", "IM", "WMF", "EPS"}

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".gif",
        ".bmp",
        ".tif",
        ".tiff",
        ".mpo",
        ".avif",
        ".heic",
        ".heif",
        ".jp2",
        ".j2k",
        ".tga",
        ".ppm",
        ".pgm",
        ".pbm",
        ".ico",
        ".jxl",
    }
)

# Image files this detector cannot score: in a folder they still get a line saying why, rather
# than being passed over in silence.
UNSUPPORTED_EXTENSIONS = frozenset(
    {".svg", ".svgz", ".psd", ".xcf", ".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf", ".orf"}
)


_warning_sink = threading.local()
_original_showwarning = warnings.showwarning


def _show_decoder_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Pillow's warnings ("Corrupt EXIF data", "Truncated File Read") about the file being read
    on this thread go to that file's evidence, and to logging; all others print as before."""
    sink = getattr(_warning_sink, "notes", None)
    if sink is not None and f"{os.sep}PIL{os.sep}" in filename:
        text = str(message).strip()
        if text not in sink:
            sink.append(text)
        log.debug("decoder warning: %s", text)
        return
    _original_showwarning(message, category, filename, lineno, file, line)


@contextlib.contextmanager
def decoder_warnings() -> Iterator[list[str]]:
    """Collect, per thread, the warnings Pillow raises while this block decodes one file.
    (warnings.catch_warnings swaps process-wide state, which is not safe on decode threads.)"""
    if warnings.showwarning is not _show_decoder_warning:
        warnings.showwarning = _show_decoder_warning
        # every occurrence, not once per source line: each file deserves its own notes
        warnings.filterwarnings("always", category=UserWarning, module=r"PIL\.")
    previous = getattr(_warning_sink, "notes", None)
    notes: list[str] = []
    _warning_sink.notes = notes
    try:
        yield notes
    finally:
        _warning_sink.notes = previous


def file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


@dataclass(frozen=True)
class DecodedImage:
    """An image as the detector sees it: HxWx3 uint8 RGB at its stored resolution."""

    pixels: np.ndarray
    sha256: str
    size_bytes: int
    format: str
    mode: str  # the mode the file was stored in, before conversion to RGB
    frames: int
    # The loaded Pillow image, kept only when asked (`decode(keep_image=True)`): metadata readers
    # then see PNG text chunks stored after the pixels without decoding the pixels a second time
    image: Image.Image | None = field(default=None, repr=False, compare=False)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sniff_format(header: bytes) -> str | None:
    """Name of the image format these first bytes announce, or None if they announce no image."""
    if not header:
        return None
    Image.init()
    for name, (_factory, accept) in Image.OPEN.items():
        if accept is None or name in _IGNORED_SNIFF_FORMATS:
            continue
        try:
            if accept(header):
                return name
        except Exception:  # a plugin's test must never break a folder walk
            continue
    return None


def looks_like_image(path: Path) -> bool:
    """Content first (a JPEG named .dat is still a JPEG), then the extension (a truncated .jpg is
    still something the user expects to see reported)."""
    try:
        with path.open("rb") as fh:
            header = fh.read(SNIFF_BYTES)
    except OSError:
        return path.suffix.lower() in IMAGE_EXTENSIONS
    return sniff_format(header) is not None or path.suffix.lower() in IMAGE_EXTENSIONS


def _os_reason(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "cannot read file: symbolic link loop"
    if exc.errno == errno.ENOENT and path.is_symlink():
        return "cannot read file: broken symbolic link (its target does not exist)"
    return f"cannot read file: {exc.strerror or exc}"


def read_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """A regular file's bytes, or ImageError. Never blocks: a FIFO or device is refused by its
    type, and the file is opened non-blocking in case one is swapped in after the check."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ImageError(_os_reason(path, exc), ImageError.UNREADABLE) from exc
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"not a regular file: {file_kind(info.st_mode)}", ImageError.NOT_A_FILE)
    if info.st_size > max_bytes:
        raise ImageError(
            f"file is {info.st_size} bytes, over the {max_bytes}-byte limit", ImageError.TOO_LARGE
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ImageError(
                    "not a regular file (changed while opening)", ImageError.NOT_A_FILE
                )
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ImageError(_os_reason(path, exc), ImageError.UNREADABLE) from exc
    if len(data) > max_bytes:  # it grew after the stat
        raise ImageError(f"file is over the {max_bytes}-byte limit", ImageError.TOO_LARGE)
    suffix = path.suffix.lower()
    if suffix in UNSUPPORTED_EXTENSIONS and sniff_format(data[:SNIFF_BYTES]) is None:
        raise ImageError(
            f"unsupported image format ({suffix}): only raster images are scored",
            ImageError.UNSUPPORTED,
        )
    return data


def decode(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    sha256: str | None = None,
    *,
    keep_image: bool = False,
) -> DecodedImage:
    """Decode image bytes to RGB, or raise ImageError with a reason a person can act on."""
    digest = sha256 or sha256_bytes(data)
    if not data:
        raise ImageError("empty file (0 bytes)")
    if sniff_format(data[:SNIFF_BYTES]) is None:
        raise ImageError("not an image (content matches no supported image format)")
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        # Pillow's own bomb check must not refuse what --max-pixels allows (raised only, never
        # lowered: other decoders in this process keep at least Pillow's protection)
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            # Pillow warns before its own bomb check; our pixel limit below is the one that counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"too many pixels: {width}x{height} = {width * height} > limit {max_pixels}",
                    ImageError.TOO_MANY_PIXELS,
                )
            if width == 0 or height == 0:
                raise ImageError(f"image has no pixels ({width}x{height})")
            stored_mode = image.mode
            fmt = image.format or "unknown"
            frames = int(getattr(image, "n_frames", 1) or 1)
            image.seek(0)  # animations: the first frame, always
            image.load()
            pixels = to_rgb_array(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow refuses at twice its limit, before the size is known to us: quote our limit
        found = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{int(found.group(1))} " if found else "more "
        raise ImageError(
            f"too many pixels: {count}> limit {max_pixels} (decompression bomb)",
            ImageError.TOO_MANY_PIXELS,
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated data surfaces as OSError("image file is truncated") because we never set
        # LOAD_TRUNCATED_IMAGES: half an image must not get a verdict.
        raise ImageError(f"broken image: {exc}") from exc
    except Exception as exc:  # hostile files can make any plugin raise anything
        raise ImageError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    return DecodedImage(
        pixels=pixels,
        sha256=digest,
        size_bytes=len(data),
        format=fmt,
        mode=stored_mode,
        frames=frames,
        image=image if keep_image else None,
    )


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> HxWx3 uint8, the same way every time.

    Alpha is dropped, not composited: the colour channels are what the decoder produced, and a
    background colour would invent pixels. High bit-depth is scaled, not clipped.
    """
    mode = image.mode
    if mode == "RGB":
        array = np.asarray(image, dtype=np.uint8)
    elif mode in {"RGBA", "RGBX", "RGBa"} or mode in {"P", "PA"}:
        array = np.asarray(image.convert("RGBA"), dtype=np.uint8)[..., :3]
    elif mode in {"L", "LA", "La", "1"}:
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        array = np.repeat(gray[..., None], 3, axis=2)
    elif mode.startswith("I;16") or mode == "I":
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
        array = np.repeat(gray[..., None], 3, axis=2)
    elif mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
        gray = np.clip(np.round(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8)
        array = np.repeat(gray[..., None], 3, axis=2)
    else:  # CMYK, YCbCr, LAB, HSV: Pillow's own conversion is deterministic
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(array)
