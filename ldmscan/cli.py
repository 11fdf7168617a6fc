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
            help="most crops per model call (default: 16 on a CPU, 64 on a GPU)",
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


def build_engine(
    detector,
    device,
    tries,
    generated_fpr,
    uncertain_fpr,
    batch_size,
    workers,
    max_pixels,
    compile_model=False,
    **extra,
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
        compile_model=compile_model,
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


def _when(value: str | None):
    """--since/--until: an ISO date or datetime, or a span back from now (7d, 12h, 30m)."""
    from datetime import datetime, timedelta, timezone

    if not value:
        return None
    units = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}
    if value[-1] in units and value[:-1].isdigit():
        return datetime.now(timezone.utc) - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: use YYYY-MM-DD[THH:MM] or 7d / 12h") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@cli.command()
@click.option("--db", envvar=f"{ENV_PREFIX}_DB", help=DB_HELP)
@click.option("--since", help="verdicts from this time on (ISO date/time, or 7d, 24h)")
@click.option("--until", help="verdicts before this time")
@click.option(
    "--label",
    "labels",
    multiple=True,
    type=click.Choice(["generated", "uncertain", "real", "error"]),
)
@click.option("--source", "sources", multiple=True, type=click.Choice(["scan", "watch", "api"]))
@click.option("--path-prefix", help="only images seen under this path or URI prefix")
@click.option("--detector", "detector_name", help="detector name, or name@version")
@click.option("--min-score", type=click.FloatRange(0, 1))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "html"]),
    default="table",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write here instead of stdout (- is stdout; html needs a file)",
)
@click.option("--top", type=int, default=10, show_default=True, help="flagged files listed")
def report(
    db, since, until, labels, sources, path_prefix, detector_name, min_score, fmt, output, top
) -> None:
    """Audit report: what was flagged, when, where and why."""
    from .reports import FIELDS, ReportFilter, report_rows, summarise
    from .storage import Store

    where = ReportFilter(
        since=_when(since),
        until=_when(until),
        label=labels,
        source=sources,
        path_prefix=path_prefix,
        detector=detector_name,
        min_score=min_score,
    )
    with Store(db) as store:
        rows = report_rows(store, where)
    summary = summarise(rows, top)
    shown = ", ".join(
        f"{k}={v}"
        for k, v in [
            ("since", since),
            ("until", until),
            ("label", ",".join(labels)),
            ("source", ",".join(sources)),
            ("path-prefix", path_prefix),
            ("detector", detector_name),
            ("min-score", min_score),
        ]
        if v not in (None, "")
    )
    if fmt == "html":
        from .report_html import render

        if not output or str(output) == "-":
            raise click.UsageError("--format html needs -o FILE")
        output.write_text(render(rows, summary, shown))
        click.echo(f"wrote {output} ({len(rows)} verdicts)", err=True)
        return
    if fmt in {"csv", "json"}:
        import csv
        import io

        buffer = io.StringIO()
        if fmt == "json":
            json.dump(
                {
                    "filters": shown,
                    "summary": {
                        k: v
                        for k, v in summary.items()
                        if k not in {"top_flagged", "disagreements"}
                    },
                    "rows": rows,
                },
                buffer,
                indent=2,
                default=str,
            )
        else:
            writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "evidence_kinds": ";".join(row["evidence_kinds"])})
        if output and str(output) != "-":
            output.write_text(buffer.getvalue())
        else:
            click.echo(buffer.getvalue(), nl=False)
        return
    _report_tables(summary, shown)


