"""Find image files under the paths a user names, by content rather than extension."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from . import imaging


def iter_candidates(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files to check: every path named explicitly (so a broken or missing one is reported),
    and under each folder every file whose content or extension says image, plus what cannot be
    read at all (special files, broken links, link loops) so that each gets a line with its
    reason. Dot-files and dot-folders are skipped. Sorted, so runs are repeatable."""
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
                    if _is_candidate(candidate):
                        seen.add(candidate)
                        yield candidate
        elif path not in seen:
            seen.add(path)
            yield path


def _is_candidate(path: Path) -> bool:
    try:
        mode = path.stat().st_mode  # follows links
    except OSError:
        return path.is_symlink()  # a broken link or a loop: reported, not passed over
    if stat.S_ISREG(mode):
        # sniffing opens the file: only ever for regular files (a FIFO would block)
        return imaging.looks_like_image(path) or path.suffix.lower() in (
            imaging.UNSUPPORTED_EXTENSIONS
        )
    return not stat.S_ISDIR(mode)  # FIFO, socket, device: an error line says what it is
