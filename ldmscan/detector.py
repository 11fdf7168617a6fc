"""A detector is one .safetensors file: the weights plus a card in its metadata.

Training writes the card and the engine reads it, so architecture, crop size, normalisation and
thresholds cannot drift apart from the weights they describe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DetectorFileError
from .verdict import DetectorRef, Thresholds

if TYPE_CHECKING:
    import numpy as np
    import torch

CARD_KEY = "ldmscan.card"
CARD_FORMAT = "ldmscan-detector"
CARD_FORMAT_VERSION = 1
DEFAULT_DETECTOR_NAME = "default.safetensors"
DEFAULT_GENERATED_FPR = 0.001
DEFAULT_UNCERTAIN_FPR = 0.01
# A stored ONNX graph is what OpenVINO and ONNX Runtime compile; torch needs only the weights.
GRAPH_RUNTIMES = ("openvino", "onnx", "torch")


@dataclass
class DetectorCard:
    name: str
    version: str
    architecture: str  # a timm model name
    crop_size: int  # side of the square crop the engine scores
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stem_stride: int | None = None  # None keeps the architecture's own first stride
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    default_tries: int = 1
    aggregation: str = "mean_logit"
    placement: str = "grid"  # where crops go: PLACEMENTS ("grid": 1 try = the centre)
    # thresholds[tries][fpr] = probability at which that share of real images is flagged
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # the attribution head, when the network has one: {"classes": [latent spaces, in output
    # order], "confidence": the least top probability shown as a guess, plus how it was
    # trained and measured}; empty for a detection-only network (files before 0.4)
    attribution: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    format: str = CARD_FORMAT
    format_version: int = CARD_FORMAT_VERSION

    @property
    def attribution_classes(self) -> tuple[str, ...]:
        return tuple(self.attribution.get("classes", ()))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "detector file") -> DetectorCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DetectorFileError(
                f"{source}: the detector card is not valid JSON ({exc})"
            ) from exc
        if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
            raise DetectorFileError(f"{source}: not an ldmscan detector (card format missing)")
        if data.get("format_version", 0) > CARD_FORMAT_VERSION:
            raise DetectorFileError(
                f"{source}: detector format {data['format_version']} is newer than this ldmscan "
                f"understands ({CARD_FORMAT_VERSION}); upgrade ldmscan"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise DetectorFileError(f"{source}: detector card lacks {', '.join(missing)}")
        card = cls(**{k: v for k, v in data.items() if k in known})
        card.mean = tuple(card.mean)  # type: ignore[assignment]
        card.std = tuple(card.std)  # type: ignore[assignment]
        card.validate(source)
        return card

    def validate(self, source: str = "detector card") -> None:
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise DetectorFileError(f"{source}: mean and std must hold 3 values, std > 0")
        if not 16 <= self.crop_size <= 4096:
            raise DetectorFileError(f"{source}: crop_size {self.crop_size} is out of range")
        if self.aggregation not in AGGREGATIONS:
            raise DetectorFileError(f"{source}: unknown aggregation {self.aggregation!r}")
        if self.placement not in PLACEMENTS:
            raise DetectorFileError(f"{source}: unknown placement {self.placement!r}")
        if self.attribution:
            classes = self.attribution.get("classes")
            confidence = self.attribution.get("confidence", 0.0)
            if (
                not isinstance(classes, list)
                or len(classes) < 2
                or len(set(classes)) != len(classes)
                or not all(isinstance(c, str) and c for c in classes)
            ):
                raise DetectorFileError(
                    f"{source}: attribution classes must be two or more distinct names"
                )
            if not isinstance(confidence, (int, float)) or not 0.0 <= confidence <= 1.0:
                raise DetectorFileError(f"{source}: attribution confidence must lie in [0, 1]")
        for tries, table in self.thresholds.items():
            if not str(tries).isdigit() or not all(0.0 <= float(v) <= 1.0 for v in table.values()):
                raise DetectorFileError(f"{source}: malformed thresholds for tries={tries}")

    def thresholds_for(
        self,
        tries: int,
        generated_fpr: float = DEFAULT_GENERATED_FPR,
        uncertain_fpr: float = DEFAULT_UNCERTAIN_FPR,
    ) -> Thresholds:
        """The cut-offs calibrated for this number of tries (or the nearest calibrated one)."""
        if not self.thresholds:
            raise DetectorFileError(f"detector {self.name} {self.version} was never calibrated")
        calibrated = sorted(int(t) for t in self.thresholds)
        nearest = min(calibrated, key=lambda t: (abs(t - tries), t))
        table = self.thresholds[str(nearest)]

        def lookup(fpr: float) -> float:
            for key, value in table.items():
                if abs(float(key) - fpr) < 1e-12:
                    return float(value)
            offered = ", ".join(sorted(table, key=float))
            raise DetectorFileError(
                f"detector {self.name} {self.version} has no threshold at FPR {fpr:g} "
                f"(calibrated: {offered}); recalibrate with `ldmscan train calibrate`"
            )

        note = (
            ""
            if nearest == tries
            else f"thresholds calibrated at {nearest} tries, not {tries}: false-positive rates "
            "approximate"
        )
        try:
            return Thresholds(
                generated=lookup(generated_fpr),
                uncertain=lookup(uncertain_fpr),
                generated_fpr=generated_fpr,
                uncertain_fpr=uncertain_fpr,
                note=note,
            )
        except ValueError as exc:  # the two rates in the wrong order: a setting, not a bug
            raise DetectorFileError(str(exc)) from exc


AGGREGATIONS = ("mean_logit", "max_logit")
PLACEMENTS = ("grid", "smoothest")  # implemented in crops.place


class Detector:
    """An opened detector file: its card, and the network in whichever runtime scores it.

    The timm model (`model`) is built on first use: an ONNX Runtime scan never needs it, and
    building it means importing timm (~5 s). The ONNX graph, when the file holds one, was
    checked against that model when the file was written (`save_detector`).
    """

    def __init__(
        self,
        card: DetectorCard,
        sha256: str,
        path: Path | None,
        *,
        model: torch.nn.Module | None = None,
        graph: bytes | None = None,
        graph_weights: Sequence[str] = (),
    ) -> None:
        if model is None and path is None:
            raise ValueError("a Detector needs a model or a file to build one from")
        self.card = card
        self.sha256 = sha256
        self.path = path
        self.graph = graph
        self.graph_weights = tuple(graph_weights)
        self._model = model

    @property
    def ref(self) -> DetectorRef:
        return DetectorRef(name=self.card.name, version=self.card.version, sha256=self.sha256)

    @property
    def runtimes(self) -> tuple[str, ...]:
        """The runtimes this file can be scored in."""
        return GRAPH_RUNTIMES if self.graph is not None else ("torch",)

    @property
    def model(self) -> torch.nn.Module:
        """The timm network with the file's weights, in float32, eval mode, on the CPU."""
        if self._model is None:
            assert self.path is not None  # __init__ requires one of the two
            self._model = _load_model(self.path, self.card)
        return self._model

    def weights(self) -> dict[str, np.ndarray]:
        """The tensors the ONNX graph reads, as numpy arrays (no torch import)."""
        from safetensors import safe_open

        if self.path is None:
            raise DetectorFileError("a detector built in memory has no file to read weights from")
        with safe_open(str(self.path), framework="np") as handle:
            present = set(handle.keys())
            missing = [name for name in self.graph_weights if name not in present]
            if missing:
                raise DetectorFileError(
                    f"{self.path}: the ONNX graph reads weights the file lacks: {missing[:3]}"
                )
            return {name: handle.get_tensor(name) for name in self.graph_weights}


