"""Models that autolog's integrations log into a real MLflow server, loaded by MLflow.

For each integration that exists: fit with `autolog.autolog()` logging to the server,
then load `runs:/<MLflow run id>/model` with `mlflow.pyfunc.load_model` and with the
flavor's own `mlflow.<flavor>.load_model`, and with `autolog.load_model(<autolog id>)`:
all three predict what the fitted model predicts. Requirements are pinned to the
versions in use; `registered_model_name` adds a version to MLflow's model registry.
"""

from __future__ import annotations

import importlib.util
import json
from importlib import metadata

import numpy as np
import pytest

pytest.importorskip("mlflow", reason="the MLflow backend's tests need the mlflow package (autolog[mlflow])")

import autolog  # noqa: E402
from autolog.backends import get_backend  # noqa: E402
from autolog.backends.mlflow import TAG_MLFLOW_RUN_ID  # noqa: E402

needs_sklearn_integration = pytest.mark.skipif(
    importlib.util.find_spec("autolog.integrations.sklearn") is None, reason="integrations/sklearn.py is not there yet")
needs_statsmodels_integration = pytest.mark.skipif(
    importlib.util.find_spec("autolog.integrations.statsmodels") is None,
    reason="integrations/statsmodels.py is not there yet")


@pytest.fixture
def mlflow_reads_the_server(mlflow_uri, monkeypatch):
    """`mlflow.*.load_model("runs:/...")` resolves against the test server (MLflow's own variable,
    as a user sets it; autolog's AUTOLOG_TRACKING_URI names the same server)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")  # statsmodels' pickle, MLflow 3
    assert mlflow.get_tracking_uri() == mlflow_uri, "a test before this one called mlflow.set_tracking_uri"
    return mlflow_uri


def only_run(experiment: str):
    found = autolog.search_runs(experiment, output_format="list")
    assert len(found) == 1, [r.run_name for r in found]
    return found[0]


def requirements_of(mlflow_id: str, tmp_path) -> list[str]:
    import mlflow

    local = mlflow.artifacts.download_artifacts(f"runs:/{mlflow_id}/model/requirements.txt", dst_path=str(tmp_path))
    with open(local, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


@needs_sklearn_integration
def test_sklearn_model_loads_with_mlflow_and_is_registered(mlflow_reads_the_server, mlflow_experiment, mlflow_client,
                                                           tmp_path):
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import Model
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    name = f"{mlflow_experiment}-clf"
    X, y = make_classification(n_samples=80, n_features=4, random_state=0)
    autolog.autolog(experiment=mlflow_experiment, registered_model_name=name, integrations=["sklearn"])
    model = LogisticRegression(max_iter=200).fit(X, y)
    autolog.flush()
    run = only_run(mlflow_experiment)
    mlflow_id = run.tags[TAG_MLFLOW_RUN_ID]
    expected = model.predict(X)

    np.testing.assert_array_equal(mlflow.pyfunc.load_model(f"runs:/{mlflow_id}/model").predict(X), expected)
    np.testing.assert_array_equal(mlflow.sklearn.load_model(f"runs:/{mlflow_id}/model").predict(X), expected)
    np.testing.assert_array_equal(autolog.load_model(run.run_id).predict(X), expected)
    np.testing.assert_array_equal(autolog.load_model(f"runs:/{mlflow_id}/model").predict(X), expected)

    meta = Model.load(f"runs:/{mlflow_id}/model")  # MLflow reads our (JSON) MLmodel as its own
    assert {"sklearn", "python_function"} <= set(meta.flavors)
    assert meta.run_id == mlflow_id  # MLflow's run id on the server, as its own log_model writes
    history = json.loads(mlflow_client.get_run(mlflow_id).data.tags["mlflow.log-model.history"])  # UI's Models
    assert [(h["run_id"], h["artifact_path"], h["model_uuid"]) for h in history] == [(mlflow_id, "model", meta.model_uuid)]
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in requirements_of(mlflow_id, tmp_path)

    versions = mlflow_client.search_model_versions(f"name='{name}'")
    assert [(v.version, v.run_id) for v in versions] == [("1", mlflow_id)]
    registered = mlflow.pyfunc.load_model(f"models:/{name}/1")
    np.testing.assert_array_equal(registered.predict(X), expected)


@needs_statsmodels_integration
def test_statsmodels_model_loads_with_mlflow(mlflow_reads_the_server, mlflow_experiment, tmp_path):
    import mlflow.pyfunc
    import mlflow.statsmodels
    import statsmodels.api as sm

    rng = np.random.default_rng(0)
    X = sm.add_constant(rng.normal(size=(60, 2)))
    y = X @ np.array([0.5, 1.0, -2.0]) + rng.normal(scale=0.1, size=60)
    autolog.autolog(experiment=mlflow_experiment, integrations=["statsmodels"])
    results = sm.OLS(y, X).fit()
    autolog.flush()
    run = only_run(mlflow_experiment)
    mlflow_id = run.tags[TAG_MLFLOW_RUN_ID]
    expected = results.predict(X)

    np.testing.assert_allclose(mlflow.statsmodels.load_model(f"runs:/{mlflow_id}/model").predict(X), expected)
    np.testing.assert_allclose(np.asarray(mlflow.pyfunc.load_model(f"runs:/{mlflow_id}/model").predict(X)), expected)
    np.testing.assert_allclose(autolog.load_model(run.run_id).predict(X), expected)
    assert f"statsmodels=={metadata.version('statsmodels')}" in requirements_of(mlflow_id, tmp_path)


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosters_load_with_mlflow_from_the_server(library, mlflow_reads_the_server, mlflow_experiment, tmp_path):
    """xgboost.train / lightgbm.train logged to a real server: MLflow's pyfunc and flavor loaders
    and autolog.load_model all predict what the booster predicts."""
    pytest.importorskip(library)
    import mlflow.pyfunc

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(float)
    autolog.autolog(experiment=mlflow_experiment, integrations=[library])
    if library == "xgboost":
        import mlflow.xgboost as flavor
        import xgboost as xgb

        booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(X, label=y),
                            num_boost_round=5)
        expected = booster.predict(xgb.DMatrix(X))
    else:
        import lightgbm as lgb
        import mlflow.lightgbm as flavor

        booster = lgb.train({"objective": "binary", "num_leaves": 4, "verbose": -1}, lgb.Dataset(X, label=y),
                            num_boost_round=5)
        expected = booster.predict(X)
    autolog.flush()
    run = only_run(mlflow_experiment)
    mlflow_id = run.tags[TAG_MLFLOW_RUN_ID]

    np.testing.assert_allclose(np.asarray(mlflow.pyfunc.load_model(f"runs:/{mlflow_id}/model").predict(X)).ravel(),
                               expected, rtol=1e-6)
    loaded = flavor.load_model(f"runs:/{mlflow_id}/model")
    got = loaded.predict(xgb.DMatrix(X)) if library == "xgboost" else loaded.predict(X)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    again = autolog.load_model(run.run_id)
    got = again.predict(xgb.DMatrix(X)) if library == "xgboost" else again.predict(X)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert any(line.startswith(f"{library}==") for line in requirements_of(mlflow_id, tmp_path))


@needs_sklearn_integration
def test_each_logged_model_is_a_new_registered_version(mlflow_uri, mlflow_experiment, mlflow_client):
    from sklearn.linear_model import LinearRegression

    name = f"{mlflow_experiment}-reg"
    X = np.arange(20.0).reshape(10, 2)
    y = X @ np.array([1.0, 2.0])
    autolog.autolog(experiment=mlflow_experiment, registered_model_name=name, integrations=["sklearn"])
    LinearRegression().fit(X, y)
    LinearRegression(fit_intercept=False).fit(X, y)
    autolog.flush()
    backend = get_backend(mlflow_uri)
    mlflow_ids = {backend.mlflow_run_id(r.run_id) for r in autolog.search_runs(mlflow_experiment, output_format="list")}
    versions = mlflow_client.search_model_versions(f"name='{name}'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    assert {v.run_id for v in versions} == mlflow_ids


@needs_sklearn_integration
def test_registered_model_name_on_the_local_store_warns_and_logs_the_model(caplog):
    from sklearn.linear_model import LinearRegression

    X = np.arange(20.0).reshape(10, 2)
    autolog.autolog(registered_model_name="nowhere", integrations=["sklearn"])  # the local store (conftest)
    model = LinearRegression().fit(X, X[:, 0])
    autolog.flush()
    run = autolog.search_runs(output_format="list")[0]
    np.testing.assert_allclose(autolog.load_model(run.run_id).predict(X), model.predict(X))
    assert "has no model registry" in caplog.text


@needs_sklearn_integration
def test_a_registration_made_while_the_server_was_away_is_replayed_once(mlflow_reads_the_server, closed_port_url,
                                                                         mlflow_experiment, mlflow_client, monkeypatch):
    """The model folder and its registration are spilled together, and `autolog sync` delivers
    both, in order; a second sync registers nothing again."""
    from sklearn.linear_model import LinearRegression

    from autolog import runs
    from autolog.transport.journal import journal_dir_for
    from autolog.transport.sync import sync

    monkeypatch.setenv("AUTOLOG_RETRY_SECONDS", "0.2")
    name = f"{mlflow_experiment}-offline"
    X = np.arange(20.0).reshape(10, 2)
    autolog.autolog(experiment=mlflow_experiment, tracking_uri=closed_port_url, registered_model_name=name,
                    integrations=["sklearn"])
    model = LinearRegression().fit(X, X[:, 0])
    assert autolog.flush(60)
    logger = runs.logger_for(closed_port_url)
    assert logger.stats.spilled > 0 and logger.stats.written == 0 and logger.stats.rejected == 0
    logger.close(timeout=10)  # the process "ends" with everything in the journal

    folder = journal_dir_for(closed_port_url)
    with open(f"{folder}/uri.txt") as fh:
        assert fh.read().strip() == closed_port_url
    first = sync(None, mlflow_reads_the_server, journals=[folder])
    assert first.ok and first.journal_records == logger.stats.spilled, first.to_json()
    second = sync(None, mlflow_reads_the_server, journals=[folder])
    assert second.ok and second.journal_records == 0, second.to_json()

    import mlflow.pyfunc

    versions = mlflow_client.search_model_versions(f"name='{name}'")
    assert [v.version for v in versions] == ["1"]
    np.testing.assert_allclose(mlflow.pyfunc.load_model(f"models:/{name}/1").predict(X), model.predict(X))


@needs_sklearn_integration
def test_registering_the_same_folder_again_returns_its_version(mlflow_uri, mlflow_experiment, mlflow_client):
    from sklearn.linear_model import LinearRegression

    name = f"{mlflow_experiment}-again"
    X = np.arange(20.0).reshape(10, 2)
    autolog.autolog(experiment=mlflow_experiment, registered_model_name=name, integrations=["sklearn"])
    LinearRegression().fit(X, X[:, 0])
    autolog.flush()
    run = only_run(mlflow_experiment)
    backend = get_backend(mlflow_uri)
    assert backend.register_model(run.run_id, "model", name) == "1"  # what a journal replay does
    assert [v.version for v in mlflow_client.search_model_versions(f"name='{name}'")] == ["1"]


@needs_sklearn_integration
def test_a_model_trained_offline_and_synced_loads_with_mlflow(mlflow_server, mlflow_experiment, mlflow_client,
                                                              store_dir, monkeypatch):
    """`autolog sync` copies artifacts file by file; the model still arrives as MLflow's log_model
    leaves one: MLflow's run id in MLmodel, the run's model history, pyfunc and sklearn loading."""
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import Model
    from sklearn.linear_model import LogisticRegression

    from autolog.transport.sync import sync

    server = mlflow_server.url
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)  # for mlflow's loaders; autolog logs into its store
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    X = np.linspace(-2, 2, 40).reshape(20, 2)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    autolog.autolog(experiment=mlflow_experiment, integrations=["sklearn"])  # into the local store (conftest)
    model = LogisticRegression().fit(X, y)
    autolog.flush()
    run = only_run(mlflow_experiment)

    report = sync(store_dir, server, experiment=mlflow_experiment)
    assert report.ok and report.runs_copied == 1, report.to_json()
    mlflow_id = get_backend(server).mlflow_run_id(run.run_id)
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(f"runs:/{mlflow_id}/model").predict(X), model.predict(X))
    np.testing.assert_array_equal(mlflow.sklearn.load_model(f"runs:/{mlflow_id}/model").predict(X), model.predict(X))
    assert Model.load(f"runs:/{mlflow_id}/model").run_id == mlflow_id
    history = json.loads(mlflow_client.get_run(mlflow_id).data.tags["mlflow.log-model.history"])
    assert [(h["run_id"], h["artifact_path"]) for h in history] == [(mlflow_id, "model")]
    with open(f"{autolog.get_run(run.run_id).artifact_uri}/model/MLmodel") as fh:
        assert json.load(fh)["run_id"] == run.run_id  # the local copy keeps autolog's id
