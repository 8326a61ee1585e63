"""Keras 3: every `keras.Model.fit` (Sequential, functional, subclassed), on any Keras backend.

The patch is on Keras, not on TensorFlow: `keras.Model.fit` and `keras.Model.evaluate`
(both inherited from the backend's trainer class, so the wrappers are set on `keras.Model`
itself and deleted again by `disable`). It works the same with `tf.keras` (the same
classes), with `KERAS_BACKEND=torch` and with JAX, and needs no TensorBoard.

What a fit logs (docs/integrations/keras.md):
- params, before training starts: the fit's arguments under MLflow's names (epochs,
  batch_size, inferred for tf.data datasets and generators, steps_per_epoch, shuffle, ...),
  the optimizer's config (`optimizer_*` as mlflow.keras names it, `opt_*` as
  mlflow.tensorflow does, a learning-rate schedule flattened by its config), loss, metric
  names, EarlyStopping's settings; the training and validation arrays as dataset inputs;
  `model_summary.txt` when training begins; parameter counts after the first epoch;
- per epoch, from a contained callback added to a copy of the user's callback list: every
  key of the epoch logs (`loss`, `accuracy`, `val_loss`, ...), `validation_*` as
  mlflow.keras names a validation's results, and the learning rate; every N batches on
  request (`autolog(log_every_n_steps=N)`: `batch_loss`, ...);
- files written by `keras.callbacks.ModelCheckpoint`, captured as they appear (toolkit's
  checkpoint capture), before Keras writes the same file again;
- after the fit: EarlyStopping's `stopped_epoch`, `restored_epoch` and the restored epoch's
  metrics (as mlflow.tensorflow logs them), and the model under `model/` in MLflow's keras
  format (`data/model.keras`).
- `model.evaluate(...)` after a fit logs `validation_*` to the run that trained the model.

The model is saved on the training thread (Keras reads the live variables; the user may
train the same object again right after): one `model.save` into a private temporary
folder, the cost measured in docs/benchmarks.md. Everything else the training thread does is
Python bookkeeping; metric values are the floats Keras already made at the end of each
epoch, and the learning rate is a device-side copy converted on autolog's worker.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Optional

from autolog import runs
from autolog.instrument import containment
from autolog.instrument.callbacks import contained_callback
from autolog.instrument.checkpoints import CapturedFiles
from autolog.instrument.datasets import data_rows, declared_batch_size, log_dataset
from autolog.instrument.integration import Integration
from autolog.instrument.models import ModelFlavor, SavedFile, log_model, read_mlmodel, skip_model
from autolog.instrument.params import describe_argument, flatten, is_array_like
from autolog.instrument.patching import Patcher
from autolog.instrument.post_training import AfterTraining, TrainedModels
from autolog.instrument.role import is_primary_process
from autolog.instrument.step_metrics import StepMetrics
from autolog.instrument.training_call import Call, TrainingWrapper

NAME = "keras"
MODEL_DATA = "data"  # the folder mlflow.keras reads: data/model.keras, data/keras_module.txt
MODEL_FILE = "model.keras"
# the fit arguments mlflow.keras / mlflow.tensorflow leave out of the params (the data, and noise)
UNLOGGED_ARGUMENTS = ("x", "y", "callbacks", "validation_data", "verbose")
EARLY_STOPPING_PARAMS = ("monitor", "min_delta", "patience", "baseline", "restore_best_weights", "start_from_epoch")


class KerasIntegration(Integration):
    name = NAME
    module = "keras"
    requires = "keras>=3.0"

    def patch(self, patcher: Patcher) -> None:
        import keras

        patcher.wrap(keras.Model, "fit", FIT)
        patcher.wrap(keras.Model, "evaluate", EVALUATE)

    def model_flavor(self, model: Any) -> Optional["KerasFlavor"]:
        """A `keras.Model`, as a fit logs it (`autolog.log_model(model)`)."""
        keras = sys.modules.get("keras")
        return FLAVOR if keras is not None and isinstance(model, keras.Model) else None


# -- fit ---------------------------------------------------------------------------------------
class KerasFit(TrainingWrapper):
    """`keras.Model.fit`: params before, a contained callback during, the model after."""

    integration = NAME
    bind_defaults = True

    def should_log(self, call: Call) -> bool:
        # another rank of a multi-worker job logs only on request: it joins the job's run,
        # which takes its metrics (named by rank) and nothing else (runs/handover.py)
        return call.instance is not None and (is_primary_process() or runs.settings().log_all_ranks)

    def before(self, call: Call) -> None:
        model, run, s = call.instance, call.run, runs.settings()
        arguments = call.arguments
        callbacks = arguments.get("callbacks")
        call.state["primary"] = primary = is_primary_process()
        if not primary:  # metrics only: no params, datasets, summary, checkpoints or model to prepare
            call.set_argument("callbacks", _added_callbacks(callbacks, new_callback(run, [], s, primary=False)))
            return
        user_callbacks = list(getattr(callbacks, "callbacks", callbacks) or [])
        early_stopping = _first_of(user_callbacks, "EarlyStopping")
        params = fit_params(model, arguments)
        if early_stopping is not None:
            params.update(early_stopping_params(early_stopping))
        peek = params["batch_size"] is None and isinstance(arguments.get("x"), Iterator)
        if peek:
            del params["batch_size"]  # logged once the generator's first batch is read
        run.log_params(params, normalize=True)
        if s.log_datasets:
            log_datasets(run, arguments)
        call.state["early_stopping"] = early_stopping
        call.set_argument("callbacks", _added_callbacks(callbacks, new_callback(run, user_callbacks, s)))
        if peek:  # last, once nothing else can fail: the generator's first batch is read
            log_generator_batch_size(call)

    def after(self, call: Call) -> None:
        if not call.state.get("primary"):
            return
        model, run, history = call.instance, call.run, call.result
        epochs = list(getattr(history, "epoch", None) or [])
        trained.remember(model, run, (epochs[-1] + 1) if epochs else 0)
        early_stopping = call.state.get("early_stopping")
        if early_stopping is not None and history is not None:
            log_early_stopping(run, early_stopping, history)
        s = runs.settings()
        if s.log_models:
            log_keras_model(run, model, s)


FIT = KerasFit()


def fit_params(model: Any, arguments: Mapping[str, Any]) -> dict:
    """The params of one fit, under the names mlflow.keras and mlflow.tensorflow give them."""
    params: dict = {}
    for name, value in arguments.items():
        if name not in UNLOGGED_ARGUMENTS:
            params[name] = describe_argument(value)
    params["batch_size"] = effective_batch_size(arguments)
    params["validation_data"] = describe_argument(arguments.get("validation_data"))
    params.update(optimizer_params(getattr(model, "optimizer", None)))
    params.update(compile_params(model))
    return params  # the parameter counts come after the first epoch (a subclassed model is built by fit)


def log_datasets(run, arguments: Mapping[str, Any]) -> None:
    """The training data and the `validation_data` as dataset inputs ("train", "eval"), as
    mlflow.keras records them, when they are numpy arrays or pandas objects (a bounded copy of
    the first rows is taken now, described on the worker). tf.data pipelines, generators and
    framework tensors are not read for it (that would consume or copy the data)."""
    x, y = arguments.get("x"), arguments.get("y")
    if _plain_data(x):
        log_dataset(run, x, targets=y if _plain_data(y) else None, context="train")
    validation = arguments.get("validation_data")
    if isinstance(validation, (tuple, list)) and validation and _plain_data(validation[0]):
        targets = validation[1] if len(validation) > 1 and _plain_data(validation[1]) else None
        log_dataset(run, validation[0], targets=targets, context="eval")


def _plain_data(value: Any) -> bool:
    return is_array_like(value) and type(value).__module__.partition(".")[0] in ("numpy", "pandas")


def effective_batch_size(arguments: Mapping[str, Any]) -> Optional[int]:
    """The batch size Keras uses: the argument; for arrays Keras's own default (32, or the
    rows over steps_per_epoch); for a dataset or sequence that says it (tf.data's batch, a
    PyDataset's `batch_size`); None where Keras cannot tell (a generator is peeked later)."""
    given = arguments.get("batch_size")
    if given is not None:
        return given
    x = arguments.get("x")
    declared = declared_batch_size(x)
    if declared is not None:
        return declared
    rows = data_rows(x)
    if rows is None:
        return None
    steps = arguments.get("steps_per_epoch")
    if steps:
        split = arguments.get("validation_split") or 0.0
        if arguments.get("validation_data") is None and split:
            rows = int(rows * (1.0 - split))
        return max(1, -(-rows // int(steps)))
    return 32


def optimizer_params(optimizer: Any) -> dict:
    """`optimizer_<key>` (mlflow.keras) and `opt_<key>` (mlflow.tensorflow) for each entry of
    the optimizer's config; an entry that is a Keras object (a learning-rate schedule) is
    named by its class, and its own config is flattened under the key."""
    if optimizer is None:
        return {}
    config = optimizer.get_config()
    params: dict = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            params[f"optimizer_{key}"] = params[f"opt_{key}"] = _object_name(value)
            params.update(flatten(value.get("config", value), prefix=f"optimizer_{key}"))
        else:
            params[f"optimizer_{key}"] = params[f"opt_{key}"] = value
    return params


def compile_params(model: Any) -> dict:
    """`loss` and `metrics`: what was given to `compile`, by name. Read from the arguments Keras
    keeps (`get_compile_config()` would serialise them, warning about a lambda loss)."""
    given = getattr(getattr(model, "_compile_config", None), "config", None)
    if not isinstance(given, Mapping):
        given = {"loss": getattr(model, "loss", None)}
    params = {"loss": _names(given.get("loss"))}
    for name in ("metrics", "weighted_metrics", "loss_weights"):
        if given.get(name) is not None:
            params[name] = _names(given[name])
    return params


def parameter_counts(model: Any) -> dict:
    trainable = sum(math.prod(int(d) for d in w.shape) for w in model.trainable_weights)
    frozen = sum(math.prod(int(d) for d in w.shape) for w in model.non_trainable_weights)
    return {"trainable_params": trainable, "non_trainable_params": frozen, "total_params": trainable + frozen}


def early_stopping_params(callback: Any) -> dict:
    """EarlyStopping's settings, under the names mlflow.tensorflow logs them."""
    return {name: getattr(callback, name) for name in EARLY_STOPPING_PARAMS if hasattr(callback, name)}


def log_early_stopping(run, callback: Any, history: Any) -> None:
    """`stopped_epoch`, `restored_epoch` and the restored epoch's metrics (step
    stopped_epoch + 1), exactly when mlflow.tensorflow logs them: training was stopped early."""
    model = getattr(callback, "model", None)
    if model is None or not getattr(model, "stop_training", False):
        return
    stopped = int(callback.stopped_epoch)
    run.log_metric("stopped_epoch", stopped, normalize=True)
    values = getattr(history, "history", None) or {}
    epochs = list(getattr(history, "epoch", None) or [])
    if not callback.restore_best_weights or callback.best_weights is None or not epochs:
        return
    restored = getattr(callback, "best_epoch", None)
    if restored is None or restored not in epochs:  # before Keras kept best_epoch: as MLflow finds it
        monitored = values.get(callback.monitor) or []
        if callback.best not in monitored:
            return
        restored = epochs[0] + monitored.index(callback.best)
    run.log_metric("restored_epoch", int(restored), normalize=True)
    index = epochs.index(restored)
    restored_metrics = {key: series[index] for key, series in values.items() if index < len(series)}
    StepMetrics(run, NAME).log(restored_metrics, step=stopped + 1)


# -- the callback list ----------------------------------------------------------------------------
def _added_callbacks(callbacks: Any, *mine: Any) -> Any:
    """A copy of the user's callbacks with autolog's own after them (a CallbackList stays one:
    a shallow copy with a new list, so the user's object is untouched)."""
    if hasattr(callbacks, "callbacks") and hasattr(callbacks, "set_model"):  # keras.callbacks.CallbackList
        combined = copy.copy(callbacks)
        combined.callbacks = [*callbacks.callbacks, *mine]
        model = getattr(callbacks, "model", None)
        for callback in mine:
            if model is not None:
                callback.set_model(model)
            callback.set_params(getattr(callbacks, "params", None) or {})
        return combined
    combined = list(callbacks or [])
    checkpoint_at = next((i for i, c in enumerate(combined) if _is_a(c, "ModelCheckpoint")), None)
    guard = getattr(mine[0], "guard", None) if mine else None
    if checkpoint_at is not None and guard is not None:
        combined.insert(checkpoint_at, guard)  # waits for a copy before a checkpoint is written again
    return [*combined, *mine]


# -- the callback autolog adds -----------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def callback_classes() -> tuple:
    """(epoch logger, logger with batch hooks), made once keras is imported."""
    import keras

    @contained_callback(NAME)
    class KerasLogger(keras.callbacks.Callback):
        """Per-epoch metrics, the learning rate, validation results and checkpoint files.

        Defines no batch hook, so Keras keeps dispatching batch callbacks asynchronously."""

        async_safe = True  # its methods only enqueue records (thread-safe)

        def __init__(self, run, checkpoints: list, keep_last: Optional[int], every_n_steps: Optional[int],
                     primary: bool = True):
            super().__init__()
            self.run = run
            self.primary = primary  # the job's primary process: also the summary and parameter counts
            self.metrics = StepMetrics(run, NAME)
            self.checkpoints = checkpoints  # the user's ModelCheckpoint callbacks
            self.files = CapturedFiles(run, integration=NAME, keep_last=keep_last)  # the files they wrote
            self.every_n_steps = every_n_steps
            self.epoch = 0
            self.learning_rate = None
            self.counted = False
            self.guard = None
            if checkpoints:
                batched = any(c.save_freq != "epoch" for c in checkpoints)
                self.guard = (BatchCheckpointGuard if batched else CheckpointGuard)(self)

        def on_train_begin(self, logs=None):
            if not self.primary:
                return
            with containment.contained(f"{NAME}: model summary"):  # a summary failing leaves the metrics on
                lines: list = []
                self.model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
                self.run.log_text("\n".join(lines), "model_summary.txt")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.learning_rate = _learning_rate_copy(self.model)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if not self.counted and self.primary:  # a model built by its first training step has its weights by now
                self.counted = True
                self.run.log_params(parameter_counts(self.model), normalize=True)
            self.metrics.log(logs, step=epoch)
            if "learning_rate" not in logs and self.learning_rate is not None:
                self.metrics.log({"learning_rate": self.learning_rate}, step=epoch)
            for checkpoint in self.checkpoints:
                if checkpoint.save_freq == "epoch":
                    self.capture(checkpoint, epoch, None, logs)

        def on_test_end(self, logs=None):
            # Keras validates inside fit with the fit's callbacks: mlflow.keras's name for it
            if logs:
                self.metrics.log({f"validation_{k}": v for k, v in logs.items()}, step=self.epoch)

        def capture(self, checkpoint: Any, epoch: int, batch: Optional[int], logs: Mapping) -> None:
            # no file: not written this time (save_best_only without an improvement)
            with containment.contained(f"{NAME}: capturing a ModelCheckpoint file"):
                scalars = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
                self.files.capture(_checkpoint_path(checkpoint, epoch, batch, logs), step=epoch, metrics=scalars)

    @contained_callback(NAME)
    class KerasBatchLogger(KerasLogger):
        """With batch hooks: values every N steps, and ModelCheckpoints that save every N batches."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.lock = threading.Lock()
            self.steps_before_epoch = 0
            self.batches_in_epoch = 0
            self.last_bucket = 0
            self.batch_checkpoints = [c for c in self.checkpoints if c.save_freq != "epoch"]
            self.batch_metrics = StepMetrics(self.run, NAME, prefix="batch_")

        def on_epoch_begin(self, epoch, logs=None):
            super().on_epoch_begin(epoch, logs)
            with self.lock:
                self.steps_before_epoch += self.batches_in_epoch
                self.batches_in_epoch = 0

        def on_train_batch_end(self, batch, logs=None):
            # may run on Keras's callback thread pool (async_safe): the step comes from the
            # batch index, not from the order calls arrive in
            logs = logs or {}
            with self.lock:
                self.batches_in_epoch = max(self.batches_in_epoch, batch + 1)
                step = self.steps_before_epoch + batch + 1
                due = self.every_n_steps is not None and step // self.every_n_steps > self.last_bucket
                if due:
                    self.last_bucket = step // self.every_n_steps
            if due:
                self.batch_metrics.log(logs, step=step)
            for checkpoint in self.batch_checkpoints:
                self.capture(checkpoint, self.epoch, batch, logs)

    @contained_callback(NAME)
    class CheckpointGuard(keras.callbacks.Callback):
        """Placed just before the user's first ModelCheckpoint: waits until the last capture of
        each file is copied before Keras may write that file again (usually at once)."""

        async_safe = True

        def __init__(self, logger):
            super().__init__()
            self.logger = logger

        def on_epoch_end(self, epoch, logs=None):
            self.logger.files.wait()

    @contained_callback(NAME)
    class BatchCheckpointGuard(CheckpointGuard):
        """The same before a ModelCheckpoint that saves every N batches (a batch hook: only then)."""

        def on_train_batch_end(self, batch, logs=None):
            self.logger.files.wait()

    return KerasLogger, KerasBatchLogger


def new_callback(run, user_callbacks: list, s, primary: bool = True) -> Any:
    """The logger for one fit: with batch hooks only when asked for per-batch values or when a
    ModelCheckpoint saves every N batches. On a rank other than the primary: metrics only."""
    logger_class, batch_logger_class = callback_classes()
    checkpoints = [c for c in user_callbacks if _is_a(c, "ModelCheckpoint")] if s.log_checkpoints else []
    batched = s.log_every_n_steps is not None or any(c.save_freq != "epoch" for c in checkpoints)
    cls = batch_logger_class if batched else logger_class
    return cls(run, checkpoints, s.keep_last_checkpoints, s.log_every_n_steps, primary=primary)


def _checkpoint_path(checkpoint: Any, epoch: int, batch: Optional[int], logs: Mapping) -> str:
    """The file ModelCheckpoint writes for this epoch (and batch), formatted as Keras does."""
    if batch is None or "batch" in logs:
        return os.path.abspath(checkpoint.filepath.format(epoch=epoch + 1, **logs))
    return os.path.abspath(checkpoint.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs))


def _learning_rate_copy(model: Any) -> Any:
    """The learning rate in effect now, as a device-side copy (no host sync on the training
    thread); StepMetrics reads it on autolog's worker."""
    import keras

    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    return keras.ops.copy(optimizer.learning_rate)


# -- evaluate after fit ------------------------------------------------------------------------
trained = TrainedModels()  # each model's run, and the step of its next evaluation


class KerasEvaluate(AfterTraining):
    """`model.evaluate(...)` of a model autolog trained: its results, as `validation_<name>`,
    go to the run that trained it (step: the epochs trained, then one more per evaluation).
    The validation inside `fit` is the fit's own (logged by its callback), never this."""

    integration = NAME

    def run_of(self, call: Call) -> Any:
        target = trained.next_step(call.instance) if call.instance is not None else None
        if target is None:
            return None
        run, call.state["step"] = target
        return run

    def before(self, call: Call) -> None:
        try:
            callbacks = call.arguments.get("callbacks")
        except TypeError:  # a call that does not fit evaluate's signature: Keras says so
            return
        call.set_argument("callbacks", _added_callbacks(callbacks, evaluation_callback(call.run, call.state["step"])))


EVALUATE = KerasEvaluate()


def evaluation_callback(run, step: int) -> Any:
    """The logger for an `evaluate` after fit: of its hooks only `on_test_end` runs there, which
    logs the results as `validation_<name>` at `step`, as it does for a validation inside `fit`."""
    logger = callback_classes()[0](run, [], None, None, primary=False)
    logger.epoch = step
    return logger


# -- the model -------------------------------------------------------------------------------------
class KerasSnapshot(SavedFile):
    """The model's `.keras` file, saved on the training thread (the toolkit's `SavedFile`: a
    private temporary folder, removed once the file is moved into the model folder), and the
    backend and Keras version it was saved with."""

    __slots__ = ("backend", "keras_version")

    def __init__(self, model: Any):
        import keras

        super().__init__(model.save, MODEL_FILE, prefix="autolog-keras-")
        self.backend = keras.backend.backend()
        self.keras_version = keras.__version__


class KerasFlavor(ModelFlavor):
    """MLflow's keras flavor for Keras 3, entry for entry as mlflow.keras.save_model writes it:
    `data/model.keras`, `data/keras_module.txt`, MLmodel `keras` (data, keras_backend,
    keras_version, save_exported_model) and `python_function` (loader_module mlflow.keras)."""

    name = NAME
    library = "keras"
    loader = "autolog.integrations.keras:load_model"

    @property
    def requirements(self) -> tuple:  # the backend the model was trained with
        import keras

        backend = keras.backend.backend()
        return ("numpy", *{"tensorflow": ("tensorflow", "tensorflow-cpu"), "torch": ("torch",),
                           "jax": ("jax", "jaxlib")}.get(backend, ()))

    def snapshot(self, model: Any) -> KerasSnapshot:
        return model if isinstance(model, KerasSnapshot) else KerasSnapshot(model)

    def snapshot_size(self, snapshot: KerasSnapshot) -> Optional[int]:
        return snapshot.size

    def save(self, snapshot: KerasSnapshot, path: str) -> dict:
        data = os.path.join(path, MODEL_DATA)
        os.makedirs(data, exist_ok=True)
        snapshot.move_to(os.path.join(data, MODEL_FILE))
        with open(os.path.join(data, "keras_module.txt"), "w", encoding="utf-8") as fh:
            fh.write("keras")
        return {
            "keras": {"data": MODEL_DATA, "keras_backend": snapshot.backend, "keras_version": snapshot.keras_version,
                      "save_exported_model": False},
            "python_function": {"loader_module": "mlflow.keras"},
        }


FLAVOR = KerasFlavor()


def log_keras_model(run, model: Any, s) -> None:
    """Save the model now (training thread); write and deliver its folder on the worker. A
    model Keras cannot save: one warning, a tag on the run, the rest of the run unaffected."""
    try:
        snapshot = KerasSnapshot(model)
    except Exception as exc:  # noqa: BLE001 - the user's model (e.g. a Lambda over an unserialisable object)
        skip_model(run, f"Keras could not save the model: {type(exc).__name__}: {exc}",
                   f"{NAME} save {type(exc).__name__}")
        return
    signature = model_signature(model) if s.log_model_signatures else None
    log_model(run, snapshot, FLAVOR, signature=signature, max_size_mb=s.max_model_size_mb)


def model_signature(model: Any) -> Optional[dict]:
    """MLflow's tensor signature from the model's input and output shapes, as mlflow.keras
    makes it (no prediction needed): -1 for unknown dimensions."""
    import json

    import numpy as np

    def specs(shapes, dtype) -> str:
        shapes = shapes if isinstance(shapes, list) else [shapes]
        return json.dumps([{"type": "tensor", "tensor-spec": {
            "dtype": str(np.dtype(dtype)), "shape": [-1 if d is None else int(d) for d in shape]}} for shape in shapes])

    try:
        return {"inputs": specs(model.input_shape, model.input_dtype),
                "outputs": specs(model.output_shape, model.compute_dtype), "params": None}
    except Exception:  # noqa: BLE001 - a subclassed model without known shapes: no signature
        return None


def load_model(folder: str) -> Any:
    """The Keras model of a folder written by `KerasFlavor` (or by mlflow.keras)."""
    import keras

    flavor = (read_mlmodel(folder).get("flavors") or {}).get(NAME) or {}
    return keras.saving.load_model(os.path.join(folder, flavor.get("data", MODEL_DATA), MODEL_FILE))


# -- small helpers -----------------------------------------------------------------------------------
def _is_a(callback: Any, class_name: str) -> bool:
    """Is `callback` a keras.callbacks.<class_name> (or a subclass)?"""
    import keras

    return isinstance(callback, getattr(keras.callbacks, class_name))


def _first_of(callbacks: list, class_name: str) -> Any:
    return next((c for c in callbacks if _is_a(c, class_name)), None)


def _object_name(config: Mapping) -> str:
    """A serialised Keras object ({"class_name": ..., "config": ...}) by its class name."""
    inner = config.get("config")
    return str(config.get("class_name") or (inner.get("name") if isinstance(inner, Mapping) else inner) or config)


def _names(value: Any) -> Any:
    """Loss and metric names: strings as they are, objects by their name, functions by theirs."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, Mapping):
        return {k: _names(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return ", ".join(str(_names(v)) for v in value)
    return getattr(value, "name", None) or getattr(value, "__name__", None) or type(value).__name__


def log_generator_batch_size(call: Call) -> None:
    """The batch size of a generator, from its first batch as mlflow.keras reads it; Keras
    gets a generator that yields that batch first, then the rest (`Call.peek_argument`)."""
    first = call.peek_argument("x")
    batch_size = None
    if first is not None:
        with containment.contained(f"{NAME}: batch size of a generator"):
            batch = first[0]
            batch_size = data_rows(batch[0] if isinstance(batch, tuple) else batch)
    call.run.log_param("batch_size", batch_size, normalize=True)
