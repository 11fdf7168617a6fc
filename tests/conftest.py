"""Shared fixtures: real SQLite files and a real PostgreSQL database, tiny detectors saved through
the real detector format, images written with Pillow."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldmscan.detector import DetectorCard, build_model, save_detector

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
if not SHARED.is_dir():  # CI: shared/ sits beside the clone
    SHARED = Path(os.environ.get("LDMSCAN_SHARED", SHARED))
MODELS_DIR = SHARED / "models"
DEV_DIR = SHARED / "data" / "dev"
TRAIN_REAL = SHARED / "data" / "train" / "real"


@pytest.fixture(autouse=True, scope="session")
def _private_network_cache(tmp_path_factory):
    """OpenVINO's compiled networks go to a folder of the test run, not the user's cache."""
    os.environ["LDMSCAN_CACHE"] = str(tmp_path_factory.mktemp("cache"))


PG_ADMIN_URL = os.environ.get("LDMSCAN_TEST_PG", "postgresql://root@127.0.0.1:5432/postgres")

TINY_THRESHOLDS = {
    "1": {"0.001": 0.9, "0.005": 0.8, "0.01": 0.7, "0.02": 0.6, "0.05": 0.5},
    "3": {"0.001": 0.85, "0.005": 0.75, "0.01": 0.65, "0.02": 0.55, "0.05": 0.45},
}


def tiny_card(**overrides) -> DetectorCard:
    values = dict(
        name="tiny-test",
        version="0.0.1",
        architecture="test_efficientnet",
        crop_size=64,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        default_tries=3,
        thresholds={k: dict(v) for k, v in TINY_THRESHOLDS.items()},
    )
    values.update(overrides)
    return DetectorCard(**values)


def make_tiny_detector(path: Path, seed: int = 0, **overrides) -> Path:
    import torch

    torch.manual_seed(seed)
    card = tiny_card(**overrides)
    model = build_model(card)
    save_detector(model, card, path, half=False)
    return path


ATTRIBUTION_CLASSES = ["sd1-2", "sdxl", "sd3", "flux1", "flux2"]


def make_attributing_detector(
    path: Path, seed: int = 0, *, detection_bias: float = 8.0, confidence: float = 0.0
) -> Path:
    """A tiny detector with an attribution head whose detection bias flags every image (so
    that its verdicts carry a guess); random head weights."""
    import torch

    torch.manual_seed(seed)
    card = tiny_card(
        name="tiny-attributing",
        attribution={"classes": list(ATTRIBUTION_CLASSES), "confidence": confidence},
    )
    model = build_model(card)
    with torch.no_grad():
        model.get_classifier().bias[0] = detection_bias
        torch.nn.init.normal_(model.attribution_head.weight, std=2.0)  # confident, varied guesses
    save_detector(model, card, path, half=False)
    return path


@pytest.fixture(scope="session")
def attributing_detector_path(tmp_path_factory) -> Path:
    return make_attributing_detector(
        tmp_path_factory.mktemp("detector") / "attributing.safetensors"
    )


@pytest.fixture(scope="session")
def tiny_detector_path(tmp_path_factory) -> Path:
    return make_tiny_detector(tmp_path_factory.mktemp("detector") / "tiny.safetensors")


def noise_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth gradients plus noise: something like a photo, different for every seed
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * (seed + 1)) % 256, (y * 3) % 256, ((x + y) * 2) % 256], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def image_bytes(pixels: np.ndarray, fmt: str = "PNG", mode: str | None = None, **save) -> bytes:
    image = Image.fromarray(pixels)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Six good images of several formats and sizes, and one of each kind of broken file."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(image_bytes(noise_image(200, 150, 1)))
    (folder / "b.jpg").write_bytes(image_bytes(noise_image(300, 220, 2), "JPEG", quality=90))
    (folder / "sub" / "c.webp").write_bytes(image_bytes(noise_image(128, 128, 3), "WEBP"))
    (folder / "sub" / "disguised.dat").write_bytes(image_bytes(noise_image(96, 80, 4), "JPEG"))
    (folder / "palette.gif").write_bytes(image_bytes(noise_image(100, 90, 5), "GIF", mode="P"))
    (folder / "small.png").write_bytes(image_bytes(noise_image(40, 48, 6)))
    # broken ones
    (folder / "empty.jpg").write_bytes(b"")
    good = image_bytes(noise_image(256, 256, 7), "JPEG")
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "notes.jpg").write_bytes(b"this is a text file with a .jpg name\n" * 10)
    (folder / "readme.txt").write_text("not an image and not named like one: ignored\n")
    return folder


GOOD_IN_FOLDER = 6
BROKEN_IN_FOLDER = 3


def _postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(
            PG_ADMIN_URL.replace("postgresql://", "postgresql://", 1), connect_timeout=3
        ):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> str:
    if not _postgres_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (CI must start it)")
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    return PG_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh database on the real server, dropped afterwards."""
    import psycopg

    name = f"ldmscan_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'verdicts.db'}"
    return request.getfixturevalue("postgres_url")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServeProcess:
    """A real `ldmscan serve` subprocess on a loopback port, started by the `serve` fixture."""

    proc: subprocess.Popen
    base: str
    token_file: Path
    env: dict[str, str]
    exe: Path

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()


def start_serve(tmp_path: Path, detector: Path, *extra: str) -> ServeProcess:
    """A real `ldmscan serve` with `detector` and its own SQLite file, once /v1/health answers."""
    port = free_port()
    token_file = tmp_path / "token"
    env = {
        **os.environ,
        "LDMSCAN_TOKEN_FILE": str(token_file),
        "LDMSCAN_CONFIG": str(tmp_path / "none.toml"),
    }
    exe = Path(sys.executable).with_name("ldmscan")
    command = [str(exe), "serve", "--port", str(port), "--db", f"sqlite:///{tmp_path / 's.db'}"]
    command += ["--detector", str(detector), "--tries", "1", *extra]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/v1/health", timeout=2).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(proc.stderr.read()) from None
            time.sleep(0.3)
    return ServeProcess(proc, base, token_file, env, exe)


@pytest.fixture
def serve(tmp_path, tiny_detector_path):
    """`ldmscan serve` with the tiny detector, stopped after the test."""
    server = start_serve(tmp_path, tiny_detector_path)
    yield server
    proc = server.proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(30)
