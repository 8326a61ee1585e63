"""autolog: one line, and every training call of your ML libraries is tracked.

    import autolog
    autolog.autolog()          # patch every supported library, now or when it is imported
    ...train as usual...
    autolog.autolog(disable=True)   # every patched attribute is the original object again

The manual API (`start_run`, `log_metric`, ...) and the automatic logging share one
path: records go to a batched logger that writes to the backend on its own thread.

Importing this package imports no ML framework.
"""

from __future__ import annotations

from time import time_ns as _time_ns
from typing import Any, Iterable, Mapping, Optional

from autolog import config as _config
from autolog.instrument import beside_mlflow as _beside_mlflow
from autolog.instrument import containment as _containment
from autolog import runs as _runs
from autolog.runs import handover as _handover
from autolog.runs import process as _process
from autolog.backends import require_client_library
from autolog.entities import Experiment, Metric, Param, Run, RunStatus
from autolog.instrument.models import load_model
from autolog.runs import (
    ActiveRun,
    TrainingCall,
    active_run,
    attach,
    child_run,
    end_run,
    export_run_context,
    flush,
    get_run,
    last_run,
    start_run,
)

from autolog.validation import _valid_keys
from autolog.validation import check_key as _check_key
from autolog.validation import metric_int as _metric_int
from autolog.validation import metric_value as _metric_value

__version__ = "0.1.0"

_run_stack = _runs.lifecycle._stack  # the active-run stack, read by log_metric's fast path

__all__ = [
    "autolog", "start_run", "child_run", "end_run", "active_run", "last_run", "log_param", "log_params",
    "log_metric", "log_metrics", "set_tag", "set_tags", "log_artifact", "log_artifacts", "log_text", "log_input",
    "flush", "get_run", "search_runs", "load_model", "attach", "export_run_context", "enabled_integrations",
    "ActiveRun", "TrainingCall", "Run", "RunStatus", "Experiment", "Metric", "Param",
]


def autolog(
    disable: bool = False,
    *,
    integrations: Optional[Iterable[str]] = None,
    exclude: Optional[Iterable[str]] = None,
    tracking_uri: Optional[str] = None,
    experiment: Optional[str] = None,
    log_models: Optional[bool] = None,
    log_checkpoints: Optional[bool] = None,
    keep_last_checkpoints: Optional[int] = None,
    log_input_examples: Optional[bool] = None,
    log_model_signatures: Optional[bool] = None,
    log_datasets: Optional[bool] = None,
    log_plots: Optional[bool] = None,
    silent: Optional[bool] = None,
    extra_tags: Optional[Mapping[str, Any]] = None,
    exclusive: Optional[bool] = None,
    max_tuning_runs: Optional[int] = None,
    max_metric_rows: Optional[int] = None,
    max_model_size_mb: Optional[float] = None,
    log_every_n_steps: Optional[int] = None,
    registered_model_name: Optional[str] = None,
    log_system_metrics: Optional[bool] = None,
    system_metrics_interval: Optional[float] = None,
    log_args: Optional[bool] = None,
    log_code_state: Optional[bool] = None,
    log_environment: Optional[bool] = None,
    log_all_ranks: Optional[bool] = None,
) -> list[str]:
    """Turn automatic logging on (or off with `disable=True`); return the enabled integrations.

    Calling it again updates the settings without patching twice. Arguments left as
    None come from the environment (`AUTOLOG_TRACKING_URI`, `AUTOLOG_EXPERIMENT`,
    `AUTOLOG_DISABLE`, ... see docs/api.md), else from the defaults.
    """
    from autolog.instrument.integration import engine

    arguments = {k: v for k, v in locals().items() if k not in ("disable", "engine")}
    if disable or _config.env_value("AUTOLOG_DISABLE", bool, False):
        engine.disable_all()
        _beside_mlflow.unwatch()
        _disable_run_context()
        _process.disable()
        _handover.disable()
        return []
    settings = _config.build_settings(arguments)
    require_client_library(settings.tracking_uri)  # e.g. mlflow for an http:// URI, before any patching
    _runs.set_settings(settings)
    _containment.set_silent(settings.silent)
    # libraries MLflow's own autologging has taken are left to it (autolog/instrument/beside_mlflow.py)
    enabled = engine.enable(settings.integrations,
                            settings.exclude + _beside_mlflow.watch(settings.integrations, settings.exclude))
    _enable_run_context(settings)
    _process.enable()  # exit status and SIGTERM (autolog/runs/process.py)
    _handover.enable(settings)  # ranks of a job, Spark workers (autolog/runs/handover.py)
    return enabled


