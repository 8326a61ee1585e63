"""integrations/plots.py and what the scikit-learn API logs with it (issue 18).

The confusion matrix, the ROC and precision-recall curves and the feature-importance charts
are PNG files under MLflow's names, drawn with Pillow, with their data as JSON next to them;
the training metrics and the curves computed from label indices equal scikit-learn's own
functions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import autolog
from autolog.integrations import plots
from autolog.integrations import sklearn_api
from autolog.runs import logger_for


def _png(path) -> Image.Image:
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    return image


def test_confusion_matrix_png_and_its_data(tmp_path):
    matrix = np.array([[50, 3, 0], [4, 40, 6], [0, 2, 45]])
    path = tmp_path / "training_confusion_matrix.png"
    data = plots.confusion_matrix_png(matrix, np.array(["a", "b", "c"]), str(path))
    normalized = (matrix / matrix.sum(axis=1, keepdims=True)).tolist()  # confusion_matrix(normalize="true")
    assert data == {"plot": "confusion_matrix", "title": "Normalized confusion matrix", "labels": ["a", "b", "c"],
                    "matrix": matrix.tolist(), "normalize": "true", "normalized": normalized,
                    "rows": "True label", "columns": "Predicted label"}
    image = _png(path)
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert image.size == (round((3 + 1.5 + 0.9) * 100), 450)
    assert len(image.getcolors(1 << 20)) > 50  # cells, colour bar and antialiased text, not a blank image
    plots.write_json(data, str(tmp_path / "training_confusion_matrix.json"))
    assert json.loads((tmp_path / "training_confusion_matrix.json").read_text()) == data


def test_many_classes_and_weighted_counts(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.random((12, 12)) * 3  # weighted counts are not whole numbers
    matrix[3] = 0  # a class never in y: its row normalises to 0, as scikit-learn's does
    data = plots.confusion_matrix_png(matrix, list(range(12)), str(tmp_path / "cm.png"))
    assert data["matrix"][0][0] == pytest.approx(matrix[0, 0])
    assert data["normalized"][0][0] == pytest.approx(matrix[0, 0] / matrix[0].sum())
    assert data["normalized"][3] == [0.0] * 12
    _png(tmp_path / "cm.png")


def test_importance_png_one_value_or_one_per_class(tmp_path):
    single = {"f0": np.float32(0.5), "f1": 0.25, "a long feature name": np.float64(1.5)}
    assert plots.importance_png(single, "gain", str(tmp_path / "gain.png"))
    assert _png(tmp_path / "gain.png").size == (640, 480)
    per_class = {f"f{i}": [0.1 * i, 0.2, 0.05 * i] for i in range(14)}
    assert plots.importance_png(per_class, "weight", str(tmp_path / "weight.png"))
    assert _png(tmp_path / "weight.png").size == (640, round((4.8 + 1.4 + 0.3) * 100))
    assert not plots.importance_png({}, "gain", str(tmp_path / "empty.png"))
    assert not plots.importance_png({"f0": "not a number"}, "gain", str(tmp_path / "bad.png"))
    assert plots.importance_data(single, "gain")["title"] == "Feature Importance (gain)"


def test_importance_png_of_the_most_important_features(tmp_path):
    many = {f"f{i}": float(i) for i in range(100)}
    assert plots.importance_png(many, "gain", str(tmp_path / "top.png"), most=40)
    assert _png(tmp_path / "top.png").size == (640, round((4.8 + 4.0) * 100))  # 40 bars, not 100


def test_json_of_numpy_values(tmp_path):
    path = tmp_path / "data.json"
    plots.write_json({"a": np.arange(3), "b": np.float32(0.5), "c": np.int64(2)}, str(path))
    assert json.loads(path.read_text()) == {"a": [0, 1, 2], "b": 0.5, "c": 2}


def test_a_curves_coordinates_are_written_as_json_reads_back_the_same_floats():
    """A curve's coordinates (floats rounded to 6 decimals) are written in fixed point, not by
    json's float repr; json reads them back as the same floats, and anything else is json's."""
    rng = np.random.default_rng(4)
    edges = [0.0, 1.0, 1e-06, 5e-06, 0.000999, 0.1, 0.3, 0.7, 0.999999, 9.999999, 2.5, 0.123456]
    for values in (edges * 2, np.round(rng.random(1000), 6).tolist(), np.round(rng.random(40) * 9.9, 6).tolist(),
                   np.round(rng.random(40), rng.integers(0, 7)).tolist()):
        data = {"plot": "roc_curve", "auc": 0.9177095893365486, "fpr": values, "label": "x\u00e9\"", "n": [1, 2]}
        text = plots._json_text(data)
        back = json.loads(text)
        assert back == data and [type(v) for v in back["fpr"]] == [float] * len(values)
        assert list(back) == list(data)
    assert plots._json_text({"x": [0.5] * 20}) == '{"x": [' + ", ".join(["0.500000"] * 20) + "]}"
    not_written_fixed = [[0.5] * 15, [1] * 20, [0.5] * 19 + [1], [0.5] * 19 + [True], [0.5] * 19 + [-0.0],
                         [0.5] * 19 + [-0.5], [0.5] * 19 + [10.0], [0.5] * 19 + [0.1234567], [0.5] * 19 + [float("nan")],
                         [0.5] * 19 + [float("inf")], np.full(20, 0.5)]
    for values in not_written_fixed:  # json's text exactly
        assert plots._json_text({"v": values}) == json.dumps({"v": values}, default=plots._plain)
    assert plots._json_text({1: [0.5] * 20}) == json.dumps({1: [0.5] * 20})


# -- what the scikit-learn integrations log -----------------------------------------------------------------
def _download(run_id, path):
    autolog.flush()
    return logger_for().backend.download_artifacts(run_id, path, "")


def test_classifier_logs_the_png_and_the_json_of_its_confusion_matrix():
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix

    X, y = make_classification(n_samples=600, n_features=6, n_informative=4, n_classes=3, random_state=0)
    labels = np.array(["low", "mid", "high"])[y]
    autolog.autolog(log_models=False)
    model = LogisticRegression(max_iter=300).fit(X, labels)
    run = autolog.last_run()
    names = {a.path for a in logger_for().backend.list_artifacts(run.run_id)}
    assert {"training_confusion_matrix.png", "training_confusion_matrix.json"} <= names
    data = json.loads(open(_download(run.run_id, "training_confusion_matrix.json"), encoding="utf-8").read())
    assert data["labels"] == list(model.classes_)
    assert data["matrix"] == confusion_matrix(labels, model.predict(X), labels=model.classes_).tolist()
    _png(_download(run.run_id, "training_confusion_matrix.png"))


CURVES = {"training_roc_curve.png", "training_roc_curve.json", "training_precision_recall_curve.png",
          "training_precision_recall_curve.json"}


@pytest.mark.parametrize("estimator", ["LogisticRegression", "LinearSVC"])
@pytest.mark.parametrize("weighted", [False, True])
def test_a_two_class_classifier_logs_mlflows_roc_and_precision_recall_curves(estimator, weighted):
    """As mlflow.sklearn logs them (RocCurveDisplay and PrecisionRecallDisplay.from_estimator: the
    positive class's probability, or the decision function without predict_proba), on labels
    that are strings; the points equal scikit-learn's curves where both keep them."""
    import sklearn.linear_model
    import sklearn.svm
    from sklearn import metrics
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=3000, n_features=8, random_state=0)
    labels = np.array(["no", "yes"])[y]
    weights = np.random.default_rng(0).random(len(y)) if weighted else None
    autolog.autolog(log_models=False)
    cls = getattr(sklearn.linear_model, estimator, None) or getattr(sklearn.svm, estimator)
    model = cls().fit(X, labels, sample_weight=weights)
    run = autolog.last_run()
    names = {a.path for a in logger_for().backend.list_artifacts(run.run_id)}
    assert CURVES | {"training_confusion_matrix.png"} <= names
    score = model.predict_proba(X)[:, 1] if hasattr(model, "predict_proba") else model.decision_function(X)
    roc = json.loads(open(_download(run.run_id, "training_roc_curve.json"), encoding="utf-8").read())
    fpr, tpr, _ = metrics.roc_curve(labels, score, pos_label="yes", sample_weight=weights)
    assert roc["auc"] == pytest.approx(metrics.auc(fpr, tpr), rel=1e-12)
    assert roc["legend"] == f"{estimator} (AUC = {roc['auc']:0.2f})" and roc["pos_label"] == "yes"
    assert roc["x_label"] == "False Positive Rate (Positive label: yes)"
    def rounded(*columns):
        return set(zip(*(np.round(c, 6).tolist() for c in columns)))

    assert rounded(roc["fpr"], roc["tpr"]) <= rounded(fpr, tpr) and 2 < len(roc["fpr"]) <= len(fpr)  # thinned, not moved
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0) and (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0)
    pr = json.loads(open(_download(run.run_id, "training_precision_recall_curve.json"), encoding="utf-8").read())
    precision, recall, _ = metrics.precision_recall_curve(labels, score, pos_label="yes", sample_weight=weights,
                                                          drop_intermediate=True)
    assert pr["average_precision"] == pytest.approx(
        metrics.average_precision_score(labels, score, pos_label="yes", sample_weight=weights), rel=1e-12)
    assert rounded(pr["recall"], pr["precision"]) <= rounded(recall, precision)
    assert (pr["recall"][-1], pr["precision"][-1]) == (0.0, 1.0)
    for name in ("training_roc_curve.png", "training_precision_recall_curve.png"):
        assert _png(_download(run.run_id, name)).size == (640, 480)


