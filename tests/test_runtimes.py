"""The two runtimes (networks.py): the ONNX graph stored in a detector file gives the torch
model's scores, files without a graph keep working, and a CPU scan never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors import safe_open

from ldmscan.cli import cli
from ldmscan.detector import (
    DetectorCard,
    build_model,
    check_graph,
    load_detector,
    save_detector,
    stored_runtimes,
)
from ldmscan.engine import Engine, EngineOptions
from ldmscan.errors import DetectorFileError, LdmscanError
from ldmscan.graph import GRAPH_TENSOR
from ldmscan.networks import OnnxNetwork, TorchNetwork, choose_runtime

from conftest import image_bytes, make_tiny_detector, noise_image, tiny_card


def _without_graph(tmp_path, name="old.safetensors", **overrides):
    import torch

    torch.manual_seed(3)
    card = tiny_card(**overrides)
    path = tmp_path / name
    save_detector(build_model(card), card, path, half=False, graph=False)
    return path


def test_the_file_holds_the_graph_but_not_a_second_copy_of_the_weights(tmp_path):
    path = make_tiny_detector(tmp_path / "d.safetensors")
    detector = load_detector(path)
    assert detector.runtimes == ("openvino", "onnx", "torch") == stored_runtimes(path)
    with safe_open(str(path), framework="np") as handle:
        keys = [k for k in handle.keys() if k != GRAPH_TENSOR]  # noqa: SIM118 (not a dict)
        weight_bytes = sum(handle.get_tensor(k).nbytes for k in keys)
    assert detector.graph is not None and len(detector.graph) < weight_bytes / 2
    assert set(detector.graph_weights) <= set(detector.model.state_dict())


@pytest.mark.parametrize("half", [False, True])
def test_onnx_and_torch_give_the_same_logits(tmp_path, half):
    import torch

    torch.manual_seed(1)
    card = tiny_card(stem_stride=1)
    path = tmp_path / "d.safetensors"
    save_detector(build_model(card), card, path, half=half)
    detector = load_detector(path)
    onnx_net = OnnxNetwork(detector.graph, detector.weights())
    torch_net = TorchNetwork(detector, "cpu", half=False)
    rng = np.random.default_rng(0)
    for shape in [(5, 64, 64, 3), (2, 40, 64, 3), (1, 64, 33, 3)]:
        crops = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_allclose(onnx_net(crops), torch_net(crops), atol=1e-4)
    assert check_graph(detector) <= 1e-3


def test_an_engine_on_either_runtime_gives_the_same_verdicts(tiny_detector_path):
    images = [image_bytes(noise_image(200, 150, seed)) for seed in range(6)]
    verdicts = {}
    for runtime in ("onnx", "torch"):
        options = EngineOptions(device="cpu", tries=3, runtime=runtime)
        with Engine(load_detector(tiny_detector_path), options) as engine:
            assert engine.runtime == runtime
            verdicts[runtime] = [engine.check(data).verdict for data in images]
    for a, b in zip(verdicts["onnx"], verdicts["torch"], strict=True):
        assert a.label is b.label
        assert a.crop_scores == pytest.approx(b.crop_scores, abs=1e-5)


def test_a_file_without_a_graph_is_scored_by_torch(tmp_path):
    path = _without_graph(tmp_path)
    detector = load_detector(path)
    assert detector.graph is None and detector.runtimes == ("torch",)
    assert choose_runtime(detector, "auto", "cpu") == "torch"
    with Engine(detector, EngineOptions(device="cpu", tries=1)) as engine:
        assert engine.runtime == "torch"
        assert engine.check(image_bytes(noise_image(96, 96))).verdict.probability is not None
    with pytest.raises(DetectorFileError, match="export-graph"):
        choose_runtime(detector, "onnx", "cpu")


def test_export_graph_adds_one_to_an_older_file(tmp_path):
    path = _without_graph(tmp_path)
    before = load_detector(path).model.state_dict()
    result = CliRunner().invoke(cli, ["train", "export-graph", str(path), "--version", "0.0.2"])
    assert result.exit_code == 0, result.output
    assert "largest logit difference" in result.output
    detector = load_detector(path)
    assert detector.runtimes == ("openvino", "onnx", "torch")
    assert detector.card.version == "0.0.2" and detector.card.notes.startswith("0.0.2: 0.0.1 ")
    for key, tensor in detector.model.state_dict().items():
        assert (tensor == before[key]).all(), key  # the same weights


def test_auto_chooses_torch_for_what_only_torch_does(tiny_detector_path, monkeypatch):
    import ldmscan.networks as networks

    detector = load_detector(tiny_detector_path)
    monkeypatch.setattr(networks, "openvino_installed", lambda: False)
    assert choose_runtime(detector, "auto", "cpu") == "onnx"
    monkeypatch.setattr(networks, "openvino_installed", lambda: True)
    assert choose_runtime(detector, "auto", "cpu") == "openvino"  # float32: the same scores
    assert choose_runtime(detector, "auto", "cpu", compile_model=True) == "torch"
    assert choose_runtime(detector, "auto", "cpu", half=True) == "torch"
    assert choose_runtime(detector, "auto", "cuda") == "torch"
    monkeypatch.setattr(networks, "cuda_gpu_visible", lambda: True)
    assert choose_runtime(detector, "auto", "auto") == "torch"
    with pytest.raises(LdmscanError, match="CPU only"):
        choose_runtime(detector, "onnx", "auto")
    with pytest.raises(LdmscanError, match="unknown runtime"):
        choose_runtime(detector, "tensorrt", "cpu")


def test_cuda_visibility_follows_cuda_visible_devices(monkeypatch):
    import ldmscan.networks as networks

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert networks.cuda_gpu_visible() is False
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert networks.cuda_gpu_visible() is False


def test_a_graph_that_disagrees_with_its_weights_is_refused(tmp_path, monkeypatch):
    # an export that computes something else (here: another card's normalisation) must never
    # reach the file
    import ldmscan.graph as graph_mod

    real_export = graph_mod.export_graph

    def wrong_normalisation(model, card: DetectorCard):
        return real_export(model, tiny_card(mean=(0.1, 0.2, 0.3), std=(0.2, 0.2, 0.2)))

    monkeypatch.setattr(graph_mod, "export_graph", wrong_normalisation)
    card = tiny_card()
    path = tmp_path / "bad.safetensors"
    with pytest.raises(DetectorFileError, match="file not written"):
        save_detector(build_model(card), card, path, half=False)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_a_cpu_scan_of_one_file_never_imports_torch_or_timm(tmp_path, tiny_detector_path):
    (tmp_path / "one.png").write_bytes(image_bytes(noise_image(128, 128)))
    code = (
        "import sys\n"
        "from ldmscan.cli import main\n"
        f"sys.argv = ['ldmscan', 'scan', {str(tmp_path / 'one.png')!r}, '--json', "
        f"'--detector', {str(tiny_detector_path)!r}, '--db', "
        f"{'sqlite:///' + str(tmp_path / 'f.db')!r}, '--device', 'cpu']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)\n"
        "print('HEAVY', ','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "HEAVY ", done.stdout
    verdict = json.loads(lines[0])
    assert verdict["score"] is not None and verdict["error"] is None


def test_openvino_runs_the_same_graph(tiny_detector_path, tmp_path):
    pytest.importorskip("openvino")
    from ldmscan.networks import OpenVinoNetwork

    detector = load_detector(tiny_detector_path)
    torch_net = TorchNetwork(detector, "cpu", half=False)
    crops = np.random.default_rng(2).integers(0, 256, (3, 64, 48, 3), dtype=np.uint8)
    # float32, compiled once into the cache and then loaded from it: the same outputs
    for _ in range(2):
        exact = OpenVinoNetwork(
            detector.graph, detector.weights(), precision="f32", cache_dir=tmp_path / "ov"
        )
        np.testing.assert_allclose(exact(crops), torch_net(crops), atol=1e-4)
    assert any((tmp_path / "ov").iterdir())  # the compiled network was kept
    options = EngineOptions(device="cpu", tries=3, runtime="openvino")
    with Engine(detector, options) as engine:
        assert engine.runtime == "openvino" and engine.max_batch == 8
        np.testing.assert_allclose(engine.logits(crops), torch_net(crops)[:, 0], atol=1e-4)
    # bfloat16 (where the CPU has it) stays near
    options = EngineOptions(device="cpu", tries=3, runtime="openvino-bf16")
    with Engine(detector, options) as engine:
        assert engine.runtime == "openvino-bf16"
        near = engine.logits(crops)
    np.testing.assert_allclose(near, torch_net(crops)[:, 0], atol=0.5)


def test_an_unwritable_openvino_cache_only_costs_time(tiny_detector_path, tmp_path):
    pytest.importorskip("openvino")
    from ldmscan.networks import OpenVinoNetwork

    (tmp_path / "file").write_text("")  # a cache folder that cannot be made
    detector = load_detector(tiny_detector_path)
    network = OpenVinoNetwork(
        detector.graph, detector.weights(), cache_dir=tmp_path / "file" / "openvino"
    )
    assert network(np.zeros((1, 32, 32, 3), np.uint8)).shape[0] == 1


def test_the_openvino_cache_follows_ldmscan_cache(monkeypatch, tmp_path):
    from ldmscan.networks import openvino_cache_dir

    monkeypatch.setenv("LDMSCAN_CACHE", str(tmp_path))
    assert openvino_cache_dir() == tmp_path / "openvino"
    monkeypatch.setenv("LDMSCAN_CACHE", "")
    assert openvino_cache_dir() is None


def test_the_cli_offers_every_runtime():
    from ldmscan.cli.options import CLI_RUNTIMES
    from ldmscan.networks import RUNTIMES

    assert CLI_RUNTIMES == RUNTIMES
