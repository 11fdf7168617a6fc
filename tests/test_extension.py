"""The browser extension: node's unit tests of its pure logic, and an end-to-end run in
Debian's Chromium (driven by Playwright) against a real `ldmscan serve` and a local test page."""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import subprocess
import threading
import urllib.request
from functools import partial
from pathlib import Path

import pytest

from ldmscan.imaging import sha256_bytes

from conftest import free_port, image_bytes, noise_image, start_serve

EXTENSION = Path(__file__).resolve().parents[1] / "extension"
ARTIFACTS = Path(__file__).parent / "artifacts"


def test_extension_logic_with_node():
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    result = subprocess.run(
        [node, "--test", "tests/"], cwd=EXTENSION, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout


def test_manifest_is_mv3_for_chromium_and_firefox():
    manifest = json.loads((EXTENSION / "manifest.json").read_text())
    assert manifest["manifest_version"] == 3
    assert {"contextMenus", "storage", "scripting"} <= set(manifest["permissions"])
    assert manifest["background"]["service_worker"] == "background.js"
    assert manifest["background"]["scripts"] == ["background.js"]  # Firefox's MV3 form
    assert "gecko" in manifest["browser_specific_settings"]
    for name in ("background.js", "content.js", "options.html", "popup.html", "lib/logic.js"):
        assert (EXTENSION / name).is_file(), name


@pytest.fixture
def test_page(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    photo = image_bytes(noise_image(240, 180, 11))
    inline = image_bytes(noise_image(96, 96, 12))
    (site / "photo.png").write_bytes(photo)
    (site / "page.html").write_text(
        "<!doctype html><html><body style='font-family:sans-serif'><h1>Test page</h1>"
        "<img id='photo' src='photo.png' width='240' height='180'>"
        "<p style='margin-top:140px'>inline:</p>"
        f"<img id='inline' src='data:image/png;base64,{base64.b64encode(inline).decode()}'>"
        "</body></html>"
    )
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", photo, inline
    httpd.shutdown()


def _stored(base, token, sha):
    request = urllib.request.Request(
        f"{base}/v1/verdicts/{sha}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


CHECK = """async ({srcUrl, pageUrl}) => {
  const [tab] = await chrome.tabs.query({url: pageUrl});
  return await handleCheck({srcUrl, pageUrl}, tab);
}"""


@pytest.fixture
def attributing_serve(tmp_path, attributing_detector_path):
    """`ldmscan serve` with a detector whose verdicts carry a latent-space guess."""
    server = start_serve(tmp_path, attributing_detector_path)
    yield server
    if server.proc.poll() is None:
        server.proc.terminate()
        server.proc.wait(30)


def test_check_image_end_to_end_in_chromium(attributing_serve, test_page, tmp_path):
    serve = attributing_serve
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    playwright = pytest.importorskip("playwright.sync_api")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    base, token = serve.base, serve.token
    site, photo, inline = test_page
    page_url = f"{site}/page.html"
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=False,
            args=[
                "--headless=new",
                "--no-sandbox",
                "--disable-background-networking",
                f"--disable-extensions-except={EXTENSION}",
                f"--load-extension={EXTENSION}",
            ],
        )
        try:
            worker = (
                context.service_workers[0]
                if context.service_workers
                else context.wait_for_event("serviceworker", timeout=30_000)
            )
            worker.evaluate("s => chrome.storage.local.set(s)", {"serverUrl": base, "token": token})
            page = context.new_page()
            page.goto(page_url)

            state = worker.evaluate(CHECK, {"srcUrl": f"{site}/photo.png", "pageUrl": page_url})
            assert state["kind"] == "verdict", state
            stored = _stored(base, token, sha256_bytes(photo))
            (row,) = stored["verdicts"]
            assert state["verdict"]["label"] == row["label"]
            assert state["verdict"]["score"] == pytest.approx(row["probability"])
            assert stored["locations"][0]["context"]["page_url"] == page_url
            badge = page.locator(".ldmscan-badge").first
            badge.wait_for(timeout=10_000)
            text = badge.inner_text()
            assert f"{row['probability'] * 100:.1f}%" in text and "tiny-attributing" in text
            assert badge.get_attribute("data-label") == row["label"] == "generated"
            # the latent-space guess: in the API answer, the database and the panel alike
            attribution = state["verdict"]["attribution"]
            assert attribution["guess"] == row["attribution_guess"]
            assert row["attribution"]["probabilities"] == attribution["probabilities"]
            assert f"Latent space: {attribution['name']}" in text
            assert f"({attribution['probability'] * 100:.0f}%)" in text
            badge.click()
            opened = badge.inner_text()
            assert "Crop scores" in opened and "Latent-space probabilities" in opened

            data_url = page.locator("#inline").get_attribute("src")
            state = worker.evaluate(CHECK, {"srcUrl": data_url, "pageUrl": page_url})
            assert state["kind"] == "verdict" and state["verdict"]["sha256"] == sha256_bytes(inline)

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "extension-verdict.png"), full_page=True)

            worker.evaluate("s => chrome.storage.local.set(s)", {"token": "wrong"})
            state = worker.evaluate(CHECK, {"srcUrl": f"{site}/photo.png", "pageUrl": page_url})
            assert state["kind"] == "unauthorized"
            assert "Unauthorised" in page.locator(".ldmscan-badge").first.inner_text()

            worker.evaluate(
                "s => chrome.storage.local.set(s)",
                {"serverUrl": f"http://127.0.0.1:{free_port()}", "token": token},
            )
            state = worker.evaluate(CHECK, {"srcUrl": f"{site}/photo.png", "pageUrl": page_url})
            assert state["kind"] == "unreachable"

            recent = worker.evaluate(
                "async () => (await chrome.storage.local.get('recent')).recent"
            )
            assert len(recent) == 2 and recent[0]["sha256"] == sha256_bytes(inline)
        finally:
            context.close()
