"""The local store read through MLflow's own client: the `autolog:///` tracking-store plugin.

Runs are made with autolog (sklearn fits, a manual run with a metric history, a child
run), then read with `mlflow.search_runs`, `MlflowClient` and `mlflow.pyfunc.load_model`
on `autolog:///<store>`: filters and order-by as MLflow parses them, the last point of a
metric, its whole history, the parent/child tag, the model, and the read-only refusal.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mlflow", reason="the MLflow plugin needs the mlflow package (autolog[mlflow])")
pytest.importorskip("sklearn")

import mlflow  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

import autolog  # noqa: E402
from autolog.backends.mlflow_store import AutologTrackingStore, store_path, store_uri  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with four runs in experiment "iris" (two LogisticRegression fits, a tree, a manual
    run with a child) and one run in "other"; built once for the module."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from autolog.testing import reset_for_tests

    folder = str(tmp_path_factory.mktemp("plugin") / "autolog-runs")
    X, y = load_iris(return_X_y=True)
    autolog.autolog(tracking_uri=folder, experiment="iris", log_system_metrics=False)
    models = {}
    try:
        for c in (0.1, 1.0):
            models[c] = LogisticRegression(C=c, max_iter=500).fit(X, y)
        DecisionTreeClassifier(max_depth=2).fit(X, y)
        with autolog.start_run("manual", experiment="iris") as parent:
            for step in range(10):
                autolog.log_metric("loss", 1.0 / (step + 1), step=step)
            autolog.log_param("alpha", "0.5")
            autolog.set_tag("team", "blue")
            with autolog.start_run("child", nested=True) as child:
                autolog.log_metric("loss", 3.0)
        with autolog.start_run("elsewhere", experiment="other"):
            autolog.log_metric("loss", 7.0)
        autolog.flush()
    finally:
        reset_for_tests()
    return {"folder": folder, "uri": store_uri(folder), "X": X, "models": models,
            "parent": parent.run_id, "child": child.run_id}


@pytest.fixture
def client(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    return MlflowClient(tracking_uri=store["uri"])


def test_uri_round_trip(tmp_path):
    uri = store_uri(str(tmp_path / "a b"))
    assert uri.startswith("autolog:///")
    assert store_path(uri) == str(tmp_path / "a b")
    with pytest.raises(MlflowException, match="on this machine"):
        store_path("autolog://otherhost/x")


def test_experiments(client):
    names = {e.name for e in client.search_experiments()}
    assert names == {"iris", "other"}
    iris = client.get_experiment_by_name("iris")
    assert iris.lifecycle_stage == "active"
    assert iris.artifact_location.startswith("file://")
    assert client.get_experiment(iris.experiment_id).name == "iris"
    assert [e.name for e in client.search_experiments(filter_string="name LIKE 'ir%'")] == ["iris"]
    assert client.search_experiments(view_type=ViewType.DELETED_ONLY) == []
    assert client.get_experiment_by_name("nope") is None
    with pytest.raises(MlflowException) as err:
        client.get_experiment("12345")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_search_runs_dataframe_filters_and_order(client, store):
    frame = mlflow.search_runs(experiment_names=["iris"])
    assert len(frame) == 5  # two fits, a tree, manual and its child
    assert {"params.C", "metrics.training_accuracy_score", "tags.mlflow.runName"} <= set(frame.columns)

    fits = mlflow.search_runs(experiment_names=["iris"], filter_string="params.C = '0.1'")
    assert list(fits["params.C"]) == ["0.1"]
    by_loss = mlflow.search_runs(experiment_names=["iris"], filter_string="metrics.loss > 0",
                                 order_by=["metrics.loss DESC"])
    assert list(by_loss["tags.mlflow.runName"]) == ["child", "manual"]
    named = mlflow.search_runs(experiment_names=["iris"], filter_string="attributes.run_name = 'manual'")
    assert list(named.run_id) == [store["parent"]]
    tagged = mlflow.search_runs(experiment_names=["iris"], filter_string="tags.team = 'blue'")
    assert list(tagged.run_id) == [store["parent"]]
    children = mlflow.search_runs(experiment_names=["iris"],
                                  filter_string=f"tags.mlflow.parentRunId = '{store['parent']}'")
    assert list(children.run_id) == [store["child"]]
    everywhere = mlflow.search_runs(search_all_experiments=True)
    assert len(everywhere) == 6


def test_search_runs_pages(client):
    iris = client.get_experiment_by_name("iris").experiment_id
    seen, token = [], None
    while True:
        page = client.search_runs([iris], max_results=2, page_token=token, order_by=["attributes.start_time ASC"])
        seen.extend(r.info.run_id for r in page)
        token = page.token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5


def test_get_run_and_metric_history(client, store):
    run = client.get_run(store["parent"])
    assert run.info.run_name == "manual"
    assert run.info.status == "FINISHED"
    assert run.info.lifecycle_stage == "active"
    assert run.info.artifact_uri.startswith("file://")
    assert run.data.params == {"alpha": "0.5"}
    assert run.data.metrics == {"loss": 0.1}  # the last point: the highest step
    latest = {m.key: m for m in run.to_proto().data.metrics}
    assert latest["loss"].step == 9
    assert run.data.tags["mlflow.runName"] == "manual"
    history = client.get_metric_history(store["parent"], "loss")
    assert [m.step for m in history] == list(range(10))
    assert [m.value for m in history] == [1.0 / (s + 1) for s in range(10)]
    child = client.get_run(store["child"])
    assert child.data.tags["mlflow.parentRunId"] == store["parent"]
    with pytest.raises(MlflowException) as err:
        client.get_run("0" * 32)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_model_loads_with_mlflow_pyfunc_and_is_listed(client, store):
    frame = mlflow.search_runs(experiment_names=["iris"], filter_string="params.C = '1.0'")
    run_id = frame.run_id[0]
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    np.testing.assert_array_equal(model.predict(store["X"]), store["models"][1.0].predict(store["X"]))
    history = json.loads(client.get_run(run_id).data.tags["mlflow.log-model.history"])
    assert [(h["artifact_path"], h["run_id"]) for h in history] == [("model", run_id)]
    assert "sklearn" in history[0]["flavors"]
    paths = {a.path for a in client.list_artifacts(run_id)}
    assert "model" in paths


@pytest.mark.parametrize("write", [
    lambda c, run_id: c.log_param(run_id, "x", "1"),
    lambda c, run_id: c.log_metric(run_id, "x", 1.0),
    lambda c, run_id: c.set_tag(run_id, "x", "1"),
    lambda c, run_id: c.delete_run(run_id),
    lambda c, run_id: c.create_experiment("new"),
    lambda c, run_id: c.create_run("1"),
    lambda c, run_id: c.set_terminated(run_id),
])
def test_writes_are_refused_with_a_clear_message(client, store, write):
    with pytest.raises(MlflowException, match=r"read-only through MLflow.*autolog\.autolog\(\).*MLflow tracking server"):
        write(client, store["parent"])


def test_parts_it_has_none_of_are_empty(client, store):
    iris = client.get_experiment_by_name("iris").experiment_id
    assert list(client.search_traces(locations=[iris])) == []
    assert list(client.search_logged_models([iris])) == []
    assert list(client.search_registered_models()) == []
    assert list(client.search_model_versions()) == []


def test_a_store_that_is_not_there_yet_is_empty(tmp_path):
    store = AutologTrackingStore(store_uri(str(tmp_path / "missing")))
    assert list(store.search_experiments()) == []
    with pytest.raises(MlflowException) as err:
        store.get_run("0" * 32)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert not (tmp_path / "missing").exists()  # reading never creates it


def test_runs_logged_after_the_client_was_made_show_up(store_dir, monkeypatch):
    autolog.autolog(tracking_uri=store_dir)
    with autolog.start_run("first"):
        autolog.log_metric("loss", 1.0)
    autolog.flush()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri(store_dir))
    assert list(mlflow.search_runs(search_all_experiments=True)["tags.mlflow.runName"]) == ["first"]
    with autolog.start_run("second"):
        autolog.log_metric("loss", 2.0)
    autolog.flush()
    assert list(mlflow.search_runs(search_all_experiments=True)["tags.mlflow.runName"]) == ["second", "first"]


def test_dataset_inputs_are_served(store_dir, monkeypatch):
    pandas = pytest.importorskip("pandas")
    from autolog.backends.mlflow_store import AutologTrackingStore

    autolog.autolog(tracking_uri=store_dir)
    training = pandas.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    with autolog.start_run("with-data", experiment="data") as run:
        autolog.log_input(training, context="train", name="training")
    autolog.flush()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri(store_dir))
    mlflow_run = MlflowClient().get_run(run.run_id)
    (used,) = mlflow_run.inputs.dataset_inputs
    stored = autolog.get_run(run.run_id).inputs[0].dataset
    assert (used.dataset.name, used.dataset.digest) == ("training", stored.digest)
    assert {t.key: t.value for t in used.tags} == {"mlflow.data.context": "train"}
    experiment_id = mlflow_run.info.experiment_id
    by_dataset = mlflow.search_runs([experiment_id], filter_string="dataset.name = 'training'")
    assert list(by_dataset.run_id) == [run.run_id]
    summaries = AutologTrackingStore(store_uri(store_dir))._search_datasets([experiment_id])
    assert [(s.name, s.digest, s.context) for s in summaries] == [("training", stored.digest, "train")]
