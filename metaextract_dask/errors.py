"""Error hierarchy.

Every error names the file it is about and also subclasses the builtin a user
would catch anyway (zarr-python style), so ``except OSError`` keeps working.
"""

from __future__ import annotations


class MetaExtractError(Exception):
    """Base class of every error this package raises on purpose."""

    #: short machine-readable kind, stored in error records
    kind = "error"

    def __init__(self, path: str | None, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def __reduce__(self):
        # errors cross process boundaries (sandbox, dask workers): keep path and message
        return (type(self), (self.path, self.message))


class FileAccessError(MetaExtractError, OSError):
    """The file cannot be opened: missing, unreadable, not a regular file."""

    kind = "access"


class EmptyFileError(MetaExtractError, ValueError):
    """The file has zero bytes: there is nothing to extract."""

    kind = "empty"


class UnsupportedFormatError(MetaExtractError, ValueError):
    """No reader can handle this file, or the reader's library is missing."""

    kind = "unsupported"


class CorruptFileError(MetaExtractError, ValueError):
    """The file claims a format but its content does not parse."""

    kind = "corrupt"


class ExtractionError(MetaExtractError, RuntimeError):
    """A chunk task failed for a reason not covered above."""

    kind = "extraction"


class ExtractionTimeout(MetaExtractError, TimeoutError):
    """The file took longer than its timeout."""

    kind = "timeout"


def describe(exc: BaseException) -> str:
    """One line for an error record: the message plus the exception type."""
    return f"{exc} [{type(exc).__name__}]"


class FileChangedError(MetaExtractError, OSError):
    """The file changed size or content while it was being read."""

    kind = "changed"


class ParserCrashError(MetaExtractError, RuntimeError):
    """The native parser died (a signal, or out of memory) on this file."""

    kind = "crash"
