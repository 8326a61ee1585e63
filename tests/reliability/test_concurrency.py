"""Concurrency (issue 11's suite), in real interpreters with real scikit-learn fits.

- 8 threads each fit their own model at once: 8 runs, each with its own params, its own
  training score (the one the thread computed) and its model;
- `autolog(disable=True)` while another thread is inside a fit: that fit returns its result,
  its run ends FINISHED with its model (not left RUNNING), the classes are restored while it
  runs, a fit after the disable logs nothing, and a fit after enabling again is logged.
"""

from __future__ import annotations

import json

import pytest

from tests.reliability.faults import figures, output, run_python

pytestmark = pytest.mark.timeout(300)

EIGHT_THREADS = """
    import json, threading
    import numpy as np
    import autolog
    from sklearn.linear_model import LogisticRegression
    autolog.autolog()
    scores = {}
    barrier = threading.Barrier(8)

    def fit(i):
        rng = np.random.default_rng(i)
        X = rng.normal(size=(2000 + 100 * i, 10))
        y = (X[:, 0] + rng.normal(size=len(X)) > 0).astype(int)
        barrier.wait()  # the 8 fits start together
        model = LogisticRegression(C=(i + 1) / 10, max_iter=200).fit(X, y)
        scores[str((i + 1) / 10)] = model.score(X, y)

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"flushed": autolog.flush(120), "scores": scores}))
"""


def test_eight_threads_fitting_at_once_each_get_their_own_run(tmp_path, store):
    proc = run_python(tmp_path, EIGHT_THREADS, timeout=240)
    assert proc.returncode == 0, output(proc)
    result = json.loads(proc.stdout.splitlines()[-1])
    runs = {run.params.get("C"): run for run in store().search_runs()}
    report = f"8 threads: runs {figures(8, len(runs))}; {sorted(runs)}\n{output(proc)}"
    print(report)
    assert result["flushed"], report
    assert sorted(runs) == sorted(result["scores"]), report
    for c, score in result["scores"].items():
        run = runs[c]
        assert run.status == "FINISHED", report
        assert run.metrics["training_score"] == pytest.approx(score), report
        assert "model" in [a.path for a in store().list_artifacts(run.run_id)], report


DISABLE_DURING_A_FIT = """
    import json, threading
    import numpy as np
    import autolog
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    started, go = threading.Event(), threading.Event()

    def hold(X):  # runs inside the pipeline's fit: the fit is in flight until `go`
        started.set()
        go.wait(60)
        return X

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 5))
    y = (X[:, 0] > 0).astype(int)
    pristine = dict(vars(LogisticRegression))
    autolog.autolog()
    out = {}

    def fit():
        try:
            out["score"] = make_pipeline(FunctionTransformer(hold), LogisticRegression()).fit(X, y).score(X, y)
        except BaseException as exc:
            out["error"] = repr(exc)

    thread = threading.Thread(target=fit)
    thread.start()
    started.wait(60)
    autolog.autolog(disable=True)
    restored = vars(LogisticRegression)
    out["restored"] = set(restored) == set(pristine) and all(restored[k] is v for k, v in pristine.items())
    go.set()
    thread.join(60)
    out["plain_score"] = make_pipeline(FunctionTransformer(), LogisticRegression()).fit(X, y).score(X, y)
    autolog.autolog()
    LogisticRegression(C=0.25).fit(X, y)
    out["flushed"] = autolog.flush(60)
    print(json.dumps(out))
"""


def test_disable_while_another_thread_is_inside_a_fit(tmp_path, store):
    proc = run_python(tmp_path, DISABLE_DURING_A_FIT, timeout=240)
    assert proc.returncode == 0, output(proc)
    result = json.loads(proc.stdout.splitlines()[-1])
    runs = store().search_runs()
    names = sorted(run.run_name.split("-")[0] for run in runs)
    report = f"disable during a fit: {result}; runs {names} ({figures(2, len(runs))})\n{output(proc)}"
    print(report)
    assert "error" not in result and result["score"] == result["plain_score"], report
    assert result["restored"] and result["flushed"], report
    assert names == ["LogisticRegression", "Pipeline"], report  # nothing from the fit after the disable
    for run in runs:
        assert run.status == "FINISHED", report
        assert "model" in [a.path for a in store().list_artifacts(run.run_id)], report
