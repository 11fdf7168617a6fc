"""Reviewed images as an evaluation/calibration set: OUT/real, OUT/generated, MANIFEST.tsv
(columns the training commands read: file, label, generator, flags)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

from .storage import Store


def export_reviewed(store: Store, out: Path) -> tuple[int, int]:
    """Returns (exported, skipped because no recorded location still holds the file)."""
    out = Path(out)
    written = missing = 0
    rows: list[dict[str, Any]] = []
    for review, uris in sorted(store.reviewed_images(), key=lambda pair: pair[0]["sha256"]):
        source = next((Path(u) for u in uris if "://" not in u and Path(u).is_file()), None)
        if source is None:
            missing += 1
            continue
        target = out / review["label"] / f"{review['sha256'][:16]}{source.suffix.lower()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        rows.append(
            {
                "file": f"{review['label']}/{target.name}",
                "label": review["label"],
                "generator": "reviewed" if review["label"] == "generated" else "real",
                "flags": "",
                "sha256": review["sha256"],
                "source": str(source),
                "note": review["note"] or "",
            }
        )
        written += 1
    out.mkdir(parents=True, exist_ok=True)
    with (out / "MANIFEST.tsv").open("w", newline="") as fh:
        writer = csv.DictWriter(
            fh,
            fieldnames=["file", "label", "generator", "flags", "sha256", "source", "note"],
            delimiter="\t",
        )
        writer.writeheader()
        writer.writerows(rows)
    return written, missing
