"""`ldmscan db` (schema migrations) and `ldmscan detector` (a detector's card)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import click

from ..errors import DatabaseError, LdmscanError
from .options import db_option
from .render import detector_summary


@contextlib.contextmanager
def _database_errors(db: str | None) -> Iterator[None]:
    """A database that cannot be reached is one line, like everywhere else."""
    try:
        yield
    except LdmscanError:
        raise
    except Exception as exc:
        from sqlalchemy.engine import make_url

        where = make_url(db).render_as_string(hide_password=True) if db else "the default database"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(f"cannot use {where}: {reason}") from exc


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@db_option
def db_upgrade(db: str | None) -> None:
    """Apply schema migrations (also done automatically on first use)."""
    from ..storage import create_db, default_database_url
    from ..storage.migrate import current_revision, head_revision, upgrade

    sa_engine = create_db(db or default_database_url())
    with _database_errors(db):
        before = current_revision(sa_engine)
        upgrade(sa_engine)
    click.echo(f"database schema: {before or 'empty'} -> {head_revision()}")


@db.command("current")
@db_option
def db_current(db: str | None) -> None:
    """Print the schema revision of the database."""
    from ..storage import create_db, default_database_url
    from ..storage.migrate import check_not_newer, head_revision

    with _database_errors(db):
        current = check_not_newer(create_db(db or default_database_url()))
    click.echo(f"{current or 'empty'} (this ldmscan: {head_revision()})")


@click.command("detector")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="the whole card as JSON")
def detector_info(path: Path | None, as_json: bool) -> None:
    """Show a detector's card (the shipped default without PATH): a summary, or --json."""
    from ..detector import default_detector_path, file_sha256, read_card, stored_runtimes

    path = path or default_detector_path()
    card = read_card(path)  # the header only: no network is built
    sha = file_sha256(path)
    runtimes = stored_runtimes(path)
    if as_json:
        described = {"path": str(path), "sha256": sha, "runtimes": runtimes}
        click.echo(json.dumps({**described, **json.loads(card.to_json())}, indent=2))
        return
    for line in detector_summary(card, str(path), sha, runtimes):
        click.echo(line)
