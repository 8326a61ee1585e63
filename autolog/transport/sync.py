"""Copying runs between backends, and replaying spill journals: what `autolog sync` does.

`sync(source_uri, target_uri)` reads every run of the source through the Backend
protocol's reading side and writes it into the target with the same autolog run id:
params, tags, full metric histories (cut to the target's batch limits), dataset
inputs, artifact files, and the end status and time; parents before children. Then it replays the
spill journals meant for the target (the records a logger kept on disk while the
target was down), plus any journal folder named explicitly.

Running it twice creates nothing twice. A run already complete in the target (same
status and end time, as many points per metric key, every param, tag and artifact
file present) is skipped; a run that is there but incomplete gets only what is
missing: metric points are compared by (key, step, timestamp, value), params by key,
tags by key and value, dataset inputs by (name, digest), artifact files by path. Creating a run, params and tags are
idempotent in every backend by contract, so a sync cut short is safe to repeat.

The target's runs are read in one search, not one request per run, and a run's copy that
is complete gets the tag `autolog.synced`: a fingerprint of the source run as it was
copied (status, end time, params, tags, points per metric key, datasets, artifact files).
A second sync skips a run whose copy carries the fingerprint of the source as it is now
without reading the target's histories and artifact listings (the requests that made a
sync with nothing to copy take seconds on a server); a run that changed since is
compared in full as above. `progress(done, total)` is called after each run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator, Optional, Sequence

from autolog.backends import (
    Backend,
    BackendError,
    BackendUnavailable,
    RunNotFound,
    backend_kind,
    get_backend,
    resolve_tracking_uri,
)
from autolog.entities import Metric, Param, Run, RunStart
from autolog.validation import check_run_id, is_safe_relative_path
from autolog.transport.journal import Journal, all_journal_dirs, record_count


#: on a target's copy of a run: the fingerprint of the source run it is a complete copy of
TAG_SYNCED = "autolog.synced"


class SyncError(Exception):
    """A sync that cannot start (a missing store, the same store on both ends)."""


@dataclass
class SyncReport:
    """What a sync did (or, with `dry_run`, would do)."""

    source: Optional[str]
    target: str
    dry_run: bool = False
    source_missing: bool = False  # the source was a local store that does not exist
    runs_seen: int = 0
    runs_copied: int = 0  # not in the target before
    runs_updated: int = 0  # in the target, but incomplete
    runs_skipped: int = 0  # complete in the target already
    runs_failed: int = 0  # refused by the target (see errors)
    metric_points: int = 0
    params: int = 0
    tags: int = 0
    datasets: int = 0
    artifacts: int = 0
    runs_ended: int = 0
    journals: list = field(default_factory=list)  # folders replayed
    journal_records: int = 0
    journal_rejected: int = 0
    errors: list = field(default_factory=list)  # one line each
    unavailable: Optional[str] = None  # the target stopped answering; the rest is left for later

    @property
    def ok(self) -> bool:
        return not self.errors and self.unavailable is None and not self.journal_rejected

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def missing_store(uri: str) -> Optional[str]:
    """The path of a local store that does not exist yet, else None (other backends: None)."""
    if backend_kind(uri) != "local":
        return None
    path = resolve_tracking_uri(uri)
    return None if os.path.exists(path) else path


def sync(
    source_uri: Optional[str],
    target_uri: str,
    journals: Iterable[str] = (),
    dry_run: bool = False,
    experiment: Optional[str] = None,
    replay_target_journals: bool = True,
    progress: Optional[Callable[[int, int], None]] = None,
) -> SyncReport:
    """Copy the runs of `source_uri` into `target_uri`, then replay the spill journals.

    `source_uri=None` means the resolved tracking URI (argument-less `autolog`); when that
    store does not exist, or is the target itself, only journals are replayed. `journals`: extra journal folders to
    replay into the target, whatever target they were written for. `experiment`: copy
    only the runs of that experiment (and the parents they need).
    """
    explicit_source = source_uri is not None
    source_resolved = resolve_tracking_uri(source_uri)
    target_resolved = resolve_tracking_uri(target_uri)
    same_store = source_resolved == target_resolved
    if same_store and explicit_source:
        raise SyncError(f"the source and the target are the same store: {target_resolved}")
    report = SyncReport(source=source_resolved, target=target_resolved, dry_run=dry_run)
    missing = missing_store(source_resolved)
    if missing is not None and explicit_source:
        raise SyncError(f"no autolog store at {missing}")
    journal_dirs = _journals_for(target_resolved, journals, replay_target_journals)
    if same_store and not journal_dirs:
        raise SyncError(f"the source and the target are the same store ({target_resolved}), "
                        "and it has no spill journal to replay")
    if missing is not None and not journal_dirs:
        raise SyncError(f"no autolog store at {missing}, and no spill journal for {target_resolved}")
    target = get_backend(target_resolved)
    try:
        if same_store:
            # `autolog sync --to <the default store>`: only its spill journals are replayed
            report.source = None
        elif missing is None:
            _copy_runs(get_backend(source_resolved), target, report, experiment, progress)
        else:
            report.source_missing = True
        if report.unavailable is None:
            _replay_journals(journal_dirs, target, report)
        target.flush()
    except BackendUnavailable as exc:
        report.unavailable = str(exc)
    return report


# -- copying runs --------------------------------------------------------------------------

def _copy_runs(source: Backend, target: Backend, report: SyncReport, experiment: Optional[str],
               progress: Optional[Callable[[int, int], None]] = None) -> None:
    runs = _parents_first(source.search_runs([experiment] if experiment else None, None, None, None), source)
    in_target = _runs_in_target(target, runs)
    for done, run in enumerate(runs, 1):
        report.runs_seen += 1
        try:
            _check_ids(run)
            _copy_run(run, source, target, report, in_target.get(run.run_id))
        except BackendUnavailable:
            raise
        except BackendError as exc:
            report.runs_failed += 1
            report.errors.append(f"run {run.run_id} ({run.run_name}): {exc}")
        if progress is not None:
            progress(done, len(runs))


def _check_ids(run: Run) -> None:
    """Ids from a source store (a crafted one, or MLflow's autolog.run_id tag that any server user
    can set) name folders in the target: refuse what could leave them."""
    try:
        check_run_id(run.run_id)
        if run.parent_run_id is not None:
            check_run_id(run.parent_run_id)
    except ValueError as exc:
        raise BackendError(f"refused: {exc}") from None


def _runs_in_target(target: Backend, runs: Sequence[Run]) -> dict:
    """The target's copies of `runs`, by id, from one search of their experiments."""
    # a local target that does not exist yet has no runs (it is made by the first write)
    if not runs or missing_store(target.uri) is not None:
        return {}
    experiments = sorted({r.experiment_name for r in runs})
    wanted = {r.run_id for r in runs}
    return {r.run_id: r for r in target.search_runs(experiments, None, None, None) if r.run_id in wanted}


