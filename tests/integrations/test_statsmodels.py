"""The statsmodels integration, with real statsmodels models (small data, fast fits).

Each test asserts on what a user looks at: the run's params and metrics, the artifacts
(coefficients.csv, model_summary.txt), and the model loaded back (by autolog and by
MLflow), predicting what the original predicts.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

import autolog
from autolog import runs
from autolog.instrument.integration import engine

sm = pytest.importorskip("statsmodels.api")
smf = pytest.importorskip("statsmodels.formula.api")
from statsmodels.base.model import Model  # noqa: E402
from statsmodels.regression.linear_model import RegressionModel  # noqa: E402
from statsmodels.tsa.arima.model import ARIMA  # noqa: E402


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + rng.normal(scale=0.5, size=300)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["y"] = y
    frame["label"] = (y + rng.normal(size=300) > 0).astype(float)
    return sm.add_constant(X), y, frame


def all_runs():
    return autolog.search_runs(output_format="list")


def the_run():
    found = all_runs()
    assert len(found) == 1, [r.run_name for r in found]
    return found[0]


def artifact_text(run_id: str, path: str, tmp_path) -> str:
    backend = runs._reader()
    local = backend.download_artifacts(run_id, path, str(tmp_path / f"dl-{len(os.listdir(tmp_path))}"))
    with open(local, encoding="utf-8") as fh:
        return fh.read()


def artifact_paths(run_id: str) -> set:
    return {a.path for a in runs._reader().list_artifacts(run_id)}


def class_namespaces(*classes) -> dict:
    """`vars()` of each class, less `__slotnames__`: the cache that pickling an instance of a
    class adds to it (copyreg), which `results.save()` adds as well; not a patch."""
    return {cls: {k: v for k, v in vars(cls).items() if k != "__slotnames__"} for cls in classes}


def test_ols_params_metrics_artifacts_and_model(data, tmp_path):
    X, y, _ = data
    autolog.autolog()
    results = sm.OLS(y, X).fit(cov_type="HC1")
    run = the_run()

    assert run.status == "FINISHED"
    assert run.run_name.startswith("OLS-")
    assert run.params["method"] == "pinv"
    assert run.params["cov_type"] == "HC1"
    assert run.params["model_class"] == "statsmodels.regression.linear_model.OLS"
    assert run.params["nobs"] == "300"
    for name in ("aic", "bic", "llf", "rsquared", "rsquared_adj", "fvalue", "f_pvalue", "mse_resid", "ssr"):
        assert run.metrics[name] == pytest.approx(float(getattr(results, name))), name

    assert {"coefficients.csv", "model_summary.txt", "model"} <= artifact_paths(run.run_id)
    rows = list(csv.DictReader(io.StringIO(artifact_text(run.run_id, "coefficients.csv", tmp_path))))
    assert [r["term"] for r in rows] == ["const", "x1", "x2", "x3"]
    assert [float(r["coef"]) for r in rows] == pytest.approx(list(results.params))
    assert [float(r["std_err"]) for r in rows] == pytest.approx(list(results.bse))
    assert [float(r["p_value"]) for r in rows] == pytest.approx(list(results.pvalues))
    assert [float(r["conf_low"]) for r in rows] == pytest.approx(list(results.conf_int()[:, 0]))
    assert "OLS Regression Results" in artifact_text(run.run_id, "model_summary.txt", tmp_path)

    loaded = autolog.load_model(run.run_id)
    new = np.random.default_rng(1).normal(size=(5, 4))
    np.testing.assert_array_equal(loaded.predict(new), results.predict(new))
    assert loaded.rsquared == results.rsquared


def test_formula_model_logs_formula_and_reloads_with_its_transforms(data):
    _, _, frame = data
    autolog.autolog()
    results = smf.ols("y ~ a + b + np.log(c ** 2)", data=frame).fit()
    run = the_run()

    assert run.params["formula"] == "y ~ a + b + np.log(c ** 2)"
    assert run.metrics["rsquared"] == pytest.approx(results.rsquared)
    loaded = autolog.load_model(f"runs:/{run.run_id}/model")
    np.testing.assert_allclose(loaded.predict(frame.iloc[:7]), results.predict(frame.iloc[:7]))


def test_logit_and_glm_statistics_and_specification(data):
    X, _, frame = data
    autolog.autolog()
    logit = smf.logit("label ~ a + b", data=frame).fit(disp=0, maxiter=50)
    glm = sm.GLM(frame["label"], X, family=sm.families.Binomial()).fit()
    by_model = {r.params["model_class"].rsplit(".", 1)[1]: r for r in all_runs()}
    assert set(by_model) == {"Logit", "GLM"}

    lr = by_model["Logit"]
    assert lr.params["method"] == "newton" and lr.params["maxiter"] == "50" and lr.params["disp"] == "0"
    for name in ("llf", "llnull", "llr", "llr_pvalue", "prsquared", "aic", "bic"):
        assert lr.metrics[name] == pytest.approx(float(getattr(logit, name))), name
    assert lr.metrics["converged"] == 1.0

    gr = by_model["GLM"]
    assert gr.params["family"] == "Binomial" and gr.params["link"] == "Logit"
    assert gr.params["method"] == "IRLS"
    for name in ("deviance", "null_deviance", "pearson_chi2", "llf"):
        assert gr.metrics[name] == pytest.approx(float(getattr(glm, name))), name
    assert "rsquared" not in gr.metrics  # only what exists for the model


def test_arima_order_metrics_and_forecast_of_the_reloaded_model():
    series = np.cumsum(np.random.default_rng(2).normal(size=120))
    autolog.autolog()
    results = ARIMA(series, order=(1, 1, 1)).fit()
    run = the_run()

    assert run.params["order"] == "(1, 1, 1)"
    assert run.params["model_class"] == "statsmodels.tsa.arima.model.ARIMA"
    for name in ("aic", "bic", "hqic", "llf"):
        assert run.metrics[name] == pytest.approx(float(getattr(results, name))), name
    np.testing.assert_allclose(autolog.load_model(run.run_id).forecast(5), results.forecast(5))


def test_nested_fits_are_logged_once_at_the_outermost_call(data):
    X, y, _ = data

    class TwoStage(sm.OLS):
        """A user's model whose fit runs two statsmodels fits inside it."""

        def fit(self, **kwargs):
            first = sm.OLS(self.endog, self.exog).fit()
            return sm.WLS(self.endog, self.exog, weights=1.0 / (first.resid ** 2 + 1.0)).fit(**kwargs)

    autolog.autolog()
    TwoStage(y, X).fit()
    run = the_run()
    assert run.params["model_class"].endswith("TwoStage")
    assert run.run_name.startswith("TwoStage-")

    # statsmodels' own fit inside a fit: NegativeBinomial fits a Poisson model for its start params
    counts = np.random.default_rng(3).poisson(np.exp(0.2 * X[:, 1] + 1.0))
    sm.NegativeBinomial(counts, X).fit(disp=0)
    assert sorted(r.params["model_class"].rsplit(".", 1)[1] for r in all_runs()) == ["NegativeBinomial", "TwoStage"]

    # a user's run gets the first training call inside it, not a run of its own
    with autolog.start_run(run_name="mine") as mine:
        sm.OLS(y, X).fit()
    assert len(all_runs()) == 3
    assert autolog.get_run(mine.run_id).params["model_class"].endswith(".OLS")


