"""What one check produces, shared by the engine (which makes it), storage (which saves it) and
every caller (which shows it). Its own module so that storage never imports the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from .metadata import Metadata
from .verdict import Verdict


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    size_bytes: int
    width: int | None = None
    height: int | None = None
    format: str | None = None
    mode: str | None = None
    frames: int | None = None


@dataclass(frozen=True)
class CheckResult:
    """Everything one check produced: what storage saves and what callers show."""

    verdict: Verdict
    image: ImageInfo
    metadata: Metadata = field(default_factory=Metadata)
