"""What the XGBoost and LightGBM integrations share: the same three training calls, logged the same way.

Both libraries have a native `train(params, data, num_boost_round, ...)`, a `cv(...)` with the
same shape, and scikit-learn wrappers whose `fit` calls `train` underneath. MLflow logs them
alike, and so do we; each integration (integrations/xgboost.py, integrations/lightgbm.py)
supplies only a `Library`: its callback, its model format, its feature importances and how
it marks early stopping. This module holds the rest, once:

- `BoosterTraining`: `train`. Params (the booster's, flattened, and every other keyword
  argument MLflow logs, defaults included), a contained callback appended to a copy of the
  user's callbacks that logs every eval set's metrics each iteration (step = iteration),
  the early-stopping metrics, feature importances (JSON and a bar chart, on the worker) and
  the model.
- `CrossValidation`: `cv`. Params, and the mean and standard deviation of every metric each
  iteration.
- `WrapperFit`: the scikit-learn wrappers' `fit`. One run per fit: the wrapper's tags and
  `get_params()`, its training and eval data as dataset inputs (`log_datasets`), the
  scikit-learn-API training metrics and confusion matrix of
  integrations/sklearn_api.py, feature importances, the fitted wrapper as the model; and,
  through `TrainInsideFit` on the library's internal reference to `train`, everything
  `train` logs (params as the booster got them, per-iteration metrics, early stopping) in
  the same run.
- `SavedDuringTraining`: a booster saved to a file while a logged training call runs (the
  library's checkpoint callback, or the user's own callback) is captured into the run's
  `checkpoints/`.

On the training thread a call costs: its params as records, one record per metric and
iteration (batched by the logger), and at the end one in-memory copy of the model
(`Library.snapshot`, also used for the importances) plus, for a wrapper, a capped copy of
the training data (`max_metric_rows`), and for each dataset input not covered by that copy
its first rows (autolog/instrument/datasets.py). Everything else is made from those copies
on the logger's worker.

Imports no ML library at import time.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from autolog import runs
from autolog.instrument import containment
from autolog.instrument.checkpoints import CapturedFiles
from autolog.instrument.datasets import log_dataset
from autolog.instrument.models import ModelFlavor, log_model
from autolog.instrument.params import flatten
from autolog.instrument.snapshots import DataSnapshot, TrainingActivity, data_shape, input_example_of, signature_of
from autolog.instrument.step_metrics import StepMetrics
from autolog.instrument.training_call import Call, TrainingWrapper
from autolog.integrations.plots import importance_png
from autolog.integrations.sklearn_api import estimator_params, estimator_tags, log_training_metrics, post_training

log = logging.getLogger("autolog")

# the worker draws, predicts and writes models between training calls, not during them
activity = TrainingActivity()
# an importance chart shows at most this many features (the most important; the JSON has all):
# its height grows with every bar
CHART_FEATURES = 40


def metric_name(name: str) -> str:
    """MLflow's spelling of a library's metric name: `ndcg@3` -> `ndcg_at_3`."""
    return name.replace("@", "_at_")


# -- what one library supplies -----------------------------------------------------------------
@dataclass(frozen=True)
class EarlyStopping:
    """The early-stopping metrics of one training call, as MLflow logs them: `stopped_iteration`
    and `best_iteration` (step 0), and the best iteration's metrics again at step `extra_step`."""

    stopped_iteration: int
    best_iteration: int
    best_metrics: Mapping[str, float]
    extra_step: int


