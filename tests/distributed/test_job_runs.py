"""Ranks of one job share one run, with no communication: handover's derived run ids.

The ranks here are plain processes given the variables a launcher sets (torchrun's), so
the order in which they start, fail and end is the test's to choose; tests/distributed/
test_torchrun.py runs the real launcher.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

import autolog
from autolog import runs
from autolog.instrument.role import process_role
from autolog.runs import handover

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "rank.py")
LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "TF_CONFIG", "SLURM_JOB_ID", "SLURM_STEP_ID",
                 "NODE_RANK", handover.ENV_JOB_ID)


@pytest.fixture
def clean_launcher(monkeypatch):
    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def torchrun_env(rank: int, run_id: str, **extra) -> dict:
    env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
               MASTER_ADDR="127.0.0.1", MASTER_PORT="29999", TORCHELASTIC_RUN_ID=run_id, AUTOLOG_RETRY_SECONDS="120")
    env.update(extra)
    return env


def start_rank(mode: str, rank: int, run_id: str, **extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, SCRIPT, mode], env=torchrun_env(rank, run_id, **extra),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- the identity every rank derives alike --------------------------------------------------------
def test_ranks_derive_one_run_id_from_the_launcher(clean_launcher):
    env = torchrun_env(0, "abc")
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID"):
        clean_launcher.setenv(name, env[name])
    rank0 = handover.job_identity()
    clean_launcher.setenv("RANK", "1")
    clean_launcher.setenv("LOCAL_RANK", "1")
    assert handover.job_identity() == rank0 and "TORCHELASTIC_RUN_ID=abc" in rank0
    assert handover.job_run_id(rank0, 0) != handover.job_run_id(rank0, 1)  # the second run of the job
    clean_launcher.setenv("MASTER_PORT", "30000")
    assert handover.job_identity() != rank0  # another job
    clean_launcher.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert "restart=1" in handover.job_identity()  # a restarted job: a run of its own
    clean_launcher.setenv(handover.ENV_JOB_ID, "slurm-42")
    assert handover.job_identity() == f"{handover.ENV_JOB_ID}=slurm-42"


def test_tf_config_chief_and_worker_agree(clean_launcher):
    cluster = {"chief": ["127.0.0.1:2000"], "worker": ["127.0.0.1:2001"]}
    clean_launcher.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    chief = handover.job_identity()
    assert process_role().is_primary
    clean_launcher.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert handover.job_identity() == chief and not process_role().is_primary


def test_a_single_process_is_no_job(clean_launcher):
    assert handover.job_identity() is None
    clean_launcher.setenv("RANK", "0")
    clean_launcher.setenv("WORLD_SIZE", "1")
    assert handover.job_identity() is None
    autolog.autolog()
    with autolog.start_run() as run:
        pass
    assert handover.TAG_JOB not in runs.get_run(run.run_id).tags


# -- processes ---------------------------------------------------------------------------------------
def test_a_failed_rank_fails_the_run_the_primary_ends_later(clean_launcher):
    job = uuid.uuid4().hex
    primary = start_rank("primary", 0, job)
    ready = primary.stdout.readline().split()
    assert ready[0] == "ready", primary.stderr.read()
    failing = start_rank("fail", 1, job)
    _, err = failing.communicate(timeout=120)
    assert failing.returncode == 1 and "rank 1 broke" in err
    primary.communicate("\n", timeout=120)  # the primary ends the run FINISHED after the failure
    assert primary.returncode == 0
    run = runs.get_run(ready[1])
    assert run.status == "FAILED"
    assert run.tags[handover.TAG_FAILED_RANK] == "1"
    assert "rank 1 broke" in run.tags[handover.TAG_FAILED_RANK_ERROR]
    assert run.params["lr"] == "0.1" and "lr.2" not in run.params  # params once, by the primary
    assert run.params[handover.PARAM_WORLD_SIZE] == "2" and run.params[handover.PARAM_LAUNCHER] == "torchrun"
    assert set(run.metrics) == {"loss"}  # rank 1's metrics only with log_all_ranks
    assert len(runs.search_runs()) == 1


def _rank_logs_before_the_run_exists(job: str) -> str:
    """Rank 1 logs into the job's run before rank 0 has created it; its logger waits for it."""
    rank1 = start_rank("log", 1, job, AUTOLOG_LOG_ALL_RANKS="true")
    logged = rank1.stdout.readline().split()
    assert logged[0] == "logged", rank1.stderr.read()
    primary = start_rank("primary", 0, job)
    assert primary.stdout.readline().split()[0] == "ready"
    primary.communicate("\n", timeout=120)
    out, err = rank1.communicate(timeout=180)
    assert rank1.returncode == 0 and "flushed" in out, err
    return logged[1]


def test_a_rank_logging_before_the_run_exists_waits_for_it(clean_launcher):
    run_id = _rank_logs_before_the_run_exists(uuid.uuid4().hex)
    run = runs.get_run(run_id)
    assert run.status == "FINISHED"
    assert run.metrics["loss"] == 1.0 and run.metrics["loss/rank_1"] == 3.0
    assert len(runs.search_runs()) == 1


def test_a_rank_logging_before_the_run_exists_on_an_mlflow_server(clean_launcher, mlflow_server, mlflow_client,
                                                                   mlflow_experiment):
    clean_launcher.setenv("AUTOLOG_TRACKING_URI", mlflow_server.url)
    _rank_logs_before_the_run_exists(uuid.uuid4().hex)
    experiment = mlflow_client.get_experiment_by_name(mlflow_experiment)
    [run] = mlflow_client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"loss": 1.0, "loss/rank_1": 3.0}


def test_one_system_metrics_sampler_per_host_named_by_rank(clean_launcher):
    """Rank 1 as the first rank of another host (LOCAL_RANK 0) samples it; rank 2, the second
    rank of that host (LOCAL_RANK 1), does not."""
    job = uuid.uuid4().hex
    metrics_on = {"AUTOLOG_LOG_SYSTEM_METRICS": "true", "AUTOLOG_SYSTEM_METRICS_INTERVAL": "60",
                  "WORLD_SIZE": "3", "LOCAL_WORLD_SIZE": "2"}
    primary = start_rank("primary", 0, job, WORLD_SIZE="3", LOCAL_WORLD_SIZE="2")
    ready = primary.stdout.readline().split()
    assert ready[0] == "ready", primary.stderr.read()
    for rank, local_rank in ((1, 0), (2, 1)):
        other = start_rank("sample", rank, job, LOCAL_RANK=str(local_rank), **metrics_on)
        out, err = other.communicate(timeout=180)
        assert other.returncode == 0 and "sampled" in out, err
    primary.communicate("\n", timeout=120)
    run = runs.get_run(ready[1])
    assert run.status == "FINISHED"
    assert "system/rank_1/cpu_utilization_percentage" in run.metrics
    assert run.tags["autolog.system.node.rank_1.rank"] == "1"
    assert not [key for key in run.metrics if key.startswith("system/rank_2/")]
