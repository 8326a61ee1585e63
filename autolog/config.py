"""Settings of `autolog(...)`, validated once, and the environment variables behind them.

Every setting comes from the argument of `autolog()` when given, else from its
environment variable, else from the default below. Environment variables are parsed
by one helper (`env_value`), so `AUTOLOG_LOG_MODELS=false`, `=0`, `=no` all mean off.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def env_value(name: str, kind: type, default: Any = None) -> Any:
    """Read and parse an environment variable; a bad value raises ValueError naming it."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    text = raw.strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError("expected true/false")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is tuple:
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return text if text else default
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not a valid {kind.__name__}: {exc}") from None


@dataclass(frozen=True)
class Settings:
    """What `autolog()` was told. One immutable object; calling `autolog()` again swaps it."""

    tracking_uri: Optional[str] = None
    experiment: Optional[str] = None
    integrations: Optional[tuple] = None  # None: every integration whose library is installed
    exclude: tuple = ()
    log_models: bool = True
    log_checkpoints: bool = True
    keep_last_checkpoints: Optional[int] = None  # None: every checkpoint; K: the last K of each run
    log_input_examples: bool = False
    log_model_signatures: bool = True
    log_datasets: bool = True
    log_plots: bool = True
    silent: bool = False
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    exclusive: bool = False
    # integration options
    max_tuning_runs: Optional[int] = 5
    max_metric_rows: int = 100_000
    max_model_size_mb: Optional[float] = None
    log_every_n_steps: Optional[int] = None  # also log a framework's per-batch values every N steps
    registered_model_name: Optional[str] = None
    # run context (system metrics, arguments, code and environment)
    log_system_metrics: bool = True
    system_metrics_interval: float = 10.0
    log_args: bool = True
    log_code_state: bool = True
    log_environment: bool = True
    # distributed jobs: metrics from every rank, not only the primary's (autolog/runs/handover.py)
    log_all_ranks: bool = False

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


# setting name -> (environment variable, type)
ENVIRONMENT = {
    "tracking_uri": ("AUTOLOG_TRACKING_URI", str),
    "experiment": ("AUTOLOG_EXPERIMENT", str),
    "integrations": ("AUTOLOG_INTEGRATIONS", tuple),
    "exclude": ("AUTOLOG_EXCLUDE", tuple),
    "log_models": ("AUTOLOG_LOG_MODELS", bool),
    "log_checkpoints": ("AUTOLOG_LOG_CHECKPOINTS", bool),
    "keep_last_checkpoints": ("AUTOLOG_KEEP_LAST_CHECKPOINTS", int),
    "log_input_examples": ("AUTOLOG_LOG_INPUT_EXAMPLES", bool),
    "log_plots": ("AUTOLOG_LOG_PLOTS", bool),
    "silent": ("AUTOLOG_SILENT", bool),
    "exclusive": ("AUTOLOG_EXCLUSIVE", bool),
    "max_tuning_runs": ("AUTOLOG_MAX_TUNING_RUNS", int),
    "max_metric_rows": ("AUTOLOG_MAX_METRIC_ROWS", int),
    "max_model_size_mb": ("AUTOLOG_MAX_MODEL_SIZE_MB", float),
    "log_every_n_steps": ("AUTOLOG_LOG_EVERY_N_STEPS", int),
    "registered_model_name": ("AUTOLOG_REGISTERED_MODEL_NAME", str),
    "log_system_metrics": ("AUTOLOG_LOG_SYSTEM_METRICS", bool),
    "system_metrics_interval": ("AUTOLOG_SYSTEM_METRICS_INTERVAL", float),
    "log_args": ("AUTOLOG_LOG_ARGS", bool),
    "log_code_state": ("AUTOLOG_LOG_CODE_STATE", bool),
    "log_environment": ("AUTOLOG_LOG_ENVIRONMENT", bool),
    "log_all_ranks": ("AUTOLOG_LOG_ALL_RANKS", bool),
}


def build_settings(arguments: Mapping[str, Any]) -> Settings:
    """Settings from `autolog()`'s arguments (None means not given) over the environment."""
    values: dict[str, Any] = {}
    for name, (variable, kind) in ENVIRONMENT.items():
        given = arguments.get(name)
        if given is None:
            given = env_value(variable, kind)
        if given is not None:
            values[name] = given
    for name, value in arguments.items():
        if name not in ENVIRONMENT and value is not None:
            values[name] = value
    settings = Settings(**values)
    _check(settings)
    return settings


def _as_names(value: Any, what: str) -> Optional[tuple]:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    names = tuple(str(v).strip().lower() for v in value)
    if any(not n for n in names):
        raise ValueError(f"{what} has an empty integration name: {value!r}")
    return names


def _check(settings: Settings) -> None:
    object.__setattr__(settings, "integrations", _as_names(settings.integrations, "integrations"))
    object.__setattr__(settings, "exclude", _as_names(settings.exclude, "exclude") or ())
    if settings.max_tuning_runs is not None and settings.max_tuning_runs < 0:
        raise ValueError(f"max_tuning_runs must be >= 0 or None, not {settings.max_tuning_runs}")
    if settings.max_metric_rows < 0:
        raise ValueError(f"max_metric_rows must be >= 0, not {settings.max_metric_rows}")
    if settings.system_metrics_interval <= 0:
        raise ValueError(f"system_metrics_interval must be > 0 seconds, not {settings.system_metrics_interval}")
    if settings.max_model_size_mb is not None and settings.max_model_size_mb < 0:
        raise ValueError(f"max_model_size_mb must be >= 0, not {settings.max_model_size_mb}")
    for name in ("log_every_n_steps", "keep_last_checkpoints"):
        value = getattr(settings, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number >= 1 or None, not {value!r}")
    if not isinstance(settings.extra_tags, Mapping):
        raise TypeError(f"extra_tags must be a mapping of tag name to value, not {type(settings.extra_tags).__name__}")
    object.__setattr__(settings, "extra_tags", {str(k): str(v) for k, v in settings.extra_tags.items()})


def make_private_if_asked(folder: str) -> None:
    """With AUTOLOG_PRIVATE_FILES=1, make `folder` owner-only (0700): whatever is created in it
    then is out of other users' reach whatever its own mode (files follow the umask otherwise).
    The process's umask is left alone: it is the user's."""
    if env_value("AUTOLOG_PRIVATE_FILES", bool, False):
        try:
            os.chmod(folder, 0o700)
        except OSError:
            pass


def logger_options() -> dict:
    """Tuning of the BatchingLogger, from the environment only (rarely changed)."""
    return {
        "max_batch_size": env_value("AUTOLOG_BATCH_SIZE", int, 5000),
        "flush_interval": env_value("AUTOLOG_FLUSH_INTERVAL", float, 0.5),
        "max_queue_size": env_value("AUTOLOG_MAX_QUEUE_SIZE", int, 200_000),
        "retry_seconds": env_value("AUTOLOG_RETRY_SECONDS", float, 5.0),
        "exit_flush_timeout": env_value("AUTOLOG_EXIT_FLUSH_TIMEOUT", float, 10.0),
        "max_deferred_jobs": env_value("AUTOLOG_MAX_DEFERRED_JOBS", int, 8),
        "max_deferred_bytes": int(env_value("AUTOLOG_MAX_DEFERRED_MB", float, 512.0) * 1048576),
    }
