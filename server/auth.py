"""Bearer-token auth. The token is made on first run and kept in the user's config directory
(mode 0600); `ldmscan token` prints it for pasting into the extension's options."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path


def token_path() -> Path:
    explicit = os.environ.get("LDMSCAN_TOKEN_FILE")
    if explicit:
        return Path(explicit)
    from platformdirs import user_config_dir

    return Path(user_config_dir("ldmscan", appauthor=False)) / "token"


def load_or_create_token(path: Path | None = None) -> str:
    path = path or token_path()
    if path.is_file():
        token = path.read_text().strip()
        if token:
            return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def token_matches(header: str | None, token: str) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())


def is_loopback(host: str) -> bool:
    if host in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
