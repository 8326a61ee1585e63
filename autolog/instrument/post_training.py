"""Post-training metrics: which run trained which model, and which predictions came from
which model and dataset, so that an evaluation after `fit` lands in the run that trained it.

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

from autolog.instrument.snapshots import caller_variable_name

# distinct datasets remembered per run and variable name
_MAX_DATASETS_PER_NAME = 1_000


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
        self._models: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
        self._predictions: dict[int, tuple[Any, str]] = {}  # id(prediction) -> (run, dataset name)
        self._datasets: dict[tuple[str, str], dict[int, int]] = {}  # (run id, name) -> {id of dataset: index}
        self._calls: dict[tuple[str, str], int] = {}  # (run id, metric name) -> calls so far

    def clear(self) -> None:
        with self._lock:
            self._models = weakref.WeakKeyDictionary()
            self._predictions.clear()
            self._datasets.clear()
            self._calls.clear()

    def register_model(self, model: Any, run: Any) -> None:
        try:
            with self._lock:
                self._models[model] = run
        except TypeError:  # not weak-referenceable or unhashable: no post-training metrics for it
            pass

    def run_of(self, model: Any) -> Any:
        if not self._models:
            return None
        try:
            return self._models.get(model)
        except TypeError:
            return None

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
