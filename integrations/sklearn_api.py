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
import sys
from typing import Any, Optional

from autolog.instrument import containment
from autolog.instrument.post_training import PostTrainingMetrics
from autolog.instrument.snapshots import DataSnapshot, TrainingActivity
from autolog.integrations import plots

log = logging.getLogger("autolog")

# silhouette_score is O(n^2): it is computed on at most this many rows
SILHOUETTE_MAX_ROWS = 2_000


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
def training_metrics(model: Any, data: DataSnapshot, prefix: str = "training_", *,
                     predicted: Optional[dict] = None) -> dict:
    """MLflow's training metrics for a fitted classifier, regressor or clusterer.

    Each metric that cannot be computed for this model and data (roc_auc on one class,
    log_loss without predict_proba, ...) is left out, as MLflow does. `predicted`: a dict
    that receives `model.predict(X)` under "y" (and, for a classifier, the label index of
    each row), for the confusion matrix to reuse."""
    import sklearn
    from sklearn import base

    X, y, sw = data.X, data.y, data.sample_weight
    out: dict = {}
    predicted = {} if predicted is None else predicted
    # the data was validated by fit already: skipping sklearn's checks makes the metrics
    # about 3x cheaper (scikit-learn's config is per thread: this is the worker's only)
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        if y is not None and base.is_classifier(model):
            out.update(_classifier_metrics(model, X, y, sw, prefix, predicted))
        elif y is not None and base.is_regressor(model):
            out.update(_regressor_metrics(model, X, y, sw, prefix, predicted))
        elif base.is_clusterer(model):
            _put(out, prefix + "silhouette_score", lambda: _silhouette(model, data))
        if y is not None and hasattr(model, "score"):
            same = _score_is(model)  # the mixin's score is a metric computed above: not predicted again
            if same is not None and prefix + same in out:
                out = {prefix + "score": out[prefix + same], **out}
            else:
                out = {prefix + "score": _value(lambda: _score(model, X, y, sw), prefix + "score"), **out}
    return {k: v for k, v in out.items() if v is not None}


def _score_is(model: Any) -> Optional[str]:
    """The training metric `model.score(X, y, sample_weight)` equals, when `score` is
    scikit-learn's ClassifierMixin's (accuracy) or RegressorMixin's (r2, uniform average)."""
    from sklearn.base import ClassifierMixin, RegressorMixin

    owner = next((cls for cls in type(model).__mro__ if "score" in vars(cls)), None)
    if owner is ClassifierMixin:
        return "accuracy_score"
    if owner is RegressorMixin:
        return "r2_score"
    return None


def _value(compute, key: str) -> Optional[float]:
    found: dict = {}
    _put(found, key, compute)
    return found.get(key)


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


def _classifier_metrics(model, X, y, sw, prefix: str, predicted: dict) -> dict:
    from sklearn import metrics

    out: dict = {}
    proba = _forest_proba(model, X)
    if proba is not None:  # what ForestClassifier.predict does with it: one pass over the trees, not two
        y_pred = predicted["y"] = model.classes_.take(proba.argmax(axis=1), axis=0)
    else:
        found = _binary_logistic(model, X)  # one decision function for both
        if found is not None:
            y_pred, proba = found
            predicted["y"] = y_pred
        else:
            y_pred = predicted["y"] = model.predict(X)
    counts = predicted["codes"] = _label_codes(y, y_pred, getattr(model, "classes_", None), sw)
    try:  # the same values as precision_score, recall_score, f1_score (average="weighted")
        found = _weighted_prf(*counts) if counts is not None else None
        if found is None:
            found = metrics.precision_recall_fscore_support(y, y_pred, average="weighted", sample_weight=sw,
                                                            zero_division=0)[:3]
        precision, recall, f1 = found
        out.update({prefix + "precision_score": float(precision), prefix + "recall_score": float(recall),
                    prefix + "f1_score": float(f1)})
    except Exception as exc:  # noqa: BLE001 - e.g. multi-output targets
        log.debug("autolog: precision/recall/f1 not computed: %r", exc)
    _put(out, prefix + "accuracy_score",
         lambda: (_accuracy(*counts) if counts is not None else None)
         or metrics.accuracy_score(y, y_pred, sample_weight=sw))
    if hasattr(model, "predict_proba"):
        try:
            proba = model.predict_proba(X) if proba is None else proba
        except Exception as exc:  # noqa: BLE001 - e.g. SVC(probability=False)
            log.debug("autolog: predict_proba failed: %r", exc)
            return out
        labels = getattr(model, "classes_", None)
        predicted["proba"] = proba
        _put(out, prefix + "log_loss", lambda: _log_loss(proba, counts)
             or metrics.log_loss(y, proba, sample_weight=sw, labels=labels))

        def roc_auc():
            found = _binary_roc_auc(proba, counts, predicted)
            if found is not None:
                return found
            score = proba[:, 1] if proba.ndim == 2 and proba.shape[1] == 2 else proba
            return metrics.roc_auc_score(y, score, average="weighted", sample_weight=sw, multi_class="ovo",
                                         labels=labels if score.ndim == 2 else None)

        _put(out, prefix + "roc_auc", roc_auc)
    return out


