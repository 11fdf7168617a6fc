"""Settings: command-line flags > LDMSCAN_* environment variables > config file > defaults.

Click implements that order itself: `auto_envvar_prefix="LDMSCAN"` reads the environment and the
config file becomes the context's `default_map`. The file is TOML, at $LDMSCAN_CONFIG or
<user config dir>/ldmscan/config.toml, with one table per command:

    [scan]
    db = "postgresql://moderation@db/ldmscan"
    tries = 4
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .errors import LdmscanError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "LDMSCAN"


def config_path() -> Path:
    explicit = os.environ.get(f"{ENV_PREFIX}_CONFIG")
    if explicit:
        return Path(explicit)
    from platformdirs import user_config_dir

    return Path(user_config_dir("ldmscan", appauthor=False)) / "config.toml"


def load_default_map(path: Path | None = None) -> dict[str, Any]:
    """The config file as click's default_map ({} when there is none)."""
    path = path or config_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LdmscanError(f"cannot read config file {path}: {exc}") from exc
    return dict(data)  # [scan], [train.fit]: tables nest the way click's default_map does