def test_curves_only_for_a_two_class_target_with_scores():
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression, RidgeClassifier

    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=0)
    autolog.autolog(log_models=False)
    LogisticRegression(max_iter=300).fit(X, y)  # three classes: the confusion matrix only, as MLflow
    names = {a.path for a in logger_for().backend.list_artifacts(autolog.last_run().run_id)}
    assert "training_confusion_matrix.png" in names and not names & CURVES
    RidgeClassifier().fit(X, (y > 0).astype(int))  # no predict_proba: the decision function
    names = {a.path for a in logger_for().backend.list_artifacts(autolog.last_run().run_id)}
    assert CURVES <= names


def test_curve_pngs_and_their_thinned_data(tmp_path):
    fpr = np.linspace(0, 1, 20_001) ** 3
    tpr = np.linspace(0, 1, 20_001) ** 0.3
    data = plots.roc_curve_data(fpr, tpr, 0.9, "Model", 1)
    assert len(data["fpr"]) < 2000 and (data["fpr"][-1], data["tpr"][-1]) == (1.0, 1.0)
    def cells(x, y):
        return set(map(tuple, np.rint(np.column_stack([x, y]) * plots.CURVE_RESOLUTION).tolist()))

    kept = plots._thin(fpr, tpr)
    assert cells(*kept) == cells(fpr, tpr)  # one point in each 1/250 of the axes the curve crosses
    assert set(kept[0].tolist()) <= set(fpr.tolist())
    assert data["fpr"] == np.round(kept[0], 6).tolist() and data["tpr"] == np.round(kept[1], 6).tolist()
    assert plots.curve_png(data, str(tmp_path / "roc.png"))
    image = _png(tmp_path / "roc.png")
    assert image.size == (640, 480) and (31, 119, 180) in {c for _, c in image.convert("RGB").getcolors(1 << 20)}
    pr = plots.precision_recall_data([1.0, 0.5, 0.0], [0.5, 0.8, 1.0], 0.65, "Model", "yes")
    assert pr["legend"] == "Model (AP = 0.65)" and pr["y_label"] == "Precision (Positive label: yes)"
    assert plots.curve_png(pr, str(tmp_path / "pr.png"))
    _png(tmp_path / "pr.png")


