"""LightGBM: `lightgbm.train`, `lightgbm.cv` and the scikit-learn wrappers' `fit`.

What is patched, when `lightgbm` is imported (see docs/integrations/lightgbm.md for what is logged):
- `lightgbm.train` and `lightgbm.cv` (the package's attributes: `lgb.train(...)`);
- `fit` of `LGBMModel`, `LGBMClassifier`, `LGBMRegressor` and `LGBMRanker`, and
  `lightgbm.sklearn.train`, the wrappers' reference to `train`, so that a wrapper's fit is
  one run with what `train` logs in it;
- `Booster.save_model`: a model saved from a callback while a logged training call runs
  is captured into the run's `checkpoints/`.

The shared logic is in integrations/_gbdt.py; this module says only what is LightGBM's: its
callback, its model format (model text for a Booster, a pickle for a wrapper, as
mlflow.lightgbm writes them), its importance types and how it reports early stopping.
"""

from __future__ import annotations

import os
import pickle
from copy import deepcopy
from typing import Any, Mapping, Optional

from autolog.instrument.callbacks import contained_callback
from autolog.instrument.integration import Integration
from autolog.instrument.models import ModelFlavor, read_mlmodel
from autolog.instrument.patching import Patcher, leading_arguments
from autolog.instrument.snapshots import PickledModel, pickle_model
from autolog.integrations import _gbdt

NAME = "lightgbm"
BOOSTER_FILE = "model.lgb"
WRAPPER_FILE = "model.pkl"
BOOSTER_CLASS = "lightgbm.basic.Booster"
IMPORTANCE_TYPES = ("split", "gain")
# after the user's callbacks (LightGBM gives those negative orders) and record_evaluation (20),
# before early_stopping (30), which ends the last iteration by raising
CALLBACK_ORDER = 25


class LightGBMIntegration(Integration):
    name = NAME
    module = "lightgbm"
    requires = "lightgbm>=4.0"

    def patch(self, patcher: Patcher) -> None:
        import lightgbm
        import lightgbm.basic
        import lightgbm.sklearn

        patcher.wrap(lightgbm, "train", _gbdt.BoosterTraining(LIBRARY))
        patcher.wrap(lightgbm, "cv", _gbdt.CrossValidation(LIBRARY))
        patcher.wrap(lightgbm.sklearn, "train", _gbdt.TrainInsideFit(LIBRARY))
        fit = _gbdt.WrapperFit(LIBRARY)
        for cls in _wrapper_classes(lightgbm.sklearn):
            patcher.wrap(cls, "fit", fit)
        patcher.wrap(lightgbm.basic.Booster, "save_model", _gbdt.SavedDuringTraining(NAME, _last_iteration))
        patcher.after(lightgbm.basic.Booster, "model_from_string", _after_model_from_string)

    def model_flavor(self, model: Any) -> Optional[ModelFlavor]:
        """For `autolog.log_model(model)`: a Booster or a fitted wrapper, as this integration logs them."""
        from lightgbm import Booster
        from lightgbm.sklearn import LGBMModel

        if isinstance(model, Booster):
            return LIBRARY.booster_flavor
        return LIBRARY.wrapper_flavor if isinstance(model, LGBMModel) else None


def _wrapper_classes(module: Any) -> list:
    """The classes of `lightgbm.sklearn` that define their own `fit` (LGBMModel and its subclasses)."""
    base = module.LGBMModel
    return [cls for cls in vars(module).values()
            if isinstance(cls, type) and issubclass(cls, base) and "fit" in vars(cls)]


def _after_model_from_string(booster: Any, args: tuple, kwargs: dict, result: Any) -> None:
    """`train()` ends with `booster.model_from_string(booster.model_to_string())` (unless
    `keep_training_booster`): inside a logged `train`, that text is the returned booster's model,
    kept as its snapshot (`BoosterText`), so the snapshot does not serialise the model again
    (14 ms for 1,000 small trees, on the training thread)."""
    session = _gbdt.current_session(NAME)
    if session is not None and session.kind == "train":
        text, = leading_arguments(args, kwargs, ("model_str",))
        if isinstance(text, str):
            session.captured = (booster, BoosterText(text))


