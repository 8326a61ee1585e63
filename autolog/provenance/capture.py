"""Run context: what autolog records around every run besides the training call itself.

`autolog.autolog()` calls `enable(settings)`; `autolog(disable=True)` calls `disable()`.
Four parts, each with its own switch (see autolog/config.py and docs/run-context.md):

- system metrics (`log_system_metrics`, `system_metrics_interval`): autolog/provenance/system_metrics.py,
  one sampler thread, samples logged to the outermost active runs of the process,
  joined (`autolog.attach`) runs included;
- parsed command-line arguments (`log_args`): autolog/provenance/arguments.py, `args.<name>` params;
- code state (`log_code_state`): git branch, remote, script hash, uncommitted diff as
  the artifact `code/uncommitted.diff` (autolog/provenance/source.py);
- environment (`log_environment`): `autolog.env.*` tags and the artifact
  `environment.txt` (autolog/provenance/environment.py).

Arguments, code state and environment go to the outermost runs this process starts
(runs without a parent), once per run; child runs (tuning trials, a fit inside a user
run's nested run) repeat none of it, their parent holds it. Runs joined from another
process get system metrics only: the process that started the run logged the rest.

Everything here runs from the run hooks of autolog/runs/lifecycle.py. The hook on the caller's
thread does O(1) work (a dict insert, a few enqueued params, one deferred job); git,
hashing, metadata reading and file writing happen on the logger's worker.

What is the same for every run of a process (the git state and the script's hash, the
machine tags, the requirements of autolog itself, NVML's Python module for the GPU names)
is prepared once, by a short-lived thread that `enable` starts: while the script goes on
importing its libraries and loading its data, not while its first training call runs (the
worker's Python work there takes turns with training for the GIL). A run that starts
before it is done waits for the piece it needs on the worker, never on the caller's thread.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import threading
from typing import Any, Optional

from autolog import config, runs
from autolog.instrument import containment
from autolog.provenance import environment
from autolog.provenance import source
from autolog.provenance.arguments import ArgumentRecorder
from autolog.provenance.system_metrics import MachineReader, SystemMetricsSampler, gpus, load_psutil

_MAX_REMEMBERED_RUNS = 10_000


class _State:
    """One state object, one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.enabled = False
        self.settings = config.Settings()
        self.sampler: Optional[SystemMetricsSampler] = None
        self.arguments = ArgumentRecorder(on_parsed=lambda params: _on_arguments_parsed(params))
        # run id -> frameworks covered by its environment.txt (None: not written yet), once per run
        self.handled: collections.OrderedDict = collections.OrderedDict()
        self.hooks_installed = False
        self.prepared_pid: Optional[int] = None  # the process whose run context was prepared
        self.reader_thread: Optional[threading.Thread] = None  # making the sampler's MachineReader


_state = _State()


def enable(settings: config.Settings) -> None:
    """Turn the parts on or off as `settings` say; calling it again applies new settings."""
    with _state.lock:
        _state.settings = settings
        _state.enabled = True
        if not _state.hooks_installed:
            runs.add_run_hooks(on_start=_on_run_start, on_end=_on_run_end)
            _state.hooks_installed = True
        if settings.log_args:
            _state.arguments.enable()
        else:
            _state.arguments.disable()
        _configure_sampler(settings)
    _prepare_in_background(settings)
    # a run the user started before calling autolog() gets its context too
    active = runs.active_run()
    if active is not None:
        with containment.contained("run context of the active run"):
            _on_run_start(active)


def disable() -> None:
    """Every part off: the parsers are the original functions again, the sampler has stopped
    (nothing is logged by it after this returns)."""
    with _state.lock:
        _state.enabled = False
        _state.arguments.disable()
        sampler, _state.sampler = _state.sampler, None
    if sampler is not None:
        sampler.close()
    maker, _state.reader_thread = _state.reader_thread, None
    if maker is not None and maker is not threading.current_thread():
        maker.join(_READER_JOIN_SECONDS)  # psutil's import and a baseline: milliseconds, bounded anyway


