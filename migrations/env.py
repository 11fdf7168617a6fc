"""Alembic environment: ldmscan passes an open connection in config.attributes."""

from alembic import context
from sqlalchemy import Connection, create_engine

from ldmscan.storage.tables import metadata

config = context.config


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_with(connection)
else:  # the plain `alembic` command line, for writing new revisions
    url = config.get_main_option("sqlalchemy.url") or "sqlite:///ldmscan-dev.db"
    with create_engine(url).begin() as conn:
        run_with(conn)