def _last_iteration(booster: Any) -> Optional[int]:
    done = booster.current_iteration()
    return done - 1 if done else None


# -- the callback ---------------------------------------------------------------------------------
def iteration_metrics(evaluation_result_list) -> dict:
    """This iteration's value of every metric of every validation set: `training-l2`,
    `valid_1-binary_logloss`; in `cv`, `valid-auc-mean` and `valid-auc-stdv` (lightgbm.cv's
    own suffixes)."""
    out = {}
    for item in evaluation_result_list:
        key = f"{item[0]}-{_gbdt.metric_name(item[1])}"
        std = item[4] if len(item) > 4 else None
        if std is None:
            out[key] = item[2]
        else:
            out[key + "-mean"], out[key + "-stdv"] = item[2], std
    return out


@contained_callback(NAME)
class AutologCallback:
    """Hands each iteration's metrics to autolog (LightGBM callbacks are plain callables)."""

    def __init__(self, recorder: _gbdt.IterationRecorder):
        self.recorder = recorder
        self.order = CALLBACK_ORDER  # LightGBM reads the instance's own `order`

    def __call__(self, env) -> None:
        self.recorder.record(iteration_metrics(env.evaluation_result_list), env.iteration)


# -- the library ---------------------------------------------------------------------------------
class BoosterText:
    """A Booster as LightGBM's model text (`model_to_string`), taken on the training thread."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


class PickledWrapper:
    """A fitted wrapper pickled on the training thread (`snapshots.pickle_model`), its class, and
    for a cloudpickle snapshot a deep copy to compute from: loading a cloudpickle snapshot would
    re-create a `__main__` class in place (as the scikit-learn integration does)."""

    __slots__ = ("pickled", "model_class", "copy")

    def __init__(self, pickled: PickledModel, model_class: str, copy: Any = None):
        self.pickled = pickled
        self.model_class = model_class
        self.copy = copy

    def model(self) -> Any:
        """The wrapper to compute from: the copy, or the plain pickle loaded (classes found by
        name, nothing re-created); None for a cloudpickle snapshot that could not be copied."""
        if self.copy is not None:
            return self.copy
        return self.pickled.load() if self.pickled.serialization_format == "pickle" else None


class LightGBMLibrary(_gbdt.Library):
    name = NAME
    best_counted_from = 1
    # the arguments of train()/cv() that mlflow.lightgbm does not log as params (data and code)
    train_unlogged = frozenset({"params", "train_set", "valid_sets", "valid_names", "fobj", "feval", "init_model",
                                "learning_rates", "callbacks"})
    cv_unlogged = frozenset({"params", "train_set", "folds", "fobj", "feval", "init_model", "fpreproc", "callbacks"})

    def callback(self, recorder: _gbdt.IterationRecorder) -> Any:
        return AutologCallback(recorder)

    def best_iteration(self, booster: Any, arguments: Mapping) -> Optional[int]:
        """The booster's `best_iteration` (counted from 1) when early stopping found one (0 otherwise)."""
        best = getattr(booster, "best_iteration", 0) or 0
        return best if best > 0 else None

    def snapshot(self, model: Any) -> Any:
        from lightgbm import Booster

        if isinstance(model, (BoosterText, PickledWrapper)):
            return model
        if isinstance(model, Booster):
            return BoosterText(model.model_to_string())  # the best iteration's model, as save_model writes
        cls = type(model)
        pickled = pickle_model(model)
        copy = None
        if pickled.serialization_format != "pickle":
            try:
                copy = deepcopy(model)
            except Exception:  # noqa: BLE001 - then no importances or training metrics, the model still logged
                copy = None
        return PickledWrapper(pickled, f"{cls.__module__}.{cls.__name__}", copy)

    def load(self, snapshot: Any) -> Any:
        from lightgbm import Booster

        if isinstance(snapshot, BoosterText):
            return Booster(model_str=snapshot.text)
        return snapshot.model()

    def booster_of(self, model: Any) -> Any:
        from lightgbm import Booster

        return model if isinstance(model, Booster) else model.booster_

    def train_datasets(self, arguments: Mapping) -> list:
        """The raw data of `train_set` and of each validation set, read before training (LightGBM
        frees it once the Dataset is constructed), named as the metrics name the sets."""
        train_set = arguments.get("train_set")
        found = [(train_set, "train", None)]
        names = list(arguments.get("valid_names") or ())
        for i, valid in enumerate(arguments.get("valid_sets") or ()):
            if valid is not train_set:
                found.append((valid, "eval", names[i] if i < len(names) else f"valid_{i}"))
        return [(dataset.data, dataset.label, context, name) for dataset, context, name in found
                if getattr(dataset, "data", None) is not None]

    def eval_sets(self, arguments: Mapping) -> list:
        """`eval_set=[(X, y), ...]`, or `eval_X=(...)`, `eval_y=(...)` (LightGBM 4.6+)."""
        pairs = list(arguments.get("eval_set") or ())
        if not pairs and arguments.get("eval_X") is not None:
            X_eval, y_eval = arguments.get("eval_X"), arguments.get("eval_y")
            if not isinstance(X_eval, (list, tuple)):
                X_eval, y_eval = (X_eval,), (y_eval,)
            pairs = list(zip(X_eval, y_eval or (None,) * len(X_eval)))
        names = list(arguments.get("eval_names") or ())
        return [(pair[0], pair[1], names[i] if i < len(names) else f"valid_{i}") for i, pair in enumerate(pairs)]

    def importances(self, booster: Any) -> dict:
        names = booster.feature_name()
        return {importance_type: dict(zip(names, booster.feature_importance(importance_type=importance_type).tolist()))
                for importance_type in IMPORTANCE_TYPES}


