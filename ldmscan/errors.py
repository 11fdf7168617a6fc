"""Exceptions with messages meant for the person running ldmscan."""


class LdmscanError(Exception):
    """Base class: anything ldmscan reports to a user without a traceback."""


class ImageError(LdmscanError):
    """An input file could not be turned into pixels (empty, truncated, not an image, too big)."""


class DetectorFileError(LdmscanError):
    """A detector file is missing, foreign or incompatible with this version."""


class DatabaseError(LdmscanError):
    """The verdict database cannot be used (for example it is newer than this program)."""
