"""The audit commands: `report`, `show`, `label` (a reviewer's decision) and `export-labels`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import LdmscanError
from ..verdict import Label, Source
from .options import db_option
from .render import image_history, report_tables

if TYPE_CHECKING:
    from ..storage import Store


def _when(value: str | None) -> datetime | None:
    """--since/--until: an ISO date or datetime, or a span back from now (7d, 12h, 30m)."""
    if not value:
        return None
    units = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}
    if value[-1] in units and value[:-1].isdigit():
        return datetime.now(timezone.utc) - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: use YYYY-MM-DD[THH:MM] or 7d / 12h") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@click.command()
@db_option
@click.option("--since", help="verdicts from this time on (ISO date/time, or 7d, 24h)")
@click.option("--until", help="verdicts before this time")
@click.option(
    "--label",
    "labels",
    multiple=True,
    type=click.Choice([label.value for label in Label]),
    help="only verdicts with this label (repeatable)",
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    type=click.Choice([source.value for source in Source]),
    help="only verdicts from this command (repeatable)",
)
@click.option("--path-prefix", help="only images seen under this path or URI prefix")
@click.option("--detector", "detector_name", help="detector name, or name@version")
@click.option("--min-score", type=click.FloatRange(0, 1), help="only scores at or above this")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "html"]),
    default="table",
    show_default=True,
    help="table on the terminal, csv / json rows, or a self-contained html page",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write here instead of stdout (- is stdout; html needs a file)",
)
@click.option("--top", type=int, default=10, show_default=True, help="flagged files listed")
def report(
    db: str | None,
    since: str | None,
    until: str | None,
    labels: tuple[str, ...],
    sources: tuple[str, ...],
    path_prefix: str | None,
    detector_name: str | None,
    min_score: float | None,
    fmt: str,
    output: Path | None,
    top: int,
) -> None:
    """Audit report: what was flagged, when, where and why."""
    from ..reports import FIELDS, ReportFilter, report_rows, summarise
    from ..storage import Store

    where = ReportFilter(
        since=_when(since),
        until=_when(until),
        label=labels,
        source=sources,
        path_prefix=path_prefix,
        detector=detector_name,
        min_score=min_score,
    )
    with Store(db) as store:
        rows = report_rows(store, where)
    summary = summarise(rows, top)
    shown = ", ".join(
        f"{k}={v}"
        for k, v in [
            ("since", since),
            ("until", until),
            ("label", ",".join(labels)),
            ("source", ",".join(sources)),
            ("path-prefix", path_prefix),
            ("detector", detector_name),
            ("min-score", min_score),
        ]
        if v not in (None, "")
    )
    if fmt == "html":
        from ..report_html import render

        if output is None or str(output) == "-":
            raise click.UsageError("--format html needs -o FILE")
        output.write_text(render(rows, summary, shown))
        click.echo(f"wrote {output} ({len(rows)} verdicts)", err=True)
        return
    if fmt in {"csv", "json"}:
        import csv
        import io

        buffer = io.StringIO()
        if fmt == "json":
            json.dump(
                {
                    "filters": shown,
                    "summary": {
                        k: v
                        for k, v in summary.items()
                        if k not in {"top_flagged", "disagreements"}
                    },
                    "rows": rows,
                },
                buffer,
                indent=2,
                default=str,
            )
        else:
            writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "evidence_kinds": ";".join(row["evidence_kinds"])})
        if output and str(output) != "-":
            output.write_text(buffer.getvalue())
        else:
            click.echo(buffer.getvalue(), nl=False)
        return
    report_tables(summary, shown)


def _resolve_image(store: Store, target: str) -> str:
    candidate = Path(target)
    if candidate.is_file():
        from ..imaging import read_file, sha256_bytes

        return sha256_bytes(read_file(candidate))
    sha = store.find_sha256(target)
    if sha is None:
        raise LdmscanError(f"{target}: no such file, sha256 or recorded location in the database")
    return sha


@click.command()
@click.argument("target")
@db_option
@click.option("--json", "as_json", is_flag=True, help="the history as one JSON object")
def show(target: str, db: str | None, as_json: bool) -> None:
    """The whole history of one image (FILE, sha256 or a recorded path)."""
    from ..reports import history
    from ..storage import Store

    with Store(db) as store:
        sha = _resolve_image(store, target)
        found = history(store, sha)
    if found["image"] is None:
        raise LdmscanError(f"{target}: not in the database (sha256 {sha})")
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
        return
    image_history(found, sha)


@click.command("label")
@click.argument("target")
@click.argument("decision", type=click.Choice([Label.REAL.value, Label.GENERATED.value]))
@click.option("--note", help="why, for the audit trail")
@click.option("--reviewer", help="who decided (default: the login name)")
@db_option
def label_cmd(
    target: str, decision: str, note: str | None, reviewer: str | None, db: str | None
) -> None:
    """Record a reviewer's decision on an image (FILE, sha256 or a recorded path)."""
    from ..storage import Store

    if not reviewer:
        import getpass

        try:  # $LOGNAME, $USER, ... then the password database
            reviewer = getpass.getuser()
        except (KeyError, OSError):
            reviewer = None
    with Store(db) as store:
        sha = _resolve_image(store, target)
        try:
            store.add_review(sha, decision, note, reviewer)
        except LookupError as exc:
            raise LdmscanError(f"{target}: {exc}; scan it first") from exc
    click.echo(f"{sha[:16]} reviewed as {decision}")


@click.command("export-labels")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@db_option
def export_labels(out: Path, db: str | None) -> None:
    """Copy reviewed images into OUT/real and OUT/generated with a MANIFEST.tsv, ready for
    `ldmscan train eval` and `ldmscan train calibrate`."""
    from ..exports import export_reviewed
    from ..storage import Store

    with Store(db) as store:
        written, missing = export_reviewed(store, out)
    click.echo(
        f"exported {written} reviewed images to {out}"
        + (f"; {missing} skipped (file no longer at any recorded location)" if missing else "")
    )