def test_a_model_class_defined_after_enabling_is_patched_and_restored(data):
    X, y, _ = data
    autolog.autolog()

    class LaterModel(sm.OLS):
        def fit(self, **kwargs):
            return super().fit(**kwargs)

    before = class_namespaces(LaterModel)[LaterModel]
    LaterModel(y, X).fit(method="qr")
    run = the_run()
    assert run.params["method"] == "qr"
    assert run.params["model_class"].endswith("LaterModel")
    assert vars(LaterModel)["fit"] is not before["fit"]  # wrapped on its first instance

    autolog.autolog(disable=True)
    assert class_namespaces(LaterModel)[LaterModel] == before
    assert vars(LaterModel)["fit"] is before["fit"]


def model_classes() -> list:
    found, stack = [], [Model]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def test_disable_restores_identity_and_logs_nothing_then_enable_again(data):
    X, y, _ = data
    touched = model_classes()
    before = class_namespaces(*touched)
    autolog.autolog()
    sm.OLS(y, X).fit()
    sm.GLM(y, X).fit()
    patched = {(p.parent, p.attribute) for p in engine.patched()["statsmodels"].patches}
    assert (Model, "__init__") in patched and (RegressionModel, "fit") in patched
    assert {parent for parent, _ in patched} <= set(touched)
    assert vars(Model)["__init__"] is not before[Model]["__init__"]
    assert vars(RegressionModel)["fit"] is not before[RegressionModel]["fit"]

    autolog.autolog(disable=True)
    after = class_namespaces(*touched)
    for cls in touched:
        assert after[cls].keys() == before[cls].keys(), cls
        for name, value in before[cls].items():
            assert after[cls][name] is value, (cls, name)
    sm.OLS(y, X).fit()
    sm.Logit((y > 0).astype(float), X).fit(disp=0)
    assert len(all_runs()) == 2

    autolog.autolog()
    sm.OLS(y, X).fit()
    assert len(all_runs()) == 3


