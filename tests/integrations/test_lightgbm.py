"""The LightGBM integration, with the real library: what a user sees in the store."""

from __future__ import annotations

import datetime
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

lgb = pytest.importorskip("lightgbm")

from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


def load_common():
    """tests/integrations/gbdt_common.py, shared with test_xgboost.py (imported by path: the
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

PARAMS = {"objective": "binary", "metric": ["binary_logloss", "auc"], "num_leaves": 7, "learning_rate": 0.2,
          "verbose": -1, "num_threads": 1}


def precision_at_5(preds, dataset):
    """A custom metric with "@" in its name, as LightGBM's ranking metrics have (map@3, ndcg@5)."""
    top = np.argsort(-preds)[:5]
    return "precision@5", float(dataset.get_label()[top].mean()), True


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    return X[:200], y[:200], X[200:], y[200:]


@pytest.fixture
def datasets(data):
    X, y, Xv, yv = data
    train = lgb.Dataset(X, y, feature_name=[f"x{i}" for i in range(5)], free_raw_data=False)
    return train, lgb.Dataset(Xv, yv, reference=train, free_raw_data=False)


# -- lightgbm.train ------------------------------------------------------------------------------
def test_train_logs_params_metrics_per_iteration_importances_and_model(datasets, data, tmp_path):
    dtrain, dvalid = datasets
    autolog.autolog(log_plots=True)
    booster = lgb.train(PARAMS, dtrain, 10, valid_sets=[dtrain, dvalid], valid_names=["train", "valid"],
                        feval=precision_at_5)
    run = only_run()
    assert run.status == "FINISHED" and run.tags["autolog.integration"] == "lightgbm"
    assert run.run_name.startswith("lightgbm.train")
    params = run.params
    assert params["num_leaves"] == "7" and params["objective"] == "binary" and params["learning_rate"] == "0.2"
    assert params["num_boost_round"] == "10" and params["keep_training_booster"] == "False"  # defaults too
    assert "train_set" not in params and "callbacks" not in params and "valid_sets" not in params
    for key in ("train-binary_logloss", "valid-binary_logloss", "train-auc", "valid-precision_at_5"):
        assert [s for s, _ in history(run.run_id, key)] == list(range(10)), key
    assert "stopped_iteration" not in run.metrics
    names = artifacts(run.run_id)
    for importance_type in ("split", "gain"):
        assert f"feature_importance_{importance_type}.json" in names
        assert f"feature_importance_{importance_type}.png" in names
    with open(common.download(run.run_id, "feature_importance_split.json", tmp_path)) as fh:
        assert json.load(fh) == dict(zip(booster.feature_name(), booster.feature_importance("split").tolist()))
    loaded = autolog.load_model(run.run_id)
    assert isinstance(loaded, lgb.Booster)
    np.testing.assert_array_equal(loaded.predict(data[2]), booster.predict(data[2]))


def test_the_model_folder_is_mlflows_lightgbm_format(datasets, data, tmp_path):
    import mlflow.lightgbm
    import mlflow.pyfunc

    dtrain, _ = datasets
    autolog.autolog()
    booster = lgb.train(PARAMS, dtrain, 5)
    folder = common.download(only_run().run_id, "model", tmp_path)
    assert "model.lgb" in os.listdir(folder)
    with open(os.path.join(folder, "MLmodel")) as fh:
        meta = json.load(fh)
    flavor = meta["flavors"]["lightgbm"]
    assert flavor["model_class"] == "lightgbm.basic.Booster" and flavor["data"] == "model.lgb"
    assert flavor["lgb_version"] == lgb.__version__
    assert meta["flavors"]["python_function"]["loader_module"] == "mlflow.lightgbm"
    expected = booster.predict(data[2])
    np.testing.assert_array_equal(mlflow.lightgbm.load_model(folder).predict(data[2]), expected)
    np.testing.assert_allclose(mlflow.pyfunc.load_model(folder).predict(data[2]), expected)



