"""Image-level evaluation: ROC-AUC and TPR at fixed false-positive rates, in 1-try and N-tries
mode, per generator family, under a robustness grid of degradations applied to both classes, and
on format-controlled subsets (PNG only; both classes re-encoded)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ldmscan import imaging
from ldmscan.detector import Detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.errors import ImageError

log = logging.getLogger(__name__)

REPORT_FPRS = (0.001, 0.01, 0.05)
GRID = ("jpeg95", "jpeg85", "jpeg75", "jpeg50", "rescale0.5", "rescale0.75", "rescale1.5")
SUBSETS = ("png_only", "reencoded_jpeg90")
# what the content-only baseline sees: whole images as 64-px thumbnails (no fingerprint left)
CONTENT_ONLY = ("thumb64",)
# generator name -> family, first match wins (the held-out judge reports these families)
FAMILY_KEYWORDS = (
    ("kandinsky", "Kandinsky"),
    ("hunyuan", "HunyuanDiT"),
    ("kolors", "Kolors"),
    ("midjourney", "Midjourney"),
    ("flux", "FLUX"),
    ("chroma", "FLUX"),
    ("sd3", "SD3"),
    ("stable diffusion 3", "SD3"),
    ("sdxl", "SDXL"),
    ("cosxl", "SDXL"),
    ("sd 2", "SD2"),
    ("stable diffusion 2", "SD2"),
    ("sd 1", "SD1"),
    ("stable diffusion v1", "SD1"),
    ("latent diffusion", "SD1"),
)


def family_of(generator: str) -> str:
    name = generator.lower()
    for keyword, family in FAMILY_KEYWORDS:
        if keyword in name:
            return family
    return "other"


@dataclass(frozen=True)
class Item:
    path: Path
    label: int  # 1 = generated
    generator: str
    format: str


def load_items(
    real_dirs: list[Path],
    generated_dirs: list[Path],
    manifest: Path | None = None,
    exclude_flags: tuple[str, ...] = ("thumbnail128",),
) -> list[Item]:
    """Images of both classes; a manifest (dev's MANIFEST.tsv) adds generator names and flags."""
    from ldmscan.walk import iter_candidates

    rows: dict[str, dict[str, str]] = {}
    if manifest is not None:
        with Path(manifest).open(newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                rows[Path(row["file"]).name] = row
    items = []
    for label, dirs in ((0, real_dirs), (1, generated_dirs)):
        for path in iter_candidates(dirs):
            row = rows.get(path.name, {})
            flags = set(filter(None, (row.get("flags") or "").split(",")))
            if flags & set(exclude_flags):
                continue
            generator = row.get("generator") or ("real" if label == 0 else "unknown")
            fmt = row.get("format") or (imaging.sniff_format(path.read_bytes()[:64]) or "?")
            items.append(Item(path, label, generator if label else "real", fmt.upper()))
    return items


def _encode(pixels: np.ndarray, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def degrade(data: bytes, variant: str) -> bytes:
    """Apply a named degradation (the same one to both classes). Metadata is dropped on the way,
    which is what a platform's re-encode does too."""
    if variant == "original":
        return data
    pixels = imaging.decode(data).pixels
    if variant.startswith("jpeg"):
        return _encode(pixels, "JPEG", quality=int(variant[4:]))
    if variant == "reencoded_jpeg90":
        return _encode(pixels, "JPEG", quality=90)
    if variant.startswith("thumb"):
        from .labelled import thumbnail

        return _encode(thumbnail(pixels, int(variant[5:])), "PNG")
    if variant.startswith("rescale"):
        factor = float(variant[7:])
        size = (max(1, round(pixels.shape[1] * factor)), max(1, round(pixels.shape[0] * factor)))
        return _encode(
            np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC)),
            "PNG",
            compress_level=1,
        )  # lossless either way; level 1 is 10x faster
    raise ValueError(f"unknown variant {variant!r}")


def roc_metrics(scores: list[float], labels: list[int]) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(labels)
    s = np.asarray(scores)
    if len(set(labels)) < 2:
        return {"n_real": int((y == 0).sum()), "n_generated": int((y == 1).sum())}
    fpr, tpr, _ = roc_curve(y, s)
    result: dict[str, Any] = {
        "auc": float(roc_auc_score(y, s)),
        "n_real": int((y == 0).sum()),
        "n_generated": int((y == 1).sum()),
    }
    for target in REPORT_FPRS:
        # the best TPR among operating points whose FPR does not exceed the target
        result[f"tpr@{target:g}"] = (
            float(tpr[fpr <= target].max()) if (fpr <= target).any() else 0.0
        )
    return result


def tpr_at_threshold(scores: list[float], labels: list[int], threshold: float) -> dict[str, float]:
    s, y = np.asarray(scores), np.asarray(labels)
    return {
        "tpr": float((s[y == 1] >= threshold).mean()) if (y == 1).any() else float("nan"),
        "fpr": float((s[y == 0] >= threshold).mean()) if (y == 0).any() else float("nan"),
    }


def score_items(
    engine: Engine, items: list[Item], tries_list: list[int], variant: str
) -> dict[int, list[float | None]]:
    """Probabilities in item order for each tries count; None where a file could not be
    scored. Each file is degraded once and submitted for every tries count together, so the
    engine batches across them."""
    futures: dict[int, list[Any]] = {tries: [] for tries in tries_list}
    for item in items:
        try:
            data = degrade(imaging.read_file(item.path), variant)
        except ImageError as exc:
            log.warning("%s: %s", item.path, exc)
            for tries in tries_list:
                futures[tries].append(None)
            continue
        for tries in tries_list:
            futures[tries].append(engine.submit(data, tries=tries))
    return {
        tries: [f.result().verdict.probability if f else None for f in found]
        for tries, found in futures.items()
    }


def evaluate(
    detector: Detector,
    items: list[Item],
    *,
    tries_list: list[int],
    variants: tuple[str, ...] = ("original", *GRID, *SUBSETS),
    device: str = "auto",
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    card = detector.card
    report: dict[str, Any] = {
        "detector": {"name": card.name, "version": card.version, "sha256": detector.sha256},
        "images": {
            "real": sum(1 for i in items if i.label == 0),
            "generated": sum(1 for i in items if i.label == 1),
        },
        "modes": {f"{tries}_tries": {} for tries in tries_list},
    }
    per_image: dict[str, dict[str, Any]] = {
        str(i.path): {"label": i.label, "generator": i.generator, "format": i.format} for i in items
    }
    started = time.perf_counter()
    with Engine(detector, EngineOptions(device=device)) as engine:
        for variant in variants:
            if on_progress:
                on_progress(variant)
            subset = [i for i in items if i.format == "PNG"] if variant == "png_only" else items
            scored = score_items(
                engine, subset, tries_list, "original" if variant == "png_only" else variant
            )
            for tries, scores in scored.items():
                kept = [(i, s) for i, s in zip(subset, scores, strict=True) if s is not None]
                labels = [i.label for i, _ in kept]
                values = [s for _, s in kept]
                entry = roc_metrics(values, labels)
                if card.thresholds:
                    for fpr in ("0.001", "0.01"):
                        t = card.thresholds_for(tries, float(fpr), float(fpr)).generated
                        entry[f"at_card_threshold_fpr{fpr}"] = tpr_at_threshold(values, labels, t)
                if variant in ("original", "thumb64"):
                    entry["per_generator"] = per_generator(kept)
                    entry["per_family"] = per_generator(
                        [
                            (dataclasses.replace(i, generator=family_of(i.generator)), v)
                            for i, v in kept
                        ]
                    )
                    for item, score in kept:
                        per_image[str(item.path)][f"score_{tries}"] = score
                report["modes"][f"{tries}_tries"][variant] = entry
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["per_image"] = per_image
    return report


def per_generator(kept: list[tuple[Item, float]]) -> dict[str, dict[str, Any]]:
    """Each family against all real images: AUC, and TPR at the all-real 1% FPR threshold."""
    reals = [s for i, s in kept if i.label == 0]
    if not reals:
        return {}
    threshold = float(np.quantile(reals, 0.99))
    groups: dict[str, list[float]] = defaultdict(list)
    for item, score in kept:
        if item.label == 1:
            groups[item.generator].append(score)
    out = {}
    for generator, scores in sorted(groups.items()):
        metrics = roc_metrics(reals + scores, [0] * len(reals) + [1] * len(scores))
        out[generator] = {
            "n": len(scores),
            "auc": metrics.get("auc"),
            "tpr@0.01": float(np.mean(np.asarray(scores) > threshold)),
            "mean_score": float(np.mean(scores)),
        }
    return out


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """JSON plus PNG plots (ROC curves and score histograms) into out/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "eval.json"]
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    per_image = report["per_image"].values()
    keys = sorted({k for row in per_image for k in row if k.startswith("score_")})
    fig, (roc_ax, hist_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for key in keys:
        rows = [r for r in per_image if key in r]
        y = [r["label"] for r in rows]
        s = [r[key] for r in rows]
        if len(set(y)) == 2:
            fpr, tpr, _ = roc_curve(y, s)
            variants = report["modes"][f"{key[6:]}_tries"]
            auc = variants.get("original", next(iter(variants.values()))).get("auc", float("nan"))
            roc_ax.plot(fpr, tpr, label=f"{key[6:]} tries (AUC {auc:.3f})")
    roc_ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    roc_ax.set(
        xscale="log",
        xlim=(1e-3, 1),
        xlabel="false-positive rate",
        ylabel="true-positive rate",
        title="ROC (original files)",
    )
    roc_ax.legend()
    if keys:
        key = keys[-1]
        for label, name in ((0, "real"), (1, "generated")):
            values = [r[key] for r in per_image if r["label"] == label and key in r]
            hist_ax.hist(values, bins=30, range=(0, 1), alpha=0.6, label=name)
        hist_ax.set(xlabel=f"probability ({key[6:]} tries)", ylabel="images", title="scores")
        hist_ax.legend()
    fig.tight_layout()
    fig.savefig(out / "roc_hist.png", dpi=110)
    plt.close(fig)
    written.append(out / "roc_hist.png")
    return written


def card_summary(report: dict[str, Any], real: list[str], generated: list[str]) -> dict[str, Any]:
    """The headline numbers of a report, small enough for a detector card."""
    keys = ("auc", "tpr@0.001", "tpr@0.01", "tpr@0.05")
    return {
        "real": real,
        "generated": generated,
        "images": report["images"],
        "modes": {
            mode: {
                variant: {k: round(v[k], 4) for k in keys if k in v}
                for variant, v in variants.items()
            }
            for mode, variants in report["modes"].items()
        },
    }
