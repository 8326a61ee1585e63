"""The scikit-learn integration, with the real library: what a user sees in the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

import autolog
from autolog import runs as runs_module

sklearn = pytest.importorskip("sklearn")

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.ensemble import BaggingClassifier, RandomForestClassifier  # noqa: E402
from sklearn.linear_model import ElasticNet, LinearRegression, LogisticRegression, Ridge  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402


@pytest.fixture
def clf_data():
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, random_state=0)
    return X, y


@pytest.fixture
def reg_data():
    X, y = make_regression(n_samples=200, n_features=5, noise=0.5, random_state=0)
    return X, y


def all_runs(**kwargs):
    return autolog.search_runs(**kwargs, output_format="list")


def artifacts(run_id, path=None):
    backend = runs_module._reader()
    return sorted(a.path for a in backend.list_artifacts(run_id, path))


def history(run_id, key):
    return runs_module._reader().get_metric_history(run_id, key)


def only_run():
    found = all_runs()
    assert len(found) == 1, [r.run_name for r in found]
    return found[0]


# -- a fit makes a run -------------------------------------------------------------------------------
def test_classifier_fit_logs_params_tags_metrics_model_and_plot(clf_data):
    X, y = clf_data
    autolog.autolog()
    model = LogisticRegression(C=0.5, max_iter=300).fit(X, y)
    run = only_run()
    assert run.status == "FINISHED"
    assert run.params["C"] == "0.5" and run.params["max_iter"] == "300" and run.params["solver"] == "lbfgs"
    assert run.tags["estimator_name"] == "LogisticRegression"
    assert run.tags["estimator_class"] == "sklearn.linear_model._logistic.LogisticRegression"
    from sklearn import metrics

    pred = model.predict(X)
    assert run.metrics["training_score"] == pytest.approx(model.score(X, y))
    assert run.metrics["training_accuracy_score"] == pytest.approx(metrics.accuracy_score(y, pred))
    assert run.metrics["training_f1_score"] == pytest.approx(metrics.f1_score(y, pred, average="weighted"))
    assert run.metrics["training_precision_score"] == pytest.approx(metrics.precision_score(y, pred, average="weighted"))
    assert run.metrics["training_recall_score"] == pytest.approx(metrics.recall_score(y, pred, average="weighted"))
    assert run.metrics["training_log_loss"] == pytest.approx(metrics.log_loss(y, model.predict_proba(X)))
    assert run.metrics["training_roc_auc"] == pytest.approx(metrics.roc_auc_score(y, model.predict_proba(X)[:, 1]))
    assert "training_confusion_matrix.png" in artifacts(run.run_id)
    assert "model/MLmodel" in artifacts(run.run_id, "model")
    loaded = autolog.load_model(run.run_id)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_regressor_metrics_and_model(reg_data):
    X, y = reg_data
    autolog.autolog()
    model = Ridge(alpha=2.0).fit(X, y)
    run = only_run()
    from sklearn import metrics

    pred = model.predict(X)
    mse = metrics.mean_squared_error(y, pred)
    assert run.metrics["training_mean_squared_error"] == pytest.approx(mse)
    assert run.metrics["training_root_mean_squared_error"] == pytest.approx(np.sqrt(mse))
    assert run.metrics["training_mean_absolute_error"] == pytest.approx(metrics.mean_absolute_error(y, pred))
    assert run.metrics["training_r2_score"] == pytest.approx(metrics.r2_score(y, pred))
    assert run.metrics["training_score"] == pytest.approx(model.score(X, y))
    assert not any(a.endswith(".png") for a in artifacts(run.run_id))  # no confusion matrix for a regressor
    np.testing.assert_allclose(autolog.load_model(run.run_id).predict(X), pred)


def test_clusterer_silhouette(clf_data):
    X, _ = clf_data
    autolog.autolog()
    model = KMeans(n_clusters=3, n_init=2, random_state=0).fit(X)
    from sklearn.metrics import silhouette_score

    run = only_run()
    assert run.metrics["training_silhouette_score"] == pytest.approx(silhouette_score(X, model.labels_))
    assert "training_score" not in run.metrics  # no y: no score


def test_sample_weights_are_respected(clf_data):
    X, y = clf_data
    weights = np.where(y == 1, 5.0, 0.2)
    autolog.autolog()
    model = LogisticRegression(max_iter=300).fit(X, y, sample_weight=weights)
    from sklearn.metrics import accuracy_score

    run = only_run()
    weighted = accuracy_score(y, model.predict(X), sample_weight=weights)
    assert weighted != pytest.approx(accuracy_score(y, model.predict(X)))
    assert run.metrics["training_accuracy_score"] == pytest.approx(weighted)
    assert run.metrics["training_score"] == pytest.approx(model.score(X, y, sample_weight=weights))


def test_metrics_use_at_most_max_metric_rows_evenly_spaced(clf_data):
    X, y = clf_data
    autolog.autolog(max_metric_rows=40)
    model = LogisticRegression(max_iter=300).fit(X, y)
    rows = np.linspace(0, len(X) - 1, 40).round().astype(int)
    run = only_run()
    assert run.metrics["training_score"] == pytest.approx(model.score(X[rows], y[rows]))
    autolog.autolog(max_metric_rows=0)  # 0: no training metrics at all, the model still logged
    LogisticRegression(max_iter=300).fit(X, y)
    newest = all_runs()[0]
    assert not any(k.startswith("training_") for k in newest.metrics)
    assert "model/MLmodel" in artifacts(newest.run_id, "model")


def test_data_changed_after_fit_does_not_change_the_logged_metrics(clf_data):
    X, y = clf_data
    X, y = X.copy(), y.copy()
    autolog.autolog()
    gate = threading.Event()
    # hold the worker until the user has scribbled over their arrays
    runs_module.logger_for().enqueue(("x", gate.wait))
    model = LogisticRegression(max_iter=300).fit(X, y)
    expected = model.score(X, y)
    X[:] = 0.0
    y[:] = 1 - y
    gate.set()
    assert only_run().metrics["training_score"] == pytest.approx(expected)


def test_long_param_values_are_truncated_with_a_marker(clf_data):
    X, y = clf_data

    class Noted(LogisticRegression):
        def __init__(self, note="", max_iter=300):
            super().__init__(max_iter=max_iter)
            self.note = note

    autolog.autolog()
    Noted(note="x" * 10_000).fit(X, y)
    value = only_run().params["note"]
    assert len(value) <= 6000 and "truncated" in value


# -- one run per outermost fit -------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: make_pipeline(StandardScaler(), PCA(n_components=3), LogisticRegression(max_iter=300)),
    lambda: CalibratedClassifierCV(LogisticRegression(max_iter=300), cv=3),
    lambda: BaggingClassifier(LogisticRegression(max_iter=300), n_estimators=3, random_state=0),
    lambda: RandomForestClassifier(n_estimators=5, n_jobs=2, random_state=0),
], ids=["pipeline", "calibrated", "bagging", "forest-threads"])
def test_nested_fits_make_one_run(clf_data, make):
    X, y = clf_data
    autolog.autolog()
    estimator = make()
    estimator.fit(X, y)
    run = only_run()
    assert run.tags["estimator_name"] == type(estimator).__name__
    assert "training_accuracy_score" in run.metrics


def test_pipeline_params_are_flattened(clf_data):
    X, y = clf_data
    autolog.autolog()
    make_pipeline(StandardScaler(), LogisticRegression(C=3.0, max_iter=300)).fit(X, y)
    params = only_run().params
    assert params["logisticregression__C"] == "3.0"
    assert params["standardscaler__with_mean"] == "True"
    assert "LogisticRegression" in params["logisticregression"]


def test_fit_transform_and_fit_predict_are_one_run_each(clf_data):
    X, _ = clf_data
    autolog.autolog()
    PCA(n_components=2).fit_transform(X)  # PCA.fit_transform does not call fit
    KMeans(n_clusters=2, n_init=1, random_state=0).fit_predict(X)  # goes through fit
    names = sorted(r.tags["estimator_name"] for r in all_runs())
    assert names == ["KMeans", "PCA"]


class MajorityClassifier(ClassifierMixin, BaseEstimator):
    """A user's own estimator, defined in the test module (before autolog() is enabled)."""

    def __init__(self, smoothing=1.0):
        self.smoothing = smoothing

    def fit(self, X, y):
        values, counts = np.unique(y, return_counts=True)
        self.classes_ = values
        self.majority_ = values[np.argmax(counts)]
        return self

    def predict(self, X):
        return np.full(len(X), self.majority_)