def test_no_plot_and_no_json_with_log_plots_off():
    from sklearn.datasets import make_classification
    from sklearn.tree import DecisionTreeClassifier

    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    autolog.autolog(log_models=False, log_plots=False)
    DecisionTreeClassifier(max_depth=2).fit(X, y)
    run = autolog.last_run()
    names = {a.path for a in logger_for().backend.list_artifacts(run.run_id)}
    assert not any(name.startswith(("training_confusion_matrix", "training_roc", "training_precision"))
                   for name in names)
    assert "training_accuracy_score" in run.metrics


# -- the metrics from label indices equal scikit-learn's ---------------------------------------------------
def _cases():
    rng = np.random.default_rng(0)
    for n_classes in (2, 3, 7):
        for kind in ("int", "str", "bool"):
            if kind == "bool" and n_classes != 2:
                continue
            classes = {"int": np.arange(n_classes), "str": np.array([f"c{i}" for i in range(n_classes)]),
                       "bool": np.array([False, True])}[kind]
            y = classes[rng.integers(0, n_classes, 3000)]
            pred = y.copy()
            flip = rng.random(3000) < 0.3
            pred[flip] = classes[rng.integers(0, n_classes, flip.sum())]
            if n_classes == 7:
                pred[pred == classes[3]] = classes[4]  # a class that is never predicted
            for weights in (None, rng.random(3000), rng.integers(0, 3, 3000).astype(float)):
                yield classes, y, pred, weights