def _fingerprint(run: Run, histories: dict, files: Sequence[str]) -> str:
    """What a complete copy of `run` holds, hashed: status, end, params, tags, the number of
    points and last step of each metric, datasets, artifact files."""
    content = [run.status, run.end_time, run.run_name, run.parent_run_id, run.experiment_name,
               sorted(run.params.items()), sorted((k, v) for k, v in run.tags.items() if k != TAG_SYNCED),
               [(key, len(points), max((m.step for m in points), default=None)) for key, points in sorted(histories.items())],
               sorted((i.dataset.name, i.dataset.digest) for i in run.inputs), list(files)]
    return hashlib.sha256(json.dumps(content, default=str).encode()).hexdigest()[:32]


def _parents_first(runs: Sequence[Run], source: Backend) -> list[Run]:
    """Runs oldest first, every parent before its children (parents outside `runs` included)."""
    by_id = {r.run_id: r for r in runs}
    for run in list(runs):  # a child whose parent was filtered out still needs its parent
        parent_id = run.parent_run_id
        while parent_id and parent_id not in by_id:
            try:
                parent = source.get_run(parent_id)
            except RunNotFound:
                break
            by_id[parent_id] = parent
            parent_id = parent.parent_run_id
    ordered: list[Run] = []
    placed: set[str] = set()

    def place(run: Run, trail: set) -> None:
        if run.run_id in placed or run.run_id in trail:
            return
        parent = by_id.get(run.parent_run_id) if run.parent_run_id else None
        if parent is not None:
            place(parent, trail | {run.run_id})
        placed.add(run.run_id)
        ordered.append(run)

    for run in sorted(by_id.values(), key=lambda r: (r.start_time, r.run_id)):
        place(run, set())
    return ordered


