"""SIGTERM, as `docker stop`, Kubernetes and Slurm send it (hole 4).

A real interpreter logs 50,000 points without flushing and waits; the test sends SIGTERM.
The process must still end (by the signal, when nobody else handled it), within a generous
bound, with every point in the store and its run KILLED. A handler the user installed is
still called, and decides how the process ends.
"""

from __future__ import annotations

import json
import signal
import textwrap
import time

import pytest

from tests.reliability.faults import figures, start_python, stored_points

pytestmark = pytest.mark.timeout(180)

POINTS = 50_000
BOUND_S = 30.0  # generous: the flush is bounded at 5 s (SIGTERM_FLUSH_TIMEOUT)

CHILD = f"""
    import json, os, signal, sys
    {{user_handler}}
    import autolog
    autolog.autolog()
    run = autolog.start_run(run_name="terminated")
    for i in range({POINTS}):
        autolog.log_metric("loss", 1.0 / (i + 1), step=i)
    print(json.dumps({{{{"run_id": run.run_id}}}}), flush=True)
    {{wait}}
    print("not terminated", flush=True)
"""

# waiting for the signal as a training loop does, running bytecode
BOUNDED_WAITS = """
    import select
    while not select.select([sys.stdin], [], [], 0.05)[0]:
        pass
    sys.stdin.read()  # the test closed stdin
"""
# one endless blocking call: a Python handler runs on the main thread only when that call
# returns or is interrupted, and a signal landing just before the call interrupts nothing
# (CPython). autolog reads the signal's wakeup byte on a thread of its own, flushes there and
# then interrupts the main thread itself, so the process ends either way
ONE_BLOCKING_READ = """
    sys.stdin.read()  # the test closed stdin
"""


def child(user_handler: str = "", wait: str = BOUNDED_WAITS) -> str:
    return CHILD.format(user_handler=user_handler, wait=textwrap.indent(textwrap.dedent(wait), "    ").strip())


USER_HANDLER = """
    def on_term(signum, frame):
        open("handler-called", "w").close()
        sys.exit(143)
    signal.signal(signal.SIGTERM, on_term)
"""


def terminate(proc):
    run_id = json.loads(proc.stdout.readline())["run_id"]
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=BOUND_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - began
    stderr = proc.stderr.read()
    return run_id, took, stderr


@pytest.mark.parametrize("handler", ["default", "user's handler", "default, main thread in one read()"])
def test_sigterm_flushes_ends_runs_killed_and_ends_the_process(tmp_path, store_dir, store, handler):
    user_handler = USER_HANDLER if handler == "user's handler" else ""
    proc = start_python(tmp_path, child(user_handler, ONE_BLOCKING_READ if "read()" in handler else BOUNDED_WAITS))
    run_id, took, stderr = terminate(proc)
    stored = stored_points(store_dir, run_id, "loss")
    run = store().get_run(run_id)
    report = (f"SIGTERM ({handler}): exit {proc.returncode} after {took:.2f} s, status {run.status}, "
              f"{figures(POINTS, stored)}\nstderr:\n{stderr[-3000:]}")
    print(report)
    if handler != "user's handler":
        assert proc.returncode == -signal.SIGTERM, report  # the process ends as it would have
    else:
        assert proc.returncode == 143, report
        assert (tmp_path / "handler-called").exists(), report
    assert took < BOUND_S, report
    assert stored == POINTS, report
    assert run.status == "KILLED", report
    assert run.tags.get("autolog.error") == "SIGTERM", report


def test_ignored_sigterm_stays_ignored(tmp_path, store):
    proc = start_python(tmp_path, child("signal.signal(signal.SIGTERM, signal.SIG_IGN)"))
    run_id = json.loads(proc.stdout.readline())["run_id"]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(input="", timeout=120)
    assert proc.returncode == 0 and "not terminated" in out, err[-3000:]
    assert store().get_run(run_id).status == "FINISHED"


def test_disable_restores_the_handler_it_found():
    import autolog

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        autolog.autolog()
        assert signal.getsignal(signal.SIGTERM) is not mine
        autolog.autolog(disable=True)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