@pytest.mark.parametrize("classes, y, pred, weights", list(_cases()))
def test_metrics_from_label_indices_equal_scikit_learns(classes, y, pred, weights):
    from sklearn import metrics

    codes = sklearn_api._label_codes(y, pred, classes, weights)
    expected = metrics.precision_recall_fscore_support(y, pred, average="weighted", sample_weight=weights,
                                                       zero_division=0)[:3]
    assert sklearn_api._weighted_prf(*codes) == tuple(float(v) for v in expected)  # exactly, not approximately
    assert sklearn_api._accuracy(*codes) == metrics.accuracy_score(y, pred, sample_weight=weights)
    true, predicted, n, w = codes
    counts = np.bincount(true * n + predicted, weights=w, minlength=n * n).reshape(n, n)
    np.testing.assert_array_equal(counts, metrics.confusion_matrix(y, pred, labels=classes, sample_weight=weights))


def _probability_cases():
    rng = np.random.default_rng(1)
    for n_classes in (2, 3):
        for kind in ("int", "str"):
            classes = np.arange(n_classes) if kind == "int" else np.array([f"c{i}" for i in range(n_classes)])
            y = classes[rng.integers(0, n_classes, 3000)]
            for ties in (False, True):  # a tree's probabilities repeat: many equal scores
                raw = rng.random((3000, n_classes))
                if ties:
                    raw = np.round(raw * 4) + 0.5
                proba = raw / raw.sum(axis=1, keepdims=True)
                proba[0] = np.eye(n_classes)[0]  # a probability of 1 and of 0: clipped
                for weights in (None, rng.random(3000), rng.integers(0, 3, 3000).astype(float)):
                    yield classes, y, proba, weights


@pytest.mark.parametrize("classes, y, proba, weights", list(_probability_cases()))
def test_log_loss_and_roc_auc_from_label_indices_equal_scikit_learns(classes, y, proba, weights):
    from sklearn import metrics

    codes = sklearn_api._label_codes(y, y, classes, weights)
    assert sklearn_api._log_loss(proba, codes) == pytest.approx(
        metrics.log_loss(y, proba, sample_weight=weights, labels=classes), rel=1e-12)
    if len(classes) == 2:
        assert sklearn_api._binary_roc_auc(proba, codes) == pytest.approx(
            metrics.roc_auc_score(y, proba[:, 1], sample_weight=weights), rel=1e-12)
    else:
        assert sklearn_api._binary_roc_auc(proba, codes) is None  # scikit-learn's one-vs-one, not this


def test_what_is_not_a_probability_goes_to_scikit_learn():
    codes = sklearn_api._label_codes(np.array([0, 1, 1]), np.array([0, 1, 1]), np.array([0, 1]), None)
    assert sklearn_api._log_loss(np.array([[0.5, 0.5], [1.5, -0.5], [0.0, 1.0]]), codes) is None
    assert sklearn_api._log_loss(np.array([0.5, 0.5, 0.5]), codes) is None  # one column
    one_class = sklearn_api._label_codes(np.array([1, 1, 1]), np.array([1, 1, 1]), np.array([0, 1]), None)
    assert sklearn_api._binary_roc_auc(np.array([[0.5, 0.5], [0.2, 0.8], [0.0, 1.0]]), one_class) is None


def test_labels_the_model_does_not_know_fall_back_to_scikit_learn():
    assert sklearn_api._label_codes([0, 1, 5], [0, 1, 1], np.array([0, 1]), None) is None
    assert sklearn_api._label_codes(np.zeros((3, 2)), np.zeros((3, 2)), np.array([0, 1]), None) is None
    assert sklearn_api._label_codes([1, "a"], [1, 1], np.array([1, "a"], dtype=object), None) is None


@pytest.mark.parametrize("estimator", ["RandomForestClassifier", "ExtraTreesClassifier"])
def test_a_forest_predicts_once_for_the_same_metrics(estimator):
    import sklearn.ensemble
    from sklearn.datasets import make_classification
    from sklearn.metrics import accuracy_score
    from autolog.instrument.snapshots import DataSnapshot

    X, y = make_classification(n_samples=400, n_features=6, n_classes=3, n_informative=4, random_state=0)
    model = getattr(sklearn.ensemble, estimator)(n_estimators=5, random_state=0).fit(X, y)
    predicted: dict = {}
    found = sklearn_api.training_metrics(model, DataSnapshot.take(X, y, None, 100_000), predicted=predicted)
    np.testing.assert_array_equal(predicted["y"], model.predict(X))
    assert found["training_accuracy_score"] == accuracy_score(y, model.predict(X))
    assert found["training_score"] == model.score(X, y)


