"""The audit queries behind `ldmscan report`, `show` and `export-labels`: verdicts joined with
their image, detector, camera, locations and latest review. Rows come back as plain dicts; the
core's reports module shapes and summarises them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from ..paths import from_stored
from .tables import detectors, exif, images, locations, reviews, verdicts


@dataclass(frozen=True)
class AuditRecord:
    """One verdict row with everything known about where its image was and what a reviewer said."""

    row: dict[str, Any]
    locations: list[dict[str, Any]]
    latest_review: dict[str, Any] | None


@dataclass(frozen=True)
class ReportFilter:
    since: datetime | None = None
    until: datetime | None = None
    label: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    path_prefix: str | None = None
    detector: str | None = None  # "name" or "name@version"
    min_score: float | None = None


def audit_records(db: Engine, where: ReportFilter) -> list[AuditRecord]:
    """Verdicts matching the filter, newest first (path prefixes are matched by the caller)."""
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
    with db.connect() as conn:
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
    return [
        AuditRecord(row, places.get(row["image_id"], []), latest_review.get(row["image_id"]))
        for row in rows
    ]


def reviewed_images(db: Engine) -> list[tuple[dict[str, Any], list[str]]]:
    """Each reviewed image's latest review (with its sha256) and its recorded URIs as the OS
    names them, newest location first."""
    latest: dict[int, dict[str, Any]] = {}
    with db.connect() as conn:
        for row in conn.execute(
            select(reviews, images.c.sha256)
            .join(images)
            .order_by(reviews.c.created_at, reviews.c.id)
        ):
            latest[row.image_id] = dict(row._mapping)
        where: dict[int, list[str]] = {}
        for loc in conn.execute(
            select(locations.c.image_id, locations.c.uri, locations.c.raw_uri)
            .where(locations.c.image_id.in_(list(latest)))
            .order_by(locations.c.last_seen.desc())
        ):
            where.setdefault(loc.image_id, []).append(from_stored(loc.uri, loc.raw_uri))
    return [(review, where.get(image_id, [])) for image_id, review in latest.items()]
