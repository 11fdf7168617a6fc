"""The training set's audit trail: every image a detector was fitted, calibrated or validated on,
with its sha256, its source (repository or package) and its role.

`plan_training_set` splits pools of images by *source*, never by file, so an image is never
validated or calibrated on a repository that a fitting image came from. Sources that the
evaluation sets draw on (dev's MANIFEST.tsv names them) are refused outright: the held-out judge
is drawn from the same repositories and packages, so fitting on any of them would leak.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ldmscan.errors import LdmscanError

ROLES = ("fit", "calibrate", "validate")
KINDS = ("photo", "art", "generated")  # photo and art are the real class
COLUMNS = ("sha256", "source", "role", "label", "kind", "group", "file")
# Sources the held-out judge draws on besides those named in dev's MANIFEST.tsv.
ALWAYS_FORBIDDEN = ("Stability-AI/generative-models", "lomiri-wallpapers-20.04")


class TrainingSetError(LdmscanError):
    pass


@dataclass(frozen=True)
class Pool:
    """A folder of images of one kind; MANIFEST (file, source[, sha256, latent_space, flags])
    names each file's source. Without one, the folder's name is the source of all of them."""

    kind: str
    folder: Path
    manifest: Path | None = None
    all_fit: bool = False  # e.g. the photos behind the aligned pairs: fitted on, whole sources

    @classmethod
    def parse(cls, spec: str, all_fit: bool = False) -> Pool:
        """KIND:FOLDER[:MANIFEST]."""
        kind, _, rest = spec.partition(":")
        folder, _, manifest = rest.partition(":")
        if kind not in KINDS or not folder:
            raise TrainingSetError(
                f"pool {spec!r}: expected KIND:FOLDER[:MANIFEST], KIND in {KINDS}"
            )
        folder_path = Path(folder)
        manifest_path = Path(manifest) if manifest else folder_path / "MANIFEST.tsv"
        return cls(kind, folder_path, manifest_path if manifest_path.is_file() else None, all_fit)


@dataclass(frozen=True)
class Row:
    sha256: str
    source: str
    role: str
    label: str  # real | generated
    kind: str
    group: str  # latent space of a generated image, art kind, or ""
    file: str  # path as the run saw it


@dataclass
class SplitPolicy:
    """Shares of *sources* per role, by a stable hash of the source name."""

    calibrate_share: float = 0.75  # photo sources not fitted on
    art_validate_share: float = 0.3
    art_calibrate_share: float = 0.3
    generated_validate_share: float = 0.15
    # generated rows with these manifest flags are never fitted on (not pure decoder pixels):
    # validated on where their source is a validation source, left out otherwise
    validate_only_flags: tuple[str, ...] = ("upscaled",)
    # generated rows whose latent_space is one of these are left out (not an LDM decoder)
    drop_groups: tuple[str, ...] = ("pixel",)
    overrides: dict[str, str] = field(default_factory=dict)  # source -> role
    seed: str = "ldmscan-1"


def forbidden_sources(manifests: Iterable[Path]) -> set[str]:
    """Every `source` an evaluation manifest names, plus the ones always refused."""
    names = set(ALWAYS_FORBIDDEN)
    for manifest in manifests:
        with Path(manifest).open(newline="") as fh:
            names.update(
                row["source"]
                for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
                if row.get("source")
            )
    return names


def _unit(source: str, seed: str) -> float:
    digest = hashlib.sha256(f"{seed}:{source}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def _source_role(kind: str, source: str, policy: SplitPolicy) -> str:
    if source in policy.overrides:
        return policy.overrides[source]
    u = _unit(source, policy.seed)
    if kind == "generated":
        return "validate" if u < policy.generated_validate_share else "fit"
    if kind == "art":
        if u < policy.art_validate_share:
            return "validate"
        if u < policy.art_validate_share + policy.art_calibrate_share:
            return "calibrate"
        return "fit"
    return "calibrate" if u < policy.calibrate_share else "fit"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pool_entries(pool: Pool) -> list[dict[str, str]]:
    """(file, source, sha256, group, flags) for each image present in the pool's folder."""
    if pool.manifest is None:
        from ldmscan.walk import iter_candidates

        return [
            {"path": str(p), "source": pool.folder.name, "sha256": "", "group": "", "flags": ""}
            for p in iter_candidates([pool.folder])
        ]
    entries = []
    with pool.manifest.open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            path = pool.folder / row["file"]
            if not path.is_file():
                continue  # a row whose bytes could not be rebuilt
            entries.append(
                {
                    "path": str(path),
                    "source": row.get("source") or pool.folder.name,
                    "sha256": row.get("sha256", ""),
                    "group": row.get("latent_space") or row.get("kind") or "",
                    "flags": row.get("flags") or "",
                }
            )
    return entries


