"""MLflow's fluent API on autolog (autolog/fluent.py): the names MLflow tutorials use, with
MLflow's semantics, checked on what a user reads back (the run, its artifacts, the model)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import autolog
from autolog.backends import BackendError


@pytest.fixture(autouse=True)
def _environment_restored():
    """set_tracking_uri and set_experiment set environment variables, as MLflow's do."""
    saved = {name: os.environ.get(name) for name in ("AUTOLOG_TRACKING_URI", "AUTOLOG_EXPERIMENT")}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def read_artifact(run_id: str, path: str) -> bytes:
    run = autolog.get_run(run_id)
    with open(os.path.join(run.artifact_uri, *path.split("/")), "rb") as fh:
        return fh.read()


# -- tracking URI and experiments -----------------------------------------------------------------
def test_set_and_get_tracking_uri(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere"
    autolog.set_tracking_uri(target)
    assert autolog.get_tracking_uri() == str(target)
    assert os.environ["AUTOLOG_TRACKING_URI"] == str(target)  # child processes and a later autolog() see it
    autolog.autolog(log_system_metrics=False)
    assert autolog.get_tracking_uri() == str(target)
    with autolog.start_run("here"):
        pass
    assert [r.run_name for r in autolog.search_runs(tracking_uri=str(target), output_format="list")] == ["here"]


def test_set_tracking_uri_refuses_an_unknown_scheme_at_once():
    with pytest.raises(BackendError, match="no autolog backend for the tracking URI 'nosuch://x'"):
        autolog.set_tracking_uri("nosuch://x")


def test_set_experiment_then_runs_go_there():
    made = autolog.set_experiment("sweep")
    assert made.name == "sweep" and made.experiment_id is None  # made by its first run
    assert os.environ["AUTOLOG_EXPERIMENT"] == "sweep"
    with autolog.start_run("one"):
        pass
    found = autolog.get_experiment_by_name("sweep")
    assert found is not None and found.experiment_id is not None
    assert autolog.search_runs(output_format="list")[0].experiment_name == "sweep"
    assert autolog.set_experiment(experiment_id=found.experiment_id).name == "sweep"
    assert autolog.get_experiment_by_name("nope") is None
    with pytest.raises(ValueError, match="exactly one"):
        autolog.set_experiment()


def test_search_experiments_filters_and_orders():
    for name in ("sweep-a", "sweep-b", "other"):
        with autolog.start_run(experiment=name):
            pass
    assert [e.name for e in autolog.search_experiments(filter_string="name LIKE 'sweep-%'", order_by=["name DESC"])] == [
        "sweep-b", "sweep-a"]
    assert [e.name for e in autolog.search_experiments(filter_string="name = 'other'")] == ["other"]
    assert [e.name for e in autolog.search_experiments(order_by=["name ASC"], max_results=2)] == ["other", "sweep-a"]
    assert autolog.search_experiments(view_type=2) == []  # DELETED_ONLY: nothing is deleted
    with pytest.raises(ValueError, match="cannot parse"):
        autolog.search_experiments(filter_string="name ~ 'x'")


# -- search_runs --------------------------------------------------------------------------------------
def test_search_runs_is_a_dataframe_like_mlflows():
    pandas = pytest.importorskip("pandas")
    with autolog.start_run("a", experiment="e") as run:
        autolog.log_param("alpha", 0.5)
        autolog.log_metric("rmse", 1.5)
        autolog.set_tag("team", "blue")
    frame = autolog.search_runs("e")
    assert isinstance(frame, pandas.DataFrame)
    row = frame.iloc[0]
    assert (row.run_id, row["params.alpha"], row["metrics.rmse"], row["tags.team"]) == (run.run_id, "0.5", 1.5, "blue")
    assert row.status == "FINISHED" and row.artifact_uri.startswith("file://")
    assert str(frame.start_time.dtype).startswith("datetime64")
    assert list(frame.columns[:6]) == ["run_id", "run_name", "experiment_id", "experiment_name", "status", "artifact_uri"]
    assert autolog.search_runs("nothing").empty
    assert [r.run_id for r in autolog.search_runs("e", output_format="list")] == [run.run_id]
    with pytest.raises(ValueError, match="output_format"):
        autolog.search_runs(output_format="json")


# -- run.info -------------------------------------------------------------------------------------------
def test_run_info_has_mlflows_fields(store_dir):
    with autolog.start_run("r", experiment="exp") as run:
        info = run.info
        assert info.run_id == run.run_id and info.lifecycle_stage == "active" and info.status == "RUNNING"
        experiment = autolog.get_experiment_by_name("exp")
        assert info.experiment_id == experiment.experiment_id
        assert info.artifact_uri == f"file://{store_dir}/artifacts/{experiment.experiment_id}/{run.run_id}"
    assert run.info.status == "FINISHED"


# -- artifacts --------------------------------------------------------------------------------------------
def test_log_dict_json_and_yaml():
    yaml = pytest.importorskip("yaml")
    with autolog.start_run() as run:
        autolog.log_dict({"lr": 0.1, "layers": [1, 2]}, "config/train.json")
        autolog.log_dict({"lr": 0.1}, "config/train.yaml")
    autolog.flush()
    assert json.loads(read_artifact(run.run_id, "config/train.json")) == {"lr": 0.1, "layers": [1, 2]}
    assert yaml.safe_load(read_artifact(run.run_id, "config/train.yaml")) == {"lr": 0.1}


def test_log_figure_matplotlib():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([1, 2, 3])
    with autolog.start_run() as run:
        autolog.log_figure(figure, "plots/curve.png")
    plt.close(figure)
    autolog.flush()
    assert read_artifact(run.run_id, "plots/curve.png").startswith(b"\x89PNG")
    with pytest.raises(TypeError, match="matplotlib or plotly"):
        autolog.log_figure(object(), "x.png")


def test_log_image_file_and_steps():
    Image = pytest.importorskip("PIL.Image")
    picture = np.zeros((8, 6, 3), dtype=np.uint8)
    picture[:, :, 0] = 255
    with autolog.start_run() as run:
        autolog.log_image(picture, "images/red.png")
        for step in range(3):
            autolog.log_image(np.full((4, 4), step / 2.0), key="samples/gray", step=step)
    autolog.flush()
    import io

    red = Image.open(io.BytesIO(read_artifact(run.run_id, "images/red.png")))
    assert red.size == (6, 8) and red.getpixel((0, 0)) == (255, 0, 0)
    names = [a.path for a in autolog.runs._reader().list_artifacts(run.run_id, "images")]
    steps = sorted(n for n in names if n.startswith("images/samples~gray+step+") and n.endswith(".png"))
    assert [n.split("+")[2] for n in steps] == ["0", "1", "2"]  # MLflow's file names, one per step
    assert sum(n.endswith("+compressed.webp") for n in names) == 3
    assert autolog.get_run(run.run_id).tags["mlflow.loggedImages"] == "True"
    with pytest.raises(TypeError, match="exactly one"):
        autolog.log_image(picture)
    with pytest.raises(ValueError, match="pixel values"):
        autolog.log_image(np.full((2, 2), 300), "x.png")


# -- log_model -------------------------------------------------------------------------------------------
def test_log_model_dispatches_by_the_models_package():
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LinearRegression

    X = np.arange(20, dtype=float).reshape(10, 2)
    y = X @ [1.0, 2.0]
    model = LinearRegression().fit(X, y)  # autolog() is off: nothing is logged by the fit
    with autolog.start_run() as run:
        uri = autolog.log_model(model, "regressor", input_example=X[:3])
    assert uri == f"runs:/{run.run_id}/regressor"
    loaded = autolog.load_model(uri)
    np.testing.assert_allclose(loaded.predict(X), model.predict(X))
    from autolog.instrument.models import read_mlmodel

    meta = read_mlmodel(os.path.join(autolog.get_run(run.run_id).artifact_uri, "regressor"))
    assert "sklearn" in meta["flavors"] and meta["signature"]["inputs"]
    with pytest.raises(LookupError, match="no installed autolog integration writes models of type builtins.dict"):
        autolog.log_model({}, "nope")
