"""The backend protocol: the one small interface every tracking store implements.

Writing side (called only from the BatchingLogger's worker thread, or from
`autolog sync`): `create_run`, `log_batch`, `end_run`, `log_artifact`, `log_inputs`,
`flush`, `shutdown`. Reading side (called by the run API, the CLI and `load_model`):
`get_run`, `search_runs`, `list_experiments`, `get_metric_history`,
`list_artifacts`, `download_artifacts`. Optional, with defaults here: `prepare` (connect ahead of the first write), `move_artifact`
(a file the caller gives up: a backend may take it rather than copy it) and
`begin_group` / `commit_group` / `abort_group` (the worker's writes of one pass in one
transaction, where a backend has transactions).

Run ids are made by autolog (uuid4 hex) so the training thread never waits for a
backend. Every write is idempotent where a replay could repeat it: creating a run
that exists, logging a param with the value it already has, or a dataset input the run
has already (same name and digest), is a no-op.

Errors: raise `BackendUnavailable` for what may pass (connection refused, timeouts,
HTTP 429 and 5xx, a locked database), with `retry_after` set when the backend said how
long to wait (an HTTP Retry-After header: `retry_after_seconds` reads it); the logger
retries those with backoff and spills to the journal. Any other exception is a
permanent rejection of that batch;
the logger also keeps it in the journal (never a silent drop) and warns once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from autolog.entities import ArtifactInfo, DatasetInput, Experiment, Metric, Param, Run, RunStart


class BackendError(Exception):
    """A backend refused an operation for good (bad request, missing run, ...)."""


class BackendUnavailable(BackendError):
    """A backend could not be reached, or asked us to slow down: worth retrying.

    `retry_after`: the seconds the backend asked us to wait before trying again (HTTP
    Retry-After on a 429 or 503), or None; the logger waits that long, or, when that is
    past its retry deadline, spills and probes the backend no sooner.
    """

    def __init__(self, *args: object, retry_after: Optional[float] = None):
        super().__init__(*args)
        self.retry_after = retry_after


class CredentialsRefused(BackendUnavailable):
    """The backend refused our credentials (HTTP 401 or 403).

    Not retried on the spot (the same credentials get the same answer), but not refused
    for good either: a token that expired mid-training is renewed, a permission is granted.
    The logger keeps the records in its journal, and they are sent once the backend takes
    them (its next probe, the next autolog process, or `autolog sync`).
    """


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from an HTTP `Retry-After` header: delta-seconds ("120") or an HTTP
    date; None when absent or unreadable. `now`: the current time (epoch seconds), for dates."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        import email.utils
        import time

        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # an HTTP date is GMT
            import datetime

            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


class StoreNotFound(BackendError):
    """A read found no store at all (nothing has been written to it yet)."""


class RunNotFound(BackendError, LookupError):
    def __init__(self, run_id: str):
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


@dataclass(frozen=True)
class BatchLimits:
    """The most a backend takes in one `log_batch` call; the logger chunks to fit."""

    max_metrics: int = 10_000
    max_params: int = 1_000
    max_tags: int = 1_000
    max_total: int = 10_000


class Backend:
    """Base class with the protocol's signatures; subclasses override what they support."""

    #: URI schemes this backend answers to, for the registry
    schemes: Sequence[str] = ()
    limits: BatchLimits = BatchLimits()

    def __init__(self, uri: str):
        self.uri = uri

    # -- writing ---------------------------------------------------------
    def create_run(self, run: RunStart) -> None:
        raise NotImplementedError

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[tuple[str, str]] = (),
    ) -> None:
        raise NotImplementedError

    def end_run(self, run_id: str, status: str, end_time: int) -> None:
        raise NotImplementedError

    def log_artifact(self, run_id: str, local_path: str, artifact_path: Optional[str] = None) -> None:
        """Copy a file or a folder into the run's artifacts, under `artifact_path`."""
        raise NotImplementedError

    def move_artifact(self, run_id: str, local_path: str, artifact_path: Optional[str] = None) -> None:
        """`log_artifact` for a file or folder that the caller deletes once this returns (the
        logger's own staged copies): a backend may move it in rather than copy it. If this
        raises, `local_path` must be as it was: the caller sends it again or spills it."""
        self.log_artifact(run_id, local_path, artifact_path)

    # -- groups of writes: one transaction for many writes -----------------
    def begin_group(self) -> bool:
        """The calling thread's writes from now on may be held back until `commit_group`, each
        still all or nothing on its own (a write that raises leaves the rest of the group
        as it was). True if this backend groups writes; the default does not (each write is
        stored when it returns) and the logger then never calls the other two."""
        return False

    def commit_group(self) -> None:
        """Store every write of the group. If this raises, none of them is stored, and files
        moved by `move_artifact` in the group are back at their `local_path`."""

    def abort_group(self) -> None:
        """Drop the group: none of its writes is stored (after a failed commit: nothing to do)."""

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        """Record datasets the run used (MLflow's `log_inputs`): one input per (name, digest)
        and run; an input the run has already is left as it is (its first tags stay). A
        backend that does not store datasets leaves this out: the logger then warns once and
        records none."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Get ready to write (connect; the local store makes its folder and schema). The
        logger's worker calls it when it starts, that is when a run has something to write,
        so that the first write of a process does not wait for it. A `BackendError` here is
        ignored: the first write meets it again and is retried or spilled as usual."""

    def flush(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def after_fork_in_child(self) -> None:
        """Drop connections inherited from the parent process; reconnect lazily."""

    # -- reading ---------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        raise NotImplementedError

    def search_runs(
        self,
        experiment_names: Optional[Iterable[str]] = None,
        statuses: Optional[Iterable[str]] = None,
        parent_run_id: Optional[str] = None,
        max_results: Optional[int] = None,
    ) -> list[Run]:
        raise NotImplementedError

    def list_experiments(self) -> list[Experiment]:
        raise NotImplementedError

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        raise NotImplementedError

    def list_artifacts(self, run_id: str, path: Optional[str] = None) -> list[ArtifactInfo]:
        raise NotImplementedError

    def download_artifacts(self, run_id: str, path: str, dst_dir: str) -> str:
        """Make `path` of the run's artifacts available locally; return the local path."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