def test_user_estimators_defined_before_and_after_enabling(clf_data):
    X, y = clf_data
    autolog.autolog()

    class MeanRegressor(RegressorMixin, BaseEstimator):  # defined after autolog()
        def fit(self, X, y):
            self.mean_ = float(np.mean(y))
            return self

        def predict(self, X):
            return np.full(len(X), self.mean_)

    class Refined(MajorityClassifier):  # overrides fit and calls super().fit: one run
        def fit(self, X, y):
            return super().fit(X, y)

    MajorityClassifier(smoothing=2.0).fit(X, y)
    MeanRegressor().fit(X, y.astype(float))
    Refined().fit(X, y)
    found = {r.tags["estimator_name"]: r for r in all_runs()}
    assert set(found) == {"MajorityClassifier", "MeanRegressor", "Refined"}
    assert found["MajorityClassifier"].params["smoothing"] == "2.0"
    assert "training_accuracy_score" in found["MajorityClassifier"].metrics
    assert "training_r2_score" in found["MeanRegressor"].metrics


def test_fits_inside_sklearn_helpers_are_not_runs(clf_data):
    X, y = clf_data
    autolog.autolog()
    from sklearn.metrics import f1_score

    Ridge().fit(X, y)
    f1_score(y, 1 - y, average="macro")  # fits a LabelEncoder internally
    assert only_run().tags["estimator_name"] == "Ridge"


