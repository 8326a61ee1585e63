"""SIGKILL and SIGTERM during a loop of fits (issue 11's suite), in real interpreters.

A script fits LogisticRegression models in a loop (each fit its own run, with its model) and
prints each finished fit; the test signals it once 12 fits have finished, mid-loop.

- SIGTERM: the process ends by the signal within a bound; every fit finished before the
  signal has its run FINISHED with its model; no run is left RUNNING (the fit in flight
  ends KILLED; fits the main thread starts while the flush runs leave nothing half-written).
- SIGKILL: nothing can run. What is lost is bounded by the post-fit backlog: with
  `AUTOLOG_MAX_DEFERRED_JOBS=4` the training thread is never more than 4 post-fit jobs ahead
  of the worker, so at most 6 finished fits miss their run or model (the jobs waiting or
  running, and a run whose end record was still queued); the runs left RUNNING are ended
  KILLED by `autolog gc`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.reliability.faults import figures, start_python

pytestmark = pytest.mark.timeout(300)

SIGNAL_AFTER = 12
BACKLOG = 4

LOOP = """
    import sys
    import numpy as np
    import autolog
    from sklearn.linear_model import LogisticRegression
    autolog.autolog()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 20))
    y = (X[:, 0] + rng.normal(size=len(X)) > 0).astype(int)
    for i in range(10_000):
        LogisticRegression(C=1.0 + i, max_iter=100).fit(X, y)
        print(i, flush=True)
"""


def signal_mid_loop(tmp_path, signum):
    proc = start_python(tmp_path, LOOP, env={"AUTOLOG_MAX_DEFERRED_JOBS": str(BACKLOG)})
    finished = -1
    while finished + 1 < SIGNAL_AFTER:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"the loop ended early (exit {proc.wait()}):\n{proc.stderr.read()[-3000:]}")
        finished = int(line)
    began = time.monotonic()
    proc.send_signal(signum)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - began
    after = len(proc.stdout.read().split())  # fits that finished after the signal was sent
    return proc, finished + 1, after, took


def complete_runs(store, finished):
    """C of each finished fit -> its run, when the store has it FINISHED with its model."""
    runs = {}
    for run in store().search_runs():
        if run.status == "FINISHED" and "model" in [a.path for a in store().list_artifacts(run.run_id)]:
            runs[float(run.params["C"])] = run
    return [c for c in (1.0 + i for i in range(finished)) if c in runs]


def test_sigterm_during_a_loop_of_fits(tmp_path, store):
    proc, finished, after, took = signal_mid_loop(tmp_path, signal.SIGTERM)
    stderr = proc.stderr.read()
    complete = complete_runs(store, finished)
    statuses = sorted(run.status for run in store().search_runs())
    report = (f"SIGTERM after {finished} fits: exit {proc.returncode} after {took:.2f} s ({after} more fits meanwhile), "
              f"finished fits' runs {figures(finished, len(complete))}, statuses {statuses}\nstderr:\n{stderr[-3000:]}")
    print(report)
    assert proc.returncode == -signal.SIGTERM, report
    assert len(complete) == finished, report
    assert "RUNNING" not in statuses, report


def test_sigkill_during_a_loop_of_fits(tmp_path, store, store_dir):
    proc, finished, _, took = signal_mid_loop(tmp_path, signal.SIGKILL)
    complete = complete_runs(store, finished)
    running = [run.run_id for run in store().search_runs() if run.status == "RUNNING"]
    gc = subprocess.run([sys.executable, "-m", "autolog", "gc", "--tracking-uri", store_dir],
                        capture_output=True, text=True, timeout=120)
    left = [run.run_id for run in store().search_runs() if run.status == "RUNNING"]
    report = (f"SIGKILL after {finished} fits: finished fits' runs {figures(finished, len(complete))}, "
              f"{len(running)} left RUNNING, after `autolog gc` {len(left)}\n{gc.stdout}{gc.stderr}")
    print(report)
    assert proc.returncode == -signal.SIGKILL, report
    # the jobs waiting or running, and the one run whose end the worker had not taken yet
    assert finished - len(complete) <= BACKLOG + 2, report
    assert gc.returncode == 0 and not left, report
