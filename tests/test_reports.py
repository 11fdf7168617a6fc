"""`ldmscan report`, `show`, `label` and `export-labels` on both databases; the HTML page
opened in headless Chromium (screenshot kept under tests/artifacts/)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ldmscan.cli import cli
from ldmscan.imaging import sha256_bytes

from conftest import image_bytes, make_tiny_detector, noise_image

ARTIFACTS = Path(__file__).parent / "artifacts"


def invoke(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def scanned(tmp_path, db_url):
    """Two folders scanned with a detector that flags everything, one with one that flags
    nothing; one camera JPEG; one broken file."""
    from PIL import Image

    always = make_tiny_detector(
        tmp_path / "always.safetensors", thresholds={"3": {"0.001": 0.0, "0.01": 0.0}}
    )
    never = make_tiny_detector(
        tmp_path / "never.safetensors",
        name="tiny-never",
        thresholds={"3": {"0.001": 1.0, "0.01": 1.0}},
    )
    flagged_dir = tmp_path / "uploads" / "flagged"
    clean_dir = tmp_path / "uploads" / "clean"
    flagged_dir.mkdir(parents=True)
    clean_dir.mkdir(parents=True)
    for i in range(3):
        (flagged_dir / f"f{i}.png").write_bytes(image_bytes(noise_image(120, 90, i)))
    import io

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS 5D"
    buffer = io.BytesIO()
    Image.fromarray(noise_image(100, 100, 50)).save(buffer, format="JPEG", exif=exif)
    (clean_dir / "camera.jpg").write_bytes(buffer.getvalue())
    (clean_dir / "broken.jpg").write_bytes(b"")
    invoke("scan", flagged_dir, "--db", db_url, "--detector", always)
    invoke("scan", clean_dir, "--db", db_url, "--detector", never)
    return {"db": db_url, "flagged": flagged_dir, "clean": clean_dir, "tmp": tmp_path}


def rows_of(db, *args):
    out = invoke("report", "--db", db, "--format", "json", *args).stdout
    return json.loads(out)["rows"]


def test_report_filters(scanned):
    db = scanned["db"]
    assert len(rows_of(db)) == 5
    assert {r["label"] for r in rows_of(db, "--label", "generated")} == {"generated"}
    assert len(rows_of(db, "--label", "generated")) == 3
    assert len(rows_of(db, "--path-prefix", str(scanned["clean"]))) == 2
    assert len(rows_of(db, "--detector", "tiny-never")) == 2
    assert len(rows_of(db, "--detector", "tiny-test@0.0.1")) == 3
    assert len(rows_of(db, "--min-score", "0.0")) == 4  # the broken file has no score
    assert len(rows_of(db, "--source", "api")) == 0
    assert len(rows_of(db, "--since", "1d")) == 5
    assert len(rows_of(db, "--until", "2000-01-01")) == 0
    camera = next(r for r in rows_of(db) if r["camera"])
    assert camera["camera"] == "Canon EOS 5D" and "camera-exif" in camera["evidence_kinds"]


def test_report_table_and_csv(scanned, tmp_path):
    table = invoke("report", "--db", scanned["db"]).stdout
    for heading in (
        "by label",
        "by day",
        "by folder",
        "by camera",
        "by evidence kind",
        "top flagged",
    ):
        assert heading in table
    out = tmp_path / "r.csv"
    invoke("report", "--db", scanned["db"], "--format", "csv", "-o", out)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and {"sha256", "path", "label", "score", "detector"} <= set(rows[0])


def test_label_show_disagreement_and_export(scanned, tmp_path):
    db = scanned["db"]
    flagged = scanned["flagged"] / "f0.png"
    invoke("label", flagged, "real", "--note", "holiday photo", "--reviewer", "ana", "--db", db)
    camera = scanned["clean"] / "camera.jpg"
    invoke("label", sha256_bytes(camera.read_bytes())[:12], "generated", "--db", db)
    rows = rows_of(db)
    disagreeing = [r for r in rows if r["disagreement"]]
    assert {Path(r["path"]).name for r in disagreeing} == {"f0.png", "camera.jpg"}
    table = invoke("report", "--db", db).stdout
    assert "reviewer disagrees with detector" in table and "holiday photo" in table

    shown = json.loads(invoke("show", flagged, "--db", db, "--json").stdout)
    assert shown["reviews"][0]["label"] == "real" and shown["reviews"][0]["reviewer"] == "ana"
    assert shown["verdicts"][0]["label"] == "generated" and shown["locations"]
    assert "holiday photo" in invoke("show", str(flagged.resolve()), "--db", db).stdout
    invoke("show", "0" * 64, "--db", db, code=2)

    out = tmp_path / "labels"
    invoke("export-labels", out, "--db", db)
    assert sorted(p.name for p in (out / "real").iterdir()) == [
        sha256_bytes(flagged.read_bytes())[:16] + ".png"
    ]
    assert len(list((out / "generated").iterdir())) == 1
    manifest = list(csv.DictReader((out / "MANIFEST.tsv").open(), delimiter="\t"))
    assert {m["label"] for m in manifest} == {"real", "generated"}
    # the export is a set the training commands accept
    detector = make_tiny_detector(tmp_path / "cal.safetensors", thresholds={})
    invoke("train", "calibrate", "--detector", detector, "--real", out / "real", "--tries", "1")
    invoke(
        "train",
        "eval",
        "--detector",
        detector,
        "--real",
        out / "real",
        "--generated",
        out / "generated",
        "--manifest",
        out / "MANIFEST.tsv",
        "--quick",
        "--tries",
        "1",
        "--out",
        tmp_path / "eval",
    )


def test_label_unknown_image_is_a_clear_error(scanned, tmp_path):
    other = tmp_path / "never-scanned.png"
    other.write_bytes(image_bytes(noise_image(50, 50, 77)))
    result = invoke("label", other, "real", "--db", scanned["db"], code=2)
    assert "scan it first" in result.output


def test_html_report_renders_in_chromium(scanned, tmp_path, request):
    page_path = tmp_path / "report.html"
    invoke("report", "--db", scanned["db"], "--format", "html", "-o", page_path)
    html = page_path.read_text()
    assert html.count("data:image/jpeg;base64,") == 3  # a thumbnail per flagged file
    assert "<svg" in html and "by folder".lower() in html.lower()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    playwright = pytest.importorskip("playwright.sync_api")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"report-{request.node.callspec.id}.png"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(page_path.as_uri())
        assert page.locator(".card").count() == 3
        assert page.locator(".card img").first.evaluate("i => i.naturalWidth") > 0
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000


def test_report_dash_means_stdout_and_reviewer_falls_back_to_login(scanned, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    shown = json.loads(
        invoke("report", "--db", scanned["db"], "--format", "json", "-o", "-").stdout
    )
    assert len(shown["rows"]) == 5
    assert not (tmp_path / "-").exists()
    invoke("report", "--db", scanned["db"], "--format", "html", "-o", "-", code=2)

    monkeypatch.delenv("USER", raising=False)
    monkeypatch.setenv("LOGNAME", "moderator7")
    flagged = scanned["flagged"] / "f0.png"
    invoke("label", flagged, "real", "--db", scanned["db"])
    history = json.loads(invoke("show", flagged, "--db", scanned["db"], "--json").stdout)
    assert history["reviews"][0]["reviewer"] == "moderator7"
