"""What the engine's CPU settings are worth: memory layout, batch size and glibc heap thresholds.

    python benchmarks/bench_cpu_settings.py [--detector FILE] [--seconds 2]

Each configuration runs in its own process (heap thresholds are process-wide and cannot be put
back), on crops of synthetic 1-MP JPEGs at the detector's crop size, and reports:
- model-only crops/s at several batch sizes (the network alone, inference);
- training ms per step (forward + backward + AdamW on 32 crops of 128 px, the fit recipe's
  batch), for the memory layout;
- decode ms per 1-MP JPEG (`ldmscan.imaging.decode`), for the heap thresholds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import git_revision, machine, synthetic_jpegs

BATCHES = (8, 16, 32)
CONFIGS = [  # (memory layout, heap thresholds)
    ("contiguous", "glibc default"),
    ("channels-last", "glibc default"),
    ("channels-last", "32/32 MiB"),
    ("channels-last", "ldmscan (64/256 MiB)"),
]


def measure(layout: str, heap: str, detector_path: str | None, files: list[Path], seconds: float):
    """One configuration, in this process."""
    import ctypes

    import numpy as np
    import torch

    from ldmscan import allocator, crops, imaging
    from ldmscan.detector import load_detector

    if heap == "ldmscan (64/256 MiB)":
        assert allocator.keep_large_buffers_in_heap()
    elif heap == "32/32 MiB":
        libc = ctypes.CDLL("libc.so.6")
        assert libc.mallopt(allocator.M_MMAP_THRESHOLD, 32 << 20)
        assert libc.mallopt(allocator.M_TRIM_THRESHOLD, 32 << 20)
    memory_format = torch.channels_last if layout == "channels-last" else torch.contiguous_format
    detector = load_detector(detector_path)
    card = detector.card
    model = detector.model.eval().to(memory_format=memory_format)
    data = [f.read_bytes() for f in files]
    decoded = [imaging.decode(d).pixels for d in data]
    started = time.perf_counter()
    for d in data * 3:  # each result dropped before the next, as in a scan
        imaging.decode(d)
    decode_ms = (time.perf_counter() - started) / (3 * len(data)) * 1e3
    pool = [c for p in decoded for c in crops.make_crops(p, card.crop_size, 4, "grid")]
    mean = torch.tensor(card.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(card.std).view(1, 3, 1, 1) * 255

    def tensor(batch: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float()
        return ((x - mean) / std).contiguous(memory_format=memory_format)

    result = {"decode_ms": decode_ms}
    with torch.inference_mode():
        for batch in BATCHES:
            x = tensor(pool[:batch])
            model(x)
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                model(x)
                count += batch
            result[f"batch {batch}"] = count / (time.perf_counter() - started)
    training = load_detector(detector_path).model.train().to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(training.parameters(), 1e-5)
    x = tensor([c[:128, :128] for c in pool[:32]])
    target = torch.zeros(32)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    steps, started = 0, None
    while started is None or time.perf_counter() - started < seconds or steps < 3:
        optimizer.zero_grad()
        loss_fn(training(x).view(-1), target).backward()
        optimizer.step()
        if started is None:  # the first step warms up
            started = time.perf_counter()
        else:
            steps += 1
    result["train_ms"] = (time.perf_counter() - started) / steps * 1e3
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", help="detector file (default: shipped)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--worker", nargs=2, metavar=("LAYOUT", "HEAP"), help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        files = [Path(f) for f in json.loads(args.files)]
        print(json.dumps(measure(*args.worker, args.detector, files, args.seconds)))
        return

    files = synthetic_jpegs(Path(tempfile.mkdtemp(prefix="ldmscan-cpu-")), 16)
    print(f"machine: {machine()}; ldmscan {git_revision()}; 16 synthetic 1152x864 JPEGs q90")
    print()
    header = " | ".join(f"crops/s at batch {b}" for b in BATCHES)
    print(f"| layout | heap thresholds | {header} | train ms/step | decode ms/image |")
    print("|---|---|" + "---|" * (len(BATCHES) + 2))
    for layout, heap in CONFIGS:
        command = [sys.executable, __file__, "--worker", layout, heap, "--seconds"]
        command += [str(args.seconds), "--files", json.dumps([str(f) for f in files])]
        if args.detector:
            command += ["--detector", args.detector]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rates = " | ".join(f"{r[f'batch {b}']:.1f}" for b in BATCHES)
        print(f"| {layout} | {heap} | {rates} | {r['train_ms']:.0f} | {r['decode_ms']:.1f} |")


if __name__ == "__main__":
    main()
