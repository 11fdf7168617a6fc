"""`ldmscan scan --ray`: the verdicts of a local scan, computed by a Ray Data pipeline.

    inputs -> skip, in bulk, what the database already has for this detector (same location,
              same mtime) -> CPU tasks: read bytes + sha256 + decode + metadata + crops
              (`Preparer`, the engine's own decode side) -> an actor pool, one `Engine` per
              actor (`num_gpus=1` each when the cluster has GPUs) -> the driver writes the
              verdicts in batches to the one database (`Store.save`, idempotent: one verdict per
              image and detector).

Only the driver touches the database, and only with finished results, so a worker killed
mid-run (Ray retries its task, or restarts its actor) loses and doubles nothing; what was
written before a crash is skipped by the rerun. Everything an image can do wrong is caught in
the task and recorded as that image's error; an infrastructure failure Ray cannot retry ends the
run with the keys it left unscored and the reason.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..detector import Detector
from ..engine import EngineOptions
from ..errors import DistributedScanError, ImageError, LdmscanError
from ..recording import SAVE_BATCH, Input, Outcome, locate, outcome_of, worth_retrying
from ..results import CheckResult
from ..storage import Location, Source, Store
from ..verdict import Label

log = logging.getLogger(__name__)

PREPARE_BATCH = 16  # images per CPU task
SCORE_BATCH = 32  # images per actor call


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: join RAY_ADDRESS's cluster, or start a local one
    actors: int | None = None  # scoring actors; None: one per GPU, else 1
    num_cpus: int | None = None  # for a local cluster started here (tests, one machine)
    threads_per_actor: int | None = None  # the network's threads in each actor; None: 1 on CPU
    on_stats: Callable[[str], None] | None = None  # Ray Data's execution summary, when done


def ray_scan(
    items: Sequence[Input],
    store: Store,
    detector: Detector,
    options: EngineOptions,
    ray_options: RayOptions | None = None,
    *,
    rescan: bool = False,
    source: Source = Source.SCAN,
    on_stage: Callable[[str, int], None] | None = None,
) -> Iterator[Outcome]:
    """Outcomes as verdicts reach the database (not in input order); on_stage(name, count)
    reports progress: "listed", then "skipped" and "scored" as they happen."""
    if detector.path is None:
        raise LdmscanError("a distributed scan needs the detector as a file the workers can open")
    ray_options = ray_options or RayOptions()
    detector_id = store.detector_id(detector)
    located = [(item, locate(item, source)[0]) for item in items]
    if on_stage:
        on_stage("listed", len(located))
    known = {} if rescan else store.scored_locations([loc.uri for _, loc in located], detector_id)
    todo: list[tuple[Input, Location]] = []
    for item, location in located:
        seen = known.get(location.uri)
        if (
            seen is not None
            and not worth_retrying(seen.verdict)
            and (location.mtime is None or seen.mtime == location.mtime)
        ):
            verdict = seen.verdict
            yield Outcome(
                location.uri,
                seen.sha256,
                verdict.label,
                verdict.probability,
                verdict.error,
                skipped=True,
                stored=verdict,
            )
            if on_stage:
                on_stage("skipped", 1)
        else:
            todo.append((item, location))
    if not todo:
        return
    rows = _run_pipeline(todo, detector, options, ray_options)
    yield from _record(rows, todo, store, detector_id, on_stage)


def _run_pipeline(
    todo: list[tuple[Input, Location]],
    detector: Detector,
    options: EngineOptions,
    ray_options: RayOptions,
) -> Iterator[dict[str, Any]]:
    import ray
    import ray.data

    if not ray.is_initialized():
        ray.init(
            address=ray_options.address,
            num_cpus=ray_options.num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-dataset INFO lines
    gpus = int(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]
    actors = ray_options.actors or max(1, gpus)
    use_gpu = gpus > 0 and options.device != "cpu"
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver draws its own (rich)
    context.print_on_execution_start = False
    rows = [{"key": index, "item": pickle.dumps(item)} for index, (item, _) in enumerate(todo)]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // PREPARE_BATCH))
    engine_options = options if use_gpu else _cpu_options(options, ray_options.threads_per_actor)
    prepared = dataset.map_batches(
        _prepare_batch,
        batch_size=PREPARE_BATCH,
        batch_format="pandas",
        fn_kwargs={
            "card_json": detector.card.to_json(),
            "ref": detector.ref,
            "tries": options.tries or detector.card.default_tries,
            "max_pixels": options.max_pixels,
            "check_watermark": options.check_watermark,
        },
    )
    scored = prepared.map_batches(
        _Scorer,
        batch_size=SCORE_BATCH,
        batch_format="pandas",
        fn_constructor_kwargs={"path": str(detector.path), "options": engine_options},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if use_gpu else 0,
    )
    yield from scored.iter_rows()
    if ray_options.on_stats is not None:  # per-operator wall and CPU time (benchmarks)
        ray_options.on_stats(scored.stats())


def _cpu_options(options: EngineOptions, threads: int | None) -> EngineOptions:
    """A CPU actor decodes nothing itself (the tasks did) and, by default, runs its network on
    one thread: Ray gives it one CPU, and more threads per actor would fight the tasks' cores."""
    from dataclasses import replace

    return replace(options, device="cpu", decode_workers=1, threads=threads or 1)


