"""OpenVINO compile settings for the stored graph, the network alone (uint8 crops in, outputs
out), float32: the engine's settings (free height and width, one LATENCY request) against the
height and width fixed to the card's crop and against single-threaded streams, one per core,
a batch split across them. Outputs must stay identical to the engine's settings.

    python benchmarks/openvino_settings.py --batch 1 2 5 8 16 32 --seconds 3

Issue 19: the engine's end-to-end speed is measured by bench_scan.py; this says what the
network alone could give.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import git_revision, machine

from ldmscan.detector import load_detector
from ldmscan.networks import read_openvino_model


def run_split(requests: list[Any], crops: np.ndarray) -> np.ndarray:
    parts = np.array_split(crops, min(len(crops), len(requests)))
    for request, part in zip(requests, parts, strict=False):
        request.start_async({0: part})
    outputs = []
    for request in requests[: len(parts)]:
        request.wait()
        outputs.append(np.array(request.get_output_tensor(0).data))
    return np.concatenate(outputs)


def main() -> None:
    import openvino as ov

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", default=None, help="detector file (default: shipped)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    detector = load_detector(args.detector)
    size = detector.card.crop_size
    core = ov.Core()
    free = read_openvino_model(core, detector.graph, detector.weights())
    fixed = free.clone()
    fixed.reshape({fixed.inputs[0].get_any_name(): ov.PartialShape([-1, size, size, 3])})
    cores = os.cpu_count() or 1
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    latency = {"PERFORMANCE_HINT": "LATENCY", **f32}
    streams = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": cores, **f32}
    settings = [
        ("engine: free height/width, LATENCY", free, latency, 1),
        (f"fixed {size}x{size}, LATENCY", fixed, latency, 1),
        (f"fixed {size}x{size}, {cores} streams, batch split", fixed, streams, cores),
    ]
    print(f"{machine()}; ldmscan {git_revision()}; {detector.card.name} {detector.card.version}")
    print("\n| settings | batch | crops/s | largest output difference from the engine's |")
    print("|---|---|---|---|")
    crops = np.random.default_rng(0).integers(0, 256, (max(args.batch), size, size, 3), np.uint8)
    reference: dict[int, np.ndarray] = {}
    for name, model, config, count in settings:
        compiled = core.compile_model(model, "CPU", config)
        requests = [compiled.create_infer_request() for _ in range(count)]
        for batch in args.batch:
            x = crops[:batch]
            out = run_split(requests, x)
            run_split(requests, x)  # warm-up
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < args.seconds:
                run_split(requests, x)
                done += batch
            rate = done / (time.perf_counter() - started)
            diff = float(np.abs(out - reference.setdefault(batch, out)).max())
            print(f"| {name} | {batch} | {rate:.1f} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
