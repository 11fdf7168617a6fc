"""Can a scan decode only what it scores? (issue 19, "decode what you score")

Times, per 1-MP JPEG, on one thread: today's decode (Pillow to an RGB array), Pillow's DCT-scaled
previews (`draft`, 1/2 to 1/8: what a placement could be chosen on), TurboJPEG's full decode, and
TurboJPEG's lossless crop of the cells a scan scores followed by a decode of just those cells
(the region decode libjpeg-turbo 2.x offers; 3.x adds a cropped decode, not on this machine).
It also checks that a cell cut that way, with a one-MCU margin, has exactly Pillow's pixels.

    python benchmarks/partial_decode.py --folder work/harvest/real  # PyTurboJPEG 1.x, libturbojpeg

Real photos are used, not synthetic noise: entropy decoding, which no region decode can skip,
costs in proportion to the detail a file encodes.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import git_revision, machine
from PIL import Image

from ldmscan.crops import CANDIDATES, crop_boxes


def one_mp_jpegs(folder: Path, count: int) -> list[bytes]:
    found = []
    for path in sorted(folder.rglob("*.jp*g")):
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            pixels = image.width * image.height
            if image.format == "JPEG" and image.mode == "RGB" and 0.7e6 <= pixels <= 1.6e6:
                found.append(data)
        if len(found) == count:
            break
    return found


def best_ms(files: list[bytes], decode: Callable[[bytes], object], repeats: int) -> float:
    for data in files:  # untimed: file caches, allocator, library initialisation
        decode(data)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for data in files:
            decode(data)
        best = min(best, (time.perf_counter() - started) / len(files) * 1e3)
    return best


def pillow_full(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def pillow_draft(scale: int) -> Callable[[bytes], np.ndarray]:
    def decode(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (image.width // scale, image.height // scale))
            return np.asarray(image)

    return decode


def mcu_region(box: tuple[int, int, int, int], width: int, height: int, mcu: int):
    """The MCU-aligned region holding box plus one MCU of margin (chroma upsampling context)."""
    top, left, h, w = box
    x0, y0 = max(0, (left - mcu) // mcu * mcu), max(0, (top - mcu) // mcu * mcu)
    x1, y1 = min(width, left + w + mcu), min(height, top + h + mcu)
    return x0, y0, x1 - x0, y1 - y0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("work/harvest/real"))
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crop-size", type=int, default=192)
    args = parser.parse_args()

    from turbojpeg import TJPF_RGB, TurboJPEG

    turbo = TurboJPEG()
    files = one_mp_jpegs(args.folder, args.count)
    if not files:
        raise SystemExit(f"no 1-MP RGB JPEGs under {args.folder}")

    def cells(data: bytes, count: int) -> list[tuple[int, int, int, int]]:
        width, height, _, _ = turbo.decode_header(data)
        return crop_boxes(height, width, args.crop_size, count)

    def regions(data: bytes, count: int) -> list[tuple[int, int, int, int]]:
        width, height, subsampling, _ = turbo.decode_header(data)
        mcu = 16 if subsampling in (2, 4) else 8  # 4:2:0 / 4:1:1-like: 16-px MCUs
        return [mcu_region(box, width, height, mcu) for box in cells(data, count)]

    def turbo_cells(count: int) -> Callable[[bytes], list[np.ndarray]]:
        def decode(data: bytes) -> list[np.ndarray]:
            parts = turbo.crop_multiple(data, regions(data, count))
            return [turbo.decode(part, pixel_format=TJPF_RGB) for part in parts]

        return decode

    # identity: every scored cell cut from a region decode equals Pillow's full decode
    mismatched = 0
    for data in files:
        full = pillow_full(data)
        for box, region, part in zip(
            cells(data, CANDIDATES),
            regions(data, CANDIDATES),
            turbo_cells(CANDIDATES)(data),
            strict=True,
        ):
            top, left, h, w = box
            x0, y0, _, _ = region
            cut = part[top - y0 : top - y0 + h, left - x0 : left - x0 + w]
            mismatched += int(not np.array_equal(cut, full[top : top + h, left : left + w]))

    print(f"machine: {machine()}; ldmscan {git_revision()}")
    print(f"{len(files)} RGB JPEGs of 0.7-1.6 MP from {args.folder}; best of {args.repeats}")
    print(f"cells cut from region decodes differing from Pillow's pixels: {mismatched}")
    print()
    print("| decode | ms per image (one thread) | share of today's |")
    print("|---|---|---|")
    rows = [
        ("Pillow, whole image (today)", pillow_full),
        ("Pillow draft 1/2", pillow_draft(2)),
        ("Pillow draft 1/4", pillow_draft(4)),
        ("Pillow draft 1/8 (a preview to place crops on)", pillow_draft(8)),
        ("TurboJPEG, whole image", lambda d: turbo.decode(d, pixel_format=TJPF_RGB)),
        (f"TurboJPEG lossless crop + decode, the {CANDIDATES} candidate cells", turbo_cells(9)),
        ("TurboJPEG lossless crop + decode, 1 cell", turbo_cells(1)),
    ]
    today = None
    for name, decode in rows:
        ms = best_ms(files, decode, args.repeats)
        today = today or ms
        print(f"| {name} | {ms:.2f} | {ms / today:.0%} |", flush=True)


if __name__ == "__main__":
    main()
