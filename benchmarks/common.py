"""Shared helpers for the benchmark scripts (not part of the installed package)."""

from __future__ import annotations

import io
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
        torch_version = torch.__version__
    except ImportError:
        torch_version = "-"
    return (
        f"{os.cpu_count()} cores ({cpu}){gpu}, Python {platform.python_version()}, "
        f"torch {torch_version}"
    )


def synthetic_jpegs(
    folder: Path, count: int, width: int = 1152, height: int = 864, quality: int = 90, seed: int = 0
) -> list[Path]:
    """Photo-like 1-megapixel JPEGs: smooth fields plus sensor-like noise (deterministic)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(count):
        path = folder / f"synthetic_{i:05d}.jpg"
        if not path.exists():
            phase = rng.uniform(0, 6.28, 3)
            base = np.stack(
                [
                    127 + 100 * np.sin(x / (60 + 7 * c) + y / (90 + 5 * c) + phase[c])
                    for c in range(3)
                ],
                axis=-1,
            )
            pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
            path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
