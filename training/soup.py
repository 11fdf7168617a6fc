"""The weight average of detectors fitted from one start (a "model soup", Wortsman et al. 2022).

Detectors fine-tuned from the same weights stay in one basin of the loss, and their average
often scores better than any of them (0.5.0 is the soup of D3 and D5, docs/RESULTS.md). The soup
is a new network: its thresholds and measured metrics are dropped (calibrate and evaluate it
again), and so is an attribution head, which was fitted on one ingredient's features while the
average computes others (`ldmscan train attribution` fits one for the soup).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch

from ldmscan.detector import DetectorCard, build_model, load_detector, save_detector
from ldmscan.errors import LdmscanError


def average_detectors(paths: Sequence[Path]) -> tuple[torch.nn.Module, DetectorCard]:
    """(the averaged detection network, its card): the first file's card without thresholds,
    metrics or head; its recipe is the last ingredient's (the one fitted on the widest split)
    with `soup_of` naming every ingredient."""
    if len(paths) < 2:
        raise LdmscanError("a soup needs two detectors or more")
    detectors = [load_detector(p) for p in paths]
    # a copy: each Detector builds its network from its own card when first used
    card = copy.deepcopy(detectors[0].card)
    for path, other in zip(paths[1:], detectors[1:], strict=True):
        if (other.card.architecture, other.card.model_kwargs, other.card.stem_stride) != (
            card.architecture,
            card.model_kwargs,
            card.stem_stride,
        ):
            raise LdmscanError(
                f"{path} is a {other.card.architecture} network, {paths[0]} a "
                f"{card.architecture} one (or their options differ): only one network's "
                "weights can be averaged"
            )
    states = [d.model.state_dict() for d in detectors]
    card.thresholds = {}
    card.calibration = {}
    card.metrics = {}
    card.attribution = {}
    card.recipe = {
        **detectors[-1].card.recipe,
        "soup_of": [
            {
                "file": str(p),
                "sha256": d.sha256,
                "init": d.card.recipe.get("init"),
                "training_set": d.card.recipe.get("training_set"),
            }
            for p, d in zip(paths, detectors, strict=True)
        ],
    }
    model = build_model(card)  # the detection network alone
    averaged = {}
    for key, like in model.state_dict().items():
        if like.is_floating_point():
            averaged[key] = torch.stack([s[key].float() for s in states]).mean(0).to(like.dtype)
        else:  # counters such as BatchNorm's num_batches_tracked
            averaged[key] = states[0][key]
    model.load_state_dict(averaged)
    return model, card


def write_soup(paths: Sequence[Path], out: Path, notes: str | None = None) -> str:
    """Average `paths` into `out` (float32, with the ONNX graph); returns its sha256."""
    model, card = average_detectors(paths)
    card.notes = notes or f"weight average of {', '.join(Path(p).name for p in paths)}"
    return save_detector(model, card, out, half=False)