def test_user_run_receives_the_first_fit_then_child_runs(clf_data):
    X, y = clf_data
    autolog.autolog()
    with autolog.start_run("mine") as mine:
        LogisticRegression(max_iter=300).fit(X, y)
        Ridge().fit(X, y)
    found = all_runs()
    assert len(found) == 2
    user_run = autolog.get_run(mine.run_id)
    assert user_run.tags["estimator_name"] == "LogisticRegression"
    child = next(r for r in found if r.run_id != mine.run_id)
    assert child.parent_run_id == mine.run_id and child.tags["estimator_name"] == "Ridge"


def test_failing_fit_marks_the_run_failed_and_raises_unchanged():
    autolog.autolog()
    with pytest.raises(ValueError, match="Found input variables with inconsistent numbers"):
        LogisticRegression().fit(np.zeros((10, 2)), np.zeros(7))
    run = only_run()
    assert run.status == "FAILED"
    assert "inconsistent numbers" in run.tags["autolog.error"]


def test_an_unpicklable_model_is_contained_and_fit_still_returns(clf_data, contained_errors):
    X, y = clf_data

    class HoldsALock(LogisticRegression):
        def fit(self, X, y):
            self.lock_ = threading.Lock()
            return super().fit(X, y)

    autolog.autolog()
    model = HoldsALock(max_iter=300)
    assert model.fit(X, y) is model
    run = only_run()
    assert run.params["max_iter"] == "300" and run.status == "FINISHED"
    assert contained_errors and "HoldsALock" in contained_errors[0][0]


# -- options -------------------------------------------------------------------------------------
def test_log_models_false_and_log_plots_false(clf_data):
    X, y = clf_data
    autolog.autolog(log_models=False, log_plots=False)
    LogisticRegression(max_iter=300).fit(X, y)
    run = only_run()
    assert "training_accuracy_score" in run.metrics
    found = artifacts(run.run_id)
    assert "model" not in found and "training_confusion_matrix.png" not in found


