"""Fit a timm detector on aligned (photo, reconstruction) pairs and write a detector file."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ldmscan import __version__
from ldmscan.detector import Detector, DetectorCard, build_model, file_sha256, save_detector
from ldmscan.errors import LdmscanError
from ldmscan.preprocess import Normaliser

from .backbones import load_initial_weights
from .labelled import LabelledDataset, find_labelled
from .pairs import Augment, Pair, PairDataset, find_pairs, is_holdout

log = logging.getLogger(__name__)


@dataclass
class FitConfig:
    real: str | None
    reconstructions: list[str]
    out: str
    # labelled images (training.labelled): folders of generated images and of real ones
    positives: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)
    labelled_batch: int = 16  # labelled images per step, beside batch_pairs pairs
    thumbnail: int | None = None  # content-only baseline: whole images at this side
    training_set: str | None = None  # the audit file (training.trainset) the folders came from
    name: str = "ldmscan-detector"
    version: str = "0.1.0"
    architecture: str = "tf_efficientnet_lite0"
    init: str = "imagenet-lite0"
    stem_stride: int | None = 1
    crop_size: int = 128  # training crops
    score_crop_size: int = 192  # what the engine scores; a fully convolutional net takes both
    default_tries: int = 5
    placement: str = "smoothest"  # where the engine puts crops (ldmscan.detector.PLACEMENTS)
    steps: int = 1000
    batch_pairs: int = 16
    lr: float = 5e-4
    weight_decay: float = 0.02
    warmup_steps: int = 50
    holdout: float = 0.15  # share of photos kept out of training, for validation + calibration
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 200
    augment: dict[str, Any] = field(default_factory=lambda: dataclasses.asdict(Augment()))
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


def split_pairs(pairs: list[Pair], holdout: float) -> tuple[list[Pair], list[Pair]]:
    train = [p for p in pairs if not is_holdout(p.source, holdout)]
    held = [p for p in pairs if is_holdout(p.source, holdout)]
    return train, held


def crop_auc(
    model: torch.nn.Module,
    dataset: PairDataset,
    device: str,
    normalise: Normaliser,
    batch_pairs: int = 16,
) -> float:
    """ROC-AUC of crop scores on held-out pairs (a quick health check, not the image metric)."""
    from sklearn.metrics import roc_auc_score

    model.eval()
    scores, labels = [], []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_pairs):
            items = [dataset[i] for i in range(start, min(start + batch_pairs, len(dataset)))]
            pixels = torch.cat([x for x, _ in items]).to(device)
            target = torch.cat([y for _, y in items])
            scores.extend(model(normalise(pixels)).float().view(-1).cpu().tolist())
            labels.extend(target.tolist())
    model.train()
    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")


def fit(
    config: FitConfig,
    on_step: Callable[[int, int, float], None] | None = None,
    resume: bool = False,
) -> Path:
    from ldmscan.allocator import keep_large_buffers_in_heap
    from ldmscan.networks import select_device

    keep_large_buffers_in_heap()  # activation buffers are reused instead of re-faulted
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    work = out.with_suffix("") if out.suffix else out
    work = work.parent / f"{work.name}.work"
    work.mkdir(parents=True, exist_ok=True)
    (work / "fit-config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))

    pairs: list[Pair] = []
    if config.reconstructions:
        if not config.real:
            raise LdmscanError("--reconstructions needs --real (the photos they were made from)")
        pairs = find_pairs(Path(config.real), [Path(p) for p in config.reconstructions])
    train_pairs, held_pairs = split_pairs(pairs, config.holdout)
    labelled = find_labelled(
        [Path(p) for p in config.positives], [Path(p) for p in config.negatives]
    )
    if not train_pairs and not labelled:
        raise LdmscanError(
            "nothing to train on: give --real with --reconstructions, and/or --positives with "
            "--negatives"
        )
    if pairs and config.thumbnail:
        raise LdmscanError("the thumbnail baseline trains on labelled images only")
    # Augment's own fields, back from a JSON round-trip (lists where it has tuples)
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in config.augment.items()
    }
    aug = Augment(**fields)
    batch_size = config.batch_pairs if train_pairs else 0
    streams: list[tuple[Any, int]] = []  # (dataset, items per step)
    if train_pairs:
        train_set = PairDataset(
            train_pairs,
            config.crop_size,
            aug,
            seed=config.seed,
            samples_per_epoch=max(len(train_pairs), batch_size),
        )
        streams.append((train_set, batch_size))
    labelled_set = None
    if labelled:
        labelled_set = LabelledDataset(
            labelled,
            config.crop_size,
            aug,
            seed=config.seed,
            samples_per_epoch=max(len(labelled), config.labelled_batch),
            thumbnail_side=config.thumbnail,
        )
        streams.append((labelled_set, config.labelled_batch))
    log.info(
        "%d training pairs, %d held out; %d labelled images (%d generated)",
        len(train_pairs),
        len(held_pairs),
        len(labelled),
        sum(i.label for i in labelled),
    )

    card = DetectorCard(
        name=config.name,
        version=config.version,
        architecture=config.architecture,
        crop_size=config.thumbnail or config.score_crop_size,
        mean=config.mean,
        std=config.std,
        stem_stride=config.stem_stride,
        default_tries=config.default_tries,
        placement=config.placement,
    )
    model = build_model(card)
    init_loaded = load_initial_weights(model, config.init)
    model.to(device)
    cuda = device.startswith("cuda")
    # channels-last on CPU too: oneDNN's depthwise convolutions train faster in it
    # (benchmarks/bench_cpu_settings.py)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )

    def lr_at(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    step = 0
    checkpoint = work / "checkpoint.pt"
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        log.info("resumed at step %d", step)

    normalise = Normaliser(config.mean, config.std, device)  # the engine's, from the card
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses: list[float] = []
    for dataset, _ in streams:
        dataset.preload()
    started = time.perf_counter()
    model.train()

    def batches(dataset: PairDataset | LabelledDataset, per_step: int) -> Iterator[Any]:
        """Endless batches; each pass is a fresh augmentation draw, reproducible on resume."""
        epoch = step
        while True:
            dataset.epoch = epoch
            yield from DataLoader(
                dataset,
                batch_size=per_step,
                shuffle=True,
                num_workers=config.workers,
                drop_last=True,
                generator=torch.Generator().manual_seed(config.seed + epoch),
                persistent_workers=False,
                pin_memory=cuda,
            )
            epoch += 1

    iterators = [batches(dataset, per_step) for dataset, per_step in streams]
    while step < config.steps:
        drawn = [next(it) for it in iterators]
        pixels = torch.cat([p.flatten(0, 1) for p, _ in drawn]).to(device, non_blocking=True)
        target = torch.cat([t.flatten() for _, t in drawn]).to(device)
        inputs = normalise(pixels)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", enabled=cuda):
            loss = loss_fn(model(inputs).view(-1).float(), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        losses.append(loss.item())
        if on_step:
            on_step(step, config.steps, float(np.mean(losses[-20:])))
        if step % 50 == 0:  # the progress bar is invisible in a log file; this is not
            log.info(
                "step %d/%d loss %.4f lr %.2e %.2fs/step",
                step,
                config.steps,
                float(np.mean(losses[-50:])),
                scheduler.get_last_lr()[0],
                (time.perf_counter() - started) / max(1, len(losses)),
            )
        if step % config.checkpoint_every == 0 or step >= config.steps:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "step": step,
                },
                checkpoint,
            )

    metrics: dict[str, Any] = {
        "final_train_loss": float(np.mean(losses[-50:])) if losses else None,
        "train_pairs": len(train_pairs),
        "heldout_pairs": len(held_pairs),
        "labelled_images": {
            "generated": len(labelled_set.by_label[1]) if labelled_set else 0,
            "real": len(labelled_set.by_label[0]) if labelled_set else 0,
            "skipped": len(labelled_set.skipped) if labelled_set else 0,
        },
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    model = model.to(memory_format=torch.contiguous_format)
    if held_pairs:
        held_set = PairDataset(held_pairs, config.score_crop_size, Augment.none(), seed=1)
        metrics["heldout_crop_auc"] = crop_auc(model, held_set, device, normalise)
    card.recipe = {
        **dataclasses.asdict(config),
        "init_loaded": init_loaded,
        "ldmscan_version": __version__,
        "autoencoders": sorted({p.autoencoder for p in pairs}),
    }
    if config.training_set:
        from .trainset import counts, read_tsv

        card.recipe["training_set_counts"] = counts(read_tsv(Path(config.training_set)))
        card.recipe["training_set_sha256"] = file_sha256(Path(config.training_set))
    card.metrics = {"fit": metrics}
    model.eval().cpu()
    sha = save_detector(model, card, out)
    log.info("wrote %s (%s)", out, sha[:12])
    return out


def heldout_real_paths(config: FitConfig) -> list[Path]:
    """The photos fit() never trained on (the same stable split), for calibration."""
    if not config.real or not config.reconstructions:
        return []
    pairs = find_pairs(Path(config.real), [Path(p) for p in config.reconstructions])
    sources = sorted({p.real_path for p in pairs if is_holdout(p.source, config.holdout)})
    return sources


def detector_from_fit(out: Path) -> Detector:
    from ldmscan.detector import load_detector

    detector = load_detector(out)
    assert detector.sha256 == file_sha256(out)
    return detector