def _point(m: Metric) -> tuple:
    value = "nan" if isinstance(m.value, float) and math.isnan(m.value) else float(m.value)
    return (m.key, int(m.step), int(m.timestamp), value)


def _copy_run(run: Run, source: Backend, target: Backend, report: SyncReport, existing: Optional[Run]) -> None:
    histories = {key: source.get_metric_history(run.run_id, key) for key in sorted(run.metrics)}
    source_files = _artifact_files(source, run.run_id)
    fingerprint = _fingerprint(run, histories, source_files)
    if existing is not None and existing.tags.get(TAG_SYNCED) == fingerprint:
        report.runs_skipped += 1  # a complete copy of the source as it is now
        return

    if existing is None:
        metrics = [m for key in sorted(histories) for m in histories[key]]
        params = [Param(k, v) for k, v in sorted(run.params.items())]
        tags = sorted((k, v) for k, v in run.tags.items() if k != TAG_SYNCED)
        inputs = list(run.inputs)
        files = source_files
    else:
        sent = {key: {_point(m) for m in target.get_metric_history(run.run_id, key)} for key in histories}
        metrics = [m for key in sorted(histories) for m in histories[key] if _point(m) not in sent[key]]
        conflicts = sorted(k for k, v in run.params.items() if k in existing.params and existing.params[k] != v)
        if conflicts:  # params never change: the target holds another run under this id
            key = conflicts[0]
            raise BackendError(f"param {key!r} is {existing.params[key]!r} in the target and {run.params[key]!r} "
                               f"in the source" + (f" ({len(conflicts) - 1} more params differ)" if len(conflicts) > 1 else ""))
        params = [Param(k, v) for k, v in sorted(run.params.items()) if k not in existing.params]
        tags = [(k, v) for k, v in sorted(run.tags.items()) if k != TAG_SYNCED and existing.tags.get(k) != v]
        known = {(i.dataset.name, i.dataset.digest) for i in existing.inputs}
        inputs = [i for i in run.inputs if (i.dataset.name, i.dataset.digest) not in known]
        present = set(_artifact_files(target, run.run_id))
        files = [f for f in source_files if f not in present]
    needs_end = run.end_time is not None and (
        existing is None or existing.status != run.status or existing.end_time != run.end_time
    )
    if existing is not None and not (metrics or params or tags or inputs or files or needs_end):
        report.runs_skipped += 1
        if not report.dry_run:  # complete, copied before fingerprints: the next sync skips it at once
            target.log_batch(run.run_id, tags=[(TAG_SYNCED, fingerprint)])
        return

    if not report.dry_run:
        if existing is None:
            target.create_run(RunStart(run.run_id, run.experiment_name, run.run_name, run.start_time,
                                       run.parent_run_id, {}))
        for m_chunk, p_chunk, t_chunk in batches(metrics, params, tags, target.limits):
            target.log_batch(run.run_id, metrics=m_chunk, params=p_chunk, tags=t_chunk)
        complete = True
        if inputs:
            try:
                target.log_inputs(run.run_id, inputs)
            except NotImplementedError:
                report.errors.append(f"run {run.run_id} ({run.run_name}): the target {target.uri} does not "
                                     f"store datasets; {len(inputs)} dataset inputs not copied")
                inputs = []
                complete = False
        if files:
            _copy_artifacts(run.run_id, files, source, target)
        if needs_end:
            target.end_run(run.run_id, run.status, run.end_time)
        if complete:
            target.log_batch(run.run_id, tags=[(TAG_SYNCED, fingerprint)])  # last: the copy is complete
    # counted once the whole run is through: a run refused half-way counts as failed only
    if existing is None:
        report.runs_copied += 1
    else:
        report.runs_updated += 1
    report.metric_points += len(metrics)
    report.params += len(params)
    report.tags += len(tags)
    report.datasets += len(inputs)
    report.artifacts += len(files)
    report.runs_ended += int(needs_end)


def batches(metrics: Sequence[Metric], params: Sequence[Param], tags: Sequence[tuple], limits) -> Iterator[tuple]:
    """(metrics, params, tags) chunks that each fit the backend's `BatchLimits`, in order."""
    mi = pi = ti = 0
    while mi < len(metrics) or pi < len(params) or ti < len(tags):
        room = max(1, limits.max_total)
        p_chunk = params[pi:pi + min(max(1, limits.max_params), room)]
        pi += len(p_chunk)
        room -= len(p_chunk)
        t_chunk = tags[ti:ti + min(max(1, limits.max_tags), room)] if room else []
        ti += len(t_chunk)
        room -= len(t_chunk)
        m_chunk = metrics[mi:mi + min(max(1, limits.max_metrics), room)] if room else []
        mi += len(m_chunk)
        yield list(m_chunk), list(p_chunk), list(t_chunk)


