"""The pyspark.ml integration, with real Spark in local mode (local[2], small data).

One SparkSession serves the whole module (starting one costs seconds); it is made with
`getOrCreate`, so the disable-identity test, which imports this module under another name,
shares it. Each test asserts on what a user looks at: the run's params, metrics, tags and
artifacts, the child runs of a search, and the model loaded back (by autolog and by
MLflow) predicting what the fitted model predicts. A test that stops Spark runs in a
subprocess of its own.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark.ml")

import autolog  # noqa: E402
from autolog import runs  # noqa: E402
from autolog.instrument.models import TAG_MODEL_SKIPPED  # noqa: E402


def _jobless_spark() -> bool:
    import pyspark

    from autolog.integrations._spark import JOBLESS_SPARK_VERSIONS

    return ".".join(pyspark.__version__.split(".")[:2]) in JOBLESS_SPARK_VERSIONS


# the job-free writer is used only on the Spark versions it was compared with (Spark's writer
# writes on any other, as the fallback tests check): the tests that expect it applied need one
needs_jobless_writer = pytest.mark.skipif(
    not _jobless_spark(), reason="write_without_jobs is verified for other Spark versions than this one")


# -- the session and the data ---------------------------------------------------------------------
def spark_session():
    """The module's SparkSession: local[2], no UI, 2 shuffle partitions, Python workers on this
    interpreter (xgboost.spark trains in them)."""
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # read when the SparkContext starts (not from its conf)
    spark = (SparkSession.builder.master("local[2]").appName("autolog-tests")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "2")
             .config("spark.default.parallelism", "2")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@pytest.fixture(scope="module")
def spark():
    session = spark_session()
    yield session
    session.stop()


def frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    data = pd.DataFrame(X, columns=["a", "b", "c"])
    data["label"] = (X[:, 0] - X[:, 1] + rng.normal(scale=0.5, size=n) > 0).astype(float)
    data["y"] = X @ np.array([1.5, -2.0, 0.5]) + rng.normal(scale=0.1, size=n)
    data["cat"] = np.where(X[:, 2] > 0, "high", "low")
    return data


class Data:
    def __init__(self, spark):
        from pyspark.ml.feature import VectorAssembler

        self.raw = spark.createDataFrame(frame())
        self.test_raw = spark.createDataFrame(frame(60, seed=1))
        assembler = VectorAssembler(inputCols=["a", "b", "c"], outputCol="features")
        self.train = assembler.transform(self.raw).cache()
        self.test = assembler.transform(self.test_raw).cache()
        self.train.count()
        self.test.count()


@pytest.fixture(scope="module")
def data(spark):
    return Data(spark)


# -- reading runs back -----------------------------------------------------------------------------
def all_runs() -> list:
    runs.flush()
    return runs.search_runs()


def top_runs() -> list:
    return [r for r in all_runs() if r.parent_run_id is None]


def the_run():
    found = top_runs()
    assert len(found) == 1, [r.run_name for r in found]
    return found[0]


def children(run) -> list:
    return sorted(runs.search_runs(parent_run_id=run.run_id), key=lambda r: int(r.tags["autolog.candidate_index"]))


def artifact_paths(run_id: str) -> set:
    return {a.path for a in runs._reader().list_artifacts(run_id)}


def artifact_text(run_id: str, path: str, tmp_path) -> str:
    folder = tmp_path / f"download-{len(os.listdir(tmp_path))}"
    local = runs._reader().download_artifacts(run_id, path, str(folder))
    with open(local, encoding="utf-8") as fh:
        return fh.read()


def model_folder(run_id: str, tmp_path, path: str = "model") -> str:
    return runs._reader().download_artifacts(run_id, path, str(tmp_path / f"model-{len(os.listdir(tmp_path))}"))


def predictions(model, df) -> list:
    return [row.prediction for row in model.transform(df).select("prediction").collect()]


def history(run_id: str, key: str) -> list:
    return [(m.step, m.value) for m in runs._reader().get_metric_history(run_id, key)]


# -- the disable-identity test's convention (tests/integrations/test_disable_identity.py) ----------
def identity_owners() -> list:
    pytest.importorskip("pyspark.ml")
    import pyspark.ml.classification
    import pyspark.ml.tuning
    from pyspark import SparkContext
    from pyspark.ml.base import Estimator, Model, Transformer
    from pyspark.ml.evaluation import Evaluator

    spark_session()  # first: SparkContext keeps its running context, gateway and JVM in class attributes
    return [Estimator, Model, Transformer, Evaluator, SparkContext, pyspark.ml.tuning, pyspark.ml.classification]


def identity_train() -> None:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    spark = spark_session()
    train = VectorAssembler(inputCols=["a", "b", "c"], outputCol="features").transform(
        spark.createDataFrame(frame(40)))
    model = LogisticRegression(maxIter=3).fit(train)
    BinaryClassificationEvaluator().evaluate(model.transform(train))
    lr = LogisticRegression(maxIter=2)
    CrossValidator(estimator=lr, estimatorParamMaps=ParamGridBuilder().addGrid(lr.regParam, [0.0, 1.0]).build(),
                   evaluator=BinaryClassificationEvaluator(), numFolds=2, parallelism=2).fit(train)
    runs.flush()


# -- estimators --------------------------------------------------------------------------------------
def test_logistic_regression_params_metrics_and_model(data, tmp_path):
    from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel

    autolog.autolog()
    model = LogisticRegression(maxIter=7, regParam=0.01).fit(data.train)
    run = the_run()

    assert run.status == "FINISHED"
    assert run.run_name.startswith("LogisticRegression-")
    # every param that is set or has a default
    assert run.params["maxIter"] == "7" and run.params["regParam"] == "0.01"
    assert run.params["elasticNetParam"] == "0.0" and run.params["family"] == "auto"
    assert run.params["featuresCol"] == "features" and run.params["threshold"] == "0.5"
    assert run.params["estimator_class"] == "pyspark.ml.classification.LogisticRegression"
    assert run.tags["estimator_name"] == "LogisticRegression"
    assert run.tags["estimator_class"] == "pyspark.ml.classification.LogisticRegression"
    # the input: columns always, the row count because Spark knows it (a cached, materialised DataFrame)
    assert run.params["input_columns"] == "['a', 'b', 'c', 'label', 'y', 'cat', 'features']"
    assert run.params["input_rows"] == "200"
    # the training summary
    summary = model.summary
    assert run.metrics["training_accuracy"] == pytest.approx(summary.accuracy)
    assert run.metrics["training_weightedPrecision"] == pytest.approx(summary.weightedPrecision)
    assert "training_areaUnderROC" not in run.metrics  # four Spark jobs of its own: left out
    assert run.metrics["training_weightedFMeasure"] == pytest.approx(summary.weightedFMeasure())
    assert run.metrics["training_totalIterations"] == summary.totalIterations
    assert history(run.run_id, "training_objectiveHistory") == [
        (step, pytest.approx(value)) for step, value in enumerate(summary.objectiveHistory)]
    # the model, in MLflow's spark format, loaded back as the class that was trained
    assert "model" in artifact_paths(run.run_id)
    loaded = autolog.load_model(run.run_id)
    assert isinstance(loaded, LogisticRegressionModel)
    assert predictions(loaded, data.test) == predictions(model, data.test)
    assert loaded.getMaxIter() == 7


def test_the_training_metrics_of_a_classifier_cost_one_spark_job(spark, data):
    """The summary's values autolog reads come from one Spark job (MulticlassMetrics' counts,
    which the summary keeps); the values are Spark's own."""
    from pyspark.ml.classification import LogisticRegression

    from autolog.integrations.pyspark import _summary_metrics

    model = LogisticRegression(maxIter=5).fit(data.train)  # autolog off: nothing read yet
    context, group = spark.sparkContext, "autolog-test-summary-jobs"
    context.setJobGroup(group, "the training metrics")
    try:
        scalars, histories = _summary_metrics([("", model)])
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    assert len(context.statusTracker().getJobIdsForGroup(group)) == 1
    summary = model.summary
    assert scalars == {"training_accuracy": summary.accuracy, "training_weightedPrecision": summary.weightedPrecision,
                       "training_weightedRecall": summary.weightedRecall,
                       "training_weightedFMeasure": summary.weightedFMeasure(),
                       "training_weightedTruePositiveRate": summary.weightedTruePositiveRate,
                       "training_weightedFalsePositiveRate": summary.weightedFalsePositiveRate,
                       "training_totalIterations": summary.totalIterations}
    assert histories == {"training_objectiveHistory": list(summary.objectiveHistory)}


