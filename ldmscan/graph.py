"""The ONNX graph stored in a detector file, so that scoring can run without torch and timm.

The graph takes uint8 crops (N x H x W x 3, any N, H, W) and returns N x outputs (the detection
logit, then any attribution logits; graphs written before attribution return N values); the
card's normalisation is inside it. Its weights are not: every initializer that is a state-dict
tensor is marked as external data, and `networks.OnnxNetwork` hands ONNX Runtime the file's own
tensors under those names. One copy of the weights serves both runtimes, and `save_detector`
checks, before the file is in place, that the two give the same logits.

Exporting needs torch and the `onnx` package (the training extra); loading needs neither.
"""

from __future__ import annotations

import io
import json
import warnings
from typing import TYPE_CHECKING

import numpy as np

from .errors import DetectorFileError, LdmscanError

if TYPE_CHECKING:
    import torch

    from .detector import DetectorCard

GRAPH_TENSOR = "ldmscan.graph.onnx"  # a uint8 tensor in the file: the serialised graph
GRAPH_WEIGHTS_KEY = "ldmscan.graph.weights"  # file metadata: the state-dict keys the graph reads
WEIGHT_PREFIX = "net."  # the graph names weight k "net." + k (the wrapper's attribute)
EXTERNAL_LOCATION = "ldmscan-detector-weights"  # never a file: the weights come from memory
OPSET = 17
# logits of the two runtimes may differ by float rounding (kernel order, fused ops); anything
# beyond this is a graph that does not compute the same network
TOLERANCE = 1e-3


def export_graph(model: torch.nn.Module, card: DetectorCard) -> tuple[bytes, list[str]]:
    """The network with the card's normalisation as an ONNX graph without its weights; returns
    the graph and the state-dict keys it reads."""
    import torch

    try:
        import onnx
    except ImportError as exc:
        raise LdmscanError(
            "storing the ONNX graph needs the onnx package: pip install 'ldmscan[training]'"
        ) from exc

    wrapper = _with_normalisation(model, card).eval()
    sample = torch.zeros((2, card.crop_size, card.crop_size, 3), dtype=torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter: the dynamo one took 6 minutes on EfficientNet-Lite0
        # with free height and width (measured once on this machine), this one a second, and
        # it keeps state-dict names on the initializers (constant folding off).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (sample,),
            buffer,  # type: ignore[arg-type]  # a file-like object is accepted
            dynamo=False,
            opset_version=OPSET,
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_axes={"pixels": {0: "n", 1: "height", 2: "width"}, "logits": {0: "n"}},
            do_constant_folding=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    state = model.state_dict()
    read: list[str] = []
    offset = 0
    for initializer in proto.graph.initializer:
        name = initializer.name
        key = name[len(WEIGHT_PREFIX) :]
        if not (name.startswith(WEIGHT_PREFIX) and key in state):
            continue  # a constant of the graph itself (e.g. the normalisation): stays inside
        if not state[key].is_floating_point():
            continue  # integer buffers are tiny: they stay inside too
        read.append(key)
        initializer.ClearField("raw_data")
        for field in ("float_data", "int32_data", "int64_data", "double_data"):
            initializer.ClearField(field)
        initializer.data_location = onnx.TensorProto.EXTERNAL
        del initializer.external_data[:]
        # where the weight sits in `weights_blob`: ONNX Runtime is handed the tensors by name,
        # OpenVINO reads them from that blob as external data
        length = state[key].numel() * 4
        for entry_key, value in (
            ("location", EXTERNAL_LOCATION),
            ("offset", offset),
            ("length", length),
        ):
            entry = initializer.external_data.add()
            entry.key, entry.value = entry_key, str(value)
        offset += length
    return proto.SerializeToString(), read


def _with_normalisation(model: torch.nn.Module, card: DetectorCard) -> torch.nn.Module:
    """uint8 NHWC crops -> the card's normalisation -> the network -> N x outputs (the
    detection logit, then the attribution head's logits when the card has one)."""
    import torch

    class Scorer(torch.nn.Module):
        shift: torch.Tensor
        scale: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.net = model
            shift = torch.tensor(list(card.mean)).view(1, 3, 1, 1) * 255.0
            scale = torch.tensor(list(card.std)).view(1, 3, 1, 1) * 255.0
            self.register_buffer("shift", shift, persistent=False)
            self.register_buffer("scale", scale, persistent=False)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            # the same arithmetic as preprocess.Normaliser, in the same order
            x = (pixels.permute(0, 3, 1, 2).float() - self.shift) / self.scale
            outputs: torch.Tensor = self.net(x)
            return outputs.reshape(outputs.shape[0], -1)

    return Scorer()


def weights_blob(weights: dict[str, np.ndarray]) -> bytes:
    """The graph's weights as float32, back to back in the order the graph lists them (the
    external-data file its initializers point into)."""
    return b"".join(np.ascontiguousarray(v, dtype="<f4").tobytes() for v in weights.values())


def graph_entries(graph: bytes, read: list[str]) -> tuple[np.ndarray, dict[str, str]]:
    """What `save_detector` adds to the file: the graph tensor and its metadata entry."""
    return np.frombuffer(graph, dtype=np.uint8).copy(), {GRAPH_WEIGHTS_KEY: json.dumps(read)}


def weights_read(metadata: dict[str, str], source: str) -> list[str]:
    try:
        names = json.loads(metadata[GRAPH_WEIGHTS_KEY])
    except (KeyError, json.JSONDecodeError) as exc:
        raise DetectorFileError(f"{source}: the ONNX graph's weight list is missing") from exc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DetectorFileError(f"{source}: the ONNX graph's weight list is malformed")
    return names


def verification_batch(crop_size: int) -> np.ndarray:
    """Fixed crops the two runtimes must agree on: noise, and a smooth ramp."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (2, crop_size, crop_size, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, crop_size).astype(np.uint8)
    smooth = np.broadcast_to(ramp[None, None, :, None], (1, crop_size, crop_size, 3))
    return np.concatenate([noise, smooth])
