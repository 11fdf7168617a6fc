"""Do the runtimes give the same scores? AUC per runtime and tries, and the largest probability
difference from ONNX Runtime, on real and generated folders (dev by default), in one process.

    python benchmarks/runtime_agreement.py      # dev: onnx / openvino / openvino-bf16 / torch
    python benchmarks/runtime_agreement.py --runtime onnx torch --tries 1

Issue 19's rule for a faster runtime: dev AUC unchanged to 0.005.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import git_revision, machine

from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.training.evaluate import load_items, roc_metrics

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", default=None, help="detector file (default: shipped)")
    parser.add_argument("--real", type=Path, default=DEV / "real")
    parser.add_argument("--generated", type=Path, default=DEV / "generated")
    parser.add_argument("--manifest", type=Path, default=DEV / "MANIFEST.tsv")
    parser.add_argument(
        "--runtime", nargs="+", default=["onnx", "openvino", "openvino-bf16", "torch"]
    )
    parser.add_argument("--tries", type=int, nargs="+", default=[1, 5])
    args = parser.parse_args()

    items = load_items([args.real], [args.generated], args.manifest)
    data = [item.path.read_bytes() for item in items]
    detector = load_detector(args.detector)
    print(
        f"machine: {machine()}; ldmscan {git_revision()}; detector {detector.card.name} "
        f"{detector.card.version}; {len(items)} images ({sum(i.label for i in items)} generated)"
    )
    print()
    print("| runtime | tries | AUC | largest probability difference from onnx | seconds |")
    print("|---|---|---|---|---|")
    reference: dict[int, list[float | None]] = {}
    for runtime in args.runtime:
        for tries in args.tries:
            options = EngineOptions(device="cpu", runtime=runtime, tries=tries)
            with Engine(detector, options) as engine:
                started = time.perf_counter()
                futures = [engine.submit(blob) for blob in data]
                scores = [f.result().verdict.probability for f in futures]
                seconds = time.perf_counter() - started
            kept = [(s, i.label) for s, i in zip(scores, items, strict=True) if s is not None]
            auc = roc_metrics([s for s, _ in kept], [y for _, y in kept])["auc"]
            if runtime == "onnx":
                reference[tries] = scores
            base = reference.get(tries)
            gap = (
                max(
                    abs(a - b)
                    for a, b in zip(scores, base, strict=True)
                    if a is not None and b is not None
                )
                if base
                else float("nan")
            )
            print(f"| {runtime} | {tries} | {auc:.4f} | {gap:.4f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
