"""The training commands on tiny data through the real code paths: real TAESD weights, a tiny
randomly initialised AutoencoderKL saved to disk, a few optimiser steps of a tiny timm model."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmscan import crops, imaging
from ldmscan.cli import cli
from ldmscan.detector import load_detector, read_card

from conftest import MODELS_DIR, image_bytes, make_tiny_detector, noise_image

needs_weights = pytest.mark.skipif(
    not (MODELS_DIR / "taesd_encoder.safetensors").is_file(),
    reason="shared/models is not beside the checkout",
)


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for i, (w, h) in enumerate([(96, 80), (130, 100), (64, 64), (72, 120)]):
        target = folder / ("nested" if i % 2 else "") / f"p{i}.jpg"
        target.write_bytes(image_bytes(noise_image(w, h, i), "JPEG", quality=92))
    (folder / "broken.jpg").write_bytes(b"")
    return folder


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@needs_weights
@pytest.mark.parametrize("name", ["taesd", "taesdxl", "taesd3", "taef1", "taef2"])
def test_taesd_family_reconstructs_close_to_the_photo(name):
    import torch

    from ldmscan.training.autoencoders import load_autoencoder
    from ldmscan.training.reconstruct import roundtrip_image

    pixels = noise_image(64, 48, 1)
    pixels = np.asarray(
        __import__("PIL.Image", fromlist=["Image"])
        .fromarray(pixels)
        .filter(__import__("PIL.ImageFilter", fromlist=["x"]).GaussianBlur(2))
    )
    auto = load_autoencoder(name, MODELS_DIR)
    rec = roundtrip_image(auto, pixels)
    assert rec.shape == pixels.shape and rec.dtype == np.uint8
    mse = ((rec.astype(float) - pixels) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 22, "real pretrained weights reconstruct well"
    assert not np.array_equal(rec, pixels)
    del torch


@needs_weights
def test_tiles_blend_without_seams():
    from PIL import Image, ImageFilter

    from ldmscan.training.autoencoders import load_autoencoder
    from ldmscan.training.reconstruct import TilePlan, roundtrip_image

    pixels = np.asarray(
        Image.fromarray(noise_image(200, 136, 2)).filter(ImageFilter.GaussianBlur(2))
    )
    auto = load_autoencoder("taesd", MODELS_DIR)
    whole = roundtrip_image(auto, pixels).astype(float)
    tiled = roundtrip_image(auto, pixels, TilePlan(tile=96, overlap=32)).astype(float)
    assert tiled.shape == whole.shape
    # tiles see less context, so they differ a little, but nowhere by a seam-sized jump
    assert np.abs(tiled - whole).mean() < 6
    column_jumps = np.abs(np.diff(tiled, axis=1)).mean(axis=(0, 2))
    assert column_jumps.max() < 4 * np.median(column_jumps) + 10


@needs_weights
def test_reconstruct_command_is_resumable(photos, tmp_path):
    out = tmp_path / "recon"
    first = invoke(
        "train",
        "reconstruct",
        "--autoencoder",
        "taesd",
        "--autoencoder",
        "taef2",
        "--src",
        photos,
        "--out",
        out,
        "--weights-dir",
        MODELS_DIR,
        "--per-image",
        "1",
    )
    assert "4 reconstructions" in first.output and "1 sources skipped" in first.output
    rows = []
    for manifest in sorted(out.glob("*/manifest.tsv")):
        with manifest.open() as fh:
            rows.extend(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == 4 and {r["autoencoder"] for r in rows} == {"taesd", "taef2"}
    for row in rows:
        rec = imaging.decode((out / row["autoencoder"] / row["output"]).read_bytes())
        src = imaging.decode((photos / row["source"]).read_bytes())
        assert rec.format == "PNG" and rec.pixels.shape == src.pixels.shape
        assert row["source_sha256"] == src.sha256
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    invoke(
        "train",
        "reconstruct",
        "--autoencoder",
        "taesd",
        "--autoencoder",
        "taef2",
        "--src",
        photos,
        "--out",
        out,
        "--weights-dir",
        MODELS_DIR,
        "--per-image",
        "1",
    )
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == mtimes  # nothing redone
    assert sum(1 for m in out.glob("*/manifest.tsv") for _ in m.open()) == 4 + 2


def test_kl_autoencoder_from_a_local_folder(photos, tmp_path):
    from diffusers import AutoencoderKL

    vae_dir = tmp_path / "tiny-vae"
    AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
    ).save_pretrained(vae_dir)
    out = tmp_path / "recon"
    invoke(
        "train",
        "reconstruct",
        "--autoencoder",
        f"kl:{vae_dir}",
        "--src",
        photos,
        "--out",
        out,
        "--window",
        "64",
    )
    (folder,) = out.iterdir()
    assert folder.name == "kl_tiny-vae"
    rows = list(csv.DictReader((folder / "manifest.tsv").open(), delimiter="\t"))
    assert len(rows) == 4 and all(int(r["width"]) <= 64 for r in rows)


def test_missing_hub_model_fails_clearly(monkeypatch, photos, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "reconstruct",
            "--autoencoder",
            "hf:nobody/no-such-vae",
            "--src",
            str(photos),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2 and "cannot load AutoencoderKL" in result.output


@needs_weights
def test_fit_calibrate_eval_end_to_end(photos, tmp_path):
    recon = tmp_path / "recon"
    invoke(
        "train",
        "reconstruct",
        "--autoencoder",
        "taesd",
        "--src",
        photos,
        "--out",
        recon,
        "--weights-dir",
        MODELS_DIR,
    )
    detector = tmp_path / "det.safetensors"
    invoke(
        "train",
        "fit",
        "--real",
        photos,
        "--reconstructions",
        recon,
        "--out",
        detector,
        "--architecture",
        "test_efficientnet",
        "--init",
        "random",
        "--crop-size",
        "48",
        "--score-crop-size",
        "64",
        "--steps",
        "3",
        "--batch-pairs",
        "2",
        "--workers",
        "0",
        "--warmup-steps",
        "1",
        "--holdout",
        "0.3",
        "--tries",
        "2",
        "--placement",
        "grid",
        "--smooth-pick",
        "3",
        "--no-calibrate",
    )
    card = read_card(detector)
    assert card.architecture == "test_efficientnet" and card.crop_size == 64
    assert card.placement == "grid" and card.recipe["augment"]["smooth_pick"] == 3
    assert card.recipe["steps"] == 3 and card.recipe["autoencoders"] == ["taesd"]
    assert card.thresholds == {}
    assert (tmp_path / "det.work" / "fit-config.json").is_file()
    assert (tmp_path / "det.work" / "checkpoint.pt").is_file()

    invoke(
        "train", "calibrate", "--detector", detector, "--real", photos, "--placement", "smoothest"
    )
    card = read_card(detector)
    assert card.placement == "smoothest"  # thresholds were set for the new placement
    assert set(card.thresholds) == {"1", "2"}
    assert card.calibration["real_images"]["1"] == 4
    assert 0 <= card.thresholds["1"]["0.01"] <= 1

    generated = tmp_path / "generated"
    generated.mkdir()
    for i in range(3):
        (generated / f"g{i}.png").write_bytes(image_bytes(noise_image(90, 90, 20 + i)))
    report_dir = tmp_path / "eval"
    invoke(
        "train",
        "eval",
        "--detector",
        detector,
        "--real",
        photos,
        "--generated",
        generated,
        "--out",
        report_dir,
        "--tries",
        "1",
        "--record-as",
        "dev",
    )
    report = json.loads((report_dir / "eval.json").read_text())
    original = report["modes"]["1_tries"]["original"]
    assert 0 <= original["auc"] <= 1 and original["n_real"] == 4 and original["n_generated"] == 3
    assert set(report["modes"]["1_tries"]) >= {
        "jpeg50",
        "rescale0.5",
        "png_only",
        "reencoded_jpeg90",
    }
    assert (report_dir / "roc_hist.png").stat().st_size > 1000
    recorded = read_card(detector).metrics["dev"]
    assert recorded["modes"]["1_tries"]["original"]["auc"] == round(original["auc"], 4)
    assert read_card(detector).thresholds  # rewriting the card kept the calibration

    invoke(
        "train",
        "fit",
        "--real",
        photos,
        "--reconstructions",
        recon,
        "--out",
        detector,
        "--architecture",
        "test_efficientnet",
        "--init",
        "random",
        "--crop-size",
        "48",
        "--steps",
        "4",
        "--batch-pairs",
        "2",
        "--workers",
        "0",
        "--holdout",
        "0.3",
        "--resume",
        "--no-calibrate",
    )
    assert read_card(detector).metrics["fit"]["train_seconds"] >= 0


def test_threshold_at_keeps_the_false_positive_rate():
    from ldmscan.training.calibrate import threshold_at

    scores = list(np.linspace(0, 1, 1000))
    t = threshold_at(scores, 0.01)
    assert sum(s >= t for s in scores) <= 10
    assert sum(s >= t for s in scores) >= 9
    assert threshold_at([0.2, 0.4], 0.001) > 0.4  # fewer images than 1/fpr: above the max


def test_lite0_imagenet_weights_map_onto_timm():
    import timm
    import torch

    from ldmscan.training.backbones import lite0_package_file, lukemelas_to_timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = lukemelas_to_timm(torch.load(lite0_package_file(), map_location="cpu"))
    model.load_state_dict(state, strict=True)


def test_calibrate_an_uncalibrated_tiny_detector(tmp_path, photos):
    path = make_tiny_detector(tmp_path / "u.safetensors", thresholds={})
    invoke(
        "train",
        "calibrate",
        "--detector",
        path,
        "--real",
        photos,
        "--tries",
        "1",
        "--fpr",
        "0.05",
        "--fpr",
        "0.5",
    )
    assert set(load_detector(path).card.thresholds["1"]) == {"0.05", "0.5"}


def test_warm_start_from_a_detector_file_keeps_its_head(tmp_path):
    import torch

    from ldmscan.detector import build_model
    from ldmscan.training.backbones import load_initial_weights

    path = make_tiny_detector(tmp_path / "start.safetensors", seed=5)
    trained = load_detector(path).model
    fresh = build_model(load_detector(path).card)
    assert "start.safetensors" in load_initial_weights(fresh, str(path))
    for key, tensor in trained.state_dict().items():
        assert torch.equal(tensor, fresh.state_dict()[key]), key


def test_smooth_pick_trains_on_the_smoothest_of_several_boxes():
    from ldmscan.training.pairs import Augment, augment_pair

    real = noise_image(256, 256, 1)
    speckle = np.random.default_rng(2).normal(0, 3, (128, 128, 3))  # smooth, but not flat
    real[:128, :128] = np.clip(120 + speckle, 0, 255).astype(np.uint8)
    fake = real.copy()

    def mean_energy(aug: Augment) -> float:
        picked = [augment_pair(real, fake, aug, 64, np.random.default_rng(i)) for i in range(20)]
        assert all(np.array_equal(r, f) for r, f in picked)  # one box for both members
        return float(np.mean([crops.texture_energy(r) for r, _ in picked]))

    uniform = Augment.none()
    smooth = Augment(flip=0.0, jpeg=0.0, rescale=0.0, blur=0.0, smooth_pick=8)
    assert mean_energy(smooth) < 0.5 * mean_energy(uniform)
