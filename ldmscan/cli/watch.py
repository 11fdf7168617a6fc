"""`ldmscan watch`: folders (inotify or polling) or buckets (polling), actions on verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..paths import display_uri
from .options import db_option, engine_choice, engine_options

if TYPE_CHECKING:
    from ..recording import Outcome


@click.command()
@click.argument("targets", nargs=-1, required=True)
@db_option
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
    targets: tuple[str, ...],
    db: str | None,
    endpoint_url: str | None,
    polling: bool,
    interval: float | None,
    settle: float,
    quarantine: Path | None,
    webhook: str | None,
    as_json: bool,
    **engine_kw: Any,
) -> None:
    """Watch folders or buckets (s3://bucket/prefix): every new or changed image gets a verdict,
    none lost across restarts."""
    from ..scanner.buckets import BucketWatcher, is_url

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

    from ..recording import Recorder
    from ..scanner.actions import Action, Quarantine, Webhook
    from ..scanner.watch import FolderWatcher
    from ..storage import Source, Store

    store = Store(db)
    engine = engine_choice(engine_kw).build()
    detector_name = f"{engine.card.name}@{engine.card.version}"
    actions: list[Action] = []
    if quarantine:
        actions.append(Quarantine(quarantine, list(folders), store))
    if webhook:
        actions.append(Webhook(webhook, detector_name))

    def show(outcome: Outcome) -> None:
        if as_json:
            click.echo(json.dumps(outcome.to_json(detector_name)), nl=True)
        elif not outcome.skipped:
            score = "-" if outcome.score is None else f"{outcome.score:.3f}"
            click.echo(
                f"{outcome.label.value:9} {score:>6} {display_uri(outcome.uri)}"
                + (f"  ({outcome.error})" if outcome.error else ""),
                err=True,
            )

    recorder = Recorder(engine, store, source=Source.WATCH)
    watcher: BucketWatcher | FolderWatcher
    if urls:
        watcher = BucketWatcher(
            urls,
            recorder,
            interval=interval or 30.0,
            endpoint_url=endpoint_url,
            actions=actions,
            on_outcome=show,
        )
    else:
        watcher = FolderWatcher(
            folders,
            recorder,
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
