"""containment's signal masks: autolog's threads leave the process's signals to the main thread,
and unblock them around work that may start processes, restoring the thread's mask after."""

import signal
import sys

import pytest

from autolog.instrument import containment

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_sigmask") or sys.platform == "win32",
                                reason="no per-thread signal masks")


def _mask() -> set:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def _in_background(work):
    found = {}

    def run():
        found["value"] = work()

    thread = containment.background_thread(run, name="autolog-test-mask")
    thread.start()
    thread.join(10)
    return found["value"]


def test_a_background_thread_blocks_the_process_signals():
    blocked = _in_background(_mask)
    assert {signal.SIGTERM, signal.SIGINT} <= blocked
    assert signal.SIGTERM not in _mask()  # the main thread's mask is its own


def test_unblocked_for_the_block_then_the_mask_is_restored():
    def work():
        before = _mask()
        with containment.async_signals_unblocked():
            inside = _mask()
        return before, inside, _mask()

    before, inside, after = _in_background(work)
    assert signal.SIGTERM in before and signal.SIGINT in before
    assert signal.SIGTERM not in inside and signal.SIGINT not in inside
    assert after == before


def test_restored_when_the_block_raises():
    def work():
        before = _mask()
        with pytest.raises(KeyError):
            with containment.async_signals_unblocked():
                raise KeyError("x")
        return before, _mask()

    before, after = _in_background(work)
    assert after == before
