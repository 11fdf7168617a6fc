"""What the engine's CPU settings are worth: memory layout, batch size and glibc's allocator.

    python benchmarks/bench_cpu_settings.py [--detector FILE] [--seconds 2] [--repeats 3]

Each configuration runs in `--repeats` processes of its own (allocator settings are process-wide
and cannot be put back), on crops of synthetic 1-MP JPEGs at the detector's crop size, and reports:
- model-only crops/s at several batch sizes (the network alone, inference), called from a
  worker thread as the engine's model thread calls it, with the share of a core spent in the
  kernel; and at batch 16 from the main thread (where `train fit` and a plain script run it);
- training ms per step (forward + backward + AdamW on 32 crops of 128 px, the fit recipe's
  batch), for the memory layout;
- decode ms per 1-MP JPEG (`ldmscan.imaging.decode`), for the allocator settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import git_revision, machine, synthetic_jpegs

BATCHES = (8, 16, 32)
CONFIGS = [  # (memory layout, allocator)
    ("contiguous", "glibc default"),
    ("channels-last", "glibc default"),
    ("channels-last", "thresholds 32/32 MiB"),
    ("channels-last", "thresholds 64/256 MiB"),
    ("channels-last", "ldmscan: 64/256 MiB, one arena"),
]


def measure(
    layout: str, heap: str, detector_path: str | None, files: list[Path], seconds: float
) -> dict[str, float]:
    """One configuration, in this process."""
    import ctypes
    import os
    import threading

    import numpy as np
    import torch

    from ldmscan import allocator, crops, imaging
    from ldmscan.detector import load_detector

    libc = ctypes.CDLL("libc.so.6")
    if heap.startswith("ldmscan"):
        assert allocator.keep_large_buffers_in_heap()
    elif heap.startswith("thresholds"):
        mmap_mib, trim_mib = (int(n) for n in heap.split()[1].split("/"))
        assert libc.mallopt(allocator.M_MMAP_THRESHOLD, mmap_mib << 20)
        assert libc.mallopt(allocator.M_TRIM_THRESHOLD, trim_mib << 20)
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

    def rate(batch: int) -> tuple[float, float]:
        """Crops/s at this batch size in the calling thread, and cores spent in the kernel."""
        x = tensor(pool[:batch])
        model(x)
        count, started, before = 0, time.perf_counter(), os.times()
        while time.perf_counter() - started < seconds:
            model(x)
            count += batch
        elapsed = time.perf_counter() - started
        return count / elapsed, (os.times().system - before.system) / elapsed

    result: dict[str, float] = {"decode_ms": decode_ms}

    def in_model_thread() -> None:  # the engine calls the network from a thread of its own
        with torch.inference_mode():
            for batch in BATCHES:
                result[f"batch {batch}"], result[f"kernel {batch}"] = rate(batch)

    worker = threading.Thread(target=in_model_thread)
    worker.start()
    worker.join()
    with torch.inference_mode():
        result["main thread"] = rate(16)[0]
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
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="processes per configuration (where glibc puts a thread's buffers varies by process)",
    )
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
    print(
        f"| layout | allocator | model thread, median: {header} | batch 16 in each process "
        "| kernel cores at batch 16, each | main thread: crops/s at batch 16 | train ms/step "
        "| decode ms/image |"
    )
    print("|---|---|" + "---|" * (len(BATCHES) + 6))
    for layout, heap in CONFIGS:
        command = [sys.executable, __file__, "--worker", layout, heap, "--seconds"]
        command += [str(args.seconds), "--files", json.dumps([str(f) for f in files])]
        if args.detector:
            command += ["--detector", args.detector]
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))

        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        rates = " | ".join(f"{median[f'batch {b}']:.1f}" for b in BATCHES)
        each = " / ".join(f"{r['batch 16']:.0f}" for r in runs)
        kernel = " / ".join(f"{r['kernel 16']:.2f}" for r in runs)
        print(
            f"| {layout} | {heap} | {rates} | {each} | {kernel} | {median['main thread']:.1f} "
            f"| {median['train_ms']:.0f} | {median['decode_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
