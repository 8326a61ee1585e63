"""The XGBoost integration, with the real library: what a user sees in the store."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys

import numpy as np
import pytest

import autolog
from autolog import runs as runs_module
from autolog.backends import get_backend

xgb = pytest.importorskip("xgboost")


def load_common():
    """tests/integrations/gbdt_common.py, shared with test_lightgbm.py (imported by path: the
    tests are not a package)."""
    name = "autolog_tests_gbdt_common"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), "gbdt_common.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


common = load_common()
all_runs, only_run, artifacts, history = common.all_runs, common.only_run, common.artifacts, common.history
no_plots_unless_asked = common.no_plots_unless_asked

from sklearn import metrics as sklearn_metrics  # noqa: E402 - its functions as patched at call time
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

IMPORTANCE_TYPES = ("weight", "gain", "cover", "total_gain", "total_cover")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    return X[:200], y[:200], X[200:], y[200:]


@pytest.fixture
def dmatrices(data):
    X, y, Xv, yv = data
    return xgb.DMatrix(X, y, feature_names=[f"x{i}" for i in range(5)]), \
        xgb.DMatrix(Xv, yv, feature_names=[f"x{i}" for i in range(5)])


PARAMS = {"objective": "binary:logistic", "eval_metric": ["logloss", "error@0.6"], "max_depth": 3, "eta": 0.3,
          "nthread": 1}


# -- xgboost.train ----------------------------------------------------------------------------
def test_train_logs_params_metrics_per_iteration_importances_and_model(dmatrices, tmp_path):
    dtrain, dvalid = dmatrices
    autolog.autolog(log_plots=True)
    booster = xgb.train(PARAMS, dtrain, 12, evals=[(dtrain, "train"), (dvalid, "valid")], verbose_eval=False)
    run = only_run()
    assert run.status == "FINISHED" and run.tags["autolog.integration"] == "xgboost"
    params = run.params
    assert params["max_depth"] == "3" and params["eta"] == "0.3" and params["objective"] == "binary:logistic"
    assert params["num_boost_round"] == "12" and params["verbose_eval"] == "False"
    assert params["maximize"] == "None" and params["early_stopping_rounds"] == "None"  # defaults too, as MLflow
    assert "dtrain" not in params and "callbacks" not in params and "evals" not in params
    # every eval set's metrics each iteration, step = iteration, "@" spelled "_at_"
    expected = booster.eval_set([(dvalid, "valid")])
    for key in ("train-logloss", "valid-logloss", "train-error_at_0.6", "valid-error_at_0.6"):
        steps = history(run.run_id, key)
        assert [s for s, _ in steps] == list(range(12)), key
    assert history(run.run_id, "valid-logloss")[-1][1] == pytest.approx(float(expected.split("valid-logloss:")[1].split()[0]),
                                                                          abs=1e-5)
    assert "stopped_iteration" not in run.metrics  # no early stopping asked for
    names = artifacts(run.run_id)
    for importance_type in IMPORTANCE_TYPES:
        assert f"feature_importance_{importance_type}.json" in names
    # the chart MLflow draws (its default importance_types); the other types as JSON only
    assert [n for n in names if n.endswith(".png")] == ["feature_importance_weight.png"]
    folder = common.download(run.run_id, "feature_importance_gain.json", tmp_path)
    with open(folder) as fh:
        assert json.load(fh) == pytest.approx(booster.get_score(importance_type="gain"))
    loaded = autolog.load_model(run.run_id)
    assert isinstance(loaded, xgb.Booster)
    np.testing.assert_array_equal(loaded.predict(dvalid), booster.predict(dvalid))


def test_the_model_folder_is_mlflows_xgboost_format(dmatrices, data, tmp_path):
    import mlflow.pyfunc
    import mlflow.xgboost

    dtrain, dvalid = dmatrices
    autolog.autolog()
    booster = xgb.train(PARAMS, dtrain, 5)
    folder = common.download(only_run().run_id, "model", tmp_path)
    assert "model.ubj" in os.listdir(folder)
    meta = json.load(open(os.path.join(folder, "MLmodel")))
    assert meta["flavors"]["xgboost"] == {"xgb_version": xgb.__version__, "data": "model.ubj",
                                          "model_class": "xgboost.core.Booster", "model_format": "ubj", "code": None}
    assert meta["flavors"]["python_function"]["loader_module"] == "mlflow.xgboost"
    expected = booster.predict(dvalid)
    np.testing.assert_array_equal(mlflow.xgboost.load_model(folder).predict(dvalid), expected)
    import pandas as pd

    frame = pd.DataFrame(data[2], columns=[f"x{i}" for i in range(5)])
    np.testing.assert_allclose(mlflow.pyfunc.load_model(folder).predict(frame), expected, rtol=1e-6)



def test_mlflow_pyfunc_loads_the_model_by_its_runs_uri(data, store_dir):
    X, y, Xv, _ = data
    autolog.autolog()
    model = xgb.XGBClassifier(n_estimators=3, n_jobs=1).fit(X, y)
    loaded = common.mlflow_pyfunc_from_run(only_run().run_id, store_dir)
    np.testing.assert_array_equal(loaded.predict(Xv), model.predict(Xv))


def test_autolog_log_model_writes_boosters_and_wrappers_in_this_format(dmatrices, data):
    X, y, Xv, _ = data
    booster = xgb.train(PARAMS, dmatrices[0], 3)
    wrapper = xgb.XGBRegressor(n_estimators=3, n_jobs=1).fit(X, y)
    with autolog.start_run() as run:
        autolog.log_model(booster, "booster")
        autolog.log_model(wrapper, "wrapper")
    np.testing.assert_array_equal(autolog.load_model(f"runs:/{run.run_id}/booster").predict(dmatrices[1]),
                                  booster.predict(dmatrices[1]))
    np.testing.assert_array_equal(autolog.load_model(f"runs:/{run.run_id}/wrapper").predict(Xv), wrapper.predict(Xv))


def test_the_users_callbacks_are_untouched_and_still_called(dmatrices):
    dtrain, dvalid = dmatrices
    seen = []

    class Mine(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
            seen.append(epoch)
            return False

    mine = Mine()
    callbacks = [mine]
    autolog.autolog()
    xgb.train(PARAMS, dtrain, 4, evals=[(dvalid, "valid")], callbacks=callbacks, verbose_eval=False)
    assert callbacks == [mine] and seen == [0, 1, 2, 3]
    assert [s for s, _ in history(only_run().run_id, "valid-logloss")] == [0, 1, 2, 3]


def test_early_stopping_metrics_as_mlflow_logs_them(dmatrices):
    dtrain, dvalid = dmatrices
    autolog.autolog()
    booster = xgb.train({**PARAMS, "eta": 0.9, "max_depth": 6}, dtrain, 60, evals=[(dtrain, "train"), (dvalid, "valid")],
                        early_stopping_rounds=3, verbose_eval=False)
    run = only_run()
    valid = history(run.run_id, "valid-logloss")
    last = booster.num_boosted_rounds() - 1
    assert last < 59, "the data should make it stop early"
    assert run.metrics["stopped_iteration"] == last
    assert run.metrics["best_iteration"] == booster.best_iteration
    assert run.params["early_stopping_rounds"] == "3"
    # the best iteration's metrics again, at the step after the last iteration
    by_step = dict(valid)
    assert by_step[last + 1] == by_step[booster.best_iteration]
    assert dict(history(run.run_id, "train-logloss"))[last + 1] == dict(history(run.run_id, "train-logloss"))[
        booster.best_iteration]


def test_cv_logs_mean_and_std_per_iteration(dmatrices):
    dtrain, _ = dmatrices
    autolog.autolog()
    result = xgb.cv({"objective": "binary:logistic", "max_depth": 2, "nthread": 1}, dtrain, 6, nfold=3, seed=1)
    run = only_run()
    assert run.run_name.startswith("xgboost.cv") and run.params["nfold"] == "3" and run.params["max_depth"] == "2"
    for column in ("train-logloss-mean", "train-logloss-std", "test-logloss-mean", "test-logloss-std"):
        values = history(run.run_id, column)
        assert [s for s, _ in values] == list(range(6))
        np.testing.assert_allclose([v for _, v in values], result[column].to_numpy(), rtol=1e-6)
    assert not any(a.startswith("model") for a in artifacts(run.run_id))


def test_cv_with_early_stopping_logs_where_it_stopped(dmatrices):
    dtrain, _ = dmatrices
    autolog.autolog()
    result = xgb.cv({**PARAMS, "eta": 0.9, "max_depth": 6}, dtrain, 60, nfold=3, seed=1, early_stopping_rounds=3)
    run = only_run()
    best = len(result) - 1  # xgb.cv keeps the rounds up to the best one
    assert run.metrics["best_iteration"] == best < 59
    by_step = dict(history(run.run_id, "test-logloss-mean"))
    last = int(run.metrics["stopped_iteration"])
    assert sorted(by_step) == list(range(last + 2)) and by_step[last + 1] == by_step[best]


# -- the scikit-learn wrappers ---------------------------------------------------------------------
def test_classifier_fit_is_one_run_with_get_params_training_metrics_and_the_wrapper(data, tmp_path):
    from sklearn import metrics

    X, y, Xv, yv = data
    autolog.autolog(log_plots=True)
    model = xgb.XGBClassifier(n_estimators=8, max_depth=2, n_jobs=1).fit(X, y, eval_set=[(X, y), (Xv, yv)],
                                                                          verbose=False)
    run = only_run()
    assert run.run_name.startswith("XGBClassifier")
    assert run.tags["estimator_name"] == "XGBClassifier"
    assert run.tags["estimator_class"] == "xgboost.sklearn.XGBClassifier"
    params = run.params
    assert params["n_estimators"] == "8" and params["num_boost_round"] == "8" and params["max_depth"] == "2"
    assert params["objective"] == "binary:logistic"
    assert [s for s, _ in history(run.run_id, "validation_1-logloss")] == list(range(8))
    assert "validation_0-logloss" in run.metrics
    assert run.metrics["training_accuracy_score"] == pytest.approx(metrics.accuracy_score(y, model.predict(X)))
    assert run.metrics["training_log_loss"] == pytest.approx(metrics.log_loss(y, model.predict_proba(X)), rel=1e-5)
    assert run.metrics["training_roc_auc"] == pytest.approx(metrics.roc_auc_score(y, model.predict_proba(X)[:, 1]))
    names = artifacts(run.run_id)
    assert "training_confusion_matrix.png" in names and "feature_importance_weight.json" in names
    assert {"training_roc_curve.png", "training_precision_recall_curve.png"} <= set(names)  # two classes, as mlflow
    loaded = autolog.load_model(run.run_id)
    assert type(loaded) is xgb.XGBClassifier
    np.testing.assert_array_equal(loaded.predict_proba(Xv), model.predict_proba(Xv))
    folder = common.download(run.run_id, "model", tmp_path)
    meta = json.load(open(os.path.join(folder, "MLmodel")))
    assert meta["flavors"]["xgboost"]["model_class"] == "xgboost.sklearn.XGBClassifier"
    assert json.loads(meta["signature"]["inputs"])[0]["tensor-spec"]["shape"] == [-1, 5]
    import mlflow.xgboost

    np.testing.assert_array_equal(mlflow.xgboost.load_model(folder).predict(Xv), model.predict(Xv))


@pytest.mark.parametrize("make", [
    lambda: xgb.XGBRegressor(n_estimators=5, n_jobs=1),
    lambda: xgb.XGBRFRegressor(n_estimators=3, n_jobs=1),
    lambda: xgb.XGBRFClassifier(n_estimators=3, n_jobs=1),
], ids=["XGBRegressor", "XGBRFRegressor", "XGBRFClassifier"])
def test_other_wrappers_are_one_run_each(data, make):
    X, y, _, _ = data
    autolog.autolog()
    model = make().fit(X, y)
    run = only_run()
    assert run.tags["estimator_name"] == type(model).__name__
    assert "training_score" in run.metrics
    np.testing.assert_allclose(autolog.load_model(run.run_id).predict(X), model.predict(X), rtol=1e-6)


def test_ranker_fit_is_one_run(data):
    X, y, _, _ = data
    autolog.autolog()
    ranker = xgb.XGBRanker(n_estimators=4, n_jobs=1).fit(X, y, qid=np.repeat(np.arange(20), 10))
    run = only_run()
    assert run.tags["estimator_name"] == "XGBRanker" and run.params["n_estimators"] == "4"
    np.testing.assert_allclose(autolog.load_model(run.run_id).predict(X), ranker.predict(X), rtol=1e-6)


def test_a_wrappers_training_and_eval_data_are_dataset_inputs(data):
    import json as json_module

    X, y, Xv, yv = data
    autolog.autolog()
    xgb.XGBClassifier(n_estimators=2, n_jobs=1).fit(X, y, eval_set=[(Xv, yv)], verbose=False)
    inputs = {(i.context, i.dataset.name): i.dataset for i in only_run().inputs}
    assert set(inputs) == {("train", "dataset"), ("eval", "validation_0")}
    profile = json_module.loads(inputs[("train", "dataset")].profile)
    assert profile["features_shape"] == [200, 5]

    autolog.autolog(log_datasets=False)
    xgb.XGBClassifier(n_estimators=2, n_jobs=1).fit(X, y, eval_set=[(Xv, yv)], verbose=False)
    assert all_runs()[0].inputs == []


def test_wrappers_inside_sklearn_pipeline_and_search_keep_sklearns_runs(data):
    X, y, _, _ = data
    autolog.autolog()
    make_pipeline(StandardScaler(), xgb.XGBClassifier(n_estimators=3, n_jobs=1)).fit(X, y)
    run = only_run()
    assert run.tags["autolog.integration"] == "sklearn" and run.tags["estimator_name"] == "Pipeline"
    assert not any(k.startswith("validation_") for k in run.metrics)

    GridSearchCV(xgb.XGBClassifier(n_estimators=3, n_jobs=1), {"max_depth": [2, 3]}, cv=2).fit(X, y)
    found = all_runs()
    search = [r for r in found if r.tags.get("estimator_name") == "GridSearchCV"]
    assert len(search) == 1
    children = [r for r in found if r.parent_run_id == search[0].run_id]
    assert len(children) == 2 and len(found) == 4


def test_a_wrapper_subclass_calling_super_fit_is_one_run(data):
    X, y, _, _ = data

    class Mine(xgb.XGBClassifier):
        def fit(self, X, y, **kwargs):
            return super().fit(X, y, **kwargs)

    autolog.autolog()
    Mine(n_estimators=3, n_jobs=1).fit(X, y)
    assert only_run().tags["estimator_name"] == "Mine"


# -- checkpoints ---------------------------------------------------------------------------------
@pytest.mark.parametrize("as_pickle", [False, True], ids=["ubj", "pickle"])
def test_training_checkpoint_files_land_in_the_runs_checkpoints(dmatrices, tmp_path, as_pickle):
    dtrain, _ = dmatrices
    folder = tmp_path / "ckpt"
    folder.mkdir()
    autolog.autolog()
    xgb.train(PARAMS, dtrain, 7, callbacks=[xgb.callback.TrainingCheckPoint(str(folder), interval=3,
                                                                            as_pickle=as_pickle)])
    run = only_run()
    extension = "pkl" if as_pickle else "ubj"
    written = sorted(os.listdir(folder))
    assert written == [f"model_{i}.{extension}" for i in (3, 6)]
    logged = artifacts(run.run_id, "checkpoints")
    for name in written:
        assert f"checkpoints/{name}" in logged and f"checkpoints/{name}.json" in logged
    path = common.download(run.run_id, f"checkpoints/{written[-1]}", tmp_path)
    with open(path, "rb") as fh, open(folder / written[-1], "rb") as original:
        assert fh.read() == original.read()


def test_keep_last_checkpoints(dmatrices, tmp_path, monkeypatch):
    dtrain, _ = dmatrices
    monkeypatch.setenv("AUTOLOG_KEEP_LAST_CHECKPOINTS", "1")
    autolog.autolog()
    xgb.train(PARAMS, dtrain, 7, callbacks=[xgb.callback.TrainingCheckPoint(str(tmp_path), interval=2)])
    logged = artifacts(only_run().run_id, "checkpoints")
    assert [a for a in logged if not a.endswith(".json")] == ["checkpoints/model_6.ubj"]


def test_a_booster_saved_outside_training_is_no_checkpoint(dmatrices, tmp_path):
    dtrain, _ = dmatrices
    autolog.autolog()
    booster = xgb.train(PARAMS, dtrain, 2)
    booster.save_model(str(tmp_path / "final.ubj"))
    assert artifacts(only_run().run_id, "checkpoints") == []


# -- options ------------------------------------------------------------------------------------
def test_log_models_false_keeps_everything_else(dmatrices):
    dtrain, dvalid = dmatrices
    autolog.autolog(log_models=False)
    xgb.train(PARAMS, dtrain, 3, evals=[(dvalid, "valid")], verbose_eval=False)
    run = only_run()
    names = artifacts(run.run_id)
    assert "model" not in names and "feature_importance_weight.json" in names
    assert "valid-logloss" in run.metrics


def test_max_model_size_skips_the_model_with_a_tag(dmatrices, caplog):
    dtrain, _ = dmatrices
    autolog.autolog(max_model_size_mb=0.0001)
    with caplog.at_level(logging.WARNING, logger="autolog"):
        xgb.train(PARAMS, dtrain, 5)
    run = only_run()
    assert "over max_model_size_mb" in run.tags["autolog.model_skipped"]
    assert "model" not in artifacts(run.run_id)
    assert "feature_importance_gain.json" in artifacts(run.run_id)


# -- bad input -------------------------------------------------------------------------------------
def test_a_custom_metric_returning_nan_is_skipped_with_one_warning(dmatrices, caplog):
    dtrain, dvalid = dmatrices

    def nan_metric(predt, dmat):
        return "nanmetric", float("nan")

    plain = xgb.train(PARAMS, dtrain, 4, evals=[(dvalid, "valid")], custom_metric=nan_metric, verbose_eval=False)
    autolog.autolog()
    with caplog.at_level(logging.WARNING, logger="autolog"):
        booster = xgb.train(PARAMS, dtrain, 4, evals=[(dvalid, "valid")], custom_metric=nan_metric, verbose_eval=False)
    run = only_run()
    np.testing.assert_array_equal(booster.predict(dvalid), plain.predict(dvalid))
    assert "valid-nanmetric" not in run.metrics and len(history(run.run_id, "valid-logloss")) == 4
    warnings = [r for r in caplog.records if "valid-nanmetric" in r.getMessage()]
    assert len(warnings) == 1
    assert "model" in artifacts(run.run_id)


def test_a_custom_metric_returning_a_list_fails_as_it_does_without_autolog(dmatrices):
    dtrain, dvalid = dmatrices

    def list_metric(predt, dmat):
        return "listmetric", [1.0, 2.0]

    with pytest.raises(TypeError) as plain:
        xgb.train(PARAMS, dtrain, 3, evals=[(dvalid, "valid")], custom_metric=list_metric, verbose_eval=False)
    autolog.autolog()
    with pytest.raises(TypeError) as logged:
        xgb.train(PARAMS, dtrain, 3, evals=[(dvalid, "valid")], custom_metric=list_metric, verbose_eval=False)
    assert str(logged.value) == str(plain.value)  # XGBoost's own error, unchanged
    run = only_run()
    assert run.status == "FAILED" and run.params["num_boost_round"] == "3"


def test_a_dmatrix_without_feature_names(data, tmp_path):
    X, y, _, _ = data
    autolog.autolog()
    booster = xgb.train(PARAMS, xgb.DMatrix(X, y), 3)
    run = only_run()
    path = common.download(run.run_id, "feature_importance_weight.json", tmp_path)
    with open(path) as fh:
        assert json.load(fh) == booster.get_score(importance_type="weight")
    assert set(booster.get_score()) <= {f"f{i}" for i in range(5)}


class UnsavableBooster(xgb.Booster):
    """A user's Booster subclass whose serialisation fails (as a booster holding a live
    resource would)."""

    def save_raw(self, raw_format="ubj"):
        raise RuntimeError("this booster cannot be serialised")


class HandsBackUnsavable(xgb.callback.TrainingCallback):
    """A user callback that hands back its own Booster subclass from `after_training`,
    which xgboost.train returns."""

    def after_training(self, model):
        return UnsavableBooster(model_file=model.save_raw())


def test_a_booster_that_cannot_be_saved_warns_once_and_logs_the_rest(dmatrices, caplog):
    dtrain, dvalid = dmatrices
    autolog.autolog()
    with caplog.at_level(logging.WARNING, logger="autolog"):
        booster = xgb.train(PARAMS, dtrain, 3, evals=[(dvalid, "valid")], callbacks=[HandsBackUnsavable()],
                            verbose_eval=False)
    assert isinstance(booster, UnsavableBooster)
    run = only_run()
    assert run.status == "FINISHED" and run.params["max_depth"] == "3" and "valid-logloss" in run.metrics
    names = artifacts(run.run_id)
    assert "model" not in names and "feature_importance_gain.json" in names
    assert len([r for r in caplog.records if "cannot be saved" in r.getMessage()]) == 1


# -- cost ----------------------------------------------------------------------------------------------
def test_a_thousand_rounds_make_a_handful_of_backend_writes(data, monkeypatch):
    X, y, Xv, yv = data
    uri = "memory:xgboost-thousand-rounds"
    autolog.autolog(tracking_uri=uri, log_models=False, log_plots=False)
    dtrain, dvalid = xgb.DMatrix(X, y), xgb.DMatrix(Xv, yv)
    xgb.train({"max_depth": 2, "nthread": 1, "eta": 0.01}, dtrain, 1000, evals=[(dtrain, "train"), (dvalid, "valid")],
              verbose_eval=False)
    runs_module.flush()
    backend = get_backend(uri)
    (run_id,) = list(backend.runs)
    assert len(backend.metric_history[(run_id, "valid-rmse")]) == 1000
    writes = [method for method, rid in backend.calls if rid == run_id and method == "log_batch"]
    assert 1 <= len(writes) <= 10, len(writes)


# -- enable, disable, enable -----------------------------------------------------------------------------
def identity_owners() -> list:
    """What the integration patches: the package, its sklearn module, the wrapper classes, the
    Booster and the checkpoint callback."""
    import xgboost.callback
    import xgboost.core
    import xgboost.sklearn

    owners = [xgboost, xgboost.sklearn, xgboost.core.Booster, xgboost.callback.TrainingCheckPoint]
    owners += [cls for cls in vars(xgboost.sklearn).values()
               if isinstance(cls, type) and issubclass(cls, xgboost.sklearn.XGBModel)]
    return owners


def identity_train() -> None:
    """train (with a checkpoint callback), cv and a wrapper's fit."""
    import tempfile

    X = np.arange(40.0).reshape(20, 2)
    y = (X[:, 0] > 20).astype(int)
    with tempfile.TemporaryDirectory() as folder:
        xgb.train({"nthread": 1}, xgb.DMatrix(X, y), 3, callbacks=[xgb.callback.TrainingCheckPoint(folder, interval=1)])
    xgb.cv({"nthread": 1}, xgb.DMatrix(X, y), 2, nfold=2)
    xgb.XGBClassifier(n_estimators=2, n_jobs=1).fit(X, y)


