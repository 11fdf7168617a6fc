"""The labelled-image path of training: the source split and its audit file, labelled fitting
(and the content-only baseline), sharpened surrogate decoders, and the detector's counts."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmscan.cli import cli
from ldmscan.detector import read_card

from conftest import MODELS_DIR, image_bytes, noise_image

needs_weights = pytest.mark.skipif(
    not (MODELS_DIR / "taesdxl_encoder.safetensors").is_file(),
    reason="shared/models is not beside the checkout",
)


def invoke(*args, expect: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


def write_pool(folder: Path, rows: list[tuple[str, str, str]], size=(96, 96)) -> Path:
    """rows: (file, source, group); writes images and a MANIFEST.tsv naming their sources."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "MANIFEST.tsv").open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "source", "latent_space", "flags"])
        for i, (name, source, group) in enumerate(rows):
            seed = abs(hash((folder.name, name))) % 1000 + i
            (folder / name).write_bytes(image_bytes(noise_image(*size, seed)))
            flags = "upscaled" if name.startswith("up") else ""
            writer.writerow([name, source, group, flags])
    return folder


@pytest.fixture
def pools(tmp_path) -> dict[str, Path]:
    gen = write_pool(
        tmp_path / "gen",
        [(f"g{i}.png", f"gen/repo{i % 4}", "sdxl" if i % 2 else "sd1") for i in range(8)]
        + [("up0.png", "gen/repo0", "sdxl"), ("px.png", "gen/repo1", "pixel")],
    )
    photo = write_pool(
        tmp_path / "photo", [(f"p{i}.png", f"photo/src{i % 5}", "") for i in range(10)]
    )
    art = write_pool(
        tmp_path / "art", [(f"a{i}.png", f"art/src{i % 4}", "render") for i in range(8)]
    )
    pairs = write_pool(tmp_path / "pairs", [(f"r{i}.png", "photo/src0", "") for i in range(3)])
    dev = tmp_path / "dev.tsv"
    dev.write_text("file\tsource\nx.png\tdev/only\n")
    return {"gen": gen, "photo": photo, "art": art, "pairs": pairs, "dev": dev}


def split(pools, out, *extra):
    return invoke(
        "train",
        "split",
        "--fit-pool",
        f"photo:{pools['pairs']}",
        "--pool",
        f"generated:{pools['gen']}",
        "--pool",
        f"photo:{pools['photo']}",
        "--pool",
        f"art:{pools['art']}",
        "--forbid-manifest",
        pools["dev"],
        "--out",
        out,
        *extra,
    )


def test_split_assigns_whole_sources_to_one_role(pools, tmp_path):
    from ldmscan.training.trainset import read_tsv

    split(pools, tmp_path / "set")
    rows = read_tsv(tmp_path / "set" / "training-set.tsv")
    assert not any(r.group == "pixel" for r in rows), "a pixel-space control is not an LDM"
    roles_by_source: dict[str, set[str]] = {}
    for row in rows:
        roles_by_source.setdefault(row.source, set()).add(row.role)
    upscaled = [r for r in rows if r.file.endswith("up0.png")]
    repo0 = {r.role for r in rows if r.source == "gen/repo0" and r not in upscaled}
    # upscaled pixels are not decoder pixels: never fitted on; validated on only where their
    # repository is a validation one
    assert [r.role for r in upscaled] == ([] if repo0 == {"fit"} else ["validate"])
    # photo/src0 is behind the aligned pairs: fitted on, so never calibrated on
    assert roles_by_source["photo/src0"] == {"fit"}
    for source, roles in roles_by_source.items():
        assert len(roles) == 1, (source, roles)
    calibrate = {r.source for r in rows if r.role == "calibrate"}
    fit = {r.source for r in rows if r.role == "fit"}
    assert calibrate and not calibrate & fit
    assert len({r.sha256 for r in rows}) == len(rows)
    folders = {p.relative_to(tmp_path / "set").as_posix() for p in (tmp_path / "set").glob("*/*")}
    assert "fit/generated" in folders and "calibrate/photo" in folders
    linked = len(list((tmp_path / "set").glob("*/*/*")))
    assert linked == len(rows)


