"""Alembic driven from code: the migration scripts ship in the `migrations` package."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from ..errors import DatabaseError


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("ldmscan.migrations")))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_not_newer(engine: Engine) -> str | None:
    """Refuse a database that a newer ldmscan has migrated past what this one knows."""
    current = current_revision(engine)
    if current is None:
        return None
    script = ScriptDirectory.from_config(alembic_config())
    try:
        script.get_revision(current)
    except Exception as exc:
        raise DatabaseError(
            f"the database is at schema revision {current}, which this ldmscan does not know: "
            "it was created by a newer ldmscan; upgrade ldmscan to use it"
        ) from exc
    return current


def upgrade(engine: Engine, revision: str = "head") -> None:
    check_not_newer(engine)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def is_current(engine: Engine) -> bool:
    return check_not_newer(engine) == head_revision()