@pytest.mark.parametrize("keep_training_booster", [False, True])
def test_the_model_text_is_taken_once(datasets, data, tmp_path, monkeypatch, keep_training_booster):
    """train() ends by reloading its booster from its own model text (unless
    keep_training_booster): autolog keeps that text as the snapshot instead of serialising the
    model again; with keep_training_booster it serialises it itself. The model written is the
    booster's model either way."""
    dtrain, _ = datasets
    calls = []
    original = lgb.Booster.model_to_string

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(lgb.Booster, "model_to_string", counted)
    autolog.autolog()
    booster = lgb.train(PARAMS, dtrain, 5, keep_training_booster=keep_training_booster)
    assert len(calls) == 1  # LightGBM's own (reloading), or autolog's snapshot (kept booster)
    autolog.flush()
    folder = common.download(only_run().run_id, "model", tmp_path)
    with open(os.path.join(folder, "model.lgb"), encoding="utf-8") as fh:
        assert fh.read() == original(booster)
    np.testing.assert_array_equal(autolog.load_model(only_run().run_id).predict(data[2]), booster.predict(data[2]))


def test_mlflow_pyfunc_loads_the_model_by_its_runs_uri(datasets, data, store_dir):
    dtrain, _ = datasets
    autolog.autolog()
    booster = lgb.train(PARAMS, dtrain, 3)
    loaded = common.mlflow_pyfunc_from_run(only_run().run_id, store_dir)
    np.testing.assert_allclose(loaded.predict(data[2]), booster.predict(data[2]))


def test_autolog_log_model_writes_boosters_and_wrappers_in_this_format(datasets, data):
    X, y, Xv, _ = data
    booster = lgb.train(PARAMS, datasets[0], 3)
    wrapper = lgb.LGBMRegressor(n_estimators=3, n_jobs=1, verbose=-1).fit(X, y.astype(float))
    with autolog.start_run() as run:
        autolog.log_model(booster, "booster")
        autolog.log_model(wrapper, "wrapper")
    np.testing.assert_array_equal(autolog.load_model(f"runs:/{run.run_id}/booster").predict(Xv), booster.predict(Xv))
    np.testing.assert_array_equal(autolog.load_model(f"runs:/{run.run_id}/wrapper").predict(Xv), wrapper.predict(Xv))


def test_the_users_callbacks_are_untouched_and_still_called(datasets):
    dtrain, dvalid = datasets
    seen = []

    def mine(env):
        seen.append(env.iteration)

    callbacks = [mine]
    autolog.autolog()
    lgb.train(PARAMS, dtrain, 4, valid_sets=[dvalid], callbacks=callbacks)
    assert callbacks == [mine] and seen == [0, 1, 2, 3]
    assert [s for s, _ in history(only_run().run_id, "valid_0-binary_logloss")] == [0, 1, 2, 3]


def test_early_stopping_metrics_as_mlflow_logs_them(datasets):
    dtrain, dvalid = datasets
    autolog.autolog()
    booster = lgb.train({**PARAMS, "learning_rate": 0.9, "num_leaves": 31, "min_data_in_leaf": 2}, dtrain, 60,
                        valid_sets=[dvalid], valid_names=["valid"], callbacks=[lgb.early_stopping(3, verbose=False)])
    run = only_run()
    ran = run.metrics["stopped_iteration"]  # iterations run
    assert ran < 60, "the data should make it stop early"
    assert run.metrics["best_iteration"] == booster.best_iteration
    by_step = dict(history(run.run_id, "valid-binary_logloss"))
    assert sorted(by_step) == list(range(int(ran) + 1))
    assert by_step[ran] == by_step[booster.best_iteration - 1]  # the best iteration's value again, one step on


