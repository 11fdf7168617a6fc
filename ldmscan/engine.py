"""The one scoring engine: decodes on a thread pool, batches crops from every caller through the
network on one worker thread (`batching.Batcher`), and turns scores into verdicts.

`scan`, `watch` and `serve` all call `Engine.submit`; crops from whoever is waiting share a batch.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import imaging, metadata
from .allocator import keep_large_buffers_in_heap
from .attribution import attribute
from .batching import Batcher, CropJob, Scored
from .detector import DEFAULT_GENERATED_FPR, DEFAULT_UNCERTAIN_FPR, Detector
from .errors import ImageError, LdmscanError
from .networks import build_network
from .preparing import Prepared, Preparer
from .results import CheckResult, ImageInfo
from .verdict import Evidence, Label, Thresholds, Verdict, decide

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
    runtime: str = "auto"  # networks.RUNTIMES; auto: OpenVINO (else ONNX Runtime) on a CPU
    tries: int | None = None  # crops per image; None: the card's default
    generated_fpr: float = DEFAULT_GENERATED_FPR
    uncertain_fpr: float = DEFAULT_UNCERTAIN_FPR
    max_batch: int | None = None  # crops per model call; None: chosen per runtime and device
    max_wait_ms: float = 5.0  # how long a batch waits for more crops
    decode_workers: int = 2
    threads: int | None = None  # the CPU network's threads (onnx, openvino); None: one per core
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
            threads=options.threads,
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
        if options.check_watermark and not metadata.watermark_reader_available():
            raise LdmscanError(
                "--watermark needs the watermark extra: pip install 'ldmscan[watermark]'"
            )
        self.preparer = Preparer(
            self.card,
            detector.ref,
            max_pixels=options.max_pixels,
            check_watermark=options.check_watermark,
        )
        self._pending = threading.BoundedSemaphore(options.max_pending)
        self._decoders = ThreadPoolExecutor(
            options.decode_workers, thread_name_prefix="ldmscan-decode"
        )
        self._closed = False
        self._pending_count = 0
        self._count_lock = threading.Lock()
        self._batcher = Batcher(
            self.outputs,
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
        return self.preparer.crops_for(pixels, tries)

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
        return self.preparer.error_result(reason, sha256, size, evidence, code=code)

    def score_prepared(self, prepared: Prepared) -> Future[CheckResult]:
        """Score an image another process decoded (`Preparer.prepare`): the network side only.
        Counted as pending like a submitted image, so the batcher waits to fill its batches."""
        if self._closed:
            raise RuntimeError("engine is closed")
        self._pending.acquire()
        with self._count_lock:
            self._pending_count += 1
        outer: Future[CheckResult] = Future()
        outer.add_done_callback(self._release)
        self._queue(prepared, outer)
        return outer

    # -- decode side (thread pool) ---------------------------------------------------------

    def _prepare(
        self, data: bytes, tries: int, sha256: str | None, outer: Future[CheckResult]
    ) -> None:
        try:
            prepared = self.preparer.prepare(data, tries, sha256)
            if isinstance(prepared, CheckResult):
                outer.set_result(prepared)
            else:
                self._queue(prepared, outer)
        except Exception as exc:  # never leave a caller waiting forever
            log.exception("unexpected failure preparing an image")
            if not outer.done():
                outer.set_exception(exc)

    def _queue(self, prepared: Prepared, outer: Future[CheckResult]) -> None:
        job = CropJob(crops=prepared.crops, future=Future(), queued_at=time.perf_counter())
        job.future.add_done_callback(
            functools.partial(
                self._finish,
                outer=outer,
                info=prepared.info,
                meta=prepared.meta,
                tries=prepared.tries,
                timings=prepared.timings,
            )
        )
        self._batcher.put(job)

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
            outer.set_result(
                self.result_from_logits(
                    scored.logits, info, meta, tries, timings, attribution=scored.attribution
                )
            )
        except Exception as exc:
            outer.set_exception(exc)

    def result_from_logits(
        self,
        logits: list[float],
        info: ImageInfo,
        meta: metadata.Metadata,
        tries: int,
        timings: dict[str, float] | None = None,
        *,
        attribution: list[list[float]] | None = None,
    ) -> CheckResult:
        """Crop logits -> aggregated probability, label and reasons (and, from the attribution
        head's logits, the latent-space guess): the one place a verdict is decided (the engine's
        own path and the benchmarks' one-at-a-time baseline both use it)."""
        logit = aggregate(logits, self.card.aggregation)
        probability = sigmoid(logit)
        guess = None
        if self.card.thresholds:
            thresholds = self.thresholds_for(tries)
            label, reasons = decide(probability, thresholds, meta.evidence)
            if attribution and self.card.attribution_classes:
                guess = attribute(
                    attribution,
                    self.card.attribution_classes,
                    float(self.card.attribution.get("confidence", 0.0)),
                    pixels_say_real=probability < thresholds.uncertain,
                )
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
            attribution=guess,
        )
        return CheckResult(verdict, info, meta)

    # -- model side (called by the Batcher's worker thread) -------------------------------

    def outputs(self, batch: np.ndarray) -> np.ndarray:
        """NxHxWx3 uint8 crops -> N x outputs: the detection logit, then any attribution logits
        (the card's normalisation is the network's)."""
        return self.network(batch)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """NxHxWx3 uint8 crops -> N detection logits."""
        return self.network(batch)[:, 0]