def _record(
    rows: Iterator[dict[str, Any]],
    todo: list[tuple[Input, Location]],
    store: Store,
    detector_id: int,
    on_stage: Callable[[str, int], None] | None,
) -> Iterator[Outcome]:
    done: set[int] = set()
    to_save: list[tuple[CheckResult, Location]] = []

    def flush() -> Iterator[Outcome]:
        store.save(to_save, detector_id)
        finished = [outcome_of(location.uri, result) for result, location in to_save]
        to_save.clear()
        if on_stage:
            on_stage("scored", len(finished))
        yield from finished

    try:
        for row in rows:
            key = int(row["key"])
            if key in done:
                continue  # a retried task delivered it twice: the first one counts
            done.add(key)
            location = todo[key][1]
            unreadable = row.get("unreadable")
            if isinstance(unreadable, str) and unreadable:
                # no bytes, so no sha256 to key a row on: reported, not stored (as locally)
                yield Outcome(location.uri, None, Label.ERROR, None, unreadable, skipped=False)
                if on_stage:
                    on_stage("scored", 1)
                continue
            to_save.append((pickle.loads(row["result"]), location))
            if len(to_save) >= SAVE_BATCH:
                yield from flush()
    except Exception as exc:
        yield from flush()
        missing = [str(todo[k][1].uri) for k in range(len(todo)) if k not in done]
        raise DistributedScanError(missing, f"{type(exc).__name__}: {exc}") from exc
    yield from flush()
    missing = [str(todo[k][1].uri) for k in range(len(todo)) if k not in done]
    if missing:
        raise DistributedScanError(missing, "the pipeline returned fewer rows than it was given")


def _prepare_batch(batch: Any, **settings: Any) -> Any:
    """CPU task: read, hash, decode, metadata, crops for a batch of inputs."""
    import pandas as pd

    from .. import imaging
    from ..detector import DetectorCard
    from ..preparing import Preparer

    card = DetectorCard.from_json(settings["card_json"])
    preparer = Preparer(
        card,
        settings["ref"],
        max_pixels=settings["max_pixels"],
        check_watermark=settings["check_watermark"],
    )
    keys, results, unreadable = [], [], []
    for key, blob in zip(batch["key"], batch["item"], strict=True):
        item = pickle.loads(blob)
        _, read = locate(item, Source.SCAN)
        try:
            data = read()
        except ImageError as exc:
            keys.append(int(key))
            results.append(b"")
            unreadable.append(str(exc))
            continue
        try:
            prepared: object = preparer.prepare(data, settings["tries"], imaging.sha256_bytes(data))
        except Exception as exc:  # a decoder bug must cost one image, not the run
            log.exception("preparing %s failed", item)
            prepared = preparer.error_result(
                f"unexpected failure preparing the image: {exc}", None, len(data)
            )
        keys.append(int(key))
        results.append(pickle.dumps(prepared))
        unreadable.append("")
    return pd.DataFrame({"key": keys, "prepared": results, "unreadable": unreadable})


class _Scorer:
    """Actor: one Engine (the detector's network) scoring what the CPU tasks prepared."""

    def __init__(self, path: str, options: EngineOptions) -> None:
        from ..detector import load_detector
        from ..engine import Engine

        self.engine = Engine(load_detector(Path(path)), options)

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        from ..preparing import Prepared

        pending: list[Any] = []
        for blob, unreadable in zip(batch["prepared"], batch["unreadable"], strict=True):
            if unreadable:
                pending.append(None)
                continue
            prepared = pickle.loads(blob)
            if isinstance(prepared, Prepared):
                pending.append(self.engine.score_prepared(prepared))
            else:
                pending.append(prepared)  # already final: an error or metadata-only verdict
        results = []
        for entry in pending:
            if entry is None:
                results.append(b"")
            elif isinstance(entry, CheckResult):
                results.append(pickle.dumps(entry))
            else:
                results.append(pickle.dumps(entry.result()))
        return pd.DataFrame(
            {"key": list(batch["key"]), "result": results, "unreadable": list(batch["unreadable"])}
        )
