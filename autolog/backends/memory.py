"""An in-memory backend, for unit tests of the core.

`get_backend("memory:NAME")` returns one store per name and process. It can be
told to fail (`fail_with`, for `fail_remaining` writes or all of them) or to be
slow (`write_delay_s`), which is how the logger's retry and spill paths are
tested without a network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Iterable, Optional, Sequence

from autolog.backends.base import Backend, BackendError, BatchLimits, RunNotFound
from autolog.entities import ArtifactInfo, DatasetInput, Experiment, Metric, Param, Run, RunStart, RunStatus


class InMemoryBackend(Backend):
    schemes = ("memory",)
    limits = BatchLimits()

    def __init__(self, uri: str = "memory:"):
        super().__init__(uri)
        self._lock = threading.RLock()
        self.experiments: dict[str, Experiment] = {}
        self.runs: dict[str, Run] = {}
        self.metric_history: dict[tuple[str, str], list[Metric]] = {}
        self.artifact_root = tempfile.mkdtemp(prefix="autolog-memory-artifacts-")
        self.calls: list[tuple[str, str]] = []  # (method, run_id), in the order received
        #: set to an exception instance to make every write raise it (outage simulation)
        self.fail_with: Optional[BaseException] = None
        #: with `fail_with`: how many more writes fail before it recovers (None: all of them)
        self.fail_remaining: Optional[int] = None
        self.write_delay_s = 0.0

    def _maybe_fail(self):
        if self.write_delay_s:
            import time

            time.sleep(self.write_delay_s)
        if self.fail_with is not None:
            if self.fail_remaining is None:
                raise self.fail_with
            if self.fail_remaining > 0:
                self.fail_remaining -= 1
                raise self.fail_with

    def _experiment(self, name: str) -> Experiment:
        exp = self.experiments.get(name)
        if exp is None:
            exp = Experiment(experiment_id=str(len(self.experiments)), name=name)
            self.experiments[name] = exp
        return exp

    def _run(self, run_id: str) -> Run:
        try:
            return self.runs[run_id]
        except KeyError:
            raise RunNotFound(run_id) from None

    # -- writing ---------------------------------------------------------
    def create_run(self, run: RunStart) -> None:
        with self._lock:
            self._maybe_fail()
            self.calls.append(("create_run", run.run_id))
            if run.run_id in self.runs:
                return
            exp = self._experiment(run.experiment_name)
            self.runs[run.run_id] = Run(
                run_id=run.run_id,
                run_name=run.run_name,
                experiment_id=exp.experiment_id,
                experiment_name=exp.name,
                status=RunStatus.RUNNING,
                start_time=run.start_time,
                parent_run_id=run.parent_run_id,
                tags=dict(run.tags),
                artifact_uri=os.path.join(self.artifact_root, run.run_id),
            )

    def log_batch(self, run_id, metrics: Sequence[Metric] = (), params: Sequence[Param] = (), tags=()) -> None:
        with self._lock:
            self._maybe_fail()
            self.calls.append(("log_batch", run_id))
            run = self._run(run_id)
            for p in params:
                old = run.params.get(p.key)
                if old is not None and old != p.value:
                    raise BackendError(f"param {p.key!r} already logged as {old!r}, not {p.value!r}")
                run.params[p.key] = p.value
            for key, value in tags:
                run.tags[key] = value
            for m in metrics:
                history = self.metric_history.setdefault((run_id, m.key), [])
                history.append(m)
                last = max(history, key=lambda x: (x.step, x.timestamp))
                run.metrics[m.key] = last.value

    def end_run(self, run_id: str, status: str, end_time: int) -> None:
        with self._lock:
            self._maybe_fail()
            self.calls.append(("end_run", run_id))
            run = self._run(run_id)
            run.status = status
            run.end_time = end_time

    def log_artifact(self, run_id: str, local_path: str, artifact_path: Optional[str] = None) -> None:
        with self._lock:
            self._maybe_fail()
            self.calls.append(("log_artifact", run_id))
            run = self._run(run_id)
            dest = os.path.join(run.artifact_uri, artifact_path or "")
            if os.path.isdir(local_path):
                shutil.copytree(local_path, dest, dirs_exist_ok=True)
            else:
                os.makedirs(dest, exist_ok=True)
                shutil.copy2(local_path, os.path.join(dest, os.path.basename(local_path)))

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        with self._lock:
            self._maybe_fail()
            self.calls.append(("log_inputs", run_id))
            run = self._run(run_id)
            have = {(i.dataset.name, i.dataset.digest) for i in run.inputs}
            for item in datasets:
                key = (item.dataset.name, item.dataset.digest)
                if key not in have:
                    have.add(key)
                    run.inputs.append(item)

    # -- reading ---------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        with self._lock:
            import copy

            return copy.deepcopy(self._run(run_id))

    def search_runs(self, experiment_names: Optional[Iterable[str]] = None, statuses=None, parent_run_id=None, max_results=None):
        with self._lock:
            names = set(experiment_names) if experiment_names else None
            wanted = {s.upper() for s in statuses} if statuses else None
            out = [
                r
                for r in self.runs.values()
                if (names is None or r.experiment_name in names)
                and (wanted is None or r.status in wanted)
                and (parent_run_id is None or r.parent_run_id == parent_run_id)
            ]
            out.sort(key=lambda r: r.start_time, reverse=True)
            import copy

            return copy.deepcopy(out[:max_results] if max_results else out)

    def list_experiments(self):
        with self._lock:
            return list(self.experiments.values())

    def get_metric_history(self, run_id: str, key: str):
        with self._lock:
            self._run(run_id)
            return sorted(self.metric_history.get((run_id, key), []), key=lambda m: (m.step, m.timestamp))

    def list_artifacts(self, run_id: str, path: Optional[str] = None):
        root = os.path.join(self._run(run_id).artifact_uri, path or "")
        if not os.path.isdir(root):
            return []
        out = []
        for name in sorted(os.listdir(root)):
            full = os.path.join(root, name)
            rel = "/".join(p for p in ((path or "").strip("/"), name) if p)
            out.append(ArtifactInfo(rel, os.path.isdir(full), None if os.path.isdir(full) else os.path.getsize(full)))
        return out

    def download_artifacts(self, run_id: str, path: str, dst_dir: str) -> str:
        return os.path.join(self._run(run_id).artifact_uri, path)