def test_cv_logs_mean_and_stdv_per_iteration(datasets):
    dtrain, _ = datasets
    autolog.autolog()
    result = lgb.cv({"objective": "binary", "metric": "auc", "verbose": -1, "num_threads": 1}, dtrain, 5, nfold=3,
                    eval_train_metric=True)
    run = only_run()
    assert run.run_name.startswith("lightgbm.cv") and run.params["nfold"] == "3"
    for data_name in ("train", "valid"):
        for statistic in ("mean", "stdv"):
            values = history(run.run_id, f"{data_name}-auc-{statistic}")
            assert [s for s, _ in values] == list(range(5))
            np.testing.assert_allclose([v for _, v in values], result[f"{data_name} auc-{statistic}"])


def test_cv_with_early_stopping_logs_where_it_stopped(datasets):
    dtrain, _ = datasets
    autolog.autolog()
    result = lgb.cv({**PARAMS, "learning_rate": 0.9, "min_data_in_leaf": 2}, dtrain, 60, nfold=3,
                    callbacks=[lgb.early_stopping(3, verbose=False)])
    run = only_run()
    best = len(result["valid binary_logloss-mean"])  # lgb.cv keeps the rounds up to the best one
    assert run.metrics["best_iteration"] == best < 60
    ran = int(run.metrics["stopped_iteration"])
    by_step = dict(history(run.run_id, "valid-binary_logloss-mean"))
    assert sorted(by_step) == list(range(ran + 1)) and by_step[ran] == by_step[best - 1]


# -- the scikit-learn wrappers -----------------------------------------------------------------
def test_classifier_fit_is_one_run_with_get_params_training_metrics_and_the_wrapper(data, tmp_path):
    from sklearn import metrics

    X, y, Xv, yv = data
    autolog.autolog(log_plots=True)
    callbacks = []
    model = lgb.LGBMClassifier(n_estimators=8, num_leaves=5, n_jobs=1, verbose=-1).fit(
        X, y, eval_X=(Xv,), eval_y=(yv,), callbacks=callbacks)
    assert callbacks == []
    run = only_run()
    assert run.run_name.startswith("LGBMClassifier") and run.tags["estimator_name"] == "LGBMClassifier"
    params = run.params
    assert params["n_estimators"] == "8" and params["num_boost_round"] == "8" and params["num_leaves"] == "5"
    assert params["objective"] == "binary"  # as the booster got it (get_params() says None)
    assert [s for s, _ in history(run.run_id, "valid_0-binary_logloss")] == list(range(8))
    assert run.metrics["training_accuracy_score"] == pytest.approx(metrics.accuracy_score(y, model.predict(X)))
    assert run.metrics["training_roc_auc"] == pytest.approx(metrics.roc_auc_score(y, model.predict_proba(X)[:, 1]))
    assert "training_confusion_matrix.png" in artifacts(run.run_id)
    loaded = autolog.load_model(run.run_id)
    assert type(loaded) is lgb.LGBMClassifier
    np.testing.assert_array_equal(loaded.predict_proba(Xv), model.predict_proba(Xv))
    folder = common.download(run.run_id, "model", tmp_path)
    with open(os.path.join(folder, "MLmodel")) as fh:
        flavor = json.load(fh)["flavors"]["lightgbm"]
    assert flavor["model_class"] == "lightgbm.sklearn.LGBMClassifier" and flavor["data"] == "model.pkl"
    assert flavor["serialization_format"] == "pickle"
    import mlflow.lightgbm

    np.testing.assert_array_equal(mlflow.lightgbm.load_model(folder).predict(Xv), model.predict(Xv))


def test_regressor_and_ranker_fits_are_one_run_each(data):
    X, y, _, _ = data
    autolog.autolog()
    regressor = lgb.LGBMRegressor(n_estimators=5, n_jobs=1, verbose=-1).fit(X, y.astype(float))
    lgb.LGBMRanker(n_estimators=3, n_jobs=1, verbose=-1, min_child_samples=2).fit(X, y, group=[10] * 20)
    found = {r.tags["estimator_name"]: r for r in all_runs()}
    assert set(found) == {"LGBMRegressor", "LGBMRanker"}
    assert "training_r2_score" in found["LGBMRegressor"].metrics
    np.testing.assert_allclose(autolog.load_model(found["LGBMRegressor"].run_id).predict(X), regressor.predict(X))


