"""What happens after a verdict: quarantine the file, tell a webhook. Both are optional and
neither may hold up scoring."""

from __future__ import annotations

import json
import logging
import queue
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from ldmscan.recording import Outcome
from ldmscan.storage import Source, Store
from ldmscan.verdict import Label

log = logging.getLogger(__name__)


class Action(Protocol):
    def __call__(self, outcome: Outcome) -> None: ...

    def close(self) -> None: ...


class Quarantine:
    """Move files labelled generated out of the watched folder, keeping their relative path."""

    def __init__(
        self, target: Path, roots: list[Path], store: Store, source: Source = Source.WATCH
    ) -> None:
        self.target = Path(target).resolve()
        self.roots = [Path(r).resolve() for r in roots]
        self.store = store
        self.source = source
        self.target.mkdir(parents=True, exist_ok=True)

    def __call__(self, outcome: Outcome) -> None:
        if outcome.label is not Label.GENERATED:
            return
        path = Path(outcome.uri)
        if not path.is_file():
            return
        root = next((r for r in self.roots if path.is_relative_to(r)), path.parent)
        destination = self.target / path.relative_to(root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        if destination.exists():
            destination = destination.with_name(
                f"{destination.stem}.{(outcome.sha256 or '')[:8]}{destination.suffix}"
            )
        shutil.move(str(path), str(destination))
        self.store.move_location(str(path), str(destination), self.source)
        log.info("quarantined %s -> %s", path, destination)

    def close(self) -> None:
        pass


class Webhook:
    """POST each verdict as JSON from a background thread; retries with exponential backoff.
    A dead receiver costs log lines, never scoring time."""

    def __init__(
        self,
        url: str,
        detector: str,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 10.0,
        max_queue: int = 10_000,
    ) -> None:
        self.url = url
        self.detector = detector
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="ldmscan-webhook", daemon=True)
        self._thread.start()

    def __call__(self, outcome: Outcome) -> None:
        try:
            self._queue.put_nowait(outcome.to_json(self.detector))
        except queue.Full:
            self.failed += 1
            log.warning("webhook queue full; dropped verdict for %s", outcome.uri)

    def _post(self, payload: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "ldmscan-webhook"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            if response.status >= 300:
                raise OSError(f"webhook answered HTTP {response.status}")

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            for attempt in range(self.retries + 1):
                try:
                    self._post(payload)
                    self.sent += 1
                    break
                except (OSError, urllib.error.URLError) as exc:
                    if attempt == self.retries:
                        self.failed += 1
                        log.warning("webhook %s failed for %s: %s", self.url, payload["path"], exc)
                    else:
                        time.sleep(self.backoff * 2**attempt)

    def close(self) -> None:
        """Deliver what is queued (bounded by the retry schedule), then stop."""
        self._queue.put(None)
        self._thread.join()
