"""The Keras integration, with real Keras 3 on tensorflow-cpu (tiny models, a few epochs).

One TensorFlow import for the whole module: two more interpreters (the torch backend, and
TensorFlow with TensorBoard blocked) run in subprocesses. Each test asserts on what a user
looks at: the run's params, metric histories, artifacts, and the model loaded back.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pathlib
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import autolog
from autolog import runs
from autolog.instrument.integration import engine

if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    tf = pytest.importorskip("tensorflow")
    # two logical CPUs for MirroredStrategy: possible only before TensorFlow's runtime starts
    # (not when another test module of this session started it first)
    try:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:
        pass
keras = pytest.importorskip("keras")

FIT_OWNERS_NOTE = "keras.Model.fit / evaluate are inherited from the backend's trainer: the wrappers live on keras.Model"


# -- helpers -------------------------------------------------------------------------------------
@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("float32")
    return x, y


def mlp(optimizer="adam", metrics=("accuracy",), loss="binary_crossentropy") -> "keras.Model":
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=optimizer, loss=loss, metrics=list(metrics))
    return model


def the_run():
    found = autolog.search_runs(output_format="list")
    assert len(found) == 1, [r.run_name for r in found]
    return found[0]


def history(run_id: str, key: str) -> list:
    return [(m.step, m.value) for m in sorted(runs._reader().get_metric_history(run_id, key), key=lambda m: m.step)]


def artifact_paths(run_id: str, path=None) -> set:
    return {a.path for a in runs._reader().list_artifacts(run_id, path)}


def download(run_id: str, path: str, tmp_path) -> str:
    return runs._reader().download_artifacts(run_id, path, str(tmp_path / f"dl-{len(os.listdir(tmp_path))}"))


def autolog_warnings(caplog) -> list:
    return [r.getMessage() for r in caplog.records if r.name == "autolog" and r.levelno >= logging.WARNING]


# -- the disable-identity test's convention ------------------------------------------------------
def identity_owners() -> list:
    """keras.Model (where the wrappers are set), the classes it inherits fit/evaluate from, and
    Sequential. Python makes a class's empty `__annotations__` dict the first time it is read,
    and `model.save()` reads it on every class of the model (with or without autolog): read
    here first, so that this cache is not taken for a patch."""
    import keras

    owners = [c for c in keras.Sequential.__mro__ if c is not object]
    for owner in owners:
        owner.__annotations__  # noqa: B018 - see the docstring
    return owners


def identity_train() -> None:
    """One fit, and an evaluate after it."""
    import keras

    x = np.linspace(-1.0, 1.0, 32, dtype="float32").reshape(16, 2)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, x[:, :1], epochs=1, verbose=0)
    model.evaluate(x, x[:, :1], verbose=0)


# -- what a fit logs ------------------------------------------------------------------------------
def test_fit_logs_params_metrics_summary_and_model(data, tmp_path):
    x, y = data
    model = mlp(optimizer=keras.optimizers.Adam(learning_rate=0.01, beta_1=0.8))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, min_delta=0.001)
    user_callbacks = [stop]
    autolog.autolog()
    returned = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0, callbacks=user_callbacks)
    run = the_run()

    assert returned is model.history and returned.epoch == [0, 1, 2]
    assert user_callbacks == [stop] and len(user_callbacks) == 1  # the user's list is untouched
    assert run.status == "FINISHED" and run.run_name.startswith("Sequential-")
    p = run.params
    assert (p["epochs"], p["batch_size"], p["validation_split"], p["shuffle"], p["initial_epoch"]) == ("3", "16", "0.25", "True", "0")
    # Keras numbers a name already taken in the process ("adam_3"); the config's name is what MLflow logs
    assert p["optimizer_name"] == p["opt_name"] == model.optimizer.get_config()["name"]
    assert p["optimizer_name"].startswith("adam")
    assert float(p["optimizer_learning_rate"]) == pytest.approx(0.01) and p["optimizer_beta_1"] == "0.8"
    assert p["loss"] == "binary_crossentropy" and p["metrics"] == "accuracy"
    assert (p["trainable_params"], p["non_trainable_params"], p["total_params"]) == ("19", "0", "19")
    assert (p["monitor"], p["patience"], p["min_delta"]) == ("val_loss", "5", "0.001")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        logged = history(run.run_id, key)
        assert [s for s, _ in logged] == [0, 1, 2], key
        assert [v for _, v in logged] == pytest.approx(returned.history[key]), key
    assert [v for _, v in history(run.run_id, "validation_loss")] == pytest.approx(returned.history["val_loss"])
    assert [s for s, _ in history(run.run_id, "learning_rate")] == [0, 1, 2]
    assert run.metrics["learning_rate"] == pytest.approx(0.01)

    assert {"model", "model_summary.txt"} <= artifact_paths(run.run_id)
    with open(download(run.run_id, "model_summary.txt", tmp_path), encoding="utf-8") as fh:
        assert "Total params: 19" in fh.read()
    loaded = autolog.load_model(run.run_id)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    mlmodel = json.load(open(os.path.join(download(run.run_id, "model", tmp_path), "MLmodel")))
    assert mlmodel["flavors"]["keras"] == {"data": "data", "keras_backend": keras.backend.backend(),
                                           "keras_version": keras.__version__, "save_exported_model": False}
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "mlflow.keras"
    assert json.loads(mlmodel["signature"]["inputs"]) == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]


def test_functional_and_subclassed_models_and_a_tf_dataset(data):
    x, y = data

    @keras.saving.register_keras_serializable(package="autolog_test_subclassed")
    class TwoLayers(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hidden = keras.layers.Dense(3, activation="relu")
            self.out = keras.layers.Dense(1)

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    inputs = keras.Input((4,), name="features")
    functional = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(2)(inputs)))
    functional.compile(optimizer="sgd", loss="mse")
    subclassed = TwoLayers()
    subclassed.compile(optimizer=keras.optimizers.RMSprop(0.001), loss=keras.losses.MeanSquaredError(), metrics=["mae"])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).prefetch(2)
    autolog.autolog()
    functional.fit(x, y, epochs=2, verbose=0, class_weight={0: 1.0, 1: 2.0})
    subclassed.fit(dataset, epochs=2, verbose=0)

    by_name = {r.run_name.rsplit("-", 1)[0]: r for r in autolog.search_runs(output_format="list")}
    assert set(by_name) == {"Functional", "TwoLayers"}
    assert by_name["Functional"].params["batch_size"] == "32"  # Keras's default for arrays
    assert by_name["Functional"].params["class_weight"] == "{0: 1.0, 1: 2.0}"
    assert by_name["TwoLayers"].params["class_weight"] == "None"
    assert by_name["Functional"].params["validation_data"] == "None"
    assert by_name["TwoLayers"].params["batch_size"] == "8"  # read from the tf.data pipeline
    assert by_name["TwoLayers"].params["optimizer_name"] == subclassed.optimizer.name  # "rm_sprop", as Keras names it
    assert by_name["TwoLayers"].params["loss"] == "mean_squared_error"
    assert by_name["TwoLayers"].params["trainable_params"] == str(subclassed.count_params())  # built by fit
    assert [s for s, _ in history(by_name["TwoLayers"].run_id, "mae")] == [0, 1]
    loaded = autolog.load_model(by_name["TwoLayers"].run_id)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), subclassed.predict(x, verbose=0), rtol=1e-6)


def test_batch_size_of_a_generator_is_read_and_the_data_kept(data):
    x, y = data
    yielded = []

    def batches():
        for start in range(0, 64, 16):
            yielded.append(start)
            yield x[start:start + 16], y[start:start + 16]

    plain = mlp()
    plain.fit(batches(), epochs=1, verbose=0)
    steps_without_autolog = int(plain.optimizer.iterations.numpy())
    yielded.clear()
    model = mlp()
    autolog.autolog()
    returned = model.fit(batches(), epochs=1, verbose=0)
    run = the_run()
    assert run.params["batch_size"] == "16"
    assert yielded == [0, 16, 32, 48]  # every batch read once, the first one by autolog
    assert int(model.optimizer.iterations.numpy()) == steps_without_autolog  # and all of them reached Keras
    assert returned.history["loss"][0] == pytest.approx(run.metrics["loss"])


def test_learning_rate_under_a_schedule_each_epoch(data):
    x, y = data
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5)
    model = mlp(optimizer=keras.optimizers.SGD(schedule))
    autolog.autolog()
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)  # 4 steps per epoch
    run = the_run()
    assert run.params["optimizer_learning_rate"] == "ExponentialDecay"
    assert run.params["optimizer_learning_rate.initial_learning_rate"] == "0.1"
    assert run.params["optimizer_learning_rate.decay_steps"] == "4"
    # the rate in effect when each epoch began: 0.1 * 0.5 ** (steps so far / 4)
    assert history(run.run_id, "learning_rate") == [(0, pytest.approx(0.1)), (1, pytest.approx(0.05)),
                                                      (2, pytest.approx(0.025))]


def test_evaluate_after_fit_logs_to_the_training_run(data):
    x, y = data
    model = mlp()
    stranger = mlp()
    autolog.autolog()
    model.fit(x, y, epochs=2, batch_size=32, validation_data=(x[:16], y[:16]), verbose=0)
    first = model.evaluate(x, y, verbose=0, return_dict=True)
    second = model.evaluate(x[:32], y[:32], verbose=0)
    stranger.evaluate(x, y, verbose=0)  # never trained under autolog: nothing logged, no run
    run = the_run()
    assert run.params["validation_data"] == "('ndarray(16, 4)', 'ndarray(16,)')"  # by kind and shape
    logged = history(run.run_id, "validation_loss")
    # steps 0 and 1: the validation inside fit; then one step per evaluate after it
    assert [s for s, _ in logged] == [0, 1, 2, 3]
    assert logged[2][1] == pytest.approx(first["loss"]) and logged[3][1] == pytest.approx(second[0])
    assert history(run.run_id, "validation_accuracy")[2][1] == pytest.approx(first["accuracy"])
    # the training and validation arrays are the run's dataset inputs, as mlflow.keras records them
    inputs = {i.context: json.loads(i.dataset.profile) for i in run.inputs}
    assert inputs["train"]["features_shape"] == [64, 4] and inputs["eval"]["features_shape"] == [16, 4]


def test_a_fit_inside_a_fit_is_logged_once(data):
    x, y = data
    inner = mlp()

    class FitsAnotherModel(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            inner.fit(x, y, epochs=1, verbose=0)

    autolog.autolog()
    mlp().fit(x, y, epochs=2, verbose=0, callbacks=[FitsAnotherModel()])
    run = the_run()
    assert [s for s, _ in history(run.run_id, "loss")] == [0, 1]

    # a user's run gets the first fit inside it
    with autolog.start_run(run_name="mine") as mine:
        mlp().fit(x, y, epochs=1, verbose=0)
    assert len(autolog.search_runs(output_format="list")) == 2
    assert autolog.get_run(mine.run_id).params["epochs"] == "1"


def test_early_stopping_metrics_as_mlflow_logs_them(data):
    x, y = data
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10.0, restore_best_weights=True)
    model = mlp()
    autolog.autolog()
    returned = model.fit(x, y, epochs=10, verbose=0, callbacks=[stop])
    run = the_run()
    assert returned.epoch == [0, 1] and stop.stopped_epoch == 1
    assert run.metrics["stopped_epoch"] == 1.0 and run.metrics["restored_epoch"] == 0.0
    assert run.params["restore_best_weights"] == "True" and run.params["baseline"] == "None"
    # the restored epoch's metrics, at step stopped_epoch + 1
    assert history(run.run_id, "loss")[-1] == (2, pytest.approx(returned.history["loss"][0]))
    assert history(run.run_id, "accuracy")[-1] == (2, pytest.approx(returned.history["accuracy"][0]))


# -- checkpoints ------------------------------------------------------------------------------------
def test_model_checkpoint_files_are_captured_with_their_epoch(data, tmp_path, caplog):
    x, y = data
    folder = tmp_path / "ckpt"
    written = {}

    class RecordLast(keras.callbacks.Callback):
        """After ModelCheckpoint: the bytes of the file it just rewrote in place."""

        def on_epoch_end(self, epoch, logs=None):
            written[epoch] = (folder / "last.keras").read_bytes()

    callbacks = [
        keras.callbacks.ModelCheckpoint(str(folder / "epoch-{epoch:02d}.keras")),
        keras.callbacks.ModelCheckpoint(str(folder / "last.keras")),
        RecordLast(),
        keras.callbacks.ModelCheckpoint(str(folder / "best.weights.h5"), save_weights_only=True,
                                        save_best_only=True, monitor="loss"),
        keras.callbacks.ModelCheckpoint(str(folder / "b{epoch}-{batch}.weights.h5"), save_weights_only=True,
                                        save_freq=2),
    ]
    model = mlp()
    autolog.autolog()
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=callbacks)  # 2 batches per epoch
    run = the_run()
    files = {p.rsplit("/", 1)[1] for p in artifact_paths(run.run_id, "checkpoints")}
    assert {"epoch-01.keras", "epoch-02.keras", "epoch-03.keras", "last.keras", "best.weights.h5",
            "b1-2.weights.h5", "b2-2.weights.h5", "b3-2.weights.h5"} <= files
    with open(download(run.run_id, "checkpoints/epoch-02.keras.json", tmp_path), encoding="utf-8") as fh:
        sidecar = json.load(fh)
    assert sidecar["step"] == 1 and sidecar["integration"] == "keras"
    assert sidecar["metrics"]["loss"] == pytest.approx(model.history.history["loss"][1])
    # a file Keras rewrites every epoch: the store holds the last version, byte for byte
    with open(download(run.run_id, "checkpoints/last.keras", tmp_path), "rb") as fh:
        assert fh.read() == written[2]
    restored = keras.saving.load_model(download(run.run_id, "checkpoints/epoch-03.keras", tmp_path))
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert not [m for m in autolog_warnings(caplog) if "checkpoint" in m]


def test_keep_last_and_log_checkpoints_false(data, tmp_path):
    x, y = data
    autolog.autolog(keep_last_checkpoints=2)
    mlp().fit(x, y, epochs=4, verbose=0,
              callbacks=[keras.callbacks.ModelCheckpoint(str(tmp_path / "c{epoch}.weights.h5"), save_weights_only=True)])
    files = {p.rsplit("/", 1)[1] for p in artifact_paths(the_run().run_id, "checkpoints")}
    assert files == {"c3.weights.h5", "c3.weights.h5.json", "c4.weights.h5", "c4.weights.h5.json"}

    autolog.autolog(log_checkpoints=False)
    mlp().fit(x, y, epochs=1, verbose=0,
              callbacks=[keras.callbacks.ModelCheckpoint(str(tmp_path / "d{epoch}.weights.h5"), save_weights_only=True)])
    newest = autolog.search_runs(output_format="list")[0]
    assert os.path.exists(tmp_path / "d1.weights.h5") and "checkpoints" not in artifact_paths(newest.run_id)


def test_every_n_steps(data):
    x, y = data
    autolog.autolog(log_every_n_steps=2)
    mlp().fit(x, y, epochs=2, batch_size=16, verbose=0)  # 4 steps per epoch
    run = the_run()
    assert [s for s, _ in history(run.run_id, "batch_loss")] == [2, 4, 6, 8]
    assert [s for s, _ in history(run.run_id, "loss")] == [0, 1]  # per epoch as always


# -- the model ------------------------------------------------------------------------------------------
def test_custom_layer_model_loads_back_with_equal_predictions(data, tmp_path, monkeypatch):
    x, y = data

    @keras.saving.register_keras_serializable(package="autolog_test_custom")
    class Scale(keras.layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, inputs):
            return inputs * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    model = keras.Sequential([keras.Input((4,)), Scale(3.0), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    autolog.autolog()
    model.fit(x, y, epochs=2, verbose=0)
    run = the_run()
    loaded = autolog.load_model(f"runs:/{run.run_id}/model")
    assert isinstance(loaded.layers[0], Scale) and loaded.layers[0].factor == 3.0
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)

    # MLflow reads the same folder
    import mlflow.pyfunc

    folder = download(run.run_id, "model", tmp_path)
    pyfunc = mlflow.pyfunc.load_model(folder)
    np.testing.assert_allclose(pyfunc.predict(x), model.predict(x, verbose=0), rtol=1e-6)
    with open(os.path.join(folder, "requirements.txt"), encoding="utf-8") as fh:
        assert f"keras=={keras.__version__}" in fh.read().split()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (tests/backends/conftest.py's MlflowServer), for this module."""
    pytest.importorskip("mlflow")
    spec = importlib.util.spec_from_file_location(
        "autolog_tests_backends_conftest_for_keras", pathlib.Path(__file__).parent.parent / "backends" / "conftest.py")
    backends = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backends)
    server = backends.MlflowServer(str(tmp_path_factory.mktemp("mlflow-server")))
    server.start()
    yield server
    server.stop()


