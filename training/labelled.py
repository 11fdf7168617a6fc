"""Labelled images (not pairs): images real decoders made as positives, camera photos and
human-made art as negatives. Each class meets the same augmentation distribution, one draw per
image (training.pairs.augment_together), so JPEG, resizing, blur and crop placement say nothing
about the label."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ldmscan import crops, imaging
from ldmscan.errors import ImageError, LdmscanError

from .pairs import Augment, augment_together, pad_to

log = logging.getLogger(__name__)

# Decoded images are cached as one grid-aligned window at most this wide, so a pool with a few
# 24-MP photos fits in memory; crops are drawn from inside it.
CACHE_WINDOW = 1024


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int  # 1 = generated


def find_labelled(positives: list[Path], negatives: list[Path]) -> list[LabelledImage]:
    from ldmscan.walk import iter_candidates

    items = [LabelledImage(p, 1) for p in iter_candidates(positives)]
    items += [LabelledImage(p, 0) for p in iter_candidates(negatives)]
    return items


def thumbnail(pixels: np.ndarray, side: int) -> np.ndarray:
    """The content-only view: the central square, resampled to side x side. At 64 px no decoder
    fingerprint survives, so a detector trained on these can only learn content."""
    h, w = pixels.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = np.ascontiguousarray(pixels[top : top + s, left : left + s])
    return np.asarray(Image.fromarray(square).resize((side, side), Image.Resampling.BICUBIC))


class LabelledDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Item i -> (1x3xSxS uint8 tensor, tensor([label])). Classes are drawn with equal
    probability (the pools differ in size); `thumbnail` trains the content-only baseline."""

    def __init__(
        self,
        items: list[LabelledImage],
        crop_size: int,
        aug: Augment,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        thumbnail_side: int | None = None,
    ) -> None:
        self.by_label = {
            0: [i for i in items if i.label == 0],
            1: [i for i in items if i.label == 1],
        }
        if not self.by_label[0] or not self.by_label[1]:
            raise LdmscanError(
                "labelled training needs images of both classes (--positives and --negatives)"
            )
        self.crop_size = crop_size
        self.aug = aug
        self.seed = seed
        self.length = samples_per_epoch or len(items)
        self.thumbnail_side = thumbnail_side
        self._cache: dict[Path, np.ndarray] = {}
        self.epoch = 0
        self.skipped: list[tuple[Path, str]] = []

    def preload(self) -> None:
        """Decode every image once (forked DataLoader workers then share the arrays); an image
        that cannot be decoded is dropped with its reason, the rest go on."""
        for label, items in self.by_label.items():
            kept = []
            for item in items:
                try:
                    self._pixels(item)
                    kept.append(item)
                except (ImageError, ValueError) as exc:
                    self.skipped.append((item.path, str(exc)))
                    log.warning("skipped %s: %s", item.path, exc)
            self.by_label[label] = kept

    def _pixels(self, item: LabelledImage) -> np.ndarray:
        pixels = self._cache.get(item.path)
        if pixels is None:
            full = imaging.decode(imaging.read_file(item.path)).pixels
            if self.thumbnail_side:
                pixels = thumbnail(full, self.thumbnail_side)
            else:
                h, w = full.shape[:2]
                ch, cw = crops.window(h, w, CACHE_WINDOW)
                top = (h - ch) // 2 // crops.GRID * crops.GRID
                left = (w - cw) // 2 // crops.GRID * crops.GRID
                pixels = np.ascontiguousarray(full[top : top + ch, left : left + cw])
            self._cache[item.path] = pixels
        return pixels

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index, 7))
        label = int(rng.integers(2))
        pool = self.by_label[label]
        item = pool[int(rng.integers(len(pool)))]
        pixels = self._pixels(item)
        if self.thumbnail_side:
            (crop,) = augment_together([pixels], Augment.none(), self.thumbnail_side, rng)
        else:
            (crop,) = augment_together([pixels], self.aug, self.crop_size, rng)
            crop = pad_to(crop, self.crop_size)
        tensor = torch.from_numpy(np.array(crop[None])).permute(0, 3, 1, 2).contiguous()
        return tensor, torch.tensor([float(label)])
