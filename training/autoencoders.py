"""LDM autoencoders for making reconstructions: the TAESD family from local weight files,
diffusers `AutoencoderKL` folders and hub ids.

Every autoencoder is exposed the same way: `roundtrip(x)` takes and returns images in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ldmscan.errors import LdmscanError

# name -> (latent channels, weight-file stem, file extension)
TAESD_FAMILY = {
    "taesd": (4, "taesd", ".safetensors"),  # SD 1.x / 2.x
    "taesdxl": (4, "taesdxl", ".safetensors"),  # SDXL
    "taesd3": (16, "taesd3", ".safetensors"),  # SD3
    "taef1": (16, "taef1", ".safetensors"),  # FLUX.1
    "taef2": (32, "taef2", ".pth"),  # FLUX.2 (extra `pool` branch in three blocks per half)
}
TAEF2_POOL_BLOCKS = {"encoder": (11, 12, 13), "decoder": (3, 4, 5)}  # indices in the files
SPATIAL_MULTIPLE = 8  # every LDM autoencoder here downsamples by 8


class AutoencoderError(LdmscanError):
    pass


@dataclass
class Autoencoder:
    """A loaded autoencoder plus the id recorded in manifests."""

    spec: str
    model: Any  # a diffusers AutoencoderTiny or AutoencoderKL (untyped)
    kind: str  # "tiny" | "kl"
    multiple: int = SPATIAL_MULTIPLE

    @torch.inference_mode()
    def roundtrip(self, x: torch.Tensor) -> torch.Tensor:
        """Encode then decode images in [-1, 1] (NCHW, H and W multiples of `multiple`)."""
        if self.kind == "kl":
            latents = self.model.encode(x).latent_dist.mode()
        else:
            latents = self.model.encode(x).latents
        return self.model.decode(latents).sample.clamp(-1, 1)

    def to(self, device: str, dtype: torch.dtype = torch.float32) -> Autoencoder:
        self.model.to(device=device, dtype=dtype)
        return self

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


class PoolBranch(nn.Module):
    """TAEF2's extra branch: 1x1 conv -> GroupNorm -> ReLU -> 1x1 conv, added to the block input."""

    def __init__(self, channels: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.pool = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.GroupNorm(4, hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pool(x)


class _BlockWithPool(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.pre = PoolBranch()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.pre(x))


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_taesd(name: str, weights_dir: Path) -> Autoencoder:
    """Build diffusers' AutoencoderTiny and load original taesd.py weights into it.

    Key mapping (shared/models/MANIFEST.md): encoder "<i>.x" -> "encoder.layers.<i>.x";
    decoder "<i>.x" -> "decoder.layers.<i-1>.x" (taesd.py's decoder starts with a Clamp that
    diffusers applies inside forward).
    """
    from diffusers import AutoencoderTiny

    if name not in TAESD_FAMILY:
        raise AutoencoderError(
            f"unknown TAESD autoencoder {name!r}; known: {', '.join(TAESD_FAMILY)}"
        )
    channels, stem, ext = TAESD_FAMILY[name]
    files = {half: Path(weights_dir) / f"{stem}_{half}{ext}" for half in ("encoder", "decoder")}
    for file in files.values():
        if not file.is_file():
            raise AutoencoderError(f"missing weight file {file} (set --weights-dir)")
    model: Any = AutoencoderTiny(latent_channels=channels)
    if name == "taef2":
        for half, indices in TAEF2_POOL_BLOCKS.items():
            layers = getattr(model, half).layers
            offset = 0 if half == "encoder" else 1
            for index in indices:
                layers[index - offset] = _BlockWithPool(layers[index - offset])
    state: dict[str, torch.Tensor] = {}
    for half, file in files.items():
        offset = 0 if half == "encoder" else 1
        for key, tensor in _load_state(file).items():
            number, rest = key.split(".", 1)
            target = int(number) - offset
            if name == "taef2" and int(number) in TAEF2_POOL_BLOCKS[half]:
                rest = (
                    rest.replace("pool.", "pre.pool.", 1)
                    if rest.startswith("pool.")
                    else f"block.{rest}"
                )
            state[f"{half}.layers.{target}.{rest}"] = tensor.float()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise AutoencoderError(
            f"{name}: weights do not match AutoencoderTiny (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    return Autoencoder(spec=name, model=model.eval(), kind="tiny")


def load_kl(path_or_repo: str, *, local_only: bool) -> Autoencoder:
    from diffusers import AutoencoderKL

    try:
        model = AutoencoderKL.from_pretrained(path_or_repo, local_files_only=local_only)
    except OSError as exc:
        where = "folder" if local_only else "hub id (looked in the local cache first)"
        raise AutoencoderError(
            f"cannot load AutoencoderKL from {where} {path_or_repo!r}: {exc}. Offline? Download "
            "it on a connected machine into the Hugging Face cache, or pass kl:FOLDER"
        ) from exc
    multiple = 2 ** (len(model.config.block_out_channels) - 1)
    return Autoencoder(spec=path_or_repo, model=model.eval(), kind="kl", multiple=multiple)


def load_autoencoder(spec: str, weights_dir: Path | None = None) -> Autoencoder:
    """SPEC: a TAESD-family name, `kl:PATH` (diffusers folder) or `hf:REPO` (hub id)."""
    if spec.startswith("kl:"):
        auto = load_kl(spec[3:], local_only=True)
    elif spec.startswith("hf:"):
        import os

        # Try the local cache first so an offline machine fails fast with a clear message.
        try:
            auto = load_kl(spec[3:], local_only=True)
        except AutoencoderError:
            if os.environ.get("HF_HUB_OFFLINE") == "1":
                raise
            auto = load_kl(spec[3:], local_only=False)
    else:
        if weights_dir is None:
            raise AutoencoderError(f"{spec}: a TAESD autoencoder needs --weights-dir")
        auto = load_taesd(spec, weights_dir)
    auto.spec = spec
    return auto
