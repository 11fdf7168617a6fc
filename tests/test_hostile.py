"""Hostile inputs and error paths (issue 17): every file gets a verdict or a reason, nothing
blocks, no process dies, and every user-facing failure is one line with a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from ldmscan import imaging
from ldmscan.cli import cli
from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.errors import ImageError
from ldmscan.recording import Recorder
from ldmscan.storage import Store, migrate
from ldmscan.storage.store import create_db

from conftest import free_port, image_bytes, noise_image, start_serve

BAD_NAME = os.fsdecode(b"bad_\xff\xfe.png")  # not valid UTF-8: a surrogate-escaped str


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height (its pixel data is a few bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


# (name, how to make it, the exact reason its verdict gives)
HOSTILE = [
    ("empty.jpg", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    (
        "text.jpg",
        lambda p: p.write_text("a text file named like a JPEG\n" * 5),
        "not an image (content matches no supported image format)",
    ),
    (
        "vector.svg",
        lambda p: p.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>'),
        "unsupported image format (.svg): only raster images are scored",
    ),
    ("pipe.png", lambda p: os.mkfifo(p), "not a regular file: a FIFO"),
    ("loop.jpg", lambda p: p.symlink_to(p.name), "cannot read file: symbolic link loop"),
    (
        "dangling.png",
        lambda p: p.symlink_to("nowhere.png"),
        "cannot read file: broken symbolic link (its target does not exist)",
    ),
    (
        "bomb.png",
        lambda p: p.write_bytes(png_header(30_000, 30_000)),
        "too many pixels: 900000000 > limit 100000000 (decompression bomb)",
    ),
]


@pytest.fixture
def hostile_folder(tmp_path) -> Path:
    folder = tmp_path / "hostile"
    folder.mkdir()
    for i in range(3):
        (folder / f"good{i}.png").write_bytes(image_bytes(noise_image(160, 128, i)))
    (folder / BAD_NAME).write_bytes(image_bytes(noise_image(150, 140, 9)))
    for name, make, _reason in HOSTILE:
        make(folder / name)
    return folder


def run(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("ldmscan")
    return subprocess.run(
        [str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def test_a_hostile_folder_gives_every_file_a_line_and_scores_every_good_one(
    tmp_path, hostile_folder, tiny_detector_path
):
    db = f"sqlite:///{tmp_path / 'v.db'}"
    proc = run("scan", hostile_folder, "--db", db, "--detector", tiny_detector_path, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = {Path(o["path"]).name: o for o in map(json.loads, proc.stdout.splitlines())}
    assert len(lines) == 4 + len(HOSTILE)
    for name, _make, reason in HOSTILE:
        assert lines[name]["label"] == "error" and lines[name]["error"] == reason, name
    scored = [o for o in lines.values() if o["error"] is None]
    assert len(scored) == 4  # the three good files and the one with an undecodable name
    assert lines["bad_\\xff\\xfe.png"]["label"] in {"real", "uncertain", "generated"}


def test_an_undecodable_file_name_is_stored_losslessly(
    tmp_path, hostile_folder, tiny_detector_path
):
    """The name's bytes come back exactly (quarantine and export need the real file)."""
    db = f"sqlite:///{tmp_path / 'v.db'}"
    with (
        Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=1)) as engine,
        Store(db) as store,
    ):
        outcomes = list(Recorder(engine, store).scan([hostile_folder / BAD_NAME]))
        assert outcomes[0].error is None
        live = store.live_locations(str(hostile_folder))
        assert os.fsencode(live[0]).endswith(b"bad_\xff\xfe.png") and Path(live[0]).is_file()
    shown = run("show", hostile_folder / BAD_NAME, "--db", db, "--json")
    assert shown.returncode == 0, shown.stderr
    assert "bad_\\\\xff\\\\xfe.png" in shown.stdout  # the display form, JSON-escaped