def enabled() -> bool:
    return _state.enabled


def sampler() -> Optional[SystemMetricsSampler]:
    """The system-metrics sampler, when system metrics are on (and psutil is installed)."""
    return _state.sampler


def parsed_arguments() -> dict:
    """The `args.*` params of the last command-line parse of this process."""
    return _state.arguments.current()


def _configure_sampler(settings: config.Settings) -> None:
    current = _state.sampler
    if not settings.log_system_metrics:
        if current is not None:
            _state.sampler = None
            current.close()
        return
    if current is not None:
        current.interval = float(settings.system_metrics_interval)
        return
    if importlib.util.find_spec("psutil") is None:
        load_psutil()  # says once that system metrics need it
        return
    reader = _ReaderMadeAside()
    _state.sampler = SystemMetricsSampler(reader, settings.system_metrics_interval)
    maker = _state.reader_thread = containment.background_thread(reader.make, "autolog-system-metrics-reader")
    maker.start()


class _ReaderMadeAside:
    """The sampler's `MachineReader`, made on a short-lived thread that `autolog()` starts: psutil's
    import (about 10 ms, a third of what enabling costs a script otherwise) is not paid by the
    caller, and the baseline of CPU percentages and rates is still taken at `autolog()`, so that
    a run's first sample means something. `read()` runs on the sampler thread, which waits for it."""

    def __init__(self) -> None:
        self.reader: Optional[MachineReader] = None
        self._made = threading.Event()
        self._pid = os.getpid()

    def make(self) -> None:
        try:
            with containment.contained("reading the machine for system metrics"):
                psutil = load_psutil()
                if psutil is not None:
                    self.reader = MachineReader(psutil, gpus)
        finally:
            self._made.set()

    def read(self) -> dict:
        if self._pid != os.getpid() and not self._made.is_set():
            self._pid = os.getpid()
            self.make()  # forked while the parent's thread was making it: that thread is not here
        self._made.wait(_READER_WAIT_SECONDS)
        return self.reader.read() if self.reader is not None else {}


_READER_WAIT_SECONDS = 30.0
_READER_JOIN_SECONDS = 2.0


# -- prepared once per process, off the caller's thread ------------------------------------------
def _prepare_in_background(settings: config.Settings) -> None:
    """Start the thread that computes, once per process, what every first run needs (the
    caches of autolog/provenance/source.py and environment.py fill up; nothing is logged)."""
    with _state.lock:
        if _state.prepared_pid == os.getpid():
            return
        _state.prepared_pid = os.getpid()
    thread = containment.background_thread(_prepare, "autolog-provenance", (settings,))
    thread.start()


def _prepare(settings: config.Settings) -> None:
    with containment.contained("preparing the run context"):
        source.source_tags()  # git state; library versions read so far are cached per distribution
        if settings.log_code_state:
            source.code_state()  # the script's hash and git diff
        if settings.log_environment:
            environment.environment_tags()
            environment.resolve(["autolog"])  # autolog's own requirements, read once
        if settings.log_environment or settings.log_system_metrics:
            _import_quietly("pynvml")  # the GPU probe's module (the probe itself runs with the first run)
        _import_backend(settings.tracking_uri)  # the local store's module (the store opens with the first run)
        if settings.log_plots:
            for module in ("PIL.Image", "PIL.ImageDraw", "PIL.ImageFont"):  # integrations/plots.py draws with them
                _import_quietly(module)


def _import_backend(uri: Optional[str]) -> None:
    """Import the local store's module (and SQLite's), which the worker would otherwise import
    as the first run starts. Not the MLflow client: a large package imported on this thread
    while the script imports its own libraries on the main thread could meet one of them in a
    circular import, and hand one thread a half-initialised module."""
    from autolog import backends

    try:
        if backends.backend_kind(backends.resolve_tracking_uri(uri)) == "local":
            _import_quietly("autolog.backends.local")
    except Exception:  # noqa: BLE001 - a bad URI was refused by autolog() already
        pass