LIBRARY = LightGBMLibrary()


# -- the model flavor -----------------------------------------------------------------------------
class LightGBMFlavor(ModelFlavor):
    """As mlflow.lightgbm writes it: a Booster as `model.lgb` (model text), a wrapper as `model.pkl`
    (pickle, or cloudpickle when pickle refuses), with MLflow's lightgbm and python_function
    flavor entries, so `mlflow.lightgbm.load_model` and `mlflow.pyfunc.load_model` read it and
    `autolog.load_model` gives back the Booster or the wrapper."""

    name = NAME
    library = "lightgbm"
    loader = "autolog.integrations.lightgbm:load_model"

    def __init__(self, requirements: tuple = ()):
        self.requirements = requirements

    def snapshot(self, model: Any) -> Any:
        return LIBRARY.snapshot(model)

    def snapshot_size(self, snapshot: Any) -> Optional[int]:
        return len(snapshot.text.encode("utf-8")) if isinstance(snapshot, BoosterText) else len(snapshot.pickled.data)

    def save(self, snapshot: Any, path: str) -> dict:
        import lightgbm

        if isinstance(snapshot, BoosterText):
            data, model_class, serialization = BOOSTER_FILE, BOOSTER_CLASS, None
            with open(os.path.join(path, data), "w", encoding="utf-8") as fh:
                fh.write(snapshot.text)
        else:
            data, model_class = WRAPPER_FILE, snapshot.model_class
            serialization = snapshot.pickled.serialization_format
            with open(os.path.join(path, data), "wb") as fh:
                fh.write(snapshot.pickled.data)
        return {
            "python_function": {"loader_module": "mlflow.lightgbm", "data": data},
            NAME: {"lgb_version": lightgbm.__version__, "data": data, "model_class": model_class,
                   "serialization_format": serialization, "skops_trusted_types": None, "code": None},
        }


LIBRARY.booster_flavor = LightGBMFlavor()
LIBRARY.wrapper_flavor = LightGBMFlavor(requirements=("scikit-learn", "cloudpickle"))


def load_model(folder: str) -> Any:
    """The Booster or wrapper in a model folder written by `LightGBMFlavor` (or by mlflow.lightgbm
    with the pickle or cloudpickle format)."""
    flavor = (read_mlmodel(folder).get("flavors") or {}).get(NAME) or {}
    path = os.path.join(folder, flavor.get("data", BOOSTER_FILE))
    if flavor.get("model_class", BOOSTER_CLASS) == BOOSTER_CLASS:
        import lightgbm

        return lightgbm.Booster(model_file=path)
    with open(path, "rb") as fh:
        if flavor.get("serialization_format") == "cloudpickle":
            import cloudpickle

            return cloudpickle.load(fh)
        return pickle.load(fh)
