"""Sharpened surrogate decoders: fine-tune a TAESD-family decoder so that
decode(encode(x)) reproduces images x that the real decoder of its latent space made.

A decoder's fingerprint lives in the fine detail it paints, so the loss weights fine detail:
L1 on pixels, plus L1 on a Laplacian high-pass and on log-magnitude spectra. The encoder stays
frozen, so the latent space does not move. Images of some sources are held out to measure how
much closer the surrogate gets (PSNR, high-pass error, residual-spectrum distance), and the
result is written as a weights folder in the original file layout, which `--weights-dir`
takes everywhere (reconstruct included).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ldmscan import crops, imaging
from ldmscan.errors import ImageError

from .autoencoders import TAEF2_POOL_BLOCKS, TAESD_FAMILY, Autoencoder

log = logging.getLogger(__name__)

# latent space (the harvest manifests' label) -> the TAESD-family stand-in for its decoder
SURROGATE_FOR = {
    "sd1": "taesd",
    "sd2": "taesd",
    "sdxl": "taesdxl",
    "sd3": "taesd3",
    "flux1": "taef1",
    "flux2": "taef2",
}


@dataclass
class SharpenConfig:
    steps: int = 200
    batch: int = 4
    crop: int = 256
    lr: float = 1e-4
    highpass_weight: float = 1.0
    spectrum_weight: float = 0.1
    seed: int = 0


def _laplacian(x: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=x.dtype, device=x.device)
    kernel = kernel.view(1, 1, 3, 3).repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(x, kernel, groups=x.shape[1])


def _log_spectrum(x: torch.Tensor) -> torch.Tensor:
    return torch.log1p(torch.fft.rfft2(x, norm="ortho").abs())


def detail_loss(out: torch.Tensor, target: torch.Tensor, config: SharpenConfig) -> torch.Tensor:
    loss = F.l1_loss(out, target)
    loss = loss + config.highpass_weight * F.l1_loss(_laplacian(out), _laplacian(target))
    return loss + config.spectrum_weight * F.l1_loss(_log_spectrum(out), _log_spectrum(target))


def _to_unit(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float() / 127.5 - 1


def _load_crops(
    paths: list[Path], crop: int, per_image: int, rng: np.random.Generator
) -> list[torch.Tensor]:
    """Grid-aligned crops (the decoder's 8-px period kept) at native resolution."""
    out = []
    for path in paths:
        try:
            pixels = imaging.decode(imaging.read_file(path)).pixels
        except ImageError as exc:
            log.warning("skipped %s: %s", path, exc)
            continue
        if min(pixels.shape[:2]) < crop:
            continue
        for _ in range(per_image):
            top, left, h, w = crops.random_aligned_box(pixels.shape[0], pixels.shape[1], crop, rng)
            out.append(_to_unit(pixels[top : top + h, left : left + w]))
    return out


@torch.inference_mode()
def measure(auto: Autoencoder, images: list[torch.Tensor]) -> dict[str, float]:
    """PSNR (dB), high-pass L1 error and residual-spectrum distance of decode(encode(x)) vs x
    (images in [-1, 1]); lower is closer for the last two."""
    psnr, highpass, spectrum = [], [], []
    for x in images:
        x = x[None].to(auto.device, auto.dtype)
        y = auto.roundtrip(x).float()
        x = x.float()
        mse = F.mse_loss((y + 1) / 2, (x + 1) / 2).item()
        psnr.append(10 * math.log10(1 / max(mse, 1e-12)))
        highpass.append(F.l1_loss(_laplacian(y), _laplacian(x)).item())
        spectrum.append(F.l1_loss(_log_spectrum(y), _log_spectrum(x)).item())
    return {
        "psnr_db": float(np.mean(psnr)),
        "highpass_l1": float(np.mean(highpass)),
        "spectrum_l1": float(np.mean(spectrum)),
        "crops": len(images),
    }


def sharpen(
    auto: Autoencoder,
    train_paths: list[Path],
    heldout_paths: list[Path],
    config: SharpenConfig,
    on_step: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune auto's decoder in place; returns before/after measurements on held-out crops."""
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    train = _load_crops(train_paths, config.crop, 4, rng)
    held = _load_crops(heldout_paths, config.crop, 2, rng)
    if not train:
        raise ValueError(f"no training image of at least {config.crop} px per side")
    before = measure(auto, held) if held else {}
    model = auto.model
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    decoder_params = [p for p in model.decoder.parameters()]
    optimizer = torch.optim.AdamW(decoder_params, lr=config.lr, weight_decay=0.0)
    model.decoder.train()
    started = time.perf_counter()
    losses = []
    for step in range(1, config.steps + 1):
        index = rng.integers(len(train), size=min(config.batch, len(train)))
        x = torch.stack([train[i] for i in index]).to(auto.device, auto.dtype)
        with torch.no_grad():
            latents = model.encode(x).latents
        y = model.decode(latents).sample
        loss = detail_loss(y.float(), x.float(), config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if on_step:
            on_step(step, config.steps, float(np.mean(losses[-10:])))
        if step % 25 == 0:
            log.info("step %d/%d loss %.4f", step, config.steps, float(np.mean(losses[-25:])))
    model.eval()
    after = measure(auto, held) if held else {}
    return {
        "train_images": len(train_paths),
        "heldout_images": len(heldout_paths),
        "train_crops": len(train),
        "before": before,
        "after": after,
        "seconds": round(time.perf_counter() - started, 1),
        "config": config.__dict__,
    }


def _original_decoder_keys(auto: Autoencoder) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderTiny decoder keys -> taesd.py's (the inverse of load_taesd)."""
    state = {}
    for key, tensor in auto.model.state_dict().items():
        if not key.startswith("decoder.layers."):
            continue
        index, rest = key[len("decoder.layers.") :].split(".", 1)
        original = int(index) + 1  # taesd.py's decoder starts with a Clamp
        if auto.spec == "taef2" and original in TAEF2_POOL_BLOCKS["decoder"]:
            rest = rest.replace("pre.pool.", "pool.", 1) if rest.startswith("pre.") else rest[6:]
        state[f"{original}.{rest}"] = tensor.detach().float().cpu().contiguous()
    return state


def save_surrogate(auto: Autoencoder, weights_dir: Path, out: Path) -> Path:
    """OUT/<stem>_decoder<ext> (sharpened) beside a copy of the original encoder file."""
    if auto.spec not in TAESD_FAMILY:
        raise ValueError(f"{auto.spec}: only TAESD-family decoders are sharpened")
    _, stem, ext = TAESD_FAMILY[auto.spec]
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(weights_dir) / f"{stem}_encoder{ext}", out / f"{stem}_encoder{ext}")
    state = _original_decoder_keys(auto)
    target = out / f"{stem}_decoder{ext}"
    if ext == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(target))
    else:
        torch.save(state, str(target))
    return target
