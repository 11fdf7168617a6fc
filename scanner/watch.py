"""`ldmscan watch`: a watchdog observer feeds settled files to the core's Recorder.

- Catch-up first: every file under the roots is reconciled with the database (unscored files are
  scored, vanished ones marked deleted), so nothing written while ldmscan was down is lost.
- A file is scored once complete, never half-written: with inotify, when its writer closes it
  (a file seen being written but never closed waits `WRITER_PATIENCE` x settle, in case the
  writer died); a file that appears without writes (moved in) or any file under --polling once
  its size and mtime have not changed for `settle` seconds.
- Copies are deduplicated by content hash (the Recorder skips known sha256); moves and renames
  move the location; deletions are recorded.
- Crash safety comes from the database: one verdict per (image, detector) by constraint, and the
  catch-up pass on restart scores whatever a killed run did not save.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.events import FileSystemEvent, FileSystemEventHandler

from ldmscan import imaging
from ldmscan.recording import Outcome, Recorder, location_uri
from ldmscan.walk import iter_candidates

from .actions import Action
from .dispatch import dispatch

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

log = logging.getLogger(__name__)

Event = tuple[str, str, str | None]  # (kind, path, destination of a move)

BATCH = 256  # settled files handed to the recorder at once (bounded memory on bursts)
WRITER_PATIENCE = 10  # a paused uploader is not a finished upload


@dataclass
class _Pending:
    size: int
    mtime: float
    since: float
    closed: bool = False
    writing: bool = False  # inotify saw writes and no close yet


class _EventSink(FileSystemEventHandler):
    """watchdog handler -> a thread-safe queue of (kind, path, dest). Paths are str: bytes from
    the observer are decoded the way os does (undecodable bytes kept as surrogates)."""

    def __init__(self, events: queue.Queue[Event]) -> None:
        self.events = events

    def dispatch(self, event: FileSystemEvent) -> None:
        src, dest = os.fsdecode(event.src_path), os.fsdecode(event.dest_path or b"") or None
        if event.is_directory:
            if event.event_type == "moved":  # a folder moved: rescan its new place
                self.events.put(("dir_moved", src, dest))
            return
        kind = event.event_type
        if kind in {"created", "modified", "closed"}:
            self.events.put((kind, src, None))
        elif kind == "deleted":
            self.events.put(("deleted", src, None))
        elif kind == "moved":
            self.events.put(("moved", src, dest))


class FolderWatcher:
    def __init__(
        self,
        roots: list[Path],
        recorder: Recorder,
        *,
        polling: bool = False,
        settle: float = 1.0,
        poll_interval: float = 1.0,
        actions: list[Action] | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.roots = [Path(r).resolve() for r in roots]
        for root in self.roots:
            if not root.is_dir():
                raise FileNotFoundError(f"not a folder: {root}")
        self.recorder = recorder
        self.polling = polling
        self.settle = settle
        self.poll_interval = poll_interval
        self.actions = actions or []
        self.on_outcome = on_outcome
        self.events: queue.Queue[Event] = queue.Queue()
        self.pending: dict[str, _Pending] = {}
        self.stop_event = threading.Event()
        self.ready = threading.Event()  # set once the observer runs and catch-up is done

    # -- outcomes ----------------------------------------------------------------------------

    def _score(self, paths: list[Path]) -> int:
        done = 0
        for start in range(0, len(paths), BATCH):
            done += dispatch(
                self.recorder.scan(paths[start : start + BATCH]), self.actions, self.on_outcome
            )
        return done

    # -- catch-up ----------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Reconcile each root with the database; returns how many files were looked at."""
        store = self.recorder.store
        seen = 0
        for root in self.roots:
            files = list(iter_candidates([root]))
            seen += self._score(files)
            present = {location_uri(f) for f in files}
            prefix = str(root) + os.sep
            for uri in store.live_locations(prefix):
                if uri not in present and not Path(uri).exists():
                    store.mark_deleted(uri)
        return seen

    # -- the loop ----------------------------------------------------------------------------

    def _observer(self) -> BaseObserver:
        if self.polling:
            from watchdog.observers.polling import PollingObserver

            return PollingObserver(timeout=self.poll_interval)
        from watchdog.observers import Observer

        return Observer()

    def run(self) -> None:
        """Watch until stop() (or a signal handler calling it); finishes in-flight work."""
        observer = self._observer()
        sink = _EventSink(self.events)
        for root in self.roots:
            observer.schedule(sink, str(root), recursive=True)
        observer.start()  # before catch-up, so nothing written during it is missed
        try:
            self.catch_up()
            self.ready.set()
            while not self.stop_event.is_set():
                self._drain_events(timeout=0.2)
                settled = self._settled()
                if settled:
                    self._score(settled)
        finally:
            observer.stop()
            observer.join(timeout=10)

    def stop(self) -> None:
        self.stop_event.set()

    def _drain_events(self, timeout: float) -> None:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._apply(*event)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return

    def _apply(self, kind: str, src: str, dest: str | None) -> None:
        store = self.recorder.store
        if kind in {"created", "modified", "closed"}:
            self._touch(
                Path(src), closed=kind == "closed", writing=kind == "modified" and not self.polling
            )
        elif kind == "deleted":
            self.pending.pop(src, None)
            store.mark_deleted(src)
        elif kind == "moved" and dest:
            self.pending.pop(src, None)
            if store.move_location(src, dest, self.recorder.source) == 0:
                self._touch(Path(dest))  # never scored under its old name: score it now
        elif kind == "dir_moved" and dest:
            for path in iter_candidates([dest]):
                old = str(Path(src) / Path(path).relative_to(dest))
                if store.move_location(old, str(path), self.recorder.source) == 0:
                    self._touch(Path(path))

    def _touch(self, path: Path, closed: bool = False, writing: bool = False) -> None:
        try:
            stat = path.stat()
        except OSError:
            self.pending.pop(str(path), None)
            return
        if path.name.startswith(".") or not path.is_file():
            return
        current = self.pending.get(str(path))
        if closed:
            writing = False
        elif current and current.writing:
            writing = True
        if current and (current.size, current.mtime) == (stat.st_size, stat.st_mtime):
            current.closed = current.closed or closed
            current.writing = writing and not current.closed
            return
        self.pending[str(path)] = _Pending(
            stat.st_size, stat.st_mtime, time.monotonic(), closed, writing
        )

    def _settled(self) -> list[Path]:
        """Files closed after writing, or unchanged for `settle` seconds."""
        now = time.monotonic()
        ready: list[Path] = []
        for name, info in list(self.pending.items()):
            path = Path(name)
            try:
                stat = path.stat()
            except OSError:
                del self.pending[name]
                continue
            if (stat.st_size, stat.st_mtime) != (info.size, info.mtime):
                self.pending[name] = _Pending(
                    stat.st_size, stat.st_mtime, now, writing=info.writing
                )
                continue
            patience = self.settle * (WRITER_PATIENCE if info.writing else 1)
            if info.closed or now - info.since >= patience:
                del self.pending[name]
                if imaging.looks_like_image(path):
                    ready.append(path)
        return sorted(ready)
