"""The one card-driven preprocessing step: uint8 crops -> the float tensor the network was
trained on. The engine and training both call it, so scoring can never normalise differently
from fitting (the idea of timm's `resolve_data_config`: preprocessing comes from the model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class Normaliser:
    """(pixels - mean) / std per channel, with mean and std as the card states them (0-1 scale);
    pixels are uint8 or float in 0-255, NCHW."""

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], device: str | torch.device = "cpu"
    ) -> None:
        import torch

        self.shift = torch.tensor(list(mean), device=device).view(1, 3, 1, 1) * 255.0
        self.scale = torch.tensor(list(std), device=device).view(1, 3, 1, 1) * 255.0

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.float() - self.shift) / self.scale
