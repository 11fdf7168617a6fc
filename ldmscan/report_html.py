"""One self-contained HTML page: thumbnails inlined as base64, the histogram as inline SVG."""

from __future__ import annotations

import base64
import io
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import imaging
from .attribution import LATENT_SPACES
from .verdict import Label

log = logging.getLogger(__name__)

LABELS = [label.value for label in (Label.GENERATED, Label.UNCERTAIN, Label.REAL, Label.ERROR)]
FLAGGED = {Label.GENERATED.value, Label.UNCERTAIN.value}
THUMBNAIL_SIDE = 256


def thumbnail(uri: str | None) -> str | None:
    """Base64 JPEG of a local file (display only: thumbnails are never scored)."""
    if not uri or "://" in uri or not Path(uri).is_file():
        return None
    try:
        from PIL import Image

        pixels = imaging.decode(imaging.read_file(Path(uri))).pixels
        image = Image.fromarray(pixels)
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        return base64.b64encode(buffer.getvalue()).decode()
    except Exception as exc:  # a report must render even when a file went bad
        log.debug("no thumbnail for %s: %s", uri, exc)
        return None


def histogram_svg(scores: list[float], bins: int = 20, width: int = 640, height: int = 160) -> str:
    counts = [0] * bins
    for score in scores:
        counts[min(bins - 1, int(score * bins))] += 1
    top = max(counts) or 1
    bar = width / bins
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20}" '
        f'role="img" aria-label="histogram of {len(scores)} scores">'
    ]
    for i, count in enumerate(counts):
        h = (height - 10) * count / top
        colour = "#4a6fa5"  # labels depend on the detector's thresholds, not on fixed bins
        parts.append(
            f'<rect x="{i * bar + 1:.1f}" y="{height - h:.1f}" width="{bar - 2:.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>{i / bins:.2f}–{(i + 1) / bins:.2f}'
            f": {count}</title></rect>"
        )
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<text x="{min(tick * width, width - 20):.0f}" y="{height + 15}" '
            f'font-size="11">{tick:g}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render(
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
    filters: str = "",
    max_thumbnails: int = 200,
) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("ldmscan", "templates"), autoescape=select_autoescape(["html", "j2"])
    )
    flagged = [dict(r) for r in rows if r["label"] in FLAGGED]
    flagged.sort(key=lambda r: -(r["score"] if r["score"] is not None else 2.0))
    for index, row in enumerate(flagged):
        row["thumbnail"] = thumbnail(row["path"]) if index < max_thumbnails else None
    return env.get_template("report.html.j2").render(
        total=len(rows),
        summary=summary,
        flagged=flagged,
        labels=LABELS,
        latent_spaces=LATENT_SPACES,
        filters=filters,
        histogram=histogram_svg([r["score"] for r in rows if r["score"] is not None]),
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