def test_the_input_is_a_dataset_as_mlflow_spark_dataset_describes_it(data):
    """log_datasets (on by default): the fit's DataFrame is the run's "train" input, with the
    digest, schema and row count MLflow's SparkDataset gives the same DataFrame; no Spark job."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.spark_dataset import SparkDataset
    from pyspark.ml.classification import LogisticRegression

    autolog.autolog()
    training_frame = data.train
    LogisticRegression(maxIter=2).fit(training_frame)
    run = the_run()

    assert [(i.dataset.name, i.context) for i in run.inputs] == [("training_frame", "train")]
    ours = run.inputs[0].dataset
    theirs = SparkDataset(df=training_frame, source=CodeDatasetSource({})).to_dict()
    assert (ours.digest, ours.source_type) == (theirs["digest"], "code")
    assert json.loads(ours.schema) == json.loads(theirs["schema"])  # a vector column included
    # the same key; MLflow's approximate-count job often answers "unknown" this early (its first estimate)
    assert json.loads(ours.profile) == {"approx_count": 200} and set(json.loads(theirs["profile"])) == {"approx_count"}


def test_log_datasets_false_records_no_input(data):
    from pyspark.ml.classification import LogisticRegression

    autolog.autolog(log_datasets=False)
    LogisticRegression(maxIter=2).fit(data.train)
    run = the_run()
    assert run.inputs == [] and run.params["input_rows"] == "200"


@pytest.mark.parametrize("kind", ["regression", "clustering", "recommendation", "feature"])
def test_other_kinds_of_estimators(kind, spark, data, tmp_path):
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.recommendation import ALS
    from pyspark.ml.regression import LinearRegression

    autolog.autolog()
    if kind == "regression":
        model = LinearRegression(labelCol="y", maxIter=5).fit(data.train)
        expected_params = {"labelCol": "y", "maxIter": "5", "solver": "auto"}
        expected_metrics = {"training_r2": model.summary.r2,
                            "training_rootMeanSquaredError": model.summary.rootMeanSquaredError}
        df = data.test
    elif kind == "clustering":
        model = KMeans(k=3, seed=1, maxIter=5).fit(data.train)
        expected_params = {"k": "3", "seed": "1", "initMode": "k-means||"}
        expected_metrics = {"training_cost": model.summary.trainingCost}
        df = data.test
    elif kind == "recommendation":
        ratings = spark.createDataFrame([(u, i, float((u * i) % 5)) for u in range(8) for i in range(6)],
                                        ["user", "item", "rating"])
        model = ALS(rank=2, maxIter=2, seed=0, userCol="user", itemCol="item", ratingCol="rating").fit(ratings)
        expected_params = {"rank": "2", "maxIter": "2", "coldStartStrategy": "nan"}
        expected_metrics = {}
        df = ratings
    else:  # a feature transformer that fits
        model = StringIndexer(inputCol="cat", outputCol="cat_index").fit(data.raw)
        expected_params = {"inputCol": "cat", "outputCol": "cat_index", "stringOrderType": "frequencyDesc"}
        expected_metrics = {}
        df = data.test_raw
    run = the_run()

    assert run.status == "FINISHED"
    assert {k: run.params.get(k) for k in expected_params} == expected_params
    for key, value in expected_metrics.items():
        assert run.metrics[key] == pytest.approx(value)
    loaded = autolog.load_model(run.run_id)
    assert type(loaded) is type(model)
    if kind == "feature":
        assert loaded.labels == model.labels
        assert ([r.cat_index for r in loaded.transform(df).collect()]
                == [r.cat_index for r in model.transform(df).collect()])
    elif kind == "recommendation":  # a join: rows come in no set order
        def scored(m):
            return sorted((r.user, r.item, r.prediction) for r in m.transform(df).collect())

        assert scored(loaded) == scored(model)
    else:
        assert predictions(loaded, df) == predictions(model, df)


def test_fit_with_a_param_map_logs_the_params_it_gives(data):
    from pyspark.ml.classification import LogisticRegression

    autolog.autolog()
    lr = LogisticRegression(maxIter=20)
    model = lr.fit(data.train, {lr.maxIter: 3, lr.regParam: 0.5})
    run = the_run()

    assert run.params["maxIter"] == "3" and run.params["regParam"] == "0.5"
    assert model.getMaxIter() == 3 and lr.getMaxIter() == 20


def test_log_models_false(data):
    from pyspark.ml.classification import LogisticRegression

    autolog.autolog(log_models=False)
    LogisticRegression(maxIter=3).fit(data.train)
    run = the_run()

    assert run.params["maxIter"] == "3"
    assert "training_accuracy" in run.metrics
    assert "model" not in artifact_paths(run.run_id)


# -- pipelines -------------------------------------------------------------------------------------
def pipeline():
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    return Pipeline(stages=[
        VectorAssembler(inputCols=["a", "b", "c"], outputCol="raw_features"),
        StandardScaler(inputCol="raw_features", outputCol="scaled"),
        VectorAssembler(inputCols=["scaled"], outputCol="features"),
        LogisticRegression(maxIter=4),
    ])


def test_pipeline_is_one_run_with_every_stage_named_as_mlflow_names_it(data, tmp_path):
    import mlflow.pyfunc
    import mlflow.spark
    from pyspark.ml import PipelineModel

    autolog.autolog()
    model = pipeline().fit(data.raw)
    run = the_run()

    assert all_runs() == [run]  # the stages' own fits log nothing
    assert run.run_name.startswith("Pipeline-")
    assert run.params["stages"] == "['VectorAssembler_1', 'StandardScaler', 'VectorAssembler_2', 'LogisticRegression']"
    assert run.params["VectorAssembler_1.outputCol"] == "raw_features"
    assert run.params["VectorAssembler_2.inputCols"] == "['scaled']"
    assert run.params["StandardScaler.withMean"] == "False"
    assert run.params["LogisticRegression.maxIter"] == "4"
    assert run.params["estimator_class"] == "pyspark.ml.pipeline.Pipeline"
    assert run.metrics["training_accuracy"] == pytest.approx(model.stages[-1].summary.accuracy)
    info = json.loads(artifact_text(run.run_id, "estimator_info.json", tmp_path))
    assert info["hierarchy"] == {"name": "Pipeline", "stages": [
        {"name": "VectorAssembler_1"}, {"name": "StandardScaler"}, {"name": "VectorAssembler_2"},
        {"name": "LogisticRegression"}]}

    expected = predictions(model, data.test_raw)
    loaded = autolog.load_model(run.run_id)
    assert isinstance(loaded, PipelineModel) and len(loaded.stages) == 4
    assert predictions(loaded, data.test_raw) == expected
    folder = model_folder(run.run_id, tmp_path)
    assert predictions(mlflow.spark.load_model(folder), data.test_raw) == expected
    pyfunc = mlflow.pyfunc.load_model(folder)
    assert list(pyfunc.predict(frame(60, seed=1)[["a", "b", "c"]])) == expected


def test_model_folder_is_what_mlflow_spark_writes(data, tmp_path):
    import mlflow.spark
    from mlflow.models import Model

    from autolog.instrument.models import read_mlmodel

    autolog.autolog()
    model = pipeline().fit(data.raw)
    run = the_run()
    ours = read_mlmodel(model_folder(run.run_id, tmp_path))
    theirs_path = str(tmp_path / "mlflow-spark")
    mlflow.spark.save_model(model, theirs_path, pip_requirements=["pyspark"])
    theirs = Model.load(theirs_path).to_dict()

    assert ours["flavors"]["spark"] == theirs["flavors"]["spark"]
    assert ours["flavors"]["python_function"].keys() == theirs["flavors"]["python_function"].keys()
    for key in ("loader_module", "data", "env"):
        assert ours["flavors"]["python_function"][key] == theirs["flavors"]["python_function"][key]
    assert sorted(os.listdir(os.path.join(theirs_path, "sparkml"))) == ["metadata", "stages"]
    assert ours["run_id"] == run.run_id


def _model_tree(folder) -> tuple:
    """(the files under `folder`, part files without their uuid and no .crc files; the JSON
    of its metadata/ without timestamp and uid)."""
    import re

    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(".crc"):
            files.append(re.sub(r"part-(\d+)-[0-9a-f-]{36}", r"part-\1", str(path.relative_to(folder))))
    [part] = (folder / "metadata").glob("part-*")
    metadata = {k: v for k, v in json.loads(part.read_text()).items() if k not in ("timestamp", "uid")}
    return files, metadata


@pytest.mark.parametrize("kind", ["java writer", "python writer"])
def test_a_single_model_is_written_as_spark_writes_it_in_a_pipeline(kind, spark, data, tmp_path):
    """`save_model_data` writes a model that is not a PipelineModel as `PipelineModel([model])`'s
    writer does (Spark's JVM writer for a Java stage, PySpark's for a CrossValidatorModel), the
    pipeline's metadata without a Spark job; Spark's loaders (the JVM's too) read it back."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegression

    from autolog.integrations._spark import copy_best_model, save_model_data

    model = LogisticRegression(maxIter=3).fit(data.train) if kind == "java writer" else cross_validator().fit(data.train)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    context, group = spark.sparkContext, "autolog-test-writer-jobs"
    context.setJobGroup(group, "the writer")
    try:
        save_model_data(model, str(ours))
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    PipelineModel([model]).write().save(str(theirs))
    spark_jobs = len(context.statusTracker().getJobIdsForGroup(group))

    assert _model_tree(ours) == _model_tree(theirs)
    loaded = PipelineModel.load(str(ours))
    assert predictions(loaded, data.test) == predictions(model, data.test)
    if kind == "java writer":
        # Spark's writer runs three: the pipeline's metadata, the model's and its data; autolog
        # none, or the model's two where the job-free writer is not used (a Spark version it does
        # not know)
        assert spark_jobs == (0 if _jobless_spark() else 2)
        assert spark._jvm.org.apache.spark.ml.PipelineModel.load(str(ours)).stages()[0].uid() == model.uid
    else:  # a search's best model: copied from what its writer wrote, as its own writer writes it
        best_ours, best_theirs = tmp_path / "best-ours", tmp_path / "best-theirs"
        copy_best_model(str(ours), model, str(best_ours))
        PipelineModel([model.bestModel]).write().save(str(best_theirs))
        assert _model_tree(best_ours) == _model_tree(best_theirs)
        assert predictions(PipelineModel.load(str(best_ours)), data.test) == predictions(model.bestModel, data.test)


# -- Spark's model format written without Spark jobs --------------------------------------------------
def _spark_files(folder) -> dict:
    """relative path -> content, as Spark's writer leaves a model folder: part files without
    their uuid, no .crc files; text (the metadata JSON) without its timestamp, Parquet as None."""
    import re

    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(".crc"):
            key = re.sub(r"part-(\d+)-[0-9a-f-]{36}", r"part-\1", str(path.relative_to(folder)))
            files[key] = re.sub(r'"timestamp":\d+,', "", path.read_text()) if path.suffix == ".txt" else None
    return files


def _jobless_models(kind: str, spark, data):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LinearSVC, LogisticRegression
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.feature import (
        IDF, MaxAbsScaler, MinMaxScaler, OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler,
    )
    from pyspark.ml.regression import GeneralizedLinearRegression, LinearRegression
    from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit

    if kind == "logistic regression":
        return LogisticRegression(maxIter=5, regParam=0.01).fit(data.train)
    if kind == "multinomial logistic regression":
        return LogisticRegression(maxIter=5, family="multinomial").fit(data.train)
    if kind == "sparse logistic regression":  # L1: a SparseMatrix of coefficients
        model = LogisticRegression(maxIter=20, family="multinomial", regParam=0.3, elasticNetParam=1.0).fit(data.train)
        assert type(model.coefficientMatrix).__name__ == "SparseMatrix"
        return model
    if kind == "linear regression":
        return LinearRegression(labelCol="y", maxIter=5).fit(data.train)
    if kind == "vector assembler":
        return VectorAssembler(inputCols=["a", "b", "c"], outputCol="features")
    if kind == "pipeline model":
        return Pipeline(stages=[VectorAssembler(inputCols=["a", "b", "c"], outputCol="features"),
                                LogisticRegression(maxIter=3)]).fit(data.raw)
    if kind == "cross validator":
        return cross_validator().fit(data.train)
    if kind == "linear svc":
        return LinearSVC(maxIter=5).fit(data.train)
    if kind == "generalized linear regression":
        return GeneralizedLinearRegression(labelCol="y", maxIter=5).fit(data.train)
    if kind == "feature pipeline model":
        return Pipeline(stages=[
            StringIndexer(inputCol="cat", outputCol="cat_index"),
            OneHotEncoder(inputCols=["cat_index"], outputCols=["cat_vector"]),
            VectorAssembler(inputCols=["a", "b", "c", "cat_vector"], outputCol="features"),
            StandardScaler(inputCol="features", outputCol="standard", withMean=True),
            MinMaxScaler(inputCol="features", outputCol="min_max"), MaxAbsScaler(inputCol="features", outputCol="max_abs"),
            IDF(inputCol="cat_vector", outputCol="idf")]).fit(data.raw)
    linear = LinearRegression(labelCol="y", maxIter=5)
    return TrainValidationSplit(estimator=linear, estimatorParamMaps=ParamGridBuilder().addGrid(
        linear.regParam, [0.0, 0.5]).build(), evaluator=RegressionEvaluator(labelCol="y"), seed=3).fit(data.train)


def _write_counting_jobs(spark, write) -> int:
    context, group = spark.sparkContext, "autolog-test-jobless-writer"
    context.setJobGroup(group, "the writer")
    try:
        write()
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    return len(context.statusTracker().getJobIdsForGroup(group))


@needs_jobless_writer
@pytest.mark.parametrize("kind", ["logistic regression", "multinomial logistic regression",
                                  "sparse logistic regression", "linear regression",
                                  "linear svc", "generalized linear regression", "vector assembler", "pipeline model",
                                  "feature pipeline model", "cross validator", "train validation split"])
def test_a_model_is_written_without_spark_jobs_as_spark_writes_it(kind, spark, data, tmp_path):
    """`write_without_jobs` (local mode) writes what the model's own Spark writer writes: the same
    files, the same metadata JSON byte for byte (but the timestamp), Parquet data that Spark reads
    back as its own row for row with the same schema (Vector and Matrix columns as Spark's UDTs);
    without a Spark job. PySpark's loader and the JVM's load it; it predicts the same."""
    import functools

    from autolog.integrations._spark import write_without_jobs

    model = _jobless_models(kind, spark, data)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    written: list = []
    assert _write_counting_jobs(spark, lambda: written.append(write_without_jobs(model, str(ours)))) == 0
    assert written == [True]
    model.write().save(str(theirs))

    files = _spark_files(ours)
    assert files == _spark_files(theirs)
    assert any(key.endswith(".txt") for key in files)
    parquet = sorted(os.path.dirname(key) for key in files if key.endswith(".parquet"))
    assert bool(parquet) == (kind != "vector assembler")
    for folder in parquet:
        mine, spark_own = spark.read.parquet(str(ours / folder)), spark.read.parquet(str(theirs / folder))
        assert mine.schema == spark_own.schema
        assert mine.collect() == spark_own.collect()

    loaded = type(model).load(str(ours))
    java_class = json.loads(next((ours / "metadata").glob("part-*")).read_text())["class"]
    java_loaded = functools.reduce(getattr, java_class.split("."), spark._jvm).load(str(ours))
    assert loaded.uid == java_loaded.uid() == model.uid
    source = data.raw if kind in ("vector assembler", "pipeline model", "feature pipeline model") else data.test
    columns = {"vector assembler": ["features"], "feature pipeline model": [
        "cat_index", "cat_vector", "features", "standard", "min_max", "max_abs", "idf"]}.get(kind, ["prediction"])
    assert loaded.transform(source).select(columns).collect() == model.transform(source).select(columns).collect()


@needs_jobless_writer
def test_a_model_written_by_autolog_costs_one_spark_job_after_the_fit(spark, data):
    """Through autolog: after a LogisticRegression's fit (and after a CrossValidator's) the one
    Spark job left is the training summary's metrics; the model is written without one."""
    from pyspark.ml.classification import LogisticRegression

    tracker = spark.sparkContext.statusTracker()
    autolog.autolog()
    for fit in (lambda: LogisticRegression(maxIter=4).fit(data.train), lambda: cross_validator().fit(data.train)):
        runs.flush()
        spark.sparkContext.setJobGroup("training-thread", "the fit")
        try:
            fit()
        finally:
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        last = max(tracker.getJobIdsForGroup(None), default=-1)
        runs.flush()
        assert len([job for job in tracker.getJobIdsForGroup(None) if job > last]) == 1
    assert len(top_runs()) == 2 and all("model" in artifact_paths(run.run_id) for run in top_runs())


@pytest.mark.parametrize("kind", ["decision tree", "one vs rest"])
def test_a_model_the_jobless_writer_does_not_know_is_written_by_spark(kind, spark, data, tmp_path, caplog):
    """A model whose data `write_without_jobs` does not write (a DecisionTreeClassificationModel;
    a OneVsRestModel, whose models are LogisticRegressionModels in `model_<i>/`): nothing
    written, no warning; `save_model_data` then uses Spark's writer, and it loads."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import DecisionTreeClassifier, LogisticRegression, OneVsRest

    from autolog.integrations._spark import save_model_data, write_without_jobs

    if kind == "decision tree":
        model = DecisionTreeClassifier(maxDepth=2).fit(data.train)
    else:
        model = OneVsRest(classifier=LogisticRegression(maxIter=3)).fit(data.train)
    with caplog.at_level(logging.WARNING, logger="autolog"):
        assert write_without_jobs(model, str(tmp_path / "ours")) is False
    assert not (tmp_path / "ours").exists() and caplog.records == []
    assert _write_counting_jobs(spark, lambda: save_model_data(model, str(tmp_path / "model"))) > 0
    loaded = PipelineModel.load(str(tmp_path / "model"))
    assert predictions(loaded, data.test) == predictions(model, data.test)


@needs_jobless_writer
def test_an_error_in_the_jobless_writer_falls_back_to_spark_and_warns_once(spark, data, tmp_path, caplog):
    """A model whose accessor raises while its data is written: warned once through logging,
    nothing of the attempt left, and Spark's own writer writes the model, which loads."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel

    from autolog.integrations._spark import save_model_data

    class BrokenAccessor(LogisticRegressionModel):
        @property
        def interceptVector(self):
            raise RuntimeError("an accessor that fails")

    models = [LogisticRegression(maxIter=3).fit(data.train) for _ in range(2)]
    for model in models:
        model.__class__ = BrokenAccessor
    with caplog.at_level(logging.WARNING, logger="autolog"):
        for index, model in enumerate(models):
            save_model_data(model, str(tmp_path / f"model-{index}"))
    warnings = [r.getMessage() for r in caplog.records if "without Spark jobs failed" in r.getMessage()]
    assert len(warnings) == 1 and "an accessor that fails" in warnings[0]
    for index, model in enumerate(models):
        loaded = PipelineModel.load(str(tmp_path / f"model-{index}"))
        assert predictions(loaded, data.test) == predictions(model, data.test)


@needs_jobless_writer
def test_without_pyarrow_spark_writes_the_model_silently(spark, data, tmp_path, caplog, monkeypatch):
    """PySpark without its pandas extras has no pyarrow: the job-free writer steps aside with no
    warning, nothing of the attempt left, and Spark's writer writes the model, which loads."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegression

    from autolog.integrations._spark import save_model_data, write_without_jobs

    model = LogisticRegression(maxIter=3).fit(data.train)
    for name in [n for n in sys.modules if n == "pyarrow" or n.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import pyarrow` now fails as if not installed
    with caplog.at_level(logging.WARNING, logger="autolog"):
        assert write_without_jobs(model, str(tmp_path / "ours")) is False
        assert not (tmp_path / "ours").exists()
        assert _write_counting_jobs(spark, lambda: save_model_data(model, str(tmp_path / "model"))) > 0
    assert caplog.records == []
    monkeypatch.undo()
    loaded = PipelineModel.load(str(tmp_path / "model"))
    assert predictions(loaded, data.test) == predictions(model, data.test)


def test_model_loads_with_mlflow_spark_from_an_mlflow_store(spark, data, tmp_path, monkeypatch):
    import mlflow
    import mlflow.spark
    from pyspark.ml.classification import LogisticRegression

    from autolog.backends.mlflow import TAG_MLFLOW_RUN_ID

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    autolog.autolog(tracking_uri=uri, integrations=["pyspark"])
    model = LogisticRegression(maxIter=3).fit(data.train)
    runs.flush()
    run = runs.search_runs(tracking_uri=uri)[0]
    mlflow_id = run.tags[TAG_MLFLOW_RUN_ID]

    loaded = mlflow.spark.load_model(f"runs:/{mlflow_id}/model")
    assert predictions(loaded, data.test) == predictions(model, data.test)
    assert type(autolog.load_model(run.run_id, tracking_uri=uri)) is type(model)


def test_a_cluster_writes_and_reads_models_through_its_filesystem(data, tmp_path, monkeypatch):
    """On a cluster the executors write the model to a temporary folder of the cluster's
    filesystem, copied to the driver; AUTOLOG_SPARK_DFS_TMPDIR names that folder (here one
    of the local filesystem, as a cluster's default filesystem would be)."""
    from pyspark.ml.classification import LogisticRegression

    dfs = tmp_path / "dfs"
    monkeypatch.setenv("AUTOLOG_SPARK_DFS_TMPDIR", dfs.as_uri())
    autolog.autolog()
    model = LogisticRegression(maxIter=3).fit(data.train)
    run = the_run()

    assert os.listdir(dfs) == []  # written there, copied down, removed
    folder = model_folder(run.run_id, tmp_path)
    assert {"metadata", "stages"} <= set(os.listdir(os.path.join(folder, "sparkml")))
    loaded = autolog.load_model(run.run_id)  # copied up to the cluster's filesystem, read from there
    assert predictions(loaded, data.test) == predictions(model, data.test)
    assert len(os.listdir(dfs)) == 1


# -- tuning --------------------------------------------------------------------------------------------
def cross_validator(parallelism: int = 1):
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    lr = LogisticRegression(maxIter=5)
    grid = ParamGridBuilder().addGrid(lr.regParam, [0.0, 0.3, 3.0]).build()
    return CrossValidator(estimator=lr, estimatorParamMaps=grid, evaluator=BinaryClassificationEvaluator(),
                          numFolds=2, seed=7, parallelism=parallelism)


def test_cross_validator_parent_and_child_runs(data, tmp_path):
    from pyspark.ml.classification import LogisticRegressionModel

    autolog.autolog()
    cv_model = cross_validator(parallelism=2).fit(data.train)  # fits on two threads of a pool
    parent = the_run()
    kids = children(parent)
    avg = list(cv_model.avgMetrics)
    best = int(np.argmax(avg))

    assert len(all_runs()) == 1 + 3  # the fits inside the search log nothing of their own
    assert parent.run_name.startswith("CrossValidator-")
    assert parent.params["numFolds"] == "2" and parent.params["parallelism"] == "2"
    assert parent.params["estimator"] == "LogisticRegression"
    assert parent.params["evaluator"] == "BinaryClassificationEvaluator"
    assert parent.params["BinaryClassificationEvaluator.metricName"] == "areaUnderROC"
    assert "estimatorParamMaps" not in parent.params
    assert parent.params["best_LogisticRegression.regParam"] == str([0.0, 0.3, 3.0][best])
    assert parent.metrics["best_avg_areaUnderROC"] == pytest.approx(avg[best])
    assert parent.metrics["best_std_areaUnderROC"] == pytest.approx(cv_model.stdMetrics[best])
    assert parent.metrics["training_accuracy"] == pytest.approx(cv_model.bestModel.summary.accuracy)

    assert [int(k.tags["autolog.candidate_index"]) for k in kids] == [0, 1, 2]
    for index, kid in enumerate(kids):
        assert kid.status == "FINISHED"
        assert kid.params["regParam"] == str([0.0, 0.3, 3.0][index])
        assert kid.params["maxIter"] == "5"
        assert kid.metrics["avg_areaUnderROC"] == pytest.approx(avg[index])
        assert kid.metrics["std_areaUnderROC"] == pytest.approx(cv_model.stdMetrics[index])
        assert kid.tags["estimator_name"] == "LogisticRegression"

    assert {"model", "best_model", "search_results.csv", "best_parameters.json",
            "estimator_info.json"} <= artifact_paths(parent.run_id)
    assert json.loads(artifact_text(parent.run_id, "best_parameters.json", tmp_path)) == {
        "LogisticRegression.regParam": [0.0, 0.3, 3.0][best]}
    csv_text = artifact_text(parent.run_id, "search_results.csv", tmp_path)
    assert csv_text.splitlines()[0] == "params,avg_areaUnderROC,std_areaUnderROC,param.LogisticRegression.regParam"
    info = json.loads(artifact_text(parent.run_id, "estimator_info.json", tmp_path))
    assert info["hierarchy"]["tuned_estimator"] == {"name": "LogisticRegression"}
    assert len(info["CrossValidator"]["tuning_parameter_map_list"]) == 3

    best_model = autolog.load_model(f"runs:/{parent.run_id}/best_model")
    assert isinstance(best_model, LogisticRegressionModel)
    assert predictions(best_model, data.test) == predictions(cv_model.bestModel, data.test)
    assert predictions(autolog.load_model(parent.run_id), data.test) == predictions(cv_model, data.test)


def test_max_tuning_runs_keeps_the_best_candidates(data):
    autolog.autolog(max_tuning_runs=2, log_models=False)
    cv_model = cross_validator().fit(data.train)
    parent = the_run()
    ranked = sorted(range(3), key=lambda i: cv_model.avgMetrics[i], reverse=True)

    assert sorted(int(k.tags["autolog.candidate_index"]) for k in children(parent)) == sorted(ranked[:2])


def test_train_validation_split(data):
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.regression import LinearRegression
    from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit

    autolog.autolog(log_models=False)
    lr = LinearRegression(labelCol="y", maxIter=5)
    grid = ParamGridBuilder().addGrid(lr.regParam, [0.0, 10.0]).build()
    tvs_model = TrainValidationSplit(estimator=lr, estimatorParamMaps=grid, trainRatio=0.7, seed=3,
                                     evaluator=RegressionEvaluator(labelCol="y")).fit(data.train)
    parent = the_run()
    kids = children(parent)
    rmse = list(tvs_model.validationMetrics)
    best = int(np.argmin(rmse))  # smaller is better for rmse

    assert parent.params["trainRatio"] == "0.7"
    assert parent.params["RegressionEvaluator.metricName"] == "rmse"
    assert parent.params["best_LinearRegression.regParam"] == str([0.0, 10.0][best])
    assert parent.metrics["best_rmse"] == pytest.approx(rmse[best])
    assert [k.metrics["rmse"] for k in kids] == pytest.approx(rmse)
    assert [k.params["regParam"] for k in kids] == ["0.0", "10.0"]


def test_fit_with_a_list_of_param_maps(data):
    from pyspark.ml.classification import LogisticRegression

    autolog.autolog()
    lr = LogisticRegression(maxIter=10)
    maps = [{lr.maxIter: 2}, {lr.maxIter: 4, lr.regParam: 0.1}]
    models = lr.fit(data.train, maps)
    parent = the_run()
    kids = children(parent)

    assert [m.getMaxIter() for m in models] == [2, 4]
    assert parent.tags["autolog.param_maps"] == "2"
    assert parent.params["maxIter"] == "10"
    assert [k.params["maxIter"] for k in kids] == ["2", "4"]
    assert kids[1].params["regParam"] == "0.1"
    for kid, model in zip(kids, models):
        assert kid.metrics["training_accuracy"] == pytest.approx(model.summary.accuracy)
        assert predictions(autolog.load_model(kid.run_id), data.test) == predictions(model, data.test)


def test_one_vs_rest_fits_on_a_pool_and_logs_once(spark, data):
    from pyspark.ml.classification import LogisticRegression, OneVsRest

    three = spark.createDataFrame(
        [(float(i % 3), v) for i, v in enumerate(r.features for r in data.train.select("features").collect())],
        ["label", "features"])
    autolog.autolog(log_models=False)
    OneVsRest(classifier=LogisticRegression(maxIter=3), parallelism=2).fit(three)
    run = the_run()

    assert all_runs() == [run]
    assert run.params["classifier"] == "LogisticRegression"
    assert run.params["LogisticRegression.maxIter"] == "3"
    assert run.params["parallelism"] == "2"


# -- post-training metrics ------------------------------------------------------------------------------
def test_evaluate_logs_to_the_run_of_the_model(data, tmp_path):
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator, MulticlassClassificationEvaluator

    autolog.autolog()
    model = LogisticRegression(maxIter=5).fit(data.train)
    test = data.test
    scored = model.transform(test)
    auc = BinaryClassificationEvaluator().evaluate(scored)
    evaluator = BinaryClassificationEvaluator()
    again = evaluator.evaluate(scored, {evaluator.metricName: "areaUnderPR"})  # the param map of evaluate
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(scored)
    BinaryClassificationEvaluator().evaluate(scored)  # the same metric again: a new key, never overwritten
    # predictions of a model autolog did not log: nothing
    autolog.autolog(disable=True)
    other = LogisticRegression(maxIter=2).fit(data.train)
    autolog.autolog()
    BinaryClassificationEvaluator().evaluate(other.transform(test))
    run = the_run()

    assert run.metrics["areaUnderROC_test"] == pytest.approx(auc)
    assert run.metrics["areaUnderPR_test"] == pytest.approx(again)
    assert run.metrics["accuracy_test"] == pytest.approx(accuracy)
    assert run.metrics["areaUnderROC-2_test"] == pytest.approx(auc)
    assert not [k for k in run.metrics if k.startswith("areaUnderROC-3")]  # other's evaluation: not here
    info = json.loads(artifact_text(run.run_id, "metric_info.json", tmp_path))
    assert info["areaUnderROC_test"]["evaluator_class"] == "pyspark.ml.evaluation.BinaryClassificationEvaluator"
    assert info["areaUnderPR_test"]["params"]["metricName"] == "areaUnderPR"
    assert info["accuracy_test"]["params"]["metricName"] == "accuracy"
    assert set(info) == {"areaUnderROC_test", "areaUnderPR_test", "accuracy_test", "areaUnderROC-2_test"}


# -- the keys MLflow logs: ours are a superset ------------------------------------------------------
def _keys_of_mlflow_runs(tmp_path, monkeypatch, train) -> list:
    import mlflow
    import mlflow.pyspark.ml

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow-keys.db")
    mlflow.pyspark.ml.autolog(log_models=False, log_datasets=False, silent=True)
    try:
        train()
    finally:
        mlflow.pyspark.ml.autolog(disable=True)
        while mlflow.active_run() is not None:
            mlflow.end_run()
    client = mlflow.MlflowClient()
    out = []
    for found in mlflow.search_runs(search_all_experiments=True, output_format="list"):
        artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
        out.append((found.data.tags.get("mlflow.parentRunId"), set(found.data.params), set(found.data.metrics), artifacts))
    return out


def _keys_of_our_runs(train) -> list:
    autolog.autolog(integrations=["pyspark"], log_models=False)
    try:
        train()
    finally:
        autolog.autolog(disable=True)
    return [(r.parent_run_id, set(r.params), set(r.metrics), artifact_paths(r.run_id)) for r in all_runs()]


def test_params_and_metrics_are_a_superset_of_mlflow_pyspark_ml_autolog(data, tmp_path, monkeypatch):
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    def train():
        model = pipeline().fit(data.raw)
        test = data.test_raw
        BinaryClassificationEvaluator().evaluate(model.transform(test))
        cross_validator().fit(data.train)

    ours = _keys_of_our_runs(train)
    theirs = _keys_of_mlflow_runs(tmp_path, monkeypatch, train)

    def parents(found):
        return sorted((r for r in found if r[0] is None), key=lambda r: sorted(r[1]))

    def kids(found):
        return sorted((r for r in found if r[0] is not None), key=lambda r: sorted(r[1]))

    assert len(parents(ours)) == len(parents(theirs)) == 2
    assert len(kids(ours)) == len(kids(theirs)) == 3
    for mine, mlflows in zip(parents(ours) + kids(ours), parents(theirs) + kids(theirs)):
        assert mlflows[1] <= mine[1], f"params MLflow logs and we do not: {sorted(mlflows[1] - mine[1])}"
        assert mlflows[2] <= mine[2], f"metrics MLflow logs and we do not: {sorted(mlflows[2] - mine[2])}"
        assert mlflows[3] <= mine[3], f"artifacts MLflow logs and we do not: {sorted(mlflows[3] - mine[3])}"
    pipeline_run = next(r for r in parents(theirs) if "stages" in r[1])
    assert "areaUnderROC_test" in pipeline_run[2]  # the comparison covered a post-training metric


# -- the model is written off the training thread ------------------------------------------------------
def test_model_is_written_on_the_worker_from_a_snapshot(spark, data, tmp_path):
    """While the logger's worker is held, the fit returns and no Spark job but the fit's has
    run on the training thread; the user then changes the model. Released, the worker writes
    the model as it was when fit returned."""
    from pyspark.ml.classification import LogisticRegression

    tracker = spark.sparkContext.statusTracker()

    def ungrouped_since(last: int) -> list:
        """Jobs run outside any job group after job `last` (job ids grow; the tracker forgets
        the oldest jobs past spark.ui.retainedJobs, never the newest)."""
        return [job for job in tracker.getJobIdsForGroup(None) if job > last]

    last = max(tracker.getJobIdsForGroup(None), default=-1)
    spark.sparkContext.setJobGroup("training-thread", "the test's own thread")
    release = threading.Event()
    try:
        autolog.autolog()
        with autolog.start_run() as run:
            runs.flush()  # the store and the run exist before the worker is held (listed below)
            run.defer(lambda: release.wait(120), label="holding the worker")
            model = LogisticRegression(maxIter=4).fit(data.train)
            model.setThreshold(0.9)  # after fit: not what is logged
            predictions(model, data.test)  # and a transform that carries it to the JVM object
            assert ungrouped_since(last) == []
            # the store as it is (no flush: that would wait for the held worker)
            assert "model" not in {a.path for a in runs.logger_for().backend.list_artifacts(run.run_id)}
            release.set()
    finally:
        release.set()
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    runs.flush()

    assert ungrouped_since(last)  # the writer's and the summary's jobs, on another thread
    loaded = autolog.load_model(run.run_id)
    assert loaded.getThreshold() == 0.5
    assert run.run_id == the_run().run_id and the_run().params["threshold"] == "0.5"


SCRIPT = textwrap.dedent("""
    import sys, threading
    sys.path.insert(0, sys.argv[1])
    import autolog
    from autolog.instrument import containment
    containment.set_error_hook(lambda where, exc: print("CONTAINED", where, repr(exc), flush=True))
    from test_pyspark import spark_session, frame
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    def fit_while_the_worker_is_held(scenario, before_release):
        spark = spark_session()
        train = VectorAssembler(inputCols=["a", "b", "c"], outputCol="features").transform(
            spark.createDataFrame(frame(40)))
        release = threading.Event()
        with autolog.start_run(run_name=scenario) as run:
            run.defer(release.wait, label="holding the worker")
            LogisticRegression(maxIter=2).fit(train)
            before_release(spark)
            release.set()

    def stop(spark):
        spark.stop()  # the model not written yet: it is written now, before the context stops

    def stop_behind_autologs_back(spark):
        autolog.autolog(disable=True)
        spark.stop()  # autolog is off: nothing runs first; the worker finds no session
        autolog.autolog(integrations=["pyspark"])

    autolog.autolog(integrations=["pyspark"])
    fit_while_the_worker_is_held("stop", stop)
    autolog.flush()
    fit_while_the_worker_is_held("stopped-behind-our-back", stop_behind_autologs_back)
    autolog.flush()
    fit_while_the_worker_is_held("exit", lambda spark: None)
    print("DONE", flush=True)  # neither stopped nor flushed: the model is written at exit, before the JVM goes
""")


def test_session_stopping_before_the_worker_writes(store_dir, tmp_path):
    """The three ways a session can end before the logger's worker has written a model, in
    one Python process (each a run): stopped while autolog is on (the model is written first,
    on the stopping thread), stopped while autolog is off (one warning, the run tagged, no
    model), and the interpreter exiting with the session running (written at exit)."""
    env = {**os.environ, "AUTOLOG_TRACKING_URI": store_dir, "AUTOLOG_JOURNAL_DIR": str(tmp_path / "journal")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, os.path.dirname(os.path.abspath(__file__))],
                          env=env, capture_output=True, text=True, timeout=280)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "DONE" in done.stdout and "CONTAINED" not in done.stdout, output
    found = {run.run_name: run for run in top_runs()}
    assert sorted(found) == ["exit", "stop", "stopped-behind-our-back"]
    for name in ("stop", "exit"):
        run = found[name]
        assert run.params["maxIter"] == "2"
        assert "model" in artifact_paths(run.run_id), name
        assert TAG_MODEL_SKIPPED not in run.tags and "training_accuracy" in run.metrics
    skipped = found["stopped-behind-our-back"]
    assert skipped.params["maxIter"] == "2"
    assert "model" not in artifact_paths(skipped.run_id)
    assert "was stopped before the model could be written" in skipped.tags[TAG_MODEL_SKIPPED]
    assert output.count("the SparkSession was stopped before autolog") == 1  # one warning


# -- xgboost.spark -----------------------------------------------------------------------------------
def test_xgboost_spark_classifier(data):
    pytest.importorskip("xgboost.spark")
    from xgboost.spark import SparkXGBClassifier, SparkXGBClassifierModel

    autolog.autolog(integrations=["pyspark"])
    # alpha is an xgboost param that is no Spark param: xgboost.spark keeps it in arbitrary_params_dict
    estimator = SparkXGBClassifier(n_estimators=3, max_depth=2, learning_rate=0.3, num_workers=1, alpha=0.5)
    model = estimator.fit(data.train)
    run = the_run()

    assert run.params["arbitrary_params_dict"] == "{'alpha': 0.5}"
    assert run.params["arbitrary_params_dict.alpha"] == "0.5"
    assert run.params["n_estimators"] == "3" and run.params["max_depth"] == "2"
    assert run.params["learning_rate"] == "0.3" and run.params["num_workers"] == "1"
    for name in ("objective", "reg_lambda", "subsample", "tree_method", "booster"):  # defaults too
        param = estimator.getParam(name)
        if estimator.isDefined(param):
            assert run.params[name] == str(estimator.getOrDefault(param))
    assert run.params["estimator_class"] == "xgboost.spark.estimator.SparkXGBClassifier"
    loaded = autolog.load_model(run.run_id)
    assert isinstance(loaded, SparkXGBClassifierModel)
    assert predictions(loaded, data.test) == predictions(model, data.test)


# -- bad input: one warning, the call unaffected ----------------------------------------------------------
def python_estimator_classes():
    """A pure-Python estimator whose params may hold anything, and a model with or without a writer."""
    from pyspark.ml import Estimator, Model
    from pyspark.ml.param import Param, Params
    from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

    class Shift(Params):
        offset = Param(Params._dummy(), "offset", "added to the column")
        hook = Param(Params._dummy(), "hook", "any object")

        def __init__(self):
            super().__init__()
            self._setDefault(offset=1.0, hook=None)

    class ShiftModel(Model, Shift, DefaultParamsReadable, DefaultParamsWritable):
        def _transform(self, dataset):
            return dataset.withColumn("prediction", dataset["a"] + self.getOrDefault(self.offset))

    class BareModel(Model, Shift):  # no writer
        def _transform(self, dataset):
            return dataset

    class ShiftEstimator(Estimator, Shift, DefaultParamsReadable, DefaultParamsWritable):
        def __init__(self, hook=None, bare=False):
            super().__init__()
            self._set(hook=hook)
            self.bare = bare

        def _fit(self, dataset):
            model = BareModel() if self.bare else ShiftModel()
            return self._copyValues(model)

    return ShiftEstimator


def test_an_unserialisable_param_warns_once_and_the_fit_is_unaffected(data, caplog):
    ShiftEstimator = python_estimator_classes()
    lock = threading.Lock()  # no JSON, no pickle
    autolog.autolog()
    with caplog.at_level(logging.WARNING, logger="autolog"):
        model = ShiftEstimator(hook=lock).fit(data.raw)
        run = the_run()

    assert model.getOrDefault(model.hook) is lock
    assert run.status == "FINISHED"
    assert run.params["offset"] == "1.0" and run.params["hook"].startswith("<unlocked _thread.lock")
    assert "its writer failed" in run.tags[TAG_MODEL_SKIPPED]
    assert "model" not in artifact_paths(run.run_id)
    assert len([r for r in caplog.records if "no model is logged" in r.getMessage()]) == 1


def test_a_model_without_a_writer_warns_once(data, caplog):
    ShiftEstimator = python_estimator_classes()
    autolog.autolog()
    with caplog.at_level(logging.WARNING, logger="autolog"):
        model = ShiftEstimator(bare=True).fit(data.raw)
        run = the_run()

    assert type(model).__name__ == "BareModel"
    assert "has no writer" in run.tags[TAG_MODEL_SKIPPED]
    assert len([r for r in caplog.records if "has no writer" in r.getMessage()]) == 1


def test_a_dataframe_with_zero_rows(data, caplog):
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StringIndexer

    empty = data.raw.limit(0)
    autolog.autolog()
    with caplog.at_level(logging.WARNING, logger="autolog"):
        indexer = StringIndexer(inputCol="cat", outputCol="cat_index").fit(empty)
        run = the_run()
    assert indexer.labels == []
    assert run.status == "FINISHED" and run.params["input_rows"] == "0"
    assert len([r for r in caplog.records if "zero rows" in r.getMessage()]) == 1

    # an estimator that refuses empty data: its own exception, unchanged; the run FAILED
    with pytest.raises(Exception, match="Nothing has been added to this summarizer") as raised:
        LogisticRegression().fit(data.train.limit(0))
    assert type(raised.value).__module__.startswith(("pyspark", "py4j"))
    failed = [r for r in top_runs() if r.run_id != run.run_id]
    assert [r.status for r in failed] == ["FAILED"]
    assert failed[0].params["maxIter"] == "100"


# -- enable, disable, enable ------------------------------------------------------------------------------
def test_enable_disable_enable_round_trip(data):
    from pyspark.ml.classification import LogisticRegression

    owners = identity_owners()
    before = {owner: dict(vars(owner)) for owner in owners}

    autolog.autolog(log_models=False)
    LogisticRegression(maxIter=2).fit(data.train)
    assert len(all_runs()) == 1
    assert any(vars(owner) != attributes for owner, attributes in before.items())

    autolog.autolog(disable=True)
    for owner, attributes in before.items():
        now = dict(vars(owner))
        assert now.keys() == attributes.keys(), owner
        assert all(now[k] is v for k, v in attributes.items()), owner
    LogisticRegression(maxIter=2).fit(data.train)
    assert len(all_runs()) == 1

    autolog.autolog(log_models=False)
    LogisticRegression(maxIter=2).fit(data.train)
    assert len(all_runs()) == 2
