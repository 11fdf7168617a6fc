"""Recording verdicts, the one step every caller shares: read files, skip what this detector
already scored, score the rest through the shared engine, save verdicts in batches.

`scan` and both watchers feed it files or bucket objects; `serve` hands it the results of its
own requests (`Recorder.save`). Yields one outcome per file; callers draw or act on it."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from . import imaging
from .engine import Engine
from .errors import ImageError
from .paths import display_uri
from .results import CheckResult
from .storage import Location, Source, Store, StoredVerdict
from .verdict import Label

log = logging.getLogger(__name__)


class Readable(Protocol):
    """A file somewhere else (a bucket object): where it lives, when it changed, its bytes."""

    @property
    def uri(self) -> str: ...

    @property
    def mtime(self) -> datetime | None: ...

    def read(self) -> bytes: ...


Input = Path | str | Readable

READ_CHUNK = 64  # files read and looked up in the database together
SAVE_BATCH = 64  # verdicts written per transaction
# another process's claim on an image (it is scoring it) counts for this long, unless that
# process is seen to be dead (same host, pid gone: a watcher restarted after kill -9)
CLAIM_STALE_S = 60.0
CLAIM_POLL_S = 0.2  # how often a waiting file looks for the other process's verdict


def claim_owner() -> str:
    """host:pid:nonce: unique per Recorder, also for several in one process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_gone(owner: str) -> bool:
    """Whether a claim's process is known dead: only answerable for this host's processes."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, another user's
        return False
    return False


@dataclass(frozen=True)
class Outcome:
    """What happened to one file."""

    uri: str
    sha256: str | None
    label: Label
    score: float | None
    error: str | None
    skipped: bool
    result: CheckResult | None = None
    stored: StoredVerdict | None = None  # the verdict found in the database (skipped files)

    def to_json(self, detector: str) -> dict[str, Any]:
        verdict = self.result.verdict if self.result else None
        stored = self.stored
        tries: int | None
        attribution: dict[str, Any] | None = None
        if verdict is not None:
            tries, reasons = verdict.tries, list(verdict.reasons)
            evidence: list[dict[str, Any]] | None = [e.to_dict() for e in verdict.evidence]
            attribution = verdict.attribution.to_dict() if verdict.attribution else None
        elif stored is not None:
            tries, reasons, evidence = stored.tries, list(stored.reasons), list(stored.evidence)
            attribution = stored.attribution
        else:
            tries, reasons, evidence = None, None, None
        return {
            "path": display_uri(self.uri),
            "sha256": self.sha256,
            "label": self.label.value,
            "score": self.score,
            "detector": detector,
            "error": self.error,
            "skipped": self.skipped,
            "tries": tries,
            "reasons": reasons,
            "evidence": evidence,
            "attribution": attribution,
        }


def location_uri(path: Path) -> str:
    """Where a file is recorded: its resolved path, or (missing, a broken link, a loop) the
    absolute path it was named by."""
    try:
        return str(path.resolve(strict=True))
    except (OSError, RuntimeError):
        return os.path.abspath(path)


def _location(path: Path, source: Source) -> Location:
    try:
        mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    except OSError:
        mtime = None
    return Location(uri=location_uri(path), source=source, mtime=mtime)


def locate(item: Input, source: Source) -> tuple[Location, Callable[[], bytes]]:
    """Where an input is recorded, and how to read its bytes."""
    if isinstance(item, (str, Path)):
        return _location(Path(item), source), partial(imaging.read_file, Path(item))
    # a bucket object (ldmscan.scanner.buckets.RemoteObject)
    return Location(item.uri, source, item.mtime), item.read


def worth_retrying(stored: StoredVerdict) -> bool:
    """An error that settings or the moment caused (or one stored before errors had codes)."""
    return stored.label is Label.ERROR and (
        stored.error_code is None or stored.error_code in ImageError.RETRYABLE
    )


def outcome_of(uri: str, result: CheckResult) -> Outcome:
    verdict = result.verdict
    return Outcome(
        uri=uri,
        sha256=verdict.sha256,
        label=verdict.label,
        score=verdict.probability,
        error=verdict.error,
        skipped=False,
        result=result,
    )


class Recorder:
    """Feeds files to an Engine and a Store; one instance per command run (or server)."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        *,
        rescan: bool = False,
        source: Source = Source.SCAN,
    ) -> None:
        self.engine = engine
        self.store = store
        self.rescan = rescan
        self.source = Source(source)
        self.detector_id = store.detector_id(engine.detector)
        self.owner = claim_owner()
        # files whose image another process is scoring: (location, bytes, sha256)
        self._waiting: list[tuple[Location, bytes, str]] = []

    def save(self, items: list[tuple[CheckResult, Location]]) -> None:
        """Save results the caller scored itself (the server, which waits on each request)."""
        self.store.save(items, self.detector_id)

    def scan(self, files: Iterable[Input]) -> Iterator[Outcome]:
        """Outcomes in input order (files whose image another process was scoring come last),
        each yielded only once its verdict is in the database (so an action such as a webhook
        never reports a verdict a crash could lose)."""
        in_flight: deque[tuple[Location, Future[CheckResult]]] = deque()
        to_save: list[tuple[CheckResult, Location]] = []
        chunk: list[Input] = []

        def flush() -> Iterator[Outcome]:
            self.store.save(to_save, self.detector_id)
            done = [outcome_of(location.uri, result) for result, location in to_save]
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
        while self._waiting:  # another watcher claimed these: take its verdict, or take over
            waiting, self._waiting = self._waiting, []
            # skip_known even with rescan: the verdict to take is the other process's new one
            yield from self._known_or_claimed(waiting, in_flight, skip_known=True)
            yield from drain(block=True)
            yield from flush()
            if self._waiting:
                time.sleep(CLAIM_POLL_S)

    @staticmethod
    def _usable(stored: StoredVerdict | None) -> bool:
        """A stored verdict that stands (not an error the settings or the moment caused)."""
        return stored is not None and not worth_retrying(stored)

    def _submit_chunk(
        self, items: list[Input], in_flight: deque[tuple[Location, Future[CheckResult]]]
    ) -> Iterator[Outcome]:
        loaded: list[tuple[Location, bytes, str]] = []
        for item in items:
            location, read = locate(item, self.source)
            try:
                data = read()
            except ImageError as exc:
                # Unreadable: nothing to hash, so nothing to key a database row on.
                log.info("%s: %s", display_uri(location.uri), exc)
                yield Outcome(location.uri, None, Label.ERROR, None, str(exc), skipped=False)
                continue
            loaded.append((location, data, imaging.sha256_bytes(data)))
        yield from self._known_or_claimed(loaded, in_flight, skip_known=not self.rescan)

    def _known_or_claimed(
        self,
        loaded: list[tuple[Location, bytes, str]],
        in_flight: deque[tuple[Location, Future[CheckResult]]],
        *,
        skip_known: bool,
    ) -> Iterator[Outcome]:
        """Skip what this detector already scored (skip_known); submit what this process may
        claim; leave the rest (another process is scoring it) waiting."""
        stored = (
            self.store.stored_verdicts((sha for *_, sha in loaded), self.detector_id)
            if skip_known
            else {}
        )
        fresh = [entry for entry in loaded if not self._usable(stored.get(entry[2]))]
        claimed = self.store.claim(
            [sha for *_, sha in fresh],
            self.detector_id,
            self.owner,
            stale_after_s=CLAIM_STALE_S,
            owner_is_gone=owner_is_gone,
        )
        if skip_known and claimed:
            # a verdict saved between the lookup and the claim (its writer released the claim
            # in the same transaction): look again, or both processes would score the image
            late = self.store.stored_verdicts(claimed, self.detector_id)
            late = {sha: v for sha, v in late.items() if self._usable(v)}
            if late:
                self.store.release(late, self.detector_id, self.owner)
                stored.update(late)
                claimed -= set(late)
        seen_again: list[tuple[str, Location]] = []
        fresh = []
        for location, data, sha in loaded:
            previous = stored.get(sha)
            if self._usable(previous):
                assert previous is not None
                seen_again.append((sha, location))
                yield Outcome(
                    location.uri,
                    sha,
                    previous.label,
                    previous.probability,
                    previous.error,
                    skipped=True,
                    stored=previous,
                )
                continue
            fresh.append((location, data, sha))
        if seen_again:
            self.store.touch_locations(seen_again)
        for location, data, sha in fresh:
            if sha in claimed:
                in_flight.append((location, self.engine.submit(data, sha256=sha)))
            else:
                self._waiting.append((location, data, sha))
