"""Reviewed images as an evaluation/calibration set: OUT/real, OUT/generated, MANIFEST.tsv
(columns the training commands read: file, label, generator, flags)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from sqlalchemy import select

from .storage import Store
from .storage.tables import images, locations, reviews


def export_reviewed(store: Store, out: Path) -> tuple[int, int]:
    """Returns (exported, skipped because no recorded location still holds the file)."""
    latest: dict[int, dict] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(
            select(reviews, images.c.sha256)
            .join(images)
            .order_by(reviews.c.created_at, reviews.c.id)
        ):
            latest[row.image_id] = dict(row._mapping)
        where: dict[int, list[str]] = {}
        for loc in conn.execute(
            select(locations.c.image_id, locations.c.uri)
            .where(locations.c.image_id.in_(list(latest)))
            .order_by(locations.c.last_seen.desc())
        ):
            where.setdefault(loc.image_id, []).append(loc.uri)
    out = Path(out)
    written = missing = 0
    rows = []
    for image_id, review in sorted(latest.items(), key=lambda kv: kv[1]["sha256"]):
        source = next(
            (Path(u) for u in where.get(image_id, []) if "://" not in u and Path(u).is_file()), None
        )
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
