"""Reliability runs for docs/RESULTS.md (issue 17): does every file get its verdict when things
go wrong?

  kill        `ldmscan watch` killed with SIGKILL again and again while files keep arriving,
              restarted each time; at the end every file must have exactly one verdict.
  concurrent  `scan`, `watch` and `serve` started together on one empty database (first use:
              all three migrate it at once), each fed its own files; every file must have its
              verdict and every process must exit cleanly.

  python benchmarks/reliability.py kill --files 2000 --kills 8
  python benchmarks/reliability.py concurrent --files 800 --db sqlite
  python benchmarks/reliability.py concurrent --files 800 --db postgresql://root@127.0.0.1/postgres

Scoring quality plays no part here, so the detector is a tiny random one in the real detector
file format (fast on any CPU); the processes, database and file system are the real ones.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

EXE = Path(sys.executable).with_name("ldmscan")


def tiny_detector(path: Path) -> Path:
    import torch

    from ldmscan.detector import DetectorCard, build_model, save_detector

    torch.manual_seed(0)
    card = DetectorCard(
        name="reliability",
        version="0",
        architecture="test_efficientnet",
        crop_size=64,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        default_tries=1,
        thresholds={"1": {"0.001": 0.9, "0.01": 0.7}},
    )
    save_detector(build_model(card), card, path, half=False)
    return path


def make_images(folder: Path, count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)
        path = folder / f"img{seed:02d}-{i:05d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def verdict_count(db: str) -> tuple[int, int]:
    from ldmscan.storage import Store

    with Store(db) as store:
        counts = store.counts()
    return counts["images"], counts["verdicts"]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """A command whose stderr goes to a file (`watch` prints a line per verdict: into a pipe
    nobody reads, it would block once the pipe is full)."""
    with log.open("a") as handle:
        return subprocess.Popen(
            [str(EXE), *args], env=env, stdout=subprocess.DEVNULL, stderr=handle, text=True
        )


def tail(log: Path, chars: int = 300) -> str:
    return log.read_text(errors="replace")[-chars:] if log.is_file() else ""


def run_kill(files: int, kills: int, work: Path) -> dict[str, object]:
    detector = tiny_detector(work / "tiny.safetensors")
    source = work / "incoming"
    images = make_images(source, files, seed=1)
    watched = work / "uploads"
    watched.mkdir()
    db = f"sqlite:///{work / 'kill.db'}"
    env = {**os.environ, "LDMSCAN_CONFIG": str(work / "none.toml")}
    command = ["watch", watched, "--db", db, "--detector", detector, "--settle", "0.2"]
    command = list(map(str, command))
    copied = 0
    started = time.perf_counter()
    batch = max(1, files // (kills + 1))
    for round_ in range(kills + 1):
        proc = start(command, env, work / "watch.log")
        for path in images[copied : copied + batch] if round_ < kills else images[copied:]:
            shutil.copyfile(path, watched / path.name)
            copied += 1
        time.sleep(random.uniform(0.5, 2.0))
        if round_ < kills:
            proc.send_signal(signal.SIGKILL)  # no clean-up, mid-batch
            proc.wait()
    deadline = time.time() + 600
    while verdict_count(db)[1] < files and time.time() < deadline:
        time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    images_n, verdicts_n = verdict_count(db)
    return {
        "mode": "kill",
        "files": files,
        "kills": kills,
        "images": images_n,
        "verdicts": verdicts_n,
        "lost": files - verdicts_n,
        "seconds": round(time.perf_counter() - started, 1),
        "final_exit": proc.returncode,
    }


def _fresh_postgres(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = f"ldmscan_reliability_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{admin_url.rsplit('/', 1)[0]}/{name}", name


def run_concurrent(files: int, db_arg: str, work: Path) -> dict[str, object]:
    detector = tiny_detector(work / "tiny.safetensors")
    per = files // 3
    scan_dir = work / "scan"
    make_images(scan_dir, per, seed=2)
    watch_dir = work / "watch"
    watch_dir.mkdir()
    to_watch = make_images(work / "watch-src", per, seed=3)
    to_post = make_images(work / "post-src", files - 2 * per, seed=4)
    pg_name = None
    if db_arg == "sqlite":
        db = f"sqlite:///{work / 'concurrent.db'}"
    else:
        db, pg_name = _fresh_postgres(db_arg)
    env = {
        **os.environ,
        "LDMSCAN_CONFIG": str(work / "none.toml"),
        "LDMSCAN_TOKEN_FILE": str(work / "token"),
    }
    port = _free_port()
    common = ["--db", db, "--detector", str(detector)]
    started = time.perf_counter()
    logs = {name: work / f"{name}.log" for name in ("serve", "watch", "scan")}
    serve = start(["serve", "--port", str(port), "--no-auth", *common], env, logs["serve"])
    watch = start(["watch", str(watch_dir), "--settle", "0.2", *common], env, logs["watch"])
    scan = start(["scan", str(scan_dir), *common], env, logs["scan"])
    posted: list[int] = []

    def post_all() -> None:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{base}/v1/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        for path in to_post:
            request = urllib.request.Request(
                f"{base}/v1/check", data=path.read_bytes(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                posted.append(response.status)

    poster = threading.Thread(target=post_all)
    poster.start()
    for path in to_watch:
        shutil.copyfile(path, watch_dir / path.name)
    scan_exit = scan.wait(600)
    poster.join(600)
    deadline = time.time() + 600
    while verdict_count(db)[1] < files and time.time() < deadline:
        time.sleep(1)
    for proc in (watch, serve):
        proc.send_signal(signal.SIGTERM)
    exits = {"scan": scan_exit, "watch": watch.wait(60), "serve": serve.wait(60)}
    images_n, verdicts_n = verdict_count(db)
    errors = {name: tail(logs[name]) for name in exits if exits[name] != 0}
    if pg_name:
        import psycopg

        with psycopg.connect(db_arg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    return {
        "mode": "concurrent",
        "db": "sqlite" if db_arg == "sqlite" else "postgresql",
        "files": files,
        "verdicts": verdicts_n,
        "images": images_n,
        "lost": files - verdicts_n,
        "http_200": sum(1 for s in posted if s == 200),
        "exits": exits,
        "stderr_of_failures": errors,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("mode", choices=["kill", "concurrent"])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--db", default="sqlite", help="sqlite, or a PostgreSQL admin URL")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ldmscan-reliability-"))
    try:
        if args.mode == "kill":
            result = run_kill(args.files, args.kills, work)
        else:
            result = run_concurrent(args.files, args.db, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
