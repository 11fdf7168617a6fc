import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ldmscan.cli import cli
from ldmscan.storage import Store

from conftest import BROKEN_IN_FOLDER, GOOD_IN_FOLDER


def run_scan(*args, expect_exit=0):
    result = CliRunner().invoke(cli, ["scan", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == expect_exit, result.output
    return result


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_scan_records_every_file_then_skips_them(db_url, image_folder, tiny_detector_path):
    first = json_lines(
        run_scan(image_folder, "--db", db_url, "--detector", tiny_detector_path, "--json").stdout
    )
    assert len(first) == GOOD_IN_FOLDER + BROKEN_IN_FOLDER
    by_name = {Path(o["path"]).name: o for o in first}
    assert "readme.txt" not in by_name
    assert "disguised.dat" in by_name and by_name["disguised.dat"]["error"] is None
    for name, reason in [
        ("empty.jpg", "empty"),
        ("truncated.jpg", "broken image"),
        ("notes.jpg", "not an image"),
    ]:
        assert by_name[name]["label"] == "error" and reason in by_name[name]["error"]
    good = [o for o in first if o["error"] is None]
    assert len(good) == GOOD_IN_FOLDER
    for outcome in good:
        assert 0.0 <= outcome["score"] <= 1.0
        assert outcome["label"] in {"generated", "uncertain", "real"}
        assert outcome["detector"] == "tiny-test@0.0.1" and len(outcome["sha256"]) == 64
        assert not outcome["skipped"]

    second = json_lines(
        run_scan(image_folder, "--db", db_url, "--detector", tiny_detector_path, "--json").stdout
    )
    assert all(o["skipped"] for o in second)
    assert {o["path"]: o["score"] for o in second} == {o["path"]: o["score"] for o in first}
    with Store(db_url) as store:
        assert store.counts()["verdicts"] == GOOD_IN_FOLDER + BROKEN_IN_FOLDER

    third = json_lines(
        run_scan(
            image_folder, "--db", db_url, "--detector", tiny_detector_path, "--json", "--rescan"
        ).stdout
    )
    assert not any(o["skipped"] for o in third)
    with Store(db_url) as store:
        assert store.counts()["verdicts"] == GOOD_IN_FOLDER + BROKEN_IN_FOLDER


def test_too_many_pixels_is_recorded(tmp_path, image_folder, tiny_detector_path):
    db = f"sqlite:///{tmp_path / 'v.db'}"
    out = json_lines(
        run_scan(
            image_folder / "b.jpg",
            "--db",
            db,
            "--detector",
            tiny_detector_path,
            "--json",
            "--max-pixels",
            "1000",
        ).stdout
    )
    assert out[0]["label"] == "error" and "too many pixels" in out[0]["error"]


def test_fail_on_generated_exits_1(tmp_path, image_folder):
    from conftest import make_tiny_detector

    always = make_tiny_detector(
        tmp_path / "always.safetensors", thresholds={"3": {"0.001": 0.0, "0.01": 0.0}}
    )
    db = f"sqlite:///{tmp_path / 'v.db'}"
    result = run_scan(
        image_folder / "a.png",
        "--db",
        db,
        "--detector",
        always,
        "--fail-on",
        "generated",
        expect_exit=1,
    )
    assert "generated" in result.output
    run_scan(
        image_folder / "empty.jpg",
        "--db",
        db,
        "--detector",
        always,
        "--fail-on",
        "generated",
        expect_exit=0,
    )


def test_db_from_environment(tmp_path, image_folder, tiny_detector_path):
    db = f"sqlite:///{tmp_path / 'env.db'}"
    result = CliRunner().invoke(
        cli,
        ["scan", str(image_folder / "a.png"), "--detector", str(tiny_detector_path)],
        env={"LDMSCAN_DB": db},
    )
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        assert store.counts()["verdicts"] == 1


def test_config_file_supplies_defaults(tmp_path, image_folder, tiny_detector_path):
    db = f"sqlite:///{tmp_path / 'conf.db'}"
    config = tmp_path / "config.toml"
    config.write_text(f'[scan]\ndb = "{db}"\ndetector = "{tiny_detector_path}"\ntries = 1\n')
    result = CliRunner().invoke(
        cli, ["scan", str(image_folder / "a.png"), "--json"], env={"LDMSCAN_CONFIG": str(config)}
    )
    assert result.exit_code == 0, result.output
    assert json_lines(result.stdout)[0]["tries"] == 1


def test_bad_detector_is_a_clear_error(tmp_path, image_folder):
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_text("nope")
    result = CliRunner().invoke(
        cli,
        [
            "scan",
            str(image_folder),
            "--db",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--detector",
            str(bogus),
        ],
    )
    assert result.exit_code == 2
    assert "Error:" in result.output and "not a safetensors file" in result.output


def test_db_upgrade_and_current(tmp_path):
    db = f"sqlite:///{tmp_path / 'up.db'}"
    runner = CliRunner()
    result = runner.invoke(cli, ["db", "upgrade", "--db", db])
    assert result.exit_code == 0 and "empty ->" in result.output
    from ldmscan.storage.migrate import head_revision

    assert runner.invoke(cli, ["db", "current", "--db", db]).output.startswith(head_revision())


def test_real_subprocess_scan(tmp_path, image_folder, tiny_detector_path):
    db = f"sqlite:///{tmp_path / 'sub.db'}"
    exe = Path(sys.executable).with_name("ldmscan")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "ldmscan"]
    proc = subprocess.run(
        [
            *command,
            "scan",
            str(image_folder),
            "--db",
            db,
            "--detector",
            str(tiny_detector_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LDMSCAN_CONFIG": str(tmp_path / "none.toml")},
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json_lines(proc.stdout)) == GOOD_IN_FOLDER + BROKEN_IN_FOLDER
    assert "ldmscan scan" in proc.stderr  # the summary table goes to stderr


@pytest.mark.skipif(
    not Path(__file__)
    .resolve()
    .parents[1]
    .joinpath("ldmscan/models/default.safetensors")
    .is_file(),
    reason="default detector not built yet",
)
def test_default_detector_scans_without_flags(tmp_path, image_folder):
    out = json_lines(
        run_scan(image_folder / "a.png", "--db", f"sqlite:///{tmp_path / 'd.db'}", "--json").stdout
    )
    assert out[0]["error"] is None and out[0]["detector"].startswith("ldmscan-")


def test_cli_imports_no_heavy_modules():
    """`ldmscan --help` and the click layer must not pay for torch, diffusers or aiohttp."""
    code = (
        "import sys, ldmscan.cli; print(sorted(m for m in ('torch', 'diffusers', 'aiohttp', "
        "'timm', 'watchdog', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


HEAVY_PROBE = """
import sys
from ldmscan.cli import cli
try:
    cli(sys.argv[1:], prog_name="ldmscan")
except SystemExit:
    pass
print("HEAVY", ",".join(m for m in ("torch", "timm", "diffusers") if m in sys.modules))
"""


@pytest.mark.parametrize(
    "args",
    [["token"], ["report"], ["show", "0" * 64], ["label", "0" * 64, "real"], ["detector"]],
)
def test_commands_that_score_nothing_import_no_network_libraries(tmp_path, args):
    """`detector` reads the card from the safetensors header; none of these needs torch."""
    proc = subprocess.run(
        [sys.executable, "-c", HEAVY_PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "LDMSCAN_CONFIG": str(tmp_path / "none.toml"),
            "LDMSCAN_DB": f"sqlite:///{tmp_path / 'light.db'}",
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        },
    )
    assert "HEAVY \n" in proc.stdout, proc.stdout + proc.stderr