def test_pipeline_with_column_transformer_on_a_dataframe_round_trips_with_schema_and_example():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, 200).astype("int64"),
        "income": rng.normal(50, 10, 200),
        "city": rng.choice(["paris", "lyon", "nice"], 200),
    })
    target = (frame["income"] + rng.normal(0, 5, 200) > 50).astype(int)
    pipeline = Pipeline([
        ("prep", ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                                    ("cat", OneHotEncoder(), ["city"])])),
        ("clf", LogisticRegression(max_iter=300)),
    ])
    autolog.autolog(log_input_examples=True)
    pipeline.fit(frame, target)
    run = only_run()
    assert run.tags["autolog.training_data_shape"] == "200x3"
    loaded = autolog.load_model(run.run_id)
    np.testing.assert_array_equal(loaded.predict(frame), pipeline.predict(frame))
    folder = runs_module._reader().download_artifacts(run.run_id, "model", str(run.run_id))
    with open(os.path.join(folder, "MLmodel")) as fh:
        mlmodel = json.load(fh)
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert [(c["name"], c["type"]) for c in inputs] == [("age", "long"), ("income", "double"), ("city", "string")]
    assert mlmodel["flavors"]["sklearn"]["pickled_model"] == "model.pkl"
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "mlflow.sklearn"
    assert mlmodel["saved_input_example_info"]["type"] == "dataframe"
    with open(os.path.join(folder, "input_example.json")) as fh:
        example = json.load(fh)
    assert example["columns"] == ["age", "income", "city"] and len(example["data"]) == 5


def test_array_signature_records_the_shape(clf_data):
    X, y = clf_data
    autolog.autolog()
    LogisticRegression(max_iter=300).fit(X.astype(np.float32), y)
    run = only_run()
    folder = runs_module._reader().download_artifacts(run.run_id, "model", str(run.run_id))
    with open(os.path.join(folder, "MLmodel")) as fh:
        signature = json.load(fh)["signature"]
    assert json.loads(signature["inputs"]) == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 6]}}]
    assert not os.path.exists(os.path.join(folder, "input_example.json"))  # log_input_examples defaults to False


def test_mlflow_reads_the_model_folder(clf_data):
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    import mlflow.pyfunc

    X, y = clf_data
    autolog.autolog(log_input_examples=True)
    model = LogisticRegression(max_iter=300).fit(X, y)
    run = only_run()
    folder = runs_module._reader().download_artifacts(run.run_id, "model", str(run.run_id))
    np.testing.assert_array_equal(mlflow_sklearn.load_model(folder).predict(X), model.predict(X))
    np.testing.assert_array_equal(np.asarray(mlflow.pyfunc.load_model(folder).predict(X)), model.predict(X))


# -- post-training metrics -----------------------------------------------------------------------
def test_post_training_metrics_named_after_the_dataset(clf_data):
    X, y = clf_data
    X_train, X_test, y_train, y_test = X[:200], X[200:], y[:200], y[200:]
    autolog.autolog()
    from sklearn.metrics import accuracy_score, f1_score

    model = LogisticRegression(max_iter=300).fit(X_train, y_train)
    score = model.score(X_test, y_test)
    predictions = model.predict(X_test)
    first = accuracy_score(y_test, predictions)
    again = accuracy_score(y_test, model.predict(X_test))
    f1 = f1_score(y_test, predictions)
    metrics = only_run().metrics
    assert metrics["LogisticRegression_score_X_test"] == pytest.approx(score)
    assert metrics["accuracy_score_X_test"] == pytest.approx(first)
    assert metrics["accuracy_score-2_X_test"] == pytest.approx(again)  # a second call: a new name
    assert metrics["f1_score_X_test"] == pytest.approx(f1)
    assert not any(k.startswith("r2_score") or k.startswith("accuracy_score-3") for k in metrics)


def test_metrics_on_data_not_predicted_by_a_tracked_model_log_nothing(clf_data):
    X, y = clf_data
    autolog.autolog()
    from sklearn.metrics import accuracy_score

    model = LogisticRegression(max_iter=300).fit(X, y)
    accuracy_score(y, y)
    assert not any("accuracy_score_" in k for k in only_run().metrics)
    assert model.predict(X).shape == (len(X),)


