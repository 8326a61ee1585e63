"""scikit-learn: every `fit` of every estimator, searches, cross-validation, post-training metrics.

What is patched, and when:
- `fit`, `fit_transform` and `fit_predict` wherever a subclass of `BaseEstimator` defines
  them (its own `vars()`), which covers every class `all_estimators()` lists and any
  third-party or user estimator. Classes are patched as they are created: a wrapper on
  `BaseEstimator.__init_subclass__` (inherited from scikit-learn's metadata-routing mixin)
  patches each new subclass, and the subclasses that already exist are walked once. So
  `import sklearn` costs almost nothing more, and a submodule's classes are patched when
  that submodule is imported.
- `predict`, `predict_proba`, `predict_log_proba`, `decision_function` and `score` of the
  same classes, for post-training metrics; `sklearn.metrics` functions (module namespace);
  `cross_validate` / `cross_val_score` / `cross_val_predict`.
- scikit-learn's joblib helper `_FuncWrapper`: inner fits that a training call dispatches
  to joblib worker threads are marked as nested, so they log nothing (loky worker
  processes have no patches at all).

A fit inside a fit (Pipeline steps, ensembles, searches, meta-estimators) is logged once,
at the outermost call. See docs/integrations/sklearn.md for what is logged.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import inspect
import os
import pickle
import sys
from typing import Any, Optional

from autolog import runs
from autolog.instrument import containment
from autolog.instrument import models
from autolog.instrument.integration import Integration
from autolog.instrument.datasets import log_dataset
from autolog.instrument.params import is_scalar_number
from autolog.instrument.patching import Patcher
from autolog.instrument.training_call import Call, TrainingWrapper, call_arguments
from autolog.instrument.snapshots import (
    DataSnapshot,
    PickledModel,
    TrainingActivity,
    caller_variable_name,
    data_shape,
    input_example_of,
    pickle_model,
    signature_of,
)
from autolog.integrations.sklearn_api import estimator_params, estimator_tags, log_training_metrics, post_training

TRAINING_METHODS = ("fit", "fit_transform", "fit_predict")
PREDICTION_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")
CV_FUNCTIONS = ("cross_validate", "cross_val_score", "cross_val_predict")
# sklearn.metrics names that are not metrics of predictions
_NOT_METRICS = {"check_scoring", "get_scorer", "make_scorer", "get_scorer_names"}

activity = TrainingActivity()
# set while a model's own score/predict or a metric function runs: calls inside log nothing
_in_evaluation: contextvars.ContextVar[bool] = contextvars.ContextVar("autolog_sklearn_evaluation", default=False)


class SklearnIntegration(Integration):
    name = "sklearn"
    module = "sklearn"
    requires = "scikit-learn>=1.3"

    def patch(self, patcher: Patcher) -> None:
        from sklearn.base import BaseEstimator

        post_training.clear()
        fit = Fit(patcher)
        for cls in _subclasses(BaseEstimator):
            _patch_class(patcher, fit, cls)
        patcher.wrap(BaseEstimator, "__init_subclass__", _class_created(patcher, fit))
        patcher.when_imported("sklearn.metrics", functools.partial(_patch_metrics, patcher))
        patcher.when_imported("sklearn.model_selection", functools.partial(_patch_model_selection, patcher))
        patcher.when_imported("sklearn.utils.parallel", functools.partial(_patch_parallel, patcher))

    def model_flavor(self, model: Any) -> Optional[SklearnFlavor]:
        from sklearn.base import BaseEstimator

        return SKLEARN_FLAVOR if isinstance(model, BaseEstimator) else None


def _subclasses(base: type) -> list:
    found, todo = {}, [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found[sub] = None
                todo.append(sub)
    return list(found)


def _patch_class(patcher: Patcher, fit: "Fit", cls: type) -> None:
    """Wrap the training, prediction and score methods that `cls` and its bases define
    themselves (mixins such as ClassifierMixin are not BaseEstimator subclasses, yet they
    hold `score`, `fit_predict` and `fit_transform`). Each owner is wrapped once."""
    for owner in cls.__mro__:
        if owner is object:
            continue
        own = vars(owner)
        for name in TRAINING_METHODS:
            if name in own and not patcher.is_wrapped(owner, name):
                patcher.wrap(owner, name, fit)
        for name in PREDICTION_METHODS:
            if name in own and not patcher.is_wrapped(owner, name):
                patcher.wrap(owner, name, _predict)
        if "score" in own and not patcher.is_wrapped(owner, "score"):
            patcher.wrap(owner, "score", _score)


def _class_created(patcher: Patcher, fit: "Fit"):
    def on_init_subclass(wrapped, instance, args, kwargs):
        result = wrapped(*args, **kwargs)
        if patcher.active and isinstance(instance, type):
            with containment.contained(f"sklearn: patching {instance.__qualname__}"):
                _patch_class(patcher, fit, instance)
        return result

    return on_init_subclass


def _first_argument(wrapped: Any, args: tuple, kwargs: dict) -> Any:
    return next(iter(call_arguments(wrapped, args, kwargs).values()), None)


# -- fit -------------------------------------------------------------------------------------------
class Fit(TrainingWrapper):
    """`fit`, `fit_transform` and `fit_predict` of an estimator: one run, logged after the call.

    Not logged: calls made by scikit-learn itself, and estimators of a library that has an
    enabled integration of its own (the scikit-learn API of xgboost or lightgbm), which
    that integration logs in its own format."""

    integration = "sklearn"
    activity = activity

    def __init__(self, patcher: Patcher):
        super().__init__()
        self.patcher = patcher

    def should_log(self, call: Call) -> bool:
        instance = call.instance
        return (instance is not None and not isinstance(instance, type) and not _called_by_sklearn()
                and self.patcher.other_integration_for(type(instance).__module__) is None)

    def after(self, call: Call) -> None:
        _log_fit(call.run, call.instance, call.arguments)


def _called_by_sklearn() -> bool:
    """Is the caller scikit-learn's own code (a LabelEncoder fitted inside a metric function,
    an estimator check)? Such fits are not the user's training calls."""
    frame = sys._getframe(2)
    try:
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module == "autolog" or module.startswith(("autolog.", "wrapt")):
                frame = frame.f_back
                continue
            return module == "sklearn" or module.startswith("sklearn.")
        return False
    finally:
        del frame


