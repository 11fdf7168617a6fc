"""`ldmscan watch` with a real watchdog observer on temporary folders, a real subprocess that
is killed with SIGKILL and restarted, and a real HTTP receiver for the webhook."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.imaging import sha256_bytes
from ldmscan.recording import Recorder
from ldmscan.scanner.actions import Quarantine, Webhook
from ldmscan.scanner.watch import FolderWatcher
from ldmscan.storage import Store
from ldmscan.verdict import Label

from conftest import image_bytes, noise_image


def wait_for(condition, timeout=60.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class Running:
    """A FolderWatcher on a background thread, stopped and joined on exit."""

    def __init__(self, folder, db_url, detector_path, **options):
        self.store = Store(db_url)
        self.engine = Engine(load_detector(detector_path), EngineOptions(device="cpu", tries=1))
        self.outcomes = []
        self.watcher = FolderWatcher(
            [folder],
            Recorder(self.engine, self.store, source="watch"),
            settle=0.3,
            on_outcome=self.outcomes.append,
            **options,
        )
        self.thread = threading.Thread(target=self.watcher.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        assert self.watcher.ready.wait(60), "watcher did not start"
        return self

    def __exit__(self, *exc):
        self.watcher.stop()
        self.thread.join(60)
        self.engine.close()
        self.store.close()

    def verdicts(self) -> int:
        return self.store.counts()["verdicts"]


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "uploads"
    path.mkdir()
    return path


def test_new_files_get_verdicts_only_when_complete(folder, tmp_path, tiny_detector_path):
    db = f"sqlite:///{tmp_path / 'w.db'}"
    with Running(folder, db, tiny_detector_path) as run:
        data = image_bytes(noise_image(200, 160, 1), "JPEG")
        with (folder / "slow.jpg").open("wb") as fh:  # written in two halves, 1 s apart
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(1.0)
            fh.write(data[len(data) // 2 :])
        (folder / "sub").mkdir()
        (folder / "sub" / "b.png").write_bytes(image_bytes(noise_image(90, 90, 2)))
        wait_for(lambda: run.verdicts() == 2, what="two verdicts")
        (row,) = run.store.verdicts_for(sha256_bytes(data))
        assert row["label"] != "error" and row["source"] == "watch"
        assert run.store.image(sha256_bytes(data[: len(data) // 2])) is None  # never half


def test_copies_moves_and_deletions(folder, tmp_path, tiny_detector_path):
    db = f"sqlite:///{tmp_path / 'w.db'}"
    data = image_bytes(noise_image(100, 100, 3))
    sha = sha256_bytes(data)
    with Running(folder, db, tiny_detector_path) as run:
        (folder / "a.png").write_bytes(data)
        wait_for(lambda: run.verdicts() == 1, what="first verdict")
        shutil.copy(folder / "a.png", folder / "copy.png")
        wait_for(lambda: len(run.store.locations_for(sha)) == 2, what="copy location")
        assert run.verdicts() == 1  # same content, not scored twice
        os.rename(folder / "copy.png", folder / "renamed.png")
        wait_for(
            lambda: any(
                loc["uri"].endswith("renamed.png") and loc["deleted_at"] is None
                for loc in run.store.locations_for(sha)
            ),
            what="rename",
        )
        (folder / "a.png").unlink()
        wait_for(
            lambda: any(
                loc["uri"].endswith("/a.png") and loc["deleted_at"] is not None
                for loc in run.store.locations_for(sha)
            ),
            what="deletion",
        )
        live = {
            Path(loc["uri"]).name for loc in run.store.locations_for(sha) if not loc["deleted_at"]
        }
        assert live == {"renamed.png"}
        assert run.verdicts() == 1


def test_catch_up_scores_files_written_while_down(folder, tmp_path, tiny_detector_path):
    db = f"sqlite:///{tmp_path / 'w.db'}"
    (folder / "before.png").write_bytes(image_bytes(noise_image(80, 80, 4)))
    with Running(folder, db, tiny_detector_path) as run:
        assert run.verdicts() == 1  # catch-up finished before ready
    (folder / "before.png").unlink()
    (folder / "later.png").write_bytes(image_bytes(noise_image(80, 80, 5)))
    with Running(folder, db, tiny_detector_path) as run:
        assert run.verdicts() == 2
        locations = run.store.live_locations(str(folder.resolve()))
        assert [Path(u).name for u in locations] == ["later.png"]


@pytest.mark.slow
def test_burst_of_2000_files(folder, tmp_path, tiny_detector_path):
    db = f"sqlite:///{tmp_path / 'w.db'}"
    with Running(folder, db, tiny_detector_path) as run:
        for i in range(2000):
            (folder / f"{i // 100:02d}").mkdir(exist_ok=True)
            (folder / f"{i // 100:02d}" / f"img{i:04d}.png").write_bytes(
                image_bytes(noise_image(40, 40, i))
            )
        wait_for(lambda: run.verdicts() == 2000, timeout=300, interval=1, what="2000 verdicts")
        assert run.store.counts()["images"] == 2000
        assert len(run.watcher.pending) == 0


def _ldmscan() -> str:
    return str(Path(sys.executable).with_name("ldmscan"))


def test_kill_9_and_restart_loses_and_doubles_nothing(folder, tmp_path, tiny_detector_path):
    db = f"sqlite:///{tmp_path / 'k.db'}"
    env = {**os.environ, "LDMSCAN_CONFIG": str(tmp_path / "none.toml")}
    command = [
        _ldmscan(),
        "watch",
        str(folder),
        "--db",
        db,
        "--detector",
        str(tiny_detector_path),
        "--tries",
        "1",
        "--settle",
        "0.3",
    ]
    total = 400
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert "watching" in proc.stderr.readline()
        time.sleep(1.0)
        for i in range(total):
            (folder / f"f{i:04d}.png").write_bytes(image_bytes(noise_image(48, 48, 1000 + i)))
        with Store(db) as store:
            wait_for(lambda: store.counts()["verdicts"] >= 20, what="some verdicts")
            proc.send_signal(signal.SIGKILL)  # in the middle of the burst
            proc.wait(30)
            before = store.counts()["verdicts"]
        assert before < total, "the kill came too late to test anything"
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        with Store(db) as store:
            wait_for(lambda: store.counts()["verdicts"] >= total, timeout=180, what="all verdicts")
            time.sleep(1.0)
            counts = store.counts()
            assert counts["verdicts"] == total and counts["images"] == total
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "stopped cleanly" in err
    finally:
        if proc.poll() is None:
            proc.kill()


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    fail_first = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Receiver.fail_first > 0:
            _Receiver.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Receiver.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_quarantine_and_webhook(folder, tmp_path):
    from conftest import make_tiny_detector

    always = make_tiny_detector(
        tmp_path / "always.safetensors", thresholds={"1": {"0.001": 0.0, "0.01": 0.0}}
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received, _Receiver.fail_first = [], 2  # the first two POSTs fail: retried
    threading.Thread(target=server.serve_forever, daemon=True).start()
    quarantine = tmp_path / "quarantine"
    db = f"sqlite:///{tmp_path / 'q.db'}"
    try:
        with Running(folder, db, always) as run:
            hook = Webhook(f"http://127.0.0.1:{server.server_port}/hook", "tiny", backoff=0.05)
            run.watcher.actions.extend([Quarantine(quarantine, [folder], run.store), hook])
            (folder / "x").mkdir()
            data = image_bytes(noise_image(70, 70, 8))
            (folder / "x" / "gen.png").write_bytes(data)
            wait_for(lambda: (quarantine / "x" / "gen.png").exists(), what="quarantine")
            assert not (folder / "x" / "gen.png").exists()
            hook.close()
        assert [r["label"] for r in _Receiver.received] == ["generated"]
        assert _Receiver.received[0]["sha256"] == sha256_bytes(data)
        with Store(db) as store:
            live = [
                loc["uri"]
                for loc in store.locations_for(sha256_bytes(data))
                if not loc["deleted_at"]
            ]
            assert live == [str(quarantine / "x" / "gen.png")]
    finally:
        server.shutdown()


def test_webhook_failure_never_blocks(tmp_path):
    from ldmscan.recording import Outcome

    hook = Webhook("http://127.0.0.1:9/unreachable", "tiny", retries=1, backoff=0.01, timeout=1)
    started = time.monotonic()
    for i in range(5):
        hook(Outcome(f"/x{i}", "0" * 64, Label.REAL, 0.1, None, False))
    assert time.monotonic() - started < 0.5
    hook.close()
    assert hook.failed == 5 and hook.sent == 0


@pytest.mark.postgres
def test_two_watchers_on_one_folder_share_one_postgresql(folder, postgres_url, tiny_detector_path):
    # two machines watching the same share: each file is scored by one of them (the first to
    # claim it; the other takes its verdict) and ends with one verdict and one location
    from sqlalchemy import func, select

    from ldmscan.storage.tables import locations, verdicts

    with (
        Running(folder, postgres_url, tiny_detector_path) as first,
        Running(folder, postgres_url, tiny_detector_path) as second,
    ):
        for i in range(30):
            (folder / f"{i}.png").write_bytes(image_bytes(noise_image(96, 96, 100 + i)))
        wait_for(lambda: first.verdicts() == 30, what="30 verdicts")
        wait_for(
            lambda: len(first.outcomes) >= 30 and len(second.outcomes) >= 30,
            what="both watchers to see every file",
        )
        with first.store.db.connect() as conn:
            assert conn.execute(select(func.count()).select_from(verdicts)).scalar_one() == 30
            assert conn.execute(select(func.count()).select_from(locations)).scalar_one() == 30
            per_image = conn.execute(
                select(verdicts.c.image_id, func.count()).group_by(verdicts.c.image_id)
            ).all()
        assert len(per_image) == 30 and all(n == 1 for _, n in per_image)
        scored = [o.uri for o in first.outcomes + second.outcomes if not o.skipped]
        assert sorted(scored) == sorted({o.uri for o in first.outcomes}), "scored twice"
        assert conn_count_claims(first.store) == 0  # every claim released with its verdict


def conn_count_claims(store) -> int:
    from sqlalchemy import func, select

    from ldmscan.storage.tables import claims

    with store.db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(claims)).scalar_one())


def test_a_claim_is_known_dead_only_for_this_hosts_vanished_processes():
    import socket

    from ldmscan.recording import claim_owner, owner_is_gone

    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = socket.gethostname()
    assert owner_is_gone(f"{host}:{int(child.stdout)}:abc")  # exited
    assert not owner_is_gone(claim_owner())  # this process
    assert not owner_is_gone(f"other-{host}:{int(child.stdout)}:abc")  # cannot tell: alive
    assert claim_owner() != claim_owner()  # two recorders in one process differ
