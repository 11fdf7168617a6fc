"""End-to-end scan speed against the model-only ceiling and a naive one-image loop.

    python benchmarks/bench_scan.py --count 200            # synthetic 1 MP JPEGs
    python benchmarks/bench_scan.py --folder ../shared/data/dev/generated
    python benchmarks/bench_scan.py --memory-run 10000     # RSS over a long run
    python benchmarks/bench_scan.py --memory-run 2000 --memory-size 1152x864 --tries 1

All modes run in one process so their ratios are comparable on a noisy machine. Prints
Markdown rows for docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import git_revision, machine, rss_mb, synthetic_jpegs

from ldmscan import imaging, metadata
from ldmscan.detector import load_detector
from ldmscan.engine import Engine, EngineOptions
from ldmscan.recording import Recorder
from ldmscan.storage import Store
from ldmscan.walk import iter_candidates

NAIVE_STAGES = ("read", "hash", "decode", "metadata", "crops", "model", "db")


def model_ceiling(engine: Engine, files: list[Path], tries: int) -> tuple[float, int]:
    """Crops per second through the network with every crop already in memory, at the best of
    several batch sizes (so the ceiling is the network's, not a batch setting's); and that size."""
    import numpy as np

    prepared = []
    for path in files:
        pixels = imaging.decode(path.read_bytes()).pixels
        prepared.extend(
            c
            for c in engine.crops_for(pixels, tries)
            if c.shape[:2] == (engine.card.crop_size, engine.card.crop_size)
        )
    best = (0.0, 0)
    for batch in (4, 8, 16, 32, 64):
        engine.logits(np.stack(prepared[:batch]))  # warm-up
        started = time.perf_counter()
        for start in range(0, len(prepared), batch):
            engine.logits(np.stack(prepared[start : start + batch]))
        best = max(best, (len(prepared) / (time.perf_counter() - started), batch))
    return best


def end_to_end(engine: Engine, files: list[Path], db_dir: Path, name: str) -> dict:
    store = Store(f"sqlite:///{db_dir / f'{name}.db'}")
    saved = []
    original = store.save

    def timed_save(items, detector_id):
        started = time.perf_counter()
        original(items, detector_id)
        saved.append(time.perf_counter() - started)

    store.save = timed_save  # measure the database stage of the real Scanner
    scanner = Recorder(engine, store)
    timings: dict[str, list[float]] = {
        "decode_ms": [],
        "metadata_ms": [],
        "queue_ms": [],
        "model_ms": [],
    }
    started = time.perf_counter()
    count = 0
    for outcome in scanner.scan(files):
        count += 1
        if outcome.result:
            for key in timings:
                timings[key].append(outcome.result.verdict.timings.get(key, 0.0))
    elapsed = time.perf_counter() - started
    store.close()
    return {
        "images_per_s": count / elapsed,
        "seconds": elapsed,
        "stage_ms": {k: statistics.mean(v) for k, v in timings.items() if v},
        "db_ms_per_image": 1000 * sum(saved) / max(1, count),
    }


def naive_loop(engine: Engine, files: list[Path], db_dir: Path, tries: int) -> dict:
    """One image at a time: read, hash, decode, metadata, crops, model (batch of its own crops),
    one transaction per verdict. Each stage runs alone, so its time is its cost: the network's
    on both cores, every other stage's on one."""
    import numpy as np

    from ldmscan.results import ImageInfo
    from ldmscan.storage import Location

    store = Store(f"sqlite:///{db_dir / 'naive.db'}")
    detector_id = store.detector_id(engine.detector)
    stages = dict.fromkeys(NAIVE_STAGES, 0.0)

    def timed(stage: str, fn, *args):
        started = time.perf_counter()
        value = fn(*args)
        stages[stage] += time.perf_counter() - started
        return value

    started = time.perf_counter()
    for path in files:
        data = timed("read", path.read_bytes)
        digest = timed("hash", imaging.sha256_bytes, data)
        decoded = timed("decode", partial(imaging.decode, sha256=digest, keep_image=True), data)
        meta = timed("metadata", partial(metadata.extract, image=decoded.image), data)
        batch = timed("crops", engine.crops_for, decoded.pixels, tries)
        logits = timed("model", engine.logits, np.stack(batch))
        info = ImageInfo(digest, len(data), decoded.width, decoded.height)
        result = engine.result_from_logits([float(x) for x in logits], info, meta, tries)
        timed("db", store.save, [(result, Location(str(path)))], detector_id)
    elapsed = time.perf_counter() - started
    store.close()
    return {
        "images_per_s": len(files) / elapsed,
        "stage_ms": {k: v / len(files) * 1e3 for k, v in stages.items()},
    }


def overlap_bound(ceiling_crops_per_s: float, tries: int, other_core_ms: float) -> float:
    """Images/s if every non-network stage overlapped perfectly with the network on this
    machine's cores: cores / (network core-ms + other core-ms) per image. The network already
    keeps every core busy (core-ms = cores x its wall time), so overlapping only shares them."""
    cores = os.cpu_count() or 1
    network_core_ms = cores * 1e3 / ceiling_crops_per_s * tries
    return cores * 1e3 / (network_core_ms + other_core_ms)