def test_split_refuses_a_source_the_evaluation_draws_on(pools, tmp_path):
    pools["dev"].write_text("file\tsource\nx.png\tart/src2\n")
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "split",
            "--pool",
            f"art:{pools['art']}",
            "--forbid-manifest",
            str(pools["dev"]),
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert result.exit_code != 0 and "art/src2" in result.output, result.output


def test_split_role_override(pools, tmp_path):
    from ldmscan.training.trainset import read_tsv

    split(pools, tmp_path / "set", "--role", "gen/repo1=validate", "--role", "gen/repo2=fit")
    rows = read_tsv(tmp_path / "set" / "training-set.tsv")
    assert {r.role for r in rows if r.source == "gen/repo1"} == {"validate"}
    assert {r.role for r in rows if r.source == "gen/repo2"} == {"fit"}
    invoke(
        "train",
        "split",
        "--pool",
        f"art:{pools['art']}",
        "--role",
        "nonsense",
        "--out",
        tmp_path / "x",
        expect=2,
    )


def test_labelled_fit_records_the_training_set_and_detector_prints_it(pools, tmp_path):
    out = tmp_path / "set"
    split(pools, out, "--role", "gen/repo0=fit", "--role", "gen/repo1=fit")
    detector = tmp_path / "det.safetensors"
    invoke(
        "train",
        "fit",
        "--positives",
        out / "fit" / "generated",
        "--negatives",
        out / "fit" / "photo",
        "--training-set",
        out / "training-set.tsv",
        "--calibrate-real",
        out / "calibrate",
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
        "--tries",
        "2",
        "--steps",
        "3",
        "--labelled-batch",
        "4",
        "--workers",
        "0",
        "--warmup-steps",
        "1",
    )
    card = read_card(detector)
    assert card.metrics["fit"]["labelled_images"]["generated"] > 0
    assert card.metrics["fit"]["train_pairs"] == 0
    counts = card.recipe["training_set_counts"]
    assert counts["fit"]["generated"] >= 1 and counts["calibrate"]["sources"] >= 1
    assert set(card.thresholds) == {"1", "2"}
    n_calibrate = len(list((out / "calibrate").glob("*/*")))
    assert card.calibration["real_images"]["1"] == n_calibrate

    shown = invoke("detector", detector).output
    assert "training set" in shown and "calibrate" in shown
    full = json.loads(invoke("detector", detector, "--json").output)
    assert full["recipe"]["training_set_counts"] == counts


def test_mixed_pairs_and_labelled_and_thumbnail_baseline(pools, tmp_path):
    """Pairs and labelled images in one step; the thumbnail baseline scores 64-px thumbnails."""
    from ldmscan.training.evaluate import degrade
    from ldmscan.training.labelled import LabelledDataset, LabelledImage
    from ldmscan.training.pairs import Augment

    items = [LabelledImage(p, 1) for p in sorted(pools["gen"].glob("g*.png"))]
    items += [LabelledImage(p, 0) for p in sorted(pools["photo"].glob("*.png"))]
    data = LabelledDataset(items, 48, Augment(), seed=1, samples_per_epoch=20)
    data.preload()
    labels = [float(data[i][1]) for i in range(20)]
    assert 0 < sum(labels) < 20, "both classes drawn"
    assert data[0][0].shape == (1, 3, 48, 48)
    thumbs = LabelledDataset(items, 48, Augment(), samples_per_epoch=4, thumbnail_side=32)
    assert thumbs[0][0].shape == (1, 3, 32, 32)

    from ldmscan import imaging

    small = imaging.decode(degrade((pools["gen"] / "g0.png").read_bytes(), "thumb64")).pixels
    assert small.shape == (64, 64, 3)

    detector = tmp_path / "thumb.safetensors"
    invoke(
        "train",
        "fit",
        "--positives",
        pools["gen"],
        "--negatives",
        pools["photo"],
        "--out",
        detector,
        "--architecture",
        "test_efficientnet",
        "--init",
        "random",
        "--thumbnail",
        "64",
        "--steps",
        "2",
        "--labelled-batch",
        "4",
        "--workers",
        "0",
        "--warmup-steps",
        "1",
        "--no-calibrate",
    )
    assert read_card(detector).crop_size == 64
    report_dir = tmp_path / "thumb-eval"
    invoke(
        "train",
        "eval",
        "--detector",
        detector,
        "--real",
        pools["photo"],
        "--generated",
        pools["gen"],
        "--variant",
        "thumb64",
        "--tries",
        "1",
        "--out",
        report_dir,
    )
    report = json.loads((report_dir / "eval.json").read_text())
    thumb = report["modes"]["1_tries"]["thumb64"]
    assert thumb["n_real"] == 10 and "per_family" in thumb
    assert (report_dir / "roc_hist.png").is_file()
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "fit",
            "--out",
            str(tmp_path / "none.safetensors"),
            "--architecture",
            "test_efficientnet",
            "--init",
            "random",
            "--steps",
            "1",
            "--no-calibrate",
        ],
    )
    assert result.exit_code == 2 and "nothing to train on" in result.output
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "fit",
            "--positives",
            str(pools["gen"]),
            "--out",
            str(tmp_path / "one.st"),
            "--architecture",
            "test_efficientnet",
            "--init",
            "random",
            "--steps",
            "1",
        ],
    )
    assert result.exit_code == 2 and "both classes" in result.output