def test_a_watcher_survives_an_undecodable_name(tmp_path, hostile_folder, tiny_detector_path):
    from ldmscan.scanner.watch import FolderWatcher

    with (
        Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=1)) as engine,
        Store(f"sqlite:///{tmp_path / 'w.db'}") as store,
    ):
        seen = []
        watcher = FolderWatcher(
            [hostile_folder], Recorder(engine, store, source="watch"), on_outcome=seen.append
        )
        assert watcher.catch_up() == 4 + len(HOSTILE)
        assert watcher.catch_up() == 4 + len(HOSTILE)  # a restart: nothing marked deleted
        # what was read has a row (decode errors too); what could not be read has only its line
        assert len(store.live_locations(str(hostile_folder))) == 7
        assert sum(o.error is None for o in seen) == 8


def test_a_fifo_named_on_the_command_line_does_not_block(tmp_path, tiny_detector_path):
    fifo = tmp_path / "upload.jpg"
    os.mkfifo(fifo)
    loop = tmp_path / "self.png"
    loop.symlink_to(loop.name)
    db = f"sqlite:///{tmp_path / 'v.db'}"
    proc = run(
        "scan", fifo, loop, "--db", db, "--detector", tiny_detector_path, "--json", timeout=60
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    errors = [json.loads(line)["error"] for line in proc.stdout.splitlines()]
    assert errors == ["not a regular file: a FIFO", "cannot read file: symbolic link loop"]


def test_settings_errors_are_retried_without_rescan(tmp_path, tiny_detector_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(image_bytes(noise_image(200, 160, 3)))
    db = f"sqlite:///{tmp_path / 'v.db'}"
    args = ["scan", tmp_path / "in", "--db", db, "--detector", tiny_detector_path, "--json"]
    first = json.loads(run(*args, "--max-pixels", "1000").stdout)
    assert first["label"] == "error" and first["error"].startswith("too many pixels")
    second = json.loads(run(*args).stdout)
    assert not second["skipped"] and second["error"] is None
    third = json.loads(run(*args).stdout)
    assert third["skipped"]  # a real verdict is kept as before


def test_content_errors_stay_known(tmp_path, tiny_detector_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    db = f"sqlite:///{tmp_path / 'v.db'}"
    args = ["scan", tmp_path / "in", "--db", db, "--detector", tiny_detector_path, "--json"]
    assert not json.loads(run(*args).stdout)["skipped"]
    assert json.loads(run(*args).stdout)["skipped"]


def test_exit_codes_a_pipeline_can_read(tmp_path, hostile_folder, tiny_detector_path):
    db = f"sqlite:///{tmp_path / 'v.db'}"
    common = ["--db", db, "--detector", tiny_detector_path]
    missing = run("scan", tmp_path / "nonexistent", *common)
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    assert missing.stderr.count("nonexistent") == 1  # one line says it, not a log line and two
    assert run("scan", hostile_folder, *common).returncode == 0
    assert run("scan", hostile_folder, *common, "--fail-on", "error").returncode == 1
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.png").write_bytes(image_bytes(noise_image(128, 128, 1)))
    assert run("scan", good, *common, "--fail-on", "error").returncode == 0


def _bad_invocations(tmp_path: Path, detector: Path, taken_port: int) -> list[list[object]]:
    db = f"sqlite:///{tmp_path / 'v.db'}"
    notes = tmp_path / "notes.txt"
    notes.write_text("not a detector")
    return [
        ["scan", tmp_path, "--db", db, "--generated-fpr", "0.05", "--uncertain-fpr", "0.001"],
        ["scan", tmp_path, "--db", db, "--generated-fpr", "0.3"],
        ["scan", tmp_path, "--db", db, "--tries", "0"],
        ["scan", tmp_path, "--db", db, "--detector", notes],
        ["scan", tmp_path, "--db", db, "--detector", tmp_path / "missing.safetensors"],
        ["scan", tmp_path, "--db", "mysql://nobody@nowhere/db"],
        ["scan", tmp_path, "--db", "sqlite:////proc/no/such/dir/v.db"],
        ["watch", tmp_path / "missing", "--db", db],
        ["watch", tmp_path, "s3://bucket/x", "--db", db],
        ["serve", "--host", "0.0.0.0", "--no-auth", "--db", db],
        ["serve", "--port", taken_port, "--db", db, "--detector", detector],
        ["report", "--db", db, "--since", "yesterday"],
        ["report", "--db", db, "--format", "html"],
        ["show", "nothing-like-this", "--db", db],
        ["label", "0" * 64, "real", "--db", db],
        ["detector", notes],
        ["train", "calibrate", "--detector", detector, "--real", tmp_path / "missing"],
        ["db", "current", "--db", "postgresql://nobody@127.0.0.1:1/none"],
        ["db", "upgrade", "--db", "postgresql://nobody@127.0.0.1:1/none"],
    ]


def test_every_bad_setting_is_one_line_and_a_nonzero_exit(tmp_path, tiny_detector_path):
    with socket.socket() as holder:  # a port some other program listens on
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        for args in _bad_invocations(tmp_path, tiny_detector_path, port):
            proc = run(*args, timeout=90)
            assert proc.returncode != 0, (args, proc.stdout, proc.stderr)
            assert "Traceback" not in proc.stderr, (args, proc.stderr)
            errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
            assert len(errors) == 1, (args, proc.stderr)


def test_parallel_first_uses_of_a_new_database(db_url):
    """Four first uses at once on a database with no schema (SQLite file or PostgreSQL)."""
    exe = Path(sys.executable).with_name("ldmscan")
    procs = [
        subprocess.Popen(
            [str(exe), "db", "upgrade", "--db", db_url], stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = [(p.wait(120), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    assert migrate.current_revision(create_db(db_url)) == migrate.head_revision()


def test_an_existing_sqlite_schema_is_backed_up_before_migrating(tmp_path):
    path = tmp_path / "old.db"
    db = create_db(f"sqlite:///{path}")
    migrate.upgrade(db, "0002")
    migrate.upgrade(db)
    backups = list(tmp_path.glob("old.db.0002.*.bak"))
    assert len(backups) == 1
    assert migrate.current_revision(create_db(f"sqlite:///{backups[0]}")) == "0002"
    migrate.upgrade(db)  # nothing left to do: no second backup
    assert len(list(tmp_path.glob("old.db.*.bak"))) == 1


def test_pillow_limit_is_never_quoted_instead_of_max_pixels():
    with pytest.raises(ImageError) as caught:
        imaging.decode(png_header(20_000, 20_000), max_pixels=1_000_000)
    assert caught.value.code == ImageError.TOO_MANY_PIXELS
    assert "> limit 1000000" in str(caught.value) and "178956970" not in str(caught.value)


def test_tries_without_their_own_calibration_say_so(tmp_path, tiny_detector_path, caplog):
    data = image_bytes(noise_image(200, 200, 1))
    with Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=2)) as e:
        verdict = e.check(data).verdict
    assert "calibrated at 1 tries, not 2" in verdict.reasons[0]
    assert any("calibrated at 1 tries, not 2" in r.message for r in caplog.records)
    with Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=3)) as e:
        assert "calibrated" not in e.check(data).verdict.reasons[0]


# -- HTTP ------------------------------------------------------------------------------------


@pytest.fixture
async def api(aiohttp_client, tiny_detector_path, tmp_path):
    from ldmscan.server import ServerSettings, make_app

    with (
        Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=1)) as engine,
        Store(f"sqlite:///{tmp_path / 'api.db'}") as store,
    ):
        settings = ServerSettings(token="secret", max_bytes=200_000, request_timeout=2.0)
        yield await aiohttp_client(make_app(engine, store, settings)), store


AUTH = {"Authorization": "Bearer secret"}


async def _raw_status(client, request: bytes, timeout: float) -> bytes:
    """Write bytes as given (what a client library would refuse to send, or would finish
    sending) and return the response's status line."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()


async def _raw_post(client, head: bytes, body: bytes) -> tuple[bytes, bytes]:
    """One whole HTTP/1.1 request written byte for byte: (status line, body)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    status, _, rest = response.partition(b"\r\n")
    return status, rest.partition(b"\r\n\r\n")[2]


async def test_a_non_utf8_header_is_stored_not_a_500(api):
    client, store = api
    head = (
        b"POST /v1/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n"
        b"Content-Type: image/png\r\nX-Image-URL: https://example.com/\xff\xfe.png\r\n"
    )
    status, body = await _raw_post(client, head, image_bytes(noise_image(128, 128, 2)))
    assert b" 200 " in status, body
    verdict = json.loads(body)
    assert verdict["label"] in {"real", "uncertain", "generated"}
    assert store.counts()["verdicts"] == 1
    history = await client.get(f"/v1/verdicts/{verdict['sha256']}", headers=AUTH)
    assert history.status == 200, await history.text()
    (location,) = (await history.json())["locations"]
    assert location["uri"] == "https://example.com/\\xff\\xfe.png"


async def test_unknown_routes_are_404_without_a_token(api):
    client, _ = api
    response = await client.get("/v1/nothing")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_a_declared_oversize_body_is_refused_on_its_header(api):
    """Only the headers are sent: the 413 must come without waiting for (or reading) a body."""
    client, _ = api
    head = (
        b"POST /v1/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n"
        b"Content-Type: image/png\r\nContent-Length: 54000000\r\n\r\n"
    )
    status = await _raw_status(client, head, 1.5)  # well inside the 2 s body deadline
    assert b" 413 " in status


async def test_two_file_parts_are_a_400(api):
    import aiohttp

    client, _ = api
    form = aiohttp.FormData()
    for i in range(2):
        form.add_field("file", image_bytes(noise_image(96, 96, i)), filename=f"{i}.png")
    response = await client.post("/v1/check", data=form, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "several_files"


async def test_a_trickling_body_is_cut_off_at_the_deadline(api):
    client, _ = api
    head = (
        b"POST /v1/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n"
        b"Content-Type: image/png\r\nContent-Length: 1000\r\n\r\n"
    )
    assert b" 408 " in await _raw_status(client, head + b"\x89PNG", 10)


async def test_an_unhandled_error_is_json_and_counted(aiohttp_client, tiny_detector_path, tmp_path):
    from ldmscan.server import ServerSettings, make_app

    class FailingStore(Store):
        def save(self, items, detector_id):  # an injected fault, not a patch
            raise RuntimeError("disk on fire")

    with (
        Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=1)) as engine,
        FailingStore(f"sqlite:///{tmp_path / 'f.db'}") as store,
    ):
        client = await aiohttp_client(make_app(engine, store, ServerSettings(token=None)))
        response = await client.post("/v1/check", data=image_bytes(noise_image(96, 96, 1)))
        assert response.status == 500
        assert (await response.json())["error"]["code"] == "internal_error"
        metrics = await (await client.get("/metrics")).text()
        assert 'status="500"' in metrics


