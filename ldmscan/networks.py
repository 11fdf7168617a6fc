"""The network a detector scores with: uint8 crops (N x H x W x 3) in, one logit per crop out.

Four runtimes run the same weights, all read from the detector file:

- `onnx`: ONNX Runtime over the graph that training stores in the file (`graph.py`), on the CPU.
  It needs neither torch nor timm: `import timm` alone takes ~5 s here (it pulls in
  torchvision), `import torch` ~2 s, `import onnxruntime` 0.13 s, so a one-file scan starts in
  about a second instead of six. The graph holds no weights of its own: ONNX Runtime takes them
  from the file's tensors, so weights and graph cannot disagree.
- `openvino`: OpenVINO over the same graph, in float32: the same scores as onnx (to ~2e-5) and
  the fastest exact path measured on a CPU (whole-process scans +10-16%, docs/RESULTS.md). It
  costs ~0.3 s more to import and ~0.7 s to compile; its compiled-model cache (`LDMSCAN_CACHE`,
  default the user cache folder; ~14 MB a detector) saves the compile on every later start.
- `openvino-bf16`: the same in bfloat16 where the CPU computes it natively (AMX / AVX-512 BF16):
  ~1.7x faster again, but logits move by up to ~0.2 against thresholds calibrated in float32,
  so it is an opt-in.
- `torch`: the timm network the card names: for GPUs (half precision, `torch.compile`), and for
  files written before graphs were stored.

`auto`, for a CPU run of a file with a graph: openvino when it is installed (a dependency; absent
only where no OpenVINO wheel exists), else onnx; otherwise torch. Deciding needs no torch
import: a CUDA GPU is looked for through the NVIDIA driver's /proc entry, which is what torch's
own check rests on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .errors import DetectorFileError, LdmscanError

if TYPE_CHECKING:
    import torch

    from .detector import Detector

RUNTIMES = ("auto", "onnx", "openvino", "openvino-bf16", "torch")
OPENVINO_PRECISIONS = {"openvino": "f32", "openvino-bf16": "bf16"}
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


class Network(Protocol):
    runtime: str  # one of RUNTIMES but "auto"
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


def openvino_installed() -> bool:
    return _installed("openvino")


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
    if runtime in ("onnx", *OPENVINO_PRECISIONS):
        if detector.graph is None:
            raise DetectorFileError(
                f"detector {detector.card.name} {detector.card.version} holds no ONNX graph "
                "(written before graphs were stored); add one with `ldmscan train export-graph`"
            )
        if runtime == "onnx" and not onnxruntime_installed():
            raise LdmscanError("--runtime onnx needs onnxruntime: pip install onnxruntime")
        if runtime in OPENVINO_PRECISIONS and not openvino_installed():
            raise LdmscanError(f"--runtime {runtime} needs OpenVINO: pip install openvino")
        if not cpu:
            raise LdmscanError(
                f"--runtime {runtime} runs on the CPU only; use --runtime torch on a GPU"
            )
        if half or compile_model:
            raise LdmscanError("--half and --compile are torch settings; use --runtime torch")
        return runtime
    if runtime == "torch":
        return "torch"
    if detector.graph is None or not cpu or half or compile_model:
        return "torch"
    if openvino_installed():
        return "openvino"
    return "onnx" if onnxruntime_installed() else "torch"


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
    if chosen in OPENVINO_PRECISIONS:
        assert detector.graph is not None
        return OpenVinoNetwork(
            detector.graph,
            detector.weights(),
            threads=threads,
            precision=OPENVINO_PRECISIONS[chosen],
            cache_dir=openvino_cache_dir(),
        )
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


def openvino_cache_dir() -> Path | None:
    """Where OpenVINO keeps compiled networks between runs: $LDMSCAN_CACHE/openvino, else the
    user cache folder; None (no cache) when LDMSCAN_CACHE is set to an empty string."""
    root = os.environ.get("LDMSCAN_CACHE")
    if root == "":
        return None
    if root is None:
        from platformdirs import user_cache_dir

        root = user_cache_dir("ldmscan", appauthor=False)
    return Path(root) / "openvino"


class OpenVinoNetwork:
    """OpenVINO on the CPU over the stored graph, in float32 (`openvino`: the thresholds' own
    precision) or bfloat16 (`openvino-bf16`: faster, logits within ~0.2).

    The compiled network is cached under cache_dir, keyed by OpenVINO on the graph, weights and
    settings, so only a detector's first start pays the ~0.8 s compile. A cache that cannot be
    written (read-only home) costs that time again, nothing else."""

    device = "cpu"
    half = False

    def __init__(
        self,
        graph: bytes,
        weights: dict[str, np.ndarray],
        *,
        threads: int | None = None,
        precision: str = "f32",
        cache_dir: Path | None = None,
    ) -> None:
        import openvino as ov

        if precision not in OPENVINO_PRECISIONS.values():
            raise LdmscanError(f"unknown OpenVINO precision {precision!r}")
        self.precision = precision
        self.runtime = "openvino" if precision == "f32" else "openvino-bf16"
        core = ov.Core()
        model = read_openvino_model(core, graph, weights)
        config: dict[str, object] = {
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time, all cores on it
            "INFERENCE_PRECISION_HINT": precision,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if cache_dir is not None and _writable_folder(cache_dir):
            config["CACHE_DIR"] = str(cache_dir)
        self._request = core.compile_model(model, "CPU", config).create_infer_request()

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        out = self._request.infer({0: np.ascontiguousarray(crops, np.uint8)})[0]
        return np.asarray(out, np.float32).reshape(len(crops), -1)


def read_openvino_model(core: Any, graph: bytes, weights: dict[str, np.ndarray]) -> Any:
    """The stored graph with the file's weights as an OpenVINO model (not yet compiled)."""
    import tempfile

    from .graph import EXTERNAL_LOCATION, weights_blob

    # OpenVINO's ONNX reader takes external data from files beside the graph only: both go to a
    # private temporary folder for the moment of reading
    with tempfile.TemporaryDirectory(prefix="ldmscan-ov-") as folder:
        (Path(folder) / "graph.onnx").write_bytes(graph)
        (Path(folder) / EXTERNAL_LOCATION).write_bytes(weights_blob(weights))
        try:
            return core.read_model(str(Path(folder) / "graph.onnx"))
        except Exception as exc:
            raise DetectorFileError(f"OpenVINO cannot read the detector's graph: {exc}") from exc


def _writable_folder(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


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
