"""A loop of quick fits (hole 1): the post-fit work (model bytes and a copy of the data per
fit) waits on the worker within a bound of jobs and bytes; past it the training thread waits
for the worker (back-pressure), so memory stays bounded and nothing is dropped."""

from __future__ import annotations

import json

import pytest

from tests.reliability.faults import figures, output, run_python

pytest.importorskip("sklearn")
pytestmark = pytest.mark.timeout(600)

FITS = 16
MAX_JOBS = 4


def test_a_loop_of_quick_fits_keeps_its_backlog_bounded(tmp_path, store):
    proc = run_python(tmp_path, f"""
        import json, time
        import numpy as np
        import autolog
        from autolog.runs.lifecycle import logger_for
        from sklearn.linear_model import Ridge

        def rss_mb():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024

        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(50_000, 20)), rng.normal(size=50_000)
        autolog.autolog()
        Ridge().fit(X[:100], y[:100])
        autolog.flush()
        logger = logger_for()
        base, peak, most = rss_mb(), 0.0, 0
        began = time.monotonic()
        for i in range({FITS}):
            Ridge(alpha=1.0 + i).fit(X, y)
            most = max(most, logger._heavy_jobs)
            peak = max(peak, rss_mb())
        loop_s = time.monotonic() - began
        autolog.flush()
        print(json.dumps({{"loop_s": loop_s, "most_pending": most, "rss_growth_mb": peak - base,
                           "waits": logger.heavy_waits}}))
    """, env={"AUTOLOG_MAX_DEFERRED_JOBS": str(MAX_JOBS)}, timeout=550)
    assert proc.returncode == 0, output(proc)
    result = json.loads(proc.stdout.splitlines()[-1])
    runs = [r for r in store().search_runs(None, None, None, None) if r.params.get("alpha") not in (None,)]
    with_model = [r for r in runs if any(a.path == "model" for a in store().list_artifacts(r.run_id))]
    report = (f"{FITS} Ridge fits on 50k x 20: loop {result['loop_s']:.1f} s, at most {result['most_pending']} "
              f"post-fit jobs pending (bound {MAX_JOBS}), training thread waited {result['waits']} times, "
              f"RSS +{result['rss_growth_mb']:.0f} MB; runs with a model: {figures(FITS + 1, len(with_model))}")
    print(report)
    assert result["most_pending"] <= MAX_JOBS, report
    assert len(runs) == FITS + 1 and len(with_model) == FITS + 1, report
