"""Runs left RUNNING by a process that is gone (hole 2): SIGKILL leaves no chance to end them.

Each run records its owning process (pid, host, start time); `autolog runs` shows a RUNNING
run whose process is gone as KILLED, and `autolog gc` ends it KILLED in the store. A run
whose process is alive (this test's) is left alone.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import autolog
from autolog.runs.process import TAG_PID, owner_gone
from tests.reliability.faults import figures, output, run_python, stored_points

pytestmark = pytest.mark.timeout(180)

POINTS = 1000


def cli(*args, store_dir):
    return subprocess.run([sys.executable, "-m", "autolog", *args, "--tracking-uri", store_dir],
                          capture_output=True, text=True, timeout=120)


def test_a_sigkilled_runs_is_shown_killed_and_gc_marks_it(tmp_path, store_dir, store):
    proc = run_python(tmp_path, f"""
        import json, os, signal
        import autolog
        autolog.autolog()
        run = autolog.start_run(run_name="sigkilled")
        for i in range({POINTS}):
            autolog.log_metric("loss", 1.0 / (i + 1), step=i)
        autolog.flush()
        print(json.dumps({{"run_id": run.run_id}}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert proc.returncode == -9, output(proc)
    killed_id = json.loads(proc.stdout.splitlines()[0])["run_id"]
    alive = autolog.start_run(run_name="alive")  # this process: alive
    autolog.log_metric("x", 1.0)
    autolog.flush()

    stored = stored_points(store_dir, killed_id, "loss")
    report = f"{figures(POINTS, stored)}"
    before = store().get_run(killed_id)
    assert before.status == "RUNNING" and owner_gone(before.tags), report
    assert not owner_gone(store().get_run(alive.run_id).tags)

    shown = {r["run_id"]: r["status"] for r in json.loads(cli("runs", "--json", store_dir=store_dir).stdout)}
    assert shown == {killed_id: "KILLED", alive.run_id: "RUNNING"}, report

    dry = cli("gc", "--dry-run", "--json", store_dir=store_dir)
    assert json.loads(dry.stdout) == {"dry_run": True, "killed": [killed_id]}, dry.stderr
    assert store().get_run(killed_id).status == "RUNNING"

    gc = cli("gc", store_dir=store_dir)
    assert gc.returncode == 0 and "marked 1 run KILLED" in gc.stdout, gc.stdout + gc.stderr
    after = store().get_run(killed_id)
    assert after.status == "KILLED" and after.end_time is not None, report
    assert after.tags["autolog.error"] == "process gone (autolog gc)"
    assert store().get_run(alive.run_id).status == "RUNNING"
    assert stored == POINTS, report


def test_a_reused_pid_is_not_the_owner():
    tags = autolog.runs.process.process_tags()
    assert not owner_gone(tags)
    assert owner_gone(dict(tags, **{"autolog.process.start": "1"}))  # another process with our pid
    assert not owner_gone(dict(tags, **{"autolog.process.host": "another-host"}))  # cannot tell: left alone
    assert not owner_gone({TAG_PID: tags[TAG_PID]})  # no host: left alone
