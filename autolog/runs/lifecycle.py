"""The run context of a process: settings, one logger per tracking URI, per-thread run stacks.

Each thread has its own stack of active runs (a `ContextVar`), so two threads can
train and log at once without mixing their runs. A thread that has not started a
run of its own sees the main thread's active run, so a helper thread logs where
the user expects.

Run ids are made here (uuid4 hex), never by a backend, so starting a run costs the
caller no I/O: the creation is one more record for the BatchingLogger. Every way of
ending a run (`end_run()`, `run.end()`, leaving a `with` block, a training call's
own run, exit) goes through `_end`.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import random
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping, Optional

from autolog import config
from autolog.backends import BackendUnavailable, BatchLimits, get_backend, resolve_tracking_uri
from autolog.backends.base import StoreNotFound
from autolog.entities import Run, RunStart, RunStatus
from autolog.instrument import containment
from autolog.runs.handle import TAG_ERROR, ActiveRun, now_ms
from autolog.runs.process import exit_status, process_tags
from autolog.transport.logger import BatchingLogger
from autolog.validation import MAX_TAG_VALUE_LENGTH, check_key, clean_text, value_to_text

log = logging.getLogger("autolog")

DEFAULT_EXPERIMENT = "Default"
TAG_RUN_OWNER = "autolog.run_owner"


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


def settings() -> config.Settings:
    return _state.settings


def set_settings(new: config.Settings) -> None:
    _state.settings = new


#: the flush interval for a tracking server reached over the network, unless AUTOLOG_FLUSH_INTERVAL
#: says otherwise: at most about one request per run and second from each writer (many writers on
#: one server, docs/benchmarks.md); a local store keeps the logger's 0.5 s
REMOTE_FLUSH_INTERVAL = 1.0


def _remote(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://", "mlflow+http", "databricks"))


def logger_for(uri: Optional[str] = None) -> BatchingLogger:
    resolved = resolve_tracking_uri(uri if uri is not None else _state.settings.tracking_uri)
    logger = _state.loggers.get(resolved)
    if logger is not None and logger._pid == os.getpid():
        return logger
    with _state.lock:
        logger = _state.loggers.get(resolved)
        if logger is None:
            from autolog.provenance.source import source_tags

            options = config.logger_options()
            if "AUTOLOG_FLUSH_INTERVAL" not in os.environ and _remote(resolved):
                options["flush_interval"] = REMOTE_FLUSH_INTERVAL
            logger = BatchingLogger(_LazyBackend(resolved), source_tags=source_tags, **options)
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
        # The worker builds the backend as soon as it starts (the first record), not at its
        # first write, so that a short script's exit finds it built. A client library still
        # importing when the interpreter begins to shut down must not fail there: importing
        # concurrent.futures.thread registers a threading-atexit hook, refused once shutdown
        # has begun ("can't register atexit after shutdown"); it is imported here, up front
        # (stdlib, a few ms), so a client import that needs it (mlflow's) completes at exit.
        import concurrent.futures.thread  # noqa: F401

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
        from autolog.runs.handover import _attach_from_environment

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


# the operating system's random numbers: the `random` module's own generator is the user's (a
# script that seeds it must draw the same numbers with autolog as without), and a generator of
# our own would repeat its names in forked children
_names_random = random.SystemRandom()


def generate_run_name() -> str:
    return (f"{_names_random.choice(_ADJECTIVES)}-{_names_random.choice(_NOUNS)}-"
            f"{_names_random.randint(100, 999)}")


def start_run(run_name: Optional[str] = None, *, experiment: Optional[str] = None, run_id: Optional[str] = None,
              nested: bool = False, tags: Optional[Mapping[str, Any]] = None, owner: str = "user",
              tracking_uri: Optional[str] = None) -> ActiveRun:
    """Start a run (or resume one by `run_id`) and make it the active run of this thread.

    With `nested=True` the run is a child of the active run (the main thread's, in a thread
    that has no run of its own). Without it, a thread that has a run of its own must end it
    first; a helper thread whose only run is the main thread's may start its own run.
    """
    own = _own_stack()
    if own and not nested:
        raise RuntimeError(
            f"run {own[-1].run_id} ({own[-1].run_name}) is already active in this thread; "
            "end it with autolog.end_run(), or pass nested=True to start a child run"
        )
    parent = active_run() if nested else None
    logger = logger_for(tracking_uri)
    if run_id is not None:
        return _resume(run_id, logger, logger.backend.uri, owner)
    return _new_run(run_name, experiment, parent, tags, owner, logger, nested)


def _new_run(run_name: Optional[str], experiment: Optional[str], parent: Optional[ActiveRun],
             tags: Optional[Mapping[str, Any]], owner: str, logger: BatchingLogger, nested: bool) -> ActiveRun:
    """Make a run (a child of `parent` when given), record its start, put it on this thread's stack."""
    from autolog.runs import handover  # ranks of one job share one run (autolog/runs/handover.py)

    s = _state.settings
    experiment_name = experiment or s.experiment or (parent.experiment_name if parent else None) or DEFAULT_EXPERIMENT
    slot = handover.next_job_slot() if parent is None else None
    if slot is not None and not slot.role.is_primary or isinstance(parent, handover.RankRun):
        run = handover.join(slot, str(run_name or ""), str(experiment_name), logger) if slot else handover.rejoin(parent)
        _push(run, nested)
        handover._run_started(run)
        return run
    all_tags = process_tags()
    all_tags.update(s.extra_tags)
    if tags:
        all_tags.update({check_key(k, "tag key"): value_to_text(v, MAX_TAG_VALUE_LENGTH) for k, v in tags.items()})
    if owner != "user":
        all_tags[TAG_RUN_OWNER] = owner
    if slot is not None:
        all_tags.update(handover.job_tags(slot))
    run = ActiveRun(
        run_id=slot.run_id if slot is not None else uuid.uuid4().hex,
        run_name=clean_text(str(run_name)) if run_name else generate_run_name(),
        experiment_name=clean_text(str(experiment_name)),
        tracking_uri=logger.backend.uri,
        parent_run_id=parent.run_id if parent is not None else None,
        owner=owner,
        start_time=now_ms(),
        logger=logger,
    )
    logger.enqueue(("c", RunStart(run.run_id, run.experiment_name, run.run_name, run.start_time,
                                  run.parent_run_id, all_tags)))
    if slot is not None:
        handover.start_primary(run, slot)
    _push(run, nested)
    for hook in list(_run_start_hooks):
        with containment.contained("a run-start hook"):
            hook(run)
    return run


