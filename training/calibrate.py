"""Thresholds from real images: the probability above which only a given share of real photos
falls, per number of tries, written into the detector's card."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ldmscan import imaging
from ldmscan.detector import Detector, read_card, save_detector, stored_in_half_precision
from ldmscan.engine import Engine, EngineOptions
from ldmscan.errors import ImageError

DEFAULT_FPRS = (0.001, 0.005, 0.01, 0.02, 0.05)


def threshold_at(real_scores: Iterable[float], fpr: float) -> float:
    """Smallest t with (share of real scores >= t) <= fpr.

    With fewer than 1/fpr real images the empirical quantile does not exist; the threshold is
    then just above the highest real score (0 false positives on the calibration set), which
    the card's calibration record makes visible.
    """
    scores = np.sort(np.asarray(list(real_scores), dtype=np.float64))
    if scores.size == 0:
        raise ValueError("no real scores to calibrate on")
    allowed = math.floor(fpr * scores.size)  # how many real images may be flagged
    # strictly above the (allowed+1)-th highest score, so at most `allowed` reach the threshold
    return float(min(1.0, np.nextafter(scores[scores.size - allowed - 1], np.inf)))


def score_files(engine: Engine, paths: list[Path], tries: int) -> tuple[list[float], list[Path]]:
    futures = []
    for path in paths:
        try:
            futures.append((path, engine.submit(imaging.read_file(path), tries=tries)))
        except ImageError:
            continue
    scores, used = [], []
    for path, future in futures:
        verdict = future.result().verdict
        if verdict.probability is not None:
            scores.append(verdict.probability)
            used.append(path)
    return scores, used


def calibrate_detector(
    detector: Detector,
    real_paths: list[Path],
    tries_list: Iterable[int],
    fprs: Iterable[float] = DEFAULT_FPRS,
    device: str = "auto",
    source: str = "",
) -> dict[str, dict[str, float]]:
    """Score the real images and put thresholds for each tries count into detector.card."""
    fprs = list(fprs)
    thresholds: dict[str, dict[str, float]] = {}
    with Engine(detector, EngineOptions(device=device)) as engine:
        counts = {}
        for tries in tries_list:
            scores, used = score_files(engine, real_paths, tries)
            thresholds[str(tries)] = {f"{fpr:g}": threshold_at(scores, fpr) for fpr in fprs}
            counts[str(tries)] = len(used)
    detector.card.thresholds = thresholds
    detector.card.calibration = {
        "real_images": counts,
        "source": source,
        "fprs": fprs,
        "note": "thresholds at FPRs below 1/real_images sit just above the highest real score",
    }
    return thresholds


def calibrate_file(
    path: Path,
    real_paths: list[Path],
    tries_list: Iterable[int],
    fprs: Iterable[float] = DEFAULT_FPRS,
    out: Path | None = None,
    device: str = "auto",
    source: str = "",
    *,
    crop_size: int | None = None,
    placement: str | None = None,
) -> Path:
    """Calibrate the detector file at `path`; crop_size / placement first change how it scores
    (thresholds only hold for the scoring they were set under, so the two go together)."""
    from ldmscan.detector import load_detector

    detector = load_detector(path)
    read_card(path)  # validates before any work
    if crop_size is not None:
        detector.card.crop_size = crop_size
    if placement is not None:
        detector.card.placement = placement
    detector.card.validate(str(path))
    calibrate_detector(detector, real_paths, tries_list, fprs, device, source)
    target = out or path
    save_detector(detector.model, detector.card, target, half=stored_in_half_precision(path))
    return target
