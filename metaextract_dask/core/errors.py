"""Error hierarchy.

Every error names the file it is about and also subclasses the builtin a user
would catch anyway (zarr-python style), so ``except OSError`` keeps working.
"""

from __future__ import annotations

import errno


class MetaExtractError(Exception):
    """Base class of every error this package raises on purpose."""

    #: short machine-readable kind, stored in error records
    kind = "error"
    #: worth another try: the same bytes may read fine a moment later
    transient = False

    def __init__(self, path: str | None, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def __reduce__(self) -> tuple[type, tuple[str | None, str]]:
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


class TransientIOError(MetaExtractError, OSError):
    """An I/O error that may clear by itself (EIO, ESTALE, ETIMEDOUT...): retried."""

    kind = "io"
    transient = True


class SandboxKilledError(ParserCrashError):
    """The parser's sandbox was killed from outside (SIGKILL, SIGTERM): retried."""

    kind = "killed"
    transient = True


class MisattributionError(MetaExtractError, RuntimeError):
    """A reply or record named another file than the one asked for (an internal error)."""

    kind = "internal"


#: errno values of I/O errors that can succeed on a later try
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EIO", "ESTALE", "ETIMEDOUT", "EAGAIN", "EBUSY", "EINTR", "ENETDOWN",
                                      "ENETUNREACH", "ECONNRESET", "ECONNABORTED", "EHOSTUNREACH", "ENOLINK", "ECOMM")
    if hasattr(errno, name)
)

#: names of exceptions distributed raises when a worker or its connection is lost
_LOST_WORKER = frozenset({"KilledWorker", "CommClosedError", "FutureCancelledError", "CancelledError"})


def is_transient(exc: BaseException) -> bool:
    """Worth another try? Only errors that can change on their own are.

    Permanent: corrupt, truncated, unsupported, empty, access denied, a
    timeout or a parser crash on the same bytes, and any unexpected
    exception of a parser (it would raise again on the same input).
    Transient: I/O errors such as EIO and ESTALE, a lost worker, a sandbox
    killed from outside.
    """
    if isinstance(exc, MetaExtractError):
        return exc.transient
    if type(exc).__name__ in _LOST_WORKER:
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def io_error(path: str, exc: OSError, what: str) -> MetaExtractError:
    """An OSError met while reading ``path``, as a retried or a permanent error."""
    if exc.errno in TRANSIENT_ERRNOS:
        return TransientIOError(path, f"{what}: {describe(exc)}")
    return ExtractionError(path, f"{what}: {describe(exc)}")