@contextmanager
def child_run(name: Optional[str] = None, *, tags: Optional[Mapping[str, Any]] = None,
              parent: Optional[ActiveRun] = None) -> Iterator[ActiveRun]:
    """A child run of `parent` (default: the active run of this thread), active inside the
    `with` block and ended when it leaves: FINISHED, or FAILED (KILLED on KeyboardInterrupt)
    when the block raises, the exception passing on unchanged.

        with autolog.start_run(run_name="sweep"):
            for lr in (0.1, 0.01):
                with autolog.child_run(f"lr={lr}", tags={"lr": lr}) as child:
                    model.fit(X, y)       # logs into the child run

    With no parent and no active run it is a run of its own, as `start_run(nested=True)`.
    Started inside a training call (an integration's hook: the candidates of a search) it
    is autolog's run (`autolog.run_owner` = autolog), else the user's, so that the first
    training call inside it logs into it.
    """
    from autolog.runs.training import training_call_in_progress

    if parent is None:
        parent = active_run()
    elif parent.end_time is not None:
        raise ValueError(f"child_run: the parent run {parent.run_id} ({parent.run_name}) has ended")
    owner = "autolog" if training_call_in_progress() is not None else "user"
    logger = parent._logger if parent is not None else logger_for()
    run = _new_run(name, None, parent, tags, owner, logger, nested=True)
    try:
        yield run
    except BaseException as exc:
        status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
        with containment.contained("tagging a failed child run"):
            run.set_tag(TAG_ERROR, f"{type(exc).__name__}: {exc}")
        _end(run, status)
        raise
    _end(run, RunStatus.FINISHED)


def _resume(run_id: str, logger: BatchingLogger, uri: str, owner: str) -> ActiveRun:
    logger.flush()
    existing = logger.backend.get_run(run_id)  # raises RunNotFound with the id
    run = ActiveRun(run_id, existing.run_name, existing.experiment_name, uri, existing.parent_run_id,
                    owner, existing.start_time, logger)
    run._params.update(existing.params)
    _push(run, nested=False)
    for key, value in process_tags().items():  # this process owns the run now
        run._enqueue(("t", run.run_id, key, value))
    return run


