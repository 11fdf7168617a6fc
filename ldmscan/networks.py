"""The network a detector scores with: uint8 crops (N x H x W x 3) in, one logit per crop out.

Three runtimes run the same weights, all read from the detector file:

- `onnx`: ONNX Runtime over the graph that training stores in the file (`graph.py`), on the CPU.
  It needs neither torch nor timm: `import timm` alone takes ~5 s here (it pulls in
  torchvision), `import torch` ~2 s, `import onnxruntime` 0.13 s, so a one-file scan starts in
  about a second instead of six. The graph holds no weights of its own: ONNX Runtime takes them
  from the file's tensors, so weights and graph cannot disagree.
- `openvino`: OpenVINO over the same graph, in bfloat16 where the CPU has it (faster; scores
  close to, not equal to, float32: an opt-in extra).
- `torch`: the timm network the card names: for GPUs (half precision, `torch.compile`), and for
  files written before graphs were stored.

`auto` takes onnx for a CPU run when the file has a graph and onnxruntime is installed, else
torch. Deciding needs no torch import: a CUDA GPU is looked for through the NVIDIA driver's
/proc entry, which is what torch's own check rests on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .errors import DetectorFileError, LdmscanError

if TYPE_CHECKING:
    import torch

    from .detector import Detector

RUNTIMES = ("auto", "onnx", "openvino", "torch")
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


class Network(Protocol):
    runtime: str  # "onnx", "openvino" or "torch"
    device: str  # "cpu", "cuda", "cuda:1", ...
    half: bool

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """N x H x W x 3 uint8 -> N x outputs float32: column 0 the detection logit, the rest
        the attribution head's logits (none for a detection-only card)."""
        ...


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def onnxruntime_installed() -> bool:
    return _installed("onnxruntime")