def _forest_proba(model: Any, X: Any) -> Any:
    """`predict_proba(X)` of a single-output forest classifier whose `predict` is scikit-learn's
    ForestClassifier's (the classes of the largest probabilities); None for any other model."""
    forest = sys.modules.get("sklearn.ensemble._forest")
    if forest is None or getattr(model, "n_outputs_", None) != 1:
        return None
    owner = next((cls for cls in type(model).__mro__ if "predict" in vars(cls)), None)
    if owner is not forest.ForestClassifier:
        return None
    return model.predict_proba(X)


def _binary_logistic(model: Any, X: Any) -> Optional[tuple]:
    """(`predict(X)`, `predict_proba(X)`) of a two-class LogisticRegression from one call of its
    decision function, with scikit-learn's own arithmetic: LinearClassifierMixin's predict
    (the second class where the decision is above 0) and, one-vs-rest as every version does
    for two classes unless told multinomial, `_predict_proba_lr` (the expit of the decision,
    and one minus it); None for any other model (each method is then called)."""
    logistic = sys.modules.get("sklearn.linear_model._logistic")
    base = sys.modules.get("sklearn.linear_model._base")
    classes = getattr(model, "classes_", None)
    if logistic is None or base is None or classes is None or len(classes) != 2:
        return None
    if getattr(model, "multi_class", "auto") not in ("auto", "deprecated", "ovr", "warn"):
        return None
    owners = {name: next((cls for cls in type(model).__mro__ if name in vars(cls)), None)
              for name in ("predict", "decision_function", "predict_proba", "_predict_proba_lr")}
    if (owners["predict"] is not base.LinearClassifierMixin or owners["_predict_proba_lr"] is not base.LinearClassifierMixin
            or owners["decision_function"] is not base.LinearClassifierMixin
            or owners["predict_proba"] is not logistic.LogisticRegression):
        return None
    from scipy.special import expit
    import numpy as np

    decision = _linear_decision(model, X)
    if not isinstance(decision, np.ndarray) or decision.ndim != 1:
        return None
    y_pred = classes.take((decision > 0).astype(int), axis=0)
    positive = expit(decision)
    return y_pred, np.stack([1 - positive, positive], axis=1)


def _linear_decision(model: Any, X: Any) -> Any:
    """`model.decision_function(X)` (LinearClassifierMixin's, one coefficient row): for a float64
    numpy array as wide as the fit's, on a model fitted without feature names, its own arithmetic
    (`X @ coef_.T + intercept_`, flattened) without its input checks, which such an array passes
    unchanged and which cost more than the arithmetic (0.08 of 0.14 ms on 20k x 20); for
    anything else the method itself, checks and all."""
    import numpy as np

    coef, intercept = getattr(model, "coef_", None), getattr(model, "intercept_", None)
    if (type(X) is np.ndarray and X.ndim == 2 and X.dtype == np.float64
            and type(coef) is np.ndarray and coef.dtype == np.float64 and coef.shape == (1, X.shape[1])
            and type(intercept) is np.ndarray and intercept.dtype == np.float64 and intercept.shape == (1,)
            and getattr(model, "n_features_in_", None) == X.shape[1] and not hasattr(model, "feature_names_in_")):
        return (X @ coef.T + intercept).reshape(-1)
    return model.decision_function(X)


