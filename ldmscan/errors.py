"""Exceptions with messages meant for the person running ldmscan."""


class LdmscanError(Exception):
    """Base class: anything ldmscan reports to a user without a traceback."""


class ImageError(LdmscanError):
    """An input file could not be turned into pixels (empty, truncated, not an image, too big).

    `code` says which kind of failure, for callers that must tell them apart (the HTTP API's
    error codes, retrying failures that depend on settings) without reading the message.
    """

    NOT_AN_IMAGE = "not_an_image"  # empty, unknown format, truncated or broken
    TOO_MANY_PIXELS = "too_many_pixels"  # over --max-pixels (a setting: worth retrying)
    TOO_SMALL = "image_too_small"  # decodes, but smaller than one crop
    TOO_LARGE = "too_large"  # more bytes than the read limit
    UNREADABLE = "unreadable"  # the file system refused (permissions, vanished, loop, I/O)
    NOT_A_FILE = "not_a_file"  # a FIFO, socket, device or folder
    UNSUPPORTED = "unsupported_format"  # an image format this detector does not score (SVG, RAW)

    # Same bytes, same answer for the others; these depend on settings or on the moment, so a
    # stored error with one of them is tried again rather than skipped as already known.
    RETRYABLE = frozenset({TOO_MANY_PIXELS, TOO_LARGE, UNREADABLE})

    def __init__(self, message: str, code: str = NOT_AN_IMAGE) -> None:
        super().__init__(message)
        self.code = code


class DetectorFileError(LdmscanError):
    """A detector file is missing, foreign or incompatible with this version."""


class DatabaseError(LdmscanError):
    """The verdict database cannot be used (for example it is newer than this program)."""


class DistributedScanError(LdmscanError):
    """A distributed scan (`scan --ray`) stopped before every key was scored; `unscored` names
    them all (verdicts already written are kept: a rerun finishes the rest)."""

    def __init__(self, unscored: list[str], reason: str) -> None:
        shown = ", ".join(unscored[:5]) + (" ..." if len(unscored) > 5 else "")
        super().__init__(
            f"the Ray pipeline stopped ({reason}); {len(unscored)} keys were not scored: {shown}"
            " (verdicts already written are kept: run the scan again to finish)"
        )
        self.unscored = unscored
        self.reason = reason
