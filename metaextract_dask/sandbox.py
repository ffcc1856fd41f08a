"""Run native parsing where a crash or a hang costs only one file.

A ``Sandbox`` is a long-lived child Python process (one per worker thread,
reused across files, as Apache Tika forks its parsers): calls go to it as
length-prefixed pickle messages (cloudpickle for what only it carries) over its stdin/stdout. When a call
exceeds its timeout the child's whole process group (ffprobe included) is
killed; when the child dies (a segfault in libhdf5, an abort in libnetcdf, the
memory limit) the call fails with ``ParserCrashError``. Either way the next
call starts a fresh child; the worker and every other file are unharmed.
"""

from __future__ import annotations

import functools
import os
import pickle
import queue
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .core.errors import ExtractionTimeout, MetaExtractError, MisattributionError, ParserCrashError, SandboxKilledError, describe
from .core.settings import StreamingConfig, setting

_HEADER = struct.Struct("!Q")

#: true in a sandbox child (single-threaded: what it starts may be tied to it with preexec_fn)
IN_SANDBOX = False

#: one call's outcome: (ok, value or exception, start, end)
Reply = tuple[bool, Any, float, float]


PROTOCOL = pickle.HIGHEST_PROTOCOL


def dumps(value: Any) -> bytes:
    """``value`` pickled: by the standard pickler (a module's functions, records, errors: four times faster), by
    cloudpickle what only it can carry across (a user's lambda, or anything of their ``__main__``, which the
    standard pickler names but the other process does not have)."""
    try:
        data = pickle.dumps(value, PROTOCOL)
        if b"__main__" not in data:
            return data
    except Exception:  # noqa: BLE001 - PicklingError, or a TypeError/AttributeError from an object it cannot reduce
        pass
    import cloudpickle

    return cloudpickle.dumps(value, PROTOCOL)


def _message(ids: list[str], calls: list[tuple[str, Callable, tuple]]) -> bytes:
    """One request message for many calls, each call pickled on its own (``dumps``): a call the child cannot unpickle
    (a class its import path lacks) fails alone, with its error, not the whole message."""
    return pickle.dumps([(rid, path, dumps((fn, args))) for rid, (path, fn, args) in zip(ids, calls)], PROTOCOL)


def _write(stream: Any, payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def child_environment() -> dict[str, str]:
    """The child's environment: this one without ``PYTHON*`` variables, native libraries restricted
    (``core.settings.native_environment``).

    ``python -I`` ignores ``PYTHON*`` variables already; they are dropped so
    nothing the child starts sees them either. User functions keep the rest
    (``SLURM_JOB_ID`` and the like).

    It also drops ``MALLOC_TRIM_THRESHOLD_``: a Dask nanny starts workers
    with ``MALLOC_TRIM_THRESHOLD_=65536`` so they hand memory back quickly;
    a parser child inheriting it spends a third of each small file's time in
    ``malloc_trim`` and page faults (1.3 ms a file becomes 1.8 ms,
    ``benchmarks/bench_many_files.py``). The child's memory is bounded by its
    rlimit and it is replaced when it crashes, so glibc's default is right.
    """
    from .core.settings import HANDED_VARIABLE, native_environment

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "DASK_METAEXTRACT")) and k not in ("MALLOC_TRIM_THRESHOLD_", HANDED_VARIABLE, *HANDED)}
    env.update(native_environment())  # filter plugins only from trusted folders, no libnetcdf rc file of the working folder
    env.update(child_settings())
    env.update({variable: make() for variable, make in HANDED.items()})
    if PRELOAD:
        env[PRELOAD_VARIABLE] = ",".join(PRELOAD)
    return env


def child_settings() -> dict[str, str]:
    """This project's settings as this process has them now, for the child's environment (``HANDED_VARIABLE``): a
    ``dask.config.set(...)`` here holds in the child too, a child started under other settings is replaced, and the
    child reads them without importing dask. The sandbox need not know which settings its parsers read."""
    from .core.settings import HANDED_VARIABLE, handed_section

    section = repr(handed_section())
    return {HANDED_VARIABLE: section} if _literal(section) else {}  # else the child reads its own dask.config


