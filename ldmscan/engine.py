"""The one scoring engine: decodes on a thread pool, batches crops from every caller through the
network on one worker thread (`batching.Batcher`), and turns scores into verdicts.

`scan`, `watch` and `serve` all call `Engine.submit`; crops from whoever is waiting share a batch.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import crops as crops_mod
from . import imaging, metadata
from .allocator import keep_large_buffers_in_heap
from .batching import Batcher, CropJob, Scored
from .detector import DEFAULT_GENERATED_FPR, DEFAULT_UNCERTAIN_FPR, Detector
from .errors import ImageError, LdmscanError
from .networks import build_network
from .results import CheckResult, ImageInfo
from .verdict import Evidence, Label, Strength, Thresholds, Verdict, decide

log = logging.getLogger(__name__)


class EngineBusy(Exception):
    """More checks are pending than the engine accepts; try again shortly."""


def aggregate(logits: list[float], how: str) -> float:
    """Mean of logits: every crop measures the same image-wide fingerprint, so averaging log-odds
    cuts the noise of any one crop and keeps the false-positive rate stable as N grows (a max
    would flag more real images with every extra crop)."""
    if how == "max_logit":
        return max(logits)
    return float(np.mean(logits))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass(frozen=True)
class EngineOptions:
    """How the engine scores: every setting `scan`, `watch` and `serve` share (one typed object
    rather than keyword arguments forwarded through the CLI)."""

    device: str = "auto"  # auto: CUDA when a GPU is present, else cpu
    runtime: str = "auto"  # networks.RUNTIMES; auto: ONNX Runtime on a CPU when the file allows
    tries: int | None = None  # crops per image; None: the card's default
    generated_fpr: float = DEFAULT_GENERATED_FPR
    uncertain_fpr: float = DEFAULT_UNCERTAIN_FPR
    max_batch: int | None = None  # crops per model call; None: chosen per runtime and device
    max_wait_ms: float = 5.0  # how long a batch waits for more crops
    decode_workers: int = 2
    max_pending: int = 256  # images accepted and not finished before submit() refuses
    max_pixels: int = imaging.DEFAULT_MAX_PIXELS
    half: bool | None = None  # None: half precision on a GPU only
    compile_model: bool = False
    check_watermark: bool = False


class Engine:
    def __init__(self, detector: Detector, options: EngineOptions | None = None) -> None:
        options = options or EngineOptions()
        keep_large_buffers_in_heap()
        self.detector = detector
        self.card = detector.card
        self.options = options
        self.network = build_network(
            detector,
            options.runtime,
            options.device,
            half=options.half,
            compile_model=options.compile_model,
        )
        self.device = self.network.device
        self.runtime = self.network.runtime
        self.half = self.network.half
        self.tries = options.tries or self.card.default_tries
        self.generated_fpr = options.generated_fpr
        self.uncertain_fpr = options.uncertain_fpr
        if self.card.thresholds:
            # a wrong FPR fails now, not on the first image
            note = self.thresholds_for(self.tries).note
            if note:
                calibrated = ", ".join(sorted(self.card.thresholds, key=int))
                log.warning("%d tries: %s (calibrated: %s tries)", self.tries, note, calibrated)
        # crops per model call: on CPU, batches past ~16 crops of 192 px fall out of cache and
        # get slower per crop with torch (benchmarks/bench_cpu_settings.py); ONNX Runtime peaks
        # at 4-8 (bench_scan.py's model-only column)
        cpu_batch = 16 if self.runtime == "torch" else 8
        self.max_batch = options.max_batch or (64 if self.device.startswith("cuda") else cpu_batch)
        self.max_pixels = options.max_pixels
        if options.check_watermark and not metadata.watermark_reader_available():
            raise LdmscanError(
                "--watermark needs the watermark extra: pip install 'ldmscan[watermark]'"
            )
        self.check_watermark = options.check_watermark
        self._pending = threading.BoundedSemaphore(options.max_pending)
        self._decoders = ThreadPoolExecutor(
            options.decode_workers, thread_name_prefix="ldmscan-decode"
        )
        self._closed = False
        self._pending_count = 0
        self._count_lock = threading.Lock()
        self._batcher = Batcher(
            self.logits,
            max_batch=self.max_batch,
            max_wait_s=options.max_wait_ms / 1000.0,
            images_pending=lambda: self._pending_count,
        )
        # crops per model call, and listeners told each one (a Prometheus histogram)
        self.batch_sizes = self._batcher.batch_sizes
        self.batch_listeners = self._batcher.batch_listeners

    # -- public ---------------------------------------------------------------------------

    def thresholds_for(self, tries: int) -> Thresholds:
        return self.card.thresholds_for(tries, self.generated_fpr, self.uncertain_fpr)

    def submit(
        self,
        data: bytes,
        *,
        tries: int | None = None,
        block: bool = True,
        sha256: str | None = None,
    ) -> Future[CheckResult]:
        """Queue one image's bytes; the future resolves to its CheckResult (errors included)."""
        if self._closed:
            raise RuntimeError("engine is closed")
        if not self._pending.acquire(blocking=block):
            raise EngineBusy("too many images pending")
        with self._count_lock:
            self._pending_count += 1
        outer: Future[CheckResult] = Future()
        outer.add_done_callback(self._release)
        self._decoders.submit(self._prepare, data, tries or self.tries, sha256, outer)
        return outer

    def crops_for(self, pixels: np.ndarray, tries: int) -> list[np.ndarray]:
        """The crops this detector scores on an image, as copies: a view would keep the whole
        decoded image alive until its batch runs, and up to max_pending images wait (256 x 3 MB
        for 1-MP photos, far more for camera originals) where the copies are ~110 kB a crop."""
        views = crops_mod.make_crops(pixels, self.card.crop_size, tries, self.card.placement)
        return [view.copy() for view in views]

    def check(self, data: bytes, *, tries: int | None = None) -> CheckResult:
        return self.submit(data, tries=tries).result()

    def check_path(self, path: str | Path, *, tries: int | None = None) -> CheckResult:
        try:
            data = imaging.read_file(Path(path))
        except ImageError as exc:
            return self.error_result(str(exc), None, 0, code=exc.code)
        return self.check(data, tries=tries)

    def _release(self, _future: Future[CheckResult]) -> None:
        with self._count_lock:
            self._pending_count -= 1
        self._pending.release()

    @property
    def queue_depth(self) -> int:
        """Crop jobs decoded and waiting for the model."""
        return self._batcher.queue_depth

    @property
    def pending(self) -> int:
        """Images accepted by submit() whose result is not ready yet."""
        return self._pending_count

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._decoders.shutdown(wait=True)
        self._batcher.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            detector=self.detector.ref,
        )
        return CheckResult(verdict, ImageInfo(sha256=sha256 or "", size_bytes=size))

    def _unscored(
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
            detector=self.detector.ref,
            reasons=(
                *(f"metadata: {e.kind}: {e.detail}" for e in strong),
                f"pixels not scored: {reason}",
            ),
            evidence=meta.evidence,
        )
        return CheckResult(verdict, info, meta)

    # -- decode side (thread pool) ---------------------------------------------------------

    def _prepare(
        self, data: bytes, tries: int, sha256: str | None, outer: Future[CheckResult]
    ) -> None:
        try:
            started = time.perf_counter()
            digest = sha256 or imaging.sha256_bytes(data)
            with imaging.decoder_warnings() as notes:
                try:
                    decoded = imaging.decode(data, self.max_pixels, sha256=digest, keep_image=True)
                except ImageError as exc:
                    outer.set_result(self.error_result(str(exc), digest, len(data), code=exc.code))
                    return
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
                outer.set_result(self._unscored(reason, info, meta, ImageError.TOO_SMALL))
                return
            crops = self.crops_for(decoded.pixels, tries)
            job = CropJob(crops=crops, future=Future(), queued_at=time.perf_counter())
            timings = {
                "decode_ms": (decoded_at - started) * 1e3,
                "metadata_ms": (meta_at - decoded_at) * 1e3,
            }
            job.future.add_done_callback(
                functools.partial(
                    self._finish, outer=outer, info=info, meta=meta, tries=tries, timings=timings
                )
            )
            self._batcher.put(job)
        except Exception as exc:  # never leave a caller waiting forever
            log.exception("unexpected failure preparing an image")
            if not outer.done():
                outer.set_exception(exc)

    def _finish(
        self,
        scored_future: Future[Scored],
        *,
        outer: Future[CheckResult],
        info: ImageInfo,
        meta: metadata.Metadata,
        tries: int,
        timings: dict[str, float],
    ) -> None:
        try:
            scored = scored_future.result()
            timings = {**timings, "queue_ms": scored.queue_ms, "model_ms": scored.model_ms}
            outer.set_result(self.result_from_logits(scored.logits, info, meta, tries, timings))
        except Exception as exc:
            outer.set_exception(exc)

    def result_from_logits(
        self,
        logits: list[float],
        info: ImageInfo,
        meta: metadata.Metadata,
        tries: int,
        timings: dict[str, float] | None = None,
    ) -> CheckResult:
        """Crop logits -> aggregated probability, label and reasons: the one place a verdict is
        decided (the engine's own path and the benchmarks' one-at-a-time baseline both use it)."""
        logit = aggregate(logits, self.card.aggregation)
        probability = sigmoid(logit)
        if self.card.thresholds:
            label, reasons = decide(probability, self.thresholds_for(tries), meta.evidence)
        else:  # a freshly fitted detector, scored by `train calibrate` to get thresholds
            label, reasons = Label.UNCERTAIN, ("detector not calibrated: no thresholds",)
        verdict = Verdict(
            sha256=info.sha256,
            label=label,
            probability=probability,
            reasons=reasons,
            detector=self.detector.ref,
            tries=tries,
            crop_scores=tuple(sigmoid(x) for x in logits),
            evidence=meta.evidence,
            timings={k: round(v, 3) for k, v in (timings or {}).items()},
        )
        return CheckResult(verdict, info, meta)

    # -- model side (called by the Batcher's worker thread) -------------------------------

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """NxHxWx3 uint8 crops -> N logits (the card's normalisation is the network's)."""
        return self.network(batch)