def _log_fit(run: runs.ActiveRun, estimator: Any, arguments: dict) -> None:
    """On the training thread, only what needs the live objects: tags, the child runs of a
    search, and the two snapshots (the model as bytes, capped copies of the data). Params,
    metrics, plots and the model are logged from the snapshots on the logger's worker."""
    settings = runs.settings()
    # the data is `X` for nearly every estimator; text vectorizers call it `raw_documents`
    X = arguments.get("X", next(iter(arguments.values()), None))
    y = arguments.get("y", arguments.get("Y"))
    sample_weight = arguments.get("sample_weight")
    tags = estimator_tags(estimator)
    shape = data_shape(X)
    if shape:
        tags["autolog.training_data_shape"] = shape
    run.set_tags(tags, normalize=True)
    post_training.register_model(estimator, run)
    data = DataSnapshot.take(X, y, sample_weight, settings.max_metric_rows) if X is not None else None
    if data is not None:
        with containment.contained("sklearn: recording the training dataset"):
            log_dataset(run, data, context="train", name=caller_variable_name(X))
    try:
        snapshot = pickle_model(estimator)
    except Exception:
        run.log_params(estimator_params(estimator), normalize=True)  # the params at least
        raise
    # The worker reads params and computes metrics from a private copy of the estimator that
    # shares the user's classes. A plain-pickle snapshot is such a copy once loaded (pickle finds
    # classes by name, as deepcopy does), so it is loaded on the worker, off the training thread.
    # A cloudpickle snapshot is not: loading it re-creates a __main__ class in place (class
    # attributes set since reset, fit's wrapper lost), so for those a deep copy is made here.
    loaded: dict = {"model": None, "copyable": True}  # the copy, shared with the child runs' work
    if snapshot.serialization_format != "pickle":
        try:
            loaded["model"] = copy.deepcopy(estimator)
        except Exception:  # noqa: BLE001 - not copyable: params from the live estimator, no training metrics
            loaded["copyable"] = False
            run.log_params(estimator_params(estimator), normalize=True)
    # heavy: it holds the model (bytes and copy) and the data copy, so the logger bounds the
    # backlog; a wait for room is not training (the worker's job that makes room must not wait for it)
    with activity.paused():
        run.defer(lambda: _log_fit_on_worker(run, snapshot, data, settings, loaded),
                  label=f"sklearn: params, training metrics and model of run {run.run_id}",
                  holds_bytes=2 * len(snapshot.data) + _data_bytes(data))
    if _is_search(estimator):
        _log_candidate_runs(run, estimator, settings.max_tuning_runs, loaded)