class Library:
    """What `BoosterTraining`, `CrossValidation` and `WrapperFit` need to know about one library."""

    name: str = ""  # the integration's name, e.g. "xgboost"
    # how the library counts its best iteration: XGBoost from 0 (the iteration's index), LightGBM
    # from 1 (the number of iterations that make the best model)
    best_counted_from: int = 0
    train_unlogged: frozenset = frozenset()  # train() arguments that are not params (data, callables, callbacks)
    cv_unlogged: frozenset = frozenset()
    booster_flavor: Optional[ModelFlavor] = None
    wrapper_flavor: Optional[ModelFlavor] = None
    # the importance types drawn as charts (None: all of them); the JSON has every type. MLflow
    # draws only some (mlflow.xgboost: "weight" by default): a chart it does not draw is worker
    # time nobody asked for
    charted: Optional[frozenset] = None

    def callback(self, recorder: "IterationRecorder") -> Any:
        """A contained callback (autolog/instrument/callbacks.py) that feeds `recorder`."""
        raise NotImplementedError

    def best_iteration(self, booster: Any, arguments: Mapping) -> Optional[int]:
        """The booster's best iteration when early stopping was on (in the library's counting), else None."""
        raise NotImplementedError

    def snapshot(self, model: Any) -> Any:
        """On the training thread: a consistent in-memory copy of a booster or fitted wrapper
        (what the model is written from and the importances are computed from)."""
        raise NotImplementedError

    def booster_of(self, model: Any) -> Any:
        """The booster of a snapshot loaded back on the worker (or of a live model)."""
        raise NotImplementedError

    def load(self, snapshot: Any) -> Any:
        """On the worker: the model of a snapshot (a booster or a fitted wrapper) to compute
        importances and metrics from; None when there is none to be had."""
        raise NotImplementedError

    def importances(self, booster: Any) -> dict[str, Any]:
        """{importance type: {feature: value}} for every importance type the library has."""
        raise NotImplementedError

    def train_datasets(self, arguments: Mapping) -> list:
        """[(data, targets, context, name)] of a `train` call whose raw data can be read before
        training (none by default: an XGBoost DMatrix does not keep it)."""
        return []

    def eval_sets(self, arguments: Mapping) -> list:
        """[(X, y, name)] of a wrapper's `fit`, named as the per-iteration metrics name them."""
        return []


# -- params ------------------------------------------------------------------------------------------
def booster_params(params: Any) -> dict:
    """The `params` argument of train/cv as a flat dict. XGBoost also takes a list of (key,
    value) pairs, where a key may repeat (`eval_metric` twice): those become one list."""
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return flatten(params)
    merged: dict = {}
    for key, value in params:
        if key in merged:
            previous = merged[key]
            merged[key] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            merged[key] = value
    return flatten(merged)


def call_params(arguments: Mapping, unlogged: frozenset) -> dict:
    """The booster's params, then every other argument of the call that is not data or code."""
    params = booster_params(arguments.get("params"))
    for name, value in arguments.items():
        if name != "params" and name not in unlogged and name not in params:
            params[name] = value
    return params


# -- the training session: one logged call of these integrations on this thread ------------------------
@dataclass(eq=False)
class Session:
    run: Any
    integration: str
    guard: Any  # the runs.TrainingCall of the logged call: a session outlived by its call is ignored
    kind: str  # "train", "cv" or "fit"
    started: float = field(default_factory=time.time)
    pending_params: dict = field(default_factory=dict)  # a wrapper's get_params(), logged with train's
    joined: bool = False  # a wrapper's fit: its train() has joined the run
    checkpoints: Optional[CapturedFiles] = None  # the checkpoint files captured in this call
    # (model, snapshot) that the library handed over during the call, taken from what it made
    # anyway (LightGBM's train() ends by reloading its booster from its own model text): the
    # snapshot of that model, without serialising it a second time
    captured: Optional[tuple] = None

    def __post_init__(self):
        self.checkpoints = CapturedFiles(self.run, integration=self.integration,
                                         keep_last=runs.settings().keep_last_checkpoints)


_session: contextvars.ContextVar[Optional[Session]] = contextvars.ContextVar("autolog_gbdt_session", default=None)


def open_session(call: Call, integration: str, kind: str, pending_params: Optional[dict] = None) -> Session:
    session = Session(call.run, integration, runs.training_call_in_progress(), kind, pending_params=pending_params or {})
    call.state["session_token"] = _session.set(session)
    call.state["session"] = session
    return session


def close_session(call: Call) -> Optional[Session]:
    token = call.state.pop("session_token", None)
    if token is not None:
        _session.reset(token)
    return call.state.get("session")


def current_session(integration: str) -> Optional[Session]:
    """The logged call of `integration` this thread is inside, if any."""
    session = _session.get()
    if session is None or session.integration != integration:
        return None
    if session.guard is not runs.training_call_in_progress():
        return None  # left behind by a call whose hooks did not finish: not ours any more
    return session


# -- per-iteration metrics ------------------------------------------------------------------------
class IterationRecorder:
    """What the callback hands over each iteration: logged at once through `StepMetrics` (which
    skips NaN, lists and strings with one warning per key), and kept per step so that the best
    iteration's metrics can be logged again when early stopping ends the training."""

    def __init__(self, run: Any, integration: str):
        self.sink = StepMetrics(run, integration)
        self.steps: list[int] = []
        self.history: list[dict] = []

    def record(self, metrics: dict, step: int) -> None:
        self.sink.log(metrics, step)
        self.steps.append(step)
        self.history.append(metrics)

    def metrics_at(self, step: int) -> Optional[dict]:
        """The metrics recorded at iteration `step` (None when there were none)."""
        if not self.steps:
            return None
        index = step - self.steps[0]
        if 0 <= index < len(self.steps) and self.steps[index] == step:
            return self.history[index]
        for known, metrics in zip(self.steps, self.history):
            if known == step:
                return metrics
        return None


