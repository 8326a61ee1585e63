"""The toolkit with TensorFlow / Keras 3: a contained Keras callback, and TF tensors and Keras
variables in StepMetrics. The one test module that imports TensorFlow (a costly import);
the model is tiny: one Dense layer, 64 rows, 2 epochs."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import autolog  # noqa: E402
from autolog import runs  # noqa: E402
from autolog.instrument.callbacks import contained_callback, is_turned_off  # noqa: E402
from autolog.instrument.step_metrics import StepMetrics  # noqa: E402


class Boom(RuntimeError):
    pass


@contained_callback("keras")
class RaisingKerasCallback(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        raise Boom("on_train_begin")

    def on_train_batch_end(self, batch, logs=None):
        raise Boom("on_train_batch_end")

    def on_epoch_end(self, epoch, logs=None):
        raise Boom("on_epoch_end")


def train(callbacks):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype("float32")
    y = (X @ np.array([1.0, -2.0, 0.5], dtype="float32")).reshape(-1, 1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    history = model.fit(X, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=callbacks)
    return model.predict(X, verbose=0), history.history


def test_a_raising_keras_callback_leaves_fit_unchanged(contained_errors):
    expected_predictions, expected_history = train([])
    callback = RaisingKerasCallback()
    predictions, history = train([callback])
    np.testing.assert_array_equal(predictions, expected_predictions)
    assert history == expected_history and len(history["loss"]) == 2
    assert is_turned_off(callback)
    assert [(where, str(exc)) for where, exc in contained_errors] == [
        ("keras: RaisingKerasCallback.on_train_begin", "on_train_begin")]


def test_tf_tensors_and_keras_variables_are_read_on_the_worker():
    variable = tf.Variable(1.0)
    keras_variable = keras.Variable(2.0)
    with autolog.start_run() as run:
        StepMetrics(run, "keras").log({
            "tensor": tf.constant(0.5), "one_element": tf.constant([3.0]), "variable": variable,
            "keras_variable": keras_variable, "vector": tf.ones(3), "nan": tf.constant(float("nan")),
            "int": tf.constant(4, dtype=tf.int64),
        }, step=1)
        variable.assign_add(10.0)  # updated after the call: the value at the call is logged
        keras_variable.assign(20.0)
    store = runs._reader()
    logged = {key: [(m.step, m.value) for m in store.get_metric_history(run.run_id, key)]
              for key in store.get_run(run.run_id).metrics}
    assert logged == {"tensor": [(1, 0.5)], "one_element": [(1, 3.0)], "variable": [(1, 1.0)],
                      "keras_variable": [(1, 2.0)], "int": [(1, 4.0)]}
