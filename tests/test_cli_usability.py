"""What a moderator meets at the terminal (issue 18): help on every option, README examples
that run as written, the detector summary the README shows, paths that keep their file name,
one definition of files/s."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from ldmscan.cli import cli
from ldmscan.cli.render import files_per_second, report_tables

from conftest import image_bytes, noise_image

README = Path(__file__).resolve().parents[1] / "README.md"


def _options(command: click.Command, prefix: str):
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _options(sub, f"{prefix} {name}")
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            yield prefix, param


def test_every_option_of_every_command_has_help():
    missing = [f"{where} {p.opts[0]}" for where, p in _options(cli, "ldmscan") if not p.help]
    assert missing == []


def test_every_command_has_help():
    def commands(command, prefix):
        yield prefix, command
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from commands(sub, f"{prefix} {name}")

    assert [p for p, c in commands(cli, "ldmscan") if not (c.help or "").strip()] == []


def test_the_readme_python_examples_run_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks
    (tmp_path / "upload.jpg").write_bytes(image_bytes(noise_image(320, 240, 5), "JPEG"))
    for block in blocks:
        script = tmp_path / "example.py"
        script.write_text(block)
        proc = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, (block, proc.stderr)


def test_the_readme_shows_what_ldmscan_detector_prints():
    text = README.read_text()
    shown = text.split("$ ldmscan detector\n", 1)[1].split("```", 1)[0].rstrip("\n").splitlines()
    printed = CliRunner().invoke(cli, ["detector"]).output.rstrip("\n").splitlines()
    assert shown[1:] == printed[1:]  # the first line holds the install path
    assert shown[0].split("  ")[0] == printed[0].split("  ")[0]


def test_report_tables_keep_the_file_name_at_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    name = "IMG_20260101_123456_the_part_a_moderator_needs.jpg"
    path = "/srv/uploads/" + "/".join(["a-rather-long-folder-name"] * 4) + "/" + name
    row = {
        "score": 0.99,
        "label": "generated",
        "path": path,
        "sha256": "0" * 64,
        "reasons": ["pixel score 0.990 >= 0.950"],
    }
    summary = {
        "total": 1,
        "by_label": {"generated": 1},
        "by_day": {},
        "by_folder": {path.rsplit("/", 1)[0]: {"generated": 1}},
        "by_camera": {},
        "by_evidence": {},
        "top_flagged": [row],
        "disagreements": [],
    }
    report_tables(summary, "")
    out = re.sub(r"[│┃\s]", "", capsys.readouterr().out)
    assert name.replace("_", "") in out.replace("_", "")


def test_progress_and_summary_share_one_rate():
    """The bar's rate column is files done over time since the start, like the summary's."""
    import io
    import time

    from rich.console import Console

    from ldmscan.cli.render import progress

    bar = progress(Console(file=io.StringIO(), force_terminal=True), quiet=False)
    with bar:
        task_id = bar.add_task("scanning", total=10)
        time.sleep(0.05)
        bar.advance(task_id, 4)
        bar.stop_task(task_id)  # freezes elapsed
        task = bar.tasks[0]
        (rate_column,) = [c for c in bar.columns if type(c).__name__ == "RateColumn"]
        shown = rate_column.render(task)
    assert shown == f"{files_per_second(4, task.elapsed):.1f} files/s"
    assert files_per_second(5, 0.0) == 0.0


def _jpeg_with_corrupt_exif() -> bytes:
    import struct

    jpeg = image_bytes(noise_image(200, 200, 1), "JPEG")
    # an IFD that promises five entries and a 40-byte make string beyond the segment's end
    tiff = (
        b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 5) + struct.pack("<HHII", 0x010F, 2, 40, 200)
    )
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_pillow_warnings_become_evidence_not_stderr_noise(tmp_path, tiny_detector_path):
    import json

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "odd.jpg").write_bytes(_jpeg_with_corrupt_exif())
    exe = Path(sys.executable).with_name("ldmscan")
    proc = subprocess.run(
        [
            str(exe),
            "scan",
            str(tmp_path / "in"),
            "--json",
            "--db",
            f"sqlite:///{tmp_path / 'v.db'}",
            "--detector",
            str(tiny_detector_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "Corrupt EXIF" not in proc.stderr
    evidence = json.loads(proc.stdout)["evidence"]
    notes = [e["detail"] for e in evidence if e["kind"] == "decoder"]
    assert any("Corrupt EXIF data" in note for note in notes)
