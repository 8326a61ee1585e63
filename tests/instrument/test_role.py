"""process_role: the environment of each launcher, a real 2-process torch.distributed group,
a real torchrun, and a real Spark driver and executor."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from autolog.instrument.role import ProcessRole, is_primary_process, process_role

LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "TORCHELASTIC_RUN_ID",
                    "TF_CONFIG", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")


@pytest.fixture
def clean_env(monkeypatch):
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_plain_process_is_single_and_primary(clean_env):
    assert process_role() == ProcessRole(rank=0, local_rank=0, world_size=1, is_primary=True, launcher="single")
    assert is_primary_process()


@pytest.mark.parametrize("rank,local_rank,primary", [(0, 0, True), (1, 1, False), (2, 0, False)])
def test_torchrun_environment(clean_env, rank, local_rank, primary):
    clean_env.setenv("TORCHELASTIC_RUN_ID", "job-1")
    clean_env.setenv("RANK", str(rank))
    clean_env.setenv("LOCAL_RANK", str(local_rank))
    clean_env.setenv("WORLD_SIZE", "4")
    assert process_role() == ProcessRole(rank, local_rank, 4, primary, "torchrun")
    assert is_primary_process() is primary


def test_rank_and_world_size_without_torchelastic(clean_env):
    clean_env.setenv("RANK", "3")
    clean_env.setenv("WORLD_SIZE", "4")
    assert process_role() == ProcessRole(rank=3, local_rank=-1, world_size=4, is_primary=False,
                                         launcher="torch.distributed")


@pytest.mark.parametrize("node_rank,local_rank,per_node,rank,primary", [
    ("0", "0", None, 0, True),
    ("0", "1", None, 1, False),
    ("1", "0", "2", 2, False),  # global rank from LOCAL_WORLD_SIZE
    ("1", "1", None, -1, False),  # not knowable before the process group exists
])
def test_lightning_environment(clean_env, node_rank, local_rank, per_node, rank, primary):
    clean_env.setenv("NODE_RANK", node_rank)
    clean_env.setenv("LOCAL_RANK", local_rank)
    clean_env.setenv("WORLD_SIZE", "4")
    if per_node:
        clean_env.setenv("LOCAL_WORLD_SIZE", per_node)
    assert process_role() == ProcessRole(rank, int(local_rank), 4, primary, "lightning")


@pytest.mark.parametrize("cluster,task,rank,primary", [
    ({"chief": ["c:1"], "worker": ["w:1", "w:2"]}, {"type": "chief", "index": 0}, 0, True),
    ({"chief": ["c:1"], "worker": ["w:1", "w:2"]}, {"type": "worker", "index": 0}, 1, False),
    ({"worker": ["w:1", "w:2"]}, {"type": "worker", "index": 0}, 0, True),  # no chief: worker 0
    ({"worker": ["w:1", "w:2"]}, {"type": "worker", "index": 1}, 1, False),
    ({"worker": ["w:1"], "ps": ["p:1"]}, {"type": "ps", "index": 0}, 1, False),
    ({"chief": ["c:1"], "worker": ["w:1"]}, {"type": "evaluator", "index": 0}, 2, False),
])
def test_tf_config(clean_env, cluster, task, rank, primary):
    clean_env.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    role = process_role()
    assert (role.rank, role.is_primary, role.launcher) == (rank, primary, "tf_config")
    assert role.world_size == len(cluster.get("chief", [])) + len(cluster.get("worker", []))


@pytest.mark.parametrize("value", ["not json", "[]", '{"cluster": {}}', '{"task": {"type": "worker", "index": "x"}}'])
def test_malformed_variables_are_ignored(clean_env, value):
    clean_env.setenv("TF_CONFIG", value)
    clean_env.setenv("RANK", "zero")
    clean_env.setenv("WORLD_SIZE", "2")
    role = process_role()  # never raises
    assert role.launcher == "torch.distributed" and role.rank == -1 and not role.is_primary


# -- real processes ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    return env


ROLE_AS_JSON = "import dataclasses, json; from autolog.instrument.role import process_role\n" \
               "def role(): return dataclasses.asdict(process_role())\n"


def test_a_real_gloo_group_gives_each_process_its_rank(tmp_path):
    program = ROLE_AS_JSON + textwrap.dedent("""
        import sys
        rank, port = int(sys.argv[1]), sys.argv[2]
        before = role()
        torch_was_imported = "torch" in sys.modules
        import torch.distributed as dist
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
        during = role()
        dist.barrier()
        dist.destroy_process_group()
        print(json.dumps({"before": before, "during": during, "torch_was_imported": torch_was_imported}))
    """)
    port = str(free_port())
    children = [subprocess.Popen([sys.executable, "-c", program, str(rank), port], env=child_env(), cwd=str(tmp_path),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    results = []
    for child in children:
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["torch_was_imported"] for r in results] == [False, False]  # process_role never imports torch
    assert [r["before"]["launcher"] for r in results] == ["single", "single"]  # no group yet
    assert [r["during"] for r in results] == [  # no LOCAL_RANK in the environment: unknown past rank 0
        {"rank": 0, "local_rank": 0, "world_size": 2, "is_primary": True, "launcher": "torch.distributed"},
        {"rank": 1, "local_rank": -1, "world_size": 2, "is_primary": False, "launcher": "torch.distributed"}]


def test_torchrun_processes(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(ROLE_AS_JSON + textwrap.dedent("""
        import os
        import torch.distributed as dist
        dist.init_process_group("gloo")
        result = role()
        dist.barrier()
        dist.destroy_process_group()
        with open(f"role-{result['rank']}.json", "w") as fh:
            json.dump(result, fh)
    """))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
                           f"--master_port={free_port()}", str(script)], env=child_env(), cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    roles = [json.loads((tmp_path / f"role-{rank}.json").read_text()) for rank in (0, 1)]
    assert roles == [{"rank": 0, "local_rank": 0, "world_size": 2, "is_primary": True, "launcher": "torchrun"},
                     {"rank": 1, "local_rank": 1, "world_size": 2, "is_primary": False, "launcher": "torchrun"}]


@pytest.mark.slow
def test_spark_driver_and_executors(tmp_path):
    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime")
    pytest.importorskip("pyspark")
    program = ROLE_AS_JSON + textwrap.dedent("""
        import sys
        from pyspark.sql import SparkSession
        spark = (SparkSession.builder.master("local[2]").appName("autolog-role")
                 .config("spark.ui.enabled", "false").getOrCreate())
        try:
            driver = role()
            executors = spark.sparkContext.parallelize(range(2), 2).mapPartitions(lambda _: [role()]).collect()
        finally:
            spark.stop()
        print(json.dumps({"driver": driver, "executors": executors, "after_stop": role()}))
    """)
    env = child_env()
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    done = subprocess.run([sys.executable, "-c", program], env=env, cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["driver"] == {"rank": 0, "local_rank": 0, "world_size": 1, "is_primary": True,
                                "launcher": "spark_driver"}
    assert sorted(e["rank"] for e in result["executors"]) == [0, 1]
    assert all(e["launcher"] == "spark_executor" and e["is_primary"] is False for e in result["executors"])
    assert result["after_stop"]["launcher"] == "single"