def _regression_cases():
    rng = np.random.default_rng(2)
    for outputs in (1, 3):
        y = rng.normal(size=(500, outputs)) * 10
        if outputs == 1:
            y = y.ravel()
        for kind in ("float", "int", "constant", "perfect"):
            target = {"float": y, "int": np.rint(y).astype(np.int64), "constant": np.full_like(y, 2.5),
                      "perfect": y}[kind]
            pred = target.astype(float) if kind == "perfect" else y + rng.normal(size=y.shape)
            for weights in (None, rng.random(500), rng.integers(0, 3, 500).astype(float)):
                yield target, pred, weights


@pytest.mark.parametrize("y, pred, weights", list(_regression_cases()))
def test_regression_metrics_equal_scikit_learns(y, pred, weights):
    from sklearn import metrics

    found = sklearn_api._regression_errors(y, pred, weights)
    kwargs = dict(sample_weight=weights, multioutput="uniform_average")
    assert found == {"mse": metrics.mean_squared_error(y, pred, **kwargs),  # exactly, not approximately
                     "mae": metrics.mean_absolute_error(y, pred, **kwargs),
                     "r2": metrics.r2_score(y, pred, **kwargs)}


def test_what_the_regression_arithmetic_does_not_take_goes_to_scikit_learn():
    assert sklearn_api._regression_errors(np.array([1.0]), np.array([1.0]), None) is None  # one row: nan and a warning
    assert sklearn_api._regression_errors(np.arange(3.0), np.arange(3, dtype=np.float32), None) is None
    assert sklearn_api._regression_errors(np.array(["a", "b"]), np.arange(2.0), None) is None
    assert sklearn_api._regression_errors(np.arange(3.0), np.arange(3.0), np.zeros(3)) is None  # weights sum to 0
    assert sklearn_api._regression_errors(np.arange(3.0), np.arange(3.0), np.ones(2)) is None


# -- what is drawn once and kept -------------------------------------------------------------------------
def _pixels(path) -> np.ndarray:
    return np.asarray(_png(path).convert("RGB"))


def _curves():
    steep = plots.roc_curve_data([0.0, 0.0, 1.0], [0.0, 1.0, 1.0], 1.0, "LogisticRegression", 1)
    diagonal = plots.roc_curve_data(np.linspace(0, 1, 50), np.linspace(0, 1, 50), 0.5, "LogisticRegression", 1)
    steps = plots.precision_recall_data([1.0, 1.0, 0.5, 0.0], [0.0, 0.5, 1.0, 1.0], 0.75, "SVC", "yes")
    corner = plots.precision_recall_data([1.0, 0.0], [1.0, 1.0], 1.0, "SVC", "yes")
    return [steep, diagonal, steps, corner]


def test_a_curve_never_touches_its_kept_background(tmp_path):
    """The frame, ticks, axis labels and title are drawn once per set of texts and kept; a curve
    drawn over them leaves the same pixels as one drawn before them only if it touches none of
    them: even at the corners of the axes it does not."""
    for k, data in enumerate(_curves()):
        background, _ = plots._background(("curve", data["title"], data["x_label"], data["y_label"]),
                                          lambda: plots._curve_background(data["title"], data["x_label"], data["y_label"]))
        blank = Image.new(background.mode, background.size, 255)
        original = plots._backgrounds.copy()
        try:  # the curve and its legend alone, on a white background
            plots._backgrounds.update({key: (blank, layout) for key, (_, layout) in original.items()})
            assert plots.curve_png(data, str(tmp_path / f"alone{k}.png"))
        finally:
            plots._backgrounds.clear()
            plots._backgrounds.update(original)
        alone = _pixels(tmp_path / f"alone{k}.png") != 255
        drawn = np.asarray(background.convert("RGB")) != 255
        legend_and_curve = alone.any(axis=2)
        assert legend_and_curve.sum() > 100
        assert not (legend_and_curve & drawn.any(axis=2)).any()


