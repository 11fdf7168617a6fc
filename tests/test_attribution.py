"""Latent-space attribution: the head in the detector file, the engine's guess, where the guess
is stored and shown, and `ldmscan train attribution` on tiny real data."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmscan.attribution import Attribution, attribute, class_probabilities
from ldmscan.cli import cli
from ldmscan.detector import DetectorCard, load_detector, read_card
from ldmscan.engine import Engine, EngineOptions
from ldmscan.errors import DetectorFileError
from ldmscan.graph import verification_batch
from ldmscan.networks import OnnxNetwork, TorchNetwork
from ldmscan.reports import report_rows, summarise
from ldmscan.storage import Location, Store
from ldmscan.training.attribution import AttributedImage

from conftest import (
    ATTRIBUTION_CLASSES,
    MODELS_DIR,
    image_bytes,
    make_tiny_detector,
    noise_image,
    tiny_card,
)

WEIGHTS = MODELS_DIR


def test_guess_is_the_softmax_of_crop_averaged_logits():
    rows = [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # mean logits 1, 0, 0
    shares = class_probabilities(rows, ["a", "b", "c"])
    expected = np.exp([1.0, 0.0, 0.0]) / np.exp([1.0, 0.0, 0.0]).sum()
    assert list(shares.values()) == pytest.approx(expected, abs=1e-6)
    guess = attribute(rows, ["a", "b", "c"], 0.4, pixels_say_real=False)
    assert (
        guess is not None
        and guess.guess == "a"
        and guess.probability == pytest.approx(0.576, abs=1e-3)
    )
    assert Attribution.from_dict(json.loads(json.dumps(guess.to_dict()))) == guess


def test_no_guess_for_real_pixels_or_below_the_confidence():
    rows = [[3.0, 0.0]]
    assert attribute(rows, ["a", "b"], 0.5, pixels_say_real=True) is None
    assert attribute(rows, ["a", "b"], 0.99, pixels_say_real=False) is None
    assert attribute(rows, ["a", "b"], 0.9, pixels_say_real=False) is not None


@pytest.mark.parametrize(
    "attribution",
    [
        {"classes": ["sdxl"], "confidence": 0.5},
        {"classes": ["sdxl", "sdxl"], "confidence": 0.5},
        {"classes": ["sdxl", "flux1"], "confidence": 1.5},
        {"classes": "sdxl,flux1"},
    ],
)
def test_card_refuses_malformed_attribution(attribution):
    card = tiny_card(attribution=attribution)
    with pytest.raises(DetectorFileError, match="attribution"):
        DetectorCard.from_json(card.to_json())


def test_head_travels_in_the_file_and_both_runtimes_agree(attributing_detector_path):
    detector = load_detector(attributing_detector_path)
    assert detector.card.attribution_classes == tuple(ATTRIBUTION_CLASSES)
    crops = verification_batch(detector.card.crop_size)
    onnx_out = OnnxNetwork(detector.graph, detector.weights())(crops)
    torch_out = TorchNetwork(detector, "cpu", half=False)(crops)
    assert onnx_out.shape == torch_out.shape == (len(crops), 1 + len(ATTRIBUTION_CLASSES))
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-3)


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_verdicts_carry_the_guess_only_when_flagged(tmp_path, runtime):
    from conftest import make_attributing_detector

    data = image_bytes(noise_image(160, 128, 3))
    flagging = make_attributing_detector(tmp_path / "flag.safetensors", detection_bias=8.0)
    passing = make_attributing_detector(tmp_path / "pass.safetensors", detection_bias=-8.0)
    with Engine(load_detector(flagging), EngineOptions(runtime=runtime)) as engine:
        verdict = engine.check(data).verdict
    assert verdict.label.value == "generated"
    assert verdict.attribution is not None
    assert verdict.attribution.guess in ATTRIBUTION_CLASSES
    assert sum(verdict.attribution.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert verdict.to_dict()["attribution"]["name"]
    with Engine(load_detector(passing), EngineOptions(runtime=runtime)) as engine:
        assert engine.check(data).verdict.attribution is None  # pixels say real


def test_a_detector_without_a_head_still_scores(tiny_detector_path):
    with Engine(load_detector(tiny_detector_path)) as engine:
        verdict = engine.check(image_bytes(noise_image(128, 128, 1))).verdict
    assert verdict.attribution is None and verdict.to_dict()["attribution"] is None


def test_guess_is_stored_reported_and_shown(tmp_path, db_url, attributing_detector_path):
    detector = load_detector(attributing_detector_path)
    paths = []
    for index in range(3):
        path = tmp_path / f"img{index}.png"
        path.write_bytes(image_bytes(noise_image(128, 128, 40 + index)))
        paths.append(path)
    with Engine(detector) as engine:
        results = [engine.check_path(p) for p in paths]
    with Store(db_url) as store:
        detector_id = store.detector_id(detector)
        store.save(
            [(r, Location(str(p))) for r, p in zip(results, paths, strict=True)], detector_id
        )
        rows = report_rows(store)
        stored = store.stored_verdicts([r.verdict.sha256 for r in results], detector_id)
    guesses = {r.verdict.sha256: r.verdict.attribution for r in results}
    assert all(guesses.values())
    for row in rows:
        assert row["latent_space"] == guesses[row["sha256"]].guess
        assert row["latent_space_probability"] == pytest.approx(guesses[row["sha256"]].probability)
    for sha, found in stored.items():
        assert found.attribution == guesses[sha].to_dict()
    summary = summarise(rows)
    assert sum(summary["by_latent_space"].values()) == 3
    runner = CliRunner()
    sha = results[0].verdict.sha256
    shown = runner.invoke(cli, ["show", sha, "--db", db_url])
    assert shown.exit_code == 0, shown.output
    assert guesses[sha].name in shown.output and "latent space" in shown.output
    page = tmp_path / "report.html"
    made = runner.invoke(cli, ["report", "--db", db_url, "--format", "html", "-o", str(page)])
    assert made.exit_code == 0, made.output
    html = page.read_text()
    assert "Flagged by latent space" in html and guesses[sha].name in html


def test_scan_json_carries_the_guess(tmp_path, attributing_detector_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(image_bytes(noise_image(128, 128, 9)))
    db = f"sqlite:///{tmp_path / 'scan.db'}"
    args = ["scan", str(folder), "--db", db, "--detector", str(attributing_detector_path), "--json"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    (line,) = [json.loads(x) for x in first.output.splitlines() if x.startswith("{")]
    assert line["attribution"]["guess"] in ATTRIBUTION_CLASSES
    again = CliRunner().invoke(cli, args)  # skipped as known: the stored guess is shown
    (known,) = [json.loads(x) for x in again.output.splitlines() if x.startswith("{")]
    assert known["skipped"] and known["attribution"] == line["attribution"]


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _photos(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        # smooth, photo-like content: a gradient plus mild noise
        ramp = np.linspace(0, 200, 192)[None, :, None] + rng.normal(0, 6, (160, 192, 3))
        pixels = np.clip(ramp + index * 5, 0, 255).astype(np.uint8)
        (folder / f"p{index}.png").write_bytes(image_bytes(pixels))
    return folder


@pytest.mark.skipif(
    not (WEIGHTS / "taesd_encoder.safetensors").is_file(), reason="no TAESD weights"
)
def test_train_attribution_end_to_end(tmp_path):
    """Reconstructions through two real TAESD stand-ins and a harvest-style manifest train a
    head; the written detector keeps the detection output, and the card records the rest."""
    runner = CliRunner()
    photos = _photos(tmp_path / "photos", 4, 0)
    recon = tmp_path / "recon"
    made = runner.invoke(
        cli,
        [
            "train", "reconstruct", "--autoencoder", "taesd", "--autoencoder", "taesdxl",
            "--src", str(photos), "--out", str(recon), "--weights-dir", str(WEIGHTS),
            "--device", "cpu",
        ],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    # a harvest manifest: two "repositories" of SD3- and FLUX.1-labelled files
    harvest = tmp_path / "harvest"
    rows = []
    for index, (space, source) in enumerate(
        [("sd3", "o/a"), ("sd3", "o/b"), ("flux1", "o/a"), ("flux1", "o/b"), ("other-ldm", "o/c")]
    ):
        name = f"{space}/g{index}.png"
        (harvest / space).mkdir(parents=True, exist_ok=True)
        shutil.copy(photos / f"p{index % 4}.png", harvest / name)
        rows.append({"file": name, "latent_space": space, "source": source, "flags": ""})
    manifest = _write_manifest(harvest / "MANIFEST.tsv", rows)
    base = make_tiny_detector(tmp_path / "base.safetensors")
    reals = _photos(tmp_path / "reals", 6, 1)
    out = tmp_path / "attributing.safetensors"
    report = tmp_path / "attribution.json"
    trained = runner.invoke(
        cli,
        [
            "train", "attribution", "--detector", str(base), "--harvest-manifest", str(manifest),
            "--reconstructions", str(recon), "--calibrate-real", str(reals),
            "--out", str(out), "--version", "0.0.2", "--report", str(report),
            "--features-cache", str(tmp_path / "features.npz"),
        ],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "leave-one-source-out over 2 sources" in trained.output
    card = read_card(out)
    assert card.version == "0.0.2" and card.thresholds == read_card(base).thresholds
    assert card.attribution_classes == tuple(ATTRIBUTION_CLASSES)
    assert 0.0 < card.attribution["confidence"] <= 1.0
    examples = card.attribution["recipe"]["examples"]
    assert examples["reconstruction"] == {"sd1-2": 4, "sdxl": 4}
    assert examples["harvest"] == {"flux1": 2, "sd3": 2}  # other-ldm has no class
    full = json.loads(report.read_text())
    assert full["leave_one_source_out"]["n"] == 4
    assert full["confidence"]["calibrated_on"] == 6
    # the detection output is the old one; the head is new
    old, new = load_detector(base), load_detector(out)
    crops = verification_batch(old.card.crop_size)
    before = TorchNetwork(old, "cpu", half=False)(crops)
    after = OnnxNetwork(new.graph, new.weights())(crops)
    assert after.shape == (len(crops), 6)
    np.testing.assert_allclose(after[:, 0], before[:, 0], atol=1e-3)
    shown = runner.invoke(cli, ["detector", str(out)])
    assert "latent-space attribution: SD 1.x / 2.x, SDXL" in shown.output
    assert "leave-one-source-out (harvested, 2 sources)" in shown.output
    again = runner.invoke(
        cli,
        ["train", "attribution", "--detector", str(out), "--reconstructions", str(recon),
         "--calibrate-real", str(reals), "--out", str(tmp_path / "x.safetensors"),
         "--version", "0.0.3"],
    )  # fmt: skip
    assert again.exit_code != 0 and "already has an attribution head" in again.output


def test_eval_prints_the_confusion_matrix(tmp_path, attributing_detector_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    real = _photos(tmp_path / "real", 3, 2)
    rows = []
    for index, generator in enumerate(["SDXL 1.0", "FLUX.1 [dev]", "Kandinsky 3.0"]):
        (gen / f"g{index}.png").write_bytes(image_bytes(noise_image(128, 128, 70 + index)))
        rows.append({"file": f"generated/g{index}.png", "generator": generator, "flags": ""})
    manifest = _write_manifest(tmp_path / "MANIFEST.tsv", rows)
    detector = tmp_path / "d.safetensors"
    shutil.copy(attributing_detector_path, detector)
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli,
        [
            "train", "eval", "--detector", str(detector), "--real", str(real),
            "--generated", str(gen), "--manifest", str(manifest), "--variant", "original",
            "--tries", "1", "--out", str(out), "--record-as", "dev",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())["attribution"]
    entry = report["modes"]["1_tries"]["original"]
    assert entry["all"]["n"] == 2  # Kandinsky has no class
    assert report["unmapped_generators"] == ["Kandinsky 3.0"]
    assert entry["flagged"]["n"] == 2 and entry["real_flagged"] == 3  # this detector flags all
    assert "latent space, flagged, 1_tries, original" in result.output
    recorded = read_card(detector).attribution["metrics"]["dev"]["1_tries"]["original"]
    assert recorded["flagged"]["n"] == 2


def test_latent_space_of_dev_generator_names():
    from ldmscan.training.attribution import latent_space_of

    assert latent_space_of("SDXL-family (Fooocus style preview)") == "sdxl"
    assert latent_space_of("Kolors + IP-Adapter") == "sdxl"
    assert latent_space_of("Chroma (FLUX.1-schnell derivative)") == "flux1"
    assert latent_space_of("Stable Diffusion 3.5 Large") == "sd3"
    assert latent_space_of("SD 2.0-base (Apple Core ML port)") == "sd1-2"
    assert latent_space_of("Kandinsky 3.1") is None
    assert dataclasses.is_dataclass(Attribution)


def test_feature_cache_is_reused_only_for_the_same_request(tmp_path):
    from ldmscan.training.attribution import FeatureTable, load_table, save_table

    images = [
        AttributedImage(tmp_path / f"{n}.png", space, "o/a", "harvest")
        for n, space in enumerate(["sd3", "flux1"])
    ]
    table = FeatureTable([images[0], images[0], images[1]], ["original", "jpeg90", "original"],
                         np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4))  # fmt: skip
    cache = tmp_path / "cache.npz"
    save_table(cache, table, images, "sha", (90,))
    again = load_table(cache, images, "sha", (90,))
    assert again is not None and again.images == table.images
    np.testing.assert_array_equal(again.features, table.features)
    assert load_table(cache, images, "other detector", (90,)) is None
    assert load_table(cache, images, "sha", (80,)) is None
    assert load_table(cache, images[:1], "sha", (90,)) is None