def test_statistics_come_from_a_snapshot_taken_when_fit_returned(data):
    X, y, _ = data
    X, y = X.copy(), y.copy()
    autolog.autolog()
    results = sm.OLS(y, X).fit()  # statsmodels keeps views of these float arrays
    expected = {name: float(getattr(sm.OLS(y.copy(), X.copy()).fit(), name)) for name in ("rsquared", "ssr")}
    y[:] = 0.0  # the user reuses the buffers right away
    X[:] = 1.0
    autolog.flush()
    run = [r for r in all_runs() if r.params.get("model_class", "").endswith("OLS")][0]
    assert run.metrics["rsquared"] == pytest.approx(expected["rsquared"])
    assert run.metrics["ssr"] == pytest.approx(expected["ssr"])
    assert results.params.shape == (4,)


def test_log_models_false_and_model_size_limit(data):
    X, y, _ = data
    autolog.autolog(log_models=False)
    sm.OLS(y, X).fit()
    run = the_run()
    assert "model" not in artifact_paths(run.run_id)
    assert "rsquared" in run.metrics

    autolog.autolog(log_models=True, max_model_size_mb=0.001)
    sm.OLS(y, X).fit()
    newest = all_runs()[0]
    assert "model" not in artifact_paths(newest.run_id)
    assert "max_model_size_mb" in newest.tags["autolog.model_skipped"]
    assert "rsquared" in newest.metrics


def test_failing_fit_raises_unchanged_and_marks_the_run_failed(data):
    X, y, _ = data
    with pytest.raises(Exception) as plain:
        sm.OLS(y, X).fit(method="no-such-method")
    autolog.autolog()
    with pytest.raises(type(plain.value)) as logged:
        sm.OLS(y, X).fit(method="no-such-method")
    assert str(logged.value) == str(plain.value)
    assert logged.traceback[-1].name == plain.traceback[-1].name  # raised where statsmodels raises it
    run = the_run()
    assert run.status == "FAILED"
    assert run.params["method"] == "no-such-method"
    assert type(plain.value).__name__ in run.tags["autolog.error"]


def test_fit_regularized_is_a_training_call(data):
    X, y, _ = data
    autolog.autolog()
    results = sm.OLS(y, X).fit_regularized(alpha=0.1, L1_wt=1.0)
    run = the_run()
    assert run.params["alpha"] == "0.1" and run.params["L1_wt"] == "1.0"
    loaded = autolog.load_model(run.run_id)
    np.testing.assert_allclose(loaded.params, results.params)


def test_mlflow_loads_the_model_folder(data, tmp_path, monkeypatch):
    mlflow_statsmodels = pytest.importorskip("mlflow.statsmodels")
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    X, y, frame = data
    autolog.autolog()
    results = smf.ols("y ~ a + b + c", data=frame).fit()
    run = the_run()
    folder = runs._reader().download_artifacts(run.run_id, "model", str(tmp_path / "model"))

    native = mlflow_statsmodels.load_model(folder)
    np.testing.assert_allclose(native.predict(frame.iloc[:5]), results.predict(frame.iloc[:5]))
    pyfunc = mlflow.pyfunc.load_model(folder)
    np.testing.assert_allclose(np.asarray(pyfunc.predict(frame.iloc[:5])), results.predict(frame.iloc[:5]))


