"""log_model for any flavor: a flavor that supplies only its name, library, loader and `save`
gives a model folder that autolog.load_model and mlflow.pyfunc.load_model both read; the size
limit comes from `autolog(max_model_size_mb=...)` / AUTOLOG_MAX_MODEL_SIZE_MB when not passed."""

from __future__ import annotations

import logging
import os
import tempfile
import textwrap

import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LinearRegression

import autolog
from autolog import runs
from autolog.instrument.models import (TAG_MODEL_SKIPPED, ModelFlavor, SavedFile, log_model, read_mlmodel, skip_model,
                                       snapshot_size)
from autolog.instrument.snapshots import PickledModel, pickle_model


class MinimalFlavor(ModelFlavor):
    """Only what is the flavor's own: the default snapshot (a pickle) and size are the toolkit's."""

    name = "sklearn"
    library = "scikit-learn"
    loader = "autolog_test_minimal_flavor:load"

    def save(self, snapshot: PickledModel, path: str) -> dict:
        with open(os.path.join(path, "model.pkl"), "wb") as fh:
            fh.write(snapshot.data)
        return {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.pkl"},
            "sklearn": {"pickled_model": "model.pkl", "sklearn_version": sklearn.__version__,
                        "serialization_format": snapshot.serialization_format, "code": None},
        }