def _label_codes(y: Any, y_pred: Any, classes: Any, sw: Any) -> Optional[tuple]:
    """(index of each row's true label in `classes`, of its predicted label, number of classes,
    sample weights), or None unless y and the predictions are one label per row, every one
    of them among the model's `classes_` (then scikit-learn's own functions are used)."""
    import numpy as np

    try:
        if classes is None:
            return None
        classes, y, y_pred = np.asarray(classes), np.asarray(y), np.asarray(y_pred)
        if classes.ndim != 1 or y.ndim != 1 or y_pred.shape != y.shape or not len(classes) or not len(y):
            return None
        n = len(classes)
        if _are_their_indices(classes, y) and _are_their_indices(classes, y_pred):  # 0..n-1: the labels are the codes
            return y.astype(np.intp, copy=False), y_pred.astype(np.intp, copy=False), n, None if sw is None else np.asarray(sw)
        true, pred = np.searchsorted(classes, y), np.searchsorted(classes, y_pred)
        if (true >= n).any() or (pred >= n).any() or (classes[true] != y).any() or (classes[pred] != y_pred).any():
            return None  # a label the model does not know, or classes_ not sorted
    except (TypeError, ValueError):  # labels that do not compare (mixed types)
        return None
    return true, pred, n, None if sw is None else np.asarray(sw)


def _are_their_indices(classes: Any, labels: Any) -> bool:
    """Are `classes` the integers 0..n-1 and `labels` integers among them (each label its index)?"""
    import numpy as np

    return (classes.dtype.kind in "iu" and labels.dtype.kind in "iu" and bool(classes[0] == 0)
            and bool(np.all(np.diff(classes) == 1)) and bool(labels.min() >= 0) and bool(labels.max() < len(classes)))


def _accuracy(true: Any, pred: Any, n: int, sw: Any) -> Optional[float]:
    """accuracy_score's arithmetic (the mean of the matches, or their weighted mean) on the
    label indices: equal labels are equal indices. None when the weights sum to 0."""
    import numpy as np

    right = (true == pred).astype(float)
    if sw is None:
        return float(np.mean(right))
    weights = sw.astype(float)
    scale = np.sum(weights)
    return float(np.sum(np.multiply(right, weights)) / scale) if scale != 0 else None


def _weighted_prf(true: Any, pred: Any, n: int, sw: Any) -> Optional[tuple[float, float, float]]:
    """precision, recall and F1, averaged "weighted" with zero_division=0: the arithmetic of
    scikit-learn's `precision_recall_fscore_support` (its multilabel confusion matrix, its
    divisions, its average over the labels in y or the predictions) on the same counts,
    without its input checks, which cost as much as a short fit. None when every weight is 0."""
    import numpy as np

    if sw is None:  # the same integer counts from one pass: the confusion matrix's diagonal and sums
        matrix = np.bincount(true * n + pred, minlength=n * n).reshape(n, n)
        tp, predicted, actual = matrix.diagonal().copy(), matrix.sum(axis=0), matrix.sum(axis=1)
        present = (actual + predicted) > 0
    else:
        right = true == pred
        tp = np.bincount(true[right], weights=sw[right], minlength=n)
        predicted = np.bincount(pred, weights=sw, minlength=n)
        actual = np.bincount(true, weights=sw, minlength=n)
        present = (np.bincount(true, minlength=n) + np.bincount(pred, minlength=n)) > 0  # unique_labels(y, y_pred)
    tp, predicted, actual = tp[present], predicted[present], actual[present]
    pred_sum = tp + (predicted - tp)  # as scikit-learn rebuilds them from the confusion matrix
    true_sum = tp + (actual - tp)

    def divide(numerator, denominator):
        mask = denominator == 0
        denominator = np.array(denominator, dtype=float)
        denominator[mask] = 1
        result = np.asarray(numerator, dtype=float) / denominator
        result[mask] = 0.0
        return result

    precision = divide(tp, pred_sum)
    recall = divide(tp, true_sum)
    f1 = divide(2.0 * tp.astype(float), 1.0 * true_sum.astype(float) + pred_sum.astype(float))
    if not np.any(true_sum):
        return None
    return tuple(float(np.average(values, weights=true_sum)) for values in (precision, recall, f1))


def _probabilities(proba: Any, counts: Optional[tuple]) -> bool:
    """Can the label codes' arithmetic below take `proba` (one float column per class, every
    value a probability)? Else scikit-learn's functions judge it (and may refuse it)."""
    import numpy as np

    if counts is None or not isinstance(proba, np.ndarray) or proba.dtype.kind != "f":
        return False
    true, _, n, _ = counts
    return proba.shape == (len(true), n) and n >= 2 and bool(proba.min() >= 0) and bool(proba.max() <= 1)