@needs_weights
def test_sharpened_decoder_gets_closer_and_loads_as_weights_dir(pools, tmp_path):
    from PIL import Image, ImageFilter

    from ldmscan.training.autoencoders import load_autoencoder
    from ldmscan.training.surrogate import _to_unit, measure

    gen = tmp_path / "smooth"
    rows = []
    for i in range(6):
        pixels = np.asarray(
            Image.fromarray(noise_image(128, 128, 40 + i)).filter(ImageFilter.GaussianBlur(1.5))
        )
        rows.append((f"s{i}.png", f"gen/s{i % 3}", "sdxl"))
        gen.mkdir(exist_ok=True)
        (gen / f"s{i}.png").write_bytes(image_bytes(pixels))
    with (gen / "MANIFEST.tsv").open("w") as fh:
        fh.write("file\tsource\tlatent_space\n")
        fh.writelines(f"{f}\t{s}\t{g}\n" for f, s, g in rows)
    out = tmp_path / "set"
    invoke(
        "train",
        "split",
        "--pool",
        f"generated:{gen}",
        "--generated-validate-share",
        "0",
        "--out",
        out,
    )
    sharpened = tmp_path / "surrogate"
    shown = invoke(
        "train",
        "sharpen",
        "--autoencoder",
        "taesdxl",
        "--weights-dir",
        MODELS_DIR,
        "--training-set",
        out / "training-set.tsv",
        "--holdout-share",
        "0.0",
        "--steps",
        "12",
        "--batch",
        "2",
        "--crop",
        "64",
        "--lr",
        "5e-4",
        "--out",
        sharpened,
    ).output
    assert (sharpened / "taesdxl_decoder.safetensors").is_file()
    report = json.loads((sharpened / "taesdxl.sharpen.json").read_text())
    assert report["train_images"] == 6 and report["after"] == {}  # nothing held out here
    assert "wrote" in shown
    # the written folder loads through the ordinary path and decodes differently from the
    # original, closer to the training images it was fitted on
    crops_ = [_to_unit(np.asarray(Image.open(gen / f"s{i}.png"))[:64, :64]) for i in range(6)]
    before = measure(load_autoencoder("taesdxl", MODELS_DIR), crops_)
    after = measure(load_autoencoder("taesdxl", sharpened), crops_)
    assert after["highpass_l1"] < before["highpass_l1"]


def test_generator_names_map_to_the_judges_families():
    from ldmscan.training.evaluate import family_of

    assert family_of("SDXL + LCM-LoRA") == "SDXL"
    assert family_of("Chroma (FLUX.1-schnell derivative)") == "FLUX"
    assert family_of("SD 2.0-base (Apple Core ML port)") == "SD2"
    assert family_of("Stable Diffusion v1 img2img (from a sketch)") == "SD1"
    assert family_of("Stable Diffusion 3 Medium") == "SD3"
    assert family_of("Kolors + IP-Adapter") == "Kolors"
    assert family_of("Hunyuan-DiT 1.2") == "HunyuanDiT"
    assert family_of("Lumina-Image 2.0") == "other"