@pytest.fixture
def loader_module(tmp_path, monkeypatch):
    (tmp_path / "autolog_test_minimal_flavor.py").write_text(textwrap.dedent("""
        import os, pickle
        def load(folder):
            with open(os.path.join(folder, "model.pkl"), "rb") as fh:
                return pickle.load(fh)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))


def fitted():
    X = np.arange(20, dtype=float).reshape(10, 2)
    return LinearRegression().fit(X, X[:, 0] * 2 + 1), X


def test_a_flavor_with_only_save_and_loader_gives_a_model_both_loaders_read(loader_module, tmp_path):
    model, X = fitted()
    with autolog.start_run() as run:
        assert log_model(run, model, MinimalFlavor()) is True
        model.fit(X, X[:, 1])  # refit right after: the snapshot was taken at the call
    assert autolog.flush(60)
    expected = LinearRegression().fit(X, X[:, 0] * 2 + 1).predict(X)
    np.testing.assert_allclose(autolog.load_model(run.run_id).predict(X), expected)
    folder = runs._reader().download_artifacts(run.run_id, "model", tempfile.mkdtemp(dir=tmp_path))
    meta = read_mlmodel(folder)
    assert meta["autolog"]["flavor"] == "sklearn" and meta["run_id"] == run.run_id
    assert meta["flavors"]["python_function"]["env"] == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    with open(os.path.join(folder, "requirements.txt"), encoding="utf-8") as fh:
        assert fh.read() == f"scikit-learn=={sklearn.__version__}\n"
    import mlflow.pyfunc

    np.testing.assert_allclose(mlflow.pyfunc.load_model(folder).predict(X), expected)


def test_the_size_limit_comes_from_the_settings_when_not_passed(caplog):
    model, _ = fitted()
    runs.set_settings(runs.settings().replace(max_model_size_mb=0.0001))
    with caplog.at_level(logging.WARNING, logger="autolog"):
        with autolog.start_run() as skipped:
            assert log_model(skipped, model, MinimalFlavor()) is False
            assert log_model(skipped, model, MinimalFlavor()) is False
    with autolog.start_run() as explicit:  # a limit passed by the integration wins
        assert log_model(explicit, model, MinimalFlavor(), max_size_mb=10) is True
    assert autolog.flush(60)
    reason = autolog.get_run(skipped.run_id).tags[TAG_MODEL_SKIPPED]
    assert "over max_model_size_mb=0.0001" in reason
    assert runs._reader().list_artifacts(skipped.run_id) == []
    assert len([r for r in caplog.records if "max_model_size_mb" in r.getMessage()]) == 1
    assert [a.path for a in runs._reader().list_artifacts(explicit.run_id)] == ["model"]


def test_the_size_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("AUTOLOG_MAX_MODEL_SIZE_MB", "0.0001")
    autolog.autolog(integrations=[])
    model, _ = fitted()
    with autolog.start_run() as run:
        assert log_model(run, model, MinimalFlavor()) is False
    assert TAG_MODEL_SKIPPED in autolog.get_run(run.run_id).tags


def test_no_limit_by_default():
    model, _ = fitted()
    with autolog.start_run() as run:
        assert log_model(run, model, MinimalFlavor()) is True


def test_snapshot_size_of_the_usual_snapshots(tmp_path):
    class Sized:
        size = 123

    (tmp_path / "folder" / "sub").mkdir(parents=True)
    (tmp_path / "folder" / "a").write_bytes(b"x" * 10)
    (tmp_path / "folder" / "sub" / "b").write_bytes(b"x" * 5)
    assert snapshot_size(b"12345") == 5
    assert snapshot_size(pickle_model([1, 2])) == len(pickle_model([1, 2]).data)
    assert snapshot_size(Sized()) == 123
    assert snapshot_size(str(tmp_path / "folder" / "a")) == 10
    assert snapshot_size(tmp_path / "folder") == 15
    assert snapshot_size(object()) is None


class FileFlavor(MinimalFlavor):
    """A library that saves its models only to files: the snapshot is a `SavedFile`."""

    def snapshot(self, model):
        return SavedFile(lambda path: model_to_file(model, path), "model.pkl", prefix="autolog-test-")

    def save(self, snapshot: SavedFile, path: str) -> dict:
        snapshot.move_to(os.path.join(path, "model.pkl"))
        return {"python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.pkl"}}


def model_to_file(model, path: str) -> None:
    with open(path, "wb") as fh:
        fh.write(pickle_model(model).data)


def test_a_saved_file_is_the_snapshot_moved_into_the_model_folder(loader_module):
    model, X = fitted()
    with autolog.start_run() as run:
        assert log_model(run, model, FileFlavor()) is True
        model.fit(X, X[:, 1])  # refit right after: the file was saved at the call
    assert autolog.flush(60)
    np.testing.assert_allclose(autolog.load_model(run.run_id).predict(X), X[:, 0] * 2 + 1)
    assert not [name for name in os.listdir(tempfile.gettempdir()) if name.startswith("autolog-test-")]


def test_a_saved_file_dropped_or_failing_leaves_no_folder():
    def folders():
        return [name for name in os.listdir(tempfile.gettempdir()) if name.startswith("autolog-test-")]

    snapshot = SavedFile(lambda path: open(path, "wb").close(), "empty.bin", prefix="autolog-test-")
    assert snapshot.size == 0 and os.path.isfile(snapshot.path) and len(folders()) == 1
    del snapshot  # a model skipped for its size
    assert folders() == []

    def failing_save(path):
        raise ValueError("the library cannot save this model")

    with pytest.raises(ValueError):
        SavedFile(failing_save, "model.bin", prefix="autolog-test-")
    assert folders() == []


def test_skip_model_tags_the_run_and_warns_once_per_kind(caplog):
    with caplog.at_level(logging.WARNING, logger="autolog"):
        with autolog.start_run() as run:
            skip_model(run, "the library could not save the model: ValueError: no", "library save ValueError")
            skip_model(run, "the library could not save the model: ValueError: no", "library save ValueError")
    assert autolog.flush(60)
    assert autolog.get_run(run.run_id).tags[TAG_MODEL_SKIPPED].startswith("the library could not save")
    messages = [r.getMessage() for r in caplog.records if "could not save" in r.getMessage()]
    assert len(messages) == 1 and "no model is logged" in messages[0] and run.run_id in messages[0]


def test_a_model_logged_by_deferred_work_is_written_after_it_without_a_second_slot():
    """An integration's post-fit job (deferred, holding the snapshot) logs the model: the folder
    is written right after the job, and the training thread's wait for room ends with the job."""
    from autolog.runs import logger_for

    model, _ = fitted()
    logger = logger_for()
    seen = []

    def post_fit_job():
        assert log_model(run, model, MinimalFlavor()) is True
        seen.append(logger._heavy_jobs)  # the job itself only

    with autolog.start_run() as run:
        run.defer(post_fit_job, holds_bytes=100)
    assert autolog.flush(60)
    assert seen == [1] and logger._heavy_jobs == 0
    assert [a.path for a in runs._reader().list_artifacts(run.run_id)] == ["model"]
