"""Post-training metrics: which run trained which model, and which predictions came from
which model and dataset, so that an evaluation after `fit` lands in the run that trained it.

`TrainedModels` remembers the run that trained each model (held weakly), with a step count
for what is logged after training; `AfterTraining` is the wrapper of a call made after
training (Keras `evaluate`, Lightning `validate` / `test`) that logs into that run.

MLflow's autologgers log `model.score(X_test, y_test)` as `<Class>_score_X_test` and a metric
function on a model's predictions (`accuracy_score(y_test, model.predict(X_test))`) as
`accuracy_score_X_test`, the dataset named after the caller's variable. An integration keeps
one `PostTrainingMetrics` per family of models: it registers each model it logged with its
run, and its wrappers of predict/score/metric functions ask it for the run, the dataset's
name and the metric's key. Imports no ML library.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Optional

from autolog.instrument import containment
from autolog.instrument.snapshots import caller_variable_name
from autolog.instrument.training_call import Call, TrainingWrapper
from autolog.runs.training import InsideTrainingCall, training_call_in_progress
from autolog.transport.logger import on_worker_thread

# distinct datasets remembered per run and variable name
_MAX_DATASETS_PER_NAME = 1_000


class TrainedModels:
    """Which run trained which model, and the step of the next value logged for it after
    training. Models are held weakly; one that cannot be (or is unhashable) is not remembered."""

    def __init__(self):
        self._lock = threading.Lock()
        self._models: "weakref.WeakKeyDictionary[Any, list]" = weakref.WeakKeyDictionary()

    def remember(self, model: Any, run: Any, next_step: int = 0) -> None:
        try:
            with self._lock:
                self._models[model] = [run, next_step]
        except TypeError:
            pass

    def run_of(self, model: Any) -> Any:
        """The run that trained `model`, or None when autolog did not log its training."""
        entry = self._entry(model)
        return None if entry is None else entry[0]

    def next_step(self, model: Any) -> Optional[tuple[Any, int]]:
        """(run, step) for a value logged about `model` now, the step counted on by one for
        the next; None when autolog did not log its training."""
        if not self._models:
            return None
        with self._lock:
            entry = self._entry(model)
            if entry is None:
                return None
            run, step = entry
            entry[1] = step + 1
        return run, step

    def clear(self) -> None:
        with self._lock:
            self._models = weakref.WeakKeyDictionary()

    def _entry(self, model: Any) -> Optional[list]:
        if not self._models:
            return None
        try:
            return self._models.get(model)
        except TypeError:
            return None


class AfterTraining(TrainingWrapper):
    """The wrapt wrapper of a call made after training (an evaluation) that logs into the run
    of the training call before it, which `run_of(call)` names (None: the call runs untouched,
    as does any call inside a training call or on autolog's worker). That run is not started
    or ended here: it may have ended with the training call. The call counts as a training
    call (a training call inside it logs nothing of its own). `before`, `after` and `failed`
    run as `TrainingWrapper`'s do, contained, with `call.run` set; the original runs once and
    its result or exception reaches the caller unchanged."""

    def run_of(self, call: Call) -> Any:
        """The run this call logs into, or None; may keep what it found in `call.state`."""
        return None

    def __call__(self, wrapped, instance, args, kwargs):
        if training_call_in_progress() is not None or on_worker_thread():
            return wrapped(*args, **kwargs)
        call = Call(wrapped, instance, args, dict(kwargs), self.bind_defaults)
        try:
            call.run = self.run_of(call)
        except Exception as exc:  # noqa: BLE001 - not knowing is "no"
            containment.report(f"{self.integration}: run_of {call.describe()}", exc)
        if call.run is None:
            return wrapped(*args, **kwargs)
        with InsideTrainingCall():
            return self._logged(call, args, kwargs)


class PostTrainingMetrics:
    """Which run trained which model, and which predictions came from which model and dataset.

    After `fit`, `model.score(X_test, y_test)` logs `<Class>_score_X_test` to the run that
    trained the model, and `accuracy_score(y_test, model.predict(X_test))` logs
    `accuracy_score_X_test`, the dataset named after the caller's variable. A metric called
    again on the same dataset gets `-2`, `-3`, ... (`accuracy_score-2_X_test`), never overwrites.
    Models are held weakly; a prediction is known by `id()` only while it is alive.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._models = TrainedModels()
        self._predictions: dict[int, tuple[Any, str]] = {}  # id(prediction) -> (run, dataset name)
        self._datasets: dict[tuple[str, str], dict[int, int]] = {}  # (run id, name) -> {id of dataset: index}
        self._calls: dict[tuple[str, str], int] = {}  # (run id, metric name) -> calls so far

    def clear(self) -> None:
        self._models.clear()
        with self._lock:
            self._predictions.clear()
            self._datasets.clear()
            self._calls.clear()

    def register_model(self, model: Any, run: Any) -> None:
        self._models.remember(model, run)  # not weak-referenceable or unhashable: no post-training metrics for it

    def run_of(self, model: Any) -> Any:
        return self._models.run_of(model)

    def dataset_name(self, run: Any, dataset: Any) -> str:
        """The caller's variable name for `dataset`, with `-2`, `-3` for another object of that name."""
        name = caller_variable_name(dataset) or "unknown_dataset"
        with self._lock:
            seen = self._datasets.setdefault((run.run_id, name), {})
            index = seen.get(id(dataset))
            if index is None:
                index = len(seen)
                if index < _MAX_DATASETS_PER_NAME:  # bounded: a loop predicting row by row
                    seen[id(dataset)] = index
        return name if index == 0 else f"{name}-{index + 1}"

    def register_prediction(self, prediction: Any, run: Any, dataset_name: str) -> None:
        key = id(prediction)
        try:
            weakref.finalize(prediction, self._forget, key)
        except TypeError:  # lists and other objects without weak references are not tracked
            return
        with self._lock:
            self._predictions[key] = (run, dataset_name)

    def _forget(self, key: int) -> None:
        with self._lock:
            self._predictions.pop(key, None)

    def prediction_source(self, values) -> Optional[tuple[Any, str]]:
        if not self._predictions:
            return None
        with self._lock:
            for value in values:
                found = self._predictions.get(id(value))
                if found is not None:
                    return found
        return None

    def metric_key(self, run: Any, metric_name: str, dataset_name: str) -> str:
        with self._lock:
            index = self._calls.get((run.run_id, metric_name), 0)
            self._calls[(run.run_id, metric_name)] = index + 1
        name = metric_name if index == 0 else f"{metric_name}-{index + 1}"
        return f"{name}_{dataset_name}"
