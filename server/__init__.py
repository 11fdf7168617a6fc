"""`ldmscan serve`: the HTTP API for the browser extension and other clients.

Depends on the `ldmscan` core only; every request goes through the process's one Engine.
"""

from .app import ServerSettings, make_app

__all__ = ["ServerSettings", "make_app"]
