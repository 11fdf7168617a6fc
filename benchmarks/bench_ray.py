"""`scan --ray` against the single-process scan in one run, and the database's write rate.

    python benchmarks/bench_ray.py --count 200
    python benchmarks/bench_ray.py --count 200 --pg postgresql://root@127.0.0.1:5432/postgres

Rows: the single-process Recorder; the Ray pipeline (a local cluster of this machine's cores)
with 1 and 2 scoring actors, each on a fresh SQLite database; then verdict inserts/s into
PostgreSQL in the driver's batches (`Store.save`, 64 per transaction), the ceiling of one
database writer whatever the cluster's size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import git_revision, machine, synthetic_jpegs

from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.recording import SAVE_BATCH, Recorder
from ldmscan.scanner.distributed import RayOptions, ray_scan
from ldmscan.storage import Location, Store


def single_process(files: list[Path], work: Path, tries: int) -> tuple[float, list]:
    store = Store(f"sqlite:///{work / 'single.db'}")
    with Engine(load_detector(), EngineOptions(device="cpu", tries=tries)) as engine:
        started = time.perf_counter()
        outcomes = list(Recorder(engine, store).scan(files))
        elapsed = time.perf_counter() - started
    store.close()
    return len(files) / elapsed, [o.result for o in outcomes if o.result is not None]


def distributed(
    files: list[Path], work: Path, tries: int, actors: int, threads: int
) -> tuple[float, str]:
    store = Store(f"sqlite:///{work / f'ray-{actors}-{threads}.db'}")
    options = EngineOptions(device="cpu", tries=tries)
    stats: list[str] = []
    ray_options = RayOptions(actors=actors, threads_per_actor=threads, on_stats=stats.append)
    started = time.perf_counter()
    count = sum(1 for _ in ray_scan(files, store, load_detector(), options, ray_options))
    elapsed = time.perf_counter() - started
    store.close()
    assert count == len(files)
    return len(files) / elapsed, "\n".join(stats)


def postgres_inserts(admin_url: str, results: list, repeat: int) -> float:
    """Verdicts/s written in SAVE_BATCH transactions into a fresh database."""
    from sqlalchemy import create_engine, text

    name = f"ldmscan_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        store = Store(url)
        detector_id = store.detector_id(load_detector())
        written = 0
        started = time.perf_counter()
        for round_ in range(repeat):
            # distinct locations each round: every row is an insert or an upsert, as in a scan
            items = [(r, Location(f"s3://bench/{round_}/{i}.jpg")) for i, r in enumerate(results)]
            for start in range(0, len(items), SAVE_BATCH):
                store.save(items[start : start + SAVE_BATCH], detector_id)
            written += len(items)
        elapsed = time.perf_counter() - started
        store.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    return written / elapsed


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200, help="synthetic 1 MP JPEGs")
    parser.add_argument("--tries", type=int, default=1)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="per actor")
    parser.add_argument("--pg", help="PostgreSQL admin URL for the insert-rate row")
    parser.add_argument("--pg-repeat", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ldmscan-ray-"))
    files = synthetic_jpegs(work / "jpegs", args.count)
    print(f"machine: {machine()}; ldmscan {git_revision()}; {len(files)} synthetic 1152x864 JPEGs")
    print()
    print(f"| pipeline | images/s at {args.tries} {'try' if args.tries == 1 else 'tries'} |")
    print("|---|---|")
    rate, results = single_process(files, work, args.tries)
    print(f"| single process (Recorder, {os.cpu_count()} cores) | {rate:.1f} |", flush=True)
    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(
        f"| (ray.init of a local cluster: {time.perf_counter() - started:.1f} s, not counted) | |"
    )
    summaries = []
    for actors in args.actors:
        for threads in args.threads:
            rate, stats = distributed(files, work, args.tries, actors, threads)
            what = f"{actors} scoring actor{'s' if actors > 1 else ''}, {threads} thread(s) each"
            print(f"| Ray, {what} | {rate:.1f} |", flush=True)
            summaries.append((what, stats))
    ray.shutdown()
    for what, stats in summaries:
        print(f"\nRay Data's per-stage summary, {what}:\n\n```\n{stats}\n```")
    if args.pg:
        rate = postgres_inserts(args.pg, results, args.pg_repeat)
        print()
        print(f"PostgreSQL: {rate:.0f} verdicts/s written in batches of {SAVE_BATCH} (one writer)")


if __name__ == "__main__":
    main()