def build_model(card: DetectorCard) -> torch.nn.Module:
    """The timm network a card describes, randomly initialised (weights come from the file)."""
    import timm

    try:
        model = timm.create_model(
            card.architecture, pretrained=False, num_classes=1, **card.model_kwargs
        )
    except Exception as exc:  # unknown architecture name, or kwargs it does not take
        raise DetectorFileError(
            f"timm cannot build architecture {card.architecture!r}: {exc}"
        ) from exc
    if card.stem_stride is not None:
        set_stem_stride(model, card.stem_stride)
    if card.attribution_classes:
        from .heads import add_attribution_head

        try:
            add_attribution_head(model, len(card.attribution_classes))
        except ValueError as exc:
            raise DetectorFileError(
                f"architecture {card.architecture!r} cannot carry an attribution head: {exc}"
            ) from exc
    return model


def set_stem_stride(model: torch.nn.Module, stride: int) -> None:
    """Change the first convolution's stride (1 lets the highest frequencies reach the network).

    timm names the first convolution of every architecture in its pretrained config.
    """
    config: dict[str, Any] = getattr(model, "pretrained_cfg", {})
    first_conv = config.get("first_conv")
    if not first_conv:
        raise DetectorFileError("this architecture does not name its first convolution")
    module = model.get_submodule(first_conv if isinstance(first_conv, str) else first_conv[0])
    if not hasattr(module, "stride"):
        module = next(m for m in module.modules() if hasattr(m, "stride"))
    setattr(module, "stride", (stride, stride))  # noqa: B010 (Module.__setattr__ typing)


def save_detector(
    model: torch.nn.Module,
    card: DetectorCard,
    path: Path,
    half: bool = True,
    *,
    graph: bool = True,
) -> str:
    """Write weights + card (+ the ONNX graph, unless graph=False) to one file; returns its
    sha256. The graph is checked against the torch model on the written weights before the
    file replaces `path`."""
    import copy

    import torch
    from safetensors.torch import save_file

    from . import graph as graph_mod

    card.validate()
    tensors = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.to(torch.float16)
        tensors[key] = tensor
    metadata = {CARD_KEY: card.to_json()}
    if graph:
        cpu_copy = copy.deepcopy(model).float().cpu().eval()
        graph_bytes, read = graph_mod.export_graph(cpu_copy, card)
        array, entries = graph_mod.graph_entries(graph_bytes, read)
        tensors[graph_mod.GRAPH_TENSOR] = torch.from_numpy(array)
        metadata.update(entries)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    if graph:
        try:
            check_graph(load_detector(tmp))
        except Exception:
            tmp.unlink(missing_ok=True)
            raise
    tmp.replace(path)
    return file_sha256(path)