def _log_loss(proba: Any, counts: Optional[tuple]) -> Optional[float]:
    """log_loss(y, proba, labels=classes_, sample_weight)'s arithmetic on the label indices: the
    mean (or weighted mean) of -log of each row's probability of its true class, clipped to
    [eps, 1 - eps] of the probabilities' dtype, without its input checks (two `np.unique` of
    the labels and a one-hot matrix: ten times the arithmetic). None: scikit-learn's, please."""
    import numpy as np

    if not _probabilities(proba, counts):
        return None
    true, _, _, sw = counts
    eps = np.finfo(proba.dtype).eps
    width = proba.shape[1]  # each row's probability of its true class: one gather from the flat rows
    picked = proba.ravel().take(np.arange(0, len(true) * width, width) + true)  # (a third of proba[rows, true])
    loss = -np.log(np.clip(picked, eps, 1 - eps))
    if sw is None:
        return float(np.mean(loss))
    weights = np.asarray(sw, dtype=float)
    return float(np.average(loss, weights=weights)) if np.sum(weights) != 0 else None


def _binary_roc_auc(proba: Any, counts: Optional[tuple], predicted: Optional[dict] = None) -> Optional[float]:
    """roc_auc_score(y, proba[:, 1], sample_weight) of a two-class model, on the label indices:
    the area under the ROC curve as scikit-learn's roc_curve builds it (`_binary_curve`), by
    the trapezoidal rule, without its checks and its dropping of collinear points (the area is
    the same). None: scikit-learn's. The curve is kept in `predicted["curve"]` for the plots."""
    import numpy as np

    if not _probabilities(proba, counts) or counts[2] != 2:
        return None
    curve = _binary_curve(proba[:, 1], counts)
    if curve is None:
        return None
    if predicted is not None:
        predicted["curve"] = curve
    fps, tps, _ = curve
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return float(np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr))


def _binary_curve(score: Any, counts: Optional[tuple]) -> Optional[tuple]:
    """scikit-learn's `_binary_clf_curve` on the label indices (the positive class is
    `classes_[1]`): the weighted false and true positives at or above each distinct score,
    the scores decreasing, and those scores; None unless there are two classes, both in y,
    and every score is a finite number."""
    import numpy as np

    if counts is None or counts[2] != 2:
        return None
    true, _, _, sw = counts
    score = np.asarray(score)
    if score.shape != true.shape or score.dtype.kind not in "fiu" or not np.isfinite(score).all():
        return None
    if sw is None and score.dtype == np.float64 and bool(score.min() >= 0) and bool(score.max() <= 1):
        score, positive = _sorted_with_labels(score, true == 1)
    else:
        order = np.argsort(score)[::-1]  # the order within equal scores does not change the points
        score, positive = score[order], true[order] == 1
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # the last row of each distinct score
    if sw is None:
        tps = np.cumsum(positive)[last]
        fps = 1 + last - tps
    else:
        weights = np.asarray(sw, dtype=float)[order]
        tps = np.cumsum(positive * weights)[last]
        fps = np.cumsum(~positive * weights)[last]
    if tps[-1] <= 0 or fps[-1] <= 0:
        return None  # one class only (scikit-learn refuses, or warns and gives nan)
    return fps, tps, score[last]


def _sorted_with_labels(score: Any, positive: Any) -> tuple:
    """Scores between 0 and 1 (float64) in decreasing order, and whether each row is positive:
    one sort of integers (each score's bits, which order as the numbers do for non-negative
    floats, with the label in the lowest bit) instead of an argsort and two gathers, a third of
    a short fit's metrics on 20k rows. Equal scores come in another order than argsort's, which
    changes none of the points (counts at each distinct score)."""
    import numpy as np

    keys = _sorted_keys(((score + 0.0).view(np.int64) << 1) | positive)[::-1]  # + 0.0: -0.0 is 0.0
    return (keys >> 1).view(np.float64), (keys & 1).astype(bool)


