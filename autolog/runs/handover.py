"""Handing a run to other processes: the ranks of a job, Spark tasks, any process given a token.

One mechanism, three ways in (docs/distributed.md):

- **A token.** `export_run_context(run)` makes a token; `attach(token)` in another process
  (or `AUTOLOG_RUN_CONTEXT=<token>` in its environment) logs into that run from there and
  never ends it; training calls in it log as child runs of the run.
- **Ranks of one job** agree on the run with no communication: its id is derived
  (`uuid5`) from what their launcher gives every rank alike (`job_identity()`: torchrun's
  run id and rendezvous endpoint, `TF_CONFIG`'s cluster, Slurm's job id, or
  `AUTOLOG_JOB_ID`), plus the count of outermost runs the process started before (ranks
  run the same program). The primary process (rank 0 / chief) creates and ends the run;
  in any other rank `start_run()` (and so a training call's own run) *joins* it as a
  `RankRun`: it writes no params, tags, artifacts or models (rank 0 does, once), metrics
  only with `autolog(log_all_ranks=True)`, under `<key>/rank_<r>`; system metrics from the
  first rank of each host (`local_rank == 0`), named by rank.
- **Spark tasks.** While autolog is on at the driver, the driver's active run travels with
  every Spark job as the SparkContext local property `autolog.run_context` (set on run
  start and end, and whenever a Python function is shipped); the pickled function carries
  a small bootstrap that turns autolog on in the Python worker with the driver's settings
  when the task unpickles it, and attaches the task to the run in that property. Models
  trained in `mapInPandas`, `applyInPandas`, pandas UDFs or `mapPartitions` become child
  runs of the driver's run, tagged with the partition, stage and attempt.

A failed rank: a rank that ends by an unhandled exception or a non-zero exit status tags
the job's run `autolog.job.failed_rank` and ends it FAILED itself; when the primary ends
the run later (FINISHED, or KILLED because the launcher stopped it after the failure), its
worker reads the run first and keeps FAILED when that tag is there.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import socket
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Optional

from autolog.entities import RunStatus
from autolog.instrument import containment
from autolog.instrument.role import ProcessRole, process_role
from autolog.runs.handle import TAG_ERROR, ActiveRun, now_ms
from autolog.runs.lifecycle import (
    DEFAULT_EXPERIMENT,
    _run_start_hooks,
    _set_stack,
    _stack,
    _state,
    active_run,
    add_run_hooks,
    logger_for,
    settings,
)

ENV_RUN_CONTEXT = "AUTOLOG_RUN_CONTEXT"
ENV_JOB_ID = "AUTOLOG_JOB_ID"
SPARK_RUN_CONTEXT = "autolog.run_context"  # the SparkContext local property

TAG_JOB = "autolog.job.id"  # the identity the run id was derived from
TAG_LAUNCHER = "autolog.job.launcher"
TAG_FAILED_RANK = "autolog.job.failed_rank"
TAG_FAILED_RANK_ERROR = "autolog.job.failed_rank_error"
TAG_SPARK_PARTITION = "autolog.spark.partition"
TAG_SPARK_STAGE = "autolog.spark.stage"
TAG_SPARK_ATTEMPT = "autolog.spark.attempt"
PARAM_WORLD_SIZE = "distributed.world_size"
PARAM_BACKEND = "distributed.backend"
PARAM_LAUNCHER = "distributed.launcher"

#: the namespace of derived run ids (uuid5): fixed, so every rank derives the same id
JOB_NAMESPACE = uuid.UUID("6f1d3c2e-7a4b-5c8d-9e0f-a1b2c3d4e5f6")
#: how long the end of a Spark task waits for what it logged to be written (the Python
#: worker leaves with os._exit: no exit hook runs there)
EXECUTOR_FLUSH_TIMEOUT = 30.0


# -- a token --------------------------------------------------------------------------------------
def export_run_context(run: Optional[ActiveRun] = None, *, inside_training_call: bool = False) -> str:
    """A token another process passes to `attach()` (or sets as AUTOLOG_RUN_CONTEXT) to log into `run`."""
    run = run or active_run()
    if run is None:
        raise RuntimeError("no active run to export")
    payload = {"run_id": run.run_id, "run_name": run.run_name, "experiment": run.experiment_name,
               "tracking_uri": run.tracking_uri, "start_time": run.start_time}
    if inside_training_call:
        payload["inside_training_call"] = True
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def _decode(token: str) -> dict:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
        payload["run_id"], payload["tracking_uri"]  # noqa: B018 - both are required
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"not an autolog run context token: {token[:40]!r}...") from exc
    return payload


def _attached(payload: dict) -> ActiveRun:
    run = ActiveRun(payload["run_id"], payload.get("run_name", ""), payload.get("experiment", DEFAULT_EXPERIMENT),
                    payload["tracking_uri"], None, "attached", payload.get("start_time", now_ms()),
                    logger_for(payload["tracking_uri"]))
    run.trained_in = True  # training calls in this process log as child runs of it
    return run


def attach(token: str) -> ActiveRun:
    """Log into the run a token names, from this thread, without ever ending it."""
    run = _attached(_decode(token))
    _set_stack(_stack.get() + (run,))
    _run_started(run)
    return run


def _run_started(run: ActiveRun) -> None:
    for hook in list(_run_start_hooks):  # joined runs get the run context too (system metrics per rank)
        with containment.contained("a run-start hook"):
            hook(run)


def _attach_from_environment() -> None:
    _state.env_attached = True
    token = os.environ.get(ENV_RUN_CONTEXT)
    if token:
        with containment.contained(f"attaching to the run in {ENV_RUN_CONTEXT}"):
            attach(token)


# -- ranks of one job ------------------------------------------------------------------------------
def job_identity(role: Optional[ProcessRole] = None) -> Optional[str]:
    """What every process of this multi-process job knows alike, or None outside such a job.

    `AUTOLOG_JOB_ID` wins; else Slurm's job and step ids, torchrun's run id (its
    `--rdzv-id`; random with `--standalone`), restart count and rendezvous endpoint
    (`MASTER_ADDR:MASTER_PORT`), and `TF_CONFIG`'s cluster. torchrun's default run id
    ("none") on one node adds the launching agent (host and the ranks' parent pid), so two
    jobs started one after the other on one port stay apart.
    """
    role = role or process_role()
    env = os.environ
    if role.launcher in ("single", "spark_driver", "spark_executor") or role.world_size == 1:
        return None
    explicit = env.get(ENV_JOB_ID, "").strip()
    if explicit:
        return f"{ENV_JOB_ID}={explicit}"
    parts = [role.launcher]
    for name in ("SLURM_JOB_ID", "SLURM_STEP_ID", "TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT"):
        if env.get(name):
            parts.append(f"{name}={env[name]}")
    if env.get("TORCHELASTIC_RESTART_COUNT", "0") not in ("", "0"):
        parts.append(f"restart={env['TORCHELASTIC_RESTART_COUNT']}")  # a restarted job: a run of its own
    if (role.launcher == "torchrun" and env.get("TORCHELASTIC_RUN_ID", "none") == "none"
            and env.get("LOCAL_WORLD_SIZE") == env.get("WORLD_SIZE")):
        parts.append(f"agent={socket.gethostname()}:{os.getppid()}")
    if role.launcher == "tf_config":
        try:
            parts.append("cluster=" + json.dumps(json.loads(env["TF_CONFIG"]).get("cluster"), sort_keys=True))
        except (KeyError, ValueError, AttributeError):
            return None
    return "|".join(parts) if len(parts) > 1 else None


@dataclass(frozen=True)
class JobSlot:
    """The `index`-th outermost run of this process in a multi-process job."""

    run_id: str
    index: int
    identity: str
    role: ProcessRole


class _Job:
    def __init__(self):
        self.lock = threading.Lock()
        self.started = 0  # outermost runs this process started (or joined) in its job
        self.joined: Optional["RankRun"] = None  # the last run a non-primary rank joined
        self.failure_recorded = False
        self.exit_hook = False


_job = _Job()


def job_run_id(identity: str, index: int = 0) -> str:
    return uuid.uuid5(JOB_NAMESPACE, f"{identity}#{index}").hex


def next_job_slot() -> Optional[JobSlot]:
    """The slot of the outermost run about to start, in a multi-process job; else None."""
    role = process_role()
    identity = job_identity(role)
    if identity is None:
        return None
    with _job.lock:
        index = _job.started
        _job.started += 1
    return JobSlot(job_run_id(identity, index), index, identity, role)


def job_tags(slot: JobSlot) -> dict:
    return {TAG_JOB: slot.identity, TAG_LAUNCHER: slot.role.launcher}


def start_primary(run: ActiveRun, slot: JobSlot) -> None:
    """The primary's side of a job run: world size, backend and launcher as params (once),
    and an end that respects a failed rank."""
    params = {PARAM_WORLD_SIZE: slot.role.world_size, PARAM_LAUNCHER: slot.role.launcher}
    backend = _torch_backend()
    if backend:
        params[PARAM_BACKEND] = backend
    run.log_params(params)
    run.job_end = lambda status: _end_primary(run, status)


def _end_primary(run: ActiveRun, status: str) -> None:
    """Enqueue the end of a job run through the worker, which keeps FAILED when a rank said so."""
    logger, run_id, end_time = run._logger, run.run_id, run.end_time

    def end_respecting_ranks():
        final = status
        if status != RunStatus.FAILED:
            try:
                if TAG_FAILED_RANK in logger.backend.get_run(run_id).tags:
                    final = RunStatus.FAILED
            except Exception:  # noqa: BLE001 - unreadable now: the primary's own status stands
                pass
        logger.enqueue(("e", run_id, final, end_time))

    run.defer(end_respecting_ranks, "ending a job run")


def _torch_backend() -> Optional[str]:
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            return str(dist.get_backend())
    except Exception:  # noqa: BLE001 - a half-torn-down group
        pass
    return None


class RankRun(ActiveRun):
    """A non-primary rank's view of its job's run: joined, never created or ended here.

    What goes through: metrics when `log_all_ranks` (renamed `<key>/rank_<r>`, and the
    deferred work that converts tensors into them, whose own records come back through
    here), system metrics (already named by rank) and the rank's node tags. Params, other tags,
    artifacts, models and deferred work are the primary's to write, once.
    """

    def __init__(self, slot: JobSlot, run_name: str, experiment_name: str, logger: Any):
        super().__init__(slot.run_id, run_name, experiment_name, logger.backend.uri, None, "attached", now_ms(),
                         logger)
        self.slot = slot
        self.rank = slot.role.rank
        self.samples_host = slot.role.local_rank == 0  # one system-metrics sampler per host
        self._forward = logger.enqueue
        self._suffix = f"/rank_{self.rank}"
        self._all_ranks = bool(getattr(settings(), "log_all_ranks", False))
        self._error: Optional[str] = None
        self._enqueue = self._filter

    def _filter(self, record: tuple) -> None:
        kind = record[0]
        if kind == "m":
            key = record[2]
            if key.startswith("system/"):
                self._forward(record)
            elif self._all_ranks:
                self._forward(record[:2] + (key + self._suffix,) + record[3:])
        elif kind == "t" and record[2].startswith(("autolog.system.", "autolog.job.")):
            self._forward(record)
        elif kind == "x" and self._all_ranks:
            self._forward(record)  # deferred work (tensors read on the worker); what it logs comes back here
        elif kind == "t" and record[2] == TAG_ERROR:
            self._error = record[3]  # the exception of a training call that failed here: see on_left

    def on_left(self, status: str, error: Optional[str] = None) -> None:
        """Called when this rank leaves the run: a failure is recorded on the job's run."""
        if status == RunStatus.FAILED:
            record_rank_failure(self.run_id, self._logger, self.rank, error or self._error)


def join(slot: JobSlot, run_name: str, experiment_name: str, logger: Any) -> RankRun:
    run = RankRun(slot, run_name, experiment_name, logger)
    _job.joined = run
    _install_rank_exit_hook()
    return run


def rejoin(parent: RankRun) -> RankRun:
    """A child run asked for under a joined run: on a non-primary rank it is that run again."""
    return RankRun(parent.slot, parent.run_name, parent.experiment_name, parent._logger)


def record_rank_failure(run_id: str, logger: Any, rank: int, error: Optional[str]) -> None:
    with _job.lock:
        if _job.failure_recorded:
            return
        _job.failure_recorded = True
    logger.enqueue(("t", run_id, TAG_FAILED_RANK, str(rank)))
    if error:
        logger.enqueue(("t", run_id, TAG_FAILED_RANK_ERROR, str(error)[:4000]))
    logger.enqueue(("e", run_id, RunStatus.FAILED, now_ms()))


def _install_rank_exit_hook() -> None:
    """A non-primary rank that fails before it joined a run still fails its job's (first)
    run. Registered after the logger's own exit hook, so it runs before it (atexit is LIFO)."""
    with _job.lock:
        if _job.exit_hook:
            return
        _job.exit_hook = True
    logger_for()
    atexit.register(_rank_exit)


def _rank_exit() -> None:
    from autolog.runs.process import exit_status

    with containment.contained("recording a failed rank"):
        status, error = exit_status()
        if status != RunStatus.FAILED:
            return
        joined = _job.joined
        if joined is not None:
            record_rank_failure(joined.run_id, joined._logger, joined.rank, error)
            return
        role = process_role()
        identity = job_identity(role)
        if identity is not None and not role.is_primary:
            record_rank_failure(job_run_id(identity, 0), logger_for(), role.rank, error)


# -- Spark -----------------------------------------------------------------------------------------
class _Spark:
    def __init__(self):
        self.patcher = None
        self.enabled = False


_spark = _Spark()


def enable(current: Any) -> None:
    """Called by `autolog()`: a non-primary rank notes its failure at exit; at a Spark driver,
    runs travel with Spark jobs and shipped functions turn autolog on in the workers."""
    from autolog.instrument.patching import Patcher

    role = process_role()
    if not role.is_primary and job_identity(role) is not None:
        _install_rank_exit_hook()
    _spark.enabled = True
    add_run_hooks(on_start=_sync_spark_property, on_end=_sync_spark_property)
    if _spark.patcher is None:
        patcher = _spark.patcher = Patcher("autolog.spark-handover")
        for module in ("pyspark.core.rdd", "pyspark.rdd"):  # pyspark 4 / pyspark 3
            patcher.when_imported(module, lambda module: _patch_rdd_module(patcher, module))
        # TorchDistributor pickles its training function to a file each torchrun rank loads
        patcher.when_imported("pyspark.ml.dl_util", lambda module: patcher.wrap(
            module, "FunctionPickler.pickle_fn_and_save", _on_pickle_fn_and_save))
    with containment.contained("handing the active run to Spark jobs"):
        _sync_spark_property(None)


def reset_for_tests() -> None:
    """Undo `enable` and forget the job's run count (autolog/testing.py)."""
    disable()
    global _job
    _job = _Job()


def disable() -> None:
    if _spark.enabled:
        with containment.contained("clearing the run of Spark jobs"):
            _sync_spark_property(clear=True)  # while still enabled
    _spark.enabled = False
    patcher, _spark.patcher = _spark.patcher, None
    if patcher is not None:
        patcher.revert()


def _patch_rdd_module(patcher: Any, module: Any) -> None:
    if "_prepare_for_python_RDD" in vars(module):
        patcher.wrap(module, "_prepare_for_python_RDD", _on_prepare_for_python)


def _spark_context() -> Any:
    pyspark = sys.modules.get("pyspark")
    context = getattr(getattr(pyspark, "SparkContext", None), "_active_spark_context", None)
    if context is None or getattr(context, "_jsc", None) is None:
        return None
    return context


def _sync_spark_property(_run: Any = None, *, clear: bool = False) -> None:
    """Set this thread's SparkContext local property to its active run (Spark ships local
    properties with every job this thread submits). Also a run hook: a run-start hook runs
    once the run is active, a run-end hook once it has left the stack."""
    if not _spark.enabled or sys.modules.get("pyspark") is None:
        return
    context = _spark_context()
    if context is None or process_role().launcher == "spark_executor":
        return
    run = None if clear else active_run()
    if run is not None and run.end_time is not None:
        run = None
    token = None
    if run is not None:
        token = export_run_context(run, inside_training_call=_inside_training_call(run))
    context.setLocalProperty(SPARK_RUN_CONTEXT, token)


def _inside_training_call(run: ActiveRun) -> bool:
    """Spark work submitted from inside a training call (xgboost.spark's fit trains in
    executors): the executors' own fits are part of it, and log nothing (the outermost-call
    guard, across processes)."""
    from autolog.runs.training import training_call_in_progress

    call = training_call_in_progress()
    return run.owner == "autolog" or (call is not None and call.run is run)


def _on_prepare_for_python(wrapped, instance, args, kwargs):
    """A Python function about to be shipped to Spark workers: it carries the bootstrap."""
    if _spark.enabled and args and len(args) >= 2:
        with containment.contained("handing autolog to Spark workers"):
            _sync_spark_property()
            args = (args[0], ExecutorBootstrap(args[1], _executor_settings())) + tuple(args[2:])
    return wrapped(*args, **kwargs)


def _on_pickle_fn_and_save(wrapped, instance, args, kwargs):
    """TorchDistributor's training function, pickled for the torchrun ranks: it carries the
    bootstrap too, so each rank turns autolog on (and the ranks share one run)."""
    if _spark.enabled and args:
        with containment.contained("handing autolog to TorchDistributor's ranks"):
            # its ranks sample their hosts into the job's run (the first rank of each host)
            args = (ProcessBootstrap(args[0], _executor_settings(system_metrics=True)),) + tuple(args[1:])
    return wrapped(*args, **kwargs)


class ProcessBootstrap:
    """Pickled in place of a function another process runs: unpickling it turns autolog on
    there with the settings given, and gives back the function itself."""

    def __init__(self, function: Any, settings_values: dict):
        self.function = function
        self.settings_values = settings_values

    def __reduce__(self):
        return _bootstrap_process, (self.settings_values, self.function)


def _bootstrap_process(settings_values: dict, function: Any) -> Any:
    with containment.contained("turning autolog on in a process started for Spark"):
        _apply_settings(settings_values)
    return function


def _executor_settings(system_metrics: bool = False) -> dict:
    """The driver's settings for a process it starts work in. Spark tasks sample no system
    metrics (their child runs are short; the driver's host is sampled by the driver);
    TorchDistributor's ranks keep the driver's setting."""
    import dataclasses

    from autolog.backends import resolve_tracking_uri

    current = settings()
    values = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
    values["tracking_uri"] = resolve_tracking_uri(current.tracking_uri)
    if not system_metrics:
        values["log_system_metrics"] = False
    values["extra_tags"] = dict(current.extra_tags)
    return values


class ExecutorBootstrap:
    """Pickled in place of a shipped command: unpickling it turns autolog on in the worker,
    attaches the task to the driver's run, and gives back the command itself."""

    def __init__(self, command: Any, settings_values: dict):
        self.command = command
        self.settings_values = settings_values

    def __reduce__(self):
        return _bootstrap_executor, (self.settings_values, self.command)


class _Executor:
    def __init__(self):
        self.pid = 0
        self.applied: Optional[dict] = None  # the driver's settings this worker runs with
        self.base_tags: dict = {}
        self.muted: Optional[Any] = None  # between tasks: training calls log nothing
        self.patcher: Any = None


_executor = _Executor()


def _bootstrap_executor(settings_values: dict, command: Any) -> Any:
    """Runs in the Spark Python worker, for each task, when its function is unpickled."""
    with containment.contained("turning autolog on in a Spark worker"):
        _enable_in_executor(settings_values)
        _attach_task()
    return command


def _enable_in_executor(settings_values: dict) -> None:
    """autolog() with the driver's settings, once per worker process (again when they change),
    and the end of each task noted (TaskContext is reset to None when a task ends)."""
    _apply_settings(settings_values)
    if _executor.patcher is None:
        from autolog.instrument.patching import Patcher

        patcher = _executor.patcher = Patcher("autolog.spark-task")
        patcher.wrap(sys.modules["pyspark"].TaskContext, "_setTaskContext", _on_set_task_context)


def _apply_settings(settings_values: dict) -> None:
    """autolog() with the driver's settings, unless this process already runs with them."""
    if _executor.pid != os.getpid():
        _executor.pid, _executor.applied, _executor.muted, _executor.patcher = os.getpid(), None, None, None
    if _executor.applied != settings_values:
        import inspect

        import autolog

        accepted = inspect.signature(autolog.autolog).parameters
        autolog.autolog(**{k: v for k, v in settings_values.items() if k in accepted and k != "disable"})
        _executor.applied = settings_values
        _executor.base_tags = dict(settings().extra_tags)


def _attach_task() -> None:
    """This task's runs are children of the run in the task's local property (the driver's
    active run when the job was submitted), tagged with the partition, stage and attempt."""
    from autolog.runs.training import _in_training

    if _executor.muted is not None:
        _in_training.reset(_executor.muted)
        _executor.muted = None
    context = sys.modules["pyspark"].TaskContext.get()
    token = context.getLocalProperty(SPARK_RUN_CONTEXT) if context is not None else None
    tags = dict(_executor.base_tags)
    if context is not None:
        tags.update({TAG_SPARK_PARTITION: str(context.partitionId()), TAG_SPARK_STAGE: str(context.stageId()),
                     TAG_SPARK_ATTEMPT: str(context.attemptNumber())})
    _state.settings = settings().replace(extra_tags=tags)
    _leave_task_run()
    payload = _decode(token) if token else None
    if payload is not None and payload.get("inside_training_call"):
        _mute_training_calls()  # part of the driver's training call: logged there, once
    elif payload is not None:
        _set_stack((_attached(payload),))


def _leave_task_run() -> None:
    for run in _stack.get():
        if run.owner == "attached" and run.end_time is None:
            run.end_time = now_ms()
    _set_stack(())


def _mute_training_calls() -> None:
    from autolog.runs.training import TrainingCall, _in_training

    if _executor.muted is None:
        _executor.muted = _in_training.set(TrainingCall("", "between Spark tasks"))


def _on_set_task_context(wrapped, instance, args, kwargs):
    """The worker resets its TaskContext to None when a task ends: the task's run is left,
    training calls log nothing until the next task's bootstrap, and what the task logged is
    written before Spark hears the task has ended (the worker leaves with os._exit, no exit
    hook runs)."""
    result = wrapped(*args, **kwargs)
    if args and args[0] is None and _executor.pid == os.getpid():
        with containment.contained("ending a Spark task's logging"):
            from autolog.runs.lifecycle import flush

            _leave_task_run()
            _mute_training_calls()
            flush(EXECUTOR_FLUSH_TIMEOUT)
    return result
