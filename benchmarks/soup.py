"""Average the weights of detectors fitted from the same start (a "model soup", Wortsman et al.
2022): `python benchmarks/soup.py OUT A B [C ...]`. The card is A's, its thresholds dropped
(the average is a new network: calibrate it with `ldmscan train calibrate`); its recipe is the
last ingredient's (the one fitted on the widest split), with `soup_of` naming every ingredient."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ldmscan.detector import load_detector, save_detector


def main() -> None:
    out, *paths = map(Path, sys.argv[1:])
    detectors = [load_detector(p) for p in paths]
    states = [d.model.state_dict() for d in detectors]
    averaged = {
        key: (
            torch.stack([s[key].float() for s in states]).mean(0).to(states[0][key].dtype)
            if states[0][key].is_floating_point()
            else states[0][key]
        )
        for key in states[0]
    }
    model = detectors[0].model
    model.load_state_dict(averaged)
    card = detectors[0].card
    card.thresholds = {}
    card.calibration = {}
    card.notes = f"weight average of {', '.join(p.name for p in paths)}"
    card.recipe = {
        **detectors[-1].card.recipe,
        "soup_of": [
            {
                "file": str(p),
                "init": d.card.recipe.get("init"),
                "training_set": d.card.recipe.get("training_set"),
            }
            for p, d in zip(paths, detectors, strict=True)
        ],
    }
    save_detector(model, card, out, half=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
