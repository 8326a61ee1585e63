"""What every estimator with the scikit-learn API logs, shared by the integrations that have one.

scikit-learn itself, and the scikit-learn wrappers of xgboost and lightgbm, log the same
things after `fit`: the flattened `get_params(deep=True)`, training metrics named as MLflow
names them (`training_accuracy_score`, `training_r2_score`, ...), the model's input schema
and an input example, a training confusion matrix, and post-training metrics
(`model.score(X_test, y_test)` and `sklearn.metrics` calls on the model's predictions).
That logic lives here once; each integration only decides when to call it.

The split between the training thread and the logger's worker:
- on the training thread, `DataSnapshot.take` copies at most `max_metric_rows` rows of
  X / y / sample_weight (a copy, so the user may change their arrays right after `fit`),
  and `pickle_model` takes a byte snapshot of the fitted estimator;
- on the worker, `training_metrics`, `signature_of`, `input_example_of` and
  `confusion_matrix_png` work from those copies only.

This module imports no ML library at import time; scikit-learn, numpy and pandas are
imported inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import sys
import threading
import time
import weakref
from typing import Any, Optional

log = logging.getLogger("autolog")

# silhouette_score is O(n^2): it is computed on at most this many rows
SILHOUETTE_MAX_ROWS = 2_000
# post-training metrics: distinct datasets remembered per run and variable name
_MAX_DATASETS_PER_NAME = 1_000
INPUT_EXAMPLE_ROWS = 5


# -- params and tags -----------------------------------------------------------------------
def estimator_params(estimator: Any) -> dict:
    """`get_params(deep=True)` (already flat: `step__param`); {} when it fails."""
    try:
        return dict(estimator.get_params(deep=True))
    except Exception as exc:  # noqa: BLE001 - a third-party get_params may be broken
        log.debug("autolog: get_params of %s failed: %r", type(estimator).__name__, exc)
        return {}


def estimator_tags(estimator: Any) -> dict:
    cls = type(estimator)
    return {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__qualname__}"}


# -- the model snapshot -------------------------------------------------------------------
class PickledModel:
    """A fitted estimator as bytes, taken on the training thread."""

    __slots__ = ("data", "serialization_format")

    def __init__(self, data: bytes, serialization_format: str):
        self.data = data
        self.serialization_format = serialization_format

    def load(self) -> Any:
        return pickle.loads(self.data)


def pickle_model(estimator: Any) -> PickledModel:
    """pickle, or cloudpickle for what pickle refuses (lambdas in a FunctionTransformer)."""
    try:
        return PickledModel(pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL), "pickle")
    except Exception as first:  # noqa: BLE001
        try:
            import cloudpickle
        except ImportError:
            raise first from None
        return PickledModel(cloudpickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL), "cloudpickle")


# -- the data snapshot ---------------------------------------------------------------------
class DataSnapshot:
    """At most `max_rows` rows of X, y and sample_weight, copied; evenly spaced when capped
    (so data sorted by label still gives every label). `rows` is the row index used, or
    None when every row was taken."""

    __slots__ = ("X", "y", "sample_weight", "n_rows", "rows")

    def __init__(self, X, y, sample_weight, n_rows: int, rows):
        self.X, self.y, self.sample_weight, self.n_rows, self.rows = X, y, sample_weight, n_rows, rows

    @classmethod
    def take(cls, X, y=None, sample_weight=None, max_rows: int = 100_000) -> Optional["DataSnapshot"]:
        n = _n_rows(X)
        if n is None or max_rows <= 0:
            return None
        rows = None
        if n > max_rows:
            import numpy as np

            rows = np.linspace(0, n - 1, max_rows).round().astype(np.intp)
        X_copy = _copy_rows(X, rows)
        if X_copy is None:
            return None
        y_copy = _copy_rows(y, rows) if y is not None and _n_rows(y) == n else None
        sw_copy = _copy_rows(sample_weight, rows) if sample_weight is not None and _n_rows(sample_weight) == n else None
        return cls(X_copy, y_copy, sw_copy, n, rows)


def _n_rows(data: Any) -> Optional[int]:
    shape = getattr(data, "shape", None)
    if shape is not None:
        try:
            return int(shape[0]) if len(shape) else None
        except (TypeError, IndexError):
            return None
    if isinstance(data, (list, tuple)):
        return len(data)
    return None


def _copy_rows(data: Any, rows) -> Any:
    """A copy of `data` (only `rows` of it when given); None for what cannot be copied."""
    if data is None:
        return None
    try:
        if hasattr(data, "iloc"):  # pandas DataFrame / Series
            return data.iloc[rows].copy() if rows is not None else data.copy()
        if hasattr(data, "tocsr") and hasattr(data, "nnz"):  # scipy sparse
            return data.tocsr()[rows] if rows is not None else data.copy()
        if hasattr(data, "__array__") and hasattr(data, "shape"):
            import numpy as np

            array = np.asarray(data)
            return array[rows] if rows is not None else array.copy()
        if isinstance(data, (list, tuple)):
            import numpy as np

            picked = [data[i] for i in rows] if rows is not None else list(data)
            return np.asarray(picked)
    except Exception as exc:  # noqa: BLE001 - exotic containers: no metrics, not a failure
        log.debug("autolog: could not copy %s for training metrics: %r", type(data).__name__, exc)
    return None


# -- training metrics (on the worker) --------------------------------------------------------
def training_metrics(model: Any, data: DataSnapshot, prefix: str = "training_") -> dict:
    """MLflow's training metrics for a fitted classifier, regressor or clusterer.

    Each metric that cannot be computed for this model and data (roc_auc on one class,
    log_loss without predict_proba, ...) is left out, as MLflow does."""
    import sklearn
    from sklearn import base

    X, y, sw = data.X, data.y, data.sample_weight
    out: dict = {}
    # the data was validated by fit already: skipping sklearn's checks makes the metrics
    # about 3x cheaper (scikit-learn's config is per thread: this is the worker's only)
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        if y is not None and hasattr(model, "score"):
            _put(out, prefix + "score", lambda: _score(model, X, y, sw))
        if y is not None and base.is_classifier(model):
            out.update(_classifier_metrics(model, X, y, sw, prefix))
        elif y is not None and base.is_regressor(model):
            out.update(_regressor_metrics(model, X, y, sw, prefix))
        elif base.is_clusterer(model):
            _put(out, prefix + "silhouette_score", lambda: _silhouette(model, data))
    return {k: v for k, v in out.items() if v is not None}


def _put(out: dict, key: str, compute) -> None:
    try:
        value = compute()
        if value is None:
            return
        value = float(value)
    except Exception as exc:  # noqa: BLE001 - a metric that does not apply is skipped, as in MLflow
        log.debug("autolog: metric %s not computed: %r", key, exc)
        return
    out[key] = value


def _score(model, X, y, sw):
    if sw is not None:
        try:
            return model.score(X, y, sample_weight=sw)
        except TypeError:
            pass
    return model.score(X, y)


def _classifier_metrics(model, X, y, sw, prefix: str) -> dict:
    from sklearn import metrics

    out: dict = {}
    y_pred = model.predict(X)
    try:  # one call for the three: the same values as precision_score, recall_score, f1_score
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            y, y_pred, average="weighted", sample_weight=sw, zero_division=0)
        out.update({prefix + "precision_score": float(precision), prefix + "recall_score": float(recall),
                    prefix + "f1_score": float(f1)})
    except Exception as exc:  # noqa: BLE001 - e.g. multi-output targets
        log.debug("autolog: precision/recall/f1 not computed: %r", exc)
    _put(out, prefix + "accuracy_score", lambda: metrics.accuracy_score(y, y_pred, sample_weight=sw))
    if hasattr(model, "predict_proba"):
        try:
            proba = model.predict_proba(X)
        except Exception as exc:  # noqa: BLE001 - e.g. SVC(probability=False)
            log.debug("autolog: predict_proba failed: %r", exc)
            return out
        labels = getattr(model, "classes_", None)
        _put(out, prefix + "log_loss", lambda: metrics.log_loss(y, proba, sample_weight=sw, labels=labels))

        def roc_auc():
            score = proba[:, 1] if proba.ndim == 2 and proba.shape[1] == 2 else proba
            return metrics.roc_auc_score(y, score, average="weighted", sample_weight=sw, multi_class="ovo",
                                         labels=labels if score.ndim == 2 else None)

        _put(out, prefix + "roc_auc", roc_auc)
    return out


def _regressor_metrics(model, X, y, sw, prefix: str) -> dict:
    from sklearn import metrics

    out: dict = {}
    y_pred = model.predict(X)
    _put(out, prefix + "mean_squared_error",
         lambda: metrics.mean_squared_error(y, y_pred, sample_weight=sw, multioutput="uniform_average"))
    if prefix + "mean_squared_error" in out:
        out[prefix + "root_mean_squared_error"] = math.sqrt(out[prefix + "mean_squared_error"])
    _put(out, prefix + "mean_absolute_error",
         lambda: metrics.mean_absolute_error(y, y_pred, sample_weight=sw, multioutput="uniform_average"))
    _put(out, prefix + "r2_score", lambda: metrics.r2_score(y, y_pred, sample_weight=sw, multioutput="uniform_average"))
    return out


def _silhouette(model, data: DataSnapshot):
    import numpy as np
    from sklearn import metrics

    X = data.X
    labels = None
    fitted = getattr(model, "labels_", None)
    if fitted is not None and len(fitted) == data.n_rows:
        labels = np.asarray(fitted) if data.rows is None else np.asarray(fitted)[data.rows]
    elif hasattr(model, "predict"):
        labels = model.predict(X)
    if labels is None or len(set(np.unique(labels).tolist())) < 2:
        return None
    if len(labels) > SILHOUETTE_MAX_ROWS:
        return metrics.silhouette_score(X, labels, sample_size=SILHOUETTE_MAX_ROWS, random_state=0)
    return metrics.silhouette_score(X, labels)


# -- schema and input example (on the worker) ---------------------------------------------------
_PANDAS_TO_MLFLOW = {"float64": "double", "float32": "float", "int64": "long", "int32": "integer",
                     "int16": "integer", "int8": "integer", "uint8": "integer", "uint16": "integer",
                     "bool": "boolean", "object": "string", "string": "string", "str": "string"}


def signature_of(model: Any, X: Any) -> Optional[dict]:
    """MLflow's `signature` entry of MLmodel: column names and types (DataFrame) or a tensor spec
    with the shape (arrays); outputs from predicting a few rows."""
    inputs = _schema_json(X)
    if inputs is None:
        return None
    signature = {"inputs": inputs, "outputs": None, "params": None}
    if hasattr(model, "predict"):
        try:
            signature["outputs"] = _schema_json(model.predict(_head(X, INPUT_EXAMPLE_ROWS)), outputs=True)
        except Exception as exc:  # noqa: BLE001 - no outputs in the signature, inputs still useful
            log.debug("autolog: predicting for the signature failed: %r", exc)
    return signature


def _schema_json(data: Any, outputs: bool = False) -> Optional[str]:
    import numpy as np

    if hasattr(data, "dtypes") and hasattr(data, "columns"):  # DataFrame
        cols = []
        for name, dtype in data.dtypes.items():
            kind = _PANDAS_TO_MLFLOW.get(str(dtype))
            if kind is None and str(dtype).startswith("datetime64"):
                kind = "datetime"
            if kind is None:
                return None  # categorical and friends: no schema rather than a wrong one
            cols.append({"type": kind, "name": str(name), "required": True})
        return json.dumps(cols)
    if hasattr(data, "dtype") and hasattr(data, "name") and getattr(data, "ndim", 0) == 1:  # Series
        kind = _PANDAS_TO_MLFLOW.get(str(data.dtype))
        return json.dumps([{"type": kind, "required": True}]) if kind else None
    if hasattr(data, "tocsr"):
        return None  # sparse input: MLflow has no schema type for it
    try:
        array = np.asarray(data)
    except Exception:  # noqa: BLE001
        return None
    if array.dtype.kind not in "biuf":
        if outputs and array.ndim == 1 and array.dtype.kind in "OUS":
            return json.dumps([{"type": "string", "required": True}])
        return None
    shape = [-1, *array.shape[1:]]
    return json.dumps([{"type": "tensor", "tensor-spec": {"dtype": str(array.dtype), "shape": shape}}])


def _head(data: Any, n: int) -> Any:
    if hasattr(data, "iloc"):
        return data.iloc[:n]
    return data[:n]


def input_example_of(X: Any) -> Optional[tuple[str, dict]]:
    """(file name, content) of MLflow's input example: the first rows of the training data."""
    head = _head(X, INPUT_EXAMPLE_ROWS)
    if hasattr(head, "to_json") and hasattr(head, "columns"):
        content = json.loads(head.to_json(orient="split", index=False, date_format="iso"))
        content.pop("index", None)
        content["_info"] = {"type": "dataframe", "pandas_orient": "split"}
        return "input_example.json", content
    if hasattr(head, "toarray"):
        head = head.toarray()
    import numpy as np

    array = np.asarray(head)
    if array.dtype.kind not in "biuf":
        return None
    content = {"inputs": array.tolist(), "_info": {"type": "ndarray", "format": "tf-serving"}}
    return "input_example.json", content


