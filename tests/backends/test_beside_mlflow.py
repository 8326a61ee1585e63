"""autolog beside MLflow's own autologging (autolog/instrument/beside_mlflow.py), with the real
MLflow: whichever is turned on first, a library MLflow's autologging has taken is MLflow's to
log (one warning says so), nothing crashes, and the other libraries stay autolog's."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("mlflow")
pytest.importorskip("sklearn")

import mlflow  # noqa: E402
from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS, AutologgingEventLogger  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import autolog  # noqa: E402

X, y = load_iris(return_X_y=True)


@pytest.fixture(autouse=True)
def mlflow_store(tmp_path, monkeypatch):
    """MLflow logs into a SQLite store of the test's own; autolog into its local store as ever."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    logger_before = AutologgingEventLogger._event_logger
    fit_before = vars(LogisticRegression)["fit"]
    yield uri
    mlflow.autolog(disable=True)
    mlflow.sklearn.autolog(disable=True)
    autolog.autolog(disable=True)
    assert AutologgingEventLogger._event_logger is logger_before  # MLflow's hook as it was
    assert vars(LogisticRegression)["fit"] is fit_before  # neither left a patch behind
    # MLflow remembers a flavor configured by its own autolog() for the process (mlflow.autolog()
    # then leaves it alone); each test starts from MLflow's state at import: nothing configured
    for flavor in AUTOLOGGING_INTEGRATIONS:
        AUTOLOGGING_INTEGRATIONS[flavor] = {}


def mlflow_runs() -> list:
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def autolog_runs() -> list:
    return autolog.search_runs(output_format="list")


def fit() -> None:
    LogisticRegression(max_iter=300).fit(X, y)
    autolog.flush()


@pytest.mark.parametrize("turn_on_mlflow", [lambda: mlflow.sklearn.autolog(), lambda: mlflow.autolog()],
                         ids=["mlflow.sklearn.autolog", "mlflow.autolog"])
def test_mlflow_after_autolog_takes_sklearn_without_crashing(turn_on_mlflow, caplog):
    autolog.autolog(log_system_metrics=False)
    assert "sklearn" in autolog.enabled_integrations()
    with caplog.at_level(logging.WARNING):
        turn_on_mlflow()  # crashed with "'FunctionWrapper' object has no attribute 'fn'" before
    assert "sklearn" not in autolog.enabled_integrations()
    assert "MLflow's own autologging is on for sklearn: autolog leaves it to it" in caplog.text
    assert "Exception raised while enabling autologging" not in caplog.text  # MLflow's own patching worked
    fit()
    (logged,) = mlflow_runs()
    assert logged.data.metrics["training_accuracy_score"] > 0.9  # MLflow's sklearn logging, not lost
    assert autolog_runs() == []  # and not twice


def test_mlflow_before_autolog_is_left_its_libraries(caplog):
    mlflow.sklearn.autolog()
    with caplog.at_level(logging.WARNING, logger="autolog"):
        enabled = autolog.autolog(log_system_metrics=False)
    assert "sklearn" not in enabled and "statsmodels" in enabled  # the other libraries stay autolog's
    assert caplog.text.count("MLflow's own autologging is on for sklearn") == 1
    fit()
    assert len(mlflow_runs()) == 1 and autolog_runs() == []


def test_mlflow_turned_off_gives_the_library_back():
    autolog.autolog(log_system_metrics=False)
    mlflow.sklearn.autolog()
    mlflow.sklearn.autolog(disable=True)
    assert "sklearn" in autolog.enabled_integrations()
    fit()
    assert mlflow_runs() == [] and len(autolog_runs()) == 1


def test_autolog_disabled_leaves_mlflow_alone():
    autolog.autolog(log_system_metrics=False)
    autolog.autolog(disable=True)
    mlflow.sklearn.autolog()  # autolog is off: nothing of it reacts
    assert autolog.enabled_integrations() == []
    fit()
    assert len(mlflow_runs()) == 1 and autolog_runs() == []