def test_plots_drawn_on_a_kept_image_keep_nothing_of_the_one_before(tmp_path):
    curves = _curves()
    plots._backgrounds.clear()
    plots._scratch.clear()
    first = []
    for k, data in enumerate(curves):
        assert plots.curve_png(data, str(tmp_path / f"first{k}.png"))
        first.append(_pixels(tmp_path / f"first{k}.png"))
    for k, data in reversed(list(enumerate(curves))):  # each over the image the one before was drawn on
        assert plots.curve_png(data, str(tmp_path / f"again{k}.png"))
        np.testing.assert_array_equal(_pixels(tmp_path / f"again{k}.png"), first[k])
    matrices = [[[5, 1], [2, 7]], [[0, 9], [9, 0]], [[3, 3], [0, 0]]]
    for k, matrix in enumerate(matrices):
        assert plots.confusion_matrix_png(matrix, ["no", "yes"], str(tmp_path / f"cm{k}.png"))
    for k, matrix in enumerate(matrices):  # as drawn on a new white image
        plots._backgrounds.clear()
        plots._scratch.clear()
        assert plots.confusion_matrix_png(matrix, ["no", "yes"], str(tmp_path / f"new{k}.png"))
        np.testing.assert_array_equal(_pixels(tmp_path / f"cm{k}.png"), _pixels(tmp_path / f"new{k}.png"))


