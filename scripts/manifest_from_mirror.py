#!/usr/bin/env python3
"""Write a harvest-format manifest (../shared/data/harvest/real/MANIFEST.tsv's columns) for the
images under some folders of one git mirror, so that `build.py --manifest` rebuilds them and
`ldmscan train split --pool KIND:DIR:MANIFEST` can place them by source.

    python scripts/manifest_from_mirror.py --mirror /work/.mirror/BIDS+BSDS500/repo \
        --source BIDS/BSDS500 --under BSDS500/data/images/train --under BSDS500/data/images/test \
        --license "..." --notes "..." --forbid-manifest ../shared/data/dev/MANIFEST.tsv \
        > training/manifests/bsds500.tsv

Files whose sha256 an evaluation manifest (--forbid-manifest) lists are refused, not skipped:
the run stops, since a shared file means the folders chosen overlap the evaluation set.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import subprocess
import sys
from pathlib import Path, PurePosixPath

from PIL import Image

COLUMNS = [
    *("file", "label", "source", "source_kind", "version", "path_in_source", "width", "height"),
    *("format", "mode", "bytes", "sha256", "has_exif", "camera_make_model", "license", "notes"),
]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def git(mirror: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(mirror), *args], check=True, capture_output=True
    ).stdout


def forbidden_hashes(manifests: list[Path]) -> set[str]:
    hashes: set[str] = set()
    for manifest in manifests:
        with manifest.open(newline="") as handle:
            hashes |= {row["sha256"] for row in csv.DictReader(handle, delimiter="\t")}
    return hashes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, required=True, help="the git directory")
    parser.add_argument("--source", required=True, help="owner/name on GitHub")
    parser.add_argument("--under", action="append", required=True, help="folder in the tree")
    parser.add_argument("--label", default="real")
    parser.add_argument("--prefix", default=None, help="output subfolder (default: repo name)")
    parser.add_argument("--license", required=True)
    parser.add_argument("--notes", default="")
    parser.add_argument("--forbid-manifest", type=Path, action="append", default=[])
    args = parser.parse_args()

    mirror = args.mirror / ".git" if (args.mirror / ".git" / "HEAD").is_file() else args.mirror
    commit = git(mirror, "rev-parse", "HEAD").decode().strip()
    forbidden = forbidden_hashes(args.forbid_manifest)
    prefix = args.prefix or args.source.split("/")[-1].lower()
    paths = git(mirror, "ls-tree", "-r", "--name-only", commit, "--", *args.under).decode()
    writer = csv.DictWriter(sys.stdout, COLUMNS, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    for path in sorted(paths.splitlines()):
        pure = PurePosixPath(path)
        if pure.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        data = git(mirror, "show", f"{commit}:{path}")
        sha256 = hashlib.sha256(data).hexdigest()
        if sha256 in forbidden:
            sys.exit(f"{path} is in an evaluation manifest (sha256 {sha256}): choose other folders")
        with Image.open(io.BytesIO(data)) as image:
            width, height, fmt, mode = image.width, image.height, image.format, image.mode
            exif = image.getexif()
        make_model = " ".join(str(exif.get(tag, "")).strip() for tag in (271, 272)).strip()
        writer.writerow(
            {
                "file": f"{prefix}/{pure.parent.name}__{pure.stem}.{sha256[:8]}{pure.suffix}",
                "label": args.label,
                "source": args.source,
                "source_kind": "github",
                "version": commit,
                "path_in_source": path,
                "width": width,
                "height": height,
                "format": fmt,
                "mode": mode,
                "bytes": len(data),
                "sha256": sha256,
                "has_exif": int(len(exif) > 0),
                "camera_make_model": make_model,
                "license": args.license,
                "notes": args.notes,
            }
        )


if __name__ == "__main__":
    main()
