"""The HTTP API through aiohttp's test client, a real `ldmscan serve` subprocess, and
schemathesis against the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request

import aiohttp
import pytest

from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.imaging import sha256_bytes
from ldmscan.server import ServerSettings, make_app
from ldmscan.server.openapi import openapi_document
from ldmscan.storage import Store

from conftest import free_port, image_bytes, noise_image

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def engine(tiny_detector_path):
    with Engine(
        load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=1, max_pending=64)
    ) as e:
        yield e


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'api.db'}") as store:
        yield store


@pytest.fixture
def settings():
    return ServerSettings(
        token=TOKEN,
        cors_origins=frozenset({"chrome-extension://abc"}),
        max_bytes=2_000_000,
        request_timeout=30,
    )


@pytest.fixture
async def client(aiohttp_client, engine, store, settings):
    return await aiohttp_client(make_app(engine, store, settings))


async def test_check_raw_body_stores_verdict(client, store):
    data = image_bytes(noise_image(160, 120))
    response = await client.post(
        "/v1/check",
        data=data,
        headers={**AUTH, "Content-Type": "image/png", "X-Page-URL": "https://example.org/page"},
        params={"image_url": "https://example.org/a.png"},
    )
    assert response.status == 200
    body = await response.json()
    assert body["sha256"] == sha256_bytes(data)
    assert body["label"] in {"generated", "uncertain", "real"} and 0 <= body["score"] <= 1
    assert body["detector"]["name"] == "tiny-test" and body["image"]["width"] == 160
    (location,) = store.locations_for(body["sha256"])
    assert location["source"] == "api" and location["uri"] == "https://example.org/a.png"
    assert location["context"]["page_url"] == "https://example.org/page"
    (row,) = store.verdicts_for(body["sha256"])
    assert row["source"] == "api" and row["probability"] == pytest.approx(body["score"])


async def test_check_multipart(client):
    data = image_bytes(noise_image(100, 100, 2), "JPEG")
    form = aiohttp.FormData()
    form.add_field("file", data, filename="x.jpg", content_type="image/jpeg")
    form.add_field("page_url", "https://example.org/")
    response = await client.post("/v1/check", data=form, headers=AUTH)
    assert response.status == 200
    assert (await response.json())["sha256"] == sha256_bytes(data)


async def test_get_verdicts(client):
    data = image_bytes(noise_image(90, 90, 3))
    await client.post("/v1/check", data=data, headers=AUTH)
    sha = sha256_bytes(data)
    response = await client.get(f"/v1/verdicts/{sha}", headers=AUTH)
    body = await response.json()
    assert response.status == 200 and body["sha256"] == sha
    assert body["verdicts"][0]["detector_name"] == "tiny-test" and body["locations"]
    missing = await client.get(f"/v1/verdicts/{'0' * 64}", headers=AUTH)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "unknown_image"
    bad = await client.get("/v1/verdicts/xyz", headers=AUTH)
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "bad_sha256"


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_body"),
        (b"plain text, not an image" * 3, 422, "not_an_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 422, "not_an_image"),
    ],
)
async def test_check_errors(client, data, status, code):
    response = await client.post("/v1/check", data=data, headers=AUTH)
    assert response.status == status
    assert (await response.json())["error"]["code"] == code


async def test_too_large_body(client):
    response = await client.post("/v1/check", data=b"\xff\xd8\xff" + b"0" * 2_100_000, headers=AUTH)
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "too_large"


async def test_pixel_limit(aiohttp_client, tiny_detector_path, store, settings):
    with Engine(
        load_detector(tiny_detector_path), EngineOptions(device="cpu", tries=1, max_pixels=5000)
    ) as e:
        client = await aiohttp_client(make_app(e, store, settings))
        response = await client.post(
            "/v1/check", data=image_bytes(noise_image(100, 100)), headers=AUTH
        )
        assert response.status == 422
        assert (await response.json())["error"]["code"] == "too_many_pixels"


async def test_auth_is_required(client):
    data = image_bytes(noise_image(64, 64))
    assert (await client.post("/v1/check", data=data)).status == 401
    wrong = await client.post("/v1/check", data=data, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and (await wrong.json())["error"]["code"] == "unauthorized"
    assert (await client.get(f"/v1/verdicts/{'0' * 64}")).status == 401
    assert (await client.get("/v1/health")).status == 200  # public


async def test_cors_only_for_configured_origins(client):
    allowed = await client.options(
        "/v1/check",
        headers={"Origin": "chrome-extension://abc", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "chrome-extension://abc"
    other = await client.get("/v1/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_queue_full_gives_429(aiohttp_client, tiny_detector_path, store, settings):
    with Engine(
        load_detector(tiny_detector_path),
        EngineOptions(device="cpu", tries=1, max_pending=1, max_wait_ms=300),
    ) as engine:
        client = await aiohttp_client(make_app(engine, store, settings))
        data = [image_bytes(noise_image(400, 400, i)) for i in range(6)]
        responses = await asyncio.gather(
            *(client.post("/v1/check", data=d, headers=AUTH) for d in data)
        )
        statuses = [r.status for r in responses]
        assert 429 in statuses and 200 in statuses
        busy = next(r for r in responses if r.status == 429)
        assert int(busy.headers["Retry-After"]) >= 1


async def test_concurrent_requests_share_batches(
    aiohttp_client, tiny_detector_path, store, settings
):
    with Engine(
        load_detector(tiny_detector_path),
        EngineOptions(device="cpu", tries=1, max_wait_ms=100, decode_workers=4),
    ) as engine:
        client = await aiohttp_client(make_app(engine, store, settings))
        data = [image_bytes(noise_image(128, 128, 40 + i)) for i in range(10)]
        responses = await asyncio.gather(
            *(client.post("/v1/check", data=d, headers=AUTH) for d in data)
        )
        assert all(r.status == 200 for r in responses)
        assert max(engine.batch_sizes) > 1
        assert store.counts()["verdicts"] == 10


async def test_health_and_metrics(client):
    await client.post("/v1/check", data=image_bytes(noise_image(64, 64, 9)), headers=AUTH)
    health = await (await client.get("/v1/health")).json()
    assert health["status"] == "ok" and health["detector"]["name"] == "tiny-test"
    text = await (await client.get("/metrics")).text()
    for name in (
        "ldmscan_http_requests_total",
        "ldmscan_http_request_seconds_bucket",
        "ldmscan_engine_queue_depth",
        "ldmscan_engine_batch_size_bucket",
        "ldmscan_verdicts_total",
    ):
        assert name in text


async def test_unknown_route_is_json(client):
    response = await client.get("/nope", headers=AUTH)
    assert response.status == 404 and (await response.json())["error"]["code"] == "not_found"


async def test_openapi_matches_the_router(client):
    served = await (await client.get("/v1/openapi.json")).json()
    assert served == openapi_document()
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in client.app.router.routes()
        if r.method != "HEAD"
    }
    documented = {(m, p) for p, ops in served["paths"].items() for m in ops}
    assert routes == documented


def test_schemathesis_against_live_app(engine, store, settings):
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    app = make_app(engine, store, settings)
    port = free_port()
    from aiohttp import web

    async def serve_and_check():
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            await asyncio.get_running_loop().run_in_executor(None, run_schemathesis)
        finally:
            await runner.cleanup()

    def run_schemathesis():
        loaded = schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/v1/openapi.json")
        failures = []
        for operation in loaded.get_all_operations():
            op = operation.ok()
            strategy = op.as_strategy()

            @hsettings(
                max_examples=8,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            @given(case=strategy)
            def check_case(case):
                case.headers = {**(case.headers or {}), **AUTH}
                response = case.call(base_url=f"http://127.0.0.1:{port}")
                assert response.status_code < 500, (case.path, response.status_code)
                # Schema-valid bytes need not be a decodable image of 32+ px, so a 422 for
                # them is documented behaviour, not a rejected positive case.
                case.validate_response(response, excluded_checks=[positive_data_acceptance])

            try:
                check_case()
            except Exception as exc:  # collect, so one report names every broken operation
                failures.append(f"{op.method.upper()} {op.path}: {exc}")
        assert not failures, "\n".join(failures)

    asyncio.run(serve_and_check())


def test_real_serve_subprocess(serve):
    token = serve.token
    assert oct(serve.token_file.stat().st_mode & 0o777) == "0o600"
    shown = subprocess.run([str(serve.exe), "token"], env=serve.env, capture_output=True, text=True)
    assert shown.stdout.strip() == token
    data = image_bytes(noise_image(120, 120, 5))
    request = urllib.request.Request(
        f"{serve.base}/v1/check", data=data, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.load(response)["sha256"] == sha256_bytes(data)
    serve.proc.terminate()  # a clean shutdown exits 0
    assert serve.proc.wait(timeout=30) == 0, serve.proc.stderr.read()


def test_no_auth_refused_off_loopback(tmp_path, tiny_detector_path):
    from click.testing import CliRunner

    from ldmscan.cli import cli

    result = CliRunner().invoke(
        cli, ["serve", "--host", "0.0.0.0", "--no-auth", "--detector", str(tiny_detector_path)]
    )
    assert result.exit_code == 2 and "loopback" in result.output


async def test_api_and_watcher_share_engine_and_database(
    aiohttp_client, tiny_detector_path, tmp_path, db_url, settings
):
    """Concurrent API checks while `serve --watch` writes the same database: nothing lost,
    no "database is locked"."""
    from ldmscan.recording import Recorder
    from ldmscan.scanner.watch import FolderWatcher

    folder = tmp_path / "watched"
    folder.mkdir()
    with (
        Engine(
            load_detector(tiny_detector_path),
            EngineOptions(device="cpu", tries=1, decode_workers=3),
        ) as e,
        Store(db_url) as store,
    ):
        watcher = FolderWatcher([folder], Recorder(e, store, source="watch"), settle=0.2)
        client = await aiohttp_client(make_app(e, store, settings, [watcher]))
        assert await asyncio.get_running_loop().run_in_executor(None, watcher.ready.wait, 60)

        async def write_files():
            for i in range(40):
                (folder / f"w{i:03d}.png").write_bytes(image_bytes(noise_image(64, 64, 500 + i)))
                await asyncio.sleep(0.01)

        api_images = [image_bytes(noise_image(64, 64, 700 + i)) for i in range(30)]
        results = await asyncio.gather(
            write_files(), *(client.post("/v1/check", data=d, headers=AUTH) for d in api_images)
        )
        assert all(r.status == 200 for r in results[1:])

        def all_saved():
            return store.counts()["verdicts"] >= 70

        deadline = time.monotonic() + 60
        while not all_saved() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert store.counts()["verdicts"] == 70
        sources = {row["source"] for d in api_images for row in store.verdicts_for(sha256_bytes(d))}
        assert sources == {"api"}
