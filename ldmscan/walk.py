"""Find image files under the paths a user names, by content rather than extension."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from . import imaging


def iter_candidates(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files to check: every file named explicitly (so a broken one is reported), and under each
    folder every file whose content or extension says image. Sorted, so runs are repeatable."""
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    candidate = Path(root) / name
                    if name.startswith(".") or candidate in seen:
                        continue
                    if candidate.is_file() and imaging.looks_like_image(candidate):
                        seen.add(candidate)
                        yield candidate
        elif path not in seen:
            seen.add(path)
            yield path
