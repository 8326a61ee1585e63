"""What test_xgboost.py and test_lightgbm.py share: reading the store, `vars()` snapshots for the
round trip, and the runs mlflow's own autologging makes for the same calls.

Not a test module (pytest does not collect it); each of the two loads it with `load()`:

    common = importlib.util ... (see `load` in either test module)
"""

from __future__ import annotations

import os

import pytest

import autolog
from autolog import runs as runs_module


@pytest.fixture(autouse=True)
def no_plots_unless_asked(monkeypatch):
    """Drawing an importance chart per importance type is the worker's slowest part: tests
    that look at plots ask for them (`autolog.autolog(log_plots=True)`)."""
    monkeypatch.setenv("AUTOLOG_LOG_PLOTS", "false")


# -- reading the store ---------------------------------------------------------------------------
def all_runs() -> list:
    runs_module.flush()
    return autolog.search_runs(output_format="list")


def only_run():
    found = all_runs()
    assert len(found) == 1, [r.run_name for r in found]
    return found[0]


def artifacts(run_id: str, path=None) -> list:
    return sorted(a.path for a in runs_module._reader().list_artifacts(run_id, path))


def history(run_id: str, key: str) -> list:
    """[(step, value)] of a metric."""
    return [(m.step, m.value) for m in runs_module._reader().get_metric_history(run_id, key)]


def download(run_id: str, path: str, tmp_path) -> str:
    return runs_module._reader().download_artifacts(run_id, path, str(tmp_path / f"dl-{run_id}"))


def mlflow_pyfunc_from_run(run_id: str, store_dir: str):
    """`mlflow.pyfunc.load_model("runs:/<id>/model")`, MLflow reading autolog's local store
    through its tracking-store plugin (`autolog://`), as it reads an MLflow server."""
    import mlflow
    import mlflow.pyfunc

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri("autolog://" + os.path.abspath(store_dir))
    try:
        return mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    finally:
        mlflow.set_tracking_uri(previous)


# -- the round trip -------------------------------------------------------------------------------
def round_trip(name: str, owners: list, train, runs_per_train: int, must_patch: list) -> None:
    """Enable `name` alone -> train -> logged; disable -> every attribute of `owners` is the
    very object it was and training logs nothing; enable again -> logged again."""
    from autolog.instrument.integration import engine

    before = namespaces(owners)
    autolog.autolog(integrations=[name])
    train()
    patched = {(p.parent, p.attribute) for p in engine.patched()[name].patches}
    assert set(must_patch) <= patched, set(must_patch) - patched
    assert len(all_runs()) == runs_per_train

    autolog.autolog(disable=True)
    assert changed(before) == []
    train()
    assert len(all_runs()) == runs_per_train

    autolog.autolog(integrations=[name])
    train()
    assert len(all_runs()) == 2 * runs_per_train
    autolog.autolog(disable=True)
    assert changed(before) == []


def every_integration_round_trip(owners: list, train) -> None:
    """With every integration enabled (sklearn's too), disable restores `owners` exactly."""
    before = namespaces(owners)
    autolog.autolog()
    train()
    autolog.autolog(disable=True)
    assert changed(before) == []


def namespaces(owners: list) -> dict:
    return {owner: dict(vars(owner)) for owner in owners}


def changed(before: dict) -> list:
    """(owner, attribute) of every attribute that is not the very object it was (pickle's own
    `__slotnames__` cache, written by any pickle.dumps, is not a patch)."""
    return [(owner, key) for owner, namespace in before.items()
            for key in set(namespace) | set(vars(owner))
            if key != "__slotnames__" and vars(owner).get(key) is not namespace.get(key)]


# -- what mlflow.<flavor>.autolog() logs --------------------------------------------------------
def mlflow_runs(flavor: str, train, tmp_path, monkeypatch) -> list:
    """(params, metrics) of each run `mlflow.<flavor>.autolog()` makes for `train()`, oldest
    first, in a temporary file store (a sqlite store takes seconds to create). Models and
    datasets off: they change no param or metric key."""
    import importlib

    import mlflow

    module = importlib.import_module(f"mlflow.{flavor}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    try:
        mlflow.set_experiment("keys")
        module.autolog(log_models=False, log_datasets=False, silent=True)
        try:
            train()
        finally:
            module.autolog(disable=True)
        found = mlflow.search_runs(experiment_names=["keys"], output_format="list", order_by=["start_time ASC"])
        return [(r.data.params, r.data.metrics) for r in found]
    finally:
        mlflow.set_tracking_uri(previous)


def assert_superset_of_mlflow(flavor: str, train, tmp_path, monkeypatch, expected_runs: int) -> None:
    """Our runs for `train()` have every param and metric key MLflow's have, run by run, and
    the same final value for every metric MLflow logs (the same training, the same numbers)."""
    theirs = mlflow_runs(flavor, train, tmp_path, monkeypatch)
    autolog.autolog()
    train()
    autolog.autolog(disable=True)
    ours = sorted(all_runs(), key=lambda r: r.start_time)
    assert len(ours) == len(theirs) == expected_runs
    for run, (params, metrics) in zip(ours, theirs):
        assert set(params) <= set(run.params), (run.run_name, sorted(set(params) - set(run.params)))
        assert set(metrics) <= set(run.metrics), (run.run_name, sorted(set(metrics) - set(run.metrics)))
        for key, value in metrics.items():
            assert run.metrics[key] == pytest.approx(value, rel=1e-6), (run.run_name, key)
