"""Checkpoint capture: a snapshot of a checkpoint file or folder, taken before the framework
writes it again, delivered to the run's `checkpoints/` by the logger's worker.

    capture_checkpoint(run, "ckpt/epoch=3.ckpt", step=3, metrics={"val_loss": 0.2})
    ...
    wait_for_checkpoint("ckpt/last.ckpt")   # before the framework rewrites a file in place

What lands in the run, for a checkpoint named NAME (the file's or the folder's own name):

    checkpoints/NAME         the file, or the folder with its contents
    checkpoints/NAME.json    {"name", "artifact_path", "step", "metrics", "source", "kind",
                              "size_bytes", "captured_at" (ms since the epoch), "integration",
                              "snapshot" (how the copy was made)}

A checkpoint captured again under the same name replaces the earlier one in the store
(as the framework replaced it on disk); distinct names are kept side by side.

## The snapshot, and what it costs the training thread

The caller does only metadata work, whatever the size: one `stat` and, where the
checkpoint is on the filesystem of autolog's staging folder (the spill journal, under
`AUTOLOG_JOURNAL_DIR` or `~/.cache/autolog/journal`), one hard link per file into that
folder. The content is copied on a background thread ("autolog-checkpoints") at once:
a reflink (`FICLONE`: btrfs, XFS, bcachefs, ZFS 2.2) where the filesystem has it, else
an in-kernel copy (`copy_file_range`, then `sendfile`, then a read/write loop; all of
them run without the GIL). A reflink is not taken on the caller: the kernel first writes
back the file's dirty pages, and a checkpoint the framework has just written is all dirty
pages (measured in docs/benchmarks.md, "Checkpoint capture").

The hard link alone is not a snapshot: a framework that rewrites the same file in place
(`torch.save`, Keras, XGBoost and Lightning all open with "wb", which truncates the inode)
changes the linked content too. It keeps the old content only from frameworks that write
a new file and rename it over the old one, or delete old checkpoints. So the copy is
guarded: each file's (inode, size, mtime_ns) is recorded at the capture and compared
with the file the copy read, before and after it; a file changed meanwhile is not
delivered (a torn checkpoint is worse than none): a warning says so, once per
integration. An integration that knows it is about to rewrite a captured path calls
`wait_for_checkpoint(path)` first; that returns at once when the copy is done (the
usual case: a 200 MB copy takes about 0.2 s here, an epoch much longer). The logger's
worker, when it reaches a checkpoint's delivery before its copy is done, waits for it, so
`autolog.flush()` returns with the checkpoints delivered.

At most `MAX_PENDING_COPIES` snapshots are copied or waiting to be copied at once; a
capture beyond that waits until the oldest copy is done (back-pressure, never a drop).

## keep_last

No backend can delete an artifact (the backend protocol has no delete), so `keep_last=K`
holds the snapshots back instead of delivering them: the run keeps the last K checkpoints
captured with `keep_last` (a capture under a name already held replaces it) in the
staging folder, and delivers them when the run ends (any way it ends, also at exit). The
store thus only ever receives the last K, at the cost of seeing them at the end of the
run only; the disk held is at most K snapshots per run. Captures without `keep_last` are
delivered as soon as they are copied.

Nothing is done, and `capture_checkpoint` returns False, when `autolog(log_checkpoints=False)`
(or `AUTOLOG_LOG_CHECKPOINTS=false`) is in effect.

## Files a framework writes during one training call

An integration that learns of checkpoint files by looking (a callback after each epoch, a
wrapper of a save that may be called for the same file more than once) keeps one
`CapturedFiles` per training call: `capture(path)` captures a file when it was written since
its last capture (its inode, size and mtime_ns differ), and `wait()`, before the framework
may write the files again, waits for their copies (`wait_for_checkpoint`).
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
from typing import Any, Mapping, Optional

from autolog.instrument import containment

__all__ = ["capture_checkpoint", "wait_for_checkpoint", "CapturedFiles", "CHECKPOINT_DIR", "MAX_PENDING_COPIES"]

log = logging.getLogger("autolog")

CHECKPOINT_DIR = "checkpoints"
MAX_PENDING_COPIES = 4
_CHUNK = 64 * 1024 * 1024
_LINKS = ".autolog-links"  # the hard links, beside the copy in the snapshot's staging folder
_FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
# a copy call that fails with these says "not here", not "broken": try the next way
_NOT_SUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTTY, errno.EBADF,
                  getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


def capture_checkpoint(run, path: str, *, step: Optional[int] = None, keep_last: Optional[int] = None,
                       metrics: Optional[Mapping[str, float]] = None, integration: str = "") -> bool:
    """Snapshot the checkpoint file or folder at `path` now and deliver it to the run's
    `checkpoints/` from the logger's worker (see the module docstring). True when a snapshot
    was taken; False when `log_checkpoints` is off, or `path` could not be read (warned once)."""
    from autolog.runs import settings

    if not settings().log_checkpoints:
        return False
    if keep_last is not None and (isinstance(keep_last, bool) or int(keep_last) < 1):
        raise ValueError(f"keep_last must be a positive number of checkpoints or None, not {keep_last!r}")
    where = f"{integration or 'autolog'}: capturing checkpoint"
    try:
        snapshot = _Snapshot.take(run, path, step, metrics, integration)
    except FileNotFoundError:
        containment.warn_once(f"{where} missing", "%s: no checkpoint at %r to capture (step %s); not logged",
                              integration or "autolog", path, step)
        return False
    except Exception as exc:  # noqa: BLE001 - called from inside the user's training loop
        containment.report(where, exc)
        return False
    _copier.submit(snapshot)
    if keep_last is None:
        run.defer(snapshot.deliver, label=f"{integration or 'autolog'}: delivering checkpoint {snapshot.name}")
    else:
        _held.hold(run, snapshot, int(keep_last))
    return True


def wait_for_checkpoint(path: str, timeout: Optional[float] = None) -> None:
    """Return once every snapshot of `path` (or of a folder holding it, or of files inside
    it) still being copied is done, or after `timeout` seconds. Call it before the framework
    writes a captured path again; it returns at once when nothing is being copied."""
    _copier.wait_for(os.path.abspath(path), timeout)


class CapturedFiles:
    """The checkpoint files captured during one training call into `run`: a file is captured
    again only once it was written again (see the module docstring)."""

    def __init__(self, run, *, integration: str = "", keep_last: Optional[int] = None):
        self.run = run
        self.integration = integration
        self.keep_last = keep_last
        self._captured: dict = {}  # absolute path -> (inode, size, mtime_ns) at its last capture

    def capture(self, path: str, *, step: Optional[int] = None, metrics: Optional[Mapping[str, float]] = None) -> bool:
        """`capture_checkpoint` of `path` unless it was captured as it is now; False also when
        there is no file at `path` (not written this time)."""
        path = os.path.abspath(path)
        try:
            st = os.stat(path)
        except OSError:
            return False
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._captured.get(path) == key:
            return False
        if not capture_checkpoint(self.run, path, step=step, keep_last=self.keep_last, metrics=metrics,
                                  integration=self.integration):
            return False
        self._captured[path] = key
        return True

    def wait(self, timeout: Optional[float] = None) -> None:
        """Return once the copies of every file captured so far are done (`wait_for_checkpoint`)."""
        for path in list(self._captured):
            wait_for_checkpoint(path, timeout)

    def __len__(self) -> int:
        return len(self._captured)


# -- one snapshot -------------------------------------------------------------------------------
class _Entry:
    """One file of a snapshot: where to read it (the hard link, else the file itself), where to
    copy it, and the (inode, size, mtime_ns) it had at the capture."""

    __slots__ = ("read_from", "rel", "key")

    def __init__(self, read_from: str, rel: str, key: tuple):
        self.read_from, self.rel, self.key = read_from, rel, key


class _Snapshot:
    def __init__(self, run, source: str, name: str, is_dir: bool, staging: str, step, metrics, integration: str):
        self.run = run
        self.source = source
        self.name = name
        self.is_dir = is_dir
        self.staging = staging
        self.dest = os.path.join(staging, name)
        self.step = step
        self.metrics = metrics
        self.integration = integration or "autolog"
        self.captured_at = time.time_ns() // 1_000_000
        self.entries: list[_Entry] = []
        self.dirs: list[str] = []  # folders of a folder checkpoint, empty ones included
        self.done = threading.Event()
        self.problem: Optional[str] = None  # why the copy is not delivered
        self.mechanism = ""
        self.size = 0
        self.discarded = False  # dropped by keep_last: its files go once the copy is done
        self.staging_device = 0

    # on the caller: metadata only
    @classmethod
    def take(cls, run, path: str, step, metrics, integration: str) -> "_Snapshot":
        source = os.path.abspath(os.fspath(path))
        is_dir = os.path.isdir(source)
        if not is_dir and not os.path.exists(source):
            raise FileNotFoundError(source)
        name = os.path.basename(source.rstrip(os.sep)) or "checkpoint"
        step = None if step is None else int(step)
        snapshot = cls(run, source, name, is_dir, run.staging_dir(), step,
                       dict(metrics) if metrics else {}, integration)
        try:
            snapshot._link_files()
        except BaseException:
            shutil.rmtree(snapshot.staging, ignore_errors=True)
            raise
        return snapshot

    def _link_files(self) -> None:
        links = os.path.join(self.staging, _LINKS)
        self.staging_device = os.stat(self.staging).st_dev
        if not self.is_dir:
            self._add(self.source, self.name, links)
            return
        for folder, dirs, files in os.walk(self.source):
            dirs.sort()
            rel_folder = os.path.relpath(folder, self.source)
            rel_folder = "" if rel_folder == "." else rel_folder
            self.dirs.extend(os.path.join(rel_folder, d) for d in dirs)
            for file_name in sorted(files):
                self._add(os.path.join(folder, file_name), os.path.join(rel_folder, file_name), links)

    def _add(self, file_path: str, rel: str, links: str) -> None:
        st = os.stat(file_path)
        link = _hard_link(file_path, os.path.join(links, rel), (st.st_dev, self.staging_device))
        if link is not None:
            st = os.stat(link)  # the inode linked (the path may have been replaced meanwhile)
        self.entries.append(_Entry(link or file_path, rel, _key(st)))

    # on the copier thread
    def copy(self) -> None:
        try:
            if self.is_dir:
                os.makedirs(self.dest, exist_ok=True)
                for rel in self.dirs:
                    os.makedirs(os.path.join(self.dest, rel), exist_ok=True)
            ways = set()
            for entry in self.entries:
                target = self.dest if not self.is_dir else os.path.join(self.dest, entry.rel)
                way, problem = _copy_guarded(entry, target)
                if problem:
                    self.problem = problem
                    break
                ways.add(way)
                self.size += entry.key[1]
            self.mechanism = "+".join(sorted(ways)) or "empty"
        except OSError as exc:
            self.problem = f"it could not be copied: {exc}"
        finally:
            shutil.rmtree(os.path.join(self.staging, _LINKS), ignore_errors=True)
            self.done.set()
            if self.discarded or self.problem:
                shutil.rmtree(self.staging, ignore_errors=True)

    def discard(self) -> None:
        """keep_last dropped this snapshot: remove its files (now, or once its copy is done)."""
        self.discarded = True
        if self.done.is_set():
            _copier.submit_cleanup(self.staging)

    # on the logger's worker
    def deliver(self) -> None:
        _copier.wait_done(self)
        if self.problem:
            containment.warn_once(
                f"{self.integration} checkpoint not logged",
                "%s: checkpoint %s (step %s) is not logged: %s. An integration that rewrites a captured file "
                "in place calls wait_for_checkpoint(path) first; this is said once",
                self.integration, self.source, self.step, self.problem)
            return
        run = self.run
        artifact_path = f"{CHECKPOINT_DIR}/{self.name}"
        run.log_owned_artifact(self.dest, artifact_path if self.is_dir else CHECKPOINT_DIR)
        sidecar = os.path.join(self.staging, self.name + ".json")
        with open(sidecar, "w", encoding="utf-8") as fh:
            json.dump(self.description(artifact_path), fh, indent=2)
        run.log_owned_artifact(sidecar, CHECKPOINT_DIR)

    def description(self, artifact_path: str) -> dict:
        return {
            "name": self.name,
            "artifact_path": artifact_path,
            "step": self.step,
            "metrics": _finite_floats(self.metrics),
            "source": self.source,
            "kind": "folder" if self.is_dir else "file",
            "size_bytes": self.size,
            "captured_at": self.captured_at,
            "integration": self.integration,
            "snapshot": self.mechanism,
        }


def _finite_floats(metrics: Mapping) -> dict:
    out = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
    return out


# -- copying one file ---------------------------------------------------------------------------
# what the filesystems here refused, by (source st_dev, staging st_dev), so that it is asked once
_no_links_between: set = set()
_no_reflink_on: set = set()


def _hard_link(file_path: str, link: str, devices: tuple) -> Optional[str]:
    """A hard link to `file_path` at `link`, or None where it cannot be made: another filesystem
    (remembered per pair of devices), protected_hardlinks, too many links, no links at all."""
    if devices in _no_links_between or not hasattr(os, "link"):
        return None
    try:
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.link(file_path, link)
        return link
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in _NOT_SUPPORTED:
            _no_links_between.add(devices)
        return None


def _copy_guarded(entry: _Entry, target: str) -> tuple[str, Optional[str]]:
    """Copy one file; (how, None), or (how, why it is not delivered) when the file changed
    between the capture and the end of the copy."""
    try:
        src = os.open(entry.read_from, os.O_RDONLY)
    except FileNotFoundError:
        return "", f"{entry.rel} was deleted before it was copied"
    try:
        if _key(os.fstat(src)) != entry.key:
            return "", f"{entry.rel} was rewritten before it was copied"
        os.makedirs(os.path.dirname(target), exist_ok=True)
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            how, copied = _copy_content(src, dst, entry.key[1])
        finally:
            os.close(dst)
        if _key(os.fstat(src)) != entry.key or copied != entry.key[1]:
            return how, f"{entry.rel} was rewritten while it was copied"
        return how, None
    finally:
        os.close(src)


def _key(st: os.stat_result) -> tuple:
    return st.st_ino, st.st_size, st.st_mtime_ns


def _copy_content(src: int, dst: int, size: int) -> tuple[str, int]:
    """Copy `size` bytes from the start of `src`: reflink, else copy_file_range, else sendfile,
    else read/write. Returns (how, bytes copied)."""
    devices = (os.fstat(src).st_dev, os.fstat(dst).st_dev)
    if fcntl is not None and sys.platform.startswith("linux") and devices not in _no_reflink_on:
        try:
            fcntl.ioctl(dst, _FICLONE, src)
            return "reflink", os.fstat(dst).st_size
        except OSError as exc:
            if exc.errno not in _NOT_SUPPORTED:
                raise
            _no_reflink_on.add(devices)
    for how, step in _KERNEL_COPIES:
        if (how, devices) in _no_kernel_copy:
            continue
        copied = 0
        try:
            while copied < size:
                n = step(src, dst, copied, min(_CHUNK, size - copied))
                if n == 0:
                    break  # the file shrank under us: the guard reports it
                copied += n
            return how, copied
        except OSError as exc:
            if exc.errno not in _NOT_SUPPORTED or copied:
                raise
            _no_kernel_copy.add((how, devices))
    copied = 0
    while copied < size:
        data = memoryview(os.pread(src, min(_CHUNK, size - copied), copied))
        if not data:
            break
        copied += len(data)
        while data:
            data = data[os.write(dst, data):]
    return "read/write", copied


def _copy_file_range_step(src: int, dst: int, offset: int, count: int) -> int:
    return os.copy_file_range(src, dst, count, offset, offset)


def _sendfile_step(src: int, dst: int, offset: int, count: int) -> int:
    return os.sendfile(dst, src, offset, count)


# the in-kernel copies this Python has, best first; (way, devices) pairs that refused one
_KERNEL_COPIES = [(how, step) for how, step in (("copy_file_range", _copy_file_range_step), ("sendfile", _sendfile_step))
                  if hasattr(os, how)]
_no_kernel_copy: set = set()


# -- the copier thread --------------------------------------------------------------------------
class _Copier:
    """One daemon thread that copies snapshots in the order they were taken (and removes the
    files of discarded ones). Holds at most MAX_PENDING_COPIES snapshots not yet copied."""

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._jobs: collections.deque = collections.deque()
        self._pending: list[_Snapshot] = []  # submitted, not yet copied
        self._thread: Optional[threading.Thread] = None

    def submit(self, snapshot: _Snapshot) -> None:
        with self._cond:
            while len(self._pending) >= MAX_PENDING_COPIES and self._alive():
                self._cond.wait(0.5)
            self._pending.append(snapshot)
            self._jobs.append(snapshot)
            self._start()
            self._cond.notify_all()

    def submit_cleanup(self, folder: str) -> None:
        with self._cond:
            self._jobs.append(folder)
            self._start()
            self._cond.notify_all()

    def wait_for(self, path: str, timeout: Optional[float]) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            waiting = [s for s in self._pending if _overlaps(s.source, path)]
        for snapshot in waiting:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not snapshot.done.wait(left):
                return

    def wait_done(self, snapshot: _Snapshot) -> None:
        """Wait for `snapshot`'s copy (on the worker); a copier that is gone copies nothing more."""
        while not snapshot.done.wait(1.0):
            with self._cond:
                if not self._alive() and not snapshot.done.is_set():
                    snapshot.problem = snapshot.problem or "the copying thread stopped before it was copied"
                    return

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> None:
        if not self._alive():
            self._thread = containment.background_thread(self._run, "autolog-checkpoints")
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    if not self._cond.wait(30.0):
                        if not self._jobs:  # idle: the thread ends; the next submit starts another
                            self._thread = None
                            return
                job = self._jobs.popleft()
            if isinstance(job, str):
                shutil.rmtree(job, ignore_errors=True)
                continue
            try:
                job.copy()
            except Exception as exc:  # noqa: BLE001 - the thread must survive its own bugs
                job.problem = job.problem or f"copying failed: {exc!r}"
                job.done.set()
                containment.report(f"{job.integration}: copying a checkpoint", exc)
            finally:
                with self._cond:
                    if job in self._pending:
                        self._pending.remove(job)
                    self._cond.notify_all()


