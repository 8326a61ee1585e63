"""A script that logs and exits at once, against a live MLflow server (hole 9).

The backend (and `import mlflow`, seconds) used to be built by the worker on its first
write: for a script that ends within half a second that was during interpreter shutdown,
where the import fails; everything was spilled with a wrong "not answering" warning. Now it
is built from the first record on, off the training thread, and the exit waits for it
(bounded: AUTOLOG_EXIT_FLUSH_TIMEOUT, raised here because `import mlflow` alone takes 8 s
on the shared test machine): everything arrives, nothing is spilled.
"""

from __future__ import annotations

import json

import pytest

from tests.backends.conftest import MlflowServer
from tests.reliability.faults import figures, output, run_python

pytest.importorskip("mlflow")
pytestmark = pytest.mark.timeout(300)

POINTS = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = MlflowServer(str(tmp_path_factory.mktemp("mlflow-server")))
    server.start()
    yield server
    server.stop()


def test_a_short_script_delivers_everything_to_a_live_server(tmp_path, server):
    proc = run_python(tmp_path, f"""
        import json
        import autolog
        autolog.autolog(experiment="short-script")
        run = autolog.start_run(run_name="short")
        autolog.log_param("alpha", 0.5)
        for i in range({POINTS}):
            autolog.log_metric("loss", 1.0 / (i + 1), step=i)
        print(json.dumps({{"run_id": run.run_id}}))
    """, env={"AUTOLOG_TRACKING_URI": server.url, "AUTOLOG_EXIT_FLUSH_TIMEOUT": "90"}, timeout=200)
    assert proc.returncode == 0, output(proc)
    run_id = json.loads(proc.stdout.splitlines()[-1])["run_id"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name("short-script")
    assert experiment is not None, output(proc)
    runs = client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.`autolog.run_id` = '{run_id}'")
    stored = len(client.get_metric_history(runs[0].info.run_id, "loss")) if runs else 0
    report = f"short script: {figures(POINTS, stored)}\n{output(proc)}"
    print(report)
    assert runs and runs[0].info.status == "FINISHED", report
    assert stored == POINTS and runs[0].data.params == {"alpha": "0.5"}, report
    assert "not answering" not in proc.stderr and "kept in" not in proc.stderr, report
