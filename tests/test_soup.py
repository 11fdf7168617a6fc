"""`ldmscan train soup`: the weight average of detectors, on tiny real detector files."""

from pathlib import Path

import torch
from click.testing import CliRunner

from ldmscan.cli import cli
from ldmscan.detector import load_detector
from ldmscan.heads import HEAD_NAME

from conftest import make_attributing_detector, make_tiny_detector


def soup(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["train", "soup", *map(str, args)])
    return result.exit_code, result.output


def test_the_soup_is_the_mean_of_the_weights_and_starts_uncalibrated(tmp_path: Path):
    a = make_tiny_detector(tmp_path / "a.safetensors", seed=1)
    b = make_tiny_detector(tmp_path / "b.safetensors", seed=2)
    code, output = soup(a, b, "--out", tmp_path / "s.safetensors")
    assert code == 0, output
    made = load_detector(tmp_path / "s.safetensors")
    wa, wb = load_detector(a).model.state_dict(), load_detector(b).model.state_dict()
    for key, tensor in made.model.state_dict().items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, (wa[key] + wb[key]) / 2, msg=key)
    assert not torch.equal(wa["conv_stem.weight"], wb["conv_stem.weight"])
    assert made.card.thresholds == {} and made.card.metrics == {}
    assert [i["sha256"] for i in made.card.recipe["soup_of"]] == [
        load_detector(a).sha256,
        load_detector(b).sha256,
    ]


def test_an_attribution_head_stays_out_of_the_soup_whichever_file_comes_first(tmp_path: Path):
    headed = make_attributing_detector(tmp_path / "h.safetensors", seed=3)
    plain = make_tiny_detector(tmp_path / "p.safetensors", seed=4)
    for order in ((headed, plain), (plain, headed)):
        code, output = soup(*order, "--out", tmp_path / "s.safetensors")
        assert code == 0, output
        made = load_detector(tmp_path / "s.safetensors")
        assert made.card.attribution == {}
        assert not hasattr(made.model, HEAD_NAME)
        assert made.model(torch.zeros(1, 3, 64, 64)).shape == (1, 1)


def test_different_networks_cannot_be_averaged(tmp_path: Path):
    a = make_tiny_detector(tmp_path / "a.safetensors")
    b = make_tiny_detector(tmp_path / "b.safetensors", stem_stride=1)
    code, output = soup(a, b, "--out", tmp_path / "s.safetensors")
    assert code == 2 and "only one network's weights can be averaged" in output
    assert not (tmp_path / "s.safetensors").exists()
    code, output = soup(a, "--out", tmp_path / "s.safetensors")
    assert code == 2 and "two detectors or more" in output