def early_stopping(library: Library, recorder: IterationRecorder, best: Optional[int]) -> Optional[EarlyStopping]:
    """MLflow's early-stopping metrics, in each library's own counting (mlflow.xgboost:
    `stopped_iteration` is the last iteration, the best metrics go one step after it;
    mlflow.lightgbm: `stopped_iteration` is the number of iterations run, the best metrics
    go at that step, and `best_iteration` counts from 1)."""
    if best is None or not recorder.steps:
        return None
    best = int(best)
    metrics = recorder.metrics_at(best - library.best_counted_from) or {}
    if library.best_counted_from:
        ran = len(recorder.steps)
        return EarlyStopping(ran, best, metrics, ran)
    last = recorder.steps[-1]
    return EarlyStopping(last, best, metrics, last + 1)


def log_early_stopping(run: Any, stopping: Optional[EarlyStopping], sink: StepMetrics) -> None:
    if stopping is None:
        return
    run.log_metrics({"stopped_iteration": stopping.stopped_iteration, "best_iteration": stopping.best_iteration},
                    normalize=True)
    if stopping.best_metrics:
        sink.log(stopping.best_metrics, stopping.extra_step)


def add_callback(call: Call, callback: Any) -> None:
    """Append autolog's callback to a copy of the user's callbacks."""
    call.set_argument("callbacks", [*(call.arguments.get("callbacks") or ()), callback])


# -- train ----------------------------------------------------------------------------------------
class BoosterTraining(TrainingWrapper):
    """`xgboost.train` / `lightgbm.train`: one run per call."""

    bind_defaults = True  # MLflow logs the defaults of train()'s arguments too
    activity = activity

    def __init__(self, library: Library):
        super().__init__(library.name)
        self.library = library

    def run_name(self, call: Call) -> str:
        return f"{self.integration}.train"

    def before(self, call: Call) -> None:
        self.start(call, pending_params=None)
        for data, targets, context, name in self.library.train_datasets(call.arguments):
            log_dataset(call.run, data, targets=targets, context=context, name=name)
        open_session(call, self.integration, "train")

    def after(self, call: Call) -> None:
        close_session(call)
        self.finish(call, log_the_model=True)

    def failed(self, call: Call, exc: BaseException) -> None:
        close_session(call)

    # shared with TrainInsideFit
    def start(self, call: Call, pending_params: Optional[dict]) -> None:
        params = dict(pending_params or {})
        params.update(call_params(call.arguments, self.library.train_unlogged))  # what the booster got wins
        call.run.log_params(params, normalize=True)
        recorder = call.state["recorder"] = IterationRecorder(call.run, self.integration)
        add_callback(call, self.library.callback(recorder))

    def finish(self, call: Call, log_the_model: bool) -> None:
        booster, run = call.result, call.run
        recorder = call.state.get("recorder")
        if recorder is not None:
            best = self.library.best_iteration(booster, call.arguments)
            log_early_stopping(run, early_stopping(self.library, recorder, best), recorder.sink)
        if log_the_model:
            session = call.state.get("session")
            captured = session.captured if session is not None else None
            snapshot = captured[1] if captured is not None and captured[0] is booster else None
            log_model_and_importances(run, self.library, booster, self.library.booster_flavor, snapshot=snapshot)


def log_model_and_importances(run: Any, library: Library, model: Any, flavor: ModelFlavor,
                              data: Optional[DataSnapshot] = None, wrapper: bool = False,
                              snapshot: Any = None) -> None:
    """On the training thread: one snapshot of the model (`snapshot`, when the caller has it
    already). From it, on the worker: the feature importances, a wrapper's training metrics and
    confusion matrix, and the model folder."""
    s = runs.settings()
    try:
        snapshot = library.snapshot(model) if snapshot is None else snapshot
    except Exception as exc:  # noqa: BLE001 - e.g. a booster that cannot be serialised
        containment.warn_once(f"{library.name} model snapshot",
                              "%s: the trained %s cannot be saved (%s: %s); its model is not logged and its "
                              "feature importances are read from the live object (run %s)",
                              library.name, type(model).__name__, type(exc).__name__, exc, run.run_id)
        importances = library.importances(library.booster_of(model))
        run.defer(lambda: log_importances(run, importances, s.log_plots, library.charted),
                  label=f"{library.name}: feature importances of run {run.run_id}")
        return
    # heavy: it holds the model's copy and the data's, so the logger bounds how many wait; a wait
    # for room is not training (the worker's job that makes room must not wait for it)
    held = (flavor.snapshot_size(snapshot) or 0) + _data_bytes(data)
    with activity.paused():
        run.defer(lambda: _log_from_snapshot(run, library, snapshot, flavor, data, wrapper, s),
                  label=f"{library.name}: feature importances, training metrics and model of run {run.run_id}",
                  holds_bytes=held)


