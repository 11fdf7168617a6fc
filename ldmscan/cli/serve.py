"""`ldmscan serve` (the HTTP API, optionally watching folders into the same engine) and
`ldmscan token`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from .options import db_option, engine_choice, engine_options

if TYPE_CHECKING:
    from ..server.app import Service


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="address to bind; anything but loopback requires auth",
)
@click.option("--port", type=int, default=8422, show_default=True, help="TCP port to listen on")
@db_option
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
    help="seconds a check may take before 504; also the deadline for a request's headers and "
    "body to arrive (408)",
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
    watch_folders: tuple[Path, ...],
    host: str,
    port: int,
    db: str | None,
    no_auth: bool,
    cors_origins: tuple[str, ...],
    max_bytes: int,
    request_timeout: float,
    max_pending: int,
    max_wait_ms: float,
    **engine_kw: Any,
) -> None:
    """Run the HTTP API the browser extension and other clients call."""
    from ..server import ServerSettings, make_app
    from ..server.auth import is_loopback, load_or_create_token, token_path
    from ..server.deadline import run as run_server
    from ..storage import Source, Store

    if no_auth and not is_loopback(host):
        raise click.UsageError("--no-auth is only allowed with a loopback --host")
    token = None if no_auth else load_or_create_token()
    store = Store(db)
    engine = engine_choice(engine_kw, max_pending=max_pending, max_wait_ms=max_wait_ms).build()
    settings = ServerSettings(
        token=token,
        cors_origins=frozenset(cors_origins),
        max_bytes=max_bytes,
        request_timeout=request_timeout,
    )
    services: list[Service] = []
    if watch_folders:
        from ..recording import Recorder
        from ..scanner.watch import FolderWatcher

        recorder = Recorder(engine, store, source=Source.WATCH)
        services.append(FolderWatcher(list(watch_folders), recorder))
    app = make_app(engine, store, settings, services)
    click.echo(
        f"ldmscan {__version__} serving on http://{host}:{port} "
        f"(detector {engine.card.name}@{engine.card.version}, {engine.device}; "
        f"{'no auth' if no_auth else f'token in {token_path()}'})",
        err=True,
    )
    try:
        # web.run_app's job, plus a deadline on request headers (--timeout, as for bodies)
        run_server(app, host, port, header_timeout=request_timeout)
    except OSError as exc:  # port in use, address not on this machine, no permission
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    finally:
        engine.close()
        store.close()


@click.command()
@click.option("--new", is_flag=True, help="replace the token (clients must be updated)")
def token(new: bool) -> None:
    """Print the API bearer token (made on first use)."""
    from ..server.auth import load_or_create_token, token_path

    if new and token_path().is_file():
        token_path().unlink()
    click.echo(load_or_create_token())