def _import_quietly(module: str) -> None:
    """Import `module` if it is installed (leaf modules only: see `_import_backend`; the import
    lock makes this safe beside a fork)."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - not installed, or broken: whoever needs it reports that
        pass


# -- the run hooks (caller's thread: keep them cheap) ---------------------------------------------
def _on_run_start(run: Any) -> None:
    if not _state.enabled:
        return
    settings = _state.settings
    sampler = _state.sampler
    if sampler is not None and settings.log_system_metrics and getattr(run, "samples_host", True):
        sampler.add(run)  # not for a rank whose host another rank samples (autolog/runs/handover.py)
    if run.owner == "attached" or run.parent_run_id is not None:
        return
    with _state.lock:
        if run.run_id in _state.handled:
            return
        _state.handled[run.run_id] = None
        while len(_state.handled) > _MAX_REMEMBERED_RUNS:
            _state.handled.popitem(last=False)
    if settings.log_args:
        params = _state.arguments.current()
        if params:
            run.log_params(params, normalize=True)
    if settings.log_code_state or settings.log_environment:
        code, env = settings.log_code_state, settings.log_environment
        if run.owner == "autolog":
            # a training call's own run ends with the call: recorded then, so that none of this
            # work takes turns with the training for the GIL (the run's source tags, git commit
            # included, are in its first record all the same)
            with _state.lock:
                if run.run_id in _state.handled:
                    _state.handled[run.run_id] = _AtEnd(code, env)
            return
        run.defer(lambda: _log_code_and_environment(run, code, env),
                  label=f"recording the code and environment of run {run.run_id}")


class _AtEnd:
    """In `_State.handled`: the code state and environment of this run are recorded at its end."""

    __slots__ = ("code", "env")

    def __init__(self, code: bool, env: bool):
        self.code, self.env = code, env


def _on_run_end(run: Any) -> None:
    sampler = _state.sampler
    if sampler is not None:
        sampler.remove(run)
    with _state.lock:
        if run.run_id not in _state.handled:
            return
        pending = _state.handled[run.run_id]
        if isinstance(pending, _AtEnd):
            _state.handled[run.run_id] = None
    if isinstance(pending, _AtEnd):
        run.defer(lambda: _log_code_and_environment(run, pending.code, pending.env),
                  label=f"recording the code and environment of run {run.run_id}")
        return
    if not _state.enabled or not _state.settings.log_environment:
        return
    # frameworks imported after the run started (`import torch` inside it): environment.txt again
    run.defer(lambda: _refresh_environment(run), label=f"updating the environment of run {run.run_id}")


def _on_arguments_parsed(params: dict) -> None:
    if not _state.enabled or not _state.settings.log_args:
        return
    run = runs.active_run()
    if run is not None and run.owner != "attached":
        run.log_params(params, normalize=True)


# -- on the logger's worker -------------------------------------------------------------------
def _log_code_and_environment(run: Any, code: bool, env: bool) -> None:
    tags: dict = {}
    if code:
        code_tags, diff = source.code_state()
        tags.update(code_tags)
        if diff:
            run.log_text(diff, source.DIFF_ARTIFACT)
    if env:
        gpus.devices()
        tags.update(environment.environment_tags(gpus.names))
        _write_environment(run)
    if tags:
        run.set_tags(tags, normalize=True)


def _write_environment(run: Any) -> None:
    frameworks, text = environment.snapshot.current()
    run.log_text(text, environment.ARTIFACT)
    with _state.lock:
        if run.run_id in _state.handled:
            _state.handled[run.run_id] = frameworks


def _refresh_environment(run: Any) -> None:
    with _state.lock:
        logged = _state.handled.get(run.run_id)
    if logged is not None and tuple(environment.imported_frameworks()) != logged:
        _write_environment(run)


def _after_fork_in_child() -> None:
    _state.lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
