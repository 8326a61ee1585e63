"""Lightning: `Trainer.fit`, and `validate` / `test` after it, of `lightning` and of `pytorch_lightning`.

What a fit logs (docs/integrations/torch.md), under the names `mlflow.pytorch.autolog()` uses
where it names them:
- params: the Trainer's settings (`epochs`, `max_epochs`, `max_steps`, `precision`,
  `accumulate_grad_batches`, `gradient_clip_val`, `strategy`, `accelerator`, `devices`, ...),
  the module's and the datamodule's `save_hyperparameters()`, each optimizer with its settings
  (`optimizer_name`, `lr`, `momentum`, ...), each LR scheduler with its settings, and the early
  stopping settings (`monitor`, `mode`, `patience`, `min_delta`, `stopped_epoch`);
- metrics: what the module logs with `self.log` (`trainer.callback_metrics`) at each training
  epoch's end, step = epoch; with `log_every_n_steps` set, the values logged on steps every N
  optimizer steps as well, step = global step; the learning rate of each optimizer
  (`lr-Adam`, as LearningRateMonitor names it); early stopping's `stopped_epoch`,
  `restored_epoch`, `best_score`, `wait_count`; `validate` / `test` after the fit add their
  metrics to the fit's run;
- artifacts: `model_summary.txt`, every file a `ModelCheckpoint` writes (under `checkpoints/`,
  with its scores), and the trained module under `model/` in the `pytorch` flavor.

The metrics are read from `callback_metrics` as they are, tensors included: `StepMetrics`
converts them on the logger's worker, so the loop waits for no `.item()` of autolog's.

autolog adds its callback to a copy of the trainer's callback list for the call and puts the
user's list back when the call returns; a ModelCheckpoint's files are captured by a wrapper of
its `_save_checkpoint`, right after each save and before the next save rewrites the file.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Any, Callable, Optional

from autolog import runs
from autolog.runs import get_run as autolog_get_run
from autolog.instrument import containment
from autolog.instrument.callbacks import contained_callback
from autolog.instrument.checkpoints import capture_checkpoint, wait_for_checkpoint
from autolog.instrument.integration import Integration
from autolog.instrument.models import log_model
from autolog.instrument.params import flatten, is_scalar_number
from autolog.instrument.patching import Patcher
from autolog.instrument.post_training import AfterTraining, TrainedModels
from autolog.instrument.role import is_primary_process
from autolog.instrument.step_metrics import StepMetrics
from autolog.instrument.training_call import Call, TrainingWrapper, call_arguments
from autolog.integrations.torch import TorchFlavor, lr_metric_names, optimizer_params, pickle_module_bytes

NAME = "lightning"
PACKAGES = {"lightning.pytorch": "lightning", "pytorch_lightning": "pytorch-lightning"}  # module -> distribution
TRAINER_SETTINGS = (
    "max_epochs", "min_epochs", "max_steps", "min_steps", "max_time", "precision", "accumulate_grad_batches",
    "gradient_clip_val", "gradient_clip_algorithm", "log_every_n_steps", "check_val_every_n_epoch",
    "val_check_interval", "limit_train_batches", "limit_val_batches", "num_sanity_val_steps", "num_nodes",
    "reload_dataloaders_every_n_epochs",
)
EARLY_STOPPING_SETTINGS = ("monitor", "mode", "patience", "min_delta")
TAG_BEST_CHECKPOINT = "autolog.best_checkpoint"
TAG_MLFLOW_RUN_ID = "autolog.mlflow_run_id"  # the MLflow backend's runs, read back
TAG_BEST_CHECKPOINT_SCORE = "autolog.best_checkpoint_score"
# scheduler attributes that are its state, not its settings
_SCHEDULER_STATE = {"base_lrs", "last_epoch", "verbose", "optimizer", "best", "num_bad_epochs", "cooldown_counter",
                    "eps", "last_lr"}


class LightningIntegration(Integration):
    name = NAME
    module = "torch"  # both Lightning packages import torch first; patch() waits for either of them
    requires = "lightning>=2.0"

    def libraries(self) -> dict[str, str]:
        return {"lightning": "lightning", "pytorch_lightning": "pytorch-lightning"}

    def patch(self, patcher: Patcher) -> None:
        fitted = TrainedModels()  # the run each trainer's last logged fit went to
        for package in PACKAGES:
            patcher.when_imported(package, functools.partial(_patch_package, patcher, fitted))


def _patch_package(patcher: Patcher, fitted: TrainedModels, module: Any) -> None:
    version = getattr(module, "__version__", "0")
    if int(version.split(".")[0]) < 2:
        containment.warn_once(f"version {module.__name__}", "%s %s is older than 2.0: it is not patched",
                              module.__name__, version)
        return
    callback_class = _callback_class(module.Callback, module.__name__)
    patcher.wrap(module.Trainer, "fit", Fit(callback_class, fitted))
    after_fit = AfterFit(callback_class, fitted)
    patcher.wrap(module.Trainer, "validate", after_fit)
    patcher.wrap(module.Trainer, "test", after_fit)
    patcher.wrap(module.callbacks.ModelCheckpoint, "_save_checkpoint", _checkpoint_saved)


# -- the calls ------------------------------------------------------------------------------------
class Fit(TrainingWrapper):
    """`Trainer.fit`: one run; the callback records the loop, `after` the result."""

    integration = NAME

    def __init__(self, callback_class: type, fitted: TrainedModels):
        super().__init__()
        self.callback_class = callback_class
        self.fitted = fitted

    def should_log(self, call: Call) -> bool:
        # one run per job: the other ranks join it only to log their metrics (log_all_ranks)
        return is_primary_process() or runs.settings().log_all_ranks

    def starts_run_later(self, call: Call) -> bool:
        """Under a launcher that re-runs the script for the other ranks (`strategy="ddp"`),
        rank 0 gets its rank variables only inside `fit`: its run starts at the callback's
        `setup`, once the process group exists, so every rank derives the same job run."""
        launcher = getattr(getattr(call.instance, "strategy", None), "launcher", None)
        return type(launcher).__name__ == "_SubprocessScriptLauncher"

    def run_name(self, call: Call) -> str:
        model = call.arguments.get("model")
        return type(model).__name__ if model is not None else "Trainer"

    def before(self, call: Call) -> None:
        if call.run is None:  # the run starts at the callback's setup (starts_run_later)
            callback = self.callback_class(None, functools.partial(_start_recorder, call))
        else:
            callback = self.callback_class(self._recorder(call))
        call.state["callbacks"] = _add_callback(call.instance, callback)

    def started(self, call: Call) -> None:
        self._recorder(call)

    def _recorder(self, call: Call) -> "FitRecorder":
        trainer, run = call.instance, call.run
        model, datamodule = call.arguments.get("model"), call.arguments.get("datamodule")
        recorder = call.state["recorder"] = FitRecorder(run, trainer, model, datamodule)
        if is_primary_process():  # written once, by rank 0
            params = trainer_params(trainer)
            for source in (model, datamodule):
                params.update(hyperparameters(source))
            recorder.log_params(params)
        return recorder

    def after(self, call: Call) -> None:
        trainer = call.instance
        _remove_callback(trainer, call.state.get("callbacks"))
        recorder = call.state.get("recorder")
        if recorder is not None:
            self.fitted.remember(trainer, call.run)
            recorder.fit_ended(trainer, call.arguments.get("model") or trainer.lightning_module)

    def failed(self, call: Call, exc: BaseException) -> None:
        _remove_callback(call.instance, call.state.get("callbacks"))


class AfterFit(AfterTraining):
    """`Trainer.validate` / `test` on a trainer whose fit was logged: its metrics go to the fit's
    run (which may have ended with the fit). Other calls run untouched. The call counts as a
    training call, so the torch integration does not log the loggers' TensorBoard writes a
    second time."""

    integration = NAME

    def __init__(self, callback_class: type, fitted: TrainedModels):
        super().__init__()
        self.callback_class = callback_class
        self.fitted = fitted

    def run_of(self, call: Call) -> Optional[runs.ActiveRun]:
        return self.fitted.run_of(call.instance)

    def before(self, call: Call) -> None:
        trainer = call.instance
        recorder = FitRecorder(call.run, trainer, trainer.lightning_module, trainer.datamodule)
        call.state["callbacks"] = _add_callback(trainer, self.callback_class(recorder))

    def after(self, call: Call) -> None:
        _remove_callback(call.instance, call.state.get("callbacks"))

    def failed(self, call: Call, exc: BaseException) -> None:
        _remove_callback(call.instance, call.state.get("callbacks"))


def _add_callback(trainer: Any, callback: Any) -> tuple:
    """Give the trainer a copy of its callback list with `callback` added; (user's list, callback)."""
    original = trainer.callbacks
    trainer.callbacks = [*original, callback]
    return original, callback


def _remove_callback(trainer: Any, added: Optional[tuple]) -> None:
    """Put the user's callback list back: the very list object when Lightning left it as it was,
    else Lightning's new list (callbacks of `configure_callbacks` attached) without autolog's."""
    if added is None:
        return
    original, callback = added
    now = [c for c in trainer.callbacks if c is not callback]
    same = len(now) == len(original) and all(a is b for a, b in zip(now, original))
    trainer.callbacks = original if same else now


# -- the callback ---------------------------------------------------------------------------------
def _callback_class(base: type, package: str) -> type:
    """autolog's callback for the Lightning package whose `Callback` is `base`."""

    @contained_callback(NAME)
    class AutologCallback(base):
        def __init__(self, recorder: Optional["FitRecorder"], start_run: Optional[Callable] = None):
            self._autolog_recorder = recorder
            self._autolog_start_run = start_run  # the fit's run starts at setup, in the launched process

        def __reduce__(self):  # a trainer sent to other processes (ddp_spawn) takes an inert callback
            return _inert_callback, (package,)

        def setup(self, trainer, pl_module, stage):
            start_run, self._autolog_start_run = self._autolog_start_run, None
            if start_run is not None:
                self._autolog_recorder = start_run()

        def on_train_start(self, trainer, pl_module):
            if self._autolog_recorder is not None:  # None until the run starts
                self._autolog_recorder.train_started(trainer)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self._autolog_recorder is not None:
                self._autolog_recorder.batch_ended(trainer)

        def on_train_epoch_start(self, trainer, pl_module):
            if self._autolog_recorder is not None:
                self._autolog_recorder.epoch_started(trainer)

        def on_validation_end(self, trainer, pl_module):
            if self._autolog_recorder is not None:
                self._autolog_recorder.validation_ended(trainer)

        def on_train_epoch_end(self, trainer, pl_module):
            if self._autolog_recorder is not None:
                self._autolog_recorder.epoch_ended(trainer)

        def on_test_end(self, trainer, pl_module):
            if self._autolog_recorder is not None:
                self._autolog_recorder.test_ended(trainer)

    AutologCallback.__qualname__ = AutologCallback.__name__ = "AutologCallback"
    return AutologCallback


def _start_recorder(call: Call) -> Optional["FitRecorder"]:
    """Start the run of a fit whose run starts later; the recorder `Fit.started` made for it."""
    return call.state.get("recorder") if call.start_run() is not None else None


def _inert_callback(package: str) -> Any:
    return sys.modules[package].Callback()


def _recorder_of(trainer: Any) -> Optional["FitRecorder"]:
    for callback in getattr(trainer, "callbacks", None) or ():
        recorder = getattr(callback, "_autolog_recorder", None)
        if isinstance(recorder, FitRecorder):
            return recorder
    return None


# -- what one call records ------------------------------------------------------------------------
class FitRecorder:
    """What the callback of one `fit` (or `validate` / `test` after it) logs into its run."""

    def __init__(self, run: runs.ActiveRun, trainer: Any, model: Any = None, datamodule: Any = None):
        self.run = run
        self.metrics = StepMetrics(run, NAME)
        self.every = runs.settings().log_every_n_steps  # None: epoch metrics only
        self.step_names: set = set()
        self.epoch_names: set = set()
        self.lr_names: list = []  # per optimizer, per param group
        self.last_lr_step: Optional[int] = None
        self.keep_last: Optional[int] = None
        # a user's MLFlowLogger writing into this very run logs self.log's metrics and the
        # hyper-parameters itself (keys flattened with "/"): autolog leaves those to it
        self.shared_with = _logger_writing(trainer, run)
        self.logger_params: set = set()
        if self.shared_with is not None:
            for source in (model, datamodule):
                hparams = hyperparameters(source)
                self.logger_params.update(hparams)
                self.logger_params.update(k.replace(".", "/") for k in hparams)

    def log_params(self, params: dict) -> None:
        if self.shared_with is not None:
            params = {k: v for k, v in params.items() if k not in self.logger_params}
        self.run.log_params(params, normalize=True)

    # -- hooks ----------------------------------------------------------------------------------
    def train_started(self, trainer: Any) -> None:
        self.run.set_tag("Mode", "training")  # as mlflow.pytorch.autolog tags it
        params: dict = {}
        optimizers = list(trainer.optimizers)
        for index, optimizer in enumerate(optimizers):
            params.update(optimizer_params(optimizer, index))
            self.lr_names.append(lr_metric_names(optimizer, [n for names in self.lr_names for n in names]))
        for index, config in enumerate(getattr(trainer, "lr_scheduler_configs", None) or ()):
            params.update(scheduler_params(config, index))
        stoppers = _early_stopping_callbacks(trainer)
        for index, stopper in enumerate(stoppers):
            settings = {name: getattr(stopper, name) for name in EARLY_STOPPING_SETTINGS if hasattr(stopper, name)}
            params.update(settings if index == 0 else flatten({f"early_stopping_{index}": settings}))
        self.log_params(params)
        self.keep_last = _checkpoints_kept(trainer)

    def batch_ended(self, trainer: Any) -> None:
        every, step = self.every, trainer.global_step
        if every is None or step == self.last_lr_step:
            return
        optimizers = max(1, len(trainer.optimizers))  # manual optimization: one global step per optimizer step
        if step == 0 or (step // optimizers) % every:
            return
        metrics = trainer.callback_metrics
        values = {}
        if self.shared_with is None:
            for name, value in metrics.items():
                if name not in self.epoch_names and f"{name}_step" not in metrics:
                    values[name] = value
                    self.step_names.add(name)
        values.update(self._learning_rates(trainer))
        self.last_lr_step = step
        self.metrics.log(values, step=step)

    def validation_ended(self, trainer: Any) -> None:
        if trainer.sanity_checking:
            return
        names = trainer.callback_metrics.keys() - self.step_names
        if _stage(trainer) == "validate":  # trainer.validate() after the fit
            self._log_evaluation(trainer, names)
        else:
            self.epoch_names.update(names)  # validation values are epoch values, also mid-epoch

    def epoch_started(self, trainer: Any) -> None:
        if self.every is None:  # the learning rates of the epoch, as LearningRateMonitor logs them per epoch
            self.metrics.log(self._learning_rates(trainer), step=trainer.current_epoch)

    def epoch_ended(self, trainer: Any) -> None:
        if self.shared_with is None:
            values = {n: v for n, v in trainer.callback_metrics.items() if n not in self.step_names}
            self.epoch_names.update(values)
            self.metrics.log(values, step=trainer.current_epoch)

    def test_ended(self, trainer: Any) -> None:
        self.run.set_tag("Mode", "testing")
        self._log_evaluation(trainer, trainer.callback_metrics.keys())

    def _log_evaluation(self, trainer: Any, names) -> None:
        if self.shared_with is None:
            metrics = trainer.callback_metrics
            self.metrics.log({name: metrics[name] for name in names}, step=trainer.current_epoch)

    def _learning_rates(self, trainer: Any) -> dict:
        if self.shared_with is not None and _has_lr_monitor(trainer):
            return {}  # the user's LearningRateMonitor logs them through the logger
        values = {}
        for optimizer, names in zip(trainer.optimizers, self.lr_names):
            values.update((name, group.get("lr")) for name, group in zip(names, optimizer.param_groups))
        return values

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint_saved(self, checkpoint_callback: Any, trainer: Any, filepath: str) -> None:
        metrics = {"epoch": trainer.current_epoch, "global_step": trainer.global_step}
        # the save has just copied every weight to the host, so reading these now costs no wait
        for name, value in trainer.callback_metrics.items():
            if is_scalar_number(value) or getattr(value, "numel", lambda: 0)() == 1:
                metrics[name] = float(value)
        capture_checkpoint(self.run, filepath, step=trainer.global_step, keep_last=self.keep_last,
                           metrics=metrics, integration=NAME)

    # -- the end of the fit ---------------------------------------------------------------------
    def fit_ended(self, trainer: Any, model: Any) -> None:
        for index, stopper in enumerate(_early_stopping_callbacks(trainer)):
            self._log_early_stopping(stopper, index)
        if not is_primary_process():
            return  # the summary and the model are written once, by rank 0
        self._log_best_checkpoint(trainer)
        with containment.contained(f"{NAME}: model summary"):
            self.run.log_text(model_summary(trainer, model), "model_summary.txt")
        if runs.settings().log_models:
            self._log_model(model)

    def _log_early_stopping(self, stopper: Any, index: int) -> None:
        prefix = "" if index == 0 else f"early_stopping_{index}."
        self.run.log_params({f"{prefix}stopped_epoch": stopper.stopped_epoch}, normalize=True)
        values: dict = {"best_score": stopper.best_score, "wait_count": stopper.wait_count}
        if stopper.stopped_epoch:  # as mlflow.pytorch.autolog: only when it did stop early
            values["stopped_epoch"] = stopper.stopped_epoch
            values["restored_epoch"] = stopper.stopped_epoch - max(1, stopper.patience)
        self.metrics.log({prefix + name: value for name, value in values.items()}, step=0)

    def _log_best_checkpoint(self, trainer: Any) -> None:
        checkpoint = getattr(trainer, "checkpoint_callback", None)
        best = getattr(checkpoint, "best_model_path", None)
        if best and runs.settings().log_checkpoints:
            tags = {TAG_BEST_CHECKPOINT: f"checkpoints/{os.path.basename(best)}"}
            score = getattr(checkpoint, "best_model_score", None)
            if score is not None:
                tags[TAG_BEST_CHECKPOINT_SCORE] = float(score)
            self.run.set_tags(tags, normalize=True)

    def _log_model(self, model: Any) -> None:
        try:
            pickled = pickle_module_bytes(model)
        except Exception as exc:  # noqa: BLE001 - the user's module holds something that cannot be pickled
            containment.warn_once(f"{NAME} pickle {type(model).__name__}",
                                  "%s cannot be pickled (%s: %s): no model is logged (run %s)",
                                  type(model).__name__, type(exc).__name__, exc, self.run.run_id)
            return
        log_model(self.run, pickled, _flavor_for(model), max_size_mb=runs.settings().max_model_size_mb)


# -- what is read from Lightning's objects ----------------------------------------------------------
def trainer_params(trainer: Any) -> dict:
    """The Trainer's settings; `epochs` is MLflow's name for max_epochs."""
    params: dict = {"epochs": trainer.max_epochs}
    for name in TRAINER_SETTINGS:
        if hasattr(trainer, name):
            params[name] = getattr(trainer, name)
    params["strategy"] = type(trainer.strategy).__name__
    params["accelerator"] = type(trainer.accelerator).__name__
    params["devices"] = trainer.num_devices
    return params


def hyperparameters(source: Any) -> dict:
    """`save_hyperparameters()` of a LightningModule or LightningDataModule, flattened."""
    hparams = getattr(source, "hparams", None)
    return flatten(dict(hparams)) if hparams else {}


def scheduler_params(config: Any, index: int) -> dict:
    """An LR scheduler's class, how Lightning steps it, and its own settings (`step_size`, `gamma`, ...)."""
    scheduler = config.scheduler
    settings: dict = {"name": type(scheduler).__name__, "interval": config.interval, "frequency": config.frequency}
    if config.monitor:
        settings["monitor"] = config.monitor
    for key, value in vars(scheduler).items():
        if key.startswith("_") or key in _SCHEDULER_STATE:
            continue
        if is_scalar_number(value) or isinstance(value, (str, bool)):
            settings[key] = value
    return flatten({"lr_scheduler" if index == 0 else f"lr_scheduler_{index}": settings})


def model_summary(trainer: Any, model: Any) -> str:
    """The full layer table with parameter counts, as mlflow.pytorch.autolog writes it."""
    package = type(trainer).__module__.split(".trainer")[0]  # lightning.pytorch or pytorch_lightning
    summary = importlib.import_module(package + ".utilities.model_summary")
    return str(summary.ModelSummary(model, max_depth=-1))


def _early_stopping_callbacks(trainer: Any) -> list:
    return list(getattr(trainer, "early_stopping_callbacks", None) or ())


def _checkpoints_kept(trainer: Any) -> Optional[int]:
    """How many checkpoint files the run keeps: as many as the ModelCheckpoints keep on disk
    (`save_top_k`, plus the `last` file); all of them when one keeps all (`save_top_k=-1`)."""
    total = 0
    for checkpoint in getattr(trainer, "checkpoint_callbacks", None) or ():
        top_k = getattr(checkpoint, "save_top_k", -1)
        if top_k < 0:
            return None
        total += top_k + (1 if getattr(checkpoint, "save_last", False) else 0)
    return total or None


def _has_lr_monitor(trainer: Any) -> bool:
    return any(type(c).__name__ == "LearningRateMonitor" for c in trainer.callbacks)


def _stage(trainer: Any) -> str:
    fn = getattr(getattr(trainer, "state", None), "fn", None)
    return str(getattr(fn, "value", fn))


def _logger_writing(trainer: Any, run: runs.ActiveRun) -> Optional[Any]:
    """The user's MLFlowLogger that writes into `run` itself, if any: one given the run's id, or,
    with autolog's MLflow backend, the MLflow id of the run in the same tracking store."""
    for logger in getattr(trainer, "loggers", None) or ():
        target = getattr(logger, "_run_id", None) if type(logger).__name__ == "MLFlowLogger" else None
        if target is not None and (target == run.run_id or target == _mlflow_run_id(run, logger)):
            return logger
    return None


def _mlflow_run_id(run: runs.ActiveRun, logger: Any) -> Optional[str]:
    """The id MLflow knows `run` by, when the logger writes to the store autolog logs `run` to.
    Reading it waits for the run's records (a flush): only for a logger pointed at a given run
    of autolog's own store, once per fit."""
    from autolog.backends import mlflow_store_of, normalize_uri

    uri = getattr(logger, "_tracking_uri", None)
    if not uri or normalize_uri(mlflow_store_of(str(uri))) != run.tracking_uri:
        return None
    return autolog_get_run(run.run_id, tracking_uri=run.tracking_uri).tags.get(TAG_MLFLOW_RUN_ID)


def _flavor_for(model: Any) -> TorchFlavor:
    """The pytorch flavor; a LightningModule also needs its Lightning package to load."""
    for cls in type(model).__mro__:
        root = cls.__module__.partition(".")[0]
        if root == "lightning":
            return TorchFlavor(("lightning",))
        if root == "pytorch_lightning":
            return TorchFlavor(("pytorch-lightning",))
    return TorchFlavor()


# -- ModelCheckpoint --------------------------------------------------------------------------------
def _checkpoint_saved(wrapped, instance, args, kwargs):
    """`ModelCheckpoint._save_checkpoint(trainer, filepath)` of a logged fit: the file is captured
    right after the save, and a capture of an earlier save of the same path finishes before it."""
    arguments = call_arguments(wrapped, args, kwargs)
    trainer, filepath = arguments.get("trainer"), arguments.get("filepath")
    recorder = _recorder_of(trainer)
    if recorder is not None and isinstance(filepath, (str, os.PathLike)):
        wait_for_checkpoint(os.fspath(filepath))
    result = wrapped(*args, **kwargs)
    if recorder is not None and isinstance(filepath, (str, os.PathLike)) and trainer.is_global_zero:
        recorder.checkpoint_saved(instance, trainer, os.fspath(filepath))
    return result
