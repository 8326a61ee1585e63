"""Handing a run to another process: a token (or AUTOLOG_RUN_CONTEXT) that attaches to it.

The process that attaches logs into the run and never ends it; training calls in it
log as child runs of the run.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Optional

from autolog.instrument import containment
from autolog.runs.handle import ActiveRun, now_ms
from autolog.runs.lifecycle import DEFAULT_EXPERIMENT, _run_start_hooks, _set_stack, _stack, _state, active_run, logger_for

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

