"""`ldmscan scan`: files, folders and buckets through the core's Recorder, with a progress bar."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from ..errors import DistributedScanError
from ..paths import display_uri
from ..verdict import Label
from .options import db_option, engine_choice, engine_options
from .render import progress, scan_summary

if TYPE_CHECKING:
    from ..engine import Engine
    from ..recording import Input


@click.command()
@click.argument("paths", nargs=-1, required=True)
@db_option
@engine_options
@click.option(
    "--rescan", is_flag=True, help="score files again even if this detector has a verdict"
)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per file on stdout")
@click.option(
    "--fail-on",
    type=click.Choice(["generated", "uncertain", "error"]),
    help="exit 1 when any file gets this label (uncertain includes generated; error: any file "
    "that could not be scored)",
)
@click.option(
    "--endpoint-url",
    envvar="AWS_ENDPOINT_URL",
    help="S3-compatible endpoint for s3:// URLs (MinIO, Ceph, ...); credentials come from the "
    "usual AWS variables",
)
@click.option(
    "--ray",
    "use_ray",
    is_flag=True,
    help="score on a Ray cluster (RAY_ADDRESS or --ray-address; none: a local one): CPU tasks "
    "decode, one detector per actor scores (a GPU each when the cluster has them), this "
    "process writes the verdicts; needs the ray extra",
)
@click.option(
    "--ray-address", envvar="RAY_ADDRESS", help="the Ray cluster to join (ray://host:10001, auto)"
)
@click.option(
    "--ray-actors",
    type=click.IntRange(1, 4096),
    help="scoring actors (default: one per GPU of the cluster, else 1)",
)
def scan(
    paths: tuple[str, ...],
    db: str | None,
    rescan: bool,
    as_json: bool,
    fail_on: str | None,
    endpoint_url: str | None,
    use_ray: bool,
    ray_address: str | None,
    ray_actors: int | None,
    **engine_kw: Any,
) -> None:
    """Scan files, folders (recursively) and buckets (s3://bucket/prefix); record a verdict
    for every image."""
    from rich.console import Console
    from rich.markup import escape

    from ..recording import Recorder
    from ..storage import Store
    from ..walk import iter_candidates

    console = Console(stderr=True)
    choice = engine_choice(engine_kw)
    if use_ray:
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise click.UsageError("--ray needs Ray: pip install 'ldmscan[ray]'") from exc
    with console.status("loading detector and database"):
        store = Store(db)
        if use_ray:
            from ..detector import load_detector

            detector = load_detector(choice.detector)
            engine: Engine | None = None
        else:
            engine = choice.build()
            detector = engine.detector
    from ..scanner.buckets import is_url, iter_remote

    urls = [p for p in paths if is_url(p)]
    missing = [p for p in paths if not is_url(p) and not os.path.lexists(os.path.expanduser(p))]
    # a missing path gets the one "no such file or folder" line at the end, not a second one here
    missing_uris = {os.path.abspath(os.path.expanduser(p)) for p in missing}
    files: list[Input] = list(iter_candidates([p for p in paths if not is_url(p)]))
    if urls:
        files.extend(iter_remote(urls, endpoint_url))
    detector_name = f"{detector.card.name}@{detector.card.version}"
    counts: dict[str, int] = {}
    flagged = False
    started = time.perf_counter()
    with engine or contextlib.nullcontext(), store:
        if engine is not None:
            outcomes = Recorder(engine, store, rescan=rescan).scan(files)
        else:
            from ..scanner.distributed import RayOptions, ray_scan

            ray_options = RayOptions(address=ray_address, actors=ray_actors)
            outcomes = ray_scan(files, store, detector, choice.options, ray_options, rescan=rescan)
        with progress(console, as_json) as bar:
            ray_label = f"scanning on Ray, {len(files)} listed"
            task = bar.add_task(ray_label if use_ray else "scanning", total=len(files))
            failed = 0
            try:
                for outcome in outcomes:
                    key = "skipped" if outcome.skipped else outcome.label.value
                    counts[key] = counts.get(key, 0) + 1
                    if outcome.skipped:
                        counts[f"skipped:{outcome.label.value}"] = (
                            counts.get(f"skipped:{outcome.label.value}", 0) + 1
                        )
                    flagged = flagged or _fails(outcome.label, fail_on)
                    if as_json:
                        click.echo(json.dumps(outcome.to_json(detector_name)))
                    elif outcome.error and outcome.uri not in missing_uris:
                        where = escape(display_uri(outcome.uri))
                        bar.console.print(f"[yellow]error[/] {where}: {escape(outcome.error)}")
                    if use_ray and outcome.label is Label.ERROR and not outcome.skipped:
                        failed += 1
                        bar.update(task, description=f"{ray_label}, {failed} failed")
                    bar.advance(task)
            except DistributedScanError as exc:
                bar.stop()
                click.echo(f"Error: {exc}", err=True)
                for uri in exc.unscored:  # every key, so a pipeline can act on exactly these
                    click.echo(f"not scored: {display_uri(uri)}", err=True)
                sys.exit(1)
            elapsed = bar.tasks[0].elapsed or (time.perf_counter() - started)
    scan_summary(console, counts, len(files), elapsed, detector_name, store.safe_url)
    if missing:  # a pipeline must see a typo in a path, not a clean run
        shown = ", ".join(display_uri(p) for p in missing)
        click.echo(f"Error: no such file or folder: {shown}", err=True)
        sys.exit(2)
    if flagged:
        sys.exit(1)


def _fails(label: Label, fail_on: str | None) -> bool:
    if fail_on == "error":
        return label is Label.ERROR
    if fail_on == "uncertain":
        return label in (Label.GENERATED, Label.UNCERTAIN)
    return fail_on == "generated" and label is Label.GENERATED