def plan_training_set(
    pools: list[Pool], forbidden: set[str], policy: SplitPolicy | None = None
) -> list[Row]:
    """One row per distinct image (by sha256) with its role. Raises if a pool holds a file from
    a forbidden source: that is a data-leak to fix, not something to skip silently."""
    policy = policy or SplitPolicy()
    fitted_sources: set[str] = set()
    for pool in pools:
        if pool.all_fit:
            fitted_sources.update(e["source"] for e in _pool_entries(pool))
    rows: list[Row] = []
    seen: set[str] = set()
    for pool in pools:
        for entry in _pool_entries(pool):
            source = entry["source"]
            if source in forbidden:
                raise TrainingSetError(
                    f"{entry['path']}: source {source!r} is one the evaluation sets draw on"
                )
            if pool.kind == "generated" and entry["group"] in policy.drop_groups:
                continue
            path = Path(entry["path"])
            sha = entry["sha256"] or _sha256(path)
            if sha in seen:
                continue
            seen.add(sha)
            if pool.all_fit or source in fitted_sources:
                role = "fit"  # a source fitted on anywhere is never calibrated or validated on
            else:
                role = _source_role(pool.kind, source, policy)
            flags = set(filter(None, entry["flags"].split(",")))
            if flags & set(policy.validate_only_flags):
                if role == "fit":
                    continue  # never fitted on, and never validated on a fitted repository
                role = "validate"
            label = "generated" if pool.kind == "generated" else "real"
            rows.append(Row(sha, source, role, label, pool.kind, entry["group"], str(path)))
    return rows


def write_tsv(rows: Iterable[Row], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in sorted(rows, key=lambda r: (r.role, r.kind, r.source, r.file)):
            writer.writerow([getattr(row, c) for c in COLUMNS])
    return path


def read_tsv(path: Path) -> list[Row]:
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise TrainingSetError(f"{path}: not a training-set file (lacks {sorted(missing)})")
        return [Row(**{c: r[c] for c in COLUMNS}) for r in reader]


def counts(rows: Iterable[Row]) -> dict[str, dict[str, int]]:
    """{role: {"real/photo": n, "real/art": n, "generated": n, "sources": n}} for cards."""
    by_role: dict[str, Counter[str]] = {}
    sources: dict[str, set[str]] = {}
    for row in rows:
        key = "generated" if row.label == "generated" else f"real/{row.kind}"
        by_role.setdefault(row.role, Counter())[key] += 1
        sources.setdefault(row.role, set()).add(row.source)
    return {
        role: {**dict(sorted(c.items())), "sources": len(sources[role])}
        for role, c in sorted(by_role.items())
    }


def materialise(rows: Iterable[Row], out: Path) -> dict[str, Path]:
    """Link each image into OUT/<role>/<kind>/ (hard links; copies across file systems), so the
    folder-taking commands (fit, calibrate, eval) can be pointed at one role and kind."""
    made: dict[str, Path] = {}
    for row in rows:
        folder = out / row.role / row.kind
        folder.mkdir(parents=True, exist_ok=True)
        source = Path(row.file)
        target = folder / f"{row.sha256[:16]}{source.suffix.lower()}"
        made[f"{row.role}/{row.kind}"] = folder
        if target.exists():
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    return made
