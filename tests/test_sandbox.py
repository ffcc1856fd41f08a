"""The sandbox runs a batch of files in one child: crashes and hangs cost one file."""

from __future__ import annotations

import os
import signal
import time

import pytest

from metaextract_dask.core.errors import ExtractionTimeout, ParserCrashError
from metaextract_dask.sandbox import Sandbox, child_environment

pytestmark = pytest.mark.integration


def test_batch_survives_a_crash_and_a_hang_in_its_middle():
    def pid(_):
        return os.getpid()

    def crash(_):
        os.kill(os.getpid(), signal.SIGSEGV)

    def hang(_):
        time.sleep(60)

    def fail(_):
        raise ValueError("not this one")

    box = Sandbox(memory_limit=2**30)
    try:
        calls = [("a", pid, (1,)), ("b", pid, (2,)), ("c", crash, (3,)), ("d", pid, (4,)),
                 ("e", hang, (5,)), ("f", fail, (6,)), ("g", pid, (7,))]
        replies = list(box.call_many(calls, timeout=3))
        assert [ok for ok, *_ in replies] == [True, True, False, True, False, False, True]
        first, second, crashed, after_crash, hung, failed, last = (value for _, value, _, _ in replies)
        assert first == second  # one child for consecutive files
        assert after_crash != first and last != after_crash  # a fresh child after each death
        assert isinstance(crashed, ParserCrashError) and "SIGSEGV" in str(crashed) and "c" == crashed.path
        assert isinstance(hung, ExtractionTimeout) and hung.path == "e"
        assert isinstance(failed, ValueError)
        assert box.restarts == 2
        assert all(start <= end for _, _, start, end in replies)
    finally:
        box.kill()


def test_stopping_a_batch_early_leaves_no_stale_replies():
    def echo(x):
        return x

    box = Sandbox()
    try:
        replies = box.call_many([("a", echo, ("first",)), ("b", echo, ("second",))], timeout=10)
        assert next(replies)[1] == "first"
        replies.close()  # "second" is still queued in the child
        assert box.proc is None
        assert box.call("c", 10, echo, "third") == "third"
    finally:
        box.kill()


def test_child_does_not_inherit_the_nannys_malloc_trim(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    assert "MALLOC_TRIM_THRESHOLD_" not in child_environment()
    def read(name):
        return os.environ.get(name)

    box = Sandbox()
    try:
        assert box.call("x", 10, read, "MALLOC_TRIM_THRESHOLD_") is None
    finally:
        box.kill()


def test_prestarted_children_are_taken_by_threads_and_the_rest_ended(tmp_path):
    """A scan starts its sandbox children early; a thread takes one that is already up, the unused ones are ended."""
    import threading

    from metaextract_dask import sandbox as isolation

    isolation.prestart(3, 2**30)
    spares = list(isolation._spare)
    assert len(spares) == 3 and all(b.proc.poll() is None for b in spares)
    got = []

    def work():
        box = isolation.sandbox_for_thread(2**30)
        got.append((box, box.call("p", 30, os.getpid)))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    (box, pid), = got
    assert box in spares and pid == box.proc.pid  # the call ran in a child started ahead of it
    isolation.discard_spares()
    assert isolation._spare == [] and all(b.proc is None for b in spares if b is not box)
    box.kill()