def test_training_and_validation_data_are_dataset_inputs(data):
    X, y, Xv, yv = data
    autolog.autolog()
    dtrain = lgb.Dataset(X, y)  # free_raw_data=True: the raw data is read before training frees it
    lgb.train(PARAMS, dtrain, 2, valid_sets=[dtrain, lgb.Dataset(Xv, yv, reference=dtrain)],
              valid_names=["train", "valid"])
    lgb.LGBMRegressor(n_estimators=2, n_jobs=1, verbose=-1).fit(X, y.astype(float), eval_X=(Xv,), eval_y=(yv,))
    found = {r.run_name.split("-")[0]: r for r in all_runs()}
    for run_name, eval_name in (("lightgbm.train", "valid"), ("LGBMRegressor", "valid_0")):
        inputs = {(i.context, i.dataset.name) for i in found[run_name].inputs}
        # an unnamed training set is named after the caller's variable, when one holds it
        assert len(inputs) == 2 and ("eval", eval_name) in inputs and {c for c, _ in inputs} == {"train", "eval"}


def test_a_wrapper_that_only_cloudpickle_can_save(data, tmp_path):
    """A custom objective defined inside a function: pickle refuses the wrapper, cloudpickle
    writes it; the metrics come from a copy made at the call, not from the snapshot loaded back."""
    X, y, Xv, _ = data

    def squared_error(y_true, y_pred):
        return y_pred - y_true, np.ones_like(y_pred)

    autolog.autolog()
    model = lgb.LGBMRegressor(n_estimators=3, n_jobs=1, verbose=-1, objective=squared_error).fit(X, y.astype(float))
    run = only_run()
    assert "training_r2_score" in run.metrics and "feature_importance_gain.json" in artifacts(run.run_id)
    with open(os.path.join(common.download(run.run_id, "model", tmp_path), "MLmodel")) as fh:
        assert json.load(fh)["flavors"]["lightgbm"]["serialization_format"] == "cloudpickle"
    np.testing.assert_allclose(autolog.load_model(run.run_id).predict(Xv), model.predict(Xv))


def test_wrappers_inside_sklearn_pipeline_and_search_keep_sklearns_runs(data):
    X, y, _, _ = data
    autolog.autolog()
    make_pipeline(StandardScaler(), lgb.LGBMClassifier(n_estimators=3, n_jobs=1, verbose=-1)).fit(X, y)
    run = only_run()
    assert run.tags["autolog.integration"] == "sklearn" and run.tags["estimator_name"] == "Pipeline"

    GridSearchCV(lgb.LGBMClassifier(n_estimators=3, n_jobs=1, verbose=-1), {"num_leaves": [3, 5]}, cv=2).fit(X, y)
    found = all_runs()
    search = [r for r in found if r.tags.get("estimator_name") == "GridSearchCV"]
    assert len(search) == 1 and len(found) == 4
    assert len([r for r in found if r.parent_run_id == search[0].run_id]) == 2


# -- checkpoints -------------------------------------------------------------------------------
def test_models_saved_from_a_callback_land_in_the_runs_checkpoints(datasets, tmp_path):
    dtrain, _ = datasets
    folder = tmp_path / "ckpt"
    folder.mkdir()

    def save_every_third(env):
        if env.iteration % 3 == 2:
            env.model.save_model(str(folder / f"model_{env.iteration}.txt"))

    autolog.autolog()
    booster = lgb.train(PARAMS, dtrain, 7, callbacks=[save_every_third])
    booster.save_model(str(tmp_path / "final.txt"))  # after training: not a checkpoint
    run = only_run()
    logged = artifacts(run.run_id, "checkpoints")
    assert [a for a in logged if not a.endswith(".json")] == ["checkpoints/model_2.txt", "checkpoints/model_5.txt"]
    with open(common.download(run.run_id, "checkpoints/model_5.txt.json", tmp_path)) as fh:
        assert json.load(fh)["step"] == 5


