"""The worked example of docs/writing-an-integration.md, run as written.

The example's code block is taken from the page and saved as a module; a small library
of the shape it describes (`tinyml`) is written next to it; the integration is registered
at run time, as a test registers one, and used: a fit, a failing fit, a search with child
runs, and the disable round trip.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import textwrap

import pytest

import autolog
from autolog import runs
from autolog.instrument.integration import register_integration, unregister_integration

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "writing-an-integration.md")

TINYML = '''
class Regressor:
    def __init__(self, fail_at=None):
        self.fail_at = fail_at

    def fit(self, X, y, *, epochs=10, config=None):
        self.history_ = {"loss": []}
        for epoch in range(epochs):
            if epoch == self.fail_at:
                raise RuntimeError("diverged")
            self.history_["loss"].append(1.0 / (epoch + 1))
        self.score_ = 0.9
        return self
'''

TINYML_SEARCH = '''
class GridSearch:
    def __init__(self, estimator, grid):
        self.estimator = estimator
        self.grid = grid

    def fit(self, X, y):
        self.results_ = []
        for params in self.grid:
            model = type(self.estimator)().fit(X, y, **params)
            self.results_.append((params, model.score_ - params["epochs"] / 100))
        return self
'''


def example_code() -> str:
    text = open(DOC, encoding="utf-8").read()
    section = text.split("## A complete small integration", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the worked example's code block is missing"
    return match.group(1)


@pytest.fixture
def tinyml(tmp_path, monkeypatch):
    package = tmp_path / "tinyml"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(TINYML))
    (package / "search.py").write_text(textwrap.dedent(TINYML_SEARCH))
    (tmp_path / "tinyml_autolog.py").write_text(example_code())
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    register_integration("tinyml", "tinyml_autolog:TinymlIntegration")
    yield
    unregister_integration("tinyml")
    for name in ("tinyml", "tinyml.search", "tinyml_autolog"):
        sys.modules.pop(name, None)


def history(run_id: str, key: str) -> list:
    return [(m.step, m.value) for m in runs._reader().get_metric_history(run_id, key)]


def test_the_worked_example_logs_fits_failures_and_searches(tinyml):
    assert autolog.autolog(integrations=["tinyml"]) == ["tinyml"]
    import tinyml as lib

    lib.Regressor().fit([[1.0]], [2.0], epochs=3, config={"optimizer": {"lr": 0.1, "betas": (0.9, 0.99)}})
    (run,) = autolog.search_runs(output_format="list")
    assert run.params == {"epochs": "3", "config.optimizer.lr": "0.1", "config.optimizer.betas": "(0.9, 0.99)"}
    assert run.tags["tinyml.task"] == "regression" and run.tags["autolog.integration"] == "tinyml"
    assert history(run.run_id, "loss") == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert run.metrics["training_score"] == 0.9 and run.status == "FINISHED"

    with pytest.raises(RuntimeError, match="diverged"):
        lib.Regressor(fail_at=2).fit([[1.0]], [2.0])
    failed = autolog.search_runs(output_format="list")[0]
    assert failed.status == "FAILED" and failed.params["epochs"] == "10"  # bind_defaults
    assert failed.tags["tinyml.failed_at_epoch"] == "2"

    from tinyml.search import GridSearch  # imported after autolog(): patched on import

    GridSearch(lib.Regressor(), [{"epochs": 1}, {"epochs": 2}]).fit([[1.0]], [2.0])
    found = autolog.search_runs(output_format="list")
    assert len(found) == 5  # the search and its two candidates; its inner fits logged nothing
    (search,) = [r for r in found if r.run_name.startswith("search-Regressor-") and r.parent_run_id is None]
    children = sorted((r for r in found if r.parent_run_id == search.run_id), key=lambda r: r.run_name)
    assert [c.params for c in children] == [{"epochs": "1"}, {"epochs": "2"}]
    assert [c.metrics["score"] for c in children] == pytest.approx([0.89, 0.88])
    assert [c.tags["tinyml.candidate"] for c in children] == ["0", "1"]


def test_the_worked_example_is_undone_by_disable(tinyml):
    import tinyml as lib
    import tinyml.search as search

    before = (dict(vars(lib.Regressor)), dict(vars(search.GridSearch)))
    autolog.autolog(integrations=["tinyml"])
    assert vars(lib.Regressor)["fit"] is not before[0]["fit"]
    assert vars(search.GridSearch)["fit"] is not before[1]["fit"]
    autolog.autolog(disable=True)
    after = (dict(vars(lib.Regressor)), dict(vars(search.GridSearch)))
    assert all(a.keys() == b.keys() and all(a[k] is b[k] for k in b) for a, b in zip(after, before))
    lib.Regressor().fit([[1.0]], [2.0], epochs=2)
    assert autolog.search_runs(output_format="list") == []
