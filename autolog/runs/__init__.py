"""Runs: which run a record belongs to.

- `handle.py`: `ActiveRun`, the handle every logging call goes through;
- `lifecycle.py`: settings, one logger per tracking URI, per-thread run stacks, starting
  and ending runs (`start_run`, `child_run`, `end_run`), reading them back, exit and fork;
- `handover.py`: handing a run to another process (a token, `AUTOLOG_RUN_CONTEXT`);
- `training.py`: the run of a training call (the outermost-call guard).
"""

from autolog.entities import RunStatus
from autolog.runs.handle import TAG_ERROR, ActiveRun, now_ms
from autolog.runs.handover import ENV_RUN_CONTEXT, attach, export_run_context
from autolog.runs.lifecycle import (
    DEFAULT_EXPERIMENT,
    TAG_RUN_OWNER,
    _at_exit,
    _end,
    _reader,
    _state,
    active_run,
    add_run_hooks,
    child_run,
    end_run,
    flush,
    generate_run_name,
    get_run,
    last_run,
    logger_for,
    run_or_start,
    search_runs,
    set_settings,
    settings,
    start_run,
)
from autolog.runs.training import TAG_CANDIDATE, TAG_INTEGRATION, InsideTrainingCall, TrainingCall, training_call_in_progress

__all__ = [
    "ActiveRun", "RunStatus", "TrainingCall", "InsideTrainingCall", "training_call_in_progress",
    "active_run", "add_run_hooks", "attach", "child_run", "end_run", "export_run_context", "flush", "generate_run_name",
    "get_run", "last_run", "logger_for", "run_or_start", "search_runs", "set_settings", "settings", "start_run",
    "now_ms", "DEFAULT_EXPERIMENT", "ENV_RUN_CONTEXT", "TAG_CANDIDATE", "TAG_ERROR", "TAG_INTEGRATION", "TAG_RUN_OWNER",
    "_at_exit", "_end", "_reader", "_state",
]