def _overlaps(source: str, path: str) -> bool:
    return source == path or path.startswith(source + os.sep) or source.startswith(path + os.sep)


_copier = _Copier()


# -- keep_last: snapshots held until the run ends -------------------------------------------
class _HeldCheckpoints:
    def __init__(self):
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[Any, collections.OrderedDict]] = {}
        self._hooked = False

    def hold(self, run, snapshot: _Snapshot, keep_last: int) -> None:
        self._hook()
        dropped = []
        with self._lock:
            _, held = self._runs.setdefault(run.run_id, (run, collections.OrderedDict()))
            previous = held.pop(snapshot.name, None)
            if previous is not None:
                dropped.append(previous)
            held[snapshot.name] = snapshot
            while len(held) > keep_last:
                dropped.append(held.popitem(last=False)[1])
        for old in dropped:
            old.discard()

    def deliver(self, run) -> None:
        """The run ends: its held snapshots go to the logger, before the run's end record."""
        with self._lock:
            entry = self._runs.pop(run.run_id, None)
        if entry is None:
            return
        for snapshot in entry[1].values():
            run.defer(snapshot.deliver, label=f"{snapshot.integration}: delivering checkpoint {snapshot.name}")

    def deliver_all(self) -> None:
        """At exit: runs that did not end (a helper thread's) still get their checkpoints."""
        with self._lock:
            runs = [run for run, _ in self._runs.values()]
        for run in runs:
            with containment.contained("delivering held checkpoints at exit"):
                self.deliver(run)

    def _hook(self) -> None:
        if self._hooked:
            return
        from autolog.runs import add_run_hooks
        import atexit

        with self._lock:
            if self._hooked:
                return
            self._hooked = True
        add_run_hooks(on_end=self.deliver)
        # registered after the run module's exit hook, so it runs before it (atexit is LIFO)
        atexit.register(self.deliver_all)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._runs = {}  # the parent delivers its own


_held = _HeldCheckpoints()


def _after_fork_in_child() -> None:
    _copier._reset()
    _held._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
