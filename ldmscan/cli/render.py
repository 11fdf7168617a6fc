"""Rich rendering shared by the commands: progress, the scan summary, report tables, an
image's history, a detector's card. Commands gather data; these draw it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..attribution import LATENT_SPACES
from ..verdict import Label

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from ..detector import DetectorCard

LABEL_ORDER = (Label.GENERATED, Label.UNCERTAIN, Label.REAL, Label.ERROR)


def files_per_second(done: float, elapsed: float) -> float:
    return done / elapsed if elapsed > 0 else 0.0


def progress(console: Console, quiet: bool) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class RateColumn(TextColumn):
        def render(self, task: Any) -> str:  # type: ignore[override]
            # files done over time since the start: the definition the summary uses too (rich's
            # own speed is a moving window, which disagreed with the summary by 2x)
            return f"{files_per_second(task.completed, task.elapsed or 0.0):.1f} files/s"

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(""),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet and not console.is_terminal,
    )


def scan_summary(
    console: Console,
    counts: dict[str, int],
    total: int,
    elapsed: float,
    detector: str,
    db_url: str,
) -> None:
    from rich.table import Table

    rate = files_per_second(total, elapsed)
    table = Table(title="ldmscan scan")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    for key in [*(label.value for label in LABEL_ORDER), "skipped"]:
        if counts.get(key):
            label = key
            if key == "skipped":
                parts = [
                    f"{counts[k]} {k.split(':')[1]}"
                    for k in sorted(counts)
                    if k.startswith("skipped:")
                ]
                label = f"skipped, already scored ({', '.join(parts)})"
            table.add_row(label, str(counts[key]))
    console.print(table)
    console.print(f"{total} files in {elapsed:.1f}s ({rate:.1f} files/s), detector {detector}")
    console.print(f"verdicts stored in {db_url}")


def report_tables(summary: dict[str, Any], shown: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{summary['total']} verdicts[/]" + (f" ({shown})" if shown else ""))
    labels = [label.value for label in LABEL_ORDER]

    def counts_table(title: str, data: dict[str, dict[str, int]]) -> None:
        table = Table(title=title)
        table.add_column(title.split()[-1], overflow="fold")
        for label in labels:
            table.add_column(label, justify="right")
        for key, counts in list(data.items())[:20]:
            table.add_row(str(key), *(str(counts.get(label, 0)) for label in labels))
        console.print(table)

    table = Table(title="by label")
    for label in summary["by_label"]:
        table.add_column(label, justify="right")
    table.add_row(*(str(n) for n in summary["by_label"].values()))
    console.print(table)

    def pairs_table(title: str, key: str, value: str, data: dict[str, int]) -> None:
        table = Table(title=title)
        table.add_column(key)
        table.add_column(value, justify="right")
        for name, n in data.items():
            table.add_row(str(name), str(n))
        console.print(table)

    pairs_table("by day", "day", "verdicts", summary["by_day"])
    counts_table("by folder", summary["by_folder"])
    counts_table("by camera", summary["by_camera"])
    pairs_table("by evidence kind", "kind", "images", summary["by_evidence"])
    if summary.get("by_latent_space"):
        pairs_table("flagged by latent space", "latent space", "images", summary["by_latent_space"])
    flagged = Table(title="top flagged")
    for column in ("score", "label", "latent space", "path", "why"):
        # paths wrap rather than lose their end: the file name is what a moderator needs
        flagged.add_column(column, overflow="fold")
    for row in summary["top_flagged"]:
        score = "-" if row["score"] is None else f"{row['score']:.3f}"
        flagged.add_row(
            score,
            row["label"],
            latent_space_text(row.get("latent_space"), row.get("latent_space_probability")),
            row["path"] or row["sha256"][:16],
            (row["reasons"] or [""])[-1],
        )
    console.print(flagged)
    if summary["disagreements"]:
        table = Table(title="reviewer disagrees with detector")
        for column in ("path", "detector", "reviewer", "note"):
            table.add_column(column, overflow="fold")
        for row in summary["disagreements"]:
            table.add_row(
                row["path"] or row["sha256"][:16],
                row["label"],
                row["review"],
                row["review_note"] or "",
            )
        console.print(table)


def image_history(found: dict[str, Any], sha: str) -> None:
    """`ldmscan show`: an image, where it was seen, every verdict, evidence and review."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    image = found["image"]
    console.print(
        f"[bold]{sha}[/]  {image['width']}x{image['height']} {image['format']} "
        f"{image['size_bytes']} bytes, first seen {image['first_seen']}"
    )
    table = Table(title="locations")
    for column in ("uri", "source", "first seen", "last seen", "deleted"):
        table.add_column(column, overflow="fold")
    for loc in found["locations"]:
        table.add_row(
            loc["uri"],
            loc["source"],
            str(loc["first_seen"])[:19],
            str(loc["last_seen"])[:19],
            str(loc["deleted_at"] or "")[:19],
        )
    console.print(table)
    table = Table(title="verdicts")
    for column in (
        "detector",
        "label",
        "score",
        "tries",
        "latent space",
        "when",
        "reasons / error",
    ):
        table.add_column(column)
    for v in found["verdicts"]:
        table.add_row(
            f"{v['detector_name']}@{v['detector_version']}",
            v["label"],
            "-" if v["probability"] is None else f"{v['probability']:.3f}",
            str(v["tries"]),
            latent_space_text(
                (v.get("attribution") or {}).get("guess"),
                (v.get("attribution") or {}).get("probability"),
            ),
            str(v["created_at"])[:19],
            v["error"] or "; ".join(v["reasons"] or []),
        )
    console.print(table)
    for v in found["verdicts"]:
        if v.get("attribution"):
            shares = ", ".join(
                f"{LATENT_SPACES.get(k, k)} {p:.2f}"
                for k, p in sorted(v["attribution"]["probabilities"].items(), key=lambda x: -x[1])
            )
            console.print(f"latent space ({v['detector_name']}@{v['detector_version']}): {shares}")
    evidence = {
        (e["kind"], e["strength"], e["detail"])
        for v in found["verdicts"]
        for e in v["evidence"] or []
    }
    for kind, strength, detail in sorted(evidence):
        console.print(f"evidence [{strength}] {kind}: {detail}")
    if found["exif"]:
        tags = found["exif"]["tags"]
        console.print(
            f"EXIF: {len(tags)} tags; camera {found['exif']['camera_make'] or '-'} "
            f"{found['exif']['camera_model'] or ''}; software "
            f"{found['exif']['software'] or '-'}"
        )
    for review in found["reviews"]:
        console.print(
            f"review {str(review['created_at'])[:19]} by {review['reviewer'] or '?'}: "
            f"{review['label']}" + (f" ({review['note']})" if review["note"] else "")
        )


