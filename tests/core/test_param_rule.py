"""One rule for a param key logged twice (ActiveRun.log_params, docs/api.md): the first value in
call order keeps the key; your own second value for your own key is a ValueError at the call;
any other later value goes under KEY.2. sklearn logs its params later, on the logger's worker,
so the tests call log_param both at once after a fit and after that work is done: same result."""

from __future__ import annotations

import logging

import pytest

import autolog

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

X, y = load_iris(return_X_y=True)


@pytest.fixture(autouse=True)
def _sklearn_on():
    autolog.autolog(integrations=["sklearn"], log_models=False, log_system_metrics=False, log_args=False)


def params_of(run) -> dict:
    autolog.flush()
    return autolog.get_run(run.run_id).params


@pytest.mark.parametrize("wait_for_autolog", [False, True], ids=["at-once", "after-autolog-wrote"])
def test_your_value_after_a_fit_goes_under_key_2_whatever_the_timing(wait_for_autolog, caplog):
    with autolog.start_run() as run:
        LogisticRegression(C=0.5, max_iter=300).fit(X, y)
        if wait_for_autolog:
            autolog.flush()  # sklearn's params are on the worker by now
        with caplog.at_level(logging.WARNING, logger="autolog"):
            autolog.log_param("C", 2)  # never raises: the first value came from autolog
            autolog.log_param("C", 2)  # the same value again: nothing new
    params = params_of(run)
    assert (params["C"], params["C.2"]) == ("0.5", "2")
    assert "C.3" not in params
    assert "autolog logged '0.5' for it earlier" in caplog.text


def test_your_value_before_a_fit_keeps_the_key():
    with autolog.start_run() as run:
        autolog.log_param("C", 2)
        LogisticRegression(C=0.5, max_iter=300).fit(X, y)
    params = params_of(run)
    assert (params["C"], params["C.2"]) == ("2", "0.5")


def test_the_same_value_is_one_param():
    with autolog.start_run() as run:
        LogisticRegression(C=0.5, max_iter=300).fit(X, y)
        autolog.log_param("C", 0.5)
    assert "C.2" not in params_of(run)


def test_your_own_key_twice_with_two_values_raises_at_the_call():
    with autolog.start_run() as run:
        autolog.log_param("lr", 0.1)
        with pytest.raises(ValueError, match="'lr'.*already logged with value '0.1'"):
            autolog.log_param("lr", 0.2)
    assert params_of(run) == {"lr": "0.1"}


def test_a_resumed_runs_params_are_immutable_too():
    with autolog.start_run() as run:
        autolog.log_param("lr", 0.1)
    autolog.flush()
    with autolog.start_run(run_id=run.run_id):
        with pytest.raises(ValueError, match="already logged"):
            autolog.log_param("lr", 0.3)
        autolog.log_param("lr", 0.1)