def data_shape(X: Any) -> Optional[str]:
    shape = getattr(X, "shape", None)
    return "x".join(str(int(s)) for s in shape) if shape is not None else None


# -- plots (on the worker) ----------------------------------------------------------------------
def confusion_matrix_png(model: Any, data: DataSnapshot, path: str) -> bool:
    """The training confusion matrix as a PNG at `path`; False when there is nothing to draw.

    Drawn on a bare matplotlib Figure with the Agg canvas: no pyplot, so the user's
    backend and figures are untouched, and it is safe off the main thread."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    from sklearn import metrics

    if data.y is None:
        return False
    y_pred = model.predict(data.X)
    labels = getattr(model, "classes_", None)
    matrix = metrics.confusion_matrix(data.y, y_pred, labels=labels, sample_weight=data.sample_weight)
    if labels is None:
        import numpy as np

        labels = np.unique(np.concatenate([np.asarray(data.y).ravel(), np.asarray(y_pred).ravel()]))
    n = len(labels)
    size = min(3 + 0.5 * n, 12)
    fig = Figure(figsize=(size, size), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, interpolation="nearest", cmap="viridis")
    fig.colorbar(image, ax=ax)
    if n <= 30:
        threshold = (matrix.max() + matrix.min()) / 2.0
        for i in range(n):
            for j in range(n):
                value = matrix[i, j]
                text = f"{value:.0f}" if float(value).is_integer() else f"{value:.2g}"
                ax.text(j, i, text, ha="center", va="center", color="black" if value > threshold else "white")
    ticks = range(n)
    ax.set_xticks(ticks, [str(label) for label in labels], rotation=45 if n > 5 else 0)
    ax.set_yticks(ticks, [str(label) for label in labels])
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title("Training confusion matrix")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return True


# -- letting the worker work between fits -------------------------------------------------------
class TrainingActivity:
    """When estimators are being fitted, so that the worker does its heavy post-fit work
    (predicting for metrics, drawing, pickling to disk) between fits, not during them.

    In a loop of short fits (a parameter sweep) the worker's work for fit k would otherwise
    compete with fit k+1 for the GIL and the cores. `wait()` (on the worker) returns once
    no fit has run for `quiet_s`, or after `max_wait_s` at the latest: a long fit that
    starts right after delays the previous fit's metrics by at most that, never more, and
    nothing is dropped.
    """

    def __init__(self, quiet_s: float = 0.05, max_wait_s: float = 2.0):
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self._changed = threading.Condition(threading.Lock())
        self._busy = 0
        self._last_end = 0.0

    def __enter__(self) -> "TrainingActivity":
        with self._changed:
            self._busy += 1
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        with self._changed:
            self._busy -= 1
            self._last_end = time.monotonic()
            self._changed.notify_all()
        return False

    def wait(self) -> None:
        deadline = time.monotonic() + self.max_wait_s
        with self._changed:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return
                if self._busy:
                    self._changed.wait(deadline - now)
                    continue
                quiet_for = now - self._last_end
                if quiet_for >= self.quiet_s:
                    return
                self._changed.wait(min(self.quiet_s - quiet_for, deadline - now))


# -- post-training metrics -----------------------------------------------------------------------
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


def _own_module(name: str) -> bool:
    return name in ("autolog", "wrapt") or name.startswith(("autolog.", "wrapt."))


def caller_variable_name(value: Any) -> Optional[str]:
    """Name of a local (or global) variable holding `value` in the first frame outside
    autolog and wrapt, as MLflow's autologging names evaluation datasets."""
    frame = sys._getframe(1)
    try:
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if not _own_module(module):
                break
            frame = frame.f_back
        if frame is None:
            return None
        for scope in (frame.f_locals, frame.f_globals):
            for name, candidate in scope.items():
                if candidate is value and not name.startswith("_"):
                    return name
        return None
    finally:
        del frame
