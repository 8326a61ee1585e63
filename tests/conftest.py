"""Fixtures every test gets: an isolated store and journal, and loud containment.

- Each test logs into its own local store under tmp_path (AUTOLOG_TRACKING_URI) with
  its own spill journal (AUTOLOG_JOURNAL_DIR); MLflow's variables are cleared.
- Anything autolog's containment swallows fails the test (STYLE.md: loud in tests),
  unless the test asks for `contained_errors` and asserts on them itself.
- After each test autolog is disabled, its runs ended and its loggers flushed and
  closed, so no patch or thread leaks into the next test.
"""

from __future__ import annotations

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
    containment.set_error_hook(None)
    containment.reset()
    if errors and "contained_errors" not in request.fixturenames:
        pytest.fail("autolog contained errors during the test: " + "; ".join(f"{w}: {e!r}" for w, e in errors))


@pytest.fixture
def contained_errors(request):
    """The list of (where, exception) autolog contained; the test asserts on it itself."""
    return request.node._autolog_errors
