"""Where should the crops go? Scores every cell of a grid of native-resolution crops on a
labelled set and reports image-level AUC for 1-try placement rules and N-try aggregations.

    python benchmarks/crop_placement.py --detector ldmscan/models/default.safetensors \
        --real ../shared/data/dev/real --generated ../shared/data/dev/generated \
        --manifest ../shared/data/dev/MANIFEST.tsv --grid 9

Rules compared (all on the same crops, so the differences are the rules' own):
- centre: the 1-try crop of the "grid" placement;
- cell i: one fixed grid cell for every image (row by row from the top left);
- most / least textured: the cell with the highest / lowest high-frequency energy;
- smoothest placement: the engine's `placement = "smoothest"` (flat cells last);
- mean of all 9: the grid placement with 9 tries; mean of the 3 most textured.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ldmscan import crops, imaging
from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.training.evaluate import degrade, load_items, roc_metrics


def score_grid(detector, args, crop_size: int):
    """Logits of every grid cell and of the centre crop, and each cell's texture energy."""
    items = load_items(args.real, args.generated, args.manifest)
    labels, centre, cells, energies = [], [], [], []
    with Engine(detector, EngineOptions(device="cpu")) as engine:
        for item in items:
            data = degrade(imaging.read_file(item.path), args.variant)
            pixels = imaging.decode(data).pixels
            h, w = pixels.shape[:2]
            if min(h, w) < crops.MIN_SIDE:
                continue
            boxes = crops.crop_boxes(h, w, crop_size, args.grid)
            if len(boxes) < args.grid:  # too small for a full grid: not comparable
                continue
            patches = [pixels[t : t + ch, left : left + cw] for t, left, ch, cw in boxes]
            (t, left, ch, cw) = crops.crop_boxes(h, w, crop_size, 1)[0]
            batch = np.stack([*patches, pixels[t : t + ch, left : left + cw]])
            logits = engine.logits(batch)
            labels.append(item.label)
            cells.append(logits[:-1])
            centre.append(logits[-1])
            energies.append([crops.texture_energy(p) for p in patches])
    return labels, centre, cells, energies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", type=Path, required=True)
    parser.add_argument("--real", type=Path, action="append", required=True)
    parser.add_argument("--generated", type=Path, action="append", required=True)
    parser.add_argument("--manifest", type=Path)
    parser.add_argument(
        "--grid", type=int, default=crops.CANDIDATES, help="grid cells per image (the engine: 9)"
    )
    parser.add_argument("--crop-size", type=int, help="override the card's crop size")
    parser.add_argument(
        "--variant",
        default="original",
        help="a degradation from `train eval` (reencoded_jpeg90...)",
    )
    parser.add_argument("--cache", type=Path, help="npz of scored cells: reuse instead of scoring")
    args = parser.parse_args()

    detector = load_detector(args.detector)
    crop_size = args.crop_size or detector.card.crop_size
    if args.cache and args.cache.is_file():
        saved = np.load(args.cache)
        labels, centre, cells, energies = (
            saved[k] for k in ("labels", "centre", "cells", "energy")
        )
        labels = [int(v) for v in labels]
    else:
        labels, centre, cells, energies = score_grid(detector, args, crop_size)
        if args.cache:
            np.savez(args.cache, labels=labels, centre=centre, cells=cells, energy=energies)
    cells_a, energy_a, y = np.array(cells), np.array(energies), labels
    index = np.arange(len(y))
    order = np.argsort(-energy_a, axis=1)  # most textured first
    # the engine's "smoothest" placement: near-constant cells (clipped sky, fills) go last
    flat = energy_a < crops.FLAT_ENERGY
    smooth_order = np.array([crops.smoothest_first(list(e)) for e in energy_a])

    def mean_of(selection: np.ndarray) -> np.ndarray:
        return np.take_along_axis(cells_a, selection, 1).mean(1)

    rows = {
        "centre (1 try)": np.array(centre),
        "most textured cell (1 try)": cells_a[index, order[:, 0]],
        "least textured cell (1 try)": cells_a[index, order[:, -1]],
        "smoothest placement (1 try)": cells_a[index, smooth_order[:, 0]],
        "mean of 3 most textured": mean_of(order[:, :3]),
        "smoothest placement, 3 tries": mean_of(smooth_order[:, :3]),
        "smoothest placement, 5 tries": mean_of(smooth_order[:, :5]),
        f"mean of all {args.grid}": cells_a.mean(1),
    }
    for i in range(args.grid):
        rows[f"cell {i} (1 try)"] = cells_a[:, i]
    print(
        f"detector {args.detector.name}, crop {crop_size}, variant {args.variant}, "
        f"{len(y)} images ({sum(y)} generated)"
    )
    print(
        f"cells below the flat floor: {flat.mean():.1%}; energy quartiles "
        f"{np.percentile(energy_a, [25, 50, 75]).round(2).tolist()}"
    )
    print("| rule | AUC | TPR@1% | TPR@5% |\n|---|---|---|---|")
    for name, scores in rows.items():
        m = roc_metrics(list(map(float, scores)), y)
        print(f"| {name} | {m['auc']:.3f} | {m['tpr@0.01']:.3f} | {m['tpr@0.05']:.3f} |")


if __name__ == "__main__":
    main()