# -- options ------------------------------------------------------------------------------------
def test_log_models_false_and_max_model_size(datasets):
    dtrain, dvalid = datasets
    autolog.autolog(log_models=False)
    lgb.train(PARAMS, dtrain, 3, valid_sets=[dvalid])
    run = only_run()
    assert "model" not in artifacts(run.run_id) and "feature_importance_gain.json" in artifacts(run.run_id)
    assert "valid_0-binary_logloss" in run.metrics

    autolog.autolog(max_model_size_mb=0.0001)
    lgb.train(PARAMS, dtrain, 3)
    newest = all_runs()[0]
    assert "over max_model_size_mb" in newest.tags["autolog.model_skipped"]
    assert "model" not in artifacts(newest.run_id)


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [[1.0, 2.0], float("nan"), "high"], ids=["list", "nan", "string"])
def test_a_custom_metric_that_is_not_a_number_is_skipped_with_one_warning(datasets, data, caplog, value):
    dtrain, dvalid = datasets

    def odd_metric(preds, dataset):
        return "odd", value, False

    plain = lgb.train(PARAMS, dtrain, 4, valid_sets=[dvalid], feval=odd_metric)
    autolog.autolog()
    with caplog.at_level(logging.WARNING, logger="autolog"):
        booster = lgb.train(PARAMS, dtrain, 4, valid_sets=[dvalid], feval=odd_metric)
    np.testing.assert_array_equal(booster.predict(data[2]), plain.predict(data[2]))
    run = only_run()
    assert "valid_0-odd" not in run.metrics and len(history(run.run_id, "valid_0-binary_logloss")) == 4
    assert len([r for r in caplog.records if "valid_0-odd" in r.getMessage()]) == 1
    assert "model" in artifacts(run.run_id)


def test_a_booster_that_cannot_be_saved_warns_once_and_logs_the_rest(caplog):
    """LightGBM cannot write the model text of a booster trained on pandas categories that JSON
    cannot hold (dates); with keep_training_booster=True training itself succeeds."""
    import pandas as pd

    rng = np.random.default_rng(0)
    days = [datetime.date(2020, 1, d) for d in (1, 2, 3)]
    frame = pd.DataFrame({"a": rng.normal(size=120), "day": pd.Categorical([days[i % 3] for i in range(120)])})
    label = (frame["a"] > 0).astype(int)
    autolog.autolog()
    with caplog.at_level(logging.WARNING, logger="autolog"):
        booster = lgb.train({"verbose": -1, "num_threads": 1}, lgb.Dataset(frame, label), 3,
                            valid_sets=[lgb.Dataset(frame, label)], keep_training_booster=True)
    assert booster.current_iteration() == 3
    run = only_run()
    assert run.status == "FINISHED" and run.params["num_boost_round"] == "3" and "valid_0-l2" in run.metrics
    names = artifacts(run.run_id)
    assert "model" not in names and "feature_importance_split.json" in names
    assert len([r for r in caplog.records if "cannot be saved" in r.getMessage()]) == 1


def test_a_dataset_without_feature_names(data, tmp_path):
    X, y, _, _ = data
    autolog.autolog()
    booster = lgb.train(PARAMS, lgb.Dataset(X, y), 3)
    run = only_run()
    with open(common.download(run.run_id, "feature_importance_gain.json", tmp_path)) as fh:
        assert list(json.load(fh)) == booster.feature_name() == [f"Column_{i}" for i in range(5)]


# -- cost ----------------------------------------------------------------------------------------------
def test_a_thousand_rounds_make_a_handful_of_backend_writes(data):
    X, y, Xv, yv = data
    uri = "memory:lightgbm-thousand-rounds"
    autolog.autolog(tracking_uri=uri, log_models=False)
    dtrain = lgb.Dataset(X, y)
    lgb.train({"verbose": -1, "num_threads": 1, "num_leaves": 3, "learning_rate": 0.01}, dtrain, 1000,
              valid_sets=[dtrain, lgb.Dataset(Xv, yv, reference=dtrain)])
    runs_module.flush()
    backend = get_backend(uri)
    (run_id,) = list(backend.runs)
    assert len(backend.metric_history[(run_id, "valid_1-l2")]) == 1000
    writes = [method for method, rid in backend.calls if rid == run_id and method == "log_batch"]
    assert 1 <= len(writes) <= 10, len(writes)


