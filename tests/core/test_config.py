"""Settings: every `autolog()` argument, the environment variables behind them, the order
argument > environment > default, and validation once at `autolog()`."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import autolog
from autolog import config
from autolog.config import ENVIRONMENT, Settings, build_settings, env_value, logger_options


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", " yes ", "on", "y", "t"])
def test_true_values(monkeypatch, raw):
    monkeypatch.setenv("AUTOLOG_TEST_FLAG", raw)
    assert env_value("AUTOLOG_TEST_FLAG", bool) is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "off", "n", "f", ""])
def test_false_values(monkeypatch, raw):
    monkeypatch.setenv("AUTOLOG_TEST_FLAG", raw)
    assert env_value("AUTOLOG_TEST_FLAG", bool) is False


def test_typed_values_and_defaults(monkeypatch):
    assert env_value("AUTOLOG_TEST_UNSET", int, 7) == 7
    monkeypatch.setenv("AUTOLOG_TEST_INT", " 42 ")
    monkeypatch.setenv("AUTOLOG_TEST_FLOAT", "0.25")
    monkeypatch.setenv("AUTOLOG_TEST_LIST", "sklearn, torch,,xgboost ")
    monkeypatch.setenv("AUTOLOG_TEST_TEXT", "  ")
    assert env_value("AUTOLOG_TEST_INT", int) == 42
    assert env_value("AUTOLOG_TEST_FLOAT", float) == 0.25
    assert env_value("AUTOLOG_TEST_LIST", tuple) == ("sklearn", "torch", "xgboost")
    assert env_value("AUTOLOG_TEST_TEXT", str, "default") == "default"


@pytest.mark.parametrize("kind, raw", [(bool, "maybe"), (int, "1.5"), (float, "fast")])
def test_bad_values_name_the_variable(monkeypatch, kind, raw):
    monkeypatch.setenv("AUTOLOG_TEST_BAD", raw)
    with pytest.raises(ValueError) as excinfo:
        env_value("AUTOLOG_TEST_BAD", kind)
    assert "AUTOLOG_TEST_BAD" in str(excinfo.value) and raw in str(excinfo.value)


def test_every_autolog_argument_is_a_setting():
    arguments = set(inspect.signature(autolog.autolog).parameters) - {"disable"}
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert arguments == fields
    # every environment variable maps onto a real setting
    assert set(ENVIRONMENT) <= fields
    assert all(var.startswith("AUTOLOG_") for var, _ in ENVIRONMENT.values())


def test_defaults(monkeypatch):
    monkeypatch.delenv("AUTOLOG_TRACKING_URI")  # set by the test fixtures
    s = build_settings({})
    assert s.tracking_uri is None and s.experiment is None and s.integrations is None
    assert s.log_models is True and s.exclusive is False and s.silent is False
    assert s.max_tuning_runs == 5 and s.extra_tags == {}


def test_argument_over_environment_over_default(monkeypatch):
    monkeypatch.setenv("AUTOLOG_EXPERIMENT", "env-exp")
    monkeypatch.setenv("AUTOLOG_LOG_MODELS", "false")
    monkeypatch.setenv("AUTOLOG_MAX_TUNING_RUNS", "9")
    monkeypatch.setenv("AUTOLOG_INTEGRATIONS", "sklearn,xgboost")
    s = build_settings({"experiment": None, "log_models": None})
    assert s.experiment == "env-exp" and s.log_models is False and s.max_tuning_runs == 9
    assert s.integrations == ("sklearn", "xgboost")
    s = build_settings({"experiment": "arg-exp", "log_models": True, "max_tuning_runs": 1, "integrations": ["Torch"]})
    assert s.experiment == "arg-exp" and s.log_models is True and s.max_tuning_runs == 1
    assert s.integrations == ("torch",)  # names are normalised
    # False given as an argument wins over a true environment value
    monkeypatch.setenv("AUTOLOG_SILENT", "true")
    assert build_settings({"silent": False}).silent is False
    assert build_settings({}).silent is True


def test_validation_happens_once_at_build():
    with pytest.raises(ValueError, match="max_tuning_runs"):
        build_settings({"max_tuning_runs": -2})
    with pytest.raises(ValueError, match="max_metric_rows"):
        build_settings({"max_metric_rows": -1})
    with pytest.raises(ValueError, match="system_metrics_interval"):
        build_settings({"system_metrics_interval": 0})
    with pytest.raises(ValueError, match="max_model_size_mb"):
        build_settings({"max_model_size_mb": -1.0})
    with pytest.raises(ValueError, match="empty integration name"):
        build_settings({"integrations": ["sklearn", " "]})
    s = build_settings({"exclude": "Keras", "extra_tags": {"n": 1}})
    assert s.exclude == ("keras",) and s.extra_tags == {"n": "1"}


def test_settings_are_immutable():
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.experiment = "x"  # type: ignore[misc]
    assert s.replace(experiment="x").experiment == "x" and s.experiment is None


def test_logger_options_from_the_environment(monkeypatch):
    for name in ("AUTOLOG_BATCH_SIZE", "AUTOLOG_FLUSH_INTERVAL", "AUTOLOG_MAX_QUEUE_SIZE",
                 "AUTOLOG_RETRY_SECONDS", "AUTOLOG_EXIT_FLUSH_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    defaults = logger_options()
    assert defaults["flush_interval"] <= 1.0 and defaults["exit_flush_timeout"] > 0
    assert defaults["max_queue_size"] >= defaults["max_batch_size"]
    monkeypatch.setenv("AUTOLOG_BATCH_SIZE", "10")
    monkeypatch.setenv("AUTOLOG_EXIT_FLUSH_TIMEOUT", "0.5")
    options = logger_options()
    assert options["max_batch_size"] == 10 and options["exit_flush_timeout"] == 0.5


def test_autolog_swaps_the_settings_object():
    autolog.autolog(integrations=[], experiment="first")
    first = autolog.runs.settings()
    autolog.autolog(integrations=[], experiment="second")
    assert autolog.runs.settings().experiment == "second" and first.experiment == "first"
    assert config.Settings().experiment is None