# -- searches and cross-validation ------------------------------------------------------------------
def test_grid_search_parent_and_best_child_runs(clf_data):
    X, y = clf_data
    from sklearn.model_selection import GridSearchCV

    autolog.autolog(max_tuning_runs=2)
    search = GridSearchCV(LogisticRegression(max_iter=300), {"C": [0.01, 0.1, 1.0]}, cv=3).fit(X, y)
    found = all_runs()
    parent = next(r for r in found if r.parent_run_id is None)
    children = [r for r in found if r.parent_run_id == parent.run_id]
    assert len(found) == 3 and len(children) == 2
    assert parent.params["best_C"] == str(search.best_params_["C"])
    assert parent.params["estimator__C"] == "1.0" and parent.params["cv"] == "3"
    assert parent.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert "cv_results.csv" in artifacts(parent.run_id)
    ranks = search.cv_results_["rank_test_score"]
    best_two = {str(search.cv_results_["params"][i]["C"]) for i in np.argsort(ranks, kind="stable")[:2]}
    assert {c.params["C"] for c in children} == best_two
    for child in children:
        index = int(child.tags["autolog.candidate_index"])
        assert child.metrics["mean_test_score"] == pytest.approx(search.cv_results_["mean_test_score"][index])
        assert child.metrics["std_test_score"] == pytest.approx(search.cv_results_["std_test_score"][index])
    loaded = autolog.load_model(parent.run_id)
    np.testing.assert_array_equal(loaded.best_estimator_.predict(X), search.best_estimator_.predict(X))
    np.testing.assert_array_equal(loaded.predict(X), search.predict(X))


def test_grid_search_with_threads_makes_no_runs_for_inner_fits(clf_data):
    X, y = clf_data
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    autolog.autolog(max_tuning_runs=0)
    with parallel_backend("threading", n_jobs=2):
        GridSearchCV(LogisticRegression(max_iter=300), {"C": [0.1, 1.0]}, cv=2, n_jobs=2).fit(X, y)
    assert [r.tags["estimator_name"] for r in all_runs()] == ["GridSearchCV"]


@pytest.mark.parametrize("kind", ["randomized", "halving-grid", "halving-random"])
def test_other_searches(clf_data, kind):
    X, y = clf_data
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingGridSearchCV, HalvingRandomSearchCV, RandomizedSearchCV

    grid = {"C": [0.01, 0.1, 1.0, 10.0]}
    make = {
        "randomized": lambda: RandomizedSearchCV(LogisticRegression(max_iter=300), grid, n_iter=3, cv=2, random_state=0),
        "halving-grid": lambda: HalvingGridSearchCV(LogisticRegression(max_iter=300), grid, cv=2, random_state=0),
        "halving-random": lambda: HalvingRandomSearchCV(LogisticRegression(max_iter=300), grid, n_candidates=4, cv=2,
                                                         random_state=0),
    }[kind]
    autolog.autolog()
    search = make().fit(X, y)
    found = all_runs()
    parent = next(r for r in found if r.parent_run_id is None)
    assert parent.params["best_C"] == str(search.best_params_["C"])
    children = [r for r in found if r.parent_run_id == parent.run_id]
    assert 1 <= len(children) <= 5 and len(found) == len(children) + 1


def test_cross_val_score_is_one_run_with_per_fold_scores(clf_data):
    X, y = clf_data
    autolog.autolog()
    from sklearn.model_selection import cross_val_score  # imported after autolog(): the patched function

    scores = cross_val_score(LogisticRegression(max_iter=300), X, y, cv=4)
    run = only_run()
    steps = sorted((m.step, m.value) for m in history(run.run_id, "test_score"))
    assert [s for s, _ in steps] == [0, 1, 2, 3]
    np.testing.assert_allclose([v for _, v in steps], scores)
    assert run.metrics["mean_test_score"] == pytest.approx(scores.mean())
    assert run.params["C"] == "1.0" and run.params["cross_val_score.cv"] == "4"


def test_cross_validate_logs_every_score_kind(reg_data):
    X, y = reg_data
    autolog.autolog()
    from sklearn.model_selection import cross_val_predict, cross_validate

    result = cross_validate(LinearRegression(), X, y, cv=3, scoring=("r2", "neg_mean_absolute_error"),
                            return_train_score=True)
    run = only_run()
    assert run.metrics["mean_test_r2"] == pytest.approx(result["test_r2"].mean())
    assert run.metrics["mean_train_neg_mean_absolute_error"] == pytest.approx(
        result["train_neg_mean_absolute_error"].mean())
    assert len(history(run.run_id, "test_r2")) == 3
    cross_val_predict(LinearRegression(), X, y, cv=3)
    assert len(all_runs()) == 2


