"""Run native parsing where a crash or a hang costs only one file.

A ``Sandbox`` is a long-lived child Python process (one per worker thread,
reused across files, as Apache Tika forks its parsers): calls go to it as
length-prefixed cloudpickle messages over its stdin/stdout. When a call
exceeds its timeout the child's whole process group (ffprobe included) is
killed; when the child dies (a segfault in libhdf5, an abort in libnetcdf, the
memory limit) the call fails with ``ParserCrashError``. Either way the next
call starts a fresh child; the worker and every other file are unharmed.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

from .errors import ExtractionTimeout, MetaExtractError, ParserCrashError

_HEADER = struct.Struct("!Q")


def _write(stream: Any, payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


class Sandbox:
    """One reusable child process that runs calls with a timeout and a memory limit."""

    def __init__(self, memory_limit: int = 0):
        self.memory_limit = memory_limit
        self.proc: subprocess.Popen | None = None
        self.calls = 0
        self.restarts = 0

    def _start(self) -> subprocess.Popen:
        self._stderr = tempfile.TemporaryFile()
        # the child imports what this process can (user functions live in its modules)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "metaextract_dask.sandbox", str(self.memory_limit)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, start_new_session=True, env=env,
        )
        return self.proc

    def kill(self) -> None:
        """End the child and everything it started."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:300] if lines else ""

    def call(self, path: str, timeout: float, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` in the child; errors are raised here, naming ``path``."""
        import cloudpickle

        proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
        self.calls += 1
        try:
            _write(proc.stdin, cloudpickle.dumps((fn, args)))
            payload = self._read(proc, time.monotonic() + timeout)
        except ExtractionTimeout:
            self.kill()
            self.restarts += 1
            raise ExtractionTimeout(path, f"timed out: no result within {timeout:g} s; its parser was killed") from None
        except (EOFError, BrokenPipeError, OSError):
            self._crashed(path)
        status, value = cloudpickle.loads(payload)
        if status == "ok":
            return value
        if isinstance(value, MetaExtractError) and value.path is None:
            value = type(value)(path, value.message)
        raise value

    def _crashed(self, path: str) -> None:
        proc = self.proc
        code = proc.wait() if proc is not None else None
        detail = self._stderr_tail()
        self.proc = None
        self.restarts += 1
        if code is not None and code < 0:
            how = f"killed by signal {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        raise ParserCrashError(path, f"the parser crashed on this file ({how}){': ' + detail if detail else ''}")

    @staticmethod
    def _read(proc: subprocess.Popen, deadline: float) -> bytes:
        """One reply: its length header, then exactly that many bytes, by the deadline."""
        fd = proc.stdout.fileno()
        size = _HEADER.unpack(_read_exactly(fd, _HEADER.size, deadline))[0]
        return _read_exactly(fd, size, deadline)


def _read_exactly(fd: int, n: int, deadline: float) -> bytes:
    """n bytes from fd; ExtractionTimeout at the deadline, EOFError if the child died."""
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ExtractionTimeout(None, "timeout")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
    return bytes(buf)


_local = threading.local()


def sandbox_for_thread(memory_limit: int) -> Sandbox:
    """This thread's sandbox (each worker thread parses one file at a time)."""
    box = getattr(_local, "sandbox", None)
    if box is None or box.memory_limit != memory_limit:
        if box is not None:
            box.kill()
        box = _local.sandbox = Sandbox(memory_limit)
    return box


def _serve() -> None:
    """The child: run calls until stdin closes."""
    import cloudpickle

    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    while True:
        header = inp.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        payload = inp.read(_HEADER.unpack(header)[0])
        try:
            fn, args = cloudpickle.loads(payload)
            reply = ("ok", fn(*args))
        except MemoryError:
            reply = ("err", ParserCrashError(None, f"ran out of memory (limit {limit / 2**30:.1f} GiB)"))
        except BaseException as exc:  # noqa: BLE001 - every error goes back to the parent
            reply = ("err", exc)
        try:
            data = cloudpickle.dumps(reply)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception
            data = cloudpickle.dumps(("err", RuntimeError(f"{type(exc).__name__}: {exc}")))
        _write(out, data)


if __name__ == "__main__":
    _serve()