def _sorted_keys(keys: Any) -> Any:
    """`np.sort(keys)` of non-negative int64 keys, as four stable sorts by 16 bits, lowest first
    (numpy's stable sort of 16-bit integers is a radix sort: linear). The same array (equal keys
    are equal values); on 20k rows 0.39 ms where np.sort took 0.57 ms on this machine's numpy."""
    import numpy as np

    for shift in (0, 16, 32, 48):
        keys = keys.take(np.argsort((keys >> shift).astype(np.uint16), kind="stable"))
    return keys


def _roc_points(fps: Any, tps: Any) -> tuple:
    """`roc_curve(drop_intermediate=True)`'s points from the counts: collinear ones dropped,
    (0, 0) first."""
    import numpy as np

    if len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps = fps[keep], tps[keep]
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def _precision_recall_points(fps: Any, tps: Any) -> tuple:
    """`precision_recall_curve(drop_intermediate=True)`'s (precision, recall) from the counts
    (recall decreasing, ending at (1, 0)), and `average_precision_score` (which the dropped
    points do not change: their recall steps are 0)."""
    import numpy as np

    if len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(tps[:-1]), np.diff(tps[1:])), True])
        fps, tps = fps[keep], tps[keep]
    total = tps + fps
    precision = np.zeros(len(tps), dtype=float)
    np.divide(tps, total, out=precision, where=total != 0)
    recall = tps / tps[-1]
    precision, recall = np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]
    return precision, recall, float(-np.sum(np.diff(recall) * precision[:-1]))


def _regressor_metrics(model, X, y, sw, prefix: str, predicted: dict) -> dict:
    from sklearn import metrics

    out: dict = {}
    y_pred = predicted["y"] = model.predict(X)
    fast = _regression_errors(y, y_pred, sw) or {}
    _put(out, prefix + "mean_squared_error", lambda: fast["mse"] if fast else
         metrics.mean_squared_error(y, y_pred, sample_weight=sw, multioutput="uniform_average"))
    if prefix + "mean_squared_error" in out:
        out[prefix + "root_mean_squared_error"] = math.sqrt(out[prefix + "mean_squared_error"])
    _put(out, prefix + "mean_absolute_error", lambda: fast["mae"] if fast else
         metrics.mean_absolute_error(y, y_pred, sample_weight=sw, multioutput="uniform_average"))
    _put(out, prefix + "r2_score", lambda: fast["r2"] if fast else
         metrics.r2_score(y, y_pred, sample_weight=sw, multioutput="uniform_average"))
    return out


def _regression_errors(y: Any, y_pred: Any, sw: Any) -> Optional[dict]:
    """mean_squared_error, mean_absolute_error and r2_score (uniform average over outputs,
    force_finite) with scikit-learn's arithmetic on the same float64 arrays, in the same
    shapes (one column per output), without its input checks: on 5k rows 0.1 ms instead of
    2.5 ms, which is more than a short regressor's fit. None (scikit-learn's functions,
    please) for anything but float64 predictions of numeric targets, fewer than two rows,
    or weights that are not one number per row."""
    import numpy as np

    try:
        y, y_pred = np.asarray(y), np.asarray(y_pred)
        if (y_pred.dtype != np.float64 or y.dtype.kind not in "fiub" or y.shape != y_pred.shape
                or y.ndim not in (1, 2) or len(y) < 2):
            return None
        y = y.astype(np.float64, copy=False)
        if y.ndim == 1:
            y, y_pred = y.reshape(-1, 1), y_pred.reshape(-1, 1)
        w = None
        if sw is not None:
            w = np.asarray(sw)
            if w.dtype.kind not in "fiub" or w.shape != (len(y),):
                return None
            w = w.astype(np.float64, copy=False)
        with np.errstate(all="ignore"):
            mse = float(np.average(np.average((y - y_pred) ** 2, axis=0, weights=w)))
            mae = float(np.average(np.average(np.abs(y_pred - y), axis=0, weights=w)))
            weight = w[:, None] if w is not None else 1.0
            numerator = np.sum(weight * (y - y_pred) ** 2, axis=0)
            denominator = np.sum(weight * (y - np.average(y, axis=0, weights=w)) ** 2, axis=0)
            scores = np.ones(y.shape[1], dtype=numerator.dtype)
            valid = (denominator != 0) & (numerator != 0)
            scores[valid] = 1 - (numerator[valid] / denominator[valid])
            scores[(numerator != 0) & (denominator == 0)] = 0.0
            r2 = float(np.average(scores))
    except (TypeError, ValueError, ZeroDivisionError):  # e.g. weights summing to 0: scikit-learn judges
        return None
    return {"mse": mse, "mae": mae, "r2": r2}


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
CONFUSION_MATRIX = "training_confusion_matrix.png"  # MLflow's names
ROC_CURVE = "training_roc_curve.png"
PRECISION_RECALL_CURVE = "training_precision_recall_curve.png"


