"""DataSnapshot's copies in kept memory: equal to the data, never written while anything made
from them lives, reused once nothing does, bounded."""

from __future__ import annotations

import gc

import numpy as np
import pandas as pd

from autolog.instrument.snapshots import DataSnapshot, _KeptMemory


def _memory(**kw) -> _KeptMemory:
    return _KeptMemory(**{"max_bytes": 4 * 1048576, "min_block": 1024, **kw})


def test_a_kept_copy_equals_the_data_and_does_not_follow_it():
    kept = _memory()
    X = np.asfortranarray(np.random.default_rng(0).normal(size=(500, 7)))  # not C-ordered: copied as C
    copy = kept.copy(X, None)
    assert copy is not None and copy.flags.c_contiguous and copy.flags.writeable
    assert copy.dtype == X.dtype and copy.shape == X.shape
    np.testing.assert_array_equal(copy, X)
    X[:] = 0  # the user changes the data after the fit: the copy keeps what was trained on
    assert copy.sum() != 0


def test_a_kept_copy_of_rows():
    kept = _memory()
    X = np.arange(4000, dtype=np.int32).reshape(1000, 4)
    rows = np.linspace(0, 999, 300).round().astype(np.intp)
    copy = kept.copy(X, rows)
    np.testing.assert_array_equal(copy, X[rows])


def test_a_block_is_reused_only_once_nothing_made_from_the_copy_lives():
    kept = _memory()
    first = kept.copy(np.full((256, 8), 1.0), None)
    column = first[:, 3]  # a view: it reads the block too
    rows = first[10:20]
    del first
    gc.collect()
    second = kept.copy(np.full((256, 8), 2.0), None)
    assert kept._kept == 2 * 256 * 8 * 8  # the first block is still lent: a second one was made
    assert (column == 1.0).all() and (rows == 1.0).all()
    del column
    gc.collect()
    third = kept.copy(np.full((256, 8), 3.0), None)
    assert kept._kept == 3 * 256 * 8 * 8  # `rows` still reads the first block
    assert (rows == 1.0).all()
    del rows, second, third
    gc.collect()
    fourth = kept.copy(np.full((256, 8), 4.0), None)
    assert kept._kept == 3 * 256 * 8 * 8  # one of the three free blocks again
    assert (fourth == 4.0).all()


def test_only_what_fits_is_kept():
    kept = _memory(max_bytes=100_000, min_block=10_000)
    assert kept.copy(np.zeros(100), None) is None  # too small to be worth a block
    assert kept.copy(np.zeros(20_000), None) is None  # 160 kB: over the bound alone
    assert kept.copy(np.array(["a"] * 5000, dtype=object), None) is None  # objects are not bytes
    a = kept.copy(np.zeros(10_000), None)
    assert a is not None
    assert kept.copy(np.zeros(5_000), None) is None  # 80 + 40 kB: no room while `a` is lent
    del a
    gc.collect()
    b = kept.copy(np.zeros(5_000), None)  # the free 80 kB block is given back to make room
    assert b is not None and kept._kept == 40_000


def test_blocks_idle_for_long_are_given_back():
    kept = _memory(idle_s=0.0)
    a = kept.copy(np.zeros((300, 4)), None)
    del a
    gc.collect()
    assert kept._kept == 300 * 4 * 8
    kept.copy(np.zeros((10, 400)), None)  # another size: the idle block goes
    assert kept._kept == 10 * 400 * 8


def test_data_snapshot_takes_its_copies_in_kept_memory_and_frames_as_before():
    X = np.random.default_rng(1).normal(size=(20_000, 5))
    y = (X[:, 0] > 0).astype(np.int64)
    snap = DataSnapshot.take(X, y)
    np.testing.assert_array_equal(snap.X, X)
    np.testing.assert_array_equal(snap.y, y)
    assert not np.shares_memory(snap.X, X) and not np.shares_memory(snap.y, y)
    capped = DataSnapshot.take(X, y, max_rows=1000)
    np.testing.assert_array_equal(capped.X, X[capped.rows])
    np.testing.assert_array_equal(capped.y, y[capped.rows])
    frame = pd.DataFrame(X[:100], columns=list("abcde"))
    snap = DataSnapshot.take(frame, y[:100])
    pd.testing.assert_frame_equal(snap.X, frame)


def test_a_child_forked_while_another_thread_takes_a_copy_takes_its_own():
    import os
    import signal
    import threading
    import time

    from autolog.instrument.snapshots import _kept

    X = np.random.default_rng(2).normal(size=(5_000, 4))
    held, release = threading.Event(), threading.Event()

    def hold():
        with _kept._lock:  # as a thread in the middle of a copy at the moment of the fork
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: the lock its parent's thread held must not hold it up
        try:
            snap = DataSnapshot.take(X)
            os._exit(0 if np.array_equal(snap.X, X) else 1)
        except BaseException:
            os._exit(2)
    release.set()
    thread.join()
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung taking a copy")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
