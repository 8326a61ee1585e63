"""Lightning strategy="ddp" with 2 CPU processes: one run for the job, nothing from rank 1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("lightning")

from autolog import runs  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "lightning_ddp.py")


def test_lightning_ddp_logs_one_run():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, SCRIPT], env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0 and "trained 0" in done.stdout, done.stderr[-3000:]
    [run] = runs.search_runs()
    assert run.status == "FINISHED"
    assert "train_loss" in run.metrics
    assert not [key for key in run.params if key.endswith(".2")]
    assert not runs.search_runs(status="RUNNING")