def test_enable_train_disable_identity_and_nothing_logged_then_enable_again():
    common.round_trip("xgboost", identity_owners(), identity_train, runs_per_train=3,
                      must_patch=[(xgb, "train"), (xgb.sklearn, "train"), (xgb.XGBClassifier, "fit")])


def test_with_every_integration_enabled_disable_restores_identity():
    """sklearn wraps XGBModel.fit too (and lets it through to this integration): disabling every
    integration restores it whichever of the two the engine reverts first."""
    common.every_integration_round_trip(identity_owners(), identity_train)


# -- the keys MLflow logs for the same calls --------------------------------------------------------
def test_our_keys_are_a_superset_of_mlflows_for_the_same_calls(data, tmp_path, monkeypatch):
    """train with two eval sets, early stopping and an "@" metric; a classifier and a regressor
    with eval sets: run by run, every param and metric key mlflow.xgboost.autolog() logs, and
    the same values for its metrics."""
    X, y, Xv, yv = data
    names = [f"x{i}" for i in range(5)]

    def train():
        dtrain, dvalid = xgb.DMatrix(X, y, feature_names=names), xgb.DMatrix(Xv, yv, feature_names=names)
        xgb.train({**PARAMS, "eta": 0.9, "max_depth": 6}, dtrain, 40, evals=[(dtrain, "train"), (dvalid, "valid")],
                  early_stopping_rounds=3, verbose_eval=False)
        clf = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1, eval_metric="auc").fit(
            X, y, eval_set=[(Xv, yv)], verbose=False)
        clf.score(Xv, yv)  # post-training metrics, into the classifier's run
        sklearn_metrics.accuracy_score(yv, clf.predict(Xv))
        xgb.XGBRegressor(n_estimators=5, n_jobs=1).fit(X, y.astype(float), eval_set=[(X, y), (Xv, yv)], verbose=False)

    common.assert_superset_of_mlflow("xgboost", train, tmp_path, monkeypatch, expected_runs=3)
    classifier = sorted(all_runs(), key=lambda r: r.start_time)[1]
    assert {"XGBClassifier_score_Xv", "accuracy_score_Xv"} <= set(classifier.metrics)