def cuda_gpu_visible() -> bool:
    """Whether torch would find a CUDA GPU, answered without importing torch."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return False
    return NVIDIA_DRIVER.exists()


def choose_runtime(
    detector: Detector,
    runtime: str = "auto",
    device: str = "auto",
    *,
    half: bool | None = None,
    compile_model: bool = False,
) -> str:
    """Which runtime serves these settings; refuses combinations that cannot run."""
    if runtime not in RUNTIMES:
        raise LdmscanError(f"unknown runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    cpu = device == "cpu" or (device == "auto" and not cuda_gpu_visible())
    if runtime in ("onnx", "openvino"):
        if detector.graph is None:
            raise DetectorFileError(
                f"detector {detector.card.name} {detector.card.version} holds no ONNX graph "
                "(written before graphs were stored); add one with `ldmscan train export-graph`"
            )
        if runtime == "onnx" and not onnxruntime_installed():
            raise LdmscanError("--runtime onnx needs onnxruntime: pip install onnxruntime")
        if runtime == "openvino" and not _installed("openvino"):
            raise LdmscanError("--runtime openvino needs OpenVINO: pip install 'ldmscan[openvino]'")
        if not cpu:
            raise LdmscanError(
                f"--runtime {runtime} runs on the CPU only; use --runtime torch on a GPU"
            )
        if half or compile_model:
            raise LdmscanError("--half and --compile are torch settings; use --runtime torch")
        return runtime
    if runtime == "torch":
        return "torch"
    usable = detector.graph is not None and onnxruntime_installed()
    return "onnx" if usable and cpu and not half and not compile_model else "torch"


def build_network(
    detector: Detector,
    runtime: str = "auto",
    device: str = "auto",
    *,
    half: bool | None = None,
    compile_model: bool = False,
    threads: int | None = None,
) -> Network:
    chosen = choose_runtime(detector, runtime, device, half=half, compile_model=compile_model)
    if chosen == "onnx":
        assert detector.graph is not None  # choose_runtime checked
        return OnnxNetwork(detector.graph, detector.weights(), threads=threads)
    if chosen == "openvino":
        assert detector.graph is not None
        return OpenVinoNetwork(detector.graph, detector.weights(), threads=threads)
    return TorchNetwork(detector, device, half=half, compile_model=compile_model)


class OnnxNetwork:
    """ONNX Runtime on the CPU over a stored graph whose weights are supplied from the file."""

    runtime = "onnx"
    device = "cpu"
    half = False

    def __init__(
        self, graph: bytes, weights: dict[str, np.ndarray], *, threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        from .graph import WEIGHT_PREFIX

        options = ort.SessionOptions()
        # one session serves the engine's single model thread: ops run in parallel inside it
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads or 0  # 0: one per physical core
        # no spinning between calls: the decode threads need those cores while a batch fills
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # the weights the graph marks external, under its names for them; the OrtValues must
        # outlive the session (ONNX Runtime reads them in place)
        names = [WEIGHT_PREFIX + key for key in weights]
        self._values = [
            ort.OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(value, np.float32 if value.dtype.kind == "f" else None)
            )
            for value in weights.values()
        ]
        options.add_external_initializers(names, self._values)
        try:
            self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a graph that does not fit its weights, or a damaged one
            raise DetectorFileError(
                f"ONNX Runtime cannot load the detector's graph: {exc}"
            ) from exc
        self._input = self._session.get_inputs()[0].name

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        out = self._session.run(None, {self._input: np.ascontiguousarray(crops, np.uint8)})[0]
        return np.asarray(out, np.float32).reshape(len(crops), -1)


class OpenVinoNetwork:
    """OpenVINO on the CPU over the same stored graph, in bfloat16 where the CPU computes it
    natively (AMX / AVX-512 BF16: ~2.5x ONNX Runtime's speed here) and float32 elsewhere.
    bfloat16 moves logits by up to ~0.2, so scores are close to, not equal to, the thresholds'
    float32 calibration (dev AUC within 0.002: docs/RESULTS.md); hence not the auto choice."""

    runtime = "openvino"
    device = "cpu"
    half = False

    def __init__(
        self,
        graph: bytes,
        weights: dict[str, np.ndarray],
        *,
        threads: int | None = None,
        precision: str | None = None,
    ) -> None:
        import tempfile

        import openvino as ov

        from .graph import EXTERNAL_LOCATION, weights_blob

        core = ov.Core()
        if precision is None:
            capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            precision = "bf16" if "BF16" in capabilities else "f32"
        self.precision = precision
        # OpenVINO's ONNX reader takes external data from files beside the graph only: both go
        # to a private temporary folder for the moment of reading
        with tempfile.TemporaryDirectory(prefix="ldmscan-ov-") as folder:
            (Path(folder) / "graph.onnx").write_bytes(graph)
            (Path(folder) / EXTERNAL_LOCATION).write_bytes(weights_blob(weights))
            try:
                model = core.read_model(str(Path(folder) / "graph.onnx"))
            except Exception as exc:
                raise DetectorFileError(
                    f"OpenVINO cannot read the detector's graph: {exc}"
                ) from exc
        config: dict[str, object] = {
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time, all cores on it
            "INFERENCE_PRECISION_HINT": precision,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._request = core.compile_model(model, "CPU", config).create_infer_request()

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        out = self._request.infer({0: np.ascontiguousarray(crops, np.uint8)})[0]
        return np.asarray(out, np.float32).reshape(len(crops), -1)


class TorchNetwork:
    """The timm network on CPU or GPU: channels-last, half precision on a GPU by default."""

    runtime = "torch"

    def __init__(
        self,
        detector: Detector,
        device: str = "auto",
        *,
        half: bool | None = None,
        compile_model: bool = False,
    ) -> None:
        import torch

        from .preprocess import Normaliser

        self.device = select_device(device)
        self.half = self.device.startswith("cuda") if half is None else half
        # channels-last everywhere: on CPU oneDNN's depthwise convolutions are faster in it
        # (benchmarks/bench_cpu_settings.py), on a GPU tensor cores want it
        model = detector.model.to(self.device).to(memory_format=torch.channels_last)
        if self.half:
            model = model.half()
        self._model: Callable[[torch.Tensor], torch.Tensor] = model.eval()
        if compile_model:  # worth it on a GPU for long runs; the first batches pay
            self._model = torch.compile(self._model, dynamic=True)
        self._normalise = Normaliser(detector.card.mean, detector.card.std, self.device)

    def __call__(self, crops: np.ndarray | torch.Tensor) -> np.ndarray:
        """Also takes a uint8 N x H x W x 3 tensor already on the device (GPU decode)."""
        import torch

        if isinstance(crops, torch.Tensor):
            tensor = crops
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(crops))
        if tensor.device.type == "cpu" and self.device.startswith("cuda"):
            tensor = tensor.pin_memory()  # lets the copy to the GPU run asynchronously
        tensor = tensor.to(self.device, non_blocking=True)
        tensor = self._normalise(tensor.permute(0, 3, 1, 2))
        tensor = tensor.contiguous(memory_format=torch.channels_last)
        if self.half:
            tensor = tensor.half()
        with torch.inference_mode():
            out = self._model(tensor)
        return out.float().reshape(out.shape[0], -1).cpu().numpy()


def select_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available")
    return requested


def max_abs_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
