"""`ldmscan serve`: the HTTP API for the browser extension and other clients.

Depends on the `ldmscan` core only; every request goes through the process's one Engine.
The app is imported on first use, so `ldmscan token` (which needs only `auth`) starts without
aiohttp or the database layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import ServerSettings, make_app

__all__ = ["ServerSettings", "make_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