def _data_bytes(data: Optional[DataSnapshot]) -> int:
    """About how many bytes the copies of a DataSnapshot hold (numpy, pandas; else 0)."""
    total = 0
    for part in (data.X, data.y, data.sample_weight) if data is not None else ():
        size = getattr(part, "nbytes", None)
        if size is None and hasattr(part, "memory_usage"):
            try:
                size = int(part.memory_usage(deep=False).sum())
            except Exception:  # noqa: BLE001 - an estimate only
                size = 0
        total += int(size or 0)
    return total


def _log_fit_on_worker(run: runs.ActiveRun, snapshot: PickledModel, data: Optional[DataSnapshot], settings,
                       loaded: dict) -> None:
    activity.wait()  # between fits, not during the next one
    if loaded["model"] is None and loaded["copyable"]:
        loaded["model"] = snapshot.load()  # plain pickle: classes by reference, nothing re-created
    model = loaded["model"]
    if model is None:  # the estimator could not be copied: its params were logged at the call
        if settings.log_models:
            models.log_model(run, snapshot, SKLEARN_FLAVOR, max_size_mb=settings.max_model_size_mb)
        return
    run.log_params(estimator_params(model), normalize=True)
    if _is_search(model):
        with containment.contained("sklearn: logging the search results"):
            _log_search(run, model)
    predicted: dict = {}
    if data is not None:
        predicted = log_training_metrics(run, model, data, log_plots=settings.log_plots, activity=activity,
                                         integration="sklearn")
    if settings.log_models:
        activity.wait()
        signature = example = None
        if data is not None and settings.log_model_signatures:
            signature = signature_of(model, data.X, predicted.get("y"))
        if data is not None and settings.log_input_examples:
            example = input_example_of(data.X)
        models.log_model(run, snapshot, SKLEARN_FLAVOR, signature=signature, input_example=example,
                         max_size_mb=settings.max_model_size_mb)


# -- hyper-parameter searches ----------------------------------------------------------------------
def _is_search(estimator: Any) -> bool:
    search = sys.modules.get("sklearn.model_selection._search")
    return search is not None and isinstance(estimator, search.BaseSearchCV) and hasattr(estimator, "cv_results_")


def _rank_key(search: Any, results: dict) -> Optional[str]:
    refit = getattr(search, "refit", True)
    if isinstance(refit, str) and f"rank_test_{refit}" in results:
        return f"rank_test_{refit}"
    if "rank_test_score" in results:
        return "rank_test_score"
    return next((k for k in results if k.startswith("rank_test_")), None)


def _log_candidate_runs(parent: runs.ActiveRun, search: Any, max_runs: Optional[int], loaded: dict) -> None:
    """Child runs for the best `max_runs` candidates: started and ended here, on the training
    thread (cheap records); their params and scores are read from the snapshot on the worker."""
    import numpy as np

    results = search.cv_results_
    count = len(results.get("params") or [])
    rank_key = _rank_key(search, results)
    order = list(range(count))
    if rank_key is not None:
        order = [int(i) for i in np.argsort(np.asarray(results[rank_key]), kind="stable")]
    if max_runs is not None:
        order = order[:max_runs]
    for index in order:
        with runs.child_run(f"{parent.run_name}-candidate-{index}", parent=parent,
                            tags={runs.TAG_INTEGRATION: "sklearn", runs.TAG_CANDIDATE: index}) as child:
            child.defer(lambda child=child, index=index: _fill_candidate_run(child, loaded, index),
                        label=f"sklearn: candidate {index} of run {parent.run_id}")


def _fill_candidate_run(child: runs.ActiveRun, loaded: dict, index: int) -> None:
    if loaded["model"] is None:
        return  # the search could not be copied: no candidate results
    results = loaded["model"].cv_results_
    child.log_params(results["params"][index], normalize=True)
    child.log_metrics({k: results[k][index] for k in results if k.startswith(("mean_", "std_", "rank_"))},
                      normalize=True)


