"""The model side of the engine: one worker thread that gathers crop jobs from every caller
into batches and scores them. Batches hold whole images; they close when full, when the wait
for more runs out, or as soon as no other image is being decoded (waiting would add latency)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """What the model thread hands back for one image."""

    logits: list[float]  # the detection logit of each crop
    queue_ms: float  # from queued to the model thread taking it
    model_ms: float  # its share of the model calls its crops were in
    attribution: list[list[float]] = field(default_factory=list)  # per crop; [] without a head


@dataclass
class CropJob:
    """One image's crops waiting for the model. The future's callbacks never refer back to the
    job: a job <-> callback cycle would keep its crops alive until a full garbage collection."""

    crops: list[np.ndarray]
    future: Future[Scored]
    queued_at: float


class Batcher:
    """Runs `score` (NxHxWx3 uint8 -> N x outputs: the detection logit, then any attribution
    logits) on batches of at most `max_batch` crops."""

    def __init__(
        self,
        score: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int,
        max_wait_s: float,
        images_pending: Callable[[], int],
    ) -> None:
        self.score = score
        self.max_batch = max_batch
        self.max_wait = max_wait_s
        self.images_pending = images_pending
        # crops per model call (the latest 10,000), for metrics and benchmarks
        self.batch_sizes: deque[int] = deque(maxlen=10_000)
        self.batch_listeners: list[Callable[[int], None]] = []  # e.g. a Prometheus histogram
        self._jobs: queue.Queue[CropJob | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="ldmscan-model", daemon=True)
        self._worker.start()

    def put(self, job: CropJob) -> None:
        self._jobs.put(job)

    @property
    def queue_depth(self) -> int:
        """Crop jobs decoded and waiting for the model."""
        return self._jobs.qsize()

    def close(self) -> None:
        """Score what is queued, then stop the worker."""
        self._jobs.put(None)
        self._worker.join()

    def _run(self) -> None:
        held: CropJob | None = None  # taken from the queue but left for the next batch
        while True:
            job = held or self._jobs.get()
            held = None
            if job is None:
                return
            jobs = [job]
            count = len(job.crops)
            deadline = time.perf_counter() + self.max_wait
            stop = False
            while count < self.max_batch:
                if self.images_pending() <= len(jobs):
                    break  # no other image is being decoded: waiting would only add latency
                remaining = deadline - time.perf_counter()
                try:
                    nxt = (
                        self._jobs.get(timeout=max(remaining, 0))
                        if remaining > 0
                        else self._jobs.get_nowait()
                    )
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if count + len(nxt.crops) > self.max_batch:
                    # a whole image per batch: splitting it would leave a small remainder
                    # batch, and on CPU small batches cost more per crop
                    held = nxt
                    break
                jobs.append(nxt)
                count += len(nxt.crops)
            try:
                self._score_jobs(jobs)
            except Exception as exc:
                log.exception("model call failed")
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)
            if stop:
                return

    def _score_jobs(self, jobs: list[CropJob]) -> None:
        """Group every crop of these jobs by shape, run each group in max_batch chunks."""
        started = time.perf_counter()
        by_shape: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for j, job in enumerate(jobs):
            for c, crop in enumerate(job.crops):
                by_shape[(crop.shape[0], crop.shape[1])].append((j, c))
        results: list[list[np.ndarray]] = [[np.zeros(1)] * len(job.crops) for job in jobs]
        model_s = [0.0] * len(jobs)
        for members in by_shape.values():
            for start in range(0, len(members), self.max_batch):
                chunk = members[start : start + self.max_batch]
                call_started = time.perf_counter()
                batch = np.stack([jobs[j].crops[c] for j, c in chunk])
                outputs = np.asarray(self.score(batch), np.float32).reshape(len(chunk), -1)
                share = (time.perf_counter() - call_started) / len(chunk)
                for j, _c in chunk:
                    model_s[j] += share
                self.batch_sizes.append(len(chunk))
                for listener in self.batch_listeners:
                    listener(len(chunk))
                for (j, c), row in zip(chunk, outputs, strict=True):
                    results[j][c] = row
        for job, rows, seconds in zip(jobs, results, model_s, strict=True):
            job.crops = []  # scored: nothing needs the pixels now
            queue_ms = (started - job.queued_at) * 1e3
            job.future.set_result(
                Scored(
                    [float(row[0]) for row in rows],
                    queue_ms,
                    seconds * 1e3,
                    [[float(v) for v in row[1:]] for row in rows]
                    if rows and rows[0].size > 1
                    else [],
                )
            )
