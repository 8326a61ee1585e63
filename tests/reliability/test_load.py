"""On demand: 1,000,000 metric points from 4 processes into one local store.

Skipped unless AUTOLOG_LOAD_TESTS=1 (marked `load`; CI never sets it). Each process logs
250,000 points and reports its peak RSS at 25 %, 50 % and 100 % of the loop: memory must stay
flat (the queue is bounded), and every point must be stored. AUTOLOG_LOAD_POINTS scales it.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.reliability.faults import figures, output, start_python, stored_points

pytestmark = [pytest.mark.load, pytest.mark.timeout(1800),
              pytest.mark.skipif(os.environ.get("AUTOLOG_LOAD_TESTS") != "1",
                                 reason="on demand: AUTOLOG_LOAD_TESTS=1")]

PROCESSES = 4
TOTAL = int(os.environ.get("AUTOLOG_LOAD_POINTS", "1000000"))


def test_a_million_points_from_four_processes(tmp_path, store_dir):
    each = TOTAL // PROCESSES
    began = time.monotonic()
    procs = [start_python(tmp_path, f"""
        import json, resource
        import autolog
        autolog.autolog()
        run = autolog.start_run(run_name="load-{n}")
        marks = []
        for i in range({each}):
            autolog.log_metric("x", float(i), step=i)
            if (i + 1) in ({each // 4}, {each // 2}, {each}):
                with open("/proc/self/status") as f:
                    marks.append(next(int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS:")))
        autolog.end_run()
        autolog.flush()
        print(json.dumps({{"run_id": run.run_id, "rss_mb": marks,
                           "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}}))
    """, name=f"load{n}.py") for n in range(PROCESSES)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=1700)
        proc.stdout, proc.stderr = out, err
        assert proc.returncode == 0, output(proc)
        results.append(json.loads(out.splitlines()[-1]))
    took = time.monotonic() - began
    stored = sum(stored_points(store_dir, r["run_id"], "x") for r in results)
    report = (f"{PROCESSES} processes x {each} points: {figures(each * PROCESSES, stored)}, {took:.1f} s "
              f"({each * PROCESSES / took:,.0f} points/s); RSS at 25/50/100 %: {[r['rss_mb'] for r in results]} MB, "
              f"peaks {[r['peak_mb'] for r in results]} MB")
    print(report)
    assert stored == each * PROCESSES, report
    for r in results:  # flat: the second half of the loop adds little
        assert r["rss_mb"][2] - r["rss_mb"][1] < 100, report
