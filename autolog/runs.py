"""Runs: the handle of an active run, the per-thread run context, and training calls.

Each thread has its own stack of active runs (a `ContextVar`), so two threads can
train and log at once without mixing their runs. A thread that has not started a
run of its own sees the main thread's active run, so a helper thread logs where
the user expects. A run can be handed to another process as a token
(`export_run_context()`, or the environment variable `AUTOLOG_RUN_CONTEXT`); that
process attaches to the run, logs into it, and never ends it.

Run ids are made here (uuid4 hex), never by a backend, so starting a run costs the
caller no I/O: the creation is one more record for the BatchingLogger.

`TrainingCall` is what an integration wraps around a user's training call: it holds
the re-entrancy guard (a fit inside a fit is logged once, at the outermost call,
across integrations), picks the run (the active run for the first training call
inside it, a child run for later ones, or a new run that ends with the call, FAILED
when the call raises), and contains its own errors.
"""

from __future__ import annotations

import atexit
import base64
import contextvars
import json
import logging
import os
import random
import shutil
import threading
import time
import uuid
from time import time_ns as _time_ns
from typing import Any, Iterable, Mapping, Optional

from autolog import config, containment
from autolog.backends import BackendUnavailable, BatchLimits, get_backend, resolve_tracking_uri
from autolog.backends.base import StoreNotFound
from autolog.entities import Run, RunStart, RunStatus
from autolog.logger import BatchingLogger, new_staging_dir, on_worker_thread
from autolog.validation import (
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    _valid_keys,
    check_key,
    metric_int,
    metric_value,
    normalize_key,
    value_to_text,
)

log = logging.getLogger("autolog")