# -- enable, disable, enable -----------------------------------------------------------------------------
def identity_owners() -> list:
    """What the integration patches: the package, its sklearn module, the wrapper classes and the Booster."""
    import lightgbm.basic
    import lightgbm.sklearn

    owners = [lightgbm, lightgbm.sklearn, lightgbm.basic.Booster]
    owners += [cls for cls in vars(lightgbm.sklearn).values()
               if isinstance(cls, type) and issubclass(cls, lightgbm.sklearn.LGBMModel)]
    return owners


def identity_train() -> None:
    """train (saving a checkpoint from a callback), cv and a wrapper's fit."""
    import tempfile

    X = np.arange(80.0).reshape(40, 2)
    y = (X[:, 0] > 40).astype(int)
    with tempfile.TemporaryDirectory() as folder:
        lgb.train({"verbose": -1, "num_threads": 1}, lgb.Dataset(X, y), 2,
                  callbacks=[lambda env: env.model.save_model(os.path.join(folder, "last.txt"))])
    lgb.cv({"verbose": -1, "num_threads": 1, "objective": "binary"}, lgb.Dataset(X, y), 2, nfold=2)
    lgb.LGBMClassifier(n_estimators=2, n_jobs=1, verbose=-1).fit(X, y)


def test_enable_train_disable_identity_and_nothing_logged_then_enable_again():
    common.round_trip("lightgbm", identity_owners(), identity_train, runs_per_train=3,
                      must_patch=[(lgb, "train"), (lgb.sklearn, "train"), (lgb.LGBMClassifier, "fit")])


def test_with_every_integration_enabled_disable_restores_identity():
    """sklearn wraps LGBMModel.fit too (and lets it through to this integration): disabling every
    integration restores it whichever of the two the engine reverts first."""
    common.every_integration_round_trip(identity_owners(), identity_train)


# -- the keys MLflow logs for the same calls --------------------------------------------------------
def test_our_keys_are_a_superset_of_mlflows_for_the_same_calls(data, tmp_path, monkeypatch):
    """train with two validation sets, early stopping and an "@" metric; a classifier and a
    regressor with eval sets: run by run, every param and metric key mlflow.lightgbm.autolog()
    logs, and the same values for its metrics."""
    X, y, Xv, yv = data

    def train():
        dtrain = lgb.Dataset(X, y, free_raw_data=False)
        dvalid = lgb.Dataset(Xv, yv, reference=dtrain, free_raw_data=False)
        lgb.train({**PARAMS, "learning_rate": 0.9, "min_data_in_leaf": 2}, dtrain, 40, valid_sets=[dtrain, dvalid],
                  valid_names=["train", "valid"], callbacks=[lgb.early_stopping(3, verbose=False)])
        clf = lgb.LGBMClassifier(n_estimators=5, n_jobs=1, verbose=-1).fit(X, y, eval_X=(Xv,), eval_y=(yv,),
                                                                            eval_metric="auc")
        clf.score(Xv, yv)  # post-training metrics, into the classifier's run
        sklearn_metrics.accuracy_score(yv, clf.predict(Xv))
        lgb.LGBMRegressor(n_estimators=5, n_jobs=1, verbose=-1).fit(X, y.astype(float), eval_X=(X, Xv), eval_y=(y, yv))

    common.assert_superset_of_mlflow("lightgbm", train, tmp_path, monkeypatch, expected_runs=3)
    classifier = sorted(all_runs(), key=lambda r: r.start_time)[1]
    assert {"LGBMClassifier_score_Xv", "accuracy_score_Xv"} <= set(classifier.metrics)
