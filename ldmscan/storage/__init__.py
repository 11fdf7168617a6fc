"""Verdict storage: SQLite by default, PostgreSQL alike, schema managed by Alembic."""

from .store import Location, Store, default_database_url

__all__ = ["Location", "Store", "default_database_url"]
