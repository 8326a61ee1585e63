"""Fixtures every test gets: an isolated store and journal, and loud containment.

- Each test logs into its own local store under tmp_path (AUTOLOG_TRACKING_URI) with
  its own spill journal (AUTOLOG_JOURNAL_DIR); MLflow's variables are cleared.
- Anything autolog's containment swallows fails the test (STYLE.md: loud in tests),
  unless the test asks for `contained_errors` and asserts on them itself.
- After each test autolog is disabled, its runs ended and its loggers flushed and
  closed, so no patch or thread leaks into the next test.
"""

from __future__ import annotations

import os
import sys

import pytest

from autolog.testing import reset_for_tests
from autolog.instrument import containment


@pytest.fixture
def store_dir(tmp_path):
    return str(tmp_path / "autolog-runs")


@pytest.fixture(autouse=True)
def _isolated_autolog(request, tmp_path, monkeypatch, store_dir):
    monkeypatch.setenv("AUTOLOG_TRACKING_URI", store_dir)
    monkeypatch.setenv("AUTOLOG_JOURNAL_DIR", str(tmp_path / "journal"))
    for name in ("MLFLOW_TRACKING_URI", "AUTOLOG_EXPERIMENT", "AUTOLOG_DISABLE", "AUTOLOG_RUN_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    # no system-metrics thread unless a test asks for it
    monkeypatch.setenv("AUTOLOG_LOG_SYSTEM_METRICS", "false")
    errors: list = []
    containment.set_error_hook(lambda where, exc: errors.append((where, exc)))
    containment.reset()
    request.node._autolog_errors = errors
    yield errors
    reset_for_tests()
    _forget_mlflow_fluent_state()
    containment.set_error_hook(None)
    containment.reset()
    if errors and "contained_errors" not in request.fixturenames:
        pytest.fail("autolog contained errors during the test: " + "; ".join(f"{w}: {e!r}" for w, e in errors))


def _forget_mlflow_fluent_state() -> None:
    """MLflow's fluent API keeps its tracking URI and experiment in module globals and in
    MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_ID (`mlflow.set_tracking_uri` and `set_experiment`
    set the variables for subprocesses, even when a test puts the previous URI back): a test
    that used them must not hand them to the next test or its subprocesses."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        os.environ.pop(name, None)
    tracking = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if tracking is not None:
        tracking._tracking_uri = None
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is not None:
        fluent._active_experiment_id = None


@pytest.fixture
def contained_errors(request):
    """The list of (where, exception) autolog contained; the test asserts on it itself."""
    return request.node._autolog_errors
