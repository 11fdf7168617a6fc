"""Aligned pairs: the same window from a real photo and from its reconstruction, augmented
identically, so neither content nor compression nor size can separate the two classes."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset

from ldmscan import crops, imaging

from .reconstruct import MANIFEST

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    source: str  # relative path of the real photo
    real_path: Path
    recon_path: Path
    autoencoder: str
    top: int
    left: int


@dataclass(frozen=True)
class Augment:
    """Probabilities and ranges, applied with one draw to both members of a pair."""

    flip: float = 0.5
    jpeg: float = 0.6
    jpeg_quality: tuple[int, int] = (65, 98)
    rescale: float = 0.25
    rescale_range: tuple[float, float] = (0.6, 1.4)
    blur: float = 0.1
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    # crop boxes drawn per sample; the smoothest (ldmscan.crops.smoothest_first on the real
    # member) is kept, so training sees the regions the "smoothest" placement scores. 1 = uniform
    smooth_pick: int = 1

    @classmethod
    def none(cls) -> Augment:
        return cls(flip=0.0, jpeg=0.0, rescale=0.0, blur=0.0)


def find_pairs(real_dir: Path, recon_dirs: list[Path]) -> list[Pair]:
    """Every (photo, reconstruction) pair listed by the manifests under recon_dirs."""
    pairs = []
    manifests = sorted({m for d in recon_dirs for m in Path(d).rglob(MANIFEST)})
    if not manifests:
        raise FileNotFoundError(
            f"no {MANIFEST} under {', '.join(map(str, recon_dirs))}: "
            "run `ldmscan train reconstruct` first"
        )
    for manifest in manifests:
        with manifest.open(newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                real = Path(real_dir) / row["source"]
                recon = manifest.parent / row["output"]
                if real.is_file() and recon.is_file():
                    pairs.append(
                        Pair(
                            row["source"],
                            real,
                            recon,
                            row["autoencoder"],
                            int(row.get("top") or 0),
                            int(row.get("left") or 0),
                        )
                    )
    return pairs


def is_holdout(source: str, fraction: float) -> bool:
    """A stable split by file name: the same photos are held out on every run and machine."""
    digest = hashlib.sha256(source.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def augment_pair(
    real: np.ndarray, fake: np.ndarray, aug: Augment, crop_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random draw, applied to both members of an aligned pair."""
    real, fake = augment_together([real, fake], aug, crop_size, rng)
    return real, fake


def augment_together(
    images: list[np.ndarray], aug: Augment, crop_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One random draw applied to every image given (a pair, or a single labelled image), so a
    pair's members, and the two classes of labelled images, meet one distribution. Rescaling
    comes before the crop (it is a degradation of the whole image, as a platform would apply
    it); the crop follows the scoring policy, chosen on the first image."""
    if rng.random() < aug.rescale:
        factor = float(rng.uniform(*aug.rescale_range))
        h, w = images[0].shape[:2]
        size = (max(crops.MIN_SIDE, round(w * factor)), max(crops.MIN_SIDE, round(h * factor)))
        images = [
            np.asarray(Image.fromarray(im).resize(size, Image.Resampling.BICUBIC)) for im in images
        ]
    first = images[0]
    top, left, ch, cw = crops.random_aligned_box(first.shape[0], first.shape[1], crop_size, rng)
    if aug.smooth_pick > 1:
        boxes = [(top, left, ch, cw)] + [
            crops.random_aligned_box(first.shape[0], first.shape[1], crop_size, rng)
            for _ in range(aug.smooth_pick - 1)
        ]
        energies = [crops.texture_energy(first[t : t + h, x : x + w]) for t, x, h, w in boxes]
        top, left, ch, cw = boxes[crops.smoothest_first(energies)[0]]
    images = [im[top : top + ch, left : left + cw] for im in images]
    if rng.random() < aug.flip:
        images = [im[:, ::-1] for im in images]
    if rng.random() < aug.blur:
        radius = float(rng.uniform(*aug.blur_sigma))
        images = [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(im)).filter(ImageFilter.GaussianBlur(radius))
            )
            for im in images
        ]
    if rng.random() < aug.jpeg:
        quality = int(rng.integers(aug.jpeg_quality[0], aug.jpeg_quality[1] + 1))
        images = [_jpeg(np.ascontiguousarray(im), quality) for im in images]
    return [np.ascontiguousarray(im) for im in images]


def pad_to(pixels: np.ndarray, size: int) -> np.ndarray:
    """Training batches need one shape; small windows are reflected up to it (scoring does not
    pad, it runs such images whole)."""
    h, w = pixels.shape[:2]
    if h >= size and w >= size:
        return pixels
    return np.pad(pixels, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="reflect")


class PairDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Item i -> (2x3xSxS uint8 tensor [real, reconstruction], tensor([0., 1.]))."""

    def __init__(
        self,
        pairs: list[Pair],
        crop_size: int,
        aug: Augment,
        seed: int = 0,
        samples_per_epoch: int | None = None,
    ) -> None:
        self.pairs = pairs
        self.crop_size = crop_size
        self.aug = aug
        self.seed = seed
        self.length = samples_per_epoch or len(pairs)
        self._cache: dict[Path, np.ndarray] = {}
        self.epoch = 0

    def preload(self) -> None:
        """Decode every window once (forked DataLoader workers then share the arrays)."""
        for pair in self.pairs:
            self._windows(pair)

    def _windows(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        fake = self._cache.get(pair.recon_path)
        if fake is None:
            fake = imaging.decode(imaging.read_file(pair.recon_path)).pixels
            self._cache[pair.recon_path] = fake
        key = pair.real_path.with_name(f"{pair.real_path.name}@{pair.top},{pair.left}")
        real = self._cache.get(key)
        if real is None:
            full = imaging.decode(imaging.read_file(pair.real_path)).pixels
            real = np.ascontiguousarray(
                full[pair.top : pair.top + fake.shape[0], pair.left : pair.left + fake.shape[1]]
            )
            self._cache[key] = real
        if real.shape != fake.shape:
            raise ValueError(f"{pair.recon_path} does not match its source window")
        return real, fake

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        pair = (
            self.pairs[index % len(self.pairs)]
            if self.length == len(self.pairs)
            else self.pairs[int(rng.integers(len(self.pairs)))]
        )
        real, fake = self._windows(pair)
        real, fake = augment_pair(real, fake, self.aug, self.crop_size, rng)
        real, fake = pad_to(real, self.crop_size), pad_to(fake, self.crop_size)
        pixels = torch.from_numpy(np.stack([real, fake])).permute(0, 3, 1, 2).contiguous()
        return pixels, torch.tensor([0.0, 1.0])