def test_cross_val_score_imported_before_enabling_still_logs_one_run(clf_data):
    from sklearn.model_selection import cross_val_score  # the original function: its inner cross_validate logs

    X, y = clf_data
    autolog.autolog()
    scores = cross_val_score(LogisticRegression(max_iter=300), X, y, cv=3)
    run = only_run()
    assert run.tags["autolog.sklearn_function"] == "cross_validate"
    assert run.metrics["mean_test_score"] == pytest.approx(scores.mean())


# -- the wine-quality tutorial loop -------------------------------------------------------------------
def test_elastic_net_sweep_gives_twelve_comparable_runs(reg_data, capsys):
    X, y = reg_data
    autolog.autolog()
    grid = [(a, r) for a in (0.1, 0.5, 1.0, 2.0) for r in (0.2, 0.5, 0.8)]
    for alpha, l1_ratio in grid:
        ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42).fit(X, y)
    found = all_runs()
    assert len(found) == 12
    assert {(r.params["alpha"], r.params["l1_ratio"]) for r in found} == {(str(a), str(r)) for a, r in grid}
    assert all("training_r2_score" in r.metrics for r in found)
    from autolog import cli

    capsys.readouterr()
    assert cli.main(["compare", found[0].run_id, found[1].run_id, "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    keys = {row["key"]: row for row in compared["params"]}
    assert keys["alpha"]["values"] == [found[0].params["alpha"], found[1].params["alpha"]]
    assert any(row["key"] == "training_r2_score" for row in compared["metrics"])


# -- enabling before the import, and disable ------------------------------------------------------------
def test_enable_before_importing_sklearn(tmp_path):
    script = (
        "import autolog, sys\n"
        "autolog.autolog()\n"
        "assert 'sklearn' not in sys.modules\n"
        "from sklearn.tree import DecisionTreeClassifier\n"
        "DecisionTreeClassifier(max_depth=2).fit([[0], [1], [2], [3]], [0, 0, 1, 1])\n"
        "autolog.flush()\n"
        "run = autolog.last_run()\n"
        "print(run.params['max_depth'], run.metrics['training_accuracy_score'])\n"
    )
    env = dict(os.environ, AUTOLOG_TRACKING_URI=str(tmp_path / "store"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "1.0"]


def test_disable_then_enable_again(clf_data):
    X, y = clf_data
    autolog.autolog()
    LogisticRegression(max_iter=300).fit(X, y)
    autolog.autolog(disable=True)
    model = LogisticRegression(max_iter=300).fit(X, y)
    model.score(X, y)
    assert len(all_runs()) == 1
    autolog.autolog()
    LogisticRegression(max_iter=300).fit(X, y)
    assert len(all_runs()) == 2


def test_every_estimator_of_all_estimators_has_its_fit_patched():
    from sklearn.utils import all_estimators

    from autolog.instrument.integration import engine

    autolog.autolog()
    patcher = engine.patched()["sklearn"]
    missing = []
    for name, cls in all_estimators():
        for method in ("fit", "fit_transform", "fit_predict"):
            owner = next((c for c in cls.__mro__ if method in vars(c)), None)
            if owner is not None and not patcher.is_wrapped(owner, method):
                missing.append(f"{name}.{method} (defined on {owner.__qualname__})")
    assert missing == []
    assert len(all_estimators()) > 150



def test_two_threads_training_at_once_get_two_runs(clf_data, reg_data):
    X, y = clf_data
    Xr, yr = reg_data
    autolog.autolog()
    barrier = threading.Barrier(2)
    errors = []

    def train(make, X, y):
        try:
            barrier.wait(timeout=30)
            make().fit(X, y)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=train, args=(lambda: LogisticRegression(max_iter=300), X, y)),
               threading.Thread(target=train, args=(Ridge, Xr, yr))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    found = {r.tags["estimator_name"]: r for r in all_runs()}
    assert set(found) == {"LogisticRegression", "Ridge"}
    assert all(r.parent_run_id is None for r in found.values())
    assert "training_accuracy_score" in found["LogisticRegression"].metrics
    assert "training_r2_score" in found["Ridge"].metrics


def test_estimators_of_a_library_with_its_own_integration_are_left_to_it(clf_data, monkeypatch):
    """The scikit-learn API of a library that has its own integration (xgboost, lightgbm)
    is logged by that integration, once, not by this one."""
    import types

    from autolog.instrument.integration import Integration, register_integration, unregister_integration

    X, y = clf_data
    library = types.ModuleType("fakeboost")
    exec(
        "import numpy as np\n"
        "from sklearn.base import BaseEstimator, ClassifierMixin\n"
        "class BoostClassifier(ClassifierMixin, BaseEstimator):\n"
        "    def fit(self, X, y):\n"
        "        self.classes_ = np.unique(y)\n"
        "        return self\n"
        "    def predict(self, X):\n"
        "        return np.full(len(X), self.classes_[0])\n",
        library.__dict__,
    )

    class FakeboostIntegration(Integration):
        name = "fakeboost"
        module = "fakeboost"

        def patch(self, patcher):
            def fit(wrapped, instance, args, kwargs):
                with runs_module.TrainingCall("fakeboost", "BoostClassifier") as call:
                    result = wrapped(*args, **kwargs)
                    if call.run is not None:
                        call.run.set_tag("logged_by", "fakeboost")
                    return result

            patcher.wrap(library, "BoostClassifier.fit", fit)

    library.FakeboostIntegration = FakeboostIntegration
    monkeypatch.setitem(sys.modules, "fakeboost", library)
    register_integration("fakeboost", "fakeboost:FakeboostIntegration")
    try:
        autolog.autolog(integrations=["sklearn", "fakeboost"])
        library.BoostClassifier().fit(X, y)
        run = only_run()
        assert run.tags["logged_by"] == "fakeboost" and "estimator_name" not in run.tags
        autolog.autolog(integrations=["sklearn"])  # without its own integration, sklearn's logs it
        library.BoostClassifier().fit(X, y)
        assert all_runs()[0].tags["estimator_name"] == "BoostClassifier"
    finally:
        unregister_integration("fakeboost")


def test_post_fit_work_waits_while_another_fit_runs(clf_data, monkeypatch):
    """In a loop of fits, the worker computes fit k's metrics between fits, not during fit k+1."""
    from autolog.integrations import sklearn as integration

    X, y = clf_data
    monkeypatch.setattr(integration.activity, "max_wait_s", 120.0)
    started, release = threading.Event(), threading.Event()

    class Slow(MajorityClassifier):
        def fit(self, X, y):
            started, release = self.gate_
            del self.gate_  # the fitted model stays picklable
            started.set()
            release.wait(timeout=60)
            return super().fit(X, y)

    autolog.autolog()
    Ridge().fit(X, y)
    autolog.flush()  # warm: the worker has imported what it needs
    with autolog.start_run(run_name="holding the worker") as holder:
        # the worker waits here until the next fit has begun: the LogisticRegression's work, queued
        # behind this, cannot be done in the moment between the two fits (a race, not the behaviour)
        holder.defer(lambda: started.wait(60), label="holding the worker until the slow fit starts")
    LogisticRegression(max_iter=300).fit(X, y)
    logistic = runs_module.lifecycle._state.last_run_id  # its id, not the run read back (that flushes)
    slow = Slow()
    slow.gate_ = (started, release)
    second = threading.Thread(target=lambda: slow.fit(X, y))
    second.start()
    try:
        assert started.wait(timeout=60)
        # the work of the fit before is held back while this one runs (it takes well under 3 s);
        # read from the store directly: autolog.flush() would have the work done now (its caller waits)
        time.sleep(3.0)
        assert "training_accuracy_score" not in runs_module.logger_for().backend.get_run(logistic).metrics
    finally:
        release.set()
        second.join(timeout=60)
    assert autolog.flush(timeout=60) is True
    found = {r.tags.get("estimator_name", r.run_name): r for r in all_runs()}
    assert set(found) == {"Ridge", "holding the worker", "LogisticRegression", "Slow"}
    assert "training_accuracy_score" in found["LogisticRegression"].metrics
    assert "training_accuracy_score" in found["Slow"].metrics


def test_a_full_backlog_does_not_hold_the_worker_back(clf_data, monkeypatch):
    """Past the bound of pending post-fit jobs the training thread waits for the worker inside the
    fit's hooks; that wait is not a fit, so the worker's job, which makes room, does not wait for it
    to end (it did, `max_wait_s` per fit: a loop of short fits crawled)."""
    from autolog.integrations import sklearn as integration

    X, y = clf_data
    monkeypatch.setenv("AUTOLOG_MAX_DEFERRED_JOBS", "1")
    monkeypatch.setattr(integration.activity, "max_wait_s", 120.0)
    autolog.autolog()
    loop = threading.Thread(target=lambda: [Ridge(alpha=a).fit(X, y) for a in (1.0, 2.0, 3.0, 4.0)])
    loop.start()
    loop.join(timeout=60)  # four fits of a few ms: with the worker waiting 120 s a job, minutes
    assert not loop.is_alive()
    assert autolog.flush(timeout=60) is True
    assert sorted(r.params["alpha"] for r in all_runs()) == ["1.0", "2.0", "3.0", "4.0"]


def test_a_wrong_call_raises_the_users_own_error(clf_data):
    X, y = clf_data
    autolog.autolog()
    from sklearn.model_selection import cross_val_score

    with pytest.raises(TypeError, match="not_an_argument"):
        cross_val_score(LogisticRegression(), X, y, not_an_argument=1)
    with pytest.raises(TypeError):
        LogisticRegression().fit(X)  # y missing: the run says FAILED
    assert only_run().status == "FAILED"


def test_statsmodels_inside_an_sklearn_wrapper_is_one_run(reg_data):
    sm = pytest.importorskip("statsmodels.api")
    X, y = reg_data

    class OLSRegressor(RegressorMixin, BaseEstimator):
        def fit(self, X, y):
            self.results_ = sm.OLS(y, sm.add_constant(X)).fit()
            return self

        def predict(self, X):
            return self.results_.predict(sm.add_constant(X))

    autolog.autolog()
    OLSRegressor().fit(X, y)
    run = only_run()
    assert run.tags["estimator_name"] == "OLSRegressor" and run.tags["autolog.integration"] == "sklearn"
    assert "training_r2_score" in run.metrics


# -- the disable-identity test (tests/integrations/test_disable_identity.py) -------------------------
def identity_owners() -> list:
    """Everything the integration may patch: every estimator class and its bases, the
    metrics and model-selection modules, joblib's dispatch helper."""
    import sklearn.metrics
    import sklearn.model_selection
    import sklearn.model_selection._validation
    import sklearn.utils.parallel
    from sklearn.utils import all_estimators

    owners = {BaseEstimator, sklearn.metrics, sklearn.model_selection, sklearn.model_selection._validation,
              sklearn.utils.parallel._FuncWrapper}
    for _, cls in all_estimators():
        owners.update(c for c in cls.__mro__ if c is not object)
    return list(owners)


def identity_train() -> None:
    """A fit, a prediction scored by a metric, a score, a cross-validation."""
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import cross_val_score

    X, y = [[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]], [0, 0, 0, 1, 1, 1]
    model = LogisticRegression().fit(X, y)
    accuracy_score(y, model.predict(X))
    model.score(X, y)
    cross_val_score(LogisticRegression(), X, y, cv=2)


def test_fit_records_the_training_dataset_as_mlflow_log_input_does():
    from sklearn.linear_model import LogisticRegression

    autolog.autolog()
    X_train = np.random.RandomState(0).rand(60, 3)
    y_train = (X_train[:, 0] > 0.5).astype(int)
    LogisticRegression().fit(X_train, y_train)
    run = autolog.last_run()
    assert [(i.dataset.name, i.context) for i in run.inputs] == [("X_train", "train")]
    profile = json.loads(run.inputs[0].dataset.profile)
    assert profile["features_shape"] == [60, 3] and profile["targets_shape"] == [60]


def test_log_datasets_false_records_no_dataset():
    from sklearn.linear_model import LogisticRegression

    autolog.autolog(log_datasets=False)
    LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    assert autolog.last_run().inputs == []