def _enable_run_context(settings: _config.Settings) -> None:
    """System metrics, arguments, code state and environment (autolog/provenance/capture.py), when present."""
    try:
        from autolog.provenance import capture as context
    except ImportError:
        return
    context.enable(settings)


def _disable_run_context() -> None:
    try:
        from autolog.provenance import capture as context
    except ImportError:
        return
    context.disable()


def enabled_integrations() -> list[str]:
    """Names of the integrations autolog is enabled for (patched now or when imported)."""
    from autolog.instrument.integration import engine

    return sorted(engine.wanted)


# -- the manual API: the active run of this thread (started when there is none) ------------
def log_param(key: str, value: Any) -> None:
    _runs.run_or_start().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _runs.run_or_start().log_params(params)


def log_metric(key: str, value: Any, step: Optional[int] = None, timestamp: Optional[int] = None) -> None:
    stack = _run_stack.get()  # the hot path: this thread's (or context's) run, one lookup
    run = stack[-1] if stack else (_runs.active_run() or _runs.start_run())
    # ActiveRun.log_metric's body, inlined: a second Python call costs about 0.1 us here.
    # tests/core/test_api.py::test_fluent_log_metric_matches_run_handle holds the two to the
    # same records and the same errors.
    if key not in _valid_keys:
        key = _check_key(key, "metric key")
    if type(value) is not float:
        value = _metric_value(value)
    run._enqueue(("m", run.run_id, key, value,
                  _time_ns() // 1_000_000 if timestamp is None else _metric_int(timestamp, "timestamp"),
                  step if type(step) is int and -9223372036854775808 <= step <= 9223372036854775807
                  else (0 if step is None else _metric_int(step, "step"))))


def log_metrics(metrics: Mapping[str, Any], step: Optional[int] = None, timestamp: Optional[int] = None) -> None:
    _runs.run_or_start().log_metrics(metrics, step, timestamp)


def set_tag(key: str, value: Any) -> None:
    _runs.run_or_start().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _runs.run_or_start().set_tags(tags)


def log_artifact(local_path: str, artifact_path: Optional[str] = None) -> None:
    _runs.run_or_start().log_artifact(local_path, artifact_path)


def log_artifacts(local_dir: str, artifact_path: Optional[str] = None) -> None:
    _runs.run_or_start().log_artifacts(local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    _runs.run_or_start().log_text(text, artifact_file)


def log_input(dataset: Any, context: Optional[str] = "train", name: Optional[str] = None, *,
              targets: Any = None) -> None:
    """Record a dataset the run used, as `mlflow.log_input` does (the MLflow UI's Datasets column).

    `dataset`: a pandas DataFrame, a numpy array, a scipy sparse matrix, a list, or an MLflow
    Dataset (`mlflow.data.from_pandas(...)`); `targets`: y, for array data; `context`: the
    input tag `mlflow.data.context` ("train", "eval", ...); `name`: default the caller's
    variable name. Name, digest, schema and profile are computed off this thread (see
    docs/api.md); recorded whatever `autolog(log_datasets=...)` says. TypeError for data no
    dataset can be made of.
    """
    from autolog.instrument import datasets

    datasets.log_input(_runs.run_or_start(), dataset, targets=targets, context=context, name=name)


# MLflow's fluent names (autolog/fluent.py; docs/api.md has the table). `search_runs` from there
# replaces the one imported above: a pandas DataFrame by default, as in MLflow.
from autolog.fluent import (  # noqa: E402
    get_experiment_by_name,
    get_tracking_uri,
    log_dict,
    log_figure,
    log_image,
    log_model,
    search_experiments,
    search_runs,
    set_experiment,
    set_tracking_uri,
)

__all__ += [
    "set_tracking_uri", "get_tracking_uri", "set_experiment", "get_experiment_by_name", "search_experiments",
    "log_dict", "log_figure", "log_image", "log_model",
]
