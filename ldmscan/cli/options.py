"""Option blocks shared by the commands, and the one place they become core objects."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..config import ENV_PREFIX

# networks.RUNTIMES, spelled out so that `--help` need not import numpy (tests check they agree)
CLI_RUNTIMES = ("auto", "onnx", "openvino", "openvino-bf16", "torch")

if TYPE_CHECKING:
    from ..engine import Engine, EngineOptions

F = TypeVar("F", bound=Callable[..., Any])

DB_HELP = (
    "database URL (sqlite:///file.db or postgresql://...); default: a SQLite file in the user "
    f"data directory; env {ENV_PREFIX}_DB"
)

db_option = click.option("--db", envvar=f"{ENV_PREFIX}_DB", help=DB_HELP)
device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto picks CUDA when a GPU is present, else cpu",
)


def engine_options(func: F) -> F:
    """The options every scoring command shares (scan, watch, serve)."""
    options = [
        click.option(
            "--detector",
            type=click.Path(dir_okay=False, path_type=Path),
            help="detector file (.safetensors with an ldmscan card); default: the shipped one",
        ),
        device_option,
        click.option(
            "--runtime",
            type=click.Choice(CLI_RUNTIMES),
            default="auto",
            show_default=True,
            help="what runs the network: onnx (ONNX Runtime, CPU), openvino (CPU, float32, the "
            "same scores, faster; the openvino extra), openvino-bf16 (CPU, bfloat16 where the "
            "CPU has it: faster again, scores within ~0.2 logit) or torch (GPU, --compile, files "
            "without a stored graph); auto: openvino, else onnx, on a CPU when the file has a "
            "graph, else torch",
        ),
        click.option(
            "--tries",
            type=click.IntRange(1, 64),
            help="crops scored per image (placed as the detector's card says); default: the card's",
        ),
        click.option(
            "--generated-fpr",
            type=float,
            default=0.001,
            show_default=True,
            help="false-positive rate whose threshold labels an image generated",
        ),
        click.option(
            "--uncertain-fpr",
            type=float,
            default=0.01,
            show_default=True,
            help="false-positive rate whose threshold labels an image uncertain",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1, 1024),
            help="most crops per model call (default: 16 with torch on a CPU, 64 on a GPU, else 8)",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1, 64),
            default=2,
            show_default=True,
            help="decoding threads",
        ),
        click.option(
            "--max-pixels",
            type=click.IntRange(1),
            default=100_000_000,
            show_default=True,
            help="larger images are recorded as errors (decompression bombs)",
        ),
        click.option(
            "--compile",
            "compile_model",
            is_flag=True,
            help="torch.compile the network (GPU runs; the first batches pay for compiling)",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@dataclass(frozen=True)
class EngineChoice:
    """What `engine_options` gathered: the detector file and the engine's settings."""

    detector: Path | None
    options: EngineOptions

    def build(self) -> Engine:
        from ..detector import load_detector
        from ..engine import Engine

        return Engine(load_detector(self.detector), self.options)


def engine_choice(
    kw: dict[str, Any], *, max_pending: int | None = None, max_wait_ms: float | None = None
) -> EngineChoice:
    """Pops the `engine_options` values out of a command's keyword arguments."""
    from ..engine import EngineOptions

    if kw["generated_fpr"] >= kw["uncertain_fpr"]:
        raise click.BadParameter(
            f"--generated-fpr ({kw['generated_fpr']:g}) must be below --uncertain-fpr "
            f"({kw['uncertain_fpr']:g}): generated is the stricter label",
            param_hint="--generated-fpr",
        )
    options = EngineOptions(
        device=kw.pop("device"),
        runtime=kw.pop("runtime"),
        tries=kw.pop("tries"),
        generated_fpr=kw.pop("generated_fpr"),
        uncertain_fpr=kw.pop("uncertain_fpr"),
        max_batch=kw.pop("batch_size"),
        decode_workers=kw.pop("workers"),
        max_pixels=kw.pop("max_pixels"),
        compile_model=kw.pop("compile_model"),
    )
    if max_pending is not None:
        options = dataclasses.replace(options, max_pending=max_pending)
    if max_wait_ms is not None:
        options = dataclasses.replace(options, max_wait_ms=max_wait_ms)
    return EngineChoice(kw.pop("detector"), options)
