"""Train the attribution head: which latent space made an image, from the detector's own features.

The backbone stays frozen, so the detection logit, and the thresholds calibrated on it, do not
move: the head is a multinomial logistic regression on statistics of the network's stages
(`ldmscan.heads`), placed inside the network (`attach_head`). One forward pass gives both answers.

Examples per latent space come from two places: images that real LDM decoders made (harvested,
labelled by latent space with evidence), and real photos round-tripped through each family's
TAESD stand-in (`train reconstruct`). Every example is scored on the crops the engine would take
(the card's placement and default tries), in its original form and re-encoded as JPEG, so that a
re-encoded upload is attributed as well.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ldmscan import imaging
from ldmscan.attribution import LATENT_SPACES, class_probabilities
from ldmscan.detector import Detector
from ldmscan.errors import ImageError, LdmscanError
from ldmscan.heads import (
    HEAD_NAME,
    add_attribution_head,
    attribution_features,
    has_attribution_head,
)
from ldmscan.preparing import Preparer
from ldmscan.preprocess import Normaliser

log = logging.getLogger(__name__)

CLASSES = tuple(LATENT_SPACES)
# TAESD stand-in -> the latent space it decodes (training/autoencoders.TAESD_FAMILY)
SURROGATE_CLASS = {
    "taesd": "sd1-2",
    "taesdxl": "sdxl",
    "taesd3": "sd3",
    "taef1": "flux1",
    "taef2": "flux2",
}
# the harvest manifest's latent_space column -> class (other-ldm and pixel have no class)
HARVEST_CLASS = {
    "sd1": "sd1-2",
    "sd2": "sd1-2",
    "sdxl": "sdxl",
    "sd3": "sd3",
    "flux1": "flux1",
    "flux2": "flux2",
}
RECONSTRUCTION_GROUP = "reconstruction"  # group of every round-tripped photo
FEATURES = "stage mean+std (heads.attribution_features)"  # what the head reads


@dataclass(frozen=True)
class AttributedImage:
    path: Path
    latent_space: str  # a CLASSES key
    group: str  # the source repository, or "reconstruction:<autoencoder>"
    origin: str  # "harvest" or "reconstruction"


def harvested(
    manifest: Path, root: Path, exclude_flags: Sequence[str] = ()
) -> list[AttributedImage]:
    """Generated images of a harvest manifest (file, latent_space, source, flags columns) whose
    latent space has a class, and whose file is present under root."""
    found = []
    with Path(manifest).open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            space = HARVEST_CLASS.get(row.get("latent_space", ""))
            flags = set(filter(None, (row.get("flags") or "").split(",")))
            path = Path(root) / row["file"]
            if space is None or flags & set(exclude_flags) or not path.is_file():
                continue
            found.append(AttributedImage(path, space, row["source"], "harvest"))
    return found


def reconstructions(folder: Path) -> list[AttributedImage]:
    """Photos round-tripped by `ldmscan train reconstruct`: its output folder (one subfolder per
    autoencoder) or one autoencoder's folder; each manifest names the autoencoder."""
    folder = Path(folder)
    manifests = [folder / "manifest.tsv"] if (folder / "manifest.tsv").is_file() else []
    manifests = manifests or sorted(folder.glob("*/manifest.tsv"))
    if not manifests:
        raise LdmscanError(f"{folder}: no manifest.tsv (not made by `ldmscan train reconstruct`)")
    found = []
    for manifest in manifests:
        with manifest.open(newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                space = SURROGATE_CLASS.get(row["autoencoder"])
                path = manifest.parent / row["output"]
                if space is None or not path.is_file():
                    continue
                group = f"{RECONSTRUCTION_GROUP}:{row['autoencoder']}"
                found.append(AttributedImage(path, space, group, "reconstruction"))
    return found


def jpeg(data: bytes, quality: int) -> bytes:
    pixels = imaging.decode(data).pixels
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class FeatureReader:
    """The head's input features of the crops the engine would score (N tries x F)."""

    def __init__(self, detector: Detector, tries: int) -> None:
        self.detector = detector
        self.tries = tries
        self.model: Any = detector.model.eval()  # a timm network (forward_head, get_classifier)
        self.preparer = Preparer(detector.card, detector.ref)
        self.normalise = Normaliser(detector.card.mean, detector.card.std, "cpu")

    def __call__(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(features tries x F, network outputs tries x (1 + K)) of one image's crops."""
        pixels = imaging.decode(data).pixels
        crops = self.preparer.crops_for(pixels, self.tries)
        features, outputs = [], []
        for shape in dict.fromkeys(c.shape for c in crops):  # crops of one size share a batch
            batch = np.stack([c for c in crops if c.shape == shape])
            x = self.normalise(torch.from_numpy(batch).permute(0, 3, 1, 2))
            with torch.inference_mode():
                pooled, head_input = attribution_features(self.model, x)
                out = self.model.get_classifier()(pooled)
            features.append(head_input.numpy())
            outputs.append(out.numpy())
        return np.concatenate(features), np.concatenate(outputs)


@dataclass
class FeatureTable:
    """Every example's crop features; row i is images[i] in the named variant."""

    images: list[AttributedImage]
    variants: list[str]  # "original" or "jpeg<q>"
    features: np.ndarray  # M x tries x F (float32)

    def labels(self) -> np.ndarray:
        return np.array([CLASSES.index(i.latent_space) for i in self.images])

    def groups(self) -> list[str]:
        return [i.group for i in self.images]


def read_features(
    reader: FeatureReader,
    images: list[AttributedImage],
    *,
    jpeg_qualities: Sequence[int] = (),
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> FeatureTable:
    """Features of every image in its original form and, per image, one JPEG re-encoding at a
    quality drawn from jpeg_qualities (none when empty). Unreadable files are logged, skipped."""
    rng = np.random.default_rng(seed)
    kept: list[AttributedImage] = []
    variants: list[str] = []
    rows: list[np.ndarray] = []
    for index, image in enumerate(images):
        try:
            data = imaging.read_file(image.path)
            forms = [("original", data)]
            if jpeg_qualities:
                quality = int(rng.choice(list(jpeg_qualities)))
                forms.append((f"jpeg{quality}", jpeg(data, quality)))
            for variant, form in forms:
                features, _ = reader(form)
                if len(features) != reader.tries:
                    continue  # an image too small for every crop: not an example
                kept.append(image)
                variants.append(variant)
                rows.append(features)
        except (ImageError, OSError, ValueError) as exc:
            log.warning("%s: skipped (%s)", image.path, exc)
        if on_progress:
            on_progress(index + 1, len(images))
    if not rows:
        raise LdmscanError("no usable attribution examples")
    return FeatureTable(kept, variants, np.stack(rows).astype(np.float32))


def _cache_key(
    images: Sequence[AttributedImage], detector_sha: str, qualities: Sequence[int]
) -> str:
    import hashlib

    # FEATURES names what the head reads: a cache of another recipe's features is stale
    text = "\n".join([FEATURES, detector_sha, repr(list(qualities)), *(str(i) for i in images)])
    return hashlib.sha256(text.encode()).hexdigest()


def save_table(
    path: Path,
    table: FeatureTable,
    requested: Sequence[AttributedImage],
    detector_sha: str,
    qualities: Sequence[int],
) -> None:
    """Keep a table's features for another fit, keyed by what was asked for (the detector
    file, the examples and the JPEG qualities)."""
    import json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    unique = list(dict.fromkeys(table.images))
    position = {image: n for n, image in enumerate(unique)}
    meta = {
        "key": _cache_key(requested, detector_sha, qualities),
        "images": [[str(i.path), i.latent_space, i.group, i.origin] for i in unique],
    }
    np.savez(
        path,
        features=table.features,
        rows=np.array([position[i] for i in table.images]),
        variants=np.array(table.variants),
        meta=np.array(json.dumps(meta)),
    )


def load_table(
    path: Path | None,
    requested: Sequence[AttributedImage],
    detector_sha: str,
    qualities: Sequence[int],
) -> FeatureTable | None:
    """The cached table for exactly this request, or None (no cache, or one made otherwise)."""
    import json

    if path is None or not Path(path).is_file():
        return None
    with np.load(path) as stored:
        meta = json.loads(str(stored["meta"]))
        if meta["key"] != _cache_key(requested, detector_sha, qualities):
            return None
        unique = [AttributedImage(Path(p), s, g, o) for p, s, g, o in meta["images"]]
        rows = stored["rows"].tolist()
        return FeatureTable(
            [unique[r] for r in rows], stored["variants"].tolist(), stored["features"]
        )


@dataclass(frozen=True)
class Head:
    weight: np.ndarray  # K x F
    bias: np.ndarray  # K

    def logits(self, features: np.ndarray) -> np.ndarray:
        """M x tries x F -> M x K, averaged over the crops as the engine does."""
        per_crop = features @ self.weight.T + self.bias
        return np.asarray(per_crop.mean(axis=1))

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = self.logits(features)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    classes: int = len(CLASSES),
    weight_decay: float = 1e-3,
    steps: int = 300,
    sample_weight: np.ndarray | None = None,
    seed: int = 0,
) -> Head:
    """Multinomial logistic regression on each image's crop-averaged features, classes
    balanced, L2-regularised, full-batch L-BFGS (features standardised inside). The head is
    linear, so the logits of the averaged features are the average of the crops' logits: what
    the engine computes."""
    torch.manual_seed(seed)
    x = torch.from_numpy(features.mean(axis=1).astype(np.float32))
    y = torch.from_numpy(labels).long()
    width = x.shape[1]
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    counts = torch.bincount(y, minlength=classes).float().clamp_min(1)
    weights = (1.0 / counts)[y]
    if sample_weight is not None:
        weights = weights * torch.from_numpy(sample_weight).float()
    weights = weights / weights.sum()
    linear = torch.nn.Linear(width, classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimiser = torch.optim.LBFGS(
        linear.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = (torch.nn.functional.cross_entropy(linear(z), y, reduction="none") * weights).sum()
        loss = loss + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    # fold the standardisation into the layer: w.(x - mean)/std + b = (w/std).x + b - w.mean/std
    weight = (linear.weight / std).detach()
    bias = (linear.bias - (linear.weight * mean / std).sum(1)).detach()
    return Head(weight.numpy().astype(np.float32), bias.numpy().astype(np.float32))


def confusion(
    truth: Sequence[int], guess: Sequence[int], classes: Sequence[str] = CLASSES
) -> dict[str, Any]:
    """A confusion matrix (rows: true class, columns: guess) with per-class and overall accuracy."""
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for t, g in zip(truth, guess, strict=True):
        matrix[t, g] += 1
    per_class = {
        name: {"n": int(matrix[i].sum()), "accuracy": float(matrix[i, i] / matrix[i].sum())}
        for i, name in enumerate(classes)
        if matrix[i].sum()
    }
    total = int(matrix.sum())
    return {
        "classes": list(classes),
        "matrix": matrix.tolist(),
        "n": total,
        "accuracy": float(np.trace(matrix) / total) if total else float("nan"),
        "per_class": per_class,
    }


def leave_one_source_out(
    table: FeatureTable, *, weight_decay: float, steps: int, evaluate_origin: str = "harvest"
) -> dict[str, Any]:
    """For each source repository of `evaluate_origin` images: fit on every other source (and
    all reconstructions), attribute that source's original files. Never evaluates on a
    repository a training image came from."""
    labels = table.labels()
    groups = np.array(table.groups())
    origins = np.array([i.origin for i in table.images])
    original = np.array([v == "original" for v in table.variants])
    truth: list[int] = []
    guess: list[int] = []
    top: list[float] = []
    sources = sorted(set(groups[origins == evaluate_origin]))
    for source in sources:
        held = groups == source
        head = fit_head(
            table.features[~held], labels[~held], weight_decay=weight_decay, steps=steps
        )
        shown = held & original
        probabilities = head.probabilities(table.features[shown])
        truth.extend(labels[shown].tolist())
        guess.extend(probabilities.argmax(1).tolist())
        top.extend(probabilities.max(1).tolist())
    report = confusion(truth, guess)
    report["sources"] = len(sources)
    report["top_probabilities"] = [round(p, 4) for p in top]
    report["correct"] = [int(t == g) for t, g in zip(truth, guess, strict=True)]
    return report


def confidence_for(real_top_probabilities: Sequence[float], share: float) -> float:
    """The least top probability shown as a guess, such that at most `share` of these real
    images (the highest-scoring real ones: the ones a moderator would see flagged) get one."""
    values = np.sort(np.asarray(real_top_probabilities, np.float64))
    if not len(values):
        raise LdmscanError("no real images to calibrate the attribution confidence on")
    # the (1 - share) quantile, nudged up so that ties at it are not shown
    cut = float(np.quantile(values, 1.0 - share, method="higher"))
    return float(np.nextafter(cut, 1.0))


def attach_head(model: torch.nn.Module, head: Head) -> torch.nn.Module:
    """The same network with the fitted attribution head inside it (`heads.py`): its forward
    returns the untouched detection logit, then the head's K logits."""
    if has_attribution_head(model):
        raise LdmscanError("this network already has an attribution head")
    add_attribution_head(model, len(head.bias))
    layer: Any = getattr(model, HEAD_NAME)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(head.weight))
        layer.bias.copy_(torch.from_numpy(head.bias))
    return model


def counts_by(images: Sequence[AttributedImage]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for image in images:
        table[image.origin][image.latent_space] += 1
    return {origin: dict(sorted(c.items())) for origin, c in sorted(table.items())}


@dataclass(frozen=True)
class AttributionConfig:
    detector: Path
    out: Path
    version: str
    harvest_manifest: Path | None = None
    harvest_root: Path | None = None
    reconstruction_dirs: tuple[Path, ...] = ()
    calibration_real: tuple[Path, ...] = ()  # real images never fitted on (photos and art)
    forbidden_manifests: tuple[Path, ...] = ()  # evaluation manifests whose sources are refused
    exclude_flags: tuple[str, ...] = ()
    jpeg_qualities: tuple[int, ...] = (70, 80, 90, 95)
    weight_decay: float = 0.1
    steps: int = 300
    # at most this share of the highest-scoring real images get a guess: those at or above the
    # card's 1% threshold, or the top `calibration_floor` when fewer are
    confidence_share: float = 0.2
    calibration_floor: int = 50
    leave_one_out: bool = True
    # features of the examples, kept for another fit with other settings (they take most of
    # the time); reused only for the same detector file, examples and JPEG qualities
    features_cache: Path | None = None


def train_attribution(
    config: AttributionConfig, on_progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Fit the head, measure it leave-one-source-out, calibrate its confidence on real images,
    and write the detector with the head (thresholds and detection output unchanged)."""
    import dataclasses
    import time

    from ldmscan.detector import load_detector, save_detector, stored_in_half_precision
    from ldmscan.engine import sigmoid
    from ldmscan.walk import iter_candidates

    from .trainset import forbidden_sources

    started = time.perf_counter()
    say = on_progress or (lambda _what: None)
    detector = load_detector(config.detector)
    card = detector.card
    if card.attribution:
        raise LdmscanError(
            f"{config.detector} already has an attribution head; train from the detector "
            "without one"
        )
    tries = card.default_tries
    images: list[AttributedImage] = []
    if config.harvest_manifest is not None:
        images += harvested(
            config.harvest_manifest,
            config.harvest_root or config.harvest_manifest.parent,
            config.exclude_flags,
        )
    for folder in config.reconstruction_dirs:
        images += reconstructions(folder)
    refused = forbidden_sources(config.forbidden_manifests)
    leaking = sorted({i.group for i in images if i.group in refused})
    if leaking:
        raise LdmscanError(f"refusing examples from evaluation sources: {', '.join(leaking)}")
    if len({i.latent_space for i in images}) < 2:
        raise LdmscanError("attribution needs examples of at least two latent spaces")
    reader = FeatureReader(detector, tries)
    say(f"features of {len(images)} images")
    table = load_table(config.features_cache, images, detector.sha256, config.jpeg_qualities)
    if table is None:
        table = read_features(
            reader,
            images,
            jpeg_qualities=config.jpeg_qualities,
            on_progress=lambda i, n: say(f"features {i}/{n}") if i % 50 == 0 else None,
        )
        if config.features_cache is not None:
            save_table(config.features_cache, table, images, detector.sha256, config.jpeg_qualities)
    present = [c for c in CLASSES if c in {i.latent_space for i in table.images}]
    originals = [i for i, v in zip(table.images, table.variants, strict=True) if v == "original"]
    report: dict[str, Any] = {"examples": counts_by(originals), "classes": present}
    if config.leave_one_out and any(i.origin == "harvest" for i in table.images):
        say("leave-one-source-out")
        report["leave_one_source_out"] = leave_one_source_out(
            table, weight_decay=config.weight_decay, steps=config.steps
        )
    say("fitting the head")
    head = fit_head(
        table.features, table.labels(), weight_decay=config.weight_decay, steps=config.steps
    )
    # confidence: the highest-scoring real images are those a moderator sees flagged; at most
    # `confidence_share` of them may get a guess
    reals = list(iter_candidates(list(config.calibration_real)))
    scored: list[tuple[float, float]] = []
    for index, path in enumerate(reals):
        try:
            features, outputs = reader(imaging.read_file(path))
        except (ImageError, OSError, ValueError) as exc:
            log.warning("%s: skipped (%s)", path, exc)
            continue
        probability = sigmoid(float(outputs[:, 0].mean()))
        top = float(head.probabilities(features[None]).max())
        scored.append((probability, top))
        if index % 100 == 0:
            say(f"calibrating on real images {index}/{len(reals)}")
    if not scored:
        raise LdmscanError("no real images to calibrate the attribution confidence on")
    uncertain = card.thresholds_for(tries).uncertain if card.thresholds else 0.5
    flagged = [top for p, top in scored if p >= uncertain]
    ranked = [top for _p, top in sorted(scored, reverse=True)]
    basis = (
        flagged if len(flagged) >= config.calibration_floor else ranked[: config.calibration_floor]
    )
    confidence = confidence_for(basis, config.confidence_share)
    report["confidence"] = {
        "value": confidence,
        "real_images": len(scored),
        "flagged_real_images": len(flagged),
        "calibrated_on": len(basis),
        "rule": f"at most {config.confidence_share:.0%} of the {len(basis)} highest-scoring real "
        f"images (pixel score >= the {tries}-try 1% threshold, or the top "
        f"{config.calibration_floor} when fewer are flagged) get a guess",
    }
    loso = report.get("leave_one_source_out")
    if loso:
        shown = [
            c
            for c, p in zip(loso["correct"], loso["top_probabilities"], strict=True)
            if p >= confidence
        ]
        loso["at_confidence"] = {
            "shown": len(shown),
            "of": loso["n"],
            "accuracy": float(np.mean(shown)) if shown else float("nan"),
        }
    model = attach_head(detector.model, head)
    new_card = dataclasses.replace(
        card,
        version=config.version,
        attribution={
            "classes": list(CLASSES),
            "confidence": round(confidence, 6),
            "recipe": {
                "method": "multinomial logistic regression on the frozen detector's stage "
                "statistics (per-channel mean and std of every stage), averaged over "
                f"its {tries} crops per image; classes balanced; L2 "
                f"{config.weight_decay:g}; each image also once as JPEG at a quality drawn from "
                f"{list(config.jpeg_qualities)}",
                "examples": report["examples"],
                "harvest_sources": len({i.group for i in table.images if i.origin == "harvest"}),
            },
            "metrics": {
                k: {kk: vv for kk, vv in v.items() if kk not in ("top_probabilities", "correct")}
                if isinstance(v, dict)
                else v
                for k, v in report.items()
                if k in ("leave_one_source_out", "confidence")
            },
        },
        notes=(
            f"{config.version}: {card.version} with an attribution head (which latent space: "
            f"{', '.join(CLASSES)}) over the same backbone; detection weights and thresholds "
            f"unchanged. {card.notes}"
        ).strip(),
    )
    say("writing the detector")
    sha = save_detector(model, new_card, config.out, half=stored_in_half_precision(config.detector))
    report["detector"] = {"path": str(config.out), "sha256": sha, "version": config.version}
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


# dev/held-out generator names -> latent space, first match wins; None: an autoencoder outside
# the classes (Kandinsky's MoVQ, Stable Cascade, Cosmos's Wan VAE) or not known (Midjourney)
LATENT_SPACE_KEYWORDS: tuple[tuple[str, str | None], ...] = (
    ("kandinsky", None),
    ("cascade", None),
    ("wuerstchen", None),
    ("cosmos", None),
    ("midjourney", None),
    ("latent diffusion", None),  # LDM's own KL-f8 release, not SD's fine-tuned decoder
    ("hunyuan", "sdxl"),  # Hunyuan-DiT decodes with the SDXL VAE (fp16-fix)
    ("kolors", "sdxl"),  # Kolors ships the SDXL VAE
    ("flux.2", "flux2"),
    ("flux2", "flux2"),
    ("flux", "flux1"),
    ("chroma", "flux1"),  # a FLUX.1-schnell derivative
    ("z-image", "flux1"),  # these four decode with the FLUX.1 autoencoder
    ("lumina", "flux1"),
    ("hidream", "flux1"),
    ("omnigen", "flux1"),
    ("sd3", "sd3"),
    ("stable diffusion 3", "sd3"),
    ("sdxl", "sdxl"),
    ("cosxl", "sdxl"),
    ("sd 2", "sd1-2"),
    ("stable diffusion 2", "sd1-2"),
    ("sd 1", "sd1-2"),
    ("stable diffusion v1", "sd1-2"),
)


def latent_space_of(generator: str) -> str | None:
    name = generator.lower()
    for keyword, space in LATENT_SPACE_KEYWORDS:
        if keyword in name:
            return space
    return None


def crop_outputs(engine: Any, data: bytes, tries: int) -> np.ndarray | None:
    """The network's outputs (tries x (1 + K)) for the crops the engine takes of one image, or
    None when it cannot be scored. Unlike a verdict, nothing is gated by the confidence."""
    from ldmscan.results import CheckResult

    prepared = engine.preparer.prepare(data, tries)
    if isinstance(prepared, CheckResult):
        return None
    rows = []
    for shape in dict.fromkeys(c.shape for c in prepared.crops):
        rows.append(engine.outputs(np.stack([c for c in prepared.crops if c.shape == shape])))
    return np.concatenate(rows)


def evaluate_attribution(
    detector: Detector,
    items: Sequence[Any],
    *,
    tries_list: Sequence[int],
    variants: Sequence[str] = ("original", "reencoded_jpeg90"),
    device: str = "auto",
) -> dict[str, Any]:
    """Attribution on labelled images (evaluate.Item: path, label, generator): per tries count
    and variant, the confusion matrix over generated images the detector flags (pixel score >=
    the card's 1% threshold) and over all mapped ones, how many get a guess at the card's
    confidence and how right those are, and how often a flagged real image gets one."""
    from ldmscan.engine import Engine, EngineOptions, aggregate, sigmoid

    from .evaluate import degrade

    card = detector.card
    classes = card.attribution_classes
    confidence = float(card.attribution.get("confidence", 0.0))
    mapped = [(i, latent_space_of(i.generator) if i.label else None) for i in items]
    used = [(i, s) for i, s in mapped if i.label == 0 or s in classes]
    report: dict[str, Any] = {
        "classes": list(classes),
        "confidence": confidence,
        "unmapped_generators": sorted({i.generator for i, s in mapped if i.label and s is None}),
        "modes": {},
    }
    with Engine(detector, EngineOptions(device=device)) as engine:
        for tries in tries_list:
            uncertain = card.thresholds_for(tries).uncertain
            for variant in variants:
                truth_flagged, guess_flagged, truth_all, guess_all = [], [], [], []
                shown_right, real_flagged, real_shown = [], 0, 0
                for item, space in used:
                    try:
                        data = degrade(imaging.read_file(item.path), variant)
                    except (ImageError, OSError) as exc:
                        log.warning("%s: %s", item.path, exc)
                        continue
                    outputs = crop_outputs(engine, data, tries)
                    if outputs is None:
                        continue
                    # the engine's own aggregation and softmax, without its confidence gate
                    probability = sigmoid(aggregate(outputs[:, 0].tolist(), card.aggregation))
                    shares = list(class_probabilities(outputs[:, 1:].tolist(), classes).values())
                    top, guess = max(shares), shares.index(max(shares))
                    flagged = probability >= uncertain
                    if item.label == 0:
                        real_flagged += flagged
                        real_shown += flagged and top >= confidence
                        continue
                    truth = classes.index(space)
                    truth_all.append(truth)
                    guess_all.append(guess)
                    if flagged:
                        truth_flagged.append(truth)
                        guess_flagged.append(guess)
                        if top >= confidence:
                            shown_right.append(int(guess == truth))
                report["modes"].setdefault(f"{tries}_tries", {})[variant] = {
                    "flagged": confusion(truth_flagged, guess_flagged, classes),
                    "all": confusion(truth_all, guess_all, classes),
                    "shown": {
                        "n": len(shown_right),
                        "of_flagged": len(truth_flagged),
                        "accuracy": float(np.mean(shown_right)) if shown_right else float("nan"),
                    },
                    "real_flagged": real_flagged,
                    "real_flagged_with_guess": real_shown,
                }
    return report