def whole_process(
    folder: Path, detector: str | None, runtime: str, tries: int, device: str, work: Path
) -> float:
    """Wall seconds of `ldmscan scan FOLDER` in a new process, start-up included."""
    db = work / f"whole-{runtime}-{tries}.db"
    db.unlink(missing_ok=True)
    command = [
        *(sys.executable, "-m", "ldmscan", "scan", str(folder), "--db", f"sqlite:///{db}"),
        *("--runtime", runtime, "--tries", str(tries), "--device", device),
        *(("--detector", detector) if detector else ()),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", default=None, help="detector file (default: shipped)")
    parser.add_argument("--count", type=int, default=200, help="synthetic 1 MP JPEGs")
    parser.add_argument("--folder", help="scan this folder instead of synthetic JPEGs")
    parser.add_argument("--tries", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--runtime",
        nargs="+",
        default=["onnx", "torch"],
        help="runtimes to measure side by side (networks.RUNTIMES)",
    )
    parser.add_argument(
        "--whole-process",
        action="store_true",
        help="also time `ldmscan scan FOLDER` as a user runs it (a fresh process and database)",
    )
    parser.add_argument("--batch", type=int, help="engine max batch (default: the engine's)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--memory-run",
        type=int,
        default=0,
        help="also scan this many distinct files, reporting RSS as it goes",
    )
    parser.add_argument(
        "--memory-size",
        default="256x192",
        help="WIDTHxHEIGHT of the memory run's JPEGs (small by default so 10,000 stay cheap)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ldmscan-bench-"))
    files = (
        list(iter_candidates([args.folder]))
        if args.folder
        else synthetic_jpegs(work / "jpegs", args.count)
    )
    detector = load_detector(args.detector)
    print(
        f"machine: {machine()}; ldmscan {git_revision()}; detector {detector.card.name} "
        f"{detector.card.version}; {len(files)} files "
        f"({'folder ' + args.folder if args.folder else 'synthetic 1152x864 JPEG q90'})"
    )
    print()
    rows, stage_rows = [], []
    for runtime, tries in itertools.product(args.runtime, args.tries):
        with Engine(
            detector,
            EngineOptions(
                device=args.device,
                runtime=runtime,
                tries=tries,
                max_batch=args.batch,
                decode_workers=args.workers,
            ),
        ) as engine:
            ceiling, best_batch = model_ceiling(engine, files[: min(len(files), 64)], tries)
            per_image = ceiling / tries
            e2e = end_to_end(engine, files, work, f"e2e-{runtime}-{tries}")
            naive = naive_loop(engine, files, work, tries)
        mode = f"{runtime}, {tries} {'try' if tries == 1 else 'tries'}"
        stage_names = ("decode_ms", "metadata_ms", "queue_ms", "model_ms")
        stages = " / ".join(f"{e2e['stage_ms'].get(k, 0):.1f}" for k in stage_names)
        # every stage but the network, at its cost alone; the database at the scanner's batched
        # cost, not the naive loop's one transaction per image
        other_ms = e2e["db_ms_per_image"] + sum(
            v for k, v in naive["stage_ms"].items() if k not in ("model", "db")
        )
        bound = overlap_bound(ceiling, tries, other_ms)
        rows.append(
            f"| {mode} | {ceiling:.1f} (batch {best_batch}) | {per_image:.1f} | "
            f"{e2e['images_per_s']:.1f} | {e2e['images_per_s'] / per_image:.0%} | "
            f"{bound:.1f} ({bound / per_image:.0%}) | {naive['images_per_s']:.1f} | {stages} | "
            f"{e2e['db_ms_per_image']:.2f} |"
        )
        stage_rows.append(
            f"| {mode} | "
            + " | ".join(f"{naive['stage_ms'][k]:.2f}" for k in NAIVE_STAGES)
            + f" | {other_ms:.2f} |"
        )
    print(
        "| mode | model-only crops/s (best batch) | model-only images/s | end-to-end images/s | "
        "e2e / ceiling | overlap bound images/s (of ceiling) | naive loop images/s | "
        "decode / metadata / queue / model ms | db ms/image |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("Naive loop, ms per image, each stage alone (model on every core, the rest on one):")
    print()
    print("| mode | " + " | ".join(NAIVE_STAGES) + " | all but model (db batched) |")
    print("|---|" + "---|" * (len(NAIVE_STAGES) + 1))
    print("\n".join(stage_rows))
    if args.whole_process:
        folder = Path(args.folder) if args.folder else work / "jpegs"
        print()
        print(f"Whole process, `ldmscan scan {folder.name}/` ({len(files)} files, fresh database):")
        print()
        print("| runtime | tries | seconds | images/s |")
        print("|---|---|---|---|")
        for runtime, tries in itertools.product(args.runtime, args.tries):
            seconds = whole_process(folder, args.detector, runtime, tries, args.device, work)
            print(f"| {runtime} | {tries} | {seconds:.2f} | {len(files) / seconds:.1f} |")
    if args.memory_run:
        width, height = (int(n) for n in args.memory_size.split("x"))
        small = synthetic_jpegs(work / "memory", args.memory_run, width, height)
        with Engine(
            detector, EngineOptions(device=args.device, tries=1, max_batch=args.batch)
        ) as engine:
            store = Store(f"sqlite:///{work / 'memory.db'}")
            readings = []
            for i, _ in enumerate(Recorder(engine, store).scan(small), 1):
                if i % max(1, args.memory_run // 10) == 0:
                    readings.append((i, rss_mb()))
            store.close()
        print()
        print(
            "memory (files scanned: RSS MB): " + ", ".join(f"{i}: {mb:.0f}" for i, mb in readings)
        )


if __name__ == "__main__":
    main()
