"""Is this process the primary one of its job? (rank 0 / chief / Spark driver)

Every integration asks `is_primary_process()` before it logs what a job should log once
(params, models, checkpoints), so a distributed job makes one run, not one per rank.
The answer comes from what started the process, read fresh at each call (a process
group may be initialised after autolog was turned on):

| launcher              | read from                                                    | primary           |
|-----------------------|--------------------------------------------------------------|-------------------|
| `"spark_executor"`    | `pyspark.TaskContext.get()` (only when pyspark is imported)  | never             |
| `"torchrun"`          | `TORCHELASTIC_RUN_ID`, `RANK`, `LOCAL_RANK`, `WORLD_SIZE`    | rank 0            |
| `"lightning"`         | `NODE_RANK`, `LOCAL_RANK`, `WORLD_SIZE` (Lightning's launcher; no `RANK`) | node 0, local rank 0 |
| `"torch.distributed"` | an initialised default process group (only when `torch.distributed` is already imported), else `RANK` and `WORLD_SIZE` | rank 0 |
| `"tf_config"`         | `TF_CONFIG` (Keras / TensorFlow multi-worker)                | the chief; worker 0 when the cluster has no chief |
| `"spark_driver"`      | pyspark imported, with an active SparkContext                | yes               |
| `"single"`            | none of the above                                            | yes               |

When a process group is initialised its rank and world size win over the environment
(the launcher named is still the one the environment shows). Numbers that cannot be
known are -1 for a rank and 0 for a world size (a Spark executor's world size; the global
rank of a Lightning process on a node other than 0 before its process group exists, when
`LOCAL_WORLD_SIZE` is not set). Malformed variables are ignored, never raised.

This module imports no framework: torch and pyspark are looked up in `sys.modules`.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Optional

__all__ = ["ProcessRole", "process_role", "is_primary_process"]


@dataclass(frozen=True)
class ProcessRole:
    rank: int
    local_rank: int
    world_size: int
    is_primary: bool
    launcher: str  # "torchrun", "torch.distributed", "lightning", "tf_config", "spark_executor", "spark_driver", "single"


SINGLE = ProcessRole(rank=0, local_rank=0, world_size=1, is_primary=True, launcher="single")


def is_primary_process() -> bool:
    """True in the one process of a job that logs what is logged once."""
    return process_role().is_primary


def process_role() -> ProcessRole:
    """The role of this process in its job (see the table in this module's docstring)."""
    env = os.environ
    executor = _spark_executor()
    if executor is not None:
        return executor
    group = _torch_process_group()
    if "TORCHELASTIC_RUN_ID" in env:
        return _ranked("torchrun", group, _int(env, "RANK"), _int(env, "LOCAL_RANK"), _int(env, "WORLD_SIZE"))
    if "NODE_RANK" in env and "LOCAL_RANK" in env and "RANK" not in env:
        return _lightning(group)
    if group is not None or ("RANK" in env and "WORLD_SIZE" in env):
        return _ranked("torch.distributed", group, _int(env, "RANK"), _int(env, "LOCAL_RANK"), _int(env, "WORLD_SIZE"))
    tf_role = _tf_config(env.get("TF_CONFIG"))
    if tf_role is not None:
        return tf_role
    if _spark_driver():
        return ProcessRole(rank=0, local_rank=0, world_size=1, is_primary=True, launcher="spark_driver")
    return SINGLE


def _int(env, name: str) -> Optional[int]:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        return None


def _ranked(launcher: str, group: Optional[tuple[int, int]], rank: Optional[int], local_rank: Optional[int],
            world_size: Optional[int]) -> ProcessRole:
    if group is not None:
        rank, world_size = group
    rank = -1 if rank is None else rank
    world_size = 0 if world_size is None else world_size
    if local_rank is None:
        local_rank = rank if world_size == 1 or rank == 0 else -1
    return ProcessRole(rank=rank, local_rank=local_rank, world_size=world_size, is_primary=rank == 0,
                       launcher=launcher)


def _lightning(group: Optional[tuple[int, int]]) -> ProcessRole:
    """Lightning's own launcher sets NODE_RANK, LOCAL_RANK and WORLD_SIZE (not RANK) in every
    process it starts, the first one included."""
    env = os.environ
    node_rank, local_rank = _int(env, "NODE_RANK"), _int(env, "LOCAL_RANK")
    if node_rank is None or local_rank is None:
        return _ranked("lightning", group, None, local_rank, _int(env, "WORLD_SIZE"))
    world_size = _int(env, "WORLD_SIZE")
    per_node = _int(env, "LOCAL_WORLD_SIZE")
    if group is not None:
        rank, world_size = group
    elif node_rank == 0:
        rank = local_rank
    elif per_node:
        rank = node_rank * per_node + local_rank
    else:
        rank = -1
    return ProcessRole(rank=rank, local_rank=local_rank, world_size=0 if world_size is None else world_size,
                       is_primary=node_rank == 0 and local_rank == 0, launcher="lightning")


def _torch_process_group() -> Optional[tuple[int, int]]:
    """(rank, world size) of torch's default process group when one is initialised. Never
    imports torch: a process that has not imported torch.distributed has no group."""
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if not (dist.is_available() and dist.is_initialized()):
            return None
        return int(dist.get_rank()), int(dist.get_world_size())
    except Exception:  # noqa: BLE001 - a half-torn-down group: answer from the environment
        return None


def _tf_config(raw: Optional[str]) -> Optional[ProcessRole]:
    """The chief is primary; without a chief, worker 0 is (TensorFlow's own rule). Ranks count
    the chief first, then the workers; parameter servers and evaluators come after them."""
    if not raw:
        return None
    try:
        config = json.loads(raw)
        cluster = config.get("cluster") or {}
        task = config.get("task") or {}
        kind = str(task.get("type", "")).lower()
        index = int(task.get("index", 0))
    except (ValueError, TypeError, AttributeError):
        return None
    if not kind:
        return None
    chiefs = len(cluster.get("chief") or [])
    workers = len(cluster.get("worker") or [])
    world_size = chiefs + workers
    if kind in ("chief", "master"):
        rank, primary = index, index == 0
    elif kind == "worker":
        rank, primary = chiefs + index, chiefs == 0 and index == 0
    else:  # ps, evaluator: part of the cluster, never the one that logs
        rank, primary = world_size + index, False
    return ProcessRole(rank=rank, local_rank=0, world_size=max(world_size, 1), is_primary=primary,
                       launcher="tf_config")


def _spark_executor() -> Optional[ProcessRole]:
    pyspark = sys.modules.get("pyspark")
    if pyspark is None:
        return None
    try:
        context = pyspark.TaskContext.get()
        if context is None:
            return None
        partition = int(context.partitionId())
    except Exception:  # noqa: BLE001 - an odd pyspark build: not an executor we can recognise
        return None
    return ProcessRole(rank=partition, local_rank=0, world_size=0, is_primary=False, launcher="spark_executor")


def _spark_driver() -> bool:
    pyspark = sys.modules.get("pyspark")
    if pyspark is None:
        return False
    spark_context = getattr(pyspark, "SparkContext", None)
    return getattr(spark_context, "_active_spark_context", None) is not None