def latent_space_text(guess: str | None, probability: float | None) -> str:
    """ "SDXL 0.83", or "-" when the verdict carries no guess."""
    if not guess or probability is None:
        return "-"
    return f"{LATENT_SPACES.get(guess, guess)} {probability:.2f}"


def attribution_summary(card: DetectorCard) -> list[str]:
    """What the card says about its attribution head, if it has one."""
    if not card.attribution_classes:
        return ["latent-space attribution: none (a detection-only network)"]
    names = ", ".join(LATENT_SPACES.get(c, c) for c in card.attribution_classes)
    lines = [
        f"latent-space attribution: {names}; a guess is shown from probability "
        f"{float(card.attribution.get('confidence', 0.0)):.3f}"
    ]
    metrics = card.attribution.get("metrics", {})
    loso = metrics.get("leave_one_source_out")
    if loso:
        lines.append(
            f"  leave-one-source-out (harvested, {loso.get('sources', '?')} sources): top-1 "
            f"{loso['accuracy']:.3f} on {loso['n']} images"
        )
    dev = metrics.get("dev", {}).get(f"{card.default_tries}_tries", {}).get("original")
    if dev:
        flagged = dev["flagged"]
        lines.append(
            f"  dev ({card.default_tries} tries): top-1 {flagged['accuracy']:.3f} on "
            f"{flagged['n']} flagged generated images"
        )
    return lines


def detector_summary(
    card: DetectorCard, path: str, sha: str, runtimes: Sequence[str] = ("torch",)
) -> list[str]:
    """A few lines a moderator can read: what it is, its thresholds and what backs them."""
    stride = "" if card.stem_stride is None else f", stem stride {card.stem_stride}"
    graph = "ONNX graph stored" if "onnx" in runtimes else "no ONNX graph"
    lines = [
        f"{card.name} {card.version}  ({path}, sha256 {sha[:12]})",
        f"architecture {card.architecture}{stride}; crops {card.crop_size} px placed "
        f"{card.placement!r}; {card.default_tries} tries by default ({card.aggregation})",
        f"runtimes: {', '.join(runtimes)} ({graph})",
    ]
    counts = card.calibration.get("real_images", {})
    if card.thresholds:
        lines.append("thresholds (probability at a false-positive rate on real images):")
        for tries in sorted(card.thresholds, key=int):
            n = int(counts.get(tries, 0))
            parts = []
            for fpr in ("0.001", "0.01"):
                value = card.thresholds[tries].get(fpr)
                if value is None:
                    continue
                resolved = n * float(fpr) >= 1
                parts.append(f"{float(fpr):.1%} {value:.4f}" + ("" if resolved else "*"))
            lines.append(f"  {tries} tries: " + ", ".join(parts) + f"  (on {n} real images)")
        if any(int(counts.get(t, 0)) * 0.001 < 1 for t in card.thresholds):
            lines.append(
                "  * fewer real images than 1/rate: the rate is not resolved, the "
                "threshold only sits above the highest real score"
            )
    else:
        lines.append("thresholds: none (uncalibrated: run `ldmscan train calibrate`)")
    dev = card.metrics.get("dev", {}).get("modes", {})
    for mode in (f"{card.default_tries}_tries", "1_tries"):
        original = dev.get(mode, {}).get("original")
        if original:
            lines.append(
                f"dev ({mode.replace('_', ' ')}): AUC {original.get('auc', float('nan')):.3f}, "
                f"TPR@1% {original.get('tpr@0.01', float('nan')):.3f}"
            )
    lines.extend(attribution_summary(card))
    training = card.recipe.get("training_set_counts")
    if training:
        lines.append("training set (training-set.tsv beside the file lists every image):")
        for role, by_kind in training.items():
            kinds = ", ".join(f"{k} {v}" for k, v in by_kind.items() if k != "sources")
            lines.append(f"  {role}: {kinds} ({by_kind.get('sources', 0)} sources)")
    if card.notes:
        lines.append(f"notes: {card.notes}")
    return lines
