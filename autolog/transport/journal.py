"""The spill journal: where records go when a backend stays down, until they are replayed.

A journal is a folder per target URI (`journal_dir_for(uri)`): `uri.txt` names the
target, `segment-*.jsonl` hold operations as JSON lines in the order they were meant
to be sent, a `segment-*.done` file beside a segment counts the lines already
replayed, and `staged/` keeps copies of artifact files until they are delivered.
Operations that a backend refused for good are moved to `rejected.jsonl` with the
error, never deleted.

Each writing process appends to a segment of its own and holds an exclusive
`flock` on it while it writes, so a replayer in another process skips segments
still being written. Replay is at-least-once: creating a run, params and tags are
idempotent in every backend; a crash in the middle of a replay can repeat at most
one metric batch.

The operations (`op` field): `create` (a RunStart), `batch` (metrics, params, tags
of one run), `end`, `artifact` (a staged local path), `register` (a model folder of a
run, already logged as an artifact, to register under a name in the backend's model
registry), `inputs` (the datasets a run used: MLflow's Dataset fields and the input's tags).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from typing import Iterable, Iterator, Optional

from autolog.config import make_private_if_asked
from autolog.backends.base import Backend, BackendError, BackendUnavailable
from autolog.entities import Dataset, DatasetInput, Metric, Param, RunStart

try:  # POSIX; on other systems segments are not locked (one writer per process still holds)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("autolog")


def journal_root() -> str:
    root = os.environ.get("AUTOLOG_JOURNAL_DIR")
    if root:
        return os.path.abspath(os.path.expanduser(root))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "autolog", "journal")


def journal_dir_for(uri: str) -> str:
    digest = hashlib.sha1(uri.encode("utf-8")).hexdigest()[:16]
    return os.path.join(journal_root(), digest)


def all_journal_dirs() -> list[tuple[str, str]]:
    """(folder, target URI) of every journal under the journal root."""
    out = []
    for folder in sorted(glob.glob(os.path.join(journal_root(), "*"))):
        try:
            with open(os.path.join(folder, "uri.txt"), encoding="utf-8") as fh:
                out.append((folder, fh.read().strip()))
        except OSError:
            continue
    return out


# -- encoding of operations ------------------------------------------------------------

def encode_create(run: RunStart) -> dict:
    return {
        "op": "create",
        "run_id": run.run_id,
        "experiment_name": run.experiment_name,
        "run_name": run.run_name,
        "start_time": run.start_time,
        "parent_run_id": run.parent_run_id,
        "tags": dict(run.tags),
    }


def encode_batch(run_id: str, metrics: Iterable[Metric], params: Iterable[Param], tags: Iterable[tuple]) -> dict:
    return {
        "op": "batch",
        "run_id": run_id,
        "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics],
        "params": [[p.key, p.value] for p in params],
        "tags": [[k, v] for k, v in tags],
    }


def encode_end(run_id: str, status: str, end_time: int) -> dict:
    return {"op": "end", "run_id": run_id, "status": status, "end_time": end_time}


def encode_artifact(run_id: str, local_path: str, artifact_path: Optional[str]) -> dict:
    return {"op": "artifact", "run_id": run_id, "local_path": local_path, "artifact_path": artifact_path}


def encode_register(run_id: str, artifact_path: str, name: str) -> dict:
    return {"op": "register", "run_id": run_id, "artifact_path": artifact_path, "name": name}


def encode_inputs(run_id: str, datasets: Iterable[DatasetInput]) -> dict:
    return {"op": "inputs", "run_id": run_id,
            "datasets": [dict(vars(d.dataset), tags=dict(d.tags)) for d in datasets]}


def decode_inputs(op: dict) -> list[DatasetInput]:
    return [DatasetInput(Dataset(d["name"], d["digest"], d["source_type"], d["source"], d.get("schema"),
                                 d.get("profile")), d.get("tags") or {}) for d in op["datasets"]]


def apply(op: dict, backend: Backend) -> None:
    """Send one journal operation to a backend."""
    kind = op["op"]
    if kind == "create":
        backend.create_run(
            RunStart(
                run_id=op["run_id"],
                experiment_name=op["experiment_name"],
                run_name=op["run_name"],
                start_time=op["start_time"],
                parent_run_id=op.get("parent_run_id"),
                tags=op.get("tags") or {},
            )
        )
    elif kind == "batch":
        backend.log_batch(
            op["run_id"],
            metrics=[Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in op["metrics"]],
            params=[Param(k, v) for k, v in op["params"]],
            tags=[(k, v) for k, v in op["tags"]],
        )
    elif kind == "end":
        backend.end_run(op["run_id"], op["status"], op["end_time"])
    elif kind == "artifact":
        backend.log_artifact(op["run_id"], op["local_path"], op.get("artifact_path"))
    elif kind == "register":
        register = getattr(backend, "register_model", None)
        if register is None:
            raise BackendError(f"the backend {backend.uri} has no model registry: the model {op['artifact_path']!r} "
                               f"cannot be registered as {op['name']!r}")
        register(op["run_id"], op["artifact_path"], op["name"])
    elif kind == "inputs":
        backend.log_inputs(op["run_id"], decode_inputs(op))
    else:
        raise ValueError(f"unknown journal operation {kind!r}")


def record_count(op: dict) -> int:
    """How many records (metric points, params, tags, ...) an operation carries."""
    if op["op"] == "batch":
        return len(op["metrics"]) + len(op["params"]) + len(op["tags"])
    if op["op"] == "inputs":
        return len(op["datasets"])
    return 1


class Journal:
    """The journal of one target URI, as seen by one process."""

    def __init__(self, uri: str, folder: Optional[str] = None):
        self.uri = uri
        self.folder = folder or journal_dir_for(uri)
        self._lock = threading.Lock()
        self._segment = None  # open file object of this process's segment
        self._segment_path: Optional[str] = None
        self._pid = os.getpid()

    # -- writing ---------------------------------------------------------
    def _ensure_folder(self) -> None:
        os.makedirs(os.path.join(self.folder, "staged"), exist_ok=True)
        make_private_if_asked(self.folder)  # spilled records and staged copies: the user's data
        uri_file = os.path.join(self.folder, "uri.txt")
        if not os.path.exists(uri_file):
            tmp = f"{uri_file}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(self.uri + "\n")
            os.replace(tmp, uri_file)

    def _open_segment(self):
        if self._segment is not None and self._pid == os.getpid():
            return self._segment
        self._ensure_folder()
        name = f"segment-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        path = os.path.join(self.folder, name)
        # unbuffered: a write the disk refuses leaves nothing in a buffer for close() to retry
        fh = open(path, "ab", buffering=0)
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        self._segment, self._segment_path, self._pid = fh, path, os.getpid()
        return fh

    def append(self, ops: Iterable[dict]) -> int:
        """Write operations to this process's segment, durably; return how many records.

        A write the disk refuses (full, a file size limit) is taken back whole: the segment
        keeps ending with whole lines, and the room the refused write had found is left for
        the smaller records that follow it (the end of a run)."""
        count = 0
        lines = []
        for op in ops:
            lines.append(json.dumps(op, separators=(",", ":")) + "\n")
            count += record_count(op)
        data = memoryview("".join(lines).encode("utf-8"))
        with self._lock:
            fh = self._open_segment()
            fd = fh.fileno()
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    pass
                raise
        return count

    def stage(self, local_path: str) -> str:
        """Keep a copy of an artifact file or folder in the journal; return the copy's path."""
        self._ensure_folder()
        dest = os.path.join(self.folder, "staged", uuid.uuid4().hex, os.path.basename(local_path.rstrip("/")) or "artifact")
        if os.path.isdir(local_path):
            shutil.copytree(local_path, dest)
        else:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy2(local_path, dest)
        return dest

    def close_segment(self) -> None:
        with self._lock:
            if self._segment is not None:
                try:
                    self._segment.close()  # releases the flock
                finally:
                    self._segment = None
                    self._segment_path = None

    def after_fork_in_child(self) -> None:
        """Forget the parent's segment without closing the parent's lock."""
        self._lock = threading.Lock()
        self._segment = None
        self._segment_path = None
        self._pid = os.getpid()

    # -- reading / replaying ---------------------------------------------
    def pending_segments(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.folder, "segment-*.jsonl")))

    def has_pending(self) -> bool:
        return bool(self.pending_segments())

    def replay(self, backend: Backend, stop_on_unavailable: bool = True) -> "ReplayResult":
        """Send every finished segment to `backend`, oldest first; delete what was delivered.

        Returns what was sent; stops at the first `BackendUnavailable` (the rest stays).
        This process's own open segment is closed first, so it is replayed too.
        """
        self.close_segment()
        result = ReplayResult()
        for path in self.pending_segments():
            done = self._replay_segment(path, backend, result)
            if not done and stop_on_unavailable and result.unavailable:
                break
        return result

    def _replay_segment(self, path: str, backend: Backend, result: "ReplayResult") -> bool:
        try:
            fh = open(path, "r+", encoding="utf-8")
        except FileNotFoundError:
            return True  # another process replayed it
        with fh:
            if fcntl is not None:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return True  # a live writer or another replayer holds it: not ours now
            done_path = path[: -len(".jsonl")] + ".done"
            skip = _read_int(done_path)
            for index, line in enumerate(_lines(fh)):
                if index < skip:
                    continue
                try:
                    op = json.loads(line)
                except ValueError:
                    self._reject_line(line, "undecodable journal line (a write cut short)")
                    _write_int(done_path, index + 1)
                    continue
                try:
                    apply(op, backend)
                except BackendUnavailable as exc:
                    result.unavailable = exc
                    return False
                except Exception as exc:  # noqa: BLE001 - refused for good: keep it aside, go on
                    self._reject(op, exc)
                    result.rejected += record_count(op)
                else:
                    result.sent += record_count(op)
                    result.ops += 1
                    if op["op"] == "artifact":
                        _remove_staged(self.folder, op.get("local_path"))
                _write_int(done_path, index + 1)
            _unlink(path)
            _unlink(done_path)
            return True

    def _reject(self, op: dict, exc: BaseException) -> None:
        self._ensure_folder()
        entry = dict(op, error=f"{type(exc).__name__}: {exc}", rejected_at=int(time.time() * 1000))
        with open(os.path.join(self.folder, "rejected.jsonl"), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
        log.warning("autolog: the backend %s refused a journalled %s of run %s (%s); kept in %s",
                    self.uri, op.get("op"), op.get("run_id"), exc, os.path.join(self.folder, "rejected.jsonl"))

    def replay_rejected(self, backend: Backend) -> tuple[int, int]:
        """Send again what was set aside in `rejected.jsonl` (once its cause is gone: a folder
        writable again, a run created since); (records sent, entries still refused). What is
        refused again stays, with its new reason."""
        path = os.path.join(self.folder, "rejected.jsonl")
        if not os.path.exists(path):
            return 0, 0
        with self._lock:
            with open(path, encoding="utf-8") as fh:
                lines = [line for line in fh if line.strip()]
            kept: list[str] = []
            sent = 0
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    kept.append(line)
                    continue
                op = {k: v for k, v in entry.items() if k not in ("error", "rejected_at")}
                if op.get("op") == "raw":
                    kept.append(line)
                    continue
                try:
                    apply(op, backend)
                except Exception as exc:  # noqa: BLE001 - still refused: kept, with the new reason
                    entry.update(error=f"{type(exc).__name__}: {exc}")
                    kept.append(json.dumps(entry, separators=(",", ":")) + "\n")
                    continue
                sent += record_count(op)
                if op.get("op") == "artifact":
                    _remove_staged(self.folder, op.get("local_path"))
            if kept:
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.writelines(kept)
                os.replace(tmp, path)
            else:
                _unlink(path)
        return sent, len(kept)

    def _reject_line(self, line: str, why: str) -> None:
        self._ensure_folder()
        with open(os.path.join(self.folder, "rejected.jsonl"), "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"op": "raw", "line": line, "error": why}) + "\n")


class ReplayResult:
    def __init__(self):
        self.sent = 0  # records delivered
        self.ops = 0
        self.rejected = 0
        self.unavailable: Optional[BaseException] = None

    def __repr__(self) -> str:
        return f"ReplayResult(sent={self.sent}, ops={self.ops}, rejected={self.rejected}, unavailable={self.unavailable!r})"


def _lines(fh) -> Iterator[str]:
    for line in fh:
        line = line.strip()
        if line:
            yield line


def _read_int(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _write_int(path: str, value: int) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(str(value))
    os.replace(tmp, path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_staged(folder: str, local_path: Optional[str]) -> None:
    """Delete a staged artifact copy once delivered (only inside this journal's staged/)."""
    if local_path and os.path.abspath(local_path).startswith(os.path.join(folder, "staged") + os.sep):
        remove_staged_copy(local_path)


def remove_staged_copy(path: str) -> None:
    """Delete a staged file or folder, then its staging folder (`staged/<id>/`) once empty: one
    staging folder may hold several artifacts (a plot and its JSON), each delivered on its own."""
    path = os.path.abspath(path)
    _remove_path(path)
    parent = os.path.dirname(path)
    if os.path.basename(os.path.dirname(parent)) == "staged":
        try:
            os.rmdir(parent)
        except OSError:
            pass


def _remove_path(path: str) -> None:
    """Delete a file or a folder, if it is there (a staged copy the backend moved is not)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:  # a folder (EISDIR; EPERM on macOS), or a file that stays
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
