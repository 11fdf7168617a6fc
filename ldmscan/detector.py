"""A detector is one .safetensors file: the weights plus a card in its metadata.

Training writes the card and the engine reads it, so architecture, crop size, normalisation and
thresholds cannot drift apart from the weights they describe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DetectorFileError
from .verdict import DetectorRef, Thresholds

if TYPE_CHECKING:
    import torch

CARD_KEY = "ldmscan.card"
CARD_FORMAT = "ldmscan-detector"
CARD_FORMAT_VERSION = 1
DEFAULT_DETECTOR_NAME = "default.safetensors"
DEFAULT_GENERATED_FPR = 0.001
DEFAULT_UNCERTAIN_FPR = 0.01


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
    notes: str = ""
    format: str = CARD_FORMAT
    format_version: int = CARD_FORMAT_VERSION

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


@dataclass
class Detector:
    card: DetectorCard
    model: torch.nn.Module
    sha256: str
    path: Path | None

    @property
    def ref(self) -> DetectorRef:
        return DetectorRef(name=self.card.name, version=self.card.version, sha256=self.sha256)


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


def save_detector(model: torch.nn.Module, card: DetectorCard, path: Path, half: bool = True) -> str:
    """Write weights + card to one file; returns the file's sha256."""
    import torch
    from safetensors.torch import save_file

    card.validate()
    tensors = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.to(torch.float16)
        tensors[key] = tensor
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata={CARD_KEY: card.to_json()})
    tmp.replace(path)
    return file_sha256(path)


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


def read_card(path: Path) -> DetectorCard:
    """The card alone, without building the network (cheap: reads the header only)."""
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
    return DetectorCard.from_json(metadata[CARD_KEY], source=str(path))


def load_detector(path: Path | str | None = None, device: str = "cpu") -> Detector:
    """Open a detector file (the shipped default when path is None) ready for inference."""
    import torch
    from safetensors.torch import load_file

    path = Path(path) if path is not None else default_detector_path()
    card = read_card(path)
    model = build_model(card)
    state = load_file(str(path), device="cpu")
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
    model.eval().to(torch.device(device))
    return Detector(card=card, model=model, sha256=file_sha256(path), path=path)


def default_detector_path() -> Path:
    path = Path(str(resources.files("ldmscan") / "models" / DEFAULT_DETECTOR_NAME))
    if not path.is_file():
        raise DetectorFileError(
            f"the default detector is not installed ({path}); pass --detector FILE"
        )
    return path