def _artifact_files(backend: Backend, run_id: str, path: Optional[str] = None) -> list[str]:
    """Every artifact file of a run, as "/"-separated paths under its artifact root."""
    out: list[str] = []
    for info in backend.list_artifacts(run_id, path):
        if not is_safe_relative_path(info.path):
            raise BackendError(f"refused: the artifact path {info.path!r} of run {run_id} leaves the run's folder")
        if info.is_dir:
            out.extend(_artifact_files(backend, run_id, info.path))
        else:
            out.append(info.path)
    return sorted(out)


def _copy_artifacts(run_id: str, files: Sequence[str], source: Backend, target: Backend) -> None:
    with tempfile.TemporaryDirectory(prefix="autolog-sync-") as tmp:
        for index, rel in enumerate(files):
            dst = os.path.join(tmp, str(index))
            os.makedirs(dst)
            local = source.download_artifacts(run_id, rel, dst)
            name = rel.rsplit("/", 1)[-1]
            if os.path.basename(local) != name:  # log_artifact keeps the local file's name
                renamed = os.path.join(dst, "named", name)
                os.makedirs(os.path.dirname(renamed))
                shutil.copy2(local, renamed)
                local = renamed
            folder = rel.rsplit("/", 1)[0] if "/" in rel else None
            target.log_artifact(run_id, local, folder)


# -- replaying journals -------------------------------------------------------------------

def _journals_for(target_uri: str, extra: Iterable[str], include_target: bool) -> list[tuple[str, str]]:
    """(folder, uri) of the journals to replay: those written for the target, then `extra`."""
    chosen: list[tuple[str, str]] = []
    if include_target:
        for folder, uri in all_journal_dirs():
            if _same_uri(uri, target_uri):
                chosen.append((folder, uri))
    for folder in extra:
        folder = os.path.abspath(os.path.expanduser(folder))
        if not os.path.isdir(folder):
            raise SyncError(f"no journal folder at {folder}")
        if any(folder == f for f, _ in chosen):
            continue
        uri = target_uri
        try:
            with open(os.path.join(folder, "uri.txt"), encoding="utf-8") as fh:
                uri = fh.read().strip() or target_uri
        except OSError:
            pass
        chosen.append((folder, uri))
    return chosen


def _same_uri(a: str, b: str) -> bool:
    try:
        return resolve_tracking_uri(a).rstrip("/") == resolve_tracking_uri(b).rstrip("/")
    except Exception:  # noqa: BLE001 - an odd URI in a journal is just not ours
        return a == b


def _replay_journals(dirs: Sequence[tuple[str, str]], target: Backend, report: SyncReport) -> None:
    for folder, uri in dirs:
        journal = Journal(uri, folder)
        if report.dry_run:
            count = pending_records(journal)
            if count:
                report.journals.append(folder)
                report.journal_records += count
            continue
        result = journal.replay(target)
        # what was set aside earlier (a folder not writable then) is tried again once
        again, _ = journal.replay_rejected(target) if result.unavailable is None else (0, 0)
        result.sent += again
        if result.sent or result.rejected or result.unavailable is not None:
            report.journals.append(folder)
        report.journal_records += result.sent
        report.journal_rejected += result.rejected
        if result.rejected:
            report.errors.append(f"{result.rejected} journalled records refused by the target; "
                                 f"kept in {os.path.join(folder, 'rejected.jsonl')}")
        if result.unavailable is not None:
            report.unavailable = str(result.unavailable)
            return


def pending_records(journal: Journal) -> int:
    """How many records the journal's segments still hold (lines already replayed excluded)."""
    total = 0
    for path in journal.pending_segments():
        done_path = path[: -len(".jsonl")] + ".done"
        try:
            with open(done_path, encoding="utf-8") as fh:
                skip = int(fh.read().strip() or 0)
        except (OSError, ValueError):
            skip = 0
        try:
            with open(path, encoding="utf-8") as fh:
                lines = [line for line in (raw.strip() for raw in fh) if line]
        except OSError:
            continue
        for line in lines[skip:]:
            try:
                total += record_count(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue
    return total
