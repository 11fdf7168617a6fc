"""Audit queries: verdict rows with their image, location, camera, evidence and review, filtered
as moderation leads ask ("what did we flag last week, where, and why?"). The CLI renders them."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select

from .storage import Store
from .storage.tables import detectors, exif, images, locations, reviews, verdicts

FIELDS = [
    "sha256",
    "path",
    "folder",
    "source",
    "label",
    "score",
    "detector",
    "created_at",
    "camera",
    "evidence_kinds",
    "review",
    "disagreement",
    "width",
    "height",
    "format",
    "error",
]


@dataclass(frozen=True)
class ReportFilter:
    since: datetime | None = None
    until: datetime | None = None
    label: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    path_prefix: str | None = None
    detector: str | None = None  # "name" or "name@version"
    min_score: float | None = None


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def report_rows(store: Store, where: ReportFilter = ReportFilter()) -> list[dict[str, Any]]:
    query = (
        select(
            verdicts,
            images.c.sha256,
            images.c.width,
            images.c.height,
            images.c.format,
            detectors.c.name.label("detector_name"),
            detectors.c.version.label("detector_version"),
            exif.c.camera_make,
            exif.c.camera_model,
        )
        .join(images, verdicts.c.image_id == images.c.id)
        .join(detectors, verdicts.c.detector_id == detectors.c.id)
        .outerjoin(exif, exif.c.image_id == images.c.id)
        .order_by(verdicts.c.created_at.desc(), verdicts.c.id.desc())
    )
    if where.since:
        query = query.where(verdicts.c.created_at >= where.since)
    if where.until:
        query = query.where(verdicts.c.created_at < where.until)
    if where.label:
        query = query.where(verdicts.c.label.in_(where.label))
    if where.source:
        query = query.where(verdicts.c.source.in_(where.source))
    if where.min_score is not None:
        query = query.where(verdicts.c.probability >= where.min_score)
    if where.detector:
        name, _, version = where.detector.partition("@")
        query = query.where(detectors.c.name == name)
        if version:
            query = query.where(detectors.c.version == version)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
        image_ids = sorted({r["image_id"] for r in rows})
        places: dict[int, list[dict[str, Any]]] = {}
        latest_review: dict[int, dict[str, Any]] = {}
        for start in range(0, len(image_ids), 500):
            chunk = image_ids[start : start + 500]
            for loc in conn.execute(
                select(locations)
                .where(locations.c.image_id.in_(chunk))
                .order_by(locations.c.last_seen)
            ):
                places.setdefault(loc.image_id, []).append(dict(loc._mapping))
            for review in conn.execute(
                select(reviews)
                .where(reviews.c.image_id.in_(chunk))
                .order_by(reviews.c.created_at, reviews.c.id)
            ):
                latest_review[review.image_id] = dict(review._mapping)
    out = []
    for row in rows:
        locs = places.get(row["image_id"], [])
        live = [loc for loc in locs if loc["deleted_at"] is None]
        chosen = (live or locs or [{"uri": None}])[-1]
        if where.path_prefix and not any(
            (loc["uri"] or "").startswith(where.path_prefix) for loc in locs
        ):
            continue
        review = latest_review.get(row["image_id"])
        review_label = review["label"] if review else None
        created = _aware(row["created_at"])
        camera = " ".join(p for p in (row["camera_make"], row["camera_model"]) if p) or None
        out.append(
            {
                "sha256": row["sha256"],
                "path": chosen["uri"],
                "folder": _folder(chosen["uri"]),
                "deleted": not live and bool(locs),
                "source": row["source"],
                "label": row["label"],
                "score": row["probability"],
                "detector": f"{row['detector_name']}@{row['detector_version']}",
                "created_at": created.isoformat() if created else None,
                "day": created.date().isoformat() if created else None,
                "camera": camera,
                "evidence": row["evidence"] or [],
                "evidence_kinds": sorted({e["kind"] for e in row["evidence"] or []}),
                "reasons": row["reasons"] or [],
                "review": review_label,
                "review_note": review["note"] if review else None,
                "disagreement": disagreement(row["label"], review_label),
                "width": row["width"],
                "height": row["height"],
                "format": row["format"],
                "error": row["error"],
            }
        )
    return out


def disagreement(detector_label: str, review_label: str | None) -> bool:
    """A reviewer overruled the detector (uncertain and error verdicts overrule nothing)."""
    return (
        review_label is not None
        and detector_label in {"generated", "real"}
        and detector_label != review_label
    )


def _folder(uri: str | None) -> str | None:
    if not uri:
        return None
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{rest.rsplit('/', 1)[0]}" if "/" in rest else uri
    return os.path.dirname(uri)


def summarise(rows: list[dict[str, Any]], top: int = 10) -> dict[str, Any]:
    flagged = [r for r in rows if r["label"] in {"generated", "uncertain"}]
    return {
        "total": len(rows),
        "by_label": dict(Counter(r["label"] for r in rows).most_common()),
        "by_day": dict(sorted(Counter(r["day"] for r in rows if r["day"]).items())),
        "by_folder": _by(rows, "folder"),
        "by_camera": _by(rows, "camera"),
        "by_evidence": dict(Counter(k for r in rows for k in r["evidence_kinds"]).most_common()),
        "top_flagged": sorted(flagged, key=lambda r: -(r["score"] or 2.0))[:top],
        "disagreements": [r for r in rows if r["disagreement"]],
    }


def _by(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, int]]:
    table: dict[str, Counter] = {}
    for row in rows:
        table.setdefault(row[key] or "(none)", Counter())[row["label"]] += 1
    return {k: dict(v) for k, v in sorted(table.items(), key=lambda kv: -sum(kv[1].values()))}


def history(store: Store, sha256: str) -> dict[str, Any]:
    """Everything known about one image: `ldmscan show`."""
    return {
        "sha256": sha256,
        "image": store.image(sha256),
        "locations": store.locations_for(sha256),
        "verdicts": store.verdicts_for(sha256),
        "exif": store.exif_for(sha256),
        "reviews": store.reviews_for(sha256),
    }
