"""How a script ends decides how its open runs end (hole 3).

A real interpreter per case logs 100 points into a run it never ends, then leaves by an
unhandled exception, `sys.exit(n)`, KeyboardInterrupt or a normal end; the run's status in
the store must say so, and every point must be there.
"""

from __future__ import annotations

import json

import pytest

from autolog.runs.process import TAG_HOST, TAG_PID, TAG_START
from tests.reliability.faults import figures, output, run_python, stored_points

pytestmark = pytest.mark.timeout(180)

POINTS = 100

PROLOGUE = f"""
    import json, os, sys
    import autolog
    autolog.autolog()
    run = autolog.start_run(run_name="ending")
    print(json.dumps({{"run_id": run.run_id, "pid": os.getpid()}}), flush=True)
    for i in range({POINTS}):
        autolog.log_metric("loss", 1.0 / (i + 1), step=i)
"""

ENDINGS = {
    "unhandled exception": ("raise ValueError('bad data')", "FAILED", "ValueError: bad data"),
    "sys.exit(1)": ("sys.exit(1)", "FAILED", "sys.exit(1)"),
    "sys.exit('message')": ("sys.exit('stopping')", "FAILED", "sys.exit('stopping')"),
    "KeyboardInterrupt": ("raise KeyboardInterrupt", "KILLED", "KeyboardInterrupt"),
    "SystemExit(3) from a helper": ("def stop():\n        sys.exit(3)\n    stop()", "FAILED", "sys.exit(3)"),
    "sys.exit(0)": ("sys.exit(0)", "FINISHED", None),
    "normal end": ("pass", "FINISHED", None),
    "exception caught by the script": ("try:\n        raise ValueError('handled')\n    except ValueError:\n"
                                       "        pass", "FINISHED", None),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_open_runs_end_with_the_status_of_the_exit(tmp_path, store_dir, store, ending):
    code, expected, error = ENDINGS[ending]
    proc = run_python(tmp_path, PROLOGUE + "    " + code + "\n")
    assert proc.stdout, output(proc)
    started = json.loads(proc.stdout.splitlines()[0])
    run_id = started["run_id"]
    run = store().get_run(run_id)
    stored = stored_points(store_dir, run_id, "loss")
    report = f"{ending}: status {run.status}, {figures(POINTS, stored)}\n{output(proc)}"
    assert run.status == expected, report
    assert stored == POINTS, report
    assert run.tags.get("autolog.error") == error, report
    # the process that owned it, for `autolog runs` and `autolog gc`
    assert run.tags[TAG_PID] == str(started["pid"]), report
    assert TAG_HOST in run.tags and TAG_START in run.tags, report


def test_disable_restores_sys_exit(tmp_path):
    import sys

    import autolog

    original = sys.exit
    autolog.autolog()
    assert sys.exit is not original
    autolog.autolog(disable=True)
    assert sys.exit is original
