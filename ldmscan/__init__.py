"""ldmscan: catch images made by latent diffusion models from their autoencoder's fingerprint.

import ldmscan
with ldmscan.open_engine() as engine:          # the shipped detector, GPU if present
    verdict = engine.check_path("upload.jpg").verdict
    print(verdict.label, verdict.probability)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from .detector import Detector, DetectorCard, load_detector, save_detector
from .errors import DatabaseError, DetectorFileError, ImageError, LdmscanError
from .verdict import Evidence, Label, Strength, Thresholds, Verdict, decide

if TYPE_CHECKING:  # the engine imports torch: only on first use
    from .engine import Engine, EngineOptions

__all__ = [
    "DatabaseError",
    "Detector",
    "DetectorCard",
    "DetectorFileError",
    "Evidence",
    "ImageError",
    "Label",
    "LdmscanError",
    "Strength",
    "Thresholds",
    "Verdict",
    "__version__",
    "decide",
    "load_detector",
    "open_engine",
    "save_detector",
]


def open_engine(detector: str | None = None, options: EngineOptions | None = None) -> Engine:
    """An Engine over `detector` (a file path; the shipped default when None)."""
    from .engine import Engine

    return Engine(load_detector(detector), options)
