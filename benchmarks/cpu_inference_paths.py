"""The CPU inference paths side by side on the shipped detector: crops/s of the network alone
(uint8 crops in, outputs out) and the largest logit difference from torch eager, in one process.

    python benchmarks/cpu_inference_paths.py                  # 192-px crops, batch 8
    python benchmarks/cpu_inference_paths.py --batch 1 8 16 --seconds 5

Paths: torch eager (channels-last, today's torch runtime), torch.compile (inductor, C++ codegen
for the CPU), torch with oneDNN graph fusion (TorchScript trace + freeze), ONNX Runtime (the
engine's `auto` on a CPU), OpenVINO f32 and bf16. Issue 19 asks which is fastest while keeping
one source of truth (the detector file) and scores within tolerance.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import git_revision, machine

from ldmscan.detector import load_detector
from ldmscan.graph import verification_batch
from ldmscan.networks import OnnxNetwork, OpenVinoNetwork, TorchNetwork


def crops_per_second(
    run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, seconds: float
) -> float:
    run(batch)  # warm-up (compilation happens here for the compiled paths)
    run(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def torch_paths(
    detector, crop: int, compile_model: bool
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    import torch

    eager = TorchNetwork(detector, "cpu", half=False)
    paths: dict[str, Callable[[np.ndarray], np.ndarray]] = {"torch eager": eager}
    try:
        if not compile_model:
            raise RuntimeError("left out (--no-compile)")
        started = time.perf_counter()
        compiled = TorchNetwork(detector, "cpu", half=False, compile_model=True)
        compiled(verification_batch(crop)[:1])
        print(f"torch.compile: first call {time.perf_counter() - started:.0f} s", file=sys.stderr)
        paths["torch.compile (inductor)"] = compiled
    except Exception as exc:  # no compiler, or inductor refuses the graph: reported, not fatal
        print(f"torch.compile unavailable: {exc}", file=sys.stderr)
    try:
        from ldmscan.preprocess import Normaliser

        model = detector.model.eval().to(memory_format=torch.channels_last)
        normalise = Normaliser(detector.card.mean, detector.card.std, "cpu")
        example = torch.zeros((8, 3, crop, crop)).contiguous(memory_format=torch.channels_last)
        torch.jit.enable_onednn_fusion(True)
        with torch.no_grad():
            traced = torch.jit.freeze(torch.jit.trace(model, example))

        def onednn(crops: np.ndarray) -> np.ndarray:
            x = normalise(torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2))
            with torch.no_grad():
                out = traced(x.contiguous(memory_format=torch.channels_last))
            return out.float().reshape(len(crops), -1).numpy()

        onednn(verification_batch(crop))
        paths["torch oneDNN graph (jit)"] = onednn
    except Exception as exc:
        print(f"oneDNN graph unavailable: {exc}", file=sys.stderr)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", default=None, help="detector file (default: shipped)")
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--seconds", type=float, default=4.0, help="per path and batch size")
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="leave torch.compile out (its first call compiles C++ for minutes on 2 cores)",
    )
    args = parser.parse_args()

    detector = load_detector(args.detector)
    crop = detector.card.crop_size
    paths = torch_paths(detector, crop, not args.no_compile)
    paths["onnx runtime"] = OnnxNetwork(detector.graph, detector.weights())
    paths["openvino f32"] = OpenVinoNetwork(detector.graph, detector.weights(), precision="f32")
    paths["openvino bf16"] = OpenVinoNetwork(detector.graph, detector.weights(), precision="bf16")
    rng = np.random.default_rng(0)
    check = np.concatenate(
        [verification_batch(crop), rng.integers(0, 256, (5, crop, crop, 3), np.uint8)]
    )
    reference = paths["torch eager"](check)
    print(
        f"{detector.card.name} {detector.card.version}, {crop}-px crops, {machine()}, "
        f"git {git_revision()}"
    )
    header = "| path | " + " | ".join(f"crops/s at batch {b}" for b in args.batch)
    print(header + " | largest logit difference from torch eager |")
    print("|---" * (len(args.batch) + 2) + "|")
    for name, run in paths.items():
        rates = []
        for size in args.batch:
            batch = np.ascontiguousarray(np.resize(check, (size, crop, crop, 3)))
            rates.append(f"{crops_per_second(run, batch, args.seconds):.0f}")
        difference = float(np.max(np.abs(run(check) - reference)))
        print(f"| {name} | " + " | ".join(rates) + f" | {difference:.2g} |", flush=True)


if __name__ == "__main__":
    main()