DEFAULT_EXPERIMENT = "Default"
TAG_RUN_OWNER = "autolog.run_owner"
TAG_ERROR = "autolog.error"
TAG_INTEGRATION = "autolog.integration"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ActiveRun:
    """A run this process logs into. Returned by `start_run`; a context manager."""

    def __init__(self, run_id: str, run_name: str, experiment_name: str, tracking_uri: str,
                 parent_run_id: Optional[str], owner: str, start_time: int, logger: BatchingLogger):
        self.run_id = run_id
        self.run_name = run_name
        self.experiment_name = experiment_name
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self.owner = owner  # "user", "autolog" (ends with its training call) or "attached"
        self.start_time = start_time
        self.status = RunStatus.RUNNING
        self.end_time: Optional[int] = None
        self.trained_in = False  # a training call already logged into this run
        self._logger = logger
        self._enqueue = logger.enqueue
        self._params: dict[str, str] = {}
        self._lock = threading.Lock()

    # MLflow code reads `run.info.run_id`
    @property
    def info(self) -> "ActiveRun":
        return self

    def __repr__(self) -> str:
        return f"<ActiveRun {self.run_id} name={self.run_name!r} experiment={self.experiment_name!r} status={self.status}>"

    # -- params -------------------------------------------------------------
    def log_param(self, key: str, value: Any, *, normalize: bool = False) -> None:
        self.log_params({key: value}, normalize=normalize)

    def log_params(self, params: Mapping[str, Any], *, normalize: bool = False) -> None:
        """Log params. A key logged before with another value: ValueError (manual), or the
        new value under `KEY.2`, `KEY.3`, ... (automatic logging, `normalize=True`)."""
        checked = []
        for key, value in params.items():
            key = normalize_key(key) if normalize else check_key(key, "param key")
            checked.append((key, value_to_text(value, MAX_PARAM_VALUE_LENGTH)))
        with self._lock:
            fresh = []
            for key, text in checked:
                old = self._params.get(key)
                if old is None:
                    self._params[key] = text
                    fresh.append((key, text))
                elif old != text:
                    if not normalize:
                        raise ValueError(
                            f"param {key!r} of run {self.run_id} was already logged with value {old!r}; "
                            f"it cannot be changed to {text!r} (params are immutable; log a metric or a tag instead)"
                        )
                    n = 2
                    while self._params.get(f"{key}.{n}") not in (None, text):
                        n += 1
                    if f"{key}.{n}" not in self._params:
                        self._params[f"{key}.{n}"] = text
                        fresh.append((f"{key}.{n}", text))
        run_id = self.run_id
        for key, text in fresh:
            self._enqueue(("p", run_id, key, text))

    @property
    def params(self) -> dict:
        with self._lock:
            return dict(self._params)

    # -- metrics ------------------------------------------------------------
    def log_metric(self, key: str, value: Any, step: Optional[int] = None, timestamp: Optional[int] = None,
                   *, normalize: bool = False) -> None:
        if key not in _valid_keys:
            key = normalize_key(key) if normalize else check_key(key, "metric key")
        if type(value) is not float:
            value = metric_value(value)
        self._enqueue(("m", self.run_id, key, value,
                       _time_ns() // 1_000_000 if timestamp is None else metric_int(timestamp, "timestamp"),
                       # INT64_MIN <= step <= INT64_MAX, as constants: the hot path
                       step if type(step) is int and -9223372036854775808 <= step <= 9223372036854775807
                       else (0 if step is None else metric_int(step, "step"))))

    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None, timestamp: Optional[int] = None,
                    *, normalize: bool = False) -> None:
        ts = _time_ns() // 1_000_000 if timestamp is None else metric_int(timestamp, "timestamp")
        step = 0 if step is None else metric_int(step, "step")
        if normalize:
            for key, value in metrics.items():
                try:
                    value = metric_value(value)
                except (TypeError, ValueError) as exc:
                    containment.warn_once(f"metric {key}", "metric %r was not logged: %s", key, exc)
                    continue
                self._enqueue(("m", self.run_id, normalize_key(key), value, ts, step))
            return
        records = [("m", self.run_id, check_key(k, "metric key") if k not in _valid_keys else k,
                    v if type(v) is float else metric_value(v), ts, step) for k, v in metrics.items()]
        for record in records:
            self._enqueue(record)

    # -- tags ---------------------------------------------------------------
    def set_tag(self, key: str, value: Any, *, normalize: bool = False) -> None:
        key = normalize_key(key) if normalize else check_key(key, "tag key")
        self._enqueue(("t", self.run_id, key, value_to_text(value, MAX_TAG_VALUE_LENGTH)))

    def set_tags(self, tags: Mapping[str, Any], *, normalize: bool = False) -> None:
        for key, value in tags.items():
            self.set_tag(key, value, normalize=normalize)

    # -- artifacts ----------------------------------------------------------
    def log_artifact(self, local_path: str, artifact_path: Optional[str] = None) -> None:
        """Log a file. A copy is taken now, so the file may change or go away afterwards."""
        if not os.path.isfile(local_path):
            raise FileNotFoundError(f"log_artifact: no file at {local_path!r}")
        self._log_copy(local_path, artifact_path)

    def log_artifacts(self, local_dir: str, artifact_path: Optional[str] = None) -> None:
        """Log the contents of a folder (copied now)."""
        if not os.path.isdir(local_dir):
            raise NotADirectoryError(f"log_artifacts: no folder at {local_dir!r}")
        self._log_copy(local_dir, artifact_path)

    def _log_copy(self, local_path: str, artifact_path: Optional[str]) -> None:
        artifact_path = _check_artifact_path(artifact_path)
        staging = new_staging_dir(self._logger)
        if os.path.isdir(local_path):
            copy = os.path.join(staging, "dir")
            shutil.copytree(local_path, copy, copy_function=_link_or_copy)
        else:
            copy = os.path.join(staging, os.path.basename(local_path))
            _link_or_copy(local_path, copy)
        self._enqueue(("a", self.run_id, copy, artifact_path, True))

    def log_owned_artifact(self, local_path: str, artifact_path: Optional[str] = None) -> None:
        """Log a file or folder that autolog made (in `staging_dir()`); it is deleted once delivered."""
        self._enqueue(("a", self.run_id, local_path, _check_artifact_path(artifact_path), True))

    def register_model(self, artifact_path: str, name: str) -> None:
        """Register the model folder logged at `artifact_path` as a new version of the registered
        model `name`, once that folder is delivered (backends with a model registry: MLflow)."""
        self._enqueue(("r", self.run_id, _check_artifact_path(artifact_path), str(name)))

    def staging_dir(self) -> str:
        """A fresh folder for files the worker will deliver with `log_owned_artifact`."""
        return new_staging_dir(self._logger)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log `text` as the artifact file `artifact_file` (e.g. "summary.txt", "dir/notes.md")."""
        artifact_file = _check_artifact_path(artifact_file)
        staging = self.staging_dir()
        path = os.path.join(staging, os.path.basename(artifact_file))
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        self.log_owned_artifact(path, os.path.dirname(artifact_file) or None)

    def defer(self, work, label: Optional[str] = None) -> None:
        """Run `work()` on the logger's worker, in order with this run's records.

        For what need not happen on the training thread (writing a model from a snapshot,
        metrics and plots computed from copies). Whatever `work` logs is written in its
        place; an exception in it is contained and reported once.
        """
        if label:
            try:
                work.autolog_label = label
            except AttributeError:
                pass
        self._enqueue(("x", work))

    # -- life cycle -------------------------------------------------------------
    def end(self, status: str = RunStatus.FINISHED) -> None:
        status = RunStatus.check(status)
        with self._lock:
            if self.end_time is not None or self.owner == "attached":
                return
            self.status = status
            self.end_time = now_ms()
        self._enqueue(("e", self.run_id, status, self.end_time))

    def __enter__(self) -> "ActiveRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        status = RunStatus.FINISHED
        if exc_type is not None:
            status = RunStatus.KILLED if issubclass(exc_type, KeyboardInterrupt) else RunStatus.FAILED
            with containment.contained("tagging a failed run"):
                self.set_tag(TAG_ERROR, f"{exc_type.__name__}: {exc}")
        _end(self, status)
        return False


def _check_artifact_path(artifact_path: Optional[str]) -> Optional[str]:
    if artifact_path in (None, "", "."):
        return None
    text = str(artifact_path).replace("\\", "/").strip("/")
    if text.startswith("/") or any(part == ".." for part in text.split("/")):
        raise ValueError(f"artifact_path must be relative and stay inside the run: {artifact_path!r}")
    return text


def _link_or_copy(src: str, dst: str) -> str:
    """Copy a file for later delivery; a copy, not a hard link, so later edits do not leak in."""
    return shutil.copy2(src, dst)


# -- process state: settings, loggers, run stacks -------------------------------------
class _State:
    def __init__(self):
        self.lock = threading.RLock()
        self.settings = config.Settings()
        self.loggers: dict[str, BatchingLogger] = {}
        self.main_stack: tuple = ()
        self.last_run_id: Optional[str] = None
        self.last_run_uri: Optional[str] = None
        self.exit_hook_installed = False
        self.env_attached = False


_state = _State()
_stack: contextvars.ContextVar[tuple] = contextvars.ContextVar("autolog_run_stack", default=())
_in_training: contextvars.ContextVar[Optional["TrainingCall"]] = contextvars.ContextVar("autolog_training_call", default=None)


def settings() -> config.Settings:
    return _state.settings


def set_settings(new: config.Settings) -> None:
    _state.settings = new


def logger_for(uri: Optional[str] = None) -> BatchingLogger:
    resolved = resolve_tracking_uri(uri if uri is not None else _state.settings.tracking_uri)
    logger = _state.loggers.get(resolved)
    if logger is not None and logger._pid == os.getpid():
        return logger
    with _state.lock:
        logger = _state.loggers.get(resolved)
        if logger is None:
            from autolog.source import source_tags

            logger = BatchingLogger(_LazyBackend(resolved), source_tags=source_tags, **config.logger_options())
            _state.loggers[resolved] = logger
            _install_exit_hook()
        return logger


class _LazyBackend:
    """Builds the backend on first use, on the worker thread (importing a client can be slow).

    A backend that cannot be built (its server library missing, a bad path) counts as
    unavailable: records are kept in the journal, not lost, and `autolog sync` sends
    them once it can be built.
    """

    def __init__(self, uri: str):
        self.uri = uri
        self._backend = None

    def _get(self):
        if self._backend is None:
            try:
                self._backend = get_backend(self.uri)
            except Exception as exc:  # noqa: BLE001
                raise BackendUnavailable(f"cannot open the backend {self.uri}: {exc}") from exc
        return self._backend

    @property
    def limits(self) -> BatchLimits:
        try:
            return self._get().limits
        except BackendUnavailable:
            return BatchLimits()

    def __getattr__(self, name: str):
        return getattr(self._get(), name)


def _current_stack() -> tuple:
    stack = _stack.get()
    if stack:
        return stack
    if threading.current_thread() is not threading.main_thread():
        return _state.main_stack
    if not _state.env_attached:
        _attach_from_environment()
        return _stack.get()
    return stack


def _set_stack(stack: tuple) -> None:
    _stack.set(stack)
    if threading.current_thread() is threading.main_thread():
        _state.main_stack = stack


def active_run() -> Optional[ActiveRun]:
    """The run that logging calls in this thread go to, or None."""
    stack = _current_stack()
    return stack[-1] if stack else None


_ADJECTIVES = ("amber", "bold", "calm", "deft", "eager", "fair", "glad", "keen", "lucid", "merry",
               "nimble", "proud", "quick", "rapid", "sunny", "tidy", "vivid", "wise", "young", "zesty")
_NOUNS = ("otter", "finch", "lynx", "heron", "panda", "koala", "raven", "tiger", "whale", "bison",
          "crane", "gecko", "ibis", "lemur", "moose", "newt", "quail", "seal", "wren", "yak")


def generate_run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(100, 999)}"


def start_run(run_name: Optional[str] = None, *, experiment: Optional[str] = None, run_id: Optional[str] = None,
              nested: bool = False, tags: Optional[Mapping[str, Any]] = None, owner: str = "user",
              tracking_uri: Optional[str] = None) -> ActiveRun:
    """Start a run (or resume one by `run_id`) and make it the active run of this thread."""
    parent = active_run()
    if parent is not None and not nested:
        raise RuntimeError(
            f"run {parent.run_id} ({parent.run_name}) is already active in this thread; "
            "end it with autolog.end_run(), or pass nested=True to start a child run"
        )
    s = _state.settings
    logger = logger_for(tracking_uri)
    uri = logger.backend.uri
    if run_id is not None:
        return _resume(run_id, logger, uri, owner)
    experiment_name = experiment or s.experiment or (parent.experiment_name if parent else None) or DEFAULT_EXPERIMENT
    all_tags = dict(s.extra_tags)
    if tags:
        all_tags.update({check_key(k, "tag key"): value_to_text(v, MAX_TAG_VALUE_LENGTH) for k, v in tags.items()})
    if owner != "user":
        all_tags[TAG_RUN_OWNER] = owner
    run = ActiveRun(
        run_id=uuid.uuid4().hex,
        run_name=str(run_name) if run_name else generate_run_name(),
        experiment_name=str(experiment_name),
        tracking_uri=uri,
        parent_run_id=parent.run_id if parent is not None else None,
        owner=owner,
        start_time=now_ms(),
        logger=logger,
    )
    logger.enqueue(("c", RunStart(run.run_id, run.experiment_name, run.run_name, run.start_time,
                                  run.parent_run_id, all_tags)))
    _push(run)
    for hook in list(_run_start_hooks):
        with containment.contained("a run-start hook"):
            hook(run)
    return run


def _resume(run_id: str, logger: BatchingLogger, uri: str, owner: str) -> ActiveRun:
    logger.flush()
    existing = logger.backend.get_run(run_id)  # raises RunNotFound with the id
    run = ActiveRun(run_id, existing.run_name, existing.experiment_name, uri, existing.parent_run_id,
                    owner, existing.start_time, logger)
    run._params.update(existing.params)
    _push(run)
    return run


def _push(run: ActiveRun) -> None:
    _set_stack(_current_stack() + (run,))
    _state.last_run_id, _state.last_run_uri = run.run_id, run.tracking_uri


def _end(run: ActiveRun, status: str) -> None:
    """End `run` and take it (and anything above it) off this thread's stack."""
    stack = _current_stack()
    if run in stack:
        index = stack.index(run)
        for above in reversed(stack[index + 1:]):
            above.end(status)
        _set_stack(stack[:index])
    for hook in list(_run_end_hooks):
        with containment.contained("a run-end hook"):
            hook(run)
    run.end(status)


