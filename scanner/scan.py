"""`ldmscan scan`: read files, skip what this detector already scored, score the rest through
the shared engine, save verdicts in batches. Yields one outcome per file; the CLI draws it."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from ldmscan import imaging
from ldmscan.engine import CheckResult, Engine
from ldmscan.errors import ImageError
from ldmscan.storage import Location, Store

log = logging.getLogger(__name__)


class Readable(Protocol):
    """A file somewhere else (a bucket object): where it lives, when it changed, its bytes."""

    uri: str
    mtime: datetime | None

    def read(self) -> bytes: ...


Source = Path | str | Readable

READ_CHUNK = 64  # files read and looked up in the database together
SAVE_BATCH = 64  # verdicts written per transaction


@dataclass(frozen=True)
class Outcome:
    """What happened to one file."""

    uri: str
    sha256: str | None
    label: str
    score: float | None
    error: str | None
    skipped: bool
    result: CheckResult | None = None
    stored: dict[str, Any] | None = None

    def to_json(self, detector: str) -> dict[str, Any]:
        verdict = self.result.verdict if self.result else None
        return {
            "path": self.uri,
            "sha256": self.sha256,
            "label": self.label,
            "score": self.score,
            "detector": detector,
            "error": self.error,
            "skipped": self.skipped,
            "tries": verdict.tries if verdict else (self.stored or {}).get("tries"),
            "reasons": list(verdict.reasons) if verdict else (self.stored or {}).get("reasons"),
            "evidence": [e.to_dict() for e in verdict.evidence]
            if verdict
            else (self.stored or {}).get("evidence"),
        }


def _location(path: Path, source: str) -> Location:
    try:
        mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    except OSError:
        mtime = None
    return Location(uri=str(path.resolve()), source=source, mtime=mtime)


def _outcome(uri: str, result: CheckResult) -> Outcome:
    verdict = result.verdict
    return Outcome(
        uri=uri,
        sha256=verdict.sha256,
        label=verdict.label.value,
        score=verdict.probability,
        error=verdict.error,
        skipped=False,
        result=result,
    )


class Scanner:
    """Feeds files to an Engine and a Store; one instance per command run."""

    def __init__(
        self, engine: Engine, store: Store, *, rescan: bool = False, source: str = "scan"
    ) -> None:
        self.engine = engine
        self.store = store
        self.rescan = rescan
        self.source = source
        self.detector_id = store.detector_id(engine.detector)

    def scan(self, files: Iterable[Source]) -> Iterator[Outcome]:
        """Outcomes in input order, each yielded only once its verdict is in the database (so
        an action such as a webhook never reports a verdict a crash could lose)."""
        in_flight: deque[tuple[Location, Future[CheckResult]]] = deque()
        to_save: list[tuple[CheckResult, Location]] = []
        chunk: list[Path] = []

        def flush() -> Iterator[Outcome]:
            self.store.save(to_save, self.detector_id)
            done = [_outcome(location.uri, result) for result, location in to_save]
            to_save.clear()
            yield from done

        def drain(block: bool) -> Iterator[Outcome]:
            while in_flight and (block or in_flight[0][1].done()):
                location, future = in_flight.popleft()
                to_save.append((future.result(), location))
                if len(to_save) >= SAVE_BATCH:
                    yield from flush()

        for path in files:
            chunk.append(path)
            if len(chunk) >= READ_CHUNK:
                yield from self._submit_chunk(chunk, in_flight)
                chunk = []
                yield from drain(block=False)
            if len(in_flight) > 4 * READ_CHUNK:  # bounded memory on bursts of huge files
                yield from drain(block=True)
        if chunk:
            yield from self._submit_chunk(chunk, in_flight)
        yield from drain(block=True)
        yield from flush()

    def _submit_chunk(
        self, items: list[Source], in_flight: deque[tuple[Location, Future[CheckResult]]]
    ) -> Iterator[Outcome]:
        loaded: list[tuple[Source, Location, bytes, str]] = []
        for item in items:
            if isinstance(item, (str, Path)):
                location = _location(Path(item), self.source)
                read = partial(imaging.read_file, Path(item))
            else:  # a bucket object (scanner.buckets.RemoteObject)
                location = Location(item.uri, self.source, item.mtime)
                read = item.read
            try:
                data = read()
            except ImageError as exc:
                # Unreadable: nothing to hash, so nothing to key a database row on.
                log.warning("%s: %s", location.uri, exc)
                yield Outcome(location.uri, None, "error", None, str(exc), skipped=False)
                continue
            loaded.append((item, location, data, imaging.sha256_bytes(data)))
        stored = (
            {}
            if self.rescan
            else self.store.stored_verdicts((sha for *_, sha in loaded), self.detector_id)
        )
        seen_again: list[tuple[str, Location]] = []
        for _path, location, data, sha in loaded:
            previous = stored.get(sha)
            if previous is not None:
                seen_again.append((sha, location))
                yield Outcome(
                    location.uri,
                    sha,
                    previous["label"],
                    previous["probability"],
                    previous["error"],
                    skipped=True,
                    stored=previous,
                )
                continue
            in_flight.append((location, self.engine.submit(data, sha256=sha)))
        if seen_again:
            self.store.touch_locations(seen_again)
