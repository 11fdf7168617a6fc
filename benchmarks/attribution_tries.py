"""Attribution head settings compared leave-one-source-out on cached features (made by
`ldmscan train attribution --features-cache FILE`): which examples (harvested images that real
decoders made, photos through the TAESD stand-ins, both), how strong the L2, reconstructions
down-weighted. Evaluated on the harvested originals, never on a repository that a fitted image
came from.

    python benchmarks/attribution_tries.py work/attr/features.npz
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import git_revision, machine

from ldmscan.training.attribution import (
    AttributedImage,
    FeatureTable,
    confusion,
    fit_head,
)


def load(path: Path) -> FeatureTable:
    with np.load(path) as stored:
        meta = json.loads(str(stored["meta"]))
        unique = [AttributedImage(Path(p), s, g, o) for p, s, g, o in meta["images"]]
        rows = stored["rows"].tolist()
        return FeatureTable(
            [unique[r] for r in rows], stored["variants"].tolist(), stored["features"]
        )


def loso(
    table: FeatureTable, use: np.ndarray, weights: np.ndarray, weight_decay: float, steps: int
) -> dict[str, object]:
    labels = table.labels()
    groups = np.array(table.groups())
    harvest = np.array([i.origin == "harvest" for i in table.images])
    original = np.array([v == "original" for v in table.variants])
    truth: list[int] = []
    guess: list[int] = []
    for source in sorted(set(groups[harvest])):
        held = groups == source
        train = use & ~held
        head = fit_head(
            table.features[train],
            labels[train],
            weight_decay=weight_decay,
            steps=steps,
            sample_weight=weights[train],
        )
        shown = held & original
        truth.extend(labels[shown].tolist())
        guess.extend(head.probabilities(table.features[shown]).argmax(1).tolist())
    return confusion(truth, guess)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("features", type=Path)
    parser.add_argument("--weight-decay", type=float, nargs="+", default=[1e-3, 1e-2])
    parser.add_argument("--steps", type=int, default=100, help="L-BFGS iterations per fit")
    parser.add_argument(
        "--drop-last",
        type=int,
        default=0,
        help="leave out the last N feature columns (a cache made at git cec5c30 ends with the "
        "1280 pooled features: --drop-last 1280 is the stage statistics alone)",
    )
    parser.add_argument(
        "--only", nargs="+", help="run only the example sets whose name starts with these"
    )
    args = parser.parse_args()
    table = load(args.features)
    if args.drop_last:
        table.features = table.features[:, :, : -args.drop_last]
    harvest = np.array([i.origin == "harvest" for i in table.images])
    everything = np.ones(len(table.images), bool)
    print(
        f"{len(table.images)} feature rows of {table.features.shape[2]} features, {machine()}, "
        f"git {git_revision()}"
    )
    print("| examples | L2 | top-1 | per class (sd1-2 / sdxl / sd3 / flux1 / flux2) | s |")
    print("|---|---|---|---|---|")
    settings = [
        ("harvest + reconstructions", everything, np.ones(len(table.images))),
        ("harvest + reconstructions x0.25", everything, np.where(harvest, 1.0, 0.25)),
        ("harvest only", harvest, np.ones(len(table.images))),
    ]
    for name, use, weights in settings:
        if args.only and not any(name.startswith(prefix) for prefix in args.only):
            continue
        for decay in args.weight_decay:
            started = time.perf_counter()
            report = loso(table, use, weights, decay, args.steps)
            per = report["per_class"]
            shares = " / ".join(
                f"{per[c]['accuracy']:.2f}" if c in per else "-"  # type: ignore[index]
                for c in ("sd1-2", "sdxl", "sd3", "flux1", "flux2")
            )
            print(
                f"| {name} | {decay:g} | {report['accuracy']:.3f} (n={report['n']}) | {shares} "
                f"| {time.perf_counter() - started:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