def test_serve_on_a_taken_port_is_one_line(tmp_path, tiny_detector_path):
    port = free_port()
    db = f"sqlite:///{tmp_path / 's.db'}"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        proc = run("serve", "--port", port, "--db", db, "--detector", tiny_detector_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr


def test_cli_runner_sees_the_same_exit_codes(tmp_path, tiny_detector_path):
    result = CliRunner().invoke(
        cli,
        [
            "scan",
            str(tmp_path / "nope"),
            "--db",
            f"sqlite:///{tmp_path / 'r.db'}",
            "--detector",
            str(tiny_detector_path),
        ],
    )
    assert result.exit_code == 2


def test_trickled_headers_are_cut_off_at_the_deadline(tmp_path, tiny_detector_path):
    """A real `ldmscan serve`: a client that never finishes its headers gets a 408 and the
    connection closes at --timeout, while a normal request still gets its answer."""
    import time
    import urllib.request

    server = start_serve(tmp_path, tiny_detector_path, "--no-auth", "--timeout", "2")
    try:
        port = int(server.base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=20) as slow:
            slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            started = time.monotonic()
            answer = b""
            while chunk := slow.recv(4096):
                answer += chunk
            waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408") and b"header_timeout" in answer
        assert 1.5 < waited < 15
        health = urllib.request.urlopen(f"{server.base}/v1/health", timeout=10)
        assert health.status == 200
    finally:
        server.proc.terminate()
        assert server.proc.wait(60) == 0  # SIGTERM still shuts down cleanly
