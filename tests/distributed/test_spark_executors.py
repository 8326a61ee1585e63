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


def _ddp_train():
    """TorchDistributor's training function: plain DDP on gloo, CPU. Made here, nested, so that
    cloudpickle ships it by value. Every rank saves a file of its own at step 2; `fail_rank`
    raises at step 3; rank 0 waits for its first system-metrics sample when they are on."""

    def ddp_train(checkpoints, fail_rank=None):
        import os

        import torch
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        import autolog

        dist.init_process_group("gloo")
        rank = dist.get_rank()
        torch.manual_seed(0)
        model = DistributedDataParallel(torch.nn.Linear(4, 1))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        x, y = torch.randn(16, 4), torch.randn(16, 1)
        for step in range(5):
            if rank == fail_rank and step == 3:
                raise RuntimeError(f"rank {rank} failed at step {step}")
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
            if step == 2:
                torch.save(model.module.state_dict(), os.path.join(checkpoints, f"model-rank{rank}.pt"))
        if rank == 0 and os.environ.get("AUTOLOG_LOG_SYSTEM_METRICS") == "true":
            from autolog.provenance.capture import sampler

            sampler().wait_for_samples(autolog.active_run().run_id, 1, 120)
        dist.barrier()
        dist.destroy_process_group()
        return "trained"  # every rank: each writes TorchDistributor's output file, the last one wins

    return ddp_train


def test_torch_distributor_ranks_share_one_run(spark, tmp_path, monkeypatch):
    pytest.importorskip("torch.distributed")
    from pyspark.ml.torch.distributor import TorchDistributor

    monkeypatch.setenv("AUTOLOG_LOG_SYSTEM_METRICS", "true")
    monkeypatch.setenv("AUTOLOG_SYSTEM_METRICS_INTERVAL", "0.5")
    autolog.autolog()
    distributor = TorchDistributor(num_processes=2, local_mode=True, use_gpu=False)
    assert distributor.run(_ddp_train(), str(tmp_path)) == "trained"
    [run] = runs.search_runs()  # nothing from rank 1, and no second run
    assert run.status == "FINISHED"
    assert run.params[handover.PARAM_WORLD_SIZE] == "2" and run.params[handover.PARAM_BACKEND] == "gloo"
    assert run.params["optimizer_name"] == "SGD"
    assert run.tags[handover.TAG_LAUNCHER] == "torchrun"
    assert not [key for key in run.params if key.endswith(".2")]  # no param written twice
    assert "loss" in run.metrics and not [key for key in run.metrics if "rank_1" in key]
    # the ranks' host, sampled once (by its first rank), named by rank
    assert any(key.startswith("system/rank_0/") for key in run.metrics)
    artifacts = [a.path for a in runs.logger_for().backend.list_artifacts(run.run_id, "checkpoints")]
    assert [a for a in artifacts if a.endswith(".pt")] == ["checkpoints/model-rank0.pt"]
    assert not runs.search_runs(status="RUNNING")


def test_torch_distributor_every_rank_on_request_and_a_failed_rank_fails_the_run(spark, tmp_path):
    pytest.importorskip("torch.distributed")
    from pyspark.ml.torch.distributor import TorchDistributor

    autolog.autolog(log_all_ranks=True)
    with pytest.raises(RuntimeError, match="TorchDistributor failed"):
        TorchDistributor(num_processes=2, local_mode=True, use_gpu=False).run(_ddp_train(), str(tmp_path), 1)
    [run] = runs.search_runs()
    assert run.status == "FAILED"
    assert run.tags[handover.TAG_FAILED_RANK] == "1"
    assert "rank 1 failed at step 3" in run.tags[handover.TAG_FAILED_RANK_ERROR]
    backend = runs.logger_for().backend
    assert [m.step for m in backend.get_metric_history(run.run_id, "loss/rank_1")] == [1]  # its first step
    assert not [key for key in run.params if "rank_1" in key or key.endswith(".2")]
    artifacts = [a.path for a in backend.list_artifacts(run.run_id, "checkpoints")]
    assert "checkpoints/model-rank1.pt" not in artifacts
    assert not runs.search_runs(status="RUNNING")