def _data_bytes(data: Optional[DataSnapshot]) -> int:
    """About how many bytes a DataSnapshot's arrays hold (0 for what does not say)."""
    if data is None:
        return 0
    return sum(int(getattr(part, "nbytes", 0) or 0) for part in (data.X, data.y, data.sample_weight))


def _log_from_snapshot(run: Any, library: Library, snapshot: Any, flavor: ModelFlavor, data: Optional[DataSnapshot],
                       wrapper: bool, s: Any) -> None:
    activity.wait()  # between training calls, not during the next one
    model = library.load(snapshot)  # None: no copy to compute from (the model is still written)
    if model is not None:
        log_importances(run, library.importances(library.booster_of(model)), s.log_plots, library.charted)
    predicted: dict = {}
    if wrapper and data is not None and model is not None:
        predicted = log_training_metrics(run, model, data, log_plots=s.log_plots, activity=activity,
                                         integration=library.name)
    if s.log_models:
        activity.wait()
        signature = example = None
        if wrapper and data is not None and s.log_model_signatures and model is not None:
            signature = signature_of(model, data.X, predicted.get("y"))
        if wrapper and data is not None and s.log_input_examples:
            example = input_example_of(data.X)
        log_model(run, snapshot, flavor, signature=signature, input_example=example, max_size_mb=s.max_model_size_mb)