_LITERAL_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _literal(text: str) -> bool:
    """Whether dask can read ``text`` back in the child (``ast.literal_eval``), asked once per settings text.

    Under a lock: CPython 3.11's AST validator is not thread-safe (worker
    threads starting their sandboxes at once failed a file with
    "SystemError: AST constructor recursion depth mismatch").
    """
    import ast

    with _LITERAL_LOCK:
        try:
            ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return False
    return True


#: modules the child imports before its first request (``preload``), named by the layers above: the sandbox imports none
PRELOAD: list[str] = []
PRELOAD_VARIABLE = "METAEXTRACT_SANDBOX_PRELOAD"


def preload(module: str) -> None:
    """Have every child import ``module`` before its first request (its import is then not the first file's time)."""
    if module not in PRELOAD:
        PRELOAD.append(module)


#: what every child is handed in its environment, named by the layers above (``hand``): variable -> what makes its text
HANDED: dict[str, Callable[[], str]] = {}


def hand(variable: str, make: Callable[[], str]) -> None:
    """Hand every child ``make()``'s text, worked out here when the child starts, as its environment's ``variable``
    (``handed`` reads it there): what this process knows already, a child need not work out again. A variable of
    that name this process inherited is not passed on."""
    HANDED[variable] = make


def handed(variable: str) -> str | None:
    """In a child, what its parent handed it as ``variable`` (``hand``); None in any other process, whatever its
    environment says (only a parent that started it is trusted)."""
    return os.environ.get(variable) if IN_SANDBOX else None


def child_sys_path() -> list[str]:
    """Where the child imports from: this process's path, minus the working folder.

    The working folder is often the folder being scanned (``cd data &&
    metaextract scan .``): a ``cloudpickle.py`` planted there must not run.
    The main script's own folder stays (a user's functions live beside it).
    """
    main_dir = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] not in ("", "-c", "-m") else None
    cwd = os.getcwd()
    out = []
    for entry in sys.path:
        if not entry or not os.path.isabs(entry):
            continue
        if os.path.realpath(entry) == os.path.realpath(cwd) and entry != main_dir:
            continue
        out.append(entry)
    return out


#: the child's first code: ``python -I`` ignores PYTHON* variables, the user site and the working folder
_BOOT = "import sys, json; sys.path[:0] = json.loads(sys.argv[1]); from metaextract_dask.sandbox import _serve; _serve()"


