"""Alembic driven from code: the migration scripts ship in the `migrations` package.

Alembic itself (0.4 s to import) is loaded only to migrate: checking that a database is current
reads its `alembic_version` row and compares it with the revisions in the versions folder, so
commands that only read (`report`, `show`, `label`) start quickly."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config

from ..errors import DatabaseError

log = logging.getLogger(__name__)


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("ldmscan.migrations")))
    return config


def known_revisions() -> list[str]:
    """Revision ids of the shipped scripts, oldest first (files are named NNNN_slug.py and the
    ids are NNNN; tests/test_storage.py checks that against Alembic's own reading)."""
    versions = resources.files("ldmscan.migrations").joinpath("versions")
    return sorted(
        entry.name.split("_", 1)[0]
        for entry in versions.iterdir()
        if entry.name.endswith(".py") and entry.name[:4].isdigit()
    )


def head_revision() -> str:
    return known_revisions()[-1]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return None if found is None else str(found)


def check_not_newer(engine: Engine) -> str | None:
    """Refuse a database that a newer ldmscan has migrated past what this one knows."""
    current = current_revision(engine)
    if current is not None and current not in known_revisions():
        raise DatabaseError(
            f"the database is at schema revision {current}, which this ldmscan does not know: "
            "it was created by a newer ldmscan; upgrade ldmscan to use it"
        )
    return current


# pg_advisory_lock key: any constant unique to ldmscan ("ldms" in ASCII)
PG_LOCK_KEY = 0x6C646D73


@contextlib.contextmanager
def _migration_lock(db: Engine) -> Iterator[None]:
    """Serialise migrations between processes: a file lock beside a SQLite file, an advisory
    lock on PostgreSQL. Without it, two first uses of a new database both see no schema and the
    second dies on "table already exists"."""
    if db.dialect.name == "postgresql":
        with db.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
                conn.commit()
        return
    path = _sqlite_file(db)
    if path is None:  # in-memory: one process by definition
        yield
        return
    import fcntl

    with open(f"{path}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sqlite_file(db: Engine) -> Path | None:
    database = db.url.database if db.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _backup_sqlite(db: Engine, current: str) -> Path | None:
    """Copy an existing SQLite database before changing its schema (jupyterhub does the same):
    a failed or regretted upgrade can be undone by putting the copy back."""
    path = _sqlite_file(db)
    if path is None or not path.is_file():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.{current}.{stamp}.bak")
    with sqlite3.connect(path) as source, sqlite3.connect(target) as copy:
        source.backup(copy)  # consistent even while another process writes (WAL)
    log.warning(
        "database schema %s -> %s: backed up %s to %s", current, head_revision(), path, target
    )
    return target


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision` under the migration lock; the revision is read again once the
    lock is held, so a process that waited on another's upgrade finds nothing left to do."""
    with _migration_lock(engine):
        current = check_not_newer(engine)
        if revision == "head" and current == head_revision():
            return
        if current is not None:
            _backup_sqlite(engine, current)
        from alembic import command

        config = alembic_config()
        with engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                # pysqlite commits each DDL statement on its own: a process killed half-way
                # through a first migration left tables without a revision stamp, and every
                # later start died on "table already exists". One explicit transaction instead.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)


def is_current(engine: Engine) -> bool:
    return check_not_newer(engine) == head_revision()
