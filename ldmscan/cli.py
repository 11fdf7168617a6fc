"""The `ldmscan` command: a thin click layer that builds settings once and wires the core to the
scanner, server and training packages. Heavy modules are imported inside the commands."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click

from . import __version__
from .config import ENV_PREFIX, load_default_map
from .errors import LdmscanError

DB_HELP = (
    "database URL (sqlite:///file.db or postgresql://...); default: a SQLite file in the user "
    f"data directory; env {ENV_PREFIX}_DB"
)


class CliGroup(click.Group):
    """Turns LdmscanError into a one-line message and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LdmscanError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)


def engine_options(func):
    options = [
        click.option(
            "--detector",
            type=click.Path(dir_okay=False, path_type=Path),
            help="detector file (.safetensors with an ldmscan card); default: the shipped one",
        ),
        click.option(
            "--device",
            default="auto",
            show_default=True,
            help="auto picks CUDA when a GPU is present, else cpu",
        ),
        click.option(
            "--tries",
            type=click.IntRange(1, 64),
            help="crops scored per image (1 = one central crop); default: the detector's",
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
        click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True),
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
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_engine(
    detector, device, tries, generated_fpr, uncertain_fpr, batch_size, workers, max_pixels, **extra
):
    from .detector import load_detector
    from .engine import Engine

    return Engine(
        load_detector(detector),
        device=device,
        tries=tries,
        generated_fpr=generated_fpr,
        uncertain_fpr=uncertain_fpr,
        max_batch=batch_size,
        decode_workers=workers,
        max_pixels=max_pixels,
        **extra,
    )


@click.group(
    cls=CliGroup,
    context_settings={"auto_envvar_prefix": ENV_PREFIX, "help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="ldmscan")
@click.option("-v", "--verbose", count=True, help="more log output (-vv for debug)")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Find images made by latent diffusion models, from the fingerprint of their autoencoder."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if ctx.default_map is None:
        ctx.default_map = load_default_map()


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--db", envvar=f"{ENV_PREFIX}_DB", help=DB_HELP)
@engine_options
@click.option(
    "--rescan", is_flag=True, help="score files again even if this detector has a verdict"
)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per file on stdout")
@click.option(
    "--fail-on",
    type=click.Choice(["generated", "uncertain"]),
    help="exit 1 when any file gets this label (uncertain includes generated)",
)
@click.option(
    "--endpoint-url",
    envvar="AWS_ENDPOINT_URL",
    help="S3-compatible endpoint for s3:// URLs (MinIO, Ceph, ...); credentials come from the "
    "usual AWS variables",
)
def scan(paths, db, rescan, as_json, fail_on, endpoint_url, **engine_kw) -> None:
    """Scan files, folders (recursively) and buckets (s3://bucket/prefix); record a verdict
    for every image."""
    from rich.console import Console

    from scanner.scan import Scanner
    from scanner.walk import iter_candidates

    from .storage import Store

    console = Console(stderr=True)
    with console.status("loading detector and database"):
        store = Store(db)
        engine = build_engine(**engine_kw)
    from scanner.buckets import is_url, iter_remote

    urls = [p for p in paths if is_url(p)]
    files = list(iter_candidates([p for p in paths if not is_url(p)]))
    if urls:
        files.extend(iter_remote(urls, endpoint_url))
    detector_name = f"{engine.card.name}@{engine.card.version}"
    counts: dict[str, int] = {}
    flagged = False
    started = time.perf_counter()
    with engine, store:
        scanner = Scanner(engine, store, rescan=rescan)
        with _progress(console, as_json) as progress:
            task = progress.add_task("scanning", total=len(files))
            for outcome in scanner.scan(files):
                key = "skipped" if outcome.skipped else outcome.label
                counts[key] = counts.get(key, 0) + 1
                if outcome.skipped:
                    counts[f"skipped:{outcome.label}"] = (
                        counts.get(f"skipped:{outcome.label}", 0) + 1
                    )
                if fail_on and (
                    outcome.label == "generated"
                    or (fail_on == "uncertain" and outcome.label == "uncertain")
                ):
                    flagged = True
                if as_json:
                    click.echo(json.dumps(outcome.to_json(detector_name)))
                elif outcome.error:
                    progress.console.print(f"[yellow]error[/] {outcome.uri}: {outcome.error}")
                progress.advance(task)
    elapsed = time.perf_counter() - started
    _summary(console, counts, len(files), elapsed, detector_name, store.safe_url)
    if flagged:
        sys.exit(1)


def _progress(console, quiet: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class RateColumn(TextColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return f"{speed or 0:.1f} files/s"

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(""),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet and not console.is_terminal,
    )


def _summary(console, counts, total, elapsed, detector, db_url) -> None:
    from rich.table import Table

    rate = total / elapsed if elapsed > 0 else 0.0
    table = Table(title="ldmscan scan")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    for key in ("generated", "uncertain", "real", "error", "skipped"):
        if counts.get(key):
            label = key
            if key == "skipped":
                parts = [
                    f"{counts[k]} {k.split(':')[1]}"
                    for k in sorted(counts)
                    if k.startswith("skipped:")
                ]
                label = f"skipped, already scored ({', '.join(parts)})"
            table.add_row(label, str(counts[key]))
    console.print(table)
    console.print(f"{total} files in {elapsed:.1f}s ({rate:.1f} files/s), detector {detector}")
    console.print(f"verdicts stored in {db_url}")


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="address to bind; anything but loopback requires auth",
)
@click.option("--port", type=int, default=8422, show_default=True)
@click.option("--db", envvar=f"{ENV_PREFIX}_DB", help=DB_HELP)
@engine_options
@click.option("--no-auth", is_flag=True, help="no bearer token (only with a loopback --host)")
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="browser-extension origin allowed to call the API, e.g. chrome-extension://ID",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(1),
    default=50 * 1024 * 1024,
    show_default=True,
    help="largest request body",
)
@click.option(
    "--timeout",
    "request_timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="seconds a check may take before 504",
)
@click.option(
    "--max-pending",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="images queued before requests get 429",
)
@click.option(
    "--max-wait-ms",
    type=float,
    default=10.0,
    show_default=True,
    help="how long the engine waits to fill a batch",
)
@click.option(
    "--watch",
    "watch_folders",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="also watch this folder, feeding the same engine and database",
)
def serve(
    watch_folders,
    host,
    port,
    db,
    no_auth,
    cors_origins,
    max_bytes,
    request_timeout,
    max_pending,
    max_wait_ms,
    **engine_kw,
) -> None:
    """Run the HTTP API the browser extension and other clients call."""
    from aiohttp import web

    from server import ServerSettings, make_app
    from server.auth import is_loopback, load_or_create_token, token_path

    from .storage import Store

    if no_auth and not is_loopback(host):
        raise click.UsageError("--no-auth is only allowed with a loopback --host")
    token = None if no_auth else load_or_create_token()
    store = Store(db)
    engine = build_engine(**engine_kw, max_pending=max_pending, max_wait_ms=max_wait_ms)
    settings = ServerSettings(
        token=token,
        cors_origins=frozenset(cors_origins),
        max_bytes=max_bytes,
        request_timeout=request_timeout,
    )
    services = []
    if watch_folders:
        from scanner.scan import Scanner
        from scanner.watch import FolderWatcher

        services.append(FolderWatcher(list(watch_folders), Scanner(engine, store, source="watch")))
    app = make_app(engine, store, settings, services)
    click.echo(
        f"ldmscan {__version__} serving on http://{host}:{port} "
        f"(detector {engine.card.name}@{engine.card.version}, {engine.device}; "
        f"{'no auth' if no_auth else f'token in {token_path()}'})",
        err=True,
    )
    try:
        web.run_app(app, host=host, port=port, print=None, access_log=None)
    finally:
        engine.close()
        store.close()


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--db", envvar=f"{ENV_PREFIX}_DB", help=DB_HELP)
@engine_options
@click.option(
    "--endpoint-url", envvar="AWS_ENDPOINT_URL", help="S3-compatible endpoint for s3:// URLs"
)
@click.option("--polling", is_flag=True, help="poll instead of inotify (network shares)")
@click.option(
    "--interval",
    type=float,
    help="seconds between polls: folders with --polling (default 1), buckets (default 30)",
)
@click.option(
    "--settle",
    type=float,
    default=1.0,
    show_default=True,
    help="a file unchanged this many seconds counts as complete",
)
@click.option(
    "--quarantine",
    type=click.Path(file_okay=False, path_type=Path),
    help="move files labelled generated into this folder",
)
@click.option("--webhook", help="POST each verdict as JSON to this URL (retried, never blocking)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per verdict on stdout")
def watch(
    targets, db, endpoint_url, polling, interval, settle, quarantine, webhook, as_json, **engine_kw
):
    """Watch folders or buckets (s3://bucket/prefix): every new or changed image gets a verdict,
    none lost across restarts."""
    from scanner.buckets import BucketWatcher, is_url

    urls = [t for t in targets if is_url(t)]
    folders = [Path(t) for t in targets if not is_url(t)]
    if urls and folders:
        raise click.UsageError("watch either folders or bucket URLs, not both at once")
    if urls and quarantine:
        raise click.UsageError("--quarantine moves local files; it does not apply to buckets")
    for folder in folders:
        if not folder.is_dir():
            raise click.UsageError(f"not a folder: {folder}")
    import signal

    from scanner.actions import Quarantine, Webhook
    from scanner.scan import Scanner
    from scanner.watch import FolderWatcher

    from .storage import Store

    store = Store(db)
    engine = build_engine(**engine_kw)
    detector_name = f"{engine.card.name}@{engine.card.version}"
    actions = []
    if quarantine:
        actions.append(Quarantine(quarantine, list(folders), store))
    if webhook:
        actions.append(Webhook(webhook, detector_name))

    def show(outcome):
        if as_json:
            click.echo(json.dumps(outcome.to_json(detector_name)), nl=True)
        elif not outcome.skipped:
            score = "-" if outcome.score is None else f"{outcome.score:.3f}"
            click.echo(
                f"{outcome.label:9} {score:>6} {outcome.uri}"
                + (f"  ({outcome.error})" if outcome.error else ""),
                err=True,
            )

    scanner = Scanner(engine, store, source="watch")
    if urls:
        watcher = BucketWatcher(
            urls,
            scanner,
            interval=interval or 30.0,
            endpoint_url=endpoint_url,
            actions=actions,
            on_outcome=show,
        )
    else:
        watcher = FolderWatcher(
            folders,
            scanner,
            polling=polling,
            settle=settle,
            poll_interval=interval or 1.0,
            actions=actions,
            on_outcome=show,
        )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: watcher.stop())
    click.echo(
        f"watching {', '.join(map(str, targets))} with {detector_name} "
        f"({'polling' if polling or urls else 'inotify'}); Ctrl-C to stop",
        err=True,
    )
    try:
        watcher.run()
    finally:
        for action in actions:
            action.close()
        engine.close()
        store.close()
    click.echo("stopped cleanly", err=True)


@cli.command()
@click.option("--new", is_flag=True, help="replace the token (clients must be updated)")
def token(new) -> None:
    """Print the API bearer token (made on first use)."""
    from server.auth import load_or_create_token, token_path

    if new and token_path().is_file():
        token_path().unlink()
    click.echo(load_or_create_token())


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.option("--db", envvar=f"{ENV_PREFIX}_DB", help=DB_HELP)
def db_upgrade(db) -> None:
    """Apply schema migrations (also done automatically on first use)."""
    from .storage.migrate import current_revision, head_revision, upgrade
    from .storage.store import create_db_engine, default_database_url

    engine = create_db_engine(db or default_database_url())
    before = current_revision(engine)
    upgrade(engine)
    click.echo(f"database schema: {before or 'empty'} -> {head_revision()}")


@db.command("current")
@click.option("--db", envvar=f"{ENV_PREFIX}_DB", help=DB_HELP)
def db_current(db) -> None:
    """Print the schema revision of the database."""
    from .storage.migrate import check_not_newer, head_revision
    from .storage.store import create_db_engine, default_database_url

    current = check_not_newer(create_db_engine(db or default_database_url()))
    click.echo(f"{current or 'empty'} (this ldmscan: {head_revision()})")


@cli.command("detector")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
def detector_info(path) -> None:
    """Show a detector's card (the shipped default without PATH)."""
    from .detector import default_detector_path, file_sha256, read_card

    path = path or default_detector_path()
    card = read_card(path)
    click.echo(
        json.dumps(
            {"path": str(path), "sha256": file_sha256(path), **json.loads(card.to_json())}, indent=2
        )
    )


from .cli_train import train  # noqa: E402  (the group itself imports nothing heavy)

cli.add_command(train)


def main() -> None:
    cli(prog_name="ldmscan")
