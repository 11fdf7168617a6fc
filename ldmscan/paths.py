"""File names are bytes on POSIX; the database and the terminal want UTF-8 text. Python hands
undecodable bytes over as surrogate escapes (os.fsdecode); these helpers turn such a str into a
text form UTF-8 can carry (each undecodable byte as \\xNN) and back to the exact bytes."""

from __future__ import annotations

import os


def display_uri(uri: str) -> str:
    """The UTF-8-safe text of a path or URI: itself when it encodes, else with every
    undecodable byte written as \\xNN (what is stored in `locations.uri` and printed)."""
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(uri).decode("utf-8", "backslashreplace")
    return uri


def raw_bytes(uri: str) -> bytes | None:
    """The exact bytes of a path whose name is not valid UTF-8 (None for every other path)."""
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(uri)
    return None


def from_stored(uri: str, raw: bytes | None) -> str:
    """A path as the OS needs it, from what `locations` holds."""
    return os.fsdecode(raw) if raw else uri