def confusion_matrix_png(model: Any, data: DataSnapshot, path: str, predicted: Optional[dict] = None) -> Optional[dict]:
    """The training confusion matrix as a PNG at `path` (integrations/plots.py draws it) and its
    data as JSON next to it (`.json` for `.png`); the data, or None when nothing was drawn.
    `predicted`: what `training_metrics(..., predicted=)` left (the predictions), if it ran."""
    import sklearn
    from sklearn import metrics

    if data.y is None:
        return None
    predicted = predicted or {}
    y_pred = predicted["y"] if "y" in predicted else model.predict(data.X)
    labels = getattr(model, "classes_", None)
    codes = predicted.get("codes")
    if codes is not None:  # the counts, as confusion_matrix(labels=classes_) makes them, without its checks
        import numpy as np

        true, pred, n, sw = codes
        matrix = np.bincount(true * n + pred, weights=sw, minlength=n * n).reshape(n, n)
    else:
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):  # see training_metrics
            matrix = metrics.confusion_matrix(data.y, y_pred, labels=labels, sample_weight=data.sample_weight)
    if labels is None:
        import numpy as np

        labels = np.unique(np.concatenate([np.asarray(data.y).ravel(), np.asarray(y_pred).ravel()]))
    drawn = plots.confusion_matrix_png(matrix, list(labels), path)
    found = drawn or plots.confusion_matrix_data(matrix, list(labels))
    plots.write_json(found, os.path.splitext(path)[0] + ".json")
    return found if drawn else None


def curves_png(model: Any, data: DataSnapshot, folder: str, predicted: Optional[dict] = None) -> list[str]:
    """For a two-class target, what mlflow.sklearn draws with scikit-learn's `RocCurveDisplay`
    and `PrecisionRecallDisplay.from_estimator`: `training_roc_curve.png` and
    `training_precision_recall_curve.png` in `folder`, each with its data as JSON; the paths
    written. The scores are the positive class's probability, or the decision function
    without `predict_proba` (the displays' "auto"); none, or one class in y: nothing."""
    import numpy as np
    from sklearn import metrics

    predicted = predicted or {}
    classes = getattr(model, "classes_", None)
    if data.y is None or classes is None or len(classes) != 2:
        return []
    curve = predicted.get("curve")
    score = None
    if curve is None:
        score = _positive_score(model, data, predicted)
        if score is None:
            return []
        curve = _binary_curve(score, predicted.get("codes"))
    if curve is not None:
        fps, tps, _ = curve
        fpr, tpr = _roc_points(fps, tps)
        precision, recall, average_precision = _precision_recall_points(fps, tps)
    else:  # labels the index arithmetic does not take: scikit-learn's functions judge them
        if score is None or len(set(np.asarray(data.y).ravel().tolist())) != 2:
            return []
        sw, positive = data.sample_weight, classes[1]
        fpr, tpr, _ = metrics.roc_curve(data.y, score, pos_label=positive, sample_weight=sw)
        precision, recall, _ = metrics.precision_recall_curve(data.y, score, pos_label=positive, sample_weight=sw,
                                                              drop_intermediate=True)
        average_precision = metrics.average_precision_score(data.y, score, pos_label=positive, sample_weight=sw)
    name = type(model).__name__
    auc = float(np.trapezoid(tpr, fpr) if hasattr(np, "trapezoid") else np.trapz(tpr, fpr))
    written = []
    for data_, file in ((plots.roc_curve_data(fpr, tpr, auc, name, classes[1]), ROC_CURVE),
                        (plots.precision_recall_data(recall, precision, average_precision, name, classes[1]),
                         PRECISION_RECALL_CURVE)):
        path = os.path.join(folder, file)
        if plots.curve_png(data_, path):
            written.append(path)
        plots.write_json(data_, os.path.splitext(path)[0] + ".json")
        written.append(os.path.splitext(path)[0] + ".json")
    return written


