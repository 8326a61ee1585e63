"""XGBoost: `xgboost.train`, `xgboost.cv` and the scikit-learn wrappers' `fit`.

What is patched, when `xgboost` is imported (see docs/integrations/xgboost.md for what is logged):
- `xgboost.train` and `xgboost.cv` (the package's attributes: `xgb.train(...)`);
- `fit` of `XGBModel` and of every wrapper class of `xgboost.sklearn` that defines its own
  (`XGBClassifier`, `XGBRanker`, `XGBRFClassifier`, `XGBRFRegressor`; `XGBRegressor` inherits
  `XGBModel.fit`), and `xgboost.sklearn.train`, the wrappers' reference to `train`, so that a
  wrapper's fit is one run with what `train` logs in it;
- `Booster.save_model` and `TrainingCheckPoint.after_iteration`: checkpoints written while a
  logged training call runs are captured into the run's `checkpoints/`.

The shared logic is in integrations/_gbdt.py; this module says only what is XGBoost's: its
callback, its model format (UBJSON, as mlflow.xgboost writes it), its importance types and
how it reports early stopping.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Mapping, Optional

from autolog.instrument import containment
from autolog.instrument.callbacks import BASE_CLASS, contained_callback
from autolog.instrument.integration import Integration
from autolog.instrument.models import ModelFlavor, read_mlmodel
from autolog.instrument.patching import Patcher
from autolog.integrations import _gbdt

NAME = "xgboost"
MODEL_FILE = "model.ubj"
IMPORTANCE_TYPES = ("weight", "gain", "cover", "total_gain", "total_cover")


class XGBoostIntegration(Integration):
    name = NAME
    module = "xgboost"
    requires = "xgboost>=2.0"

    def patch(self, patcher: Patcher) -> None:
        import xgboost
        import xgboost.callback
        import xgboost.core
        import xgboost.sklearn

        patcher.wrap(xgboost, "train", _gbdt.BoosterTraining(LIBRARY))
        patcher.wrap(xgboost, "cv", _gbdt.CrossValidation(LIBRARY))
        patcher.wrap(xgboost.sklearn, "train", _gbdt.TrainInsideFit(LIBRARY))
        fit = _gbdt.WrapperFit(LIBRARY)
        for cls in _wrapper_classes(xgboost.sklearn):
            patcher.wrap(cls, "fit", fit)
        patcher.wrap(xgboost.core.Booster, "save_model", _gbdt.SavedDuringTraining(NAME, _last_iteration))
        patcher.wrap(xgboost.callback.TrainingCheckPoint, "after_iteration", _pickled_checkpoint)

    def model_flavor(self, model: Any) -> Optional[ModelFlavor]:
        """For `autolog.log_model(model)`: a Booster or a fitted wrapper, as this integration logs them."""
        from xgboost import Booster
        from xgboost.sklearn import XGBModel

        if isinstance(model, Booster):
            return LIBRARY.booster_flavor
        return LIBRARY.wrapper_flavor if isinstance(model, XGBModel) else None


def _wrapper_classes(module: Any) -> list:
    """The classes of `xgboost.sklearn` that define their own `fit` (XGBModel and its subclasses)."""
    base = module.XGBModel
    return [cls for cls in vars(module).values()
            if isinstance(cls, type) and issubclass(cls, base) and "fit" in vars(cls)]


def _last_iteration(booster: Any) -> Optional[int]:
    rounds = booster.num_boosted_rounds()
    return rounds - 1 if rounds else None


# -- the callback ---------------------------------------------------------------------------------
def iteration_metrics(evals_log: Mapping) -> dict:
    """This iteration's value of every metric of every eval set: `train-rmse`, `validation_0-logloss`;
    in `cv`, `test-rmse-mean` and `test-rmse-std` (the columns of cv's result)."""
    out = {}
    for data_name, metrics in evals_log.items():
        for metric, values in metrics.items():
            key = f"{data_name}-{_gbdt.metric_name(metric)}"
            value = values[-1]
            if isinstance(value, tuple):
                out[key + "-mean"], out[key + "-std"] = value[0], value[1]
            else:
                out[key] = value
    return out


@functools.lru_cache(maxsize=None)
def _callback_class() -> type:
    from xgboost.callback import TrainingCallback

    @contained_callback(NAME, default=BASE_CLASS)
    class AutologCallback(TrainingCallback):
        """Hands each iteration's metrics to autolog; never stops training."""

        def __init__(self, recorder: _gbdt.IterationRecorder):
            super().__init__()
            self.recorder = recorder

        def after_iteration(self, model, epoch, evals_log):
            self.recorder.record(iteration_metrics(evals_log), epoch)
            return False

    return AutologCallback


def _pickled_checkpoint(wrapped, instance, args, kwargs):
    """`TrainingCheckPoint(as_pickle=True)` writes with pickle, not `save_model`: capture the
    file it has just written (its name is `<name>_<iteration>.pkl` in its directory)."""
    result = wrapped(*args, **kwargs)
    session = _gbdt.current_session(NAME)
    if session is not None and getattr(instance, "_as_pickle", False) and getattr(instance, "_epoch", None) == 1:
        with containment.contained(f"{NAME}: capturing a pickled checkpoint"):
            epoch = args[1] if len(args) > 1 else kwargs["epoch"]
            iteration = epoch + getattr(instance, "_start", 0)
            path = os.path.join(instance._path, f"{instance._name}_{iteration}.pkl")
            if os.path.isfile(path) and os.stat(path).st_mtime >= session.started - 1:
                _gbdt.capture_during(session, path, epoch)
    return result


# -- the library ---------------------------------------------------------------------------------
class XGBoostModel:
    """A booster or fitted wrapper as UBJSON bytes (`Booster.save_raw`), taken on the training
    thread, and the class to load it into."""

    __slots__ = ("data", "cls")

    def __init__(self, data: bytes, cls: type):
        self.data = data
        self.cls = cls

    @property
    def model_class(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__name__}"


class XGBoostLibrary(_gbdt.Library):
    name = NAME
    # the arguments of train()/cv() that mlflow.xgboost does not log as params (data and code)
    train_unlogged = frozenset({"params", "dtrain", "evals", "obj", "feval", "evals_result", "xgb_model",
                                "callbacks", "learning_rates"})
    cv_unlogged = frozenset({"params", "dtrain", "folds", "obj", "feval", "fpreproc", "callbacks"})
    charted = frozenset({"weight"})  # mlflow.xgboost.autolog's default importance_types: its one chart

    def callback(self, recorder: _gbdt.IterationRecorder) -> Any:
        return _callback_class()(recorder)

    def best_iteration(self, booster: Any, arguments: Mapping) -> Optional[int]:
        """With `early_stopping_rounds` or an `EarlyStopping` callback: the booster's
        `best_iteration` (the iteration's index)."""
        from xgboost.callback import EarlyStopping

        asked = arguments.get("early_stopping_rounds") or any(
            isinstance(cb, EarlyStopping) for cb in arguments.get("callbacks") or ())
        return getattr(booster, "best_iteration", None) if asked else None

    def snapshot(self, model: Any) -> XGBoostModel:
        from xgboost import Booster

        if isinstance(model, XGBoostModel):
            return model
        if isinstance(model, Booster):
            return XGBoostModel(bytes(model.save_raw("ubj")), type(model))
        booster = model.get_booster()
        # what XGBModel.save_model writes: the estimator type, checked when it is loaded back
        get_type = getattr(model, "_get_type", None)
        if get_type is None:
            return XGBoostModel(bytes(booster.save_raw("ubj")), type(model))
        booster.set_attr(scikit_learn=json.dumps({"_estimator_type": get_type()}))
        try:
            return XGBoostModel(bytes(booster.save_raw("ubj")), type(model))
        finally:
            booster.set_attr(scikit_learn=None)

    def load(self, snapshot: XGBoostModel) -> Any:
        return _load(snapshot.cls, bytearray(snapshot.data))

    def booster_of(self, model: Any) -> Any:
        from xgboost import Booster

        return model if isinstance(model, Booster) else model.get_booster()

    def eval_sets(self, arguments: Mapping) -> list:
        return [(pair[0], pair[1], f"validation_{i}") for i, pair in enumerate(arguments.get("eval_set") or ())]

    def importances(self, booster: Any) -> dict:
        out = {}
        for importance_type in IMPORTANCE_TYPES:
            try:
                out[importance_type] = booster.get_score(importance_type=importance_type)
            except Exception:  # noqa: BLE001 - gblinear has "weight" only
                continue
        return out


def _load(cls: type, source: Any) -> Any:
    """An instance of `cls` (a Booster or a wrapper class) with the model loaded from `source`
    (a path or UBJSON bytes). A wrapper subclass that needs constructor arguments is loaded
    into the first xgboost class it derives from."""
    for candidate in cls.__mro__:
        if candidate is not cls and not candidate.__module__.startswith("xgboost"):
            continue
        try:
            model = candidate()
        except TypeError:
            continue
        model.load_model(source)
        return model
    raise TypeError(f"cannot make an empty {cls.__qualname__} to load the model into")


LIBRARY = XGBoostLibrary()


# -- the model flavor -----------------------------------------------------------------------------
class XGBoostFlavor(ModelFlavor):
    """`model.ubj` with MLflow's xgboost and python_function flavor entries, as mlflow.xgboost
    writes them: `mlflow.xgboost.load_model` and `mlflow.pyfunc.load_model` read it, and
    `autolog.load_model` gives back a Booster or the wrapper class that was trained."""

    name = NAME
    library = "xgboost"
    loader = "autolog.integrations.xgboost:load_model"

    def __init__(self, requirements: tuple = ()):
        self.requirements = requirements

    def snapshot(self, model: Any) -> XGBoostModel:
        return LIBRARY.snapshot(model)

    def snapshot_size(self, snapshot: XGBoostModel) -> Optional[int]:
        return len(snapshot.data)

    def save(self, snapshot: XGBoostModel, path: str) -> dict:
        import xgboost

        with open(os.path.join(path, MODEL_FILE), "wb") as fh:
            fh.write(snapshot.data)
        return {
            "python_function": {"loader_module": "mlflow.xgboost", "data": MODEL_FILE},
            NAME: {"xgb_version": xgboost.__version__, "data": MODEL_FILE, "model_class": snapshot.model_class,
                   "model_format": "ubj", "code": None},
        }


LIBRARY.booster_flavor = XGBoostFlavor()
LIBRARY.wrapper_flavor = XGBoostFlavor(requirements=("scikit-learn",))


def load_model(folder: str) -> Any:
    """The Booster or wrapper in a model folder written by `XGBoostFlavor` (or by mlflow.xgboost)."""
    import importlib

    flavor = (read_mlmodel(folder).get("flavors") or {}).get(NAME) or {}
    module_name, _, class_name = flavor.get("model_class", "xgboost.core.Booster").rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return _load(cls, os.path.join(folder, flavor.get("data", MODEL_FILE)))
