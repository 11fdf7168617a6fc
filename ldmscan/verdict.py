"""What a check concludes: a label, the probability behind it and the reasons for it."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from .attribution import Attribution


class Label(str, enum.Enum):
    GENERATED = "generated"
    UNCERTAIN = "uncertain"
    REAL = "real"
    ERROR = "error"  # the file could not be scored; Verdict.error says why


class Source(str, enum.Enum):
    """Which command saw an image at a location (stored with every verdict and location)."""

    SCAN = "scan"
    WATCH = "watch"
    API = "api"


class Strength(str, enum.Enum):
    STRONG = "strong"  # on its own decides that the image is generated (C2PA, generator params)
    WEAK = "weak"  # shown to a reviewer, never changes the label (camera EXIF is trivially forged)
    INFO = "info"
    ERROR = "error"  # the metadata could not be read; recorded rather than raised


@dataclass(frozen=True)
class Evidence:
    kind: str
    detail: str
    strength: Strength = Strength.INFO
    says_generated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "detail": self.detail,
            "strength": self.strength.value,
            "says_generated": self.says_generated,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        return cls(
            kind=data["kind"],
            detail=data["detail"],
            strength=Strength(data.get("strength", "info")),
            says_generated=bool(data.get("says_generated", False)),
        )


@dataclass(frozen=True)
class Thresholds:
    """Probability cut-offs: >= generated -> GENERATED, >= uncertain -> UNCERTAIN, else REAL."""

    generated: float
    uncertain: float
    generated_fpr: float
    uncertain_fpr: float
    note: str = ""  # e.g. that these were calibrated for another number of tries

    def __post_init__(self) -> None:
        if self.uncertain > self.generated:
            raise ValueError(
                f"the uncertain threshold ({self.uncertain}) is above the generated one "
                f"({self.generated}): the uncertain FPR must be larger than the generated FPR"
            )


@dataclass(frozen=True)
class DetectorRef:
    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class Verdict:
    sha256: str | None
    label: Label
    probability: float | None = None
    reasons: tuple[str, ...] = ()
    detector: DetectorRef | None = None
    tries: int = 0
    crop_scores: tuple[float, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    error_code: str | None = None  # ImageError.code: which kind of failure, for programs
    # which latent space made it: None when the pixels say real, the detector has no
    # attribution head, or no guess reaches the card's calibrated confidence
    attribution: Attribution | None = None

    @property
    def is_error(self) -> bool:
        return self.label is Label.ERROR

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "label": self.label.value,
            "score": self.probability,
            "reasons": list(self.reasons),
            "detector": asdict(self.detector) if self.detector else None,
            "tries": self.tries,
            "crop_scores": list(self.crop_scores),
            "evidence": [e.to_dict() for e in self.evidence],
            "timings": dict(self.timings),
            "error": self.error,
            "error_code": self.error_code,
            "attribution": self.attribution.to_dict() if self.attribution else None,
        }


def decide(
    probability: float, thresholds: Thresholds, evidence: tuple[Evidence, ...] = ()
) -> tuple[Label, tuple[str, ...]]:
    """Turn a pixel probability and metadata evidence into a label with human-readable reasons.

    Strong evidence of generation overrides the pixels; weak evidence (camera EXIF) never lowers a
    pixel verdict because anyone can write it.
    """
    reasons: list[str] = []
    if probability >= thresholds.generated:
        label = Label.GENERATED
        reasons.append(
            f"pixel score {probability:.3f} >= {thresholds.generated:.3f} "
            f"(threshold at {thresholds.generated_fpr:.1%} false positives)"
        )
    elif probability >= thresholds.uncertain:
        label = Label.UNCERTAIN
        reasons.append(
            f"pixel score {probability:.3f} between {thresholds.uncertain:.3f} and "
            f"{thresholds.generated:.3f} ({thresholds.uncertain_fpr:.1%} / "
            f"{thresholds.generated_fpr:.1%} false-positive thresholds)"
        )
    else:
        label = Label.REAL
        reasons.append(
            f"pixel score {probability:.3f} < {thresholds.uncertain:.3f} "
            f"(threshold at {thresholds.uncertain_fpr:.1%} false positives)"
        )
    if thresholds.note:
        reasons[-1] += f"; {thresholds.note}"
    strong = [e for e in evidence if e.strength is Strength.STRONG and e.says_generated]
    if strong:
        label = Label.GENERATED
        reasons.extend(f"metadata: {e.kind}: {e.detail}" for e in strong)
    return label, tuple(reasons)
