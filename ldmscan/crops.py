"""Where crops are taken: one policy shared by the engine and by training.

- Native resolution only; a crop never resizes.
- Crop corners sit on a multiple of GRID pixels. LDM decoders upsample latents by 8, so their
  fingerprint repeats with period 8 from the image's top-left corner; aligned crops show the
  network that pattern in one phase, in training and in scoring alike.
- An image narrower or shorter than the crop is scored whole along that side (no padding: padded
  pixels would be invented content). The network is fully convolutional with global pooling, so
  it accepts the smaller window; such crops are batched with others of the same shape.
- Placement (the detector card's `placement`): "grid" spreads the tries over the image (1 try =
  the central crop); "smoothest" lays a grid of at least CANDIDATES cells and keeps the `tries`
  cells with the least fine detail, leaving near-flat ones (clipped sky, fills) for last. A
  decoder's fingerprint is a faint fine-scale pattern: in a photo's textured regions real detail
  drowns it, in smooth regions it stands out (benchmarks/crop_placement.py measures this; the
  centre, usually the in-focus subject, was the weakest place to look).
"""

from __future__ import annotations

import math

import numpy as np

from .detector import PLACEMENTS

GRID = 8
MIN_SIDE = 32  # below this there are too few 8x8 blocks for the fingerprint to mean anything
CANDIDATES = 9  # cells the "smoothest" placement chooses from (at least; more if tries > 9)
FLAT_ENERGY = 1.0  # mean |Laplacian| of luma below which a cell counts as flat (no signal)


def window(height: int, width: int, crop_size: int) -> tuple[int, int]:
    return min(crop_size, height), min(crop_size, width)


def _aligned_positions(extent: int, window_size: int, count: int) -> list[int]:
    """`count` grid-aligned start positions spread evenly over [0, extent - window_size]."""
    last = extent - window_size
    if count == 1:
        return [(last // 2) // GRID * GRID]
    positions = []
    for i in range(count):
        position = round(last * i / (count - 1))
        positions.append(min(position // GRID * GRID, last // GRID * GRID))
    return positions


def grid_shape(height: int, width: int, tries: int) -> tuple[int, int]:
    """Rows x columns of a near-square grid with at least `tries` cells, following the aspect."""
    aspect = width / height
    cols = max(1, round(math.sqrt(tries * aspect)))
    rows = max(1, math.ceil(tries / cols))
    while rows * cols < tries:
        cols += 1
    return rows, cols


def crop_boxes(
    height: int, width: int, crop_size: int, tries: int
) -> list[tuple[int, int, int, int]]:
    """Deterministic (top, left, crop_height, crop_width) grid boxes; 1 try = the central crop.

    With N tries the crops are the cells of a grid spread over the whole image, taken in an even
    stride when the grid has more cells than tries. Identical boxes (small images) are dropped,
    so fewer than N crops come back when the image cannot hold N distinct ones.
    """
    if tries < 1:
        raise ValueError("tries must be >= 1")
    crop_h, crop_w = window(height, width, crop_size)
    if tries == 1:
        return [
            (
                _aligned_positions(height, crop_h, 1)[0],
                _aligned_positions(width, crop_w, 1)[0],
                crop_h,
                crop_w,
            )
        ]
    rows, cols = grid_shape(height, width, tries)
    tops = _aligned_positions(height, crop_h, rows)
    lefts = _aligned_positions(width, crop_w, cols)
    cells = [(top, left) for top in tops for left in lefts]
    if len(cells) > tries:
        step = len(cells) / tries
        cells = [cells[int(i * step + step / 2)] for i in range(tries)]
    boxes: list[tuple[int, int, int, int]] = []
    for top, left in cells:
        box = (top, left, crop_h, crop_w)
        if box not in boxes:
            boxes.append(box)
    return boxes


def texture_energy(crop: np.ndarray) -> float:
    """Mean absolute 4-neighbour Laplacian of the luma (0-255 scale): how much fine detail a
    crop holds. Cheap next to the network: one pass of array arithmetic over the crop."""
    luma = crop.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if min(luma.shape) < 3:
        return 0.0
    lap = 4 * luma[1:-1, 1:-1] - luma[:-2, 1:-1] - luma[2:, 1:-1] - luma[1:-1, :-2] - luma[1:-1, 2:]
    return float(np.abs(lap).mean())


def smoothest_boxes(
    pixels: np.ndarray, crop_size: int, tries: int
) -> list[tuple[int, int, int, int]]:
    """The `tries` least-detailed cells of a grid of max(CANDIDATES, tries) cells; flat cells
    come last (the most detailed of them first), so they are used only when nothing else is."""
    height, width = pixels.shape[:2]
    boxes = crop_boxes(height, width, crop_size, max(CANDIDATES, tries))
    if len(boxes) <= tries:
        return boxes
    energies = [texture_energy(pixels[t : t + h, left : left + w]) for t, left, h, w in boxes]
    return [boxes[i] for i in sorted(smoothest_first(energies)[:tries])]


def smoothest_first(energies: list[float]) -> list[int]:
    """Cell indices, least detailed first; flat cells last, the most detailed of them first."""

    def key(i: int) -> tuple[bool, float]:
        flat = energies[i] < FLAT_ENERGY
        return flat, -energies[i] if flat else energies[i]

    return sorted(range(len(energies)), key=key)


def place(
    pixels: np.ndarray, crop_size: int, tries: int, placement: str = "grid"
) -> list[tuple[int, int, int, int]]:
    """The boxes a detector with this placement scores on this image."""
    if placement == "grid":
        return crop_boxes(pixels.shape[0], pixels.shape[1], crop_size, tries)
    if placement == "smoothest":
        if tries < 1:
            raise ValueError("tries must be >= 1")
        return smoothest_boxes(pixels, crop_size, tries)
    raise ValueError(f"unknown placement {placement!r}; known: {', '.join(PLACEMENTS)}")


def make_crops(
    pixels: np.ndarray, crop_size: int, tries: int, placement: str = "grid"
) -> list[np.ndarray]:
    """HxWx3 uint8 -> list of crop arrays (views, no copy, no resampling)."""
    return [
        pixels[t : t + h, left : left + w]
        for t, left, h, w in place(pixels, crop_size, tries, placement)
    ]


def random_aligned_box(
    height: int, width: int, crop_size: int, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A random grid-aligned window for training, from the same rules as scoring."""
    crop_h, crop_w = window(height, width, crop_size)
    top = int(rng.integers(0, (height - crop_h) // GRID + 1)) * GRID
    left = int(rng.integers(0, (width - crop_w) // GRID + 1)) * GRID
    return top, left, crop_h, crop_w