def end_run(status: str = RunStatus.FINISHED) -> None:
    """End the active run of this thread (no-op when none)."""
    status = RunStatus.check(status)
    run = active_run()
    if run is not None:
        _end(run, status)


def run_or_start() -> ActiveRun:
    """The active run; when there is none, a new one (as MLflow's fluent API does)."""
    return active_run() or start_run()


# -- hooks for the run context features (system metrics, environment) -----------------
_run_start_hooks: list = []
_run_end_hooks: list = []


def add_run_hooks(on_start=None, on_end=None) -> None:
    if on_start is not None and on_start not in _run_start_hooks:
        _run_start_hooks.append(on_start)
    if on_end is not None and on_end not in _run_end_hooks:
        _run_end_hooks.append(on_end)


# -- reading ------------------------------------------------------------------------
def flush(timeout: Optional[float] = None) -> bool:
    """Wait until everything logged so far is written (or spilled); False on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    for logger in list(_state.loggers.values()):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = logger.flush(left) and ok
    return ok


def _reader(tracking_uri: Optional[str] = None):
    flush()
    return logger_for(tracking_uri).backend


def get_run(run_id: str, *, tracking_uri: Optional[str] = None) -> Run:
    return _reader(tracking_uri).get_run(run_id)


def search_runs(experiment: Optional[str | Iterable[str]] = None, *, status: Optional[str | Iterable[str]] = None,
                parent_run_id: Optional[str] = None, max_results: Optional[int] = None,
                tracking_uri: Optional[str] = None) -> list[Run]:
    """Runs newest first, filtered by experiment name(s) and status(es)."""
    names = [experiment] if isinstance(experiment, str) else (list(experiment) if experiment else None)
    statuses = [status] if isinstance(status, str) else (list(status) if status else None)
    if statuses:
        statuses = [RunStatus.check(s) for s in statuses]
    try:
        return _reader(tracking_uri).search_runs(names, statuses, parent_run_id, max_results)
    except StoreNotFound:
        return []  # nothing written yet: no runs, as MLflow answers for an empty store


def last_run() -> Optional[Run]:
    """The last run this process started (a training call's own run included), read back."""
    if _state.last_run_id is None:
        return None
    return get_run(_state.last_run_id, tracking_uri=_state.last_run_uri)


# -- handing a run to another process ------------------------------------------------------
ENV_RUN_CONTEXT = "AUTOLOG_RUN_CONTEXT"


def export_run_context(run: Optional[ActiveRun] = None) -> str:
    """A token another process passes to `attach()` (or sets as AUTOLOG_RUN_CONTEXT) to log into `run`."""
    run = run or active_run()
    if run is None:
        raise RuntimeError("no active run to export")
    payload = {"run_id": run.run_id, "run_name": run.run_name, "experiment": run.experiment_name,
               "tracking_uri": run.tracking_uri, "start_time": run.start_time}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def attach(token: str) -> ActiveRun:
    """Log into the run a token names, from this thread, without ever ending it."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
        run_id, uri = payload["run_id"], payload["tracking_uri"]
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"not an autolog run context token: {token[:40]!r}...") from exc
    logger = logger_for(uri)
    run = ActiveRun(run_id, payload.get("run_name", ""), payload.get("experiment", DEFAULT_EXPERIMENT),
                    uri, None, "attached", payload.get("start_time", now_ms()), logger)
    run.trained_in = True  # training calls in this process log as child runs of it
    _set_stack(_stack.get() + (run,))
    for hook in list(_run_start_hooks):  # joined runs get the run context too (system metrics per rank)
        with containment.contained("a run-start hook"):
            hook(run)
    return run


def _attach_from_environment() -> None:
    _state.env_attached = True
    token = os.environ.get(ENV_RUN_CONTEXT)
    if token:
        with containment.contained(f"attaching to the run in {ENV_RUN_CONTEXT}"):
            attach(token)


# -- training calls -------------------------------------------------------------------------
class TrainingCall:
    """Context manager around one training call of an integration.

    `with TrainingCall("sklearn", "LogisticRegression") as call:` gives `call.run`, the
    run to log into, or `call.run is None` when this call must not log (nested in another
    training call, autolog disabled, or `exclusive` with a user run active). Its own
    errors are contained; the user's exception passes through and marks an autolog-made
    run FAILED.
    """

    __slots__ = ("integration", "name", "run", "owns_run", "_token", "tags")

    def __init__(self, integration: str, name: str, tags: Optional[Mapping[str, Any]] = None):
        self.integration = integration
        self.name = name
        self.run: Optional[ActiveRun] = None
        self.owns_run = False
        self._token = None
        self.tags = tags

    def __enter__(self) -> "TrainingCall":
        if _in_training.get() is not None or on_worker_thread():
            return self
        self._token = _in_training.set(self)
        with containment.contained(f"{self.integration}: starting a run"):
            s = _state.settings
            active = active_run()
            if active is not None and active.owner != "autolog":
                if s.exclusive:
                    return self
                if not active.trained_in:
                    active.trained_in = True
                    self.run = active
                    return self
            tags = {TAG_INTEGRATION: self.integration}
            if self.tags:
                tags.update(self.tags)
            self.run = start_run(f"{self.name}-{uuid.uuid4().hex[:6]}", nested=active is not None,
                                 tags=tags, owner="autolog")
            self.owns_run = True
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if self.owns_run and self.run is not None:
                with containment.contained(f"{self.integration}: ending the run"):
                    if exc_type is None:
                        _end(self.run, RunStatus.FINISHED)
                    else:
                        self.run.set_tag(TAG_ERROR, f"{exc_type.__name__}: {exc}"[:MAX_TAG_VALUE_LENGTH], normalize=True)
                        status = RunStatus.KILLED if issubclass(exc_type, KeyboardInterrupt) else RunStatus.FAILED
                        _end(self.run, status)
        finally:
            if self._token is not None:
                _in_training.reset(self._token)
                self._token = None
        return False


def training_call_in_progress() -> Optional[TrainingCall]:
    """The outermost training call this thread is inside, if any."""
    return _in_training.get()


class InsideTrainingCall:
    """Marks this thread as inside a training call, so training calls in it log nothing.

    For the worker threads of a thread pool that a training call dispatches its inner
    fits to (joblib's threading backend): the ContextVar guard does not follow the work
    into those threads, this carries it there.
    """

    __slots__ = ("_token",)

    def __enter__(self) -> "InsideTrainingCall":
        self._token = _in_training.set(TrainingCall("", "inside another training call"))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        _in_training.reset(self._token)
        return False


# -- exit ------------------------------------------------------------------------------------
def _install_exit_hook() -> None:
    if not _state.exit_hook_installed:
        _state.exit_hook_installed = True
        atexit.register(_at_exit)


def _at_exit() -> None:
    """End the runs still active (FINISHED, as MLflow does), then flush with a bounded wait."""
    from autolog.logger import close_all

    with containment.contained("ending runs at exit"):
        for run in reversed(_state.main_stack):
            _end(run, RunStatus.FINISHED)
    close_all()


def _after_fork_in_child() -> None:
    _state.lock = threading.RLock()  # each logger resets itself (autolog/logger.py)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def reset_for_tests() -> None:
    """Forget every run, logger and setting of this process (flushing first). For test suites."""
    from autolog.integration import engine

    engine.disable_all()
    from autolog import context  # run-context patches (argparse) and the sampler thread, too

    context.disable()
    for run in reversed(_current_stack()):
        with containment.contained("ending a run left active by a test"):
            _end(run, RunStatus.FINISHED)
    _set_stack(())
    for logger in list(_state.loggers.values()):
        with containment.contained("closing a logger"):
            logger.close(timeout=30)
    _state.loggers.clear()
    _state.settings = config.Settings()
    _state.main_stack = ()
    _state.last_run_id = _state.last_run_uri = None
    _state.env_attached = False
