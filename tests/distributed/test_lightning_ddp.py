"""Lightning strategy="ddp" with 2 CPU processes (gloo), launched by Lightning itself: one run for
the job, started inside the launched processes so that every rank derives the same run id.

The script is tests/distributed/scripts/lightning_ddp.py; Lightning re-runs it for rank 1.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("lightning")

from autolog import runs  # noqa: E402
from autolog.runs import handover  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "lightning_ddp.py")


def lightning_ddp(tmp_path, **env) -> subprocess.CompletedProcess:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir(exist_ok=True)
    environment = dict(os.environ, CHECKPOINT=str(checkpoints), OMP_NUM_THREADS="1", **env)
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID", handover.ENV_JOB_ID):
        environment.pop(name, None)
    return subprocess.run([sys.executable, SCRIPT], env=environment, capture_output=True, text=True, timeout=300)


def test_one_run_for_the_job_written_once_by_rank_0(tmp_path):
    done = lightning_ddp(tmp_path, AUTOLOG_LOG_SYSTEM_METRICS="true", AUTOLOG_SYSTEM_METRICS_INTERVAL="0.5")
    assert done.returncode == 0 and "trained 0" in done.stdout, done.stderr[-3000:]
    [run] = runs.search_runs()  # not one per rank
    assert run.status == "FINISHED"
    assert run.tags[handover.TAG_LAUNCHER] == "lightning"
    assert run.params[handover.PARAM_WORLD_SIZE] == "2"
    assert run.params[handover.PARAM_BACKEND] == "gloo"
    assert run.params["strategy"] == "DDPStrategy" and run.params["lr"] == "0.05"
    assert run.params["optimizer_name"] == "SGD"
    assert not [key for key in run.params if key.endswith(".2")]  # no param written twice
    backend = runs.logger_for().backend
    assert sorted(m.step for m in backend.get_metric_history(run.run_id, "train_loss")) == [0, 1]  # rank 0's
    assert not [key for key in run.metrics if "rank_1" in key]
    # one system-metrics sampler for the host (rank 0's), named by rank
    assert any(key.startswith("system/rank_0/") for key in run.metrics)
    assert not any(key.startswith("system/rank_1/") for key in run.metrics)
    saved = sorted(os.listdir(tmp_path / "checkpoints"))
    artifacts = [a.path for a in backend.list_artifacts(run.run_id, "checkpoints") if a.path.endswith(".ckpt")]
    assert sorted(artifacts) == [f"checkpoints/{name}" for name in saved] and len(saved) == 2  # each once
    assert [a.path for a in backend.list_artifacts(run.run_id, "model")]  # the model, from rank 0
    assert not runs.search_runs(status="RUNNING")


@pytest.mark.parametrize("all_ranks", ["1", "0"], ids=["log_all_ranks", "rank_0_only"])
def test_a_failed_rank_fails_the_job(tmp_path, all_ranks):
    """With log_all_ranks rank 1 has joined the run when it fails; without, it never did and
    its exit names the job's run all the same."""
    done = lightning_ddp(tmp_path, LOG_ALL_RANKS=all_ranks, FAIL_RANK="1")
    # rank 1 raises; Lightning's observer then kills rank 0, which waits in a collective
    assert done.returncode != 0 and "rank 1 failed in epoch 1" in done.stderr, done.stderr[-3000:]
    [run] = runs.search_runs()
    assert run.status == "FAILED"
    assert run.tags[handover.TAG_FAILED_RANK] == "1"
    assert "rank 1 failed in epoch 1" in run.tags[handover.TAG_FAILED_RANK_ERROR]  # the exception itself
    backend = runs.logger_for().backend
    rank_1 = [m.step for m in backend.get_metric_history(run.run_id, "train_loss/rank_1")]
    assert rank_1 == ([0] if all_ranks == "1" else [])  # its first epoch, on request only
    assert not [key for key in run.params if key.endswith(".2") or "rank_1" in key]
    assert not runs.search_runs(status="RUNNING")