def _positive_score(model: Any, data: DataSnapshot, predicted: dict) -> Any:
    """The positive class's score of each row: `predict_proba(X)[:, 1]` (reused from the
    metrics), else `decision_function(X)`; None when the model has neither."""
    proba = predicted.get("proba")
    try:
        if proba is None and hasattr(model, "predict_proba"):
            proba = model.predict_proba(data.X)
        if proba is not None:
            return proba[:, 1]
        if hasattr(model, "decision_function"):
            return model.decision_function(data.X)
    except Exception as exc:  # noqa: BLE001 - e.g. SVC(probability=False): the display would fail too
        log.debug("autolog: no scores for the curves: %r", exc)
    return None


def log_training_metrics(run: Any, model: Any, data: DataSnapshot, *, log_plots: bool,
                         activity: TrainingActivity, integration: str) -> dict:
    """On the worker: the training metrics of `model` on the data snapshot and, for a
    classifier when `log_plots`, the plots mlflow.sklearn logs for it: the training confusion
    matrix and, for a two-class target, the ROC and precision-recall curves (each PNG with its
    data as JSON); each between training calls (`activity.wait()`), the drawing contained. The
    model predicts once for all, and the predictions are returned (`{"y": model.predict(data.X)}`,
    or {}) for the model's signature."""
    from sklearn.base import is_classifier

    activity.wait()
    predicted: dict = {}
    metrics = training_metrics(model, data, predicted=predicted)
    if metrics:
        run.log_metrics(metrics, normalize=True)
    if log_plots and is_classifier(model):
        # the plots and their data are written into one folder, delivered as one artifact (its
        # files at the top of the run's artifacts, as MLflow's log_artifacts of a folder). They
        # are drawn here, while training waits for this work; their PNGs are deflated and written
        # by the next piece of work, which runs while training goes on (zlib does not hold the GIL)
        folder, writes = None, []
        with plots.written_later(writes):
            activity.wait()
            with containment.contained(f"{integration}: drawing the training confusion matrix"):
                folder = run.staging_dir()
                _whole(folder, (CONFUSION_MATRIX, _json_name(CONFUSION_MATRIX)), writes,
                       lambda: confusion_matrix_png(model, data, os.path.join(folder, CONFUSION_MATRIX), predicted))
            activity.wait()
            with containment.contained(f"{integration}: drawing the training ROC and precision-recall curves"):
                folder = folder or run.staging_dir()
                _whole(folder, tuple(name for png in (ROC_CURVE, PRECISION_RECALL_CURVE) for name in (png, _json_name(png))),
                       writes, lambda: curves_png(model, data, folder, predicted))
        if folder is not None:
            run.defer(lambda: _write_plots(run, folder, writes, integration),
                      label=f"{integration}: writing the training plots of run {run.run_id}")
    return {"y": predicted["y"]} if "y" in predicted else {}


def _write_plots(run: Any, folder: str, writes: list, integration: str) -> None:
    """The PNGs and JSON files of the plots drawn by `log_training_metrics`, written (the PNGs
    deflated); then the folder of the plots delivered. A plot whose PNG or JSON cannot be
    written leaves neither."""
    failed: set = set()
    for write in writes:
        stem = os.path.splitext(os.path.basename(write.path))[0]
        if stem in failed:
            continue
        with containment.contained(f"{integration}: writing the plot {stem}"):
            try:
                write()
            except BaseException:
                failed.add(stem)
                raise
    for stem in failed:
        _remove(folder, (stem + ".png", stem + ".json"))
    if os.listdir(folder):
        run.log_owned_artifact(folder)


def _json_name(png: str) -> str:
    return os.path.splitext(png)[0] + ".json"


def _whole(folder: str, names: tuple, writes: list, draw) -> None:
    """`draw()`, which writes the files `names` in `folder` (its PNGs through `writes`); if it
    fails, none of them is left (a plot without its data, or half a file, is not logged)."""
    pending = len(writes)
    try:
        draw()
    except BaseException:
        del writes[pending:]
        _remove(folder, names)
        raise


def _remove(folder: str, names: tuple) -> None:
    for name in names:
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass



# -- post-training metrics -----------------------------------------------------------------------
#: which run trained which model of the scikit-learn API (scikit-learn's own, xgboost's and
#: lightgbm's wrappers), read by the score/predict/metric wrappers of integrations/sklearn.py
post_training = PostTrainingMetrics()


