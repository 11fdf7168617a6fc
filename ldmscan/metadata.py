"""Metadata evidence read beside the pixels: EXIF (exifread) and generator text chunks (Pillow).

Hostile metadata never crashes a check: a parser failure becomes evidence of kind
"metadata-error" and the pixel verdict goes on.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

from .verdict import Evidence, Strength

log = logging.getLogger(__name__)

MAX_TAG_VALUE_CHARS = 4096  # a tag longer than this is cut: a 1 MB MakerNote helps no reviewer


@dataclass(frozen=True)
class Metadata:
    exif: dict[str, str] = field(default_factory=dict)
    camera_make: str | None = None
    camera_model: str | None = None
    software: str | None = None
    capture_time: str | None = None  # EXIF "YYYY:MM:DD HH:MM:SS", as written
    evidence: tuple[Evidence, ...] = ()


def read_exif(data: bytes) -> dict[str, str]:
    import exifread

    # exifread logs malformed tags at warning level through its own logger; they are expected.
    logging.getLogger("exifread").setLevel(logging.ERROR)
    tags = exifread.process_file(io.BytesIO(data), details=False)
    exif: dict[str, str] = {}
    for name, value in tags.items():
        if name in {"JPEGThumbnail", "TIFFThumbnail"}:
            continue
        text = str(value).replace("\x00", "").strip()
        exif[name] = text[:MAX_TAG_VALUE_CHARS]
    return exif


def extract(data: bytes) -> Metadata:
    evidence: list[Evidence] = []
    try:
        exif = read_exif(data)
    except Exception as exc:  # exifread raises many kinds on malformed input
        log.debug("exif parse failed: %s", exc)
        exif = {}
        evidence.append(Evidence("metadata-error", f"EXIF unreadable: {type(exc).__name__}: {exc}",
                                 Strength.ERROR))
    make = exif.get("Image Make") or None
    model = exif.get("Image Model") or None
    software = exif.get("Image Software") or None
    capture = exif.get("EXIF DateTimeOriginal") or exif.get("Image DateTime") or None
    if make or model:
        evidence.append(Evidence(
            "camera-exif", " ".join(p for p in (make, model) if p),
            Strength.WEAK,  # EXIF is trivially forged: shown, never trusted to lower a verdict
        ))
    if software:
        evidence.append(Evidence("software", software, Strength.INFO))
    return Metadata(exif=exif, camera_make=make, camera_model=model, software=software,
                    capture_time=capture, evidence=tuple(evidence))