class Sandbox:
    """One reusable child process that runs calls with a timeout and a memory limit.

    Protocol: every call carries a request id and its path; every reply
    echoes both, and a reply is accepted only for the request it answers.
    A mismatch, a short read or an unreadable reply kills the child and
    fails only the file in flight; a new call never goes to a child that
    still owes replies.
    """

    def __init__(self, memory_limit: int = 0):
        self.memory_limit = memory_limit
        self.proc: subprocess.Popen | None = None
        self.calls = 0
        self.restarts = 0
        #: request ids the current child has been sent and not yet answered
        self.owed: list[str] = []
        self._token = os.urandom(6).hex()
        self._inbox = bytearray()
        #: the settings the current child was started with (``child_settings``)
        self.environment: dict[str, str] = {}

    def _start(self) -> subprocess.Popen:
        self._stderr = tempfile.TemporaryFile()
        # the child imports what this process can (user functions live in its modules)
        env = child_environment()
        self.environment = child_settings()
        import json

        argv = [sys.executable, "-I", "-c", _BOOT, json.dumps(child_sys_path()), str(self.memory_limit), str(os.getpid())]
        self._inbox = bytearray()  # what the child wrote and no reply has taken yet
        self.proc = _on_keeper(lambda: subprocess.Popen(
            argv,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, start_new_session=True, env=env,
        ))
        self.owed = []
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
        self.owed = []

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:300] if lines else ""

    def call(self, path: str, timeout: float, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` in the child; errors are raised here, naming ``path``."""
        ((ok, value, _, _),) = self.call_many([(path, fn, args)], timeout)
        if ok:
            return value
        raise value

    def _fresh_child(self) -> subprocess.Popen:
        """A live child that owes no replies (a stale reply must never answer a new request), started with today's settings."""
        if self.proc is not None and (self.owed or self.proc.poll() is not None or self.environment != child_settings()):
            self.kill()
        return self.proc if self.proc is not None else self._start()

    def call_many(self, calls: list[tuple[str, Callable, tuple]], timeout: float) -> Iterator[Reply]:
        """Run ``(path, fn, args)`` calls in order in the child, one message for all.

        Yields ``(ok, value or exception, start, end)`` per call as the child
        finishes it: the child never waits on this process between files,
        which saves a round trip per file (a quarter of a small file's cost).
        Each call gets ``timeout`` seconds from the previous reply. A call
        that hangs or kills the child fails alone; the rest go to a fresh child.
        """
        done = 0
        try:
            while done < len(calls):
                pending = calls[done:]
                proc = self._fresh_child()
                self.calls += len(pending)
                ids = [f"{self._token}-{self.calls - len(pending) + i}" for i in range(len(pending))]
                self.owed = list(ids)
                try:
                    _write(proc.stdin, _message(ids, pending))
                except OSError:
                    pass  # the child is gone: reading says how
                for rid, (path, _, _) in zip(ids, pending):
                    reply = self._reply(proc, rid, path, timeout)
                    done += 1
                    yield reply
                    if self.proc is not proc:
                        break  # that call killed the child (or a caller replaced it): a fresh one takes the rest
        finally:
            if done < len(calls) or self.owed:
                self.kill()  # the caller stopped early: replies still owed must not reach the next call

    def _reply(self, proc: subprocess.Popen, rid: str, path: str, timeout: float) -> Reply:
        """The reply to request ``rid`` about ``path``, or the timeout, crash or mismatch it ended in."""
        now = time.time()
        try:
            payload = self._read(proc, time.monotonic() + timeout)
        except ExtractionTimeout:
            self.kill()
            self.restarts += 1
            return False, ExtractionTimeout(path, f"timed out: no result within {timeout:g} s; its parser was killed"), now, time.time()
        except (EOFError, OSError):
            return False, self._crashed(path), now, time.time()
        try:
            got_id, got_path, status, value, start, end = pickle.loads(payload)
        except Exception as exc:  # noqa: BLE001 - a reply that does not unpickle is a broken child
            return False, self._broken(path, f"its reply could not be read ({describe(exc)})"), now, time.time()
        if got_id != rid or got_path != path:
            return False, self._broken(path, f"it answered request {got_id!r} about {got_path!r} instead"), now, time.time()
        if self.owed and self.owed[0] == rid:
            self.owed.pop(0)
        if status == "ok":
            return True, value, start, end
        if isinstance(value, MetaExtractError) and value.path is None:
            value = type(value)(path, value.message)
        return False, value, start, end

    def _broken(self, path: str, why: str) -> MisattributionError:
        """Kill a child that broke the protocol; only the file in flight fails."""
        self.kill()
        self.restarts += 1
        return MisattributionError(path, f"internal error: the parser sandbox did not answer for this file: {why}; "
                                         "nothing was recorded for it and its sandbox was replaced")

    def _crashed(self, path: str) -> ParserCrashError:
        proc = self.proc
        code = proc.wait() if proc is not None else None
        detail = self._stderr_tail()
        self.proc = None
        self.owed = []
        self.restarts += 1
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            how = f"killed by signal {sig.name}"
            if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                # nothing in the parser sends these: someone (an OOM killer, an admin) killed it; retried
                return SandboxKilledError(path, f"the parser's sandbox was {how} from outside{': ' + detail if detail else ''}")
        else:
            how = f"exited with status {code}"
        return ParserCrashError(path, f"the parser crashed on this file ({how}){': ' + detail if detail else ''}")

    def _read(self, proc: subprocess.Popen, deadline: float) -> bytes:
        """One reply: its length header, then exactly that many bytes, by the deadline.

        What the child has written is read at once, up to 1 MiB (the replies
        of many small files in one system call), and kept in ``_inbox`` for
        the next calls; a new child starts with an empty one.
        """
        assert proc.stdout is not None  # started with stdout=PIPE
        fd, inbox = proc.stdout.fileno(), self._inbox
        while True:
            if len(inbox) >= _HEADER.size:
                end = _HEADER.size + _HEADER.unpack_from(inbox)[0]
                if len(inbox) >= end:
                    payload = bytes(inbox[_HEADER.size:end])
                    del inbox[:end]
                    return payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise ExtractionTimeout(None, "timeout")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise EOFError
                inbox += chunk


_local = threading.local()
#: children started ahead of need (``prestart``), or handed back by threads that finished; taken by threads that need one
_spare: list[Sandbox] = []
_spare_lock = threading.Lock()
_keeper: "queue.SimpleQueue[tuple[Callable[[], Any], Future]] | None" = None
_keeper_lock = threading.Lock()


def _on_keeper(start: Callable[[], subprocess.Popen]) -> subprocess.Popen:
    """``start()`` run on the keeper thread, which lives as long as this process: Linux ends a child when the thread
    that started it ends (``die_with_parent``), so a child started there may serve any thread, one after another (a
    run's threads end with the run; the next run, a notebook's next ``extract_file``, finds the child ready)."""
    global _keeper
    with _keeper_lock:
        if _keeper is None:
            _keeper = queue.SimpleQueue()
            threading.Thread(target=_keep, args=(_keeper,), name="metaextract-sandbox-keeper", daemon=True).start()
    done: Future = Future()
    _keeper.put((start, done))
    return done.result()


def _keep(jobs: "queue.SimpleQueue[tuple[Callable[[], Any], Future]]") -> None:
    while True:
        start, done = jobs.get()
        try:
            done.set_result(start())
        except BaseException as exc:  # noqa: BLE001 - the thread that asked raises it
            done.set_exception(exc)


def _forget_after_fork() -> None:
    """In a process forked from this one (a user's ``multiprocessing`` pool): the keeper thread and the children are
    the parent's. Its own are started when it first needs one; the parent's are dropped, never ended from here."""
    global _keeper, _keeper_lock, _spare_lock, _local
    _keeper, _keeper_lock, _spare_lock, _local = None, threading.Lock(), threading.Lock(), threading.local()
    _spare.clear()
    _bound.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def prestart(count: int, memory_limit: int) -> None:
    """Start ``count`` sandbox children now, so their Python start overlaps this process's own.

    For the threaded default: the first batch of a scan then finds a child
    that has already imported what it needs.
    """
    with _spare_lock:
        for _ in range(count):
            box = Sandbox(memory_limit)
            box._start()
            _spare.append(box)


def discard_spares() -> None:
    """End the spare children: those ``prestart`` made that no thread took, those threads handed back, and those of
    threads that ended without handing them back (``_sweep``)."""
    _sweep()
    with _spare_lock:
        for box in _spare:
            box.kill()
        _spare.clear()


def keep_spares(count: int, memory_limit: int) -> None:
    """``prestart`` what is missing for ``count`` live spare children (a run of one file, called again and again from
    a notebook, finds the child the last call used: 0.3 s of start saved per call)."""
    _sweep()
    with _spare_lock:
        _spare[:] = [box for box in _spare if box.proc is not None and box.proc.poll() is None]
        missing = count - sum(box.memory_limit == memory_limit for box in _spare)
    if missing > 0:
        prestart(missing, memory_limit)


def _take_spare(memory_limit: int) -> Sandbox | None:
    with _spare_lock:
        for i, box in enumerate(_spare):
            if box.memory_limit == memory_limit and box.proc is not None and box.proc.poll() is None:
                return _spare.pop(i)
    return None


def _reusable(box: Sandbox) -> bool:
    """Whether a thread that is idle or about to finish may hand its child back as a spare: alive, owing nothing,
    started with today's settings (the spares are never more than the threads that handed them back)."""
    return box.proc is not None and box.proc.poll() is None and not box.owed and box.environment == child_settings()


#: each thread's sandbox, by the box's id: (the thread, the box). A thread of a pool (a file's chunk tasks) ends
#: without handing its box back, and a child started by the keeper does not end with it: ``_sweep`` finds them
_bound: dict[int, tuple[threading.Thread, Sandbox]] = {}


def _hand_back(box: Sandbox) -> None:
    if _reusable(box):
        with _spare_lock:
            _spare.append(box)
    else:
        box.kill()


def _sweep() -> None:
    """The boxes of threads that ended without handing them back: to the spares, or ended."""
    with _spare_lock:
        orphans = [box for thread, box in _bound.values() if not thread.is_alive()]
        for box in orphans:
            del _bound[id(box)]
    for box in orphans:
        _hand_back(box)


def sandbox_for_thread(memory_limit: int) -> Sandbox:
    """This thread's sandbox (each worker thread parses one file at a time)."""
    box = getattr(_local, "sandbox", None)
    if box is None or box.memory_limit != memory_limit:
        if box is not None:
            _unbind(box)
            box.kill()
        box = _local.sandbox = _take_spare(memory_limit) or Sandbox(memory_limit)
        with _spare_lock:
            _bound[id(box)] = (threading.current_thread(), box)
    return box


def _unbind(box: Sandbox) -> None:
    with _spare_lock:
        _bound.pop(id(box), None)


def release_thread_sandbox() -> None:
    """A thread idle or about to finish: its sandbox child goes back to the spares when it may serve again, else it
    ends. A scan ends the spares when it is done (``discard_spares``); a run of one file keeps them for the next."""
    box = getattr(_local, "sandbox", None)
    if box is not None:
        _local.sandbox = None
        _unbind(box)
        _hand_back(box)


@dataclass(frozen=True)
class Isolation:
    """Where native parsing runs: this thread's sandbox child (``enabled``), or right here.

    One object for the switch and the child's memory limit, passed from the
    user's settings to every task that may parse a file.
    """

    enabled: bool = True
    memory_limit: int = field(default_factory=lambda: int(setting("sandbox.memory-limit")))

    @classmethod
    def off(cls) -> "Isolation":
        return cls(False, 0)

    def call(self, path: str, timeout: float, fn: Callable, *args: Any) -> Any:
        """``fn(*args)``, in the sandbox when enabled; errors name ``path``."""
        if not self.enabled:
            return fn(*args)
        return sandbox_for_thread(self.memory_limit).call(path, timeout, fn, *args)

    def call_many(self, calls: list[tuple[str, Callable, tuple]], timeout: float) -> Iterator[Reply]:
        """Several calls in one message to the sandbox (only when enabled): replies in order."""
        return sandbox_for_thread(self.memory_limit).call_many(calls, timeout)


def _serve() -> None:
    """The child: run calls until stdin closes."""
    import cloudpickle  # noqa: F401 - imported before the first request: a user's function comes pickled by it

    global IN_SANDBOX
    IN_SANDBOX = True
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    die_with_parent(int(sys.argv[3]) if len(sys.argv) > 3 else None)
    if limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (allowed_memory_limit(limit), resource.getrlimit(resource.RLIMIT_AS)[1]))
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    import importlib

    for module in filter(None, os.environ.get(PRELOAD_VARIABLE, "").split(",")):  # the extraction code, before the first request
        importlib.import_module(module)
    while True:
        header = inp.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        for rid, path, call in pickle.loads(inp.read(_HEADER.unpack(header)[0])):
            _write(out, _run_one(rid, path, call, limit))


def allowed_memory_limit(limit: int) -> int:
    """``limit``, or the environment's hard limit (``ulimit -v``) when that is lower: a process may not raise it."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    return limit if hard == resource.RLIM_INFINITY or limit <= hard else hard


def die_with_parent(parent: int | None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a killed scan leaves no parser running).

    Run first thing in a child (or as ``preexec_fn``); ``parent`` is the pid
    the child expects as its parent: if that one already died, exit now.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the parent's kill on timeout still applies
    if parent is not None and os.getppid() != parent:
        os._exit(1)  # the parent died before the request took effect


def _run_one(rid: str, path: str, call: bytes, limit: int) -> bytes:
    """One pickled call in the child, as the reply message (echoing its id and path): every error goes back."""
    start = time.time()
    try:
        fn, args = pickle.loads(call)
        reply: tuple = ("ok", fn(*args))
    except MemoryError:
        reply = ("err", ParserCrashError(None, f"ran out of memory (limit {limit / 2**30:.1f} GiB)"))
    except BaseException as exc:  # noqa: BLE001 - every error goes back to the parent
        reply = ("err", exc)
    try:
        return dumps((rid, path, *reply, start, time.time()))
    except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception
        return dumps((rid, path, "err", RuntimeError(f"{type(exc).__name__}: {exc}"), start, time.time()))


def check_deadline(deadline: float | None, path: str) -> None:
    """An ``ExtractionTimeout`` once the file's deadline (seconds since the epoch) has passed."""
    if deadline is not None and time.time() > deadline:
        raise ExtractionTimeout(path, "timed out: the file took longer than its timeout")


def in_isolation(isolation: Isolation, path: str, deadline: float | None, config: StreamingConfig, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` under ``isolation``, with what is left of the file's time."""
    check_deadline(deadline, path)
    timeout = deadline - time.time() if deadline is not None else config.timeout
    return isolation.call(path, timeout, fn, *args)


if __name__ == "__main__":
    _serve()
