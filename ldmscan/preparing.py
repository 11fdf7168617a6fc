"""The decode side of a check, without the network: bytes -> crops + image facts + metadata.

The engine runs it on its decode threads; a distributed scan (`scanner/distributed.py`) runs it
in CPU tasks on other machines and hands the result to the engines that hold the network. One
code path either way, so a verdict cannot depend on where an image was decoded."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from . import crops as crops_mod
from . import imaging, metadata
from .detector import DetectorCard
from .errors import ImageError
from .results import CheckResult, ImageInfo
from .verdict import DetectorRef, Evidence, Label, Strength, Verdict


@dataclass
class Prepared:
    """An image ready for the network: its crops (copies, not views of the decoded image)."""

    crops: list[np.ndarray]
    info: ImageInfo
    meta: metadata.Metadata
    tries: int
    timings: dict[str, float]


class Preparer:
    def __init__(
        self,
        card: DetectorCard,
        ref: DetectorRef,
        *,
        max_pixels: int = imaging.DEFAULT_MAX_PIXELS,
        check_watermark: bool = False,
    ) -> None:
        self.card = card
        self.ref = ref
        self.max_pixels = max_pixels
        self.check_watermark = check_watermark

    def crops_for(self, pixels: np.ndarray, tries: int) -> list[np.ndarray]:
        """The crops this detector scores on an image, as copies: a view would keep the whole
        decoded image alive until its batch runs, and up to max_pending images wait (256 x 3 MB
        for 1-MP photos, far more for camera originals) where the copies are ~110 kB a crop."""
        views = crops_mod.make_crops(pixels, self.card.crop_size, tries, self.card.placement)
        return [view.copy() for view in views]

    def prepare(self, data: bytes, tries: int, sha256: str | None = None) -> Prepared | CheckResult:
        """Crops to score, or the finished result of an image that cannot be scored."""
        started = time.perf_counter()
        digest = sha256 or imaging.sha256_bytes(data)
        with imaging.decoder_warnings() as notes:
            try:
                decoded = imaging.decode(data, self.max_pixels, sha256=digest, keep_image=True)
            except ImageError as exc:
                return self.error_result(str(exc), digest, len(data), code=exc.code)
            decoded_at = time.perf_counter()
            meta = metadata.extract(data, image=decoded.image, watermark=self.check_watermark)
        if notes:  # what Pillow complained about is part of this file's record
            decoder = tuple(Evidence("decoder", note, Strength.INFO) for note in notes)
            meta = dataclasses.replace(meta, evidence=(*meta.evidence, *decoder))
        meta_at = time.perf_counter()
        info = ImageInfo(
            digest,
            decoded.size_bytes,
            decoded.width,
            decoded.height,
            decoded.format,
            decoded.mode,
            decoded.frames,
        )
        if min(decoded.width, decoded.height) < crops_mod.MIN_SIDE:
            reason = (
                f"image too small to score ({decoded.width}x{decoded.height}; "
                f"needs {crops_mod.MIN_SIDE} px per side)"
            )
            return self.unscored(reason, info, meta, ImageError.TOO_SMALL)
        timings = {
            "decode_ms": (decoded_at - started) * 1e3,
            "metadata_ms": (meta_at - decoded_at) * 1e3,
        }
        return Prepared(self.crops_for(decoded.pixels, tries), info, meta, tries, timings)

    def error_result(
        self,
        reason: str,
        sha256: str | None,
        size: int,
        evidence: tuple[Evidence, ...] = (),
        *,
        code: str = ImageError.NOT_AN_IMAGE,
    ) -> CheckResult:
        verdict = Verdict(
            sha256=sha256,
            label=Label.ERROR,
            error=reason,
            error_code=code,
            evidence=tuple(evidence),
            detector=self.ref,
        )
        return CheckResult(verdict, ImageInfo(sha256=sha256 or "", size_bytes=size))

    def unscored(
        self, reason: str, info: ImageInfo, meta: metadata.Metadata, code: str
    ) -> CheckResult:
        """No pixel score: an error, unless the metadata alone says the image is generated."""
        strong = [e for e in meta.evidence if e.strength is Strength.STRONG and e.says_generated]
        if not strong:
            return CheckResult(
                self.error_result(
                    reason, info.sha256, info.size_bytes, meta.evidence, code=code
                ).verdict,
                info,
                meta,
            )
        verdict = Verdict(
            sha256=info.sha256,
            label=Label.GENERATED,
            detector=self.ref,
            reasons=(
                *(f"metadata: {e.kind}: {e.detail}" for e in strong),
                f"pixels not scored: {reason}",
            ),
            evidence=meta.evidence,
        )
        return CheckResult(verdict, info, meta)
