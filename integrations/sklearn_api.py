"""What every estimator with the scikit-learn API logs, shared by the integrations that have one.

scikit-learn itself, and the scikit-learn wrappers of xgboost and lightgbm, log the same
things after `fit`: the flattened `get_params(deep=True)`, training metrics named as MLflow
names them (`training_accuracy_score`, `training_r2_score`, ...), a training confusion
matrix, and post-training metrics (`model.score(X_test, y_test)` and `sklearn.metrics`
calls on the model's predictions). That logic lives here once; each integration only
decides when to call it. The generic snapshots (data, model bytes, signature) are the
core's: autolog/instrument/snapshots.py.

On the worker, `training_metrics` and `confusion_matrix_png` work from the snapshots only.
This module imports no ML library at import time.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from typing import Any, Optional

from autolog.instrument import containment
from autolog.instrument.snapshots import DataSnapshot, TrainingActivity, caller_variable_name

log = logging.getLogger("autolog")

# silhouette_score is O(n^2): it is computed on at most this many rows
SILHOUETTE_MAX_ROWS = 2_000
# post-training metrics: distinct datasets remembered per run and variable name
_MAX_DATASETS_PER_NAME = 1_000


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


def log_training_metrics(run: Any, model: Any, data: DataSnapshot, *, log_plots: bool,
                         activity: TrainingActivity, integration: str) -> None:
    """On the worker: the training metrics of `model` on the data snapshot and, for a
    classifier when `log_plots`, the training confusion matrix (`training_confusion_matrix.png`);
    each between training calls (`activity.wait()`), the drawing contained."""
    from sklearn.base import is_classifier

    activity.wait()
    metrics = training_metrics(model, data)
    if metrics:
        run.log_metrics(metrics, normalize=True)
    if log_plots and is_classifier(model):
        activity.wait()
        with containment.contained(f"{integration}: drawing the training confusion matrix"):
            path = os.path.join(run.staging_dir(), "training_confusion_matrix.png")
            if confusion_matrix_png(model, data, path):
                run.log_owned_artifact(path)



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