def test_mlflow_pyfunc_loads_the_model_from_an_mlflow_server(data, mlflow_server):
    """autolog logging into a real MLflow server: `mlflow.pyfunc.load_model("runs:/<id>/model")`
    from the server predicts what the model predicts."""
    import mlflow
    import mlflow.pyfunc

    x, y = data
    autolog.autolog(tracking_uri=mlflow_server.url)
    model = mlp()
    model.fit(x, y, epochs=1, verbose=0)
    autolog.flush()
    mlflow_id = autolog.last_run().tags["autolog.mlflow_run_id"]  # docs/backends.md
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        assert mlflow.get_run(mlflow_id).data.params["optimizer_name"] == model.optimizer.get_config()["name"]
        pyfunc = mlflow.pyfunc.load_model(f"runs:/{mlflow_id}/model")
    finally:
        mlflow.set_tracking_uri(previous)
    np.testing.assert_allclose(pyfunc.predict(x), model.predict(x, verbose=0), rtol=1e-6)


def test_autolog_log_model_of_a_keras_model(data):
    x, _ = data
    model = mlp()
    with autolog.start_run() as run:
        uri = autolog.log_model(model, "manual")
    assert uri == f"runs:/{run.run_id}/manual"
    np.testing.assert_allclose(autolog.load_model(uri).predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_log_models_false_and_model_size_limit(data):
    x, y = data
    autolog.autolog(log_models=False)
    mlp().fit(x, y, epochs=1, verbose=0)
    run = the_run()
    assert "model" not in artifact_paths(run.run_id) and "loss" in run.metrics

    autolog.autolog(log_models=True, max_model_size_mb=0.001)
    mlp().fit(x, y, epochs=1, verbose=0)
    newest = autolog.search_runs(output_format="list")[0]
    assert "model" not in artifact_paths(newest.run_id)
    assert "max_model_size_mb" in newest.tags["autolog.model_skipped"]
    assert "loss" in newest.metrics


def test_mirrored_strategy_on_cpu_logs_one_run(data):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute needs the TensorFlow backend")
    x, y = data
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = mlp()
    autolog.autolog()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    run = the_run()
    assert strategy.num_replicas_in_sync == len(devices)
    assert [s for s, _ in history(run.run_id, "loss")] == [0, 1]
    assert run.params["batch_size"] == "16" and "model" in artifact_paths(run.run_id)


# -- bad input: one warning each, training unaffected, the rest logged -----------------------------
def test_nan_loss_tensor_and_array_metrics(caplog):
    x = np.random.default_rng(1).normal(size=(48, 3)).astype("float32")
    labels = np.eye(3, dtype="float32")[np.arange(48) % 3]

    def nan_loss(y_true, y_pred):
        return keras.ops.mean(y_pred) * float("nan")

    def label_mean(y_true, y_pred):
        return keras.ops.mean(y_true)

    class AddsTensor(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["tensor_metric"] = keras.ops.convert_to_tensor(1.5 + epoch)

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss=nan_loss, metrics=[label_mean, keras.metrics.F1Score(average=None)])
    autolog.autolog()
    returned = model.fit(x, labels, epochs=2, verbose=0, callbacks=[AddsTensor()])
    run = the_run()
    assert returned.epoch == [0, 1] and np.isnan(returned.history["loss"]).all()
    assert run.status == "FINISHED"
    assert "loss" not in run.metrics and "f1_score" not in run.metrics
    assert [s for s, _ in history(run.run_id, "label_mean")] == [0, 1]
    assert history(run.run_id, "tensor_metric") == [(0, 1.5), (1, 2.5)]
    assert run.params["loss"] == "nan_loss" and "model" in artifact_paths(run.run_id)
    warned = autolog_warnings(caplog)
    assert len([m for m in warned if "'loss'" in m]) == 1 and len([m for m in warned if "'f1_score'" in m]) == 1


def test_a_model_keras_cannot_save(data, caplog):
    x, y = data

    def scaled():
        lock = threading.Lock()  # a closure Keras cannot serialise
        return keras.layers.Lambda(lambda t: t * (2.0 if lock else 1.0))

    model = keras.Sequential([keras.Input((4,)), scaled(), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    autolog.autolog()
    returned = model.fit(x, y, epochs=2, verbose=0)
    run = the_run()
    assert returned.epoch == [0, 1] and run.status == "FINISHED"
    assert [s for s, _ in history(run.run_id, "loss")] == [0, 1] and run.params["epochs"] == "2"
    assert "model" not in artifact_paths(run.run_id)
    assert "Keras could not save the model" in run.tags["autolog.model_skipped"]
    assert len([m for m in autolog_warnings(caplog) if "could not save" in m]) == 1


def test_a_failing_fit_raises_unchanged_and_marks_the_run_failed(data):
    x, y = data

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise ValueError("the user's own error")

    autolog.autolog()
    with pytest.raises(ValueError, match="the user's own error"):
        mlp().fit(x, y, epochs=2, verbose=0, callbacks=[Boom()])
    run = the_run()
    assert run.status == "FAILED" and "ValueError" in run.tags["autolog.error"]


# -- enable / disable / enable ------------------------------------------------------------------
def test_disable_restores_identity_and_logs_nothing_then_enable_again(data):
    x, y = data
    owners = identity_owners()
    before = {owner: dict(vars(owner)) for owner in owners}
    autolog.autolog()
    mlp().fit(x, y, epochs=1, verbose=0)
    patched = {(p.parent, p.attribute) for p in engine.patched()["keras"].patches}
    assert patched == {(keras.Model, "fit"), (keras.Model, "evaluate")}, FIT_OWNERS_NOTE
    assert "fit" in vars(keras.Model) and "fit" not in before[keras.Model]
    assert len(autolog.search_runs(output_format="list")) == 1

    autolog.autolog(disable=True)
    for owner in owners:
        now = vars(owner)
        assert now.keys() == before[owner].keys(), owner
        assert all(now[k] is v for k, v in before[owner].items()), owner
    model = mlp()
    model.fit(x, y, epochs=1, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert len(autolog.search_runs(output_format="list")) == 1

    autolog.autolog()
    mlp().fit(x, y, epochs=1, verbose=0)
    assert len(autolog.search_runs(output_format="list")) == 2


# -- side by side with MLflow's own autologging ----------------------------------------------------
def test_keys_are_a_superset_of_mlflow_autolog(data, tmp_path):
    """The same fit under autolog, under `mlflow.autolog()` and under `mlflow.keras.autolog()`,
    each MLflow run into a sqlite store: every param and metric key MLflow logs, autolog logs
    too (more is fine). Here TensorFlow is imported before mlflow.autolog() and TensorBoard is
    installed, so mlflow.autolog() logs through its tensorflow flavor (`opt_<key>` of the
    optimizer config, EarlyStopping's settings, stopped_epoch / restored_epoch); its keras
    flavor (`optimizer_<key>`) is what mlflow.autolog() gives where the tensorflow flavor
    cannot run (TensorBoard absent, or keras imported before it can enable itself)."""
    mlflow = pytest.importorskip("mlflow")
    x, y = data

    def fit(model):
        stop = keras.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10.0, restore_best_weights=True)
        model.fit(x, y, epochs=4, batch_size=16, validation_split=0.25, verbose=0, callbacks=[stop])

    autolog.autolog()
    fit(mlp())
    ours = the_run()
    autolog.autolog(disable=True)

    def mlflow_keys(enable, disable) -> tuple:
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
        enable(log_models=False, log_datasets=False, silent=True)
        try:
            fit(mlp())
            run = mlflow.last_active_run()
        finally:
            disable(disable=True)
            mlflow.set_tracking_uri(None)
        assert run.data.params and run.data.metrics
        return set(run.data.params), set(run.data.metrics)

    flavors = {"keras": mlflow_keys(mlflow.keras.autolog, mlflow.keras.autolog)}
    if importlib.util.find_spec("tensorboard") is not None:  # mlflow.autolog()'s tensorflow flavor needs it
        flavors["mlflow.autolog()"] = mlflow_keys(mlflow.autolog, mlflow.autolog)
        assert {"opt_learning_rate", "patience"} <= flavors["mlflow.autolog()"][0]  # its tensorflow flavor logged
        assert {"stopped_epoch", "restored_epoch"} <= flavors["mlflow.autolog()"][1]
    for flavor, (params, metrics) in flavors.items():
        assert params <= set(ours.params), (flavor, params - set(ours.params))
        assert metrics <= set(ours.metrics), (flavor, metrics - set(ours.metrics))


# -- other interpreters: the torch backend, and no TensorBoard ---------------------------------------
SCRIPT_COMMON = """
import numpy as np, autolog
from autolog import runs
autolog.autolog()
import keras
x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32"); y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
returned = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
autolog.flush()
run = autolog.last_run()
loaded = autolog.load_model(run.run_id)
print("RESULT", keras.backend.backend(), run.status, sorted(run.metrics), run.params["optimizer_name"],
      [m.step for m in runs._reader().get_metric_history(run.run_id, "learning_rate")],
      bool(np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)))
"""


class Scripts:
    """The two other interpreters, started together the first time one is needed (they import
    torch or TensorFlow, which takes longer than the rest of their work) and run side by side."""

    def __init__(self, root):
        self.root = root
        self.started: dict = {}
        self.outputs: dict = {}

    def start_all(self) -> None:
        for name, (script, env) in SCRIPTS.items():
            if name not in self.started:
                environment = {**os.environ, "AUTOLOG_TRACKING_URI": self.store(name), **env}
                self.started[name] = subprocess.Popen([sys.executable, "-c", script], env=environment, text=True,
                                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def result(self, name: str, tag: str = "RESULT") -> str:
        """The line of the script's output that starts with `tag`."""
        self.start_all()
        if name not in self.outputs:
            out, err = self.started[name].communicate(timeout=300)
            assert self.started[name].returncode == 0, err[-3000:]
            self.outputs[name] = out
        return next(line for line in self.outputs[name].splitlines() if line.startswith(tag))

    def store(self, name: str) -> str:
        return str(self.root / f"{name}-store")

    def stop(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    started = Scripts(tmp_path_factory.mktemp("keras-scripts"))
    yield started
    started.stop()


BLOCK_TENSORBOARD = textwrap.dedent("""
    import sys
    class NoTensorBoard:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorboard" or name.startswith("tensorboard."):
                raise ImportError("No module named 'tensorboard' (blocked by the test)")
            return None
    sys.meta_path.insert(0, NoTensorBoard())
    try:
        import tensorboard
        raise SystemExit("tensorboard is importable")
    except ImportError:
        pass
    import tensorflow
""")

# after the common part, without TensorBoard: the same fit under mlflow.autolog() (MLflow's
# tensorflow flavor needs TensorBoard), then a fit that is the script's last line, whose model
# autolog writes at exit (its flush at exit, not the test, writes it)
THEN_MLFLOW_AND_A_LAST_FIT = """
import os, mlflow
autolog.autolog(disable=True)
mlflow.set_tracking_uri("sqlite:///" + os.environ["AUTOLOG_TRACKING_URI"] + "-mlflow.db")
mlflow.autolog(log_models=False, log_datasets=False, silent=True)
try:
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    print("MLFLOW fit returned")
except Exception as exc:
    print("MLFLOW", type(exc).__name__)
mlflow.autolog(disable=True)
autolog.autolog()
model.fit(x, y, epochs=1, batch_size=8, verbose=0)
"""

SCRIPTS = {
    "torch": (SCRIPT_COMMON, {"KERAS_BACKEND": "torch"}),
    "no-tensorboard": (BLOCK_TENSORBOARD + SCRIPT_COMMON + THEN_MLFLOW_AND_A_LAST_FIT, {"KERAS_BACKEND": "tensorflow"}),
}


def test_torch_backend(scripts):
    if importlib.util.find_spec("torch") is None:  # not imported here: one framework per process
        pytest.skip("torch is not installed")
    result = scripts.result("torch")
    assert result == "RESULT torch FINISHED ['learning_rate', 'loss', 'mae'] adam [0, 1] True"


def test_tensorflow_without_tensorboard(scripts):
    """tensorboard cannot be imported (blocked by a meta-path finder, as where tensorflow-cpu
    is installed alone): autolog needs no TensorBoard, while mlflow.autolog() makes the same
    fit raise TBNotInstalledError (its tensorflow flavor logs through tf.summary)."""
    result = scripts.result("no-tensorboard")
    assert result == "RESULT tensorflow FINISHED ['learning_rate', 'loss', 'mae'] adam [0, 1] True"
    assert scripts.result("no-tensorboard", "MLFLOW") == "MLFLOW TBNotInstalledError"
    # the script's last line was a fit: its model was written at exit
    store = scripts.store("no-tensorboard")
    last, first = runs.search_runs(tracking_uri=store)
    assert last.status == first.status == "FINISHED" and last.params["epochs"] == "1"
    assert "model" in {a.path for a in runs._reader(store).list_artifacts(last.run_id)}
