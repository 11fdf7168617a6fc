"""Scoring throughput on a GPU (issue 19): the engine as shipped, and a GPU-decode pipeline.

    python benchmarks/bench_gpu.py                      # on the GPU: 2,000 synthetic 1 MP JPEGs
    python benchmarks/bench_gpu.py --device cpu --count 8 --batch 8   # the CPU check of the script

Two pipelines, both at 1 and 5 tries, in one run:

- `engine`: `Engine` (torch runtime, fp16, channels-last) fed by its decode threads: Pillow's
  libjpeg-turbo on the CPU cores, crops placed as the card says. What `ldmscan scan` does.
- `nvjpeg`: torchvision's `decode_jpeg(device=...)` decodes batches of files on the GPU itself
  (nvJPEG), crops are cut there at the grid boxes of `crops.crop_boxes` (the card's "smoothest"
  placement needs each cell's detail, which this pipeline does not measure: it shows how fast the
  GPU side can go, the engine column is what users get), normalised and scored in one batch.

Prints images/s and the GPU's mean utilisation while each ran (sampled from nvidia-smi).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import git_revision, machine, synthetic_jpegs

from ldmscan import crops as crops_mod
from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.networks import TorchNetwork


class Utilisation:
    """Mean GPU utilisation over a block, sampled every 200 ms from nvidia-smi (none on a CPU)."""

    def __init__(self, device: str) -> None:
        self.enabled = device.startswith("cuda")
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        index = "0"
        while not self._stop.wait(0.2):
            try:
                done = subprocess.run(
                    [
                        "nvidia-smi",
                        "-i",
                        index,
                        "--query-gpu=utilization.gpu",
                        "--format=csv,noheader,nounits",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=5,
                )
                self.samples.append(float(done.stdout.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return

    def __enter__(self) -> Utilisation:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()

    @property
    def mean(self) -> str:
        return f"{statistics.mean(self.samples):.0f}%" if self.samples else "-"


def engine_pipeline(
    detector, files: list[Path], device: str, tries: int, batch: int, workers: int
) -> tuple[float, str]:
    options = EngineOptions(
        device=device,
        runtime="torch",
        tries=tries,
        max_batch=batch,
        decode_workers=workers,
        max_pending=max(256, 4 * batch),
        half=device.startswith("cuda"),
    )
    with Engine(detector, options) as engine:
        engine.check(files[0].read_bytes())  # warm-up: kernels, cuDNN autotuning
        with Utilisation(device) as gpu:
            started = time.perf_counter()
            futures = [engine.submit(path.read_bytes()) for path in files]
            failed = sum(f.result().verdict.error is not None for f in futures)
            elapsed = time.perf_counter() - started
    if failed:
        raise SystemExit(f"{failed} images failed in the engine pipeline")
    return len(files) / elapsed, gpu.mean


def nvjpeg_pipeline(
    detector, files: list[Path], device: str, tries: int, batch: int
) -> tuple[float, str]:
    import torch
    from torchvision.io import decode_jpeg

    network = TorchNetwork(detector, device, half=device.startswith("cuda"))
    size = detector.card.crop_size
    encoded = [torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8) for path in files]

    def run(chunk: list[torch.Tensor]) -> None:
        images = decode_jpeg(chunk, device=device)  # a list of 3 x H x W uint8 tensors
        cut = []
        for image in images:
            height, width = image.shape[1:]
            for top, left, h, w in crops_mod.crop_boxes(height, width, size, tries):
                if (h, w) == (size, size):
                    cut.append(image[:, top : top + h, left : left + w])
        network(torch.stack(cut).permute(0, 2, 3, 1))  # N x H x W x 3 on the device

    per_call = max(1, batch // tries)
    run(encoded[:per_call])  # warm-up
    with Utilisation(device) as gpu:
        started = time.perf_counter()
        for start in range(0, len(encoded), per_call):
            run(encoded[start : start + per_call])
        elapsed = time.perf_counter() - started
    return len(files) / elapsed, gpu.mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", default=None, help="detector file (default: shipped)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--count", type=int, default=2000, help="1 MP JPEGs scored per pipeline")
    parser.add_argument(
        "--distinct",
        type=int,
        default=200,
        help="distinct synthetic files, cycled to --count (making one costs ~60 ms of one core, "
        "which a short GPU lease should not spend; each is still read and decoded every time)",
    )
    parser.add_argument("--tries", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--batch", type=int, default=512, help="crops per model call")
    parser.add_argument("--workers", type=int, default=16, help="the engine's decode threads")
    parser.add_argument("--pipeline", nargs="+", default=["engine", "nvjpeg"])
    args = parser.parse_args()

    distinct = synthetic_jpegs(
        Path(tempfile.mkdtemp(prefix="ldmscan-gpu-")), min(args.distinct, args.count)
    )
    files = [distinct[i % len(distinct)] for i in range(args.count)]
    detector = load_detector(args.detector)
    print(
        f"machine: {machine()}; ldmscan {git_revision()}; detector {detector.card.name} "
        f"{detector.card.version}; {len(files)} synthetic 1152x864 JPEG q90 "
        f"({len(distinct)} distinct); device {args.device}, batch {args.batch}, "
        f"{args.workers} decode threads"
    )
    print()
    print("| pipeline | tries | images/s | GPU utilisation |")
    print("|---|---|---|---|")
    for pipeline in args.pipeline:
        for tries in args.tries:
            if pipeline == "engine":
                rate, used = engine_pipeline(
                    detector, files, args.device, tries, args.batch, args.workers
                )
            else:
                rate, used = nvjpeg_pipeline(detector, files, args.device, tries, args.batch)
            print(f"| {pipeline} | {tries} | {rate:.1f} | {used} |", flush=True)


if __name__ == "__main__":
    main()