def test_a_plot_that_fails_leaves_no_file_and_the_others_are_logged(monkeypatch, contained_errors):
    """The plots of a fit are written into one folder, delivered as one artifact: a plot whose
    drawing fails halfway (its PNG written, its JSON not) leaves none of its files in it."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    real = plots.write_json

    def failing(data, path):
        if data["plot"] == "precision_recall_curve":
            raise OSError("disk full")
        real(data, path)

    monkeypatch.setattr(plots, "write_json", failing)
    X, y = make_classification(n_samples=300, n_features=5, random_state=0)
    autolog.autolog(log_models=False)
    LogisticRegression().fit(X, y)
    autolog.flush()
    names = {a.path for a in logger_for().backend.list_artifacts(autolog.last_run().run_id)}
    assert {"training_confusion_matrix.png", "training_confusion_matrix.json"} <= names
    assert not names & CURVES  # the ROC curve was drawn, but its plot is not logged without the other one's
    assert contained_errors and "disk full" in repr(contained_errors[0][1])


# -- one decision function, one sort -----------------------------------------------------------------------
@pytest.mark.parametrize("labels", ["int", "str", "shifted"])
def test_a_two_class_logistic_regression_predicts_from_one_decision_function(labels):
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=3000, n_features=8, random_state=3)
    y = {"int": y, "str": np.array(["no", "yes"])[y], "shifted": y + 5}[labels]
    model = LogisticRegression(max_iter=300).fit(X, y)
    X[:5] = 0.0  # decisions of exactly the intercept
    y_pred, proba = sklearn_api._binary_logistic(model, X)
    np.testing.assert_array_equal(y_pred, model.predict(X))  # exactly, bit for bit
    np.testing.assert_array_equal(proba, model.predict_proba(X))
    assert y_pred.dtype == model.predict(X).dtype


def test_other_classifiers_predict_as_ever():
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression, RidgeClassifier

    X, y = make_classification(n_samples=600, n_features=8, n_informative=5, n_classes=3, random_state=0)
    assert sklearn_api._binary_logistic(LogisticRegression(max_iter=300).fit(X, y), X) is None  # three classes
    assert sklearn_api._binary_logistic(RidgeClassifier().fit(X, y > 0), X) is None  # no predict_proba

    class Calibrated(LogisticRegression):
        def predict_proba(self, X):
            return super().predict_proba(X) ** 2

    assert sklearn_api._binary_logistic(Calibrated().fit(X, y > 0), X) is None


@pytest.mark.parametrize("ties", [False, True])
def test_the_curve_from_one_sort_is_the_curve_from_argsort(ties):
    rng = np.random.default_rng(5)
    true = rng.integers(0, 2, 5000)
    score = rng.random(5000)
    if ties:
        score = np.round(score * 8) / 8  # 0.0 and 1.0 among them
    score[:3] = (-0.0, 0.0, 1.0)
    codes = (true, true, 2, None)
    fps, tps, thresholds = sklearn_api._binary_curve(score, codes)
    order = np.argsort(score)[::-1]  # the arithmetic before, for rows without weights
    ranked, positive = score[order], true[order] == 1
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    np.testing.assert_array_equal(tps, np.cumsum(positive)[last])
    np.testing.assert_array_equal(fps, 1 + last - np.cumsum(positive)[last])
    np.testing.assert_array_equal(thresholds, ranked[last])


def test_a_grey_plot_with_one_colour_is_written_with_a_palette_of_the_same_pixels(tmp_path):
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 256, (60, 80)).astype(np.uint8)
    grey[grey == 77] = 78
    grey[10:20, 5:50] = 77  # the level that stands for the colour
    expected = np.repeat(grey[:, :, None], 3, axis=2)
    expected[grey == 77] = (31, 119, 180)
    plots.write_palette_png(Image.fromarray(grey), 77, (31, 119, 180), str(tmp_path / "p.png"))
    assert _png(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(_pixels(tmp_path / "p.png"), expected)


def _drawn_with_a_mask(data, grey_and_mask: bool = False):
    """The curve of `data` as curve_png drew it before its colour was a grey level of its own:
    the curve and the legend's line drawn in a mask, the legend box cleared from it, and the
    colour painted through it over the grey plot last (with `grey_and_mask`: the grey plot
    and the mask)."""
    background, (left, top, side, line_height, _) = plots._background(
        ("curve", data["title"], data["x_label"], data["y_label"]),
        lambda: plots._curve_background(data["title"], data["x_label"], data["y_label"]))
    bottom = top + side
    xs = left + (np.asarray(data[data["x"]], dtype=float) + 0.01) / 1.02 * side
    ys = bottom - (np.asarray(data[data["y"]], dtype=float) + 0.01) / 1.02 * side
    if data.get("steps") == "post" and len(xs) > 1:
        xs, ys = np.repeat(xs, 2)[1:], np.repeat(ys, 2)[:-1]
    points = []
    for point in zip(np.rint(xs).astype(int).tolist(), np.rint(ys).astype(int).tolist()):
        if not points or point != points[-1]:
            points.append(point)
    canvas = plots._Canvas(0, 0, background.copy())
    coloured = plots._Canvas(0, 0, Image.new("L", background.size, 0))
    if len(points) > 1:
        coloured.draw.line(points, fill=255, width=2)
    font = plots._font(10)
    box_width, box_height = canvas.size(data["legend"], font)[0] + 44, line_height + 14
    x1 = left + side - 8 if data["plot"] == "roc_curve" else left + 8 + box_width
    y1 = bottom - 8
    box = [x1 - box_width, y1 - box_height, x1, y1]
    canvas.draw.rectangle(box, fill=255, outline=204)
    coloured.draw.rectangle(box, fill=0, outline=0)
    middle = y1 - box_height / 2
    coloured.draw.line([x1 - box_width + 6, middle, x1 - box_width + 30, middle], fill=255, width=2)
    canvas.text((x1 - box_width + 36, middle), data["legend"], font, anchor="lm")
    if grey_and_mask:
        return np.asarray(canvas.image), np.asarray(coloured.image)
    rgb = canvas.image.convert("RGB")
    rgb.paste((31, 119, 180), (0, 0), coloured.image)
    return np.asarray(rgb)


def _more_curves():
    rng = np.random.default_rng(6)
    fpr, tpr = np.sort(rng.random(3000)), np.sort(rng.random(3000)) ** 0.4
    return _curves() + [plots.roc_curve_data(fpr, tpr, 0.8, "RandomForestClassifier", "a long positive label"),
                        plots.precision_recall_data(fpr[::-1], tpr, 0.7, "SVC", 0)]


def test_a_curve_is_drawn_as_it_was_with_a_mask(tmp_path):
    """Its colour drawn as a grey level of its own and mapped to the colour by the palette, a
    curve has the pixels of the mask it was drawn with before, and so has one drawn in RGB
    (when no grey level is free)."""
    for k, data in enumerate(_more_curves()):
        assert plots.curve_png(data, str(tmp_path / f"c{k}.png"))
        assert _png(tmp_path / f"c{k}.png").mode == "P"
        np.testing.assert_array_equal(_pixels(tmp_path / f"c{k}.png"), _drawn_with_a_mask(data))
    every_grey = frozenset(range(256))
    original = plots._legend_greys
    plots._legend_greys = lambda text, font: every_grey
    try:
        for k, data in enumerate(_more_curves()):
            assert plots.curve_png(data, str(tmp_path / f"rgb{k}.png"))
            assert _png(tmp_path / f"rgb{k}.png").mode == "RGB"
            np.testing.assert_array_equal(_pixels(tmp_path / f"rgb{k}.png"), _drawn_with_a_mask(data))
    finally:
        plots._legend_greys = original


def test_the_greys_a_curves_colour_is_not_drawn_in_are_every_grey_of_the_plot():
    """The grey level that stands for the curve's colour is one of none of these: those of the
    background and of the legend hold every grey of the plot but for the curve's pixels."""
    for data in _more_curves():
        _, (_, _, _, _, background_greys) = plots._background(
            ("curve", data["title"], data["x_label"], data["y_label"]),
            lambda: plots._curve_background(data["title"], data["x_label"], data["y_label"]))
        grey, mask = _drawn_with_a_mask(data, grey_and_mask=True)
        assert set(np.unique(grey[mask == 0]).tolist()) <= background_greys | plots._legend_greys(data["legend"], plots._font(10))


