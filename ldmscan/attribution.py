"""Which latent space (autoencoder family) made a flagged image.

Every LDM family decodes through its own autoencoder, and each decoder leaves its own trace. A
detector file may carry an attribution head beside its detection output: the network then gives
1 + K outputs per crop, the detection logit first and one logit per latent space after it (one
forward pass, one network). The card lists the classes and the calibrated confidence below
which no guess is shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# class key -> what a moderator reads; SD 1.x and 2.x decode through one autoencoder
LATENT_SPACES: dict[str, str] = {
    "sd1-2": "SD 1.x / 2.x",
    "sdxl": "SDXL",
    "sd3": "SD3 / 3.5",
    "flux1": "FLUX.1",
    "flux2": "FLUX.2",
}


@dataclass(frozen=True)
class Attribution:
    """The guessed latent space of a flagged image, with every class's probability."""

    guess: str
    probability: float
    probabilities: Mapping[str, float]

    @property
    def name(self) -> str:
        return LATENT_SPACES.get(self.guess, self.guess)

    def to_dict(self) -> dict[str, Any]:
        return {
            "guess": self.guess,
            "name": self.name,
            "probability": self.probability,
            "probabilities": dict(self.probabilities),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attribution:
        return cls(
            guess=str(data["guess"]),
            probability=float(data["probability"]),
            probabilities={str(k): float(v) for k, v in data["probabilities"].items()},
        )


def class_probabilities(
    rows: Sequence[Sequence[float]], classes: Sequence[str]
) -> dict[str, float]:
    """Per-crop attribution logits -> one probability per class. Logits are averaged over the
    crops before the softmax, as the detection logits are (every crop measures the same
    decoder's trace)."""
    logits = np.mean(np.asarray(rows, np.float64).reshape(len(rows), len(classes)), axis=0)
    shifted = np.exp(logits - logits.max())
    probabilities = shifted / shifted.sum()
    return {name: round(float(p), 6) for name, p in zip(classes, probabilities, strict=True)}


def attribute(
    rows: Sequence[Sequence[float]],
    classes: Sequence[str],
    confidence: float,
    *,
    pixels_say_real: bool,
) -> Attribution | None:
    """The guess for one image, or None when its pixel score says real or no class reaches the
    calibrated confidence (a guess about a real photo would mislead the reviewer)."""
    if pixels_say_real or not rows or not classes:
        return None
    probabilities = class_probabilities(rows, classes)
    guess = max(probabilities, key=lambda k: probabilities[k])
    if probabilities[guess] < confidence:
        return None
    return Attribution(guess, probabilities[guess], probabilities)
