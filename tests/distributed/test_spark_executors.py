"""Models trained in Spark executor code are child runs of the driver's active run.

Real pyspark in local[2] (Python workers are separate processes), scikit-learn inside
mapInPandas / applyInPandas, one model per group; the local store and a real MLflow server.
One SparkSession for the module.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")
pytest.importorskip("sklearn")

import autolog  # noqa: E402
from autolog import runs  # noqa: E402
from autolog.runs import handover  # noqa: E402

GROUPS = 4


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (SparkSession.builder.master("local[2]").appName("autolog-distributed")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.default.parallelism", "2")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def grouped(spark):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"g": np.repeat(np.arange(GROUPS), 40), "a": rng.normal(size=40 * GROUPS),
                          "b": rng.normal(size=40 * GROUPS)})
    frame["label"] = (frame.a - frame.b > 0).astype(int)
    return spark.createDataFrame(frame).repartition(2, "g")


def fit_per_group_in_partition(batches):
    """mapInPandas: one LogisticRegression per group of each partition."""
    from sklearn.linear_model import LogisticRegression

    frame = pd.concat(list(batches))
    for key, part in frame.groupby("g"):
        model = LogisticRegression().fit(part[["a", "b"]], part["label"])
        yield pd.DataFrame({"g": [int(key)], "score": [float(model.score(part[["a", "b"]], part["label"]))]})


def fit_group(key, frame):
    """applyInPandas: one model per group."""
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(max_depth=2).fit(frame[["a", "b"]], frame["label"])
    return pd.DataFrame({"g": [int(key[0])], "score": [float(model.score(frame[["a", "b"]], frame["label"]))]})


def test_map_in_pandas_models_are_child_runs_of_the_driver_run(spark, grouped):
    import pyspark.core.rdd as rdd

    original = vars(rdd)["_prepare_for_python_RDD"]
    autolog.autolog()
    with autolog.start_run(run_name="driver") as parent:
        out = grouped.mapInPandas(fit_per_group_in_partition, "g long, score double").toPandas()
    assert sorted(out.g) == list(range(GROUPS))
    children = runs.search_runs(parent_run_id=parent.run_id)
    assert len(children) == GROUPS  # one run per model, none for the driver's own work
    for child in children:
        assert child.status == "FINISHED"
        assert child.parent_run_id == parent.run_id
        assert child.params["C"] == "1.0"
        assert "training_accuracy_score" in child.metrics
        assert child.tags[handover.TAG_SPARK_PARTITION] in {"0", "1"}
        assert child.tags[handover.TAG_SPARK_STAGE].isdigit()
    assert len({c.tags[handover.TAG_SPARK_PARTITION] for c in children}) == 2  # both executors' tasks
    assert runs.get_run(parent.run_id).status == "FINISHED"

    # no driver run active: the job carries none, the models are runs of their own
    autolog.flush()
    before = len(runs.search_runs())
    grouped.mapInPandas(fit_per_group_in_partition, "g long, score double").collect()
    autolog.flush()
    alone = [r for r in runs.search_runs() if r.parent_run_id is None and r.run_id != parent.run_id]
    assert len(runs.search_runs()) == before + GROUPS and len(alone) == GROUPS

    # submitted from inside a training call (as xgboost.spark's fit does): the executors'
    # fits are part of that call, logged once, by it
    with runs.TrainingCall("test", "outer") as call:
        grouped.mapInPandas(fit_per_group_in_partition, "g long, score double").collect()
    autolog.flush()
    assert runs.search_runs(parent_run_id=call.run.run_id) == []
    assert len(runs.search_runs()) == before + GROUPS + 1
    before += 1

    # disabled: the function is the original again and nothing is shipped with the work
    autolog.autolog(disable=True)
    assert vars(rdd)["_prepare_for_python_RDD"] is original
    assert spark.sparkContext.getLocalProperty(handover.SPARK_RUN_CONTEXT) is None
    grouped.mapInPandas(fit_per_group_in_partition, "g long, score double").collect()
    autolog.flush()
    assert len(runs.search_runs()) == before + GROUPS


def test_apply_in_pandas_against_an_mlflow_server(spark, grouped, mlflow_server, mlflow_client, mlflow_experiment,
                                                   monkeypatch):
    monkeypatch.setenv("AUTOLOG_TRACKING_URI", mlflow_server.url)
    autolog.autolog()
    with autolog.start_run(run_name="driver") as parent:
        out = grouped.groupBy("g").applyInPandas(fit_group, "g long, score double").toPandas()
    assert len(out) == GROUPS
    autolog.flush()
    backend = runs.logger_for().backend
    parent_mlflow_id = backend.mlflow_run_id(parent.run_id)
    experiment = mlflow_client.get_experiment_by_name(mlflow_experiment)
    found = mlflow_client.search_runs([experiment.experiment_id],
                                      filter_string=f"tags.mlflow.parentRunId = '{parent_mlflow_id}'")
    assert len(found) == GROUPS
    for child in found:
        assert child.info.status == "FINISHED"
        assert child.data.params["max_depth"] == "2"
        assert handover.TAG_SPARK_PARTITION in child.data.tags


def test_torch_distributor_ranks_share_one_run(spark):
    pytest.importorskip("torch.distributed")
    from pyspark.ml.torch.distributor import TorchDistributor

    def ddp_train():
        """TorchDistributor's training function: plain DDP on gloo, CPU (nested: shipped by value)."""
        import torch
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        dist.init_process_group("gloo")
        torch.manual_seed(0)
        model = DistributedDataParallel(torch.nn.Linear(4, 1))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        x, y = torch.randn(16, 4), torch.randn(16, 1)
        for _ in range(5):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
        rank = dist.get_rank()
        dist.destroy_process_group()
        return rank

    autolog.autolog()
    assert TorchDistributor(num_processes=2, local_mode=True, use_gpu=False).run(ddp_train) in (0, 1)
    [run] = runs.search_runs()  # nothing from rank 1, and no second run
    assert run.status == "FINISHED"
    assert run.params[handover.PARAM_WORLD_SIZE] == "2" and run.params[handover.PARAM_BACKEND] == "gloo"
    assert run.params["optimizer_name"] == "SGD"
    assert run.tags[handover.TAG_LAUNCHER] == "torchrun"