def check_graph(detector: Detector) -> float:
    """The largest logit difference between the ONNX graph and the torch model on fixed crops
    (square, and a narrower one); raises when they disagree beyond float rounding."""
    import numpy as np

    from .graph import TOLERANCE, verification_batch
    from .networks import OnnxNetwork, TorchNetwork, max_abs_difference

    if detector.graph is None:
        raise DetectorFileError(f"detector {detector.card.name} holds no ONNX graph")
    onnx_net = OnnxNetwork(detector.graph, detector.weights(), threads=1)
    torch_net = TorchNetwork(detector, "cpu", half=False)
    batch = verification_batch(detector.card.crop_size)
    narrow = np.ascontiguousarray(batch[:, :, : max(16, detector.card.crop_size // 2)])
    worst = max(max_abs_difference(onnx_net(b), torch_net(b)) for b in (batch, narrow))
    if not worst <= TOLERANCE:
        raise DetectorFileError(
            f"the ONNX graph of {detector.card.name} gives logits {worst:.3g} away from the "
            f"torch model's (tolerance {TOLERANCE:g}): the export is wrong, file not written"
        )
    return worst


def stored_in_half_precision(path: Path) -> bool:
    """Whether a detector file keeps its weights in 16 bits (rewrites keep the same)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        first = next(iter(handle.keys()))
        return str(handle.get_slice(first).get_dtype()) in {"F16", "BF16"}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_header(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DetectorFileError(f"detector file not found: {path}")
    try:
        # framework "np": reading the header must not import torch (a 2-3 s start-up cost)
        with safe_open(str(path), framework="np") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:
        raise DetectorFileError(f"{path}: not a safetensors file ({exc})") from exc
    if CARD_KEY not in metadata:
        raise DetectorFileError(
            f"{path}: a safetensors file without an ldmscan card (not a detector made by "
            "`ldmscan train fit`)"
        )
    return metadata


def read_card(path: Path) -> DetectorCard:
    """The card alone, without building the network (cheap: reads the header only)."""
    return DetectorCard.from_json(_read_header(path)[CARD_KEY], source=str(path))


def stored_runtimes(path: Path) -> tuple[str, ...]:
    """The runtimes a detector file can be scored in, from its header alone."""
    from safetensors import safe_open

    from .graph import GRAPH_TENSOR

    _read_header(path)
    with safe_open(str(path), framework="np") as handle:
        return GRAPH_RUNTIMES if GRAPH_TENSOR in set(handle.keys()) else ("torch",)


def load_detector(path: Path | str | None = None) -> Detector:
    """Open a detector file (the shipped default when path is None). Cheap when the file holds
    an ONNX graph: the torch model is built on first use. A file without one is checked against
    its architecture now, since torch is the only way to score it."""
    from safetensors import safe_open

    from . import graph as graph_mod

    path = Path(path) if path is not None else default_detector_path()
    metadata = _read_header(path)
    card = DetectorCard.from_json(metadata[CARD_KEY], source=str(path))
    with safe_open(str(path), framework="np") as handle:
        stored = graph_mod.GRAPH_TENSOR in set(handle.keys())
        graph = handle.get_tensor(graph_mod.GRAPH_TENSOR).tobytes() if stored else None
    detector = Detector(
        card,
        file_sha256(path),
        path,
        graph=graph,
        graph_weights=graph_mod.weights_read(metadata, str(path)) if stored else (),
    )
    if graph is None:
        _ = detector.model  # builds and checks it
    return detector


def _load_model(path: Path, card: DetectorCard) -> torch.nn.Module:
    """The timm model the card names, with the file's weights (fp16 files load into fp32)."""
    from safetensors import safe_open

    from .graph import GRAPH_TENSOR

    model = build_model(card)
    with safe_open(str(path), framework="pt") as handle:
        keys = [key for key in handle.keys() if key != GRAPH_TENSOR]  # noqa: SIM118 (not a dict)
        state = {key: handle.get_tensor(key) for key in keys}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DetectorFileError(
            f"{path}: weights do not fit architecture {card.architecture} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise DetectorFileError(
                f"{path}: weight {key} has shape {tuple(tensor.shape)}, architecture "
                f"{card.architecture} expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return model.eval()


def default_detector_path() -> Path:
    path = Path(str(resources.files("ldmscan") / "models" / DEFAULT_DETECTOR_NAME))
    if not path.is_file():
        raise DetectorFileError(
            f"the default detector is not installed ({path}); pass --detector FILE"
        )
    return path
