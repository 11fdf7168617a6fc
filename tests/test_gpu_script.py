"""The GPU benchmark (benchmarks/bench_gpu.py) must be ready when a GPU is lent: it runs here on
the CPU, both pipelines, and prints a rate for each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_the_gpu_benchmark_runs_on_the_cpu(tiny_detector_path):
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--count", "3", "--distinct", "2"]
    command += ["--batch", "4"]
    command += ["--workers", "1", "--tries", "1", "2", "--detector", str(tiny_detector_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    assert [(r[0].strip(), r[1].strip()) for r in rows[1:]] == [
        ("engine", "1"),
        ("engine", "2"),
        ("nvjpeg", "1"),
        ("nvjpeg", "2"),
    ]
    assert all(float(r[2]) > 0 for r in rows[1:])
