"""Audit rows: verdicts with their image, location, camera, evidence and review, filtered as
moderation leads ask ("what did we flag last week, where, and why?"), and their summaries. The
queries live in `storage.audit`; the CLI renders what this module shapes."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from .attribution import LATENT_SPACES
from .storage import Store
from .storage.audit import ReportFilter
from .storage.clock import aware
from .verdict import Label

__all__ = ["FIELDS", "ReportFilter", "disagreement", "history", "report_rows", "summarise"]

FLAGGED = {Label.GENERATED.value, Label.UNCERTAIN.value}

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
    "latent_space",
    "latent_space_probability",
]


def report_rows(store: Store, where: ReportFilter | None = None) -> list[dict[str, Any]]:
    """Audit rows as the report renders them: one per verdict, with its chosen location."""
    where = where or ReportFilter()
    out = []
    for record in store.audit_records(where):
        row, locs, review = record.row, record.locations, record.latest_review
        live = [loc for loc in locs if loc["deleted_at"] is None]
        chosen = (live or locs or [{"uri": None}])[-1]
        if where.path_prefix and not any(
            (loc["uri"] or "").startswith(where.path_prefix) for loc in locs
        ):
            continue
        review_label = review["label"] if review else None
        created = aware(row["created_at"])
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
                "latent_space": row["attribution_guess"],
                "latent_space_probability": (
                    row["attribution"]["probability"] if row["attribution"] else None
                ),
            }
        )
    return out


def disagreement(detector_label: str, review_label: str | None) -> bool:
    """A reviewer overruled the detector (uncertain and error verdicts overrule nothing)."""
    return (
        review_label is not None
        and detector_label in {Label.GENERATED.value, Label.REAL.value}
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
    flagged = [r for r in rows if r["label"] in FLAGGED]
    return {
        "total": len(rows),
        "by_label": dict(Counter(r["label"] for r in rows).most_common()),
        "by_day": dict(sorted(Counter(r["day"] for r in rows if r["day"]).items())),
        "by_folder": _by(rows, "folder"),
        "by_camera": _by(rows, "camera"),
        "by_evidence": dict(Counter(k for r in rows for k in r["evidence_kinds"]).most_common()),
        # flagged images by the latent space the detector guessed ("(no guess)": below the
        # confidence, or a detector without an attribution head)
        "by_latent_space": dict(
            Counter(
                LATENT_SPACES.get(r["latent_space"], r["latent_space"])
                if r["latent_space"]
                else "(no guess)"
                for r in flagged
            ).most_common()
        ),
        "top_flagged": sorted(flagged, key=lambda r: -(r["score"] or 2.0))[:top],
        "disagreements": [r for r in rows if r["disagreement"]],
    }


def _by(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = {}
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