def _report_tables(summary, shown) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{summary['total']} verdicts[/]" + (f" ({shown})" if shown else ""))
    labels = ["generated", "uncertain", "real", "error"]

    def counts_table(title, data):
        table = Table(title=title)
        table.add_column(title.split()[-1])
        for label in labels:
            table.add_column(label, justify="right")
        for key, counts in list(data.items())[:20]:
            table.add_row(str(key), *(str(counts.get(label, 0)) for label in labels))
        console.print(table)

    table = Table(title="by label")
    for label in summary["by_label"]:
        table.add_column(label, justify="right")
    table.add_row(*(str(n) for n in summary["by_label"].values()))
    console.print(table)

    def pairs_table(title, key, value, data):
        table = Table(title=title)
        table.add_column(key)
        table.add_column(value, justify="right")
        for name, n in data.items():
            table.add_row(str(name), str(n))
        console.print(table)

    pairs_table("by day", "day", "verdicts", summary["by_day"])
    counts_table("by folder", summary["by_folder"])
    counts_table("by camera", summary["by_camera"])
    pairs_table("by evidence kind", "kind", "images", summary["by_evidence"])
    flagged = Table(title="top flagged")
    for column in ("score", "label", "path", "why"):
        flagged.add_column(column)
    for row in summary["top_flagged"]:
        score = "-" if row["score"] is None else f"{row['score']:.3f}"
        flagged.add_row(
            score, row["label"], row["path"] or row["sha256"][:16], (row["reasons"] or [""])[-1]
        )
    console.print(flagged)
    if summary["disagreements"]:
        table = Table(title="reviewer disagrees with detector")
        for column in ("path", "detector", "reviewer", "note"):
            table.add_column(column)
        for row in summary["disagreements"]:
            table.add_row(
                row["path"] or row["sha256"][:16],
                row["label"],
                row["review"],
                row["review_note"] or "",
            )
        console.print(table)


def _resolve_image(store, target: str) -> str:
    candidate = Path(target)
    if candidate.is_file():
        from .imaging import read_file, sha256_bytes

        return sha256_bytes(read_file(candidate))
    sha = store.find_sha256(target)
    if sha is None:
        raise LdmscanError(f"{target}: no such file, sha256 or recorded location in the database")
    return sha


@cli.command()
@click.argument("target")
@click.option("--db", envvar=f"{ENV_PREFIX}_DB", help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="the history as one JSON object")
def show(target, db, as_json) -> None:
    """The whole history of one image (FILE, sha256 or a recorded path)."""
    from .reports import history
    from .storage import Store

    with Store(db) as store:
        sha = _resolve_image(store, target)
        found = history(store, sha)
    if found["image"] is None:
        raise LdmscanError(f"{target}: not in the database (sha256 {sha})")
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    image = found["image"]
    console.print(
        f"[bold]{sha}[/]  {image['width']}x{image['height']} {image['format']} "
        f"{image['size_bytes']} bytes, first seen {image['first_seen']}"
    )
    table = Table(title="locations")
    for column in ("uri", "source", "first seen", "last seen", "deleted"):
        table.add_column(column)
    for loc in found["locations"]:
        table.add_row(
            loc["uri"],
            loc["source"],
            str(loc["first_seen"])[:19],
            str(loc["last_seen"])[:19],
            str(loc["deleted_at"] or "")[:19],
        )
    console.print(table)
    table = Table(title="verdicts")
    for column in ("detector", "label", "score", "tries", "when", "reasons / error"):
        table.add_column(column)
    for v in found["verdicts"]:
        table.add_row(
            f"{v['detector_name']}@{v['detector_version']}",
            v["label"],
            "-" if v["probability"] is None else f"{v['probability']:.3f}",
            str(v["tries"]),
            str(v["created_at"])[:19],
            v["error"] or "; ".join(v["reasons"] or []),
        )
    console.print(table)
    evidence = {
        (e["kind"], e["strength"], e["detail"])
        for v in found["verdicts"]
        for e in v["evidence"] or []
    }
    for kind, strength, detail in sorted(evidence):
        console.print(f"evidence [{strength}] {kind}: {detail}")
    if found["exif"]:
        tags = found["exif"]["tags"]
        console.print(
            f"EXIF: {len(tags)} tags; camera {found['exif']['camera_make'] or '-'} "
            f"{found['exif']['camera_model'] or ''}; software "
            f"{found['exif']['software'] or '-'}"
        )
    for review in found["reviews"]:
        console.print(
            f"review {str(review['created_at'])[:19]} by {review['reviewer'] or '?'}: "
            f"{review['label']}" + (f" ({review['note']})" if review["note"] else "")
        )


