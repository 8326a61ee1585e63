"""Keras `MultiWorkerMirroredStrategy`, 2 real worker processes on loopback (TF_CONFIG): one run.

TF_CONFIG names two workers and no chief, so worker 0 is the chief (TensorFlow's rule, and
autolog's `process_role`): it logs params, per-epoch metrics, the checkpoint files and the
model; worker 1 joins the same run (its id derived from TF_CONFIG's cluster by both) and
writes nothing, or only its metrics, renamed by rank, with `log_all_ranks`.

Keras 3.15 on TensorFlow 2.21 cannot run a plain `fit(x, y)` under this strategy with two
workers, with or without autolog (keras-team/keras#20585, docs/distributed.md):
`_maybe_symbolic_build` reduces the first `(x, y)` batch as one value (`ValueError: Attempt to
convert a value (PerReplica:{...}) to a Tensor`), and every step's scalar logs are reduced
with `strategy.reduce("MEAN", v, axis=0)` (`Invalid reduction dimension 0 for input with 0
dimensions`). The script below is plain Keras shaped around both: each batch is one tensor
(features and label side by side; the loss comes from a layer's `add_loss`), and
`train_step` returns its logs as 1-element vectors.

Each worker is its own Python with TensorFlow; this process imports neither.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

if importlib.util.find_spec("tensorflow") is None:  # not imported here: the workers do
    pytest.skip("tensorflow is not installed", allow_module_level=True)

from autolog import runs  # noqa: E402
from autolog.runs import handover  # noqa: E402

WORKER = textwrap.dedent("""
    import json, os, sys
    import autolog
    autolog.autolog()
    import numpy as np
    import tensorflow as tf
    import keras

    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    @keras.saving.register_keras_serializable(package="autolog_test_mwms")
    class LossOf(keras.layers.Layer):
        # the binary cross-entropy of (prediction, label) as the model's loss; passes the prediction on
        def call(self, inputs):
            prediction, label = inputs
            self.add_loss(keras.ops.mean(keras.losses.binary_crossentropy(label, prediction)))
            return prediction

    @keras.saving.register_keras_serializable(package="autolog_test_mwms")
    class VectorLogs(keras.Model):
        # Keras reduces each log with strategy.reduce(MEAN, axis=0) across workers: not a scalar
        def train_step(self, data):
            return {k: keras.ops.reshape(v, (1,)) for k, v in super().train_step(data).items()}

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    rows = np.concatenate([x, (x.sum(axis=1, keepdims=True) > 0).astype("float32")], axis=1)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices(rows).batch(16).with_options(options)
    with strategy.scope():
        inputs = keras.Input((5,))
        hidden = keras.layers.Dense(3, activation="relu")(inputs[:, :4])
        prediction = LossOf()([keras.layers.Dense(1, activation="sigmoid")(hidden), inputs[:, 4:]])
        model = VectorLogs(inputs, prediction)
        model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=False)
    checkpoint = keras.callbacks.ModelCheckpoint(os.path.join(os.environ["CHECKPOINTS"], f"worker{index}",
                                                              "e{epoch}.weights.h5"), save_weights_only=True)
    history = model.fit(dataset, epochs=2, verbose=0, callbacks=[checkpoint])
    print("RESULT", index, json.dumps(history.history["loss"]), flush=True)
    # the script ends here: the chief's model is written by autolog's flush at exit
""")


def free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def launch(tmp_path, **env) -> list:
    """Both workers, side by side; their (return code, stdout, stderr)."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    (tmp_path / "checkpoints").mkdir(exist_ok=True)
    base = dict(os.environ, CHECKPOINTS=str(tmp_path / "checkpoints"), TF_CPP_MIN_LOG_LEVEL="3",
                KERAS_BACKEND="tensorflow", OMP_NUM_THREADS="1", **env)
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID", handover.ENV_JOB_ID):
        base.pop(name, None)
    workers = []
    for index in range(2):
        environment = dict(base, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen([sys.executable, "-c", WORKER], env=environment, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    done = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=240)
            done.append((worker.returncode, out, err))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    for code, _, err in done:
        assert code == 0, err[-3000:]
    return [json.loads(next(line for line in out.splitlines() if line.startswith("RESULT")).split(" ", 2)[2])
            for _, out, _ in done]


def steps(run_id: str, key: str) -> list:
    return sorted(m.step for m in runs.logger_for().backend.get_metric_history(run_id, key))


def test_the_chief_logs_and_the_other_worker_does_not_duplicate(tmp_path):
    losses = launch(tmp_path)
    assert losses[0] == losses[1]  # one job: the loss is reduced across the workers
    [run] = runs.search_runs()
    assert run.status == "FINISHED"
    assert run.params["epochs"] == "2" and run.params["batch_size"] == "16"
    assert float(run.params["optimizer_learning_rate"]) == pytest.approx(0.01)
    assert steps(run.run_id, "loss") == [0, 1]  # once per epoch: worker 1's went nowhere
    assert run.metrics["loss"] == pytest.approx(losses[0][-1])
    assert not [key for key in run.metrics if "rank_1" in key]
    backend = runs.logger_for().backend
    artifacts = {a.path for a in backend.list_artifacts(run.run_id)}
    assert {"model", "model_summary.txt"} <= artifacts  # the model: written by the chief's flush at exit
    assert "model/data/model.keras" in {a.path for a in backend.list_artifacts(run.run_id, "model/data")}
    checkpoints = {a.path for a in backend.list_artifacts(run.run_id, "checkpoints")}
    assert checkpoints == {"checkpoints/e1.weights.h5", "checkpoints/e1.weights.h5.json",
                           "checkpoints/e2.weights.h5", "checkpoints/e2.weights.h5.json"}  # the chief's


def test_every_worker_logs_its_metrics_on_request(tmp_path):
    launch(tmp_path, AUTOLOG_LOG_ALL_RANKS="true")
    [run] = runs.search_runs()
    assert run.status == "FINISHED"
    assert steps(run.run_id, "loss") == [0, 1] and steps(run.run_id, "loss/rank_1") == [0, 1]
    assert run.params["epochs"] == "2"
    assert not [key for key in run.params if "rank_1" in key]
    checkpoints = {a.path for a in runs.logger_for().backend.list_artifacts(run.run_id, "checkpoints")}
    assert len(checkpoints) == 4  # still the chief's two files and their sidecars
