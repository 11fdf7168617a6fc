"""Metadata evidence read beside the pixels, each with a well-kept library:

- EXIF with exifread (kept whole for the database; camera make/model shown, never trusted);
- generator parameters with sd-parsers (AUTOMATIC1111 `parameters` in PNG text or JPEG
  UserComment, A1111 stealth alpha, ComfyUI `prompt`/`workflow`, InvokeAI, NovelAI, Fooocus);
- XMP's IPTC DigitalSourceType, parsed with defusedxml;
- C2PA manifests with c2pa-python (claim generator, actions, digital source type, validation).

Hostile metadata never crashes a check: a parser failure becomes evidence of kind
"metadata-error" and the pixel verdict goes on.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .verdict import Evidence, Strength

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

MAX_TAG_VALUE_CHARS = 4096  # a tag longer than this is cut: a 1 MB MakerNote helps no reviewer
MAX_XMP_BYTES = 1 << 20  # larger XMP packets are recorded as an error, not parsed
DETAIL_CHARS = 300

# IPTC NewsCodes digital source types that mean "made by a generative model"
AI_SOURCE_TYPES = {
    "trainedAlgorithmicMedia": "made by a generative AI model",
    "compositeWithTrainedAlgorithmicMedia": "composite including generative AI content",
    "algorithmicMedia": "made purely by an algorithm",
    "compositeSynthetic": "composite including synthetic content",
}
_SOURCE_TYPE_RE = re.compile(r"digitalsourcetype/(\w+)", re.IGNORECASE)


@dataclass(frozen=True)
class Metadata:
    exif: dict[str, str] = field(default_factory=dict)
    camera_make: str | None = None
    camera_model: str | None = None
    software: str | None = None
    capture_time: str | None = None  # EXIF "YYYY:MM:DD HH:MM:SS", as written
    evidence: tuple[Evidence, ...] = ()


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


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


def generator_parameters(data: bytes, image: Image.Image | None = None) -> list[Evidence]:
    """What sd-parsers finds: the generator's name and its prompt/parameters. `image` is these
    bytes already opened and loaded, where the caller has it: Pillow reaches PNG text chunks
    stored after the pixels only by decoding them, so an unloaded image costs a second decode."""
    from PIL import Image
    from sd_parsers import Eagerness, ParserManager

    def parse(source: Image.Image) -> Any:
        # The stealth (alpha LSB) reader decodes every pixel: only worth it where alpha exists.
        eager = source.format == "PNG" and source.mode in {"RGBA", "LA", "PA"}
        return ParserManager(normalize_parameters=True).parse(
            source, eagerness=Eagerness.EAGER if eager else Eagerness.DEFAULT
        )

    if image is not None:
        info = parse(image)
    else:
        with Image.open(io.BytesIO(data)) as opened:
            info = parse(opened)
    if info is None:
        return []
    generator = getattr(info.generator, "value", str(info.generator))
    prompt = next((p.value for p in info.prompts), "")
    try:  # sd-parsers builds this set from parsed names, which fails on some ComfyUI graphs
        model = ", ".join(str(m.name) for m in list(info.models)[:2] if m.name)
    except TypeError:
        model = ""
    detail = f"{generator} parameters" + (f" (model {model})" if model else "")
    if prompt:
        detail += f"; prompt: {prompt}"
    return [Evidence("generator-parameters", _short(detail), Strength.STRONG, says_generated=True)]


def _xmp_packet(data: bytes) -> bytes | None:
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return None
    end = data.find(b"</x:xmpmeta>", start)
    if end < 0:
        raise ValueError("XMP packet is not closed")
    if end - start > MAX_XMP_BYTES:
        raise ValueError(f"XMP packet of {end - start} bytes is over the {MAX_XMP_BYTES} limit")
    return data[start : end + len(b"</x:xmpmeta>")]


def xmp_source_type(data: bytes) -> list[Evidence]:
    """IPTC DigitalSourceType from XMP (parsed with defusedxml: no entity expansion)."""
    from defusedxml import ElementTree

    packet = _xmp_packet(data)
    if packet is None:
        return []
    root = ElementTree.fromstring(packet)
    values: list[str] = []
    for element in root.iter():
        for key, value in element.attrib.items():
            if key.endswith("}DigitalSourceType") or key.endswith("}digitalSourceType"):
                values.append(value)
        if element.tag.endswith("}DigitalSourceType") and element.text:
            values.append(element.text.strip())
    evidence = []
    for value in values:
        match = _SOURCE_TYPE_RE.search(value)
        code = match.group(1) if match else value
        if code in AI_SOURCE_TYPES:
            evidence.append(
                Evidence(
                    "xmp-digital-source-type",
                    f"IPTC DigitalSourceType {code}: {AI_SOURCE_TYPES[code]}",
                    Strength.STRONG,
                    says_generated=True,
                )
            )
        else:
            evidence.append(
                Evidence("xmp-digital-source-type", f"IPTC DigitalSourceType {code}", Strength.INFO)
            )
    return evidence


def _c2pa_mime(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:12] in {b"ftypavif", b"ftypheic", b"ftypmif1"}:
        return "image/avif" if data[8:12] == b"avif" else "image/heic"
    if data[:4] in {b"II*\x00", b"MM\x00*"}:
        return "image/tiff"
    return None


def c2pa_manifest(data: bytes) -> list[Evidence]:
    """C2PA: who signed the claim, what it says was done, whether it validates."""
    if b"c2pa" not in data:  # cheap pre-check: every embedded manifest store is labelled c2pa
        return []
    mime = _c2pa_mime(data)
    if mime is None:
        return []
    import c2pa

    try:
        with c2pa.Reader(mime, io.BytesIO(data)) as reader:
            store = json.loads(reader.json())
    except Exception as exc:
        if "ManifestNotFound" in type(exc).__name__ or "not found" in str(exc).lower():
            return []
        raise
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    generator = manifest.get("claim_generator") or ", ".join(
        i.get("name", "") for i in manifest.get("claim_generator_info", []) or []
    )
    state = store.get("validation_state") or (
        "Valid" if not store.get("validation_status") else "Invalid"
    )
    source_types: list[str] = []
    actions: list[str] = []
    for assertion in manifest.get("assertions", []):
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in assertion.get("data", {}).get("actions", []):
            actions.append(str(action.get("action")))
            if action.get("digitalSourceType"):
                source_types.append(str(action["digitalSourceType"]))
    ai = [
        m.group(1)
        for t in source_types
        if (m := _SOURCE_TYPE_RE.search(t)) and m.group(1) in AI_SOURCE_TYPES
    ]
    detail = f"C2PA manifest by {generator or 'unknown'} (validation: {state})"
    if actions:
        detail += f"; actions: {', '.join(actions[:5])}"
    if ai:
        return [
            Evidence(
                "c2pa",
                _short(f"{detail}; digital source type {ai[0]}: {AI_SOURCE_TYPES[ai[0]]}"),
                Strength.STRONG,
                says_generated=True,
            )
        ]
    return [Evidence("c2pa", _short(detail), Strength.INFO)]


# The invisible watermarks the Stable Diffusion reference code embeds (method dwtDct):
# CompVis txt2img.py writes the bytes "StableDiffusionV1" into BGR pixels; diffusers' SDXL
# pipelines write these 48 bits into RGB pixels.
SD1_WATERMARK = b"StableDiffusionV1"
SDXL_WATERMARK_BITS = [int(b) for b in bin(0b101100111110110010010000011110111011000110011110)[2:]]
WATERMARK_MIN_BIT_ACCURACY = 0.8  # chance is 0.5; 39 of 48 bits by luck is ~1e-5


def _bits(data: bytes) -> list[int]:
    return [(byte >> (7 - i)) & 1 for byte in data for i in range(8)]


def sd_watermark(data: bytes) -> list[Evidence]:
    """Decode the SD 1.x and SDXL reference watermarks (needs the `watermark` extra)."""
    import numpy as np
    from imwatermark import WatermarkDecoder

    from .imaging import decode

    rgb = decode(data).pixels
    if min(rgb.shape[:2]) < 256:  # dwtDct needs room for its blocks; tiny images carry none
        return []
    found = []
    sd1 = WatermarkDecoder("bytes", len(SD1_WATERMARK) * 8).decode(
        np.ascontiguousarray(rgb[..., ::-1]), "dwtDct"
    )
    accuracy = float(np.mean(np.array(_bits(bytes(sd1))) == np.array(_bits(SD1_WATERMARK))))
    if accuracy >= WATERMARK_MIN_BIT_ACCURACY:
        found.append(("Stable Diffusion 1.x reference watermark", accuracy))
    sdxl = WatermarkDecoder("bits", len(SDXL_WATERMARK_BITS)).decode(rgb, "dwtDct")
    accuracy = float(np.mean(np.array(sdxl) == np.array(SDXL_WATERMARK_BITS)))
    if accuracy >= WATERMARK_MIN_BIT_ACCURACY:
        found.append(("Stable Diffusion XL (diffusers) watermark", accuracy))
    return [
        Evidence(
            "sd-watermark",
            f"{name} decoded ({accuracy:.0%} of bits match)",
            Strength.STRONG,
            says_generated=True,
        )
        for name, accuracy in found
    ]


def watermark_reader_available() -> bool:
    try:
        import imwatermark  # noqa: F401
    except Exception:  # ImportError, or OpenCV failing to load its libraries
        return False
    return True


READERS: tuple[tuple[str, Callable[[bytes], list[Evidence]]], ...] = (
    ("XMP", xmp_source_type),
    ("C2PA", c2pa_manifest),
)


def extract(data: bytes, *, image: Image.Image | None = None, watermark: bool = False) -> Metadata:
    """All metadata evidence of one file. `image`: the same bytes opened and loaded by the
    caller's decode, which spares generator_parameters a second decode of PNGs. `watermark`
    also decodes the SD reference watermarks: it reads pixels (about 0.1 s per megapixel), so
    it is opt-in (`--watermark`)."""
    evidence: list[Evidence] = []
    try:
        exif = read_exif(data)
    except Exception as exc:  # exifread raises many kinds on malformed input
        exif = {}
        evidence.append(_error("EXIF", exc))
    try:
        evidence.extend(generator_parameters(data, image))
    except Exception as exc:  # hostile metadata: recorded, never raised
        evidence.append(_error("generator parameters", exc))
    readers = READERS + ((("watermark", sd_watermark),) if watermark else ())
    for name, reader in readers:
        try:
            evidence.extend(reader(data))
        except Exception as exc:  # hostile metadata: recorded, never raised
            evidence.append(_error(name, exc))
    make = exif.get("Image Make") or None
    model = exif.get("Image Model") or None
    software = exif.get("Image Software") or None
    capture = exif.get("EXIF DateTimeOriginal") or exif.get("Image DateTime") or None
    if make or model:
        evidence.append(
            Evidence(
                "camera-exif",
                " ".join(p for p in (make, model) if p),
                Strength.WEAK,  # EXIF is trivially forged: shown, never trusted to lower a verdict
            )
        )
    if software:
        evidence.append(Evidence("software", _short(software), Strength.INFO))
    return Metadata(
        exif=exif,
        camera_make=make,
        camera_model=model,
        software=software,
        capture_time=capture,
        evidence=tuple(evidence),
    )


def _error(what: str, exc: Exception) -> Evidence:
    log.debug("%s unreadable: %s", what, exc)
    return Evidence(
        "metadata-error", _short(f"{what} unreadable: {type(exc).__name__}: {exc}"), Strength.ERROR
    )


def evidence_summary(evidence: tuple[Evidence, ...]) -> dict[str, Any]:
    return {
        "strong": [e.to_dict() for e in evidence if e.strength is Strength.STRONG],
        "other": [e.to_dict() for e in evidence if e.strength is not Strength.STRONG],
    }
