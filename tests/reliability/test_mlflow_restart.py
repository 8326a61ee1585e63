"""An MLflow server killed and restarted in the middle of a fit (issue 11's suite).

A real `mlflow server`; a real scikit-learn Pipeline fit that the test holds in its first
step (a FunctionTransformer waiting on stdin) after its run was created on the server. The
test kills the server (SIGKILL of its process group), lets the fit finish (its params,
metrics and model go to the journal while the server is gone), restarts the server on the
same port and store, and the script exits. The next autolog process replays the journal:
then the run is on the server, FINISHED, with its params, its training score and its model.
Training never noticed: the fit returned its result.
"""

from __future__ import annotations

import json

import pytest

from tests.backends.conftest import MlflowServer
from tests.reliability.faults import output, run_python, start_python

pytest.importorskip("mlflow")
pytestmark = pytest.mark.timeout(420)

FIT = """
    import json, sys
    import numpy as np
    import autolog
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    held = []

    def hold(X):  # inside the fit (the first call): its run exists; wait for the test to kill the server
        if not held:
            held.append(True)
            autolog.flush(60)
            print(json.dumps({"run_id": autolog.last_run().run_id}), flush=True)
            sys.stdin.readline()
        return X

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 5))
    y = (X[:, 0] > 0).astype(int)
    autolog.autolog()
    model = make_pipeline(FunctionTransformer(hold), LogisticRegression(C=0.7)).fit(X, y)
    print(json.dumps({"score": model.score(X, y)}), flush=True)
    sys.stdin.readline()  # the server is back
    print(json.dumps({"flushed": autolog.flush(120)}), flush=True)
"""

NEXT_PROCESS = """
    import autolog
    autolog.autolog()
    with autolog.start_run(run_name="next"):
        pass
    print(autolog.flush(120))
"""


def test_a_server_killed_and_restarted_mid_fit_loses_nothing(tmp_path, monkeypatch):
    server = MlflowServer(str(tmp_path / "mlflow-server")).start()
    try:
        env = {"AUTOLOG_TRACKING_URI": server.url, "AUTOLOG_EXPERIMENT": "restart"}
        proc = start_python(tmp_path, FIT, env=env)
        run_id = json.loads(proc.stdout.readline())["run_id"]
        server.kill()  # mid-fit: no clean shutdown
        proc.stdin.write("go\n")
        proc.stdin.flush()
        score = json.loads(proc.stdout.readline())["score"]  # the fit returned
        server.start()  # same port, same store
        out, err = proc.communicate("back\n", timeout=240)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err[-3000:]}"
        nxt = run_python(tmp_path, NEXT_PROCESS, env=env, timeout=240, name="next.py")
        assert nxt.returncode == 0, output(nxt)

        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=server.url)
        mlflow_runs = client.search_runs([client.get_experiment_by_name("restart").experiment_id],
                                         filter_string=f"tags.`autolog.run_id` = '{run_id}'")
        report = f"server killed mid-fit: runs found {len(mlflow_runs)}\nfit stderr:\n{err[-3000:]}\n{output(nxt)}"
        assert len(mlflow_runs) == 1, report
        run = mlflow_runs[0]
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
        report += f"\nstatus {run.info.status}, params {sorted(run.data.params)[:5]}..., artifacts {artifacts}"
        print(report)
        assert run.info.status == "FINISHED", report
        assert run.data.params.get("logisticregression__C") == "0.7" or "0.7" in run.data.params.values(), report
        assert run.data.metrics["training_score"] == pytest.approx(score), report
        assert {"model", "training_confusion_matrix.png", "training_confusion_matrix.json"} <= set(artifacts), report
        assert not list((tmp_path / "journal").rglob("rejected.jsonl")), report  # nothing set aside
        assert "autolog: the tracking backend" in err, report  # the outage was noticed, once
        assert err.count("is not answering") == 1, report
    finally:
        server.stop()