def _own_stack() -> tuple:
    """The runs this thread started itself (the main thread's include a run attached from
    the environment), without those a helper thread only sees from the main thread."""
    if threading.current_thread() is threading.main_thread():
        return _current_stack()
    return _stack.get()


def _push(run: ActiveRun, nested: bool) -> None:
    _set_stack((_current_stack() if nested else _own_stack()) + (run,))
    _state.last_run_id, _state.last_run_uri = run.run_id, run.tracking_uri


def _end(run: ActiveRun, status: str) -> None:
    """The one way a run ends, whichever call ends it (`end_run()`, `run.end()`, a `with`
    block, a training call's own run, exit): the runs above it end first, it leaves this
    thread's stack (and the main thread's, when another thread ends a main-thread run), the
    run-end hooks run, and the end is recorded, all once. A joined run is only left."""
    status = RunStatus.check(status)
    stack = _current_stack()
    if run in stack:
        index = stack.index(run)
        for above in reversed(stack[index + 1:]):
            _end(above, status)
        _set_stack(stack[:index])
    if run in _state.main_stack:
        with _state.lock:
            _state.main_stack = tuple(r for r in _state.main_stack if r is not run)
    if run.owner == "attached":
        if run.end_time is None:
            _run_end_hooks_for(run)
            run.end_time = now_ms()  # left: this process logs no more into it, the run goes on
            if hasattr(run, "on_left"):  # a rank of a job: its failure fails the job's run
                run.on_left(status)
        return
    if not run._mark_ended(status):
        return
    _run_end_hooks_for(run)
    job_end = getattr(run, "job_end", None)  # the primary of a job: a failed rank's FAILED stands
    if job_end is not None:
        job_end(status)
    else:
        run._enqueue(("e", run.run_id, status, run.end_time))


def _run_end_hooks_for(run: ActiveRun) -> None:
    for hook in list(_run_end_hooks):
        with containment.contained("a run-end hook"):
            hook(run)


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
    """Wait until everything logged so far is written (or spilled); False on timeout. Post-fit
    work does not wait for training to pause meanwhile (`snapshots.flushing`)."""
    from autolog.instrument.snapshots import flushing

    deadline = None if timeout is None else time.monotonic() + timeout
    ok = True
    with flushing():
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


# -- exit ------------------------------------------------------------------------------------
def _install_exit_hook() -> None:
    if not _state.exit_hook_installed:
        _state.exit_hook_installed = True
        atexit.register(_at_exit)


def _at_exit() -> None:
    """End the runs still active, then flush with a bounded wait. They end FINISHED, as MLflow
    does, unless the interpreter is ending by an unhandled exception or a non-zero exit
    status (FAILED), a KeyboardInterrupt or a SIGTERM (KILLED): autolog/runs/process.py."""
    from autolog.transport.logger import begin_exit, close_all

    begin_exit()
    with containment.contained("ending runs at exit"):
        end_open_runs(*exit_status())
    close_all()
    from autolog.runs.process import end_if_terminated

    end_if_terminated()


def end_open_runs(status: str, error: Optional[str] = None) -> None:
    """End the main thread's open runs (innermost first) with `status`; tag `error` on each
    when given. Runs of other threads end with their own calls."""
    for run in reversed(_state.main_stack):
        if error is not None and run.owner != "attached" and run.end_time is None:
            with containment.contained("tagging a run's end"):
                run.set_tag(TAG_ERROR, error)
        _end(run, status)


def _after_fork_in_child() -> None:
    """A forked child logs into the runs it inherited but never ends them: they are the
    parent's, still running there. They become attached runs of the child (as a run handed
    over through the environment), which leaving a block or exiting only leaves."""
    _state.lock = threading.RLock()  # each logger resets itself (autolog/transport/logger.py)
    for run in set(_state.main_stack) | set(_stack.get()):
        run.owner = "attached"


#: the longest a fork waits for the parent's queue to be written (see _before_fork)
FORK_FLUSH_TIMEOUT = 2.0


def _before_fork() -> None:
    """Before a fork, write what this process queued (above all the creation of its runs),
    at most FORK_FLUSH_TIMEOUT seconds: a child logs into its inherited runs at once, and a
    run its records reach before the parent created it would send them to the journal."""
    from autolog.transport.logger import on_worker_thread

    if on_worker_thread():
        return
    for logger in list(_state.loggers.values()):
        if logger._pid == os.getpid() and logger._thread is not None:
            with containment.contained("flushing before a fork"):
                logger.flush(FORK_FLUSH_TIMEOUT)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)