def _log_search(run: runs.ActiveRun, search: Any) -> None:
    """On the worker, from the snapshot: best_<param> params, best_cv_score, cv_results.csv."""
    import pandas as pd

    best_params = getattr(search, "best_params_", None)
    if best_params:
        run.log_params({f"best_{k}": v for k, v in best_params.items()}, normalize=True)
    best_score = getattr(search, "best_score_", None)
    if best_score is not None:
        run.log_metric("best_cv_score", best_score, normalize=True)
    path = os.path.join(run.staging_dir(), "cv_results.csv")
    pd.DataFrame(search.cv_results_).to_csv(path, index=False)
    run.log_owned_artifact(path)


# -- cross-validation functions ----------------------------------------------------------------------
class CrossValidation(TrainingWrapper):
    """`cross_validate`, `cross_val_score`, `cross_val_predict`: one run per call."""

    integration = "sklearn"
    activity = activity

    def should_log(self, call: Call) -> bool:
        try:
            call.arguments
        except TypeError:  # the caller's own mistake: the original raises it, unchanged
            return False
        return True

    def run_name(self, call: Call) -> str:
        return f"{call.wrapped.__name__}-{type(call.arguments.get('estimator')).__name__}"

    def after(self, call: Call) -> None:
        _log_cross_validation(call.run, call.wrapped.__name__, call.arguments, call.result)


def _log_cross_validation(run: runs.ActiveRun, function_name: str, arguments: dict, result: Any) -> None:
    import numpy as np

    estimator = arguments.get("estimator")
    tags = estimator_tags(estimator) if estimator is not None else {}
    tags["autolog.sklearn_function"] = function_name
    run.set_tags(tags, normalize=True)
    params = estimator_params(estimator) if estimator is not None else {}
    for name in ("cv", "scoring", "method"):
        if name in arguments and arguments[name] is not None:
            params[f"{function_name}.{name}"] = arguments[name]
    run.log_params(params, normalize=True)
    if function_name == "cross_val_score":
        scores = {"test_score": result}
    elif function_name == "cross_validate":
        scores = result
    else:
        return  # cross_val_predict returns predictions, not scores
    for key, values in scores.items():
        try:
            array = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            continue  # returned estimators, indices
        if array.ndim != 1:
            continue
        for fold, value in enumerate(array):
            run.log_metric(key, value, step=fold, normalize=True)
        run.log_metric(f"mean_{key}", float(array.mean()), normalize=True)
        run.log_metric(f"std_{key}", float(array.std()), normalize=True)


# -- post-training metrics ---------------------------------------------------------------------------
def _evaluate(wrapped, instance, args, kwargs) -> tuple:
    """Call a fitted model's predict/score as an evaluation: (the run that trained the model,
    or None when this call is not one to record, and the call's result)."""
    run = post_training.run_of(instance) if instance is not None else None
    if run is None or _in_evaluation.get() or runs.training_call_in_progress() is not None:
        return None, wrapped(*args, **kwargs)
    token = _in_evaluation.set(True)
    try:
        with runs.InsideTrainingCall():
            return run, wrapped(*args, **kwargs)
    finally:
        _in_evaluation.reset(token)


def _predict(wrapped, instance, args, kwargs):
    run, result = _evaluate(wrapped, instance, args, kwargs)
    if run is not None:
        with containment.contained("sklearn: recording a prediction for post-training metrics"):
            dataset = _first_argument(wrapped, args, kwargs)
            post_training.register_prediction(result, run, post_training.dataset_name(run, dataset))
    return result


def _score(wrapped, instance, args, kwargs):
    run, result = _evaluate(wrapped, instance, args, kwargs)
    if run is not None:
        with containment.contained("sklearn: logging a post-training score"):
            if is_scalar_number(result):
                dataset = _first_argument(wrapped, args, kwargs)
                name = post_training.dataset_name(run, dataset)
                run.log_metric(post_training.metric_key(run, f"{type(instance).__name__}_score", name), result,
                               normalize=True)
    return result


def _metric(wrapped, instance, args, kwargs):
    if _in_evaluation.get():
        return wrapped(*args, **kwargs)
    source = post_training.prediction_source(list(args) + list(kwargs.values()))
    if source is None:
        with runs.InsideTrainingCall():  # e.g. the LabelEncoder that f1_score fits is no training call
            return wrapped(*args, **kwargs)
    token = _in_evaluation.set(True)
    try:
        with runs.InsideTrainingCall():
            result = wrapped(*args, **kwargs)
    finally:
        _in_evaluation.reset(token)
    with containment.contained("sklearn: logging a post-training metric"):
        if is_scalar_number(result):
            run, dataset = source
            run.log_metric(post_training.metric_key(run, wrapped.__name__, dataset), result, normalize=True)
    return result


