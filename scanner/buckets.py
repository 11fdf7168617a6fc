"""Buckets (s3://bucket/prefix and other fsspec URLs): listing, reading, and a polling watcher
that finds new or changed keys by diffing listings on ETag / LastModified."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

from ldmscan import imaging
from ldmscan.errors import ImageError
from ldmscan.recording import Outcome, Recorder

from .actions import Action
from .dispatch import dispatch

log = logging.getLogger(__name__)


def is_url(target: str) -> bool:
    return "://" in str(target)


@dataclass(frozen=True)
class RemoteObject:
    """One object in a bucket; what the Recorder needs of a file."""

    uri: str
    fs: Any
    path: str
    size: int
    etag: str
    mtime: datetime | None

    def read(self, max_bytes: int = imaging.DEFAULT_MAX_BYTES) -> bytes:
        if self.size > max_bytes:
            raise ImageError(
                f"object is {self.size} bytes, over the {max_bytes} limit",
                ImageError.TOO_LARGE,
            )
        try:
            return bytes(self.fs.cat_file(self.path))
        except Exception as exc:  # network errors, permissions, vanished keys
            raise ImageError(f"cannot read object: {exc}", ImageError.UNREADABLE) from exc


def open_bucket(url: str, endpoint_url: str | None = None) -> tuple[Any, str]:
    """(filesystem, root path) for an fsspec URL; credentials come from the usual AWS variables."""
    import fsspec

    protocol = url.split("://", 1)[0]
    options: dict[str, Any] = {}
    if protocol == "s3" and endpoint_url:
        options["endpoint_url"] = endpoint_url
    fs, root = fsspec.core.url_to_fs(url, **options)
    return fs, root.rstrip("/")


def _mtime(info: dict[str, Any]) -> datetime | None:
    value = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    return None


def list_objects(url: str, endpoint_url: str | None = None) -> list[RemoteObject]:
    """Every object under the URL that looks like an image by name (content is checked when
    it is read: a bucket listing cannot sniff bytes without downloading them)."""
    fs, root = open_bucket(url, endpoint_url)
    protocol = url.split("://", 1)[0]
    fs.invalidate_cache()
    found = fs.find(root, detail=True) if fs.isdir(root) else {root: fs.info(root)}
    objects = []
    for path, info in sorted(found.items()):
        if info.get("type") == "directory":
            continue
        name = PurePosixPath(path).name
        if (
            name.startswith(".")
            or PurePosixPath(name).suffix.lower() not in imaging.IMAGE_EXTENSIONS
        ):
            continue
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
        objects.append(
            RemoteObject(
                uri=f"{protocol}://{path}",
                fs=fs,
                path=path,
                size=int(info.get("size") or 0),
                etag=etag,
                mtime=_mtime(info),
            )
        )
    return objects


class BucketWatcher:
    """Poll a bucket every `interval` seconds; score new or changed keys, record deleted ones.

    The first listing is the catch-up: keys whose location and LastModified are already in the
    database are not downloaded again.
    """

    def __init__(
        self,
        urls: list[str],
        recorder: Recorder,
        *,
        interval: float = 30.0,
        endpoint_url: str | None = None,
        actions: list[Action] | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.urls = urls
        self.recorder = recorder
        self.interval = interval
        self.endpoint_url = endpoint_url
        self.actions = actions or []
        self.on_outcome = on_outcome
        self.seen: dict[str, tuple[str, datetime | None]] = {}
        self.stop_event = threading.Event()
        self.ready = threading.Event()

    def poll_once(self) -> int:
        listing: dict[str, RemoteObject] = {}
        for url in self.urls:
            for obj in list_objects(url, self.endpoint_url):
                listing[obj.uri] = obj
        if not self.seen:  # first pass: trust what the database already knows
            known = {}
            for url in self.urls:
                known.update(self.recorder.store.live_location_times(url))
            changed = [o for o in listing.values() if known.get(o.uri) != o.mtime]
        else:
            changed = [o for o in listing.values() if self.seen.get(o.uri) != (o.etag, o.mtime)]
        for uri in set(self.seen) - set(listing):
            self.recorder.store.mark_deleted(uri)
        self.seen = {uri: (o.etag, o.mtime) for uri, o in listing.items()}
        return dispatch(self.recorder.scan(changed), self.actions, self.on_outcome)

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.poll_once()
            except Exception:  # a flaky endpoint must not end the watch
                log.exception("listing %s failed; retrying in %ss", self.urls, self.interval)
            self.ready.set()
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()


def iter_remote(urls: list[str], endpoint_url: str | None = None) -> Iterator[RemoteObject]:
    for url in urls:
        yield from list_objects(url, endpoint_url)
