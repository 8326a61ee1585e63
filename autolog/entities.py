"""The things a tracking backend stores: experiments, runs, params, metrics, tags.

Plain frozen dataclasses shared by the run API, the batching logger, every backend
and the CLI. Times are integer milliseconds since the epoch (MLflow's convention),
so that runs copied between backends compare equal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple, Optional


class RunStatus:
    """The life cycle of a run, named as MLflow names it."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    ALL = (RUNNING, FINISHED, FAILED, KILLED)
    TERMINAL = (FINISHED, FAILED, KILLED)

    @classmethod
    def check(cls, status: str) -> str:
        value = str(status).upper()
        if value not in cls.ALL:
            raise ValueError(f"unknown run status {status!r}; expected one of {', '.join(cls.ALL)}")
        return value


class Metric(NamedTuple):
    """One metric point. A NamedTuple rather than a frozen dataclass: the logger builds one
    per point on its worker, and this is ~2x cheaper to build (see docs/benchmarks.md)."""

    key: str
    value: float
    timestamp: int  # ms since the epoch
    step: int = 0


@dataclass(frozen=True)
class Param:
    key: str
    value: str


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    creation_time: Optional[int] = None


@dataclass(frozen=True)
class RunStart:
    """What the logger hands a backend to create a run. The id is made locally."""

    run_id: str
    experiment_name: str
    run_name: str
    start_time: int
    parent_run_id: Optional[str] = None
    tags: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactInfo:
    path: str  # relative to the run's artifact root, "/"-separated
    is_dir: bool
    size: Optional[int] = None


@dataclass
class Run:
    """A run as read back from a backend: what `get_run` and `search_runs` return."""

    run_id: str
    run_name: str
    experiment_id: str
    experiment_name: str
    status: str
    start_time: int
    end_time: Optional[int] = None
    parent_run_id: Optional[str] = None
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # key -> last value (highest step, then latest time)
    tags: dict = field(default_factory=dict)
    artifact_uri: Optional[str] = None

    @property
    def duration_ms(self) -> Optional[int]:
        return None if self.end_time is None else self.end_time - self.start_time

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["duration_ms"] = self.duration_ms
        return data
