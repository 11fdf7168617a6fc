"""Round-trip real photos through an LDM autoencoder at native resolution.

The reconstructions are the "generated" class: same content as the photo, plus the decoder's
fingerprint. Large images go through in overlapping tiles whose corners sit on the latent grid
(multiples of 8), blended with linear ramps so no seam is left; sizes are padded to the
autoencoder's multiple and cropped back. Output is lossless PNG mirroring the source tree, and a
manifest makes runs resumable.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ldmscan import crops, imaging
from ldmscan.errors import ImageError
from ldmscan.walk import iter_candidates

from .autoencoders import Autoencoder

log = logging.getLogger(__name__)

MANIFEST = "manifest.tsv"
MANIFEST_FIELDS = [
    "source",
    "source_sha256",
    "autoencoder",
    "output",
    "top",
    "left",
    "width",
    "height",
]


@dataclass(frozen=True)
class TilePlan:
    tile: int = 1024  # images up to 1 MP go through whole; tiles only for larger ones
    overlap: int = 64


def list_images(src: Path) -> list[Path]:
    """The images under src, by the same rules as `scan` (the core's one folder walk)."""
    return list(iter_candidates([src]))


def _positions(extent: int, tile: int, overlap: int, multiple: int) -> list[int]:
    if extent <= tile:
        return [0]
    step = tile - overlap
    count = int(np.ceil((extent - tile) / step)) + 1
    positions = [min(round(i * (extent - tile) / (count - 1)), extent - tile) for i in range(count)]
    return [p // multiple * multiple for p in positions]


def _ramp(length: int, overlap: int, first: bool, last: bool) -> torch.Tensor:
    weights = torch.ones(length)
    ramp = torch.linspace(0, 1, overlap + 2)[1:-1]
    if not first and overlap:
        weights[:overlap] = ramp
    if not last and overlap:
        weights[-overlap:] = ramp.flip(0)
    return weights


def roundtrip_image(
    auto: Autoencoder, pixels: np.ndarray, plan: TilePlan = TilePlan(), batch_size: int = 4
) -> np.ndarray:
    """HxWx3 uint8 -> HxWx3 uint8 reconstruction of the same size."""
    height, width = pixels.shape[:2]
    m = auto.multiple
    x = torch.from_numpy(np.array(pixels)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    pad_h, pad_w = (-height) % m, (-width) % m
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    full_h, full_w = x.shape[2:]
    tile = max(plan.tile // m * m, m)
    tops = _positions(full_h, tile, plan.overlap, m)
    lefts = _positions(full_w, tile, plan.overlap, m)
    out = torch.zeros(1, 3, full_h, full_w)
    weight = torch.zeros(1, 1, full_h, full_w)
    boxes = [(t, left) for t in tops for left in lefts]
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start : start + batch_size]
        th, tw = min(tile, full_h), min(tile, full_w)
        batch = torch.cat([x[:, :, t : t + th, left : left + tw] for t, left in chunk])
        result = auto.roundtrip(batch.to(auto.device, auto.dtype)).float().cpu()
        for (t, left), rec in zip(chunk, result, strict=True):
            wy = _ramp(th, plan.overlap, t == tops[0], t == tops[-1])
            wx = _ramp(tw, plan.overlap, left == lefts[0], left == lefts[-1])
            w = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, t : t + th, left : left + tw] += rec[None] * w
            weight[:, :, t : t + th, left : left + tw] += w
    out = out / weight.clamp_min(1e-8)
    out = out[:, :, :height, :width]
    array = ((out[0].permute(1, 2, 0) + 1.0) * 127.5).round().clamp(0, 255).byte().numpy()
    return np.ascontiguousarray(array)


def read_manifest(folder: Path) -> dict[str, dict[str, str]]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {row["source"]: row for row in csv.DictReader(fh, delimiter="\t")}


def autoencoder_folder(spec: str) -> str:
    """A folder name for an autoencoder spec (kl:/path/to/vae -> kl_vae)."""
    kind, _, rest = spec.partition(":")
    if not rest:
        return spec
    return f"{kind}_{Path(rest.rstrip('/')).name or 'vae'}".replace("/", "_")


def assignments(count: int, autoencoders: int, per_image: int | None) -> list[list[int]]:
    """Which autoencoders each source image goes through: all of them, or `per_image` of them
    in rotation so every autoencoder gets an equal share of the photos."""
    if per_image is None or per_image >= autoencoders:
        return [list(range(autoencoders)) for _ in range(count)]
    return [[(i * per_image + j) % autoencoders for j in range(per_image)] for i in range(count)]


@dataclass
class _Output:
    auto: Autoencoder
    folder: Path
    done: dict[str, dict[str, str]]
    writer: csv.DictWriter[str]
    handle: TextIO


def reconstruct_folder(
    autos: list[Autoencoder],
    src: Path,
    out: Path,
    *,
    plan: TilePlan = TilePlan(),
    batch_size: int = 4,
    window: int | None = None,
    per_image: int | None = None,
    limit: int | None = None,
    on_progress: Callable[[int, int, Path], None] | None = None,
) -> Iterator[tuple[Path, str, Path | None, str | None]]:
    """Reconstruct images under src into out/<autoencoder>/; yields (source, spec, output, error).

    `window` keeps only a central grid-aligned window of at most window x window pixels (the
    detector trains on crops anyway; on a CPU this is what makes a large photo pool affordable);
    its offset goes into the manifest so pairs can be cut from the same place.
    """
    src, out = Path(src), Path(out)
    sources = list_images(src)
    if limit is not None:
        sources = sources[:limit]
    outputs: list[_Output] = []
    try:
        for auto in autos:
            folder = out / autoencoder_folder(auto.spec)
            folder.mkdir(parents=True, exist_ok=True)
            manifest_path = folder / MANIFEST
            new_file = not manifest_path.is_file()
            handle = manifest_path.open("a", newline="")
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS, delimiter="\t")
            if new_file:
                writer.writeheader()
            outputs.append(_Output(auto, folder, read_manifest(folder), writer, handle))
        plan_for = assignments(len(sources), len(autos), per_image)
        for index, source in enumerate(sources):
            if on_progress:
                on_progress(index, len(sources), source)
            relative = source.relative_to(src).as_posix()
            todo = [outputs[k] for k in plan_for[index]]
            pending = [
                o
                for o in todo
                if not (relative in o.done and (o.folder / o.done[relative]["output"]).is_file())
            ]
            for o in todo:
                if o not in pending:
                    yield source, o.auto.spec, o.folder / o.done[relative]["output"], None
            if not pending:
                continue
            try:
                decoded = imaging.decode(imaging.read_file(source))
            except ImageError as exc:
                log.warning("%s: %s", source, exc)
                for o in pending:
                    yield source, o.auto.spec, None, str(exc)
                continue
            pixels, top, left = decoded.pixels, 0, 0
            if window:
                top, left, h, w = crops.crop_boxes(decoded.height, decoded.width, window, 1)[0]
                pixels = pixels[top : top + h, left : left + w]
            for o in pending:
                rec = roundtrip_image(o.auto, pixels, plan, batch_size)
                target = o.folder / Path(relative).with_suffix(".png")
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".tmp")
                Image.fromarray(rec).save(tmp, format="PNG", compress_level=1)
                os.replace(tmp, target)  # a crash never leaves a half-written PNG behind
                o.writer.writerow(
                    {
                        "source": relative,
                        "source_sha256": decoded.sha256,
                        "autoencoder": o.auto.spec,
                        "output": target.relative_to(o.folder).as_posix(),
                        "top": top,
                        "left": left,
                        "width": rec.shape[1],
                        "height": rec.shape[0],
                    }
                )
                o.handle.flush()
                yield source, o.auto.spec, target, None
    finally:
        for o in outputs:
            o.handle.close()