@cli.command("label")
@click.argument("target")
@click.argument("decision", type=click.Choice(["real", "generated"]))
@click.option("--note", help="why, for the audit trail")
@click.option("--reviewer", help="who decided (default: the login name)")
@click.option("--db", envvar=f"{ENV_PREFIX}_DB", help=DB_HELP)
def label_cmd(target, decision, note, reviewer, db) -> None:
    """Record a reviewer's decision on an image (FILE, sha256 or a recorded path)."""
    from .storage import Store

    if not reviewer:
        import getpass

        try:  # $LOGNAME, $USER, ... then the password database
            reviewer = getpass.getuser()
        except (KeyError, OSError):
            reviewer = None
    with Store(db) as store:
        sha = _resolve_image(store, target)
        try:
            store.add_review(sha, decision, note, reviewer)
        except LookupError as exc:
            raise LdmscanError(f"{target}: {exc}; scan it first") from exc
    click.echo(f"{sha[:16]} reviewed as {decision}")


@cli.command("export-labels")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--db", envvar=f"{ENV_PREFIX}_DB", help=DB_HELP)
def export_labels(out, db) -> None:
    """Copy reviewed images into OUT/real and OUT/generated with a MANIFEST.tsv, ready for
    `ldmscan train eval` and `ldmscan train calibrate`."""
    from .exports import export_reviewed
    from .storage import Store

    with Store(db) as store:
        written, missing = export_reviewed(store, out)
    click.echo(
        f"exported {written} reviewed images to {out}"
        + (f"; {missing} skipped (file no longer at any recorded location)" if missing else "")
    )


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
@click.option("--json", "as_json", is_flag=True, help="the whole card as JSON")
def detector_info(path, as_json) -> None:
    """Show a detector's card (the shipped default without PATH): a summary, or --json."""
    from .detector import default_detector_path, file_sha256, read_card

    path = path or default_detector_path()
    card = read_card(path)
    sha = file_sha256(path)
    if as_json:
        click.echo(
            json.dumps({"path": str(path), "sha256": sha, **json.loads(card.to_json())}, indent=2)
        )
        return
    for line in detector_summary(card, str(path), sha):
        click.echo(line)


def detector_summary(card, path: str, sha: str) -> list[str]:
    """A few lines a moderator can read: what it is, its thresholds and what backs them."""
    stride = "" if card.stem_stride is None else f", stem stride {card.stem_stride}"
    lines = [
        f"{card.name} {card.version}  ({path}, sha256 {sha[:12]})",
        f"architecture {card.architecture}{stride}; crops {card.crop_size} px placed "
        f"{card.placement!r}; {card.default_tries} tries by default ({card.aggregation})",
    ]
    counts = card.calibration.get("real_images", {})
    if card.thresholds:
        lines.append("thresholds (probability at a false-positive rate on real images):")
        for tries in sorted(card.thresholds, key=int):
            n = int(counts.get(tries, 0))
            parts = []
            for fpr in ("0.001", "0.01"):
                value = card.thresholds[tries].get(fpr)
                if value is None:
                    continue
                resolved = n * float(fpr) >= 1
                parts.append(f"{float(fpr):.1%} {value:.4f}" + ("" if resolved else "*"))
            lines.append(f"  {tries} tries: " + ", ".join(parts) + f"  (on {n} real images)")
        if any(int(counts.get(t, 0)) * 0.001 < 1 for t in card.thresholds):
            lines.append(
                "  * fewer real images than 1/rate: the rate is not resolved, the "
                "threshold only sits above the highest real score"
            )
    else:
        lines.append("thresholds: none (uncalibrated: run `ldmscan train calibrate`)")
    dev = card.metrics.get("dev", {}).get("modes", {})
    for mode in (f"{card.default_tries}_tries", "1_tries"):
        original = dev.get(mode, {}).get("original")
        if original:
            lines.append(
                f"dev ({mode.replace('_', ' ')}): AUC {original.get('auc', float('nan')):.3f}, "
                f"TPR@1% {original.get('tpr@0.01', float('nan')):.3f}"
            )
    training = card.recipe.get("training_set_counts")
    if training:
        lines.append("training set (training-set.tsv beside the file lists every image):")
        for role, by_kind in training.items():
            kinds = ", ".join(f"{k} {v}" for k, v in by_kind.items() if k != "sources")
            lines.append(f"  {role}: {kinds} ({by_kind.get('sources', 0)} sources)")
    if card.notes:
        lines.append(f"notes: {card.notes}")
    return lines


from .cli_train import train  # noqa: E402  (the group itself imports nothing heavy)

cli.add_command(train)


def main() -> None:
    cli(prog_name="ldmscan")
