"""Alembic migration scripts for the ldmscan database (driven by ldmscan.storage.migrate)."""
