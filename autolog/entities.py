"""The things a tracking backend stores: experiments, runs, params, metrics, tags, dataset inputs.

Plain frozen dataclasses shared by the run API, the batching logger, every backend
and the CLI. Times are integer milliseconds since the epoch (MLflow's convention),
so that runs copied between backends compare equal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple, Optional, Sequence, Union, overload


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



class MetricRecords(Sequence[Metric]):
    """Metric points held as the logger queued them, read as `Metric`s on demand.

    The logger queues a point as one tuple whose last four items are a Metric's fields
    (key, value, timestamp, step); `offset` is where they start. Wrapping its list saves
    building one object per point on the worker. It is a `Sequence[Metric]` for any
    backend, and `columns()` gives a backend that stores columns (the local store) the
    points grouped by key without any per-point object at all.
    """

    __slots__ = ("records", "offset")

    def __init__(self, records: list, offset: int = 0):
        self.records = records
        self.offset = offset

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> Metric: ...

    @overload
    def __getitem__(self, index: slice) -> "MetricRecords": ...

    def __getitem__(self, index: Union[int, slice]):
        if isinstance(index, slice):
            return MetricRecords(self.records[index], self.offset)
        o = self.offset
        r = self.records[index]
        return Metric(r[o], r[o + 1], r[o + 2], r[o + 3])

    def __iter__(self) -> Iterator[Metric]:
        o = self.offset
        for r in self.records:
            yield Metric(r[o], r[o + 1], r[o + 2], r[o + 3])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"MetricRecords({list(self)!r})"

    def columns(self) -> dict[str, tuple[list, list, list]]:
        return _columns(self.records, self.offset)


def metric_columns(metrics: Sequence[Metric]) -> dict[str, tuple[list, list, list]]:
    """The points of `metrics` grouped by key, in order: ``{key: (values, timestamps, steps)}``."""
    columns = getattr(metrics, "columns", None)
    if columns is not None:
        return columns()
    return _columns(metrics, 0)


def _columns(records, o: int) -> dict[str, tuple[list, list, list]]:
    groups: dict[str, list] = {}
    get = groups.get
    for r in records:
        group = get(r[o])
        if group is None:
            groups[r[o]] = group = []
        group.append(r)
    v, t, s = o + 1, o + 2, o + 3
    return {key: ([r[v] for r in rs], [r[t] for r in rs], [r[s] for r in rs]) for key, rs in groups.items()}

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


#: the input tag that says what a run did with a dataset ("train", "eval"), MLflow's name for it
CONTEXT_TAG = "mlflow.data.context"


@dataclass(frozen=True)
class Dataset:
    """A dataset as MLflow's `log_input` records it (mlflow.entities.Dataset), made by
    autolog/instrument/datasets.py. `source`, `schema` and `profile` are JSON text in MLflow's
    formats; a run keeps one input per (name, digest)."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: Optional[str] = None
    profile: Optional[str] = None


@dataclass(frozen=True)
class DatasetInput:
    """A dataset a run used, with the input's tags (`mlflow.data.context`: "train", "eval")."""

    dataset: Dataset
    tags: dict = field(default_factory=dict)

    @property
    def context(self) -> Optional[str]:
        return self.tags.get(CONTEXT_TAG)


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
    inputs: list = field(default_factory=list)  # DatasetInput, in the order first logged

    @property
    def duration_ms(self) -> Optional[int]:
        return None if self.end_time is None else self.end_time - self.start_time

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["duration_ms"] = self.duration_ms
        return data
