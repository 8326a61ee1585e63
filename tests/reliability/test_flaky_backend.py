"""A backend that fails every third call (issue 11's suite), in a real interpreter.

The backend is a third-party one, installed the way any is: a distribution on the path that
registers `FlakyStore` under the entry-point group `autolog.backends` (scheme `flaky:`). It is
the local store, except that every third write (create, batch, end, artifact) raises
`BackendUnavailable`, as a server answering 503 does. A fit and a loop of 5,000 metric points
go through it: every write is retried and lands, nothing is spilled, nothing is lost, no
warning (a retried write is not an outage), and the fit returned its result.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from autolog.backends.local import LocalStore
from tests.reliability.faults import figures, output, run_python, stored_points

pytestmark = pytest.mark.timeout(240)

POINTS = 5_000

BACKEND = '''
    """An autolog backend that fails every third write (for the fault suite)."""
    import threading

    from autolog.backends.base import BackendUnavailable
    from autolog.backends.local import LocalStore


    class FlakyStore(LocalStore):
        schemes = ("flaky",)

        def __init__(self, uri):
            super().__init__(uri.partition(":")[2])
            self.uri = uri
            self.calls = self.failures = 0
            self._count = threading.Lock()

        def _maybe_fail(self):
            with self._count:
                self.calls += 1
                if self.calls % 3:
                    return
                self.failures += 1
            raise BackendUnavailable("every third call fails (503)")

        def create_run(self, run):
            self._maybe_fail()
            super().create_run(run)

        def log_batch(self, run_id, metrics=(), params=(), tags=()):
            self._maybe_fail()
            super().log_batch(run_id, metrics=metrics, params=params, tags=tags)

        def end_run(self, run_id, status, end_time):
            self._maybe_fail()
            super().end_run(run_id, status, end_time)

        def log_artifact(self, run_id, local_path, artifact_path=None):
            self._maybe_fail()
            super().log_artifact(run_id, local_path, artifact_path)
'''

CHILD = f"""
    import json
    import numpy as np
    import autolog
    from autolog.backends import get_backend
    from sklearn.linear_model import LogisticRegression
    autolog.autolog()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 5))
    y = (X[:, 0] > 0).astype(int)
    score = LogisticRegression(C=0.3).fit(X, y).score(X, y)
    with autolog.start_run(run_name="loop") as run:
        for i in range({POINTS}):
            autolog.log_metric("loss", 1.0 / (i + 1), step=i)
            if i % 1000 == 999:
                autolog.flush(60)  # several batches, so that every third one fails
    flushed = autolog.flush(60)
    backend = get_backend()
    print(json.dumps({{"run_id": run.run_id, "score": score, "flushed": flushed,
                      "calls": backend.calls, "failures": backend.failures}}))
"""


def install_flaky_backend(folder) -> str:
    folder.mkdir()
    (folder / "flaky_backend.py").write_text(textwrap.dedent(BACKEND))
    info = folder / "flaky_backend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flaky-backend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[autolog.backends]\nflaky = flaky_backend:FlakyStore\n")
    return str(folder)


def test_a_backend_failing_every_third_call_loses_nothing(tmp_path):
    path = install_flaky_backend(tmp_path / "site")
    store_dir = str(tmp_path / "flaky-store")
    proc = run_python(tmp_path, CHILD, env={"PYTHONPATH": path, "AUTOLOG_TRACKING_URI": f"flaky:{store_dir}"})
    assert proc.returncode == 0, output(proc)
    result = json.loads(proc.stdout.splitlines()[-1])
    store = LocalStore(store_dir)
    stored = stored_points(store_dir, result["run_id"], "loss")
    fits = [run for run in store.search_runs() if run.run_name.startswith("LogisticRegression")]
    journal = tmp_path / "journal"
    spilled = [p.name for p in journal.rglob("segment-*")] if journal.exists() else []
    report = (f"every third call fails: {result['failures']} of {result['calls']} calls failed; loop "
              f"{figures(POINTS, stored)}; fit runs {len(fits)}; spilled {spilled}\n{output(proc)}")
    print(report)
    assert result["flushed"] and result["failures"] >= 3, report
    assert stored == POINTS, report
    assert store.get_run(result["run_id"]).status == "FINISHED", report
    assert len(fits) == 1 and fits[0].status == "FINISHED", report
    assert fits[0].params["C"] == "0.3" and fits[0].metrics["training_score"] == pytest.approx(result["score"]), report
    assert "model" in [a.path for a in store.list_artifacts(fits[0].run_id)], report
    assert not spilled, report
    assert "autolog:" not in proc.stderr, report  # retried writes are no outage: no warning