# -- modules patched when they are imported -------------------------------------------------------------
def _patch_metrics(patcher: Patcher, module: Any) -> None:
    originals = {}
    for name in getattr(module, "__all__", ()):
        fn = getattr(module, name, None)
        if name in _NOT_METRICS or name.startswith("plot_") or not inspect.isfunction(fn):
            continue
        patcher.wrap(module, name, _metric)
        originals[id(fn)] = fn
    _wrap_script_names(patcher, originals)


def _wrap_script_names(patcher: Patcher, originals: dict) -> None:
    """`from sklearn.metrics import f1_score` in the script before `autolog()` bound the script's
    own name to the original function: wrap that name too (disable puts it back), so that its
    calls log post-training metrics whatever the order. Other modules' names are not touched
    (docs/integrations/sklearn.md)."""
    script = sys.modules.get("__main__")
    for name, value in list(vars(script).items()) if script is not None else ():
        if originals.get(id(value)) is value and not name.startswith("__"):
            patcher.wrap(script, name, _metric)


def _patch_model_selection(patcher: Patcher, module: Any) -> None:
    import sklearn.model_selection._validation as validation

    cross_validation = CrossValidation()
    for owner in (module, validation):
        for name in CV_FUNCTIONS:
            if hasattr(owner, name):
                patcher.wrap(owner, name, cross_validation)


def _patch_parallel(patcher: Patcher, module: Any) -> None:
    func_wrapper = getattr(module, "_FuncWrapper", None)
    if func_wrapper is None or not hasattr(func_wrapper, "with_config_and_warning_filters"):
        return
    patcher.wrap(func_wrapper, "with_config_and_warning_filters", _dispatched)
    patcher.wrap(func_wrapper, "__call__", _run_dispatched)


def _dispatched(wrapped, instance, args, kwargs):
    """In the thread that dispatches joblib work: remember (picklably) that it is a training call's."""
    result = wrapped(*args, **kwargs)
    if runs.training_call_in_progress() is not None and instance is not None:
        instance.autolog_nested = True
    return result


def _run_dispatched(wrapped, instance, args, kwargs):
    """In a joblib worker thread: fits of work dispatched by a training call log nothing."""
    if getattr(instance, "autolog_nested", False) and runs.training_call_in_progress() is None:
        with runs.InsideTrainingCall():
            return wrapped(*args, **kwargs)
    return wrapped(*args, **kwargs)


# -- the model flavor ----------------------------------------------------------------------------------
class SklearnFlavor(models.ModelFlavor):
    """`model.pkl` (pickle, or cloudpickle when pickle refuses), with MLflow's sklearn and
    python_function flavor entries, so `mlflow.sklearn.load_model` and
    `mlflow.pyfunc.load_model` read it as well as `autolog.load_model`."""

    name = "sklearn"
    library = "scikit-learn"
    loader = "autolog.integrations.sklearn:load_model"
    requirements = ("cloudpickle",)
    file_name = "model.pkl"

    def snapshot(self, model: Any) -> PickledModel:
        return model if isinstance(model, PickledModel) else pickle_model(model)

    def snapshot_size(self, snapshot: PickledModel) -> Optional[int]:
        return len(snapshot.data)

    def save(self, snapshot: PickledModel, path: str) -> dict:
        import sklearn

        with open(os.path.join(path, self.file_name), "wb") as fh:
            fh.write(snapshot.data)
        return {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": self.file_name,
                                "predict_fn": "predict"},
            "sklearn": {"pickled_model": self.file_name, "sklearn_version": sklearn.__version__,
                        "serialization_format": snapshot.serialization_format, "code": None},
        }


SKLEARN_FLAVOR = SklearnFlavor()


def load_model(folder: str) -> Any:
    """The estimator in a model folder written by `SklearnFlavor`."""
    meta = models.read_mlmodel(folder)
    flavor = meta.get("flavors", {}).get("sklearn", {})
    with open(os.path.join(folder, flavor.get("pickled_model", SklearnFlavor.file_name)), "rb") as fh:
        return pickle.load(fh)
