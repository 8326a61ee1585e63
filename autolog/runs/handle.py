"""The handle of an active run: what `start_run` returns and every logging call goes through.

An `ActiveRun` turns each logging call into a small record for the BatchingLogger
(autolog/transport/logger.py): the caller does no I/O. Params are remembered per run
so that a repeated key is refused or renamed `KEY.2` by one rule (`log_params`).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from time import time_ns as _time_ns
from typing import Any, Mapping, Optional

from autolog.entities import RunStatus
from autolog.instrument import containment
from autolog.transport.logger import BatchingLogger, new_staging_dir
from autolog.validation import (
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    _valid_keys,
    check_key,
    metric_int,
    metric_value,
    normalize_key,
    value_to_text,
)

log = logging.getLogger("autolog")

TAG_ERROR = "autolog.error"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ActiveRun:
    """A run this process logs into. Returned by `start_run`; a context manager."""

    def __init__(self, run_id: str, run_name: str, experiment_name: str, tracking_uri: str,
                 parent_run_id: Optional[str], owner: str, start_time: int, logger: BatchingLogger):
        self.run_id = run_id
        self.run_name = run_name
        self.experiment_name = experiment_name
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self.owner = owner  # "user", "autolog" (ends with its training call) or "attached"
        self.start_time = start_time
        self.status = RunStatus.RUNNING
        self.end_time: Optional[int] = None
        self.trained_in = False  # a training call already logged into this run
        self._logger = logger
        self._enqueue = logger.enqueue
        self._params: dict[str, str] = {}  # the keys as assigned on the worker, in call order
        self._auto_keys: set = set()  # keys whose value came from automatic logging
        self._user_params: dict[str, str] = {}  # the user's own values, as called
        self._lock = threading.Lock()

    # MLflow code reads `run.info.run_id`, `.experiment_id`, `.artifact_uri`, `.lifecycle_stage`
    @property
    def info(self):
        from autolog.fluent import RunInfo

        return RunInfo(self)

    def __repr__(self) -> str:
        return f"<ActiveRun {self.run_id} name={self.run_name!r} experiment={self.experiment_name!r} status={self.status}>"

    # -- params -------------------------------------------------------------
    def log_param(self, key: str, value: Any, *, normalize: bool = False) -> None:
        self.log_params({key: value}, normalize=normalize)

    def log_params(self, params: Mapping[str, Any], *, normalize: bool = False) -> None:
        """Log params. The rule for a key logged twice with two values (docs/api.md):

        - the first value in the order of the calls keeps the key, whoever logged it;
        - your own `log_param` of a key you logged before with another value: ValueError, at
          the call (params are immutable, as in MLflow);
        - any other later value (autolog's after yours, or yours after autolog's) is logged
          as `KEY.2`, `KEY.3`, ...; yours with one warning naming both values.

        Automatic logging (`normalize=True`) records some params later, on the logger's worker
        (sklearn's, from a snapshot); so that the outcome never depends on when that happens,
        every param is assigned its key on the worker, in the order the calls were made.
        """
        checked = []
        for key, value in params.items():
            key = normalize_key(key) if normalize else check_key(key, "param key")
            checked.append((key, value_to_text(value, MAX_PARAM_VALUE_LENGTH)))
        if not normalize:
            with self._lock:
                for key, text in checked:
                    old = self._user_params.get(key)
                    if old is None and key not in self._auto_keys:
                        old = self._params.get(key)  # a resumed run's params are immutable too
                    if old is not None and old != text:
                        raise ValueError(
                            f"param {key!r} of run {self.run_id} was already logged with value {old!r}; "
                            f"it cannot be changed to {text!r} (params are immutable; log a metric or a tag instead)"
                        )
                for key, text in checked:
                    self._user_params.setdefault(key, text)
        self.defer(lambda: self._assign_params(checked, automatic=normalize))

    def _assign_params(self, checked: list, automatic: bool) -> None:
        """On the worker, in call order: give each param its key (see `log_params`)."""
        fresh = []
        with self._lock:
            for key, text in checked:
                old = self._params.get(key)
                if old == text:
                    continue
                if old is None:
                    self._params[key] = text
                    if automatic:
                        self._auto_keys.add(key)
                    fresh.append((key, text))
                    continue
                n = 2
                while self._params.get(f"{key}.{n}") not in (None, text):
                    n += 1
                if f"{key}.{n}" not in self._params:
                    self._params[f"{key}.{n}"] = text
                    fresh.append((f"{key}.{n}", text))
                if not automatic:
                    containment.warn_once(
                        f"param {key} of {self.run_id}", "param %r of run %s: autolog logged %r for it earlier in "
                        "the run; your value %r is logged as %r", key, self.run_id, old, text, f"{key}.{n}")
        run_id = self.run_id
        for key, text in fresh:
            self._enqueue(("p", run_id, key, text))

    @property
    def params(self) -> dict:
        with self._lock:
            return dict(self._params)

    # -- metrics ------------------------------------------------------------
    def log_metric(self, key: str, value: Any, step: Optional[int] = None, timestamp: Optional[int] = None,
                   *, normalize: bool = False) -> None:
        if key not in _valid_keys:
            key = normalize_key(key) if normalize else check_key(key, "metric key")
        if type(value) is not float:
            value = metric_value(value)
        self._enqueue(("m", self.run_id, key, value,
                       _time_ns() // 1_000_000 if timestamp is None else metric_int(timestamp, "timestamp"),
                       # INT64_MIN <= step <= INT64_MAX, as constants: the hot path
                       step if type(step) is int and -9223372036854775808 <= step <= 9223372036854775807
                       else (0 if step is None else metric_int(step, "step"))))

    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None, timestamp: Optional[int] = None,
                    *, normalize: bool = False) -> None:
        ts = _time_ns() // 1_000_000 if timestamp is None else metric_int(timestamp, "timestamp")
        step = 0 if step is None else metric_int(step, "step")
        if normalize:
            for key, value in metrics.items():
                try:
                    value = metric_value(value)
                except (TypeError, ValueError) as exc:
                    containment.warn_once(f"metric {key}", "metric %r was not logged: %s", key, exc)
                    continue
                self._enqueue(("m", self.run_id, normalize_key(key), value, ts, step))
            return
        records = [("m", self.run_id, check_key(k, "metric key") if k not in _valid_keys else k,
                    v if type(v) is float else metric_value(v), ts, step) for k, v in metrics.items()]
        for record in records:
            self._enqueue(record)

    # -- tags ---------------------------------------------------------------
    def set_tag(self, key: str, value: Any, *, normalize: bool = False) -> None:
        key = normalize_key(key) if normalize else check_key(key, "tag key")
        self._enqueue(("t", self.run_id, key, value_to_text(value, MAX_TAG_VALUE_LENGTH)))

    def set_tags(self, tags: Mapping[str, Any], *, normalize: bool = False) -> None:
        for key, value in tags.items():
            self.set_tag(key, value, normalize=normalize)

    # -- artifacts ----------------------------------------------------------
    def log_artifact(self, local_path: str, artifact_path: Optional[str] = None) -> None:
        """Log a file. A copy is taken now, so the file may change or go away afterwards."""
        if not os.path.isfile(local_path):
            raise FileNotFoundError(f"log_artifact: no file at {local_path!r}")
        self._log_copy(local_path, artifact_path)

    def log_artifacts(self, local_dir: str, artifact_path: Optional[str] = None) -> None:
        """Log the contents of a folder (copied now)."""
        if not os.path.isdir(local_dir):
            raise NotADirectoryError(f"log_artifacts: no folder at {local_dir!r}")
        self._log_copy(local_dir, artifact_path)

    def _log_copy(self, local_path: str, artifact_path: Optional[str]) -> None:
        artifact_path = _check_artifact_path(artifact_path)
        staging = new_staging_dir(self._logger)
        if os.path.isdir(local_path):
            copy = os.path.join(staging, "dir")
            shutil.copytree(local_path, copy, copy_function=_link_or_copy, ignore=_links_leaving(local_path))
        else:
            copy = os.path.join(staging, os.path.basename(local_path))
            _link_or_copy(local_path, copy)
        self._enqueue(("a", self.run_id, copy, artifact_path, True))

    def log_owned_artifact(self, local_path: str, artifact_path: Optional[str] = None) -> None:
        """Log a file or folder that autolog made (in `staging_dir()`); it is deleted once delivered."""
        self._enqueue(("a", self.run_id, local_path, _check_artifact_path(artifact_path), True))

    def register_model(self, artifact_path: str, name: str) -> None:
        """Register the model folder logged at `artifact_path` as a new version of the registered
        model `name`, once that folder is delivered (backends with a model registry: MLflow)."""
        self._enqueue(("r", self.run_id, _check_artifact_path(artifact_path), str(name)))

    def staging_dir(self) -> str:
        """A fresh folder for files the worker will deliver with `log_owned_artifact`."""
        return new_staging_dir(self._logger)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log `text` as the artifact file `artifact_file` (e.g. "summary.txt", "dir/notes.md")."""
        artifact_file = _check_artifact_path(artifact_file)
        staging = self.staging_dir()
        path = os.path.join(staging, os.path.basename(artifact_file))
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        self.log_owned_artifact(path, os.path.dirname(artifact_file) or None)

    def defer(self, work, label: Optional[str] = None, *, holds_bytes: Optional[int] = None) -> None:
        """Run `work()` on the logger's worker, in order with this run's records.

        For what need not happen on the training thread (writing a model from a snapshot,
        metrics and plots computed from copies). Whatever `work` logs is written in its
        place; an exception in it is contained and reported once.

        `holds_bytes` (0 when unknown) marks heavy work that holds copies (a model snapshot,
        the training data): the logger bounds how many such jobs and bytes wait at once, and
        past the bound this call waits for the worker (autolog/transport/logger.py).
        """
        if label:
            try:
                work.autolog_label = label
            except AttributeError:
                pass
        if holds_bytes is not None:
            self._logger.enqueue_heavy(work, holds_bytes)
        else:
            self._enqueue(("x", work))

    # -- life cycle -------------------------------------------------------------
    def end(self, status: str = RunStatus.FINISHED) -> None:
        """End the run, exactly as `autolog.end_run()` does for the active run: it leaves the
        run stack (with any run started above it), the run-end hooks run, the end is recorded.
        Ending a run twice does nothing; a joined (`attach`) run is left, never ended."""
        from autolog.runs.lifecycle import _end

        _end(self, status)

    def _mark_ended(self, status: str) -> bool:
        """Set the status and end time once; False when the run had already ended."""
        with self._lock:
            if self.end_time is not None:
                return False
            self.status = status
            self.end_time = now_ms()
            return True

    def __enter__(self) -> "ActiveRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        status = RunStatus.FINISHED
        if exc_type is not None:
            status = RunStatus.KILLED if issubclass(exc_type, KeyboardInterrupt) else RunStatus.FAILED
            with containment.contained("tagging a failed run"):
                self.set_tag(TAG_ERROR, f"{exc_type.__name__}: {exc}")
        self.end(status)
        return False


def _check_artifact_path(artifact_path: Optional[str]) -> Optional[str]:
    if artifact_path in (None, "", "."):
        return None
    text = str(artifact_path).replace("\\", "/")
    # refused, never silently made relative: an absolute path, a drive, `..` anywhere
    if (text.startswith("/") or (len(text) > 1 and text[1] == ":")
            or any(part == ".." for part in text.split("/"))):
        raise ValueError(f"artifact_path must be relative and stay inside the run: {artifact_path!r}")
    return text.strip("/")


def _links_leaving(root: str):
    """copytree's `ignore`: the symbolic links under `root` whose target lies outside it are
    left out (one warning each), so logging a folder never copies a file from elsewhere."""
    real_root = os.path.realpath(root)

    def ignore(folder: str, names: list) -> set:
        skipped = set()
        for name in names:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                target = os.path.realpath(path)
                if target != real_root and not target.startswith(real_root + os.sep):
                    skipped.add(name)
                    containment.warn_once(f"link leaves {path}", "log_artifacts: %s is a link to %s, outside the "
                                          "logged folder; left out", path, target)
        return skipped

    return ignore


def _link_or_copy(src: str, dst: str) -> str:
    """Copy a file for later delivery; a copy, not a hard link, so later edits do not leak in."""
    return shutil.copy2(src, dst)

