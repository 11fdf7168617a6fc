"""`scan` and `watch` on s3:// URLs against moto's standalone S3 server on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from click.testing import CliRunner

from ldmscan.cli import cli
from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.imaging import sha256_bytes
from ldmscan.recording import Recorder
from ldmscan.scanner.buckets import BucketWatcher, list_objects
from ldmscan.storage import Store

from conftest import image_bytes, noise_image

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def s3_endpoint():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    name = f"uploads-{time.monotonic_ns()}"
    client.create_bucket(Bucket=name)
    return client, name


def put(client, bucket, key, data):
    client.put_object(Bucket=bucket, Key=key, Body=data)


def test_scan_bucket_prefix(bucket, s3_endpoint, tmp_path, tiny_detector_path):
    client, name = bucket
    images = {f"in/{i}.png": image_bytes(noise_image(80, 80, i)) for i in range(3)}
    for key, data in images.items():
        put(client, name, key, data)
    put(client, name, "in/broken.jpg", b"")
    put(client, name, "other/skip.png", image_bytes(noise_image(64, 64, 9)))
    db = f"sqlite:///{tmp_path / 'b.db'}"
    args = [
        "scan",
        f"s3://{name}/in",
        "--endpoint-url",
        s3_endpoint,
        "--db",
        db,
        "--detector",
        str(tiny_detector_path),
        "--json",
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["path"] for r in rows) == sorted(
        [f"s3://{name}/{k}" for k in images] + [f"s3://{name}/in/broken.jpg"]
    )
    by_path = {r["path"]: r for r in rows}
    assert by_path[f"s3://{name}/in/broken.jpg"]["error"] == "empty file (0 bytes)"
    for key, data in images.items():
        assert by_path[f"s3://{name}/{key}"]["sha256"] == sha256_bytes(data)
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert all(
        json.loads(line)["skipped"] for line in again.stdout.splitlines() if line.startswith("{")
    )


def test_watch_bucket_finds_new_changed_and_deleted_keys(
    bucket, s3_endpoint, tmp_path, tiny_detector_path
):
    client, name = bucket
    put(client, name, "up/a.png", image_bytes(noise_image(64, 64, 1)))
    db = f"sqlite:///{tmp_path / 'bw.db'}"
    with (
        Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=1)) as engine,
        Store(db) as store,
    ):
        watcher = BucketWatcher(
            [f"s3://{name}/up"],
            Recorder(engine, store, source="watch"),
            interval=0.3,
            endpoint_url=s3_endpoint,
        )
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        try:
            assert watcher.ready.wait(30)
            assert store.counts()["verdicts"] == 1
            new = image_bytes(noise_image(64, 64, 2))
            put(client, name, "up/b.png", new)
            changed = image_bytes(noise_image(64, 64, 3))
            put(client, name, "up/a.png", changed)  # same key, new content
            deadline = time.monotonic() + 30
            while store.counts()["verdicts"] < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert store.counts()["verdicts"] == 3
            assert store.image(sha256_bytes(new)) and store.image(sha256_bytes(changed))
            client.delete_object(Bucket=name, Key="up/b.png")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                locs = store.locations_for(sha256_bytes(new))
                if locs and locs[0]["deleted_at"] is not None:
                    break
                time.sleep(0.2)
            assert store.locations_for(sha256_bytes(new))[0]["deleted_at"] is not None
        finally:
            watcher.stop()
            thread.join(30)

    # a restart does not download what the database already has
    with (
        Engine(load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=1)) as engine,
        Store(db) as store,
    ):
        watcher = BucketWatcher(
            [f"s3://{name}/up"], Recorder(engine, store, source="watch"), endpoint_url=s3_endpoint
        )
        assert watcher.poll_once() == 0


def test_listing_keeps_etags(bucket, s3_endpoint):
    client, name = bucket
    put(client, name, "x/1.jpg", image_bytes(noise_image(40, 40), "JPEG"))
    (obj,) = list_objects(f"s3://{name}/x", s3_endpoint)
    assert obj.etag and obj.mtime is not None and obj.uri == f"s3://{name}/x/1.jpg"
