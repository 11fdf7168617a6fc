"""`ldmscan scan --ray` on a real local Ray cluster (2 CPUs, started here), against moto's S3
server and the real databases: the same verdicts as a local scan, a rerun scores nothing, and a
scoring actor killed with SIGKILL mid-run still leaves every key scored exactly once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from test_buckets import bucket, put, s3_endpoint  # noqa: F401 (fixtures)

from ldmscan.cli import cli
from ldmscan.detector import load_detector
from ldmscan.engine import EngineOptions
from ldmscan.scanner.distributed import RayOptions, ray_scan
from ldmscan.storage import Store
from ldmscan.storage.tables import locations, verdicts
from ldmscan.walk import iter_candidates

from conftest import image_bytes, noise_image

ray = pytest.importorskip("ray")

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": S3_ENV},  # the workers read the moto bucket too
    )
    yield
    ray.shutdown()


def _folder(tmp_path: Path, count: int, size: tuple[int, int] = (160, 120)) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    for i in range(count):
        fmt = "PNG" if i % 2 else "JPEG"
        (folder / f"{i}.{fmt.lower()}").write_bytes(image_bytes(noise_image(*size, i), fmt))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    return folder


def _scan_json(args: list[str]) -> dict[str, dict]:
    result = CliRunner().invoke(cli, ["scan", *args, "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {row["path"]: row for row in rows}


def _same_verdicts(distributed: dict[str, dict], local: dict[str, dict]) -> None:
    assert distributed.keys() == local.keys()
    for path, row in local.items():
        other = distributed[path]
        assert (other["label"], other["sha256"], other["error"]) == (
            row["label"],
            row["sha256"],
            row["error"],
        ), path
        if row["score"] is None:
            assert other["score"] is None
        else:
            assert other["score"] == pytest.approx(row["score"], abs=1e-5), path


@pytest.mark.parametrize(
    "db_kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_ray_scan_gives_the_local_verdicts_and_a_rerun_scores_nothing(
    ray_cluster, tmp_path, tiny_detector_path, db_kind, request
):
    folder = _folder(tmp_path, 10)
    db = (
        f"sqlite:///{tmp_path / 'ray.db'}"
        if db_kind == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    common = [str(folder), "--detector", str(tiny_detector_path), "--tries", "3"]
    local = _scan_json([*common, "--db", f"sqlite:///{tmp_path / 'local.db'}"])
    distributed = _scan_json([*common, "--db", db, "--ray"])
    _same_verdicts(distributed, local)
    assert not any(row["skipped"] for row in distributed.values())
    again = _scan_json([*common, "--db", db, "--ray"])
    assert all(row["skipped"] for row in again.values())
    _same_verdicts(again, local)
    with Store(db) as store, store.db.connect() as conn:
        # the broken file has a verdict (error) too: 11 images, one verdict each
        assert conn.execute(select(func.count()).select_from(verdicts)).scalar_one() == 11


def test_ray_scan_of_a_bucket(ray_cluster, bucket, s3_endpoint, tmp_path, tiny_detector_path):  # noqa: F811
    client, name = bucket
    for i in range(4):
        put(client, name, f"in/{i}.png", image_bytes(noise_image(96, 96, i)))
    put(client, name, "in/empty.jpg", b"")
    common = [f"s3://{name}/in", "--endpoint-url", s3_endpoint, "--detector"]
    common += [str(tiny_detector_path), "--tries", "1"]
    local = _scan_json([*common, "--db", f"sqlite:///{tmp_path / 'l.db'}"])
    distributed = _scan_json([*common, "--db", f"sqlite:///{tmp_path / 'r.db'}", "--ray"])
    _same_verdicts(distributed, local)
    assert distributed[f"s3://{name}/in/empty.jpg"]["label"] == "error"


def _scoring_actor_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"MapWorker" in command:
            found.append(int(entry.name))
    return found


def test_a_killed_scoring_actor_loses_and_doubles_nothing(ray_cluster, tmp_path):
    # the shipped detector at 5 tries on 1-MP images: a few seconds of scoring, time to kill
    folder = _folder(tmp_path, 40, size=(1152, 864))
    files = list(iter_candidates([folder]))
    detector = load_detector()
    store = Store(f"sqlite:///{tmp_path / 'kill.db'}")
    killed: list[int] = []
    finished = threading.Event()

    def kill_one_actor() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not finished.is_set():
            pids = _scoring_actor_pids()
            if pids:
                time.sleep(0.5)  # let it take work first
                if not finished.is_set():
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_actor)
    killer.start()
    try:
        outcomes = list(
            ray_scan(files, store, detector, EngineOptions(device="cpu", tries=5), RayOptions())
        )
    finally:
        finished.set()
        killer.join()
    assert killed, "the scan ended before an actor could be killed: the test proved nothing"
    assert len(outcomes) == len(files) == 41
    assert len({o.uri for o in outcomes}) == 41
    with store.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(verdicts)).scalar_one() == 41
        assert conn.execute(select(func.count()).select_from(locations)).scalar_one() == 41
    store.close()


def test_a_pipeline_that_dies_names_every_key_it_left_and_keeps_the_rest(
    tmp_path, tiny_detector_path
):
    # the driver's side of a failure Ray could not retry: the rows that arrived are saved, the
    # error names exactly the keys that did not
    import pickle

    from ldmscan.engine import Engine
    from ldmscan.errors import DistributedScanError
    from ldmscan.scanner.distributed import _record
    from ldmscan.storage import Location

    folder = _folder(tmp_path, 4)
    files = sorted(iter_candidates([folder]))
    todo = [(path, Location(str(path))) for path in files]
    detector = load_detector(tiny_detector_path)
    with Engine(detector, EngineOptions(device="cpu", tries=1)) as engine:
        results = [engine.check_path(path) for path in files[:2]]
    store = Store(f"sqlite:///{tmp_path / 'd.db'}")

    def rows_then_a_lost_node():
        for key, result in enumerate(results):
            yield {"key": key, "result": pickle.dumps(result), "unreadable": ""}
        raise RuntimeError("node lost")

    saved = []
    with pytest.raises(DistributedScanError) as failure:
        for outcome in _record(
            rows_then_a_lost_node(), todo, store, store.detector_id(detector), None
        ):
            saved.append(outcome.uri)
    assert failure.value.unscored == [str(path) for path in files[2:]]
    assert "node lost" in str(failure.value)
    assert saved == [str(path) for path in files[:2]]
    assert store.counts()["verdicts"] == 2
    store.close()