def test_shipped_training_set_is_complete_and_leaks_no_evaluation_source():
    """The audit file beside the default detector: its counts are the card's, and no row comes
    from a source the evaluation sets draw on."""
    from ldmscan.detector import default_detector_path
    from ldmscan.training.trainset import ALWAYS_FORBIDDEN, counts, forbidden_sources, read_tsv

    detector = default_detector_path()
    rows = read_tsv(detector.with_name("default.training-set.tsv"))
    assert counts(rows) == read_card(detector).recipe["training_set_counts"]
    assert {r.role for r in rows} == {"fit", "calibrate", "validate"}
    assert len({r.sha256 for r in rows}) == len(rows)
    dev_manifest = MODELS_DIR.parent / "data" / "dev" / "MANIFEST.tsv"
    forbidden = forbidden_sources([dev_manifest]) if dev_manifest.is_file() else set()
    assert not {r.source for r in rows} & (forbidden | set(ALWAYS_FORBIDDEN))
    calibrate = [r for r in rows if r.role == "calibrate"]
    assert len(calibrate) >= 1000 and all(r.label == "real" for r in calibrate)
    fitted = {r.source for r in rows if r.role == "fit"}
    assert not fitted & {r.source for r in rows if r.role != "fit"}


def test_a_manifest_written_from_a_mirror_names_each_image_and_refuses_evaluation_files(tmp_path):
    """scripts/manifest_from_mirror.py: the extra photo pools' manifests (training/manifests)."""
    import hashlib
    import subprocess
    import sys

    repo = tmp_path / "repo"
    (repo / "images" / "train").mkdir(parents=True)
    (repo / "images" / "val").mkdir()
    train = image_bytes(noise_image(64, 48, 1), "JPEG")
    (repo / "images" / "train" / "a.jpg").write_bytes(train)
    (repo / "images" / "train" / "notes.txt").write_text("not an image")
    (repo / "images" / "val" / "b.jpg").write_bytes(image_bytes(noise_image(64, 48, 2), "JPEG"))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "images"], check=True)
    script = Path(__file__).resolve().parents[1] / "scripts" / "manifest_from_mirror.py"
    base = [sys.executable, str(script), "--mirror", str(repo), "--source", "o/r"]
    base += ["--license", "research use"]
    done = subprocess.run([*base, "--under", "images/train"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines(), delimiter="\t"))
    digest = hashlib.sha256(train).hexdigest()
    assert [(r["path_in_source"], r["sha256"], r["source"]) for r in rows] == [
        ("images/train/a.jpg", digest, "o/r")
    ]
    assert rows[0]["file"] == f"r/train__a.{digest[:8]}.jpg" and rows[0]["width"] == "64"
    evaluation = tmp_path / "dev.tsv"
    evaluation.write_text(f"file\tsha256\nx.jpg\t{digest}\n")
    done = subprocess.run(
        [*base, "--under", "images", "--forbid-manifest", str(evaluation)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "evaluation manifest" in done.stderr


def test_the_project_manifests_name_no_evaluation_source_or_file():
    """training/manifests/*.tsv (the pools beside the harvest: BSDS500 photos, the extra
    generated images) hold each image once, from a source and with bytes dev never draws on."""
    from ldmscan.training.trainset import ALWAYS_FORBIDDEN, forbidden_sources

    dev_manifest = MODELS_DIR.parent / "data" / "dev" / "MANIFEST.tsv"
    forbidden = set(ALWAYS_FORBIDDEN)
    dev_files: set[str] = set()
    if dev_manifest.is_file():
        forbidden |= forbidden_sources([dev_manifest])
        with dev_manifest.open(newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            dev_files = {row["sha256"] for row in reader}
    project_manifests = Path(__file__).resolve().parents[1] / "training" / "manifests"
    manifests = sorted(project_manifests.glob("*.tsv"))
    assert {m.name for m in manifests} >= {"bsds500.tsv", "generated-extra.tsv"}
    for manifest in manifests:
        with manifest.open(newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        assert rows, manifest
        assert len({r["sha256"] for r in rows}) == len(rows) == len({r["file"] for r in rows})
        assert not {r["source"] for r in rows} & forbidden, manifest
        assert not {r["sha256"] for r in rows} & dev_files, manifest
        assert all(r["license"] and r["version"] and r["path_in_source"] for r in rows)
    with (project_manifests / "generated-extra.tsv").open(newline="") as fh:
        extra = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert all(r["label"] == "generated" and r["evidence"] and r["latent_space"] for r in extra)
