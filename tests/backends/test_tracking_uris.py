"""Every tracking URI MLflow accepts goes to the MLflow backend; an unknown scheme is an error at
`autolog()` (never records sent quietly to a journal); `autolog:///PATH` is the local store.

The end-to-end cases log with autolog into MLflow's own SQLite and file stores (MLflow itself,
no server needed) and read the runs back with MLflow's client."""

from __future__ import annotations

import os

import pytest

import autolog
from autolog.backends import BackendError, backend_kind, check_tracking_uri, resolve_tracking_uri


@pytest.mark.parametrize("uri", [
    "sqlite:///mlflow.db", "sqlite:////abs/mlflow.db", "postgresql://u:p@db/mlflow", "postgresql+psycopg2://db/m",
    "mysql://db/mlflow", "mysql+pymysql://db/mlflow", "mssql+pyodbc://db/mlflow", "databricks", "databricks://profile",
    "http://127.0.0.1:5000", "https://mlflow.example.com", "mlflow+file:///tmp/mlruns",
])
def test_mlflow_schemes_go_to_the_mlflow_backend(uri):
    assert backend_kind(uri) == "mlflow"
    assert check_tracking_uri(uri) == "mlflow"


@pytest.mark.parametrize("uri", ["/data/runs", "runs", "file:///data/runs", "file:runs", "autolog:///data/runs"])
def test_folders_and_the_plugin_scheme_are_the_local_store(uri):
    assert check_tracking_uri(uri) == "local"


def test_mlflow_tracking_uri_names_mlflows_stores(tmp_path, monkeypatch):
    monkeypatch.delenv("AUTOLOG_TRACKING_URI")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}/mlruns")
    assert resolve_tracking_uri() == f"mlflow+file://{tmp_path}/mlruns"  # MLflow's file store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlruns"))
    assert resolve_tracking_uri() == f"mlflow+file://{tmp_path}/mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///m.db")
    assert resolve_tracking_uri() == "sqlite:///m.db"
    store = tmp_path / "autolog-store"
    store.mkdir()
    (store / "autolog.db").write_bytes(b"")  # a folder that holds an autolog store stays one
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(store))
    assert resolve_tracking_uri() == str(store)


@pytest.mark.parametrize("uri", ["s3://bucket/runs", "nosuch://x", "gs://bucket"])
def test_an_unknown_scheme_is_an_error_at_autolog(uri, tmp_path):
    from autolog.instrument.integration import engine

    with pytest.raises(BackendError, match=f"no autolog backend for the tracking URI '{uri}'"):
        autolog.autolog(tracking_uri=uri)
    assert engine.patched() == {} and autolog.enabled_integrations() == []  # nothing was patched
    assert not (tmp_path / "journal").exists()  # and nothing went to a journal (none was even made)


def test_an_unknown_scheme_in_the_environment_too(monkeypatch):
    monkeypatch.setenv("AUTOLOG_TRACKING_URI", "nosuch://x")
    with pytest.raises(BackendError, match="nosuch"):
        autolog.autolog()


def test_autolog_plugin_uri_logs_into_the_local_store(store_dir):
    from autolog.backends import plugin_uri

    autolog.autolog(tracking_uri=plugin_uri(store_dir), log_system_metrics=False)
    with autolog.start_run("via-plugin-uri"):
        autolog.log_metric("m", 1.0)
    autolog.flush()
    assert os.path.exists(os.path.join(store_dir, "autolog.db"))
    assert [r.run_name for r in autolog.search_runs(tracking_uri=store_dir, output_format="list")] == ["via-plugin-uri"]


@pytest.fixture
def mlflow_client_for():
    pytest.importorskip("mlflow", reason="MLflow's own stores need the mlflow package")
    from mlflow.tracking import MlflowClient

    return lambda uri: MlflowClient(tracking_uri=uri)


@pytest.mark.parametrize("store", ["sqlite", "file"])
def test_mlflow_tracking_uri_of_an_mlflow_store_gets_the_runs(store, tmp_path, monkeypatch, mlflow_client_for):
    uri = f"sqlite:///{tmp_path}/mlflow.db" if store == "sqlite" else f"file://{tmp_path}/mlruns"
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it to use ./mlruns
    monkeypatch.delenv("AUTOLOG_TRACKING_URI")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    autolog.autolog(log_system_metrics=False)
    with autolog.start_run("into-mlflow", experiment="e"):
        autolog.log_param("alpha", 0.5)
        autolog.log_metric("loss", 0.25)
    assert autolog.flush(timeout=120)
    client = mlflow_client_for(uri)
    experiment = client.get_experiment_by_name("e")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params == {"alpha": "0.5"} and run.data.metrics == {"loss": 0.25}
    assert run.data.tags["mlflow.runName"] == "into-mlflow"