def test_pngs_drawn_now_and_written_later_are_the_same_pictures(tmp_path):
    """While training waits the plots are drawn; their PNGs are deflated and written by the next
    piece of work, while training runs (written_later)."""
    data = _curves()[1]
    matrix, labels = [[5, 1], [2, 7]], ["no", "yes"]
    assert plots.curve_png(data, str(tmp_path / "now.png"))
    assert plots.confusion_matrix_png(matrix, labels, str(tmp_path / "cm_now.png"))
    writes: list = []
    with plots.written_later(writes):
        assert plots.curve_png(data, str(tmp_path / "later.png"))
        assert plots.confusion_matrix_png(matrix, labels, str(tmp_path / "cm_later.png"))
    assert [w.path for w in writes] == [str(tmp_path / "later.png"), str(tmp_path / "cm_later.png")]
    assert not (tmp_path / "later.png").exists() and not (tmp_path / "cm_later.png").exists()
    plots.curve_png(_curves()[0], str(tmp_path / "other.png"))  # the kept images are drawn on again meanwhile
    for write in writes:
        write()
    np.testing.assert_array_equal(_pixels(tmp_path / "later.png"), _pixels(tmp_path / "now.png"))
    np.testing.assert_array_equal(_pixels(tmp_path / "cm_later.png"), _pixels(tmp_path / "cm_now.png"))


def test_pngs_waiting_to_be_written_have_rows_of_their_own(tmp_path):
    """The rows of a PNG are put together in a buffer used again once that PNG is written: each
    of more PNGs of one size than are kept waits in its own, and one written now in another."""
    rng = np.random.default_rng(7)
    matrices = [rng.integers(0, 40, (2, 2)) for _ in range(plots._ROWS_KEPT + 3)]
    now = []
    for k, matrix in enumerate(matrices):
        assert plots.confusion_matrix_png(matrix, ["no", "yes"], str(tmp_path / f"now{k}.png"))
        now.append(_pixels(tmp_path / f"now{k}.png"))
    writes: list = []
    with plots.written_later(writes):
        for k, matrix in enumerate(matrices):
            assert plots.confusion_matrix_png(matrix, ["no", "yes"], str(tmp_path / f"later{k}.png"))
    assert plots.confusion_matrix_png(matrices[0][::-1], ["no", "yes"], str(tmp_path / "meanwhile.png"))
    for write in writes:
        write()
    for k in range(len(matrices)):
        np.testing.assert_array_equal(_pixels(tmp_path / f"later{k}.png"), now[k])
    rows = plots._rows_taken(30, 4)
    plots._rows_given_back(rows)
    plots._rows_given_back(rows)  # a buffer is kept once, however often it comes back
    assert plots._rows_taken(30, 4) is rows and plots._rows_taken(30, 4) is not rows


@pytest.mark.parametrize("failing_file", ["training_roc_curve.png", "training_roc_curve.json"])
def test_a_plot_that_cannot_be_written_later_leaves_neither_file(monkeypatch, contained_errors, failing_file):
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    writer = "_deflate_and_write" if failing_file.endswith(".png") else "_write_json_now"
    real = getattr(plots, writer)

    def failing(*args):
        path = args[0] if writer == "_deflate_and_write" else args[1]
        if path.endswith(failing_file):
            raise OSError("disk full")
        real(*args)

    monkeypatch.setattr(plots, writer, failing)
    X, y = make_classification(n_samples=300, n_features=5, random_state=0)
    autolog.autolog(log_models=False)
    LogisticRegression().fit(X, y)
    autolog.flush()
    names = {a.path for a in logger_for().backend.list_artifacts(autolog.last_run().run_id)}
    assert CURVES - names == {"training_roc_curve.png", "training_roc_curve.json"}
    assert {"training_confusion_matrix.png", "training_confusion_matrix.json"} <= names
    assert contained_errors and "disk full" in repr(contained_errors[0][1])
