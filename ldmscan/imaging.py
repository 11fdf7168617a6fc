"""Bytes -> RGB pixels at native resolution, with limits, sniffing and hashing.

Nothing here resizes: the autoencoder fingerprint lives in the highest frequencies and any
resampling before cropping erases it.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ImageError

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


def read_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}", ImageError.UNREADABLE) from exc
    if size > max_bytes:
        raise ImageError(
            f"file is {size} bytes, over the {max_bytes}-byte limit", ImageError.TOO_LARGE
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}", ImageError.UNREADABLE) from exc


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
        raise ImageError(
            f"too many pixels (decompression bomb): {exc}", ImageError.TOO_MANY_PIXELS
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