def test_multi_equation_coefficients_pair_each_term_with_its_own_interval(data, tmp_path):
    X, y, _ = data
    autolog.autolog()
    results = sm.MNLogit(np.digitize(y, [-1.0, 1.0]), X).fit(disp=0)
    run = the_run()
    rows = list(csv.DictReader(io.StringIO(artifact_text(run.run_id, "coefficients.csv", tmp_path))))
    assert [r["term"] for r in rows[:2]] == ["const[0]", "const[1]"]
    assert [float(r["coef"]) for r in rows] == pytest.approx(list(np.asarray(results.params).ravel()))
    for row in rows:
        assert float(row["conf_low"]) < float(row["coef"]) < float(row["conf_high"]), row
    assert "J" not in run.metrics and "llr_pvalue" in run.metrics


def test_enabled_before_statsmodels_is_imported(store_dir):
    """A fresh interpreter: autolog() first, then `import statsmodels.api`, then a fit."""
    script = (
        "import autolog; autolog.autolog()\n"
        "import numpy as np, statsmodels.api as sm\n"
        "X = sm.add_constant(np.arange(20.0)); y = 2 * np.arange(20.0) + np.sin(np.arange(20.0))\n"
        "sm.OLS(y, X).fit(); sm.WLS(y, X).fit()\n"
    )
    env = {**os.environ, "AUTOLOG_TRACKING_URI": store_dir}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
    found = sorted(r.params["model_class"].rsplit(".", 1)[1] for r in all_runs())
    assert found == ["OLS", "WLS"]
    assert all("rsquared" in r.metrics and r.status == "FINISHED" for r in all_runs())


def test_exponential_smoothing_parameters_are_listed_by_name(tmp_path):
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    series = np.cumsum(np.random.default_rng(4).normal(size=80)) + 40.0
    autolog.autolog()
    results = ExponentialSmoothing(series, trend="add").fit()
    run = the_run()
    assert run.params["trend"] == "add"
    rows = {r["term"]: float(r["coef"]) for r in csv.DictReader(io.StringIO(artifact_text(run.run_id, "coefficients.csv", tmp_path)))}
    assert rows["smoothing_level"] == pytest.approx(results.params["smoothing_level"])
    assert rows["initial_level"] == pytest.approx(results.params["initial_level"])
    np.testing.assert_allclose(autolog.load_model(run.run_id).forecast(3), results.forecast(3))


def test_fits_in_two_threads_at_once_get_a_run_each(data):
    X, y, _ = data
    autolog.autolog()
    barrier = threading.Barrier(2)
    errors = []

    def train(n):
        try:
            model = sm.OLS(y[:n], X[:n])
            barrier.wait(timeout=30)
            model.fit()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=train, args=(n,)) for n in (100, 200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(r.params["nobs"] for r in all_runs()) == ["100", "200"]
    assert all(r.parent_run_id is None and r.status == "FINISHED" for r in all_runs())


def test_fit_called_through_the_class_logs_its_arguments(data):
    X, y, _ = data
    autolog.autolog()
    model = sm.OLS(y, X)
    sm.OLS.fit(model, method="qr")
    assert the_run().params["method"] == "qr"


# -- the disable-identity test (tests/integrations/test_disable_identity.py) -------------------------
def identity_owners() -> list:
    """Every model class (fit is patched where it is defined, `__init__` on Model)."""
    import statsmodels.tsa.api  # noqa: F401 - defines the time-series model classes

    return model_classes()


def identity_train() -> None:
    """OLS, Logit and ARIMA fits."""
    X = sm.add_constant(np.arange(12.0))
    y = 2.0 * np.arange(12.0) + np.sin(np.arange(12.0))
    sm.OLS(y, X).fit()
    sm.Logit((np.sin(1.3 * np.arange(12.0)) > 0).astype(float), X).fit(disp=0)
    ARIMA(y, order=(1, 0, 0)).fit()


def test_fit_records_exog_and_endog_as_the_training_dataset():
    import statsmodels.api as sm

    autolog.autolog()
    rng = np.random.RandomState(1)
    exog = sm.add_constant(rng.rand(40, 2))
    endog = exog @ np.array([1.0, 2.0, -1.0]) + rng.normal(scale=0.1, size=40)
    sm.OLS(endog, exog).fit()
    run = autolog.last_run()
    assert [i.context for i in run.inputs] == ["train"]
    profile = run.inputs[0].dataset.profile
    assert '"features_shape": [40, 3]' in profile and '"targets_shape": [40]' in profile
