"""The attribution head inside a timm network: one forward pass gives the detection logit and
one logit per latent space.

What the head reads: for every stage the network exposes (timm's `forward_intermediates`), the
spatial mean and standard deviation of each channel. Early stages are where a decoder's
high-frequency trace still is: measured leave-one-source-out on harvested images, a head on the
final pooled features (what the detection layer reads) named the right latent space for 0.40 of
them, one on the stage statistics and the pooled features for 0.51, one on the stage statistics
alone for 0.60 (docs/RESULTS.md, "Latent-space attribution").

The head is a submodule of the timm network itself (`attribution_head`), and the network's
`forward` is replaced on that instance: the state dict keeps timm's own names for every other
weight, so the detection weights of a file with a head are the same tensors, under the same
names, as in the file it was made from, and the ONNX export sees one module.
"""

from __future__ import annotations

import types
from typing import Any

import torch

HEAD_NAME = "attribution_head"


def stage_channels(model: Any) -> list[int]:
    """Channels of the stages `forward_intermediates` returns (timm's feature_info)."""
    return [int(info["num_chs"]) for info in model.feature_info]


def feature_width(model: Any) -> int:
    return 2 * sum(stage_channels(model))


def attribution_features(model: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled features the detection layer reads, the head's input) for a batch."""
    final, stages = model.forward_intermediates(x)
    pooled = model.forward_head(final, pre_logits=True)
    statistics = [torch.cat([s.mean((2, 3)), s.std((2, 3))], 1) for s in stages]
    return pooled, torch.cat(statistics, 1)


def _forward_with_attribution(self: Any, x: torch.Tensor) -> torch.Tensor:
    pooled, features = attribution_features(self, x)
    detection = self.get_classifier()(pooled)
    return torch.cat([detection, getattr(self, HEAD_NAME)(features)], 1)


def add_attribution_head(model: torch.nn.Module, classes: int) -> torch.nn.Module:
    """Give a timm network (one detection output) a zero-initialised head of `classes` logits;
    its forward then returns N x (1 + classes)."""
    network: Any = model
    if not hasattr(network, "forward_intermediates") or not hasattr(network, "feature_info"):
        raise ValueError(f"{type(model).__name__} exposes no stages (forward_intermediates)")
    head = torch.nn.Linear(feature_width(network), classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    model.add_module(HEAD_NAME, head)
    # an instance attribute: Module.__call__ looks forward up on the instance first
    object.__setattr__(model, "forward", types.MethodType(_forward_with_attribution, model))
    return model


def has_attribution_head(model: torch.nn.Module) -> bool:
    return hasattr(model, HEAD_NAME)
