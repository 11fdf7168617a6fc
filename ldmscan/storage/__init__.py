"""Verdict storage: SQLite by default, PostgreSQL alike, schema managed by Alembic. Every SQL
query of the project lives in this package."""

from .audit import AuditRecord, ReportFilter
from .store import (
    Location,
    ScoredLocation,
    Source,
    Store,
    StoredVerdict,
    create_db,
    default_database_url,
)

__all__ = [
    "AuditRecord",
    "Location",
    "ReportFilter",
    "ScoredLocation",
    "Source",
    "Store",
    "StoredVerdict",
    "create_db",
    "default_database_url",
]