# -- feature importances (on the worker) ---------------------------------------------------------------
def log_importances(run: Any, importances: Mapping[str, Any], plots: bool, charted: Optional[frozenset] = None) -> None:
    """`feature_importance_<type>.json` for every type, and `feature_importance_<type>.png`
    (integrations/plots.py, with Pillow) when plots are on, for the types in `charted` (None:
    every type): the ones MLflow draws, under its names."""
    for importance_type, values in importances.items():
        folder = run.staging_dir()
        path = os.path.join(folder, f"feature_importance_{importance_type}.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(values, fh, indent=2)
        run.log_owned_artifact(path)
        if plots and values and (charted is None or importance_type in charted):
            with containment.contained(f"drawing feature importance ({importance_type})"):
                png = os.path.join(folder, f"feature_importance_{importance_type}.png")
                if importance_png(values, importance_type, png, most=CHART_FEATURES):
                    run.log_owned_artifact(png)


# -- cv -------------------------------------------------------------------------------------------------
class CrossValidation(TrainingWrapper):
    """`xgboost.cv` / `lightgbm.cv`: one run; params, the mean and standard deviation of every
    metric each iteration, and the early-stopping metrics."""

    bind_defaults = True
    activity = activity

    def __init__(self, library: Library):
        super().__init__(library.name)
        self.library = library

    def run_name(self, call: Call) -> str:
        return f"{self.integration}.cv"

    def before(self, call: Call) -> None:
        call.run.log_params(call_params(call.arguments, self.library.cv_unlogged), normalize=True)
        recorder = call.state["recorder"] = IterationRecorder(call.run, self.integration)
        add_callback(call, self.library.callback(recorder))
        open_session(call, self.integration, "cv")

    def after(self, call: Call) -> None:
        close_session(call)
        recorder = call.state.get("recorder")
        rounds = _result_length(call.result)
        if recorder is None or not recorder.steps or rounds is None:
            return
        if rounds < len(recorder.steps):  # the library cut its history at the best iteration
            best = recorder.steps[rounds - 1] + self.library.best_counted_from
            log_early_stopping(call.run, early_stopping(self.library, recorder, best), recorder.sink)

    def failed(self, call: Call, exc: BaseException) -> None:
        close_session(call)


def _result_length(result: Any) -> Optional[int]:
    """Rounds kept in the result of cv (a DataFrame, or a dict of lists)."""
    if hasattr(result, "shape") and hasattr(result, "columns"):
        return int(result.shape[0])
    if isinstance(result, Mapping):
        for value in result.values():
            if isinstance(value, list):
                return len(value)
    return None


# -- the scikit-learn wrappers' fit ---------------------------------------------------------------------
class WrapperFit(TrainingWrapper):
    """`XGBClassifier.fit`, `LGBMRegressor.fit`, ...: one run per fit (a fit called by another
    fit, such as a subclass's calling its base class's or a Pipeline's step, is logged once, at
    the outermost call)."""

    activity = activity

    def __init__(self, library: Library):
        super().__init__(library.name)
        self.library = library

    def before(self, call: Call) -> None:
        estimator = call.instance
        tags = estimator_tags(estimator)
        X = call.arguments.get("X")
        shape = data_shape(X) if X is not None else None
        if shape:
            tags["autolog.training_data_shape"] = shape
        call.run.set_tags(tags, normalize=True)
        open_session(call, self.integration, "fit", pending_params=estimator_params(estimator))

    def after(self, call: Call) -> None:
        session = close_session(call)
        self._log_pending_params(call, session)
        estimator, arguments = call.instance, call.arguments
        X = arguments.get("X")
        settings = runs.settings()
        data = None
        if X is not None:
            data = DataSnapshot.take(X, arguments.get("y"), arguments.get("sample_weight"), settings.max_metric_rows)
            # the snapshot when there is one (nothing copied again), else a bounded copy of X
            log_dataset(call.run, data or X, targets=None if data else arguments.get("y"), context="train")
        for X_eval, y_eval, name in self.library.eval_sets(arguments):
            log_dataset(call.run, X_eval, targets=y_eval, context="eval", name=name)
        log_model_and_importances(call.run, self.library, estimator, self.library.wrapper_flavor, data, wrapper=True)
        # `score` and sklearn.metrics on its predictions go to this run (the scikit-learn
        # integration wraps the wrappers' predict and score: MLflow's post-training metrics)
        post_training.register_model(estimator, call.run)

    def failed(self, call: Call, exc: BaseException) -> None:
        self._log_pending_params(call, close_session(call))

    @staticmethod
    def _log_pending_params(call: Call, session: Optional[Session]) -> None:
        if session is not None and not session.joined and session.pending_params:
            call.run.log_params(session.pending_params, normalize=True)  # fit failed before train()


class TrainInsideFit(BoosterTraining):
    """The library's own reference to `train` inside its wrappers' `fit` (`xgboost.sklearn.train`,
    `lightgbm.sklearn.train`). Inside a logged wrapper fit, the call joins that fit's run: its
    params (the wrapper's `get_params()` with the booster's params over them, since those are what
    trained), its per-iteration metrics and early stopping. Anywhere else (the wrapper inside a
    scikit-learn Pipeline, which logs the run itself) it runs untouched."""

    def __call__(self, wrapped, instance, args, kwargs):
        session = current_session(self.integration)
        if session is None or session.kind != "fit" or session.joined:
            return wrapped(*args, **kwargs)
        session.joined = True
        call = Call(wrapped, instance, args, dict(kwargs), self.bind_defaults)
        call.run = session.run
        call.state["pending_params"] = session.pending_params
        return self._logged(call, args, kwargs)

    def before(self, call: Call) -> None:
        self.start(call, pending_params=call.state.get("pending_params"))

    def after(self, call: Call) -> None:
        self.finish(call, log_the_model=False)  # the fit logs the wrapper as the model

    def failed(self, call: Call, exc: BaseException) -> None:
        pass


# -- checkpoints -------------------------------------------------------------------------------------
class SavedDuringTraining:
    """A wrapt wrapper for `Booster.save_model`: a file saved while a logged training call of
    this integration runs on this thread (by a checkpoint callback) is captured into the run's
    `checkpoints/`, with the booster's iteration as its step."""

    def __init__(self, integration: str, iteration_of: Callable[[Any], Optional[int]]):
        self.integration = integration
        self.iteration_of = iteration_of

    def __call__(self, wrapped, instance, args, kwargs):
        result = wrapped(*args, **kwargs)
        session = current_session(self.integration)
        if session is not None:
            with containment.contained(f"{self.integration}: capturing a checkpoint"):
                path = _first_argument(wrapped, args, kwargs)
                if isinstance(path, (str, os.PathLike)):
                    capture_during(session, os.fspath(path), self.iteration_of(instance))
        return result


def capture_during(session: Session, path: str, step: Optional[int]) -> None:
    """Capture `path` into the session's run once (a file is captured again only when rewritten)."""
    session.checkpoints.capture(path, step=step)


def _first_argument(wrapped: Callable, args: tuple, kwargs: dict) -> Any:
    if args:
        return args[0]
    return kwargs.get("fname", kwargs.get("filename"))
