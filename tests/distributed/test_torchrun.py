"""torch DDP launched by the real torchrun (2 processes, gloo, CPU): one run per job.

The script (scripts/ddp_train.py) is a plain DDP loop captured by the torch integration on
rank 0, plus a metric every rank logs by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch.distributed")

from autolog import runs  # noqa: E402
from autolog.runs import handover  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "ddp_train.py")
TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")


def torchrun(tmp_path, **env) -> subprocess.CompletedProcess:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir(exist_ok=True)
    environment = dict(os.environ, CHECKPOINT=str(checkpoints), OMP_NUM_THREADS="1", **env)
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                 handover.ENV_JOB_ID):
        environment.pop(name, None)
    return subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", SCRIPT], env=environment,
                          capture_output=True, text=True, timeout=300)


def test_one_run_per_job_params_and_checkpoint_once(tmp_path):
    done = torchrun(tmp_path, AUTOLOG_LOG_SYSTEM_METRICS="true", AUTOLOG_SYSTEM_METRICS_INTERVAL="0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    # rank 1 logs nothing of its loop: it is not even wrapped (a wrapper call per step is its cost)
    assert "rank 0 loop wrapped: True" in done.stdout and "rank 1 loop wrapped: False" in done.stdout
    [run] = runs.search_runs()
    assert run.status == "FINISHED"
    assert run.params[handover.PARAM_WORLD_SIZE] == "2"
    assert run.params[handover.PARAM_BACKEND] == "gloo"
    assert run.params["optimizer_name"] == "SGD" and run.params["lr"] == "0.05"
    assert not [key for key in run.params if key.endswith(".2")]  # no param written twice
    assert {"loss", "rank_loss"} <= set(run.metrics)
    assert not [key for key in run.metrics if "rank_1" in key]  # rank 0's metrics only, by default
    history = runs.logger_for().backend.get_metric_history(run.run_id, "rank_loss")
    assert sorted(m.step for m in history) == list(range(10))  # once per step: rank 1's went nowhere
    # one system-metrics sampler for the host (rank 0's), named by rank
    assert any(key.startswith("system/rank_0/") for key in run.metrics)
    assert not any(key.startswith("system/rank_1/") for key in run.metrics)
    artifacts = [a.path for a in runs.logger_for().backend.list_artifacts(run.run_id, "checkpoints")]
    assert sorted(a for a in artifacts if a.endswith(".pt")) == ["checkpoints/model-rank0.pt", "checkpoints/model.pt"]
    assert not runs.search_runs(status="RUNNING")


def test_every_rank_on_request_and_a_failed_rank_fails_the_job(tmp_path):
    done = torchrun(tmp_path, LOG_ALL_RANKS="1", FAIL_RANK="1")
    assert done.returncode != 0 and "rank 1 failed at step 3" in done.stderr
    assert "rank 1 loop wrapped: True" in done.stdout  # log_all_ranks: its loop metrics are wanted
    [run] = runs.search_runs()
    assert run.status == "FAILED"
    assert run.tags[handover.TAG_FAILED_RANK] == "1"
    backend = runs.logger_for().backend
    assert sorted(m.step for m in backend.get_metric_history(run.run_id, "rank_loss/rank_1")) == [0, 1, 2]
    assert [m.step for m in backend.get_metric_history(run.run_id, "rank_loss")][:3] == [0, 1, 2]
    # the torch integration's own metrics from rank 1 too (its first optimizer step), by rank
    assert [m.step for m in backend.get_metric_history(run.run_id, "loss/rank_1")] == [1]
    assert [m.step for m in backend.get_metric_history(run.run_id, "lr-SGD/rank_1")] == [1]
    assert not [key for key in run.params if "rank_1" in key or key.endswith(".2")]  # params: rank 0's, once
    artifacts = [a.path for a in backend.list_artifacts(run.run_id, "checkpoints")]
    assert "checkpoints/model-rank1.pt" not in artifacts  # rank 1 logged until step 2, its file is not the job's
    assert not runs.search_runs(status="RUNNING")
