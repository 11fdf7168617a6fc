import json

import pytest
import torch
from safetensors.torch import save_file

from ldmscan.detector import (
    CARD_KEY,
    DetectorCard,
    build_model,
    load_detector,
    read_card,
    save_detector,
)
from ldmscan.errors import DetectorFileError

from conftest import make_tiny_detector, tiny_card


def test_roundtrip_keeps_card_and_weights(tmp_path):
    path = make_tiny_detector(tmp_path / "d.safetensors")
    detector = load_detector(path)
    assert detector.card == tiny_card()
    assert detector.ref.name == "tiny-test" and len(detector.sha256) == 64
    torch.manual_seed(0)  # make_tiny_detector's seed: the same random weights again
    original = build_model(tiny_card())
    for key, tensor in original.state_dict().items():
        assert torch.equal(tensor, detector.model.state_dict()[key]), key


def test_half_precision_file_loads_into_float_model(tmp_path):
    card = tiny_card()
    path = tmp_path / "half.safetensors"
    save_detector(build_model(card), card, path, half=True)
    detector = load_detector(path)
    assert next(detector.model.parameters()).dtype == torch.float32


def test_missing_file(tmp_path):
    with pytest.raises(DetectorFileError, match="not found"):
        load_detector(tmp_path / "nope.safetensors")


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(DetectorFileError, match="without an ldmscan card"):
        load_detector(path)


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"junk" * 100)
    with pytest.raises(DetectorFileError, match="not a safetensors file"):
        load_detector(path)


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    card = tiny_card(architecture="test_resnet")
    path = tmp_path / "mismatch.safetensors"
    model = build_model(tiny_card())  # efficientnet weights, resnet card
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(path),
        metadata={CARD_KEY: card.to_json()},
    )
    with pytest.raises(DetectorFileError, match="do not fit"):
        load_detector(path)


def test_newer_format_is_refused(tmp_path):
    data = json.loads(tiny_card().to_json())
    data["format_version"] = 99
    with pytest.raises(DetectorFileError, match="newer"):
        DetectorCard.from_json(json.dumps(data))


def test_card_without_required_fields(tmp_path):
    with pytest.raises(DetectorFileError, match="lacks"):
        DetectorCard.from_json(json.dumps({"format": "ldmscan-detector", "name": "x"}))


def test_unknown_architecture(tmp_path):
    with pytest.raises(DetectorFileError, match="timm cannot build"):
        build_model(tiny_card(architecture="no_such_net_123"))


def test_thresholds_by_fpr_and_tries():
    card = tiny_card()
    assert card.thresholds_for(1).generated == 0.9
    assert card.thresholds_for(1).uncertain == 0.7
    assert card.thresholds_for(3, 0.005, 0.05).generated == 0.75
    assert card.thresholds_for(8).generated == 0.85  # nearest calibrated tries
    with pytest.raises(DetectorFileError, match=r"no threshold at FPR 0\.2"):
        card.thresholds_for(1, 0.2)


def test_stem_stride_is_applied_and_recorded(tmp_path):
    path = make_tiny_detector(tmp_path / "s1.safetensors", stem_stride=1)
    detector = load_detector(path)
    assert detector.model.conv_stem.stride == (1, 1)
    assert read_card(path).stem_stride == 1


def test_placement_is_part_of_the_card(tmp_path):
    path = make_tiny_detector(tmp_path / "smooth.safetensors", placement="smoothest")
    assert load_detector(path).card.placement == "smoothest"
    assert tiny_card().placement == "grid"  # cards written before placement existed
    with pytest.raises(DetectorFileError, match="unknown placement"):
        tiny_card(placement="random").validate()
