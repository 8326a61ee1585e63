"""The BatchingLogger: the caller enqueues, one worker thread writes to the backend.

The training thread only appends a small tuple to a deque (no I/O, no lock in the
common case). One named daemon worker wakes when `max_batch_size` records are
waiting or every `flush_interval` seconds, coalesces params, metrics and tags per run
into `log_batch` calls cut to the backend's limits, and keeps each run's records in
the order they were logged: a run's creation, its batches, its artifacts and its end
reach the backend in that order.

When the queue holds `max_queue_size` records the caller waits for room
(back-pressure), it is never dropped. A failing write is retried for `retry_seconds`,
with capped exponential backoff and jitter (`retry_delay`), or after the time the
backend asked for (`BackendUnavailable.retry_after`, from HTTP Retry-After); if the
backend stays down the logger spills everything to the journal
(autolog/transport/journal.py) and goes on spilling, probing the backend now and then
(never before the time it asked for), until a replay of the whole journal succeeds;
then it writes directly again.

`flush(timeout)` waits until everything logged before it is written or spilled, and
honours its deadline. At interpreter exit the logger flushes with a bounded timeout
and spills what is left. A forked child gets a fresh, empty logger (the parent's queue
is never sent twice) and, in a multiprocessing worker, flushes before the child exits.

Records are tuples whose first item says what they are:
    ("c", RunStart)                            create a run
    ("p", run_id, key, value)                  param
    ("m", run_id, key, value, timestamp, step) metric
    ("t", run_id, key, value)                  tag
    ("a", run_id, local_path, artifact_path, owned)  artifact (owned: delete after delivery)
    ("e", run_id, status, end_time)            end a run
    ("r", run_id, artifact_path, name)         register a logged model folder in the model registry
    ("i", run_id, dataset_inputs)              datasets the run used (a tuple of DatasetInput)
    ("x", function)                            work to do on the worker (model writing,
                                               metrics computed off the training thread);
                                               what it logs is written in its place
    ("f", event)                               flush marker
"""

from __future__ import annotations

import collections
import logging
import os
import random
import sys
import threading
import time
import uuid
import weakref
from typing import Callable, Optional

from autolog.instrument import containment
from autolog.backends.base import (Backend, BackendError, BackendUnavailable, BatchLimits, CredentialsRefused,
                                   RunNotFound)
from autolog.entities import MetricRecords, Param
from autolog.validation import clean_text, redact_command_tag
from autolog.transport.journal import (
    Journal,
    encode_artifact,
    encode_batch,
    encode_create,
    encode_end,
    encode_inputs,
    encode_register,
    remove_staged_copy,
)

log = logging.getLogger("autolog")

#: the first retry waits about this long; each further one up to twice as long, at most _BACKOFF_CAP_S
_BACKOFF_FIRST_S = 0.05
_BACKOFF_CAP_S = 10.0
_PROBE_FIRST_S = 1.0
_PROBE_MAX_S = 30.0

# marks the worker thread so that patched calls made by a backend never re-enter autolog
worker_thread_local = threading.local()


_jitter = random.SystemRandom()  # not the `random` module's generator: that one is the user's


def retry_delay(attempt: int, retry_after: Optional[float] = None,
                rand: Callable[[], float] = _jitter.random) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first retry) of a write.

    What the backend asked for when it said (`retry_after`, HTTP Retry-After). Otherwise
    capped exponential backoff with jitter: a random point in the upper half of
    min(_BACKOFF_CAP_S, _BACKOFF_FIRST_S * 2**attempt), so that the loggers of many
    processes that failed together do not come back together, and a retry never waits
    less than half the time the previous ceiling allowed.
    """
    if retry_after is not None:
        return max(0.0, float(retry_after))
    ceiling = min(_BACKOFF_CAP_S, _BACKOFF_FIRST_S * 2.0 ** min(attempt, 32))
    return ceiling / 2 + rand() * ceiling / 2


def _done_work() -> None:
    """What a pass keeps in the place of deferred work it has done (`_DONE_WORK`)."""


_DONE_WORK = ("x", _done_work)


def on_worker_thread() -> bool:
    return getattr(worker_thread_local, "is_worker", False)


class LoggerStats:
    __slots__ = ("enqueued", "written", "retried", "spilled", "rejected", "dropped", "replayed")

    def __init__(self, **values: int):
        for name in self.__slots__:
            setattr(self, name, values.get(name, 0))

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return "LoggerStats(" + ", ".join(f"{k}={v}" for k, v in self.as_dict().items()) + ")"


class BatchingLogger:
    def __init__(
        self,
        backend: Backend,
        *,
        max_batch_size: int = 5000,
        flush_interval: float = 0.5,
        max_queue_size: int = 200_000,
        retry_seconds: float = 5.0,
        exit_flush_timeout: float = 10.0,
        journal: Optional[Journal] = None,
        source_tags: Optional[Callable[[], dict]] = None,
        max_deferred_jobs: int = 8,
        max_deferred_bytes: int = 512 * 1048576,
    ):
        if max_batch_size < 1 or max_queue_size < max_batch_size:
            raise ValueError("need 1 <= max_batch_size <= max_queue_size")
        self.backend = backend
        self.max_batch_size = max_batch_size
        self.flush_interval = flush_interval
        self.max_queue_size = max_queue_size
        self.retry_seconds = retry_seconds
        self.exit_flush_timeout = exit_flush_timeout
        self.max_deferred_jobs = max(1, max_deferred_jobs)
        self.max_deferred_bytes = max_deferred_bytes
        self.journal = journal or Journal(backend.uri)
        self._source_tags = source_tags
        self._init_process_state()
        _all_loggers.add(self)

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._space = threading.Condition(threading.Lock())
        self._start_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stop = False
        self._abandoned = False  # exit gave up on the worker; it must not write any more
        # the records the worker took from the queue and `_inflight_pos`, the first of them not
        # yet written; the worker holds `_taking` while it moves records from the queue to this
        # list (they are in neither meanwhile), so that whoever holds it sees them in one place
        self._taking = threading.Lock()
        self._inflight: list = []
        self._inflight_pos = 0
        self._inline: Optional[list] = None  # records logged by deferred work, on the worker
        # the writes the backend holds in its open group (`_begin_group`), stored at its commit:
        # (run_id, op, encode, count, create, split, after) each; None while no group is open.
        # `_group_from`: `_inflight_pos` when the group began (an exit that gives up spills from there)
        self._grouped: Optional[list] = None
        self._group_from: Optional[int] = None
        self._down = False
        self._next_probe = 0.0
        self._probe_interval = _PROBE_FIRST_S
        self._failed_runs: set[str] = set()
        # records neither the backend nor the journal took: counted, reported once at close
        self._loss_lock = threading.Lock()
        self._lost = 0
        self._lost_exc: Optional[BaseException] = None
        self._lost_vital: list = []  # the creations and ends of runs among them, tried again at close
        self._received = 0
        self.stats = LoggerStats()
        self._forked_child = False
        self._finalizer_registered = False
        # heavy deferred work (model snapshots, data copies) waiting or running: jobs and bytes
        self._heavy = threading.Condition(threading.Lock())
        self._heavy_jobs = 0
        self._heavy_bytes = 0
        self.heavy_waits = 0  # how many times a caller waited for room (the bound reached)
        self._set_gate()

    @property
    def max_batch_size(self) -> int:
        return self._max_batch_size

    @max_batch_size.setter
    def max_batch_size(self, value: int) -> None:
        self._max_batch_size = value
        if hasattr(self, "_queue"):
            self._set_gate()

    def _set_gate(self) -> None:
        """Set `_fast_limit`, the one comparison of the common enqueue: below it, an enqueue
        only appends. It is 0, sending every enqueue through the full checks, while there is
        no worker yet, while the worker runs deferred work (whose records go inline), and
        where fork cannot be hooked (the pid is compared on every call instead)."""
        fast = self._thread is not None and self._inline is None and not _CHECK_PID and _held is None
        self._fast_limit = self._max_batch_size - 1 if fast else 0

    # -- the caller's side ---------------------------------------------------
    def enqueue(self, record: tuple) -> None:
        """Hand a record to the worker. O(1), no I/O; waits only when the queue is full."""
        queue = self._queue
        if len(queue) < self._fast_limit:  # the common case: room, and no batch to announce yet
            queue.append(record)
            return
        if _CHECK_PID and self._pid != os.getpid():
            self._after_fork_in_child()
            queue = self._queue
        inline = self._inline
        if inline is not None and on_worker_thread():
            inline.append(record)
            return
        if _held is not None and not on_worker_thread() and threading.get_ident() != _held:
            _hold_until_the_end()
        if len(queue) >= self.max_queue_size:
            self._wait_for_space()
        queue.append(record)
        if self._thread is None:
            self._start()
        if len(queue) >= self.max_batch_size and not self._wake.is_set():
            self._wake.set()

    def enqueue_heavy(self, work: Callable[[], None], nbytes: int) -> None:
        """Deferred work that holds copies (a model snapshot, the training data). At most
        `max_deferred_jobs` such jobs and `max_deferred_bytes` wait at once: past either bound
        the caller (the training thread) waits until the worker finishes one; one job alone
        may exceed the bytes. Never on the worker, nor at exit."""
        nbytes = max(0, int(nbytes))
        if not on_worker_thread() and not _exiting:
            with self._heavy:
                while (self._heavy_jobs and (self._heavy_jobs >= self.max_deferred_jobs
                                             or self._heavy_bytes + nbytes > self.max_deferred_bytes)
                       and not self._abandoned):
                    self.heavy_waits += 1
                    self._wake.set()
                    if self._thread is None or not self._thread.is_alive():
                        self._start()
                    self._heavy.wait(0.1)
                self._heavy_jobs += 1
                self._heavy_bytes += nbytes
        else:
            with self._heavy:
                self._heavy_jobs += 1
                self._heavy_bytes += nbytes
        pid = self._pid

        def heavy_job() -> None:
            try:
                work()
            finally:
                if self._pid == pid:  # not a forked child's copy of the parent's counts
                    with self._heavy:
                        self._heavy_jobs -= 1
                        self._heavy_bytes -= nbytes
                        self._heavy.notify_all()

        label = getattr(work, "autolog_label", None)
        if label:
            heavy_job.autolog_label = label  # type: ignore[attr-defined]
        self.enqueue(("x", heavy_job))

    def _wait_for_space(self) -> None:
        if on_worker_thread() or _exiting:
            # the worker never waits on itself; at exit the few records that end runs go past
            # the bound rather than wait for a worker a hung backend may hold past the exit limit
            return
        self._wake.set()
        with self._space:
            while len(self._queue) >= self.max_queue_size and not self._abandoned:
                if self._thread is None or not self._thread.is_alive():
                    self._start()
                self._space.wait(0.1)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every record enqueued before this call is written or spilled.

        Returns False if `timeout` seconds passed first (the records stay queued).
        """
        if self._pid != os.getpid():
            self._after_fork_in_child()
        if on_worker_thread():
            return True
        if not self._queue and self._settled():
            return True
        done = threading.Event()
        # the marker never waits for room in the queue (one small record past the bound): a
        # flush, and the exit that calls it, keep their deadline while a hung backend holds
        # the worker and the queue is full
        self._queue.append(("f", done))
        if self._thread is None or not self._thread.is_alive():
            self._start()
        self._wake.set()
        return done.wait(timeout)

    def _settled(self) -> bool:
        """Nothing queued, nothing in flight. False while the worker is taking records from the
        queue (it holds `_taking`): then the caller asks the worker instead (a flush marker)."""
        if not self._taking.acquire(blocking=False):
            return False
        try:
            return not self._queue and self._inflight_pos >= len(self._inflight)
        finally:
            self._taking.release()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = False
            thread = containment.background_thread(self._run, "autolog-logger")
            self._thread = thread
            self._set_gate()  # before the worker runs: it alone closes the gate afterwards
            thread.start()
            if self._forked_child and not self._finalizer_registered:
                self._register_child_finalizer()
                from autolog.runs.process import arm_in_forked_child

                arm_in_forked_child()  # it has something to flush now: SIGTERM flushes it

    def snapshot_stats(self) -> LoggerStats:
        stats = LoggerStats(**self.stats.as_dict())
        stats.enqueued = self._received + len(self._queue)
        return stats

    def pending(self) -> int:
        with self._taking:
            return len(self._queue) + max(0, len(self._inflight) - self._inflight_pos)

    # -- the worker ----------------------------------------------------------
    def _run(self) -> None:
        worker_thread_local.is_worker = True
        # build the backend now (a lazy one imports its client library: seconds for mlflow),
        # not at the first write, which for a short script would be during interpreter exit
        with containment.contained("opening the backend"):
            self.backend.limits
            self._prepare_backend()
        if self.journal.has_pending():
            # replay older spills before anything new is sent, and before the first flush marker
            # is answered: a short script after an outage delivers the backlog it found (a probe
            # only after its records were spilled too was cut short by its exit, every time)
            self._down = True
            self._next_probe = 0.0
            with containment.contained("replaying the journal"):
                self._probe()
        passed = time.monotonic()
        while True:
            # the rest of the interval since the last pass: woken earlier only by a full batch,
            # a flush, a caller waiting for room, or close
            self._wake.wait(max(0.0, passed + self.flush_interval - time.monotonic()))
            self._wake.clear()
            if self._abandoned:
                return
            passed = time.monotonic()
            try:
                self._process_queue()
            except Exception as exc:  # noqa: BLE001 - the worker must survive its own bugs
                containment.report("the logger's worker", exc)
            if self._stop and not self._queue:
                return

    def _prepare_backend(self) -> None:
        """Let the backend connect (the local store: make its folder and schema) now, while the
        training call that logged the first record runs; it used to happen at the first write,
        after the call, in the time a short script waits at its end. A backend that cannot be
        reached yet is met again at the first write, retried and spilled as ever."""
        try:
            prepare = getattr(self.backend, "prepare", None)  # a lazy backend is built here
            if prepare is not None:
                prepare()
        except BackendError:
            pass

    def _process_queue(self) -> None:
        """One pass over what is queued. What arrives meanwhile waits for the next pass (the
        worker waits out the flush interval first) unless a full batch is waiting or the logger
        is closing: a writer sends about one request per run per interval, whatever the
        backend's latency (it used to send again at once whatever had arrived during a slow
        request, so its rate followed the server's latency; docs/benchmarks.md)."""
        while self._queue:
            records = []
            queue = self._queue
            limit = self.max_queue_size
            with self._taking:
                while queue and len(records) < limit:
                    records.append(queue.popleft())
                self._inflight, self._inflight_pos = records, 0
            with self._space:
                self._space.notify_all()
            self._process(records, track=True)
            if self._abandoned:
                return
            if len(self._queue) < self.max_batch_size and not self._stop:
                break
        if self._down and time.monotonic() >= self._next_probe:
            self._probe()

    def _process(self, records: list, track: bool = False) -> None:
        """Write `records` in order. With `track`, keep `_inflight_pos` at the first record
        not yet written, so that an exit that gives up on the worker spills from there.

        The writes go to the backend as one group (one transaction in the local store),
        committed before deferred work runs, before a flush marker is answered, and at the
        end: a pass costs one commit, not one per record, and what a killed process loses
        is still only what it had not yet written. What deferred work logged is written in
        its place, in the group begun after it, so it is committed with what follows it (at
        the latest before the next deferred work, as everything before that work is)."""
        owner = self._grouped is None and self._begin_group()
        try:
            self._process_records(records, track, owner)
        finally:
            if owner:
                self._end_group()
        if track and not self._abandoned:
            self._inflight_pos = len(records)

    def _process_records(self, records: list, track: bool, owner: bool) -> None:
        pending: dict[str, list] = {}  # run_id -> [metric records, params, tags]
        size = 0
        max_size = self.max_batch_size
        self._received += len(records)  # less the flush markers and deferred work, below
        # metric points, by far the most records, stay the tuples they were queued as: the
        # backend gets them as one MetricRecords view per run, no object built per point
        last_run, last_metrics = None, None
        index = -1
        while index + 1 < len(records):  # what deferred work logs is put into `records` as it goes
            index += 1
            rec = records[index]
            kind = rec[0]
            if kind == "m":
                if rec[1] is not last_run:
                    last_run = rec[1]
                    batch = pending.get(last_run) or pending.setdefault(last_run, [[], [], []])
                    last_metrics = batch[0]
                last_metrics.append(rec)
                size += 1
                if size < max_size:
                    continue
            elif kind == "p":
                batch = pending.get(rec[1]) or pending.setdefault(rec[1], [[], [], []])
                batch[1].append(Param(rec[2], rec[3]))
                size += 1
            elif kind == "t":
                batch = pending.get(rec[1]) or pending.setdefault(rec[1], [[], [], []])
                batch[2].append((rec[2], rec[3]))
                size += 1
            else:
                if kind in "fx":
                    self._received -= 1
                if self._abandoned:  # exit gave up on the worker and spilled the rest itself
                    return
                if pending:
                    self._send_batches(pending)
                    pending, size = {}, 0
                    last_run = last_metrics = None
                grouped = owner and kind in "xf"
                if grouped:
                    # deferred work may take long, and a flush marker promises what came before
                    # is stored: the group is committed first, and begun again after
                    self._end_group()
                if track:
                    # deferred work is the worker's once it starts it: an exit that gives up
                    # meanwhile must not run it a second time (what it logs is spilled below)
                    self._inflight_pos = index + 1 if kind == "x" else index
                emitted = None
                try:
                    emitted = self._control(rec)
                except Exception as exc:  # noqa: BLE001 - one bad record must not stop the rest
                    containment.report("the logger's worker", exc)
                if kind == "x":
                    # done: what the work holds (a model, copies of the data) is let go now, not
                    # when the pass ends, which in a loop of short fits is many fits later
                    records[index] = rec = _DONE_WORK
                if emitted and not self._splice(records, index, emitted):
                    return
                if self._abandoned:
                    return
                if grouped:
                    self._begin_group()
            if size >= max_size:
                self._send_batches(pending)
                pending, size = {}, 0
                last_run = last_metrics = None
                if owner:
                    # a group holds at most about one batch of points: a long backlog is not one
                    # transaction (the store's lock held throughout, lost whole by a kill)
                    self._end_group()
                if track:
                    self._inflight_pos = index + 1
                if self._abandoned:
                    return
                if owner:
                    self._begin_group()
        if self._abandoned:  # exit gave up on the worker meanwhile and spilled these itself
            return
        if pending:
            self._send_batches(pending)

    def _splice(self, records: list, index: int, emitted: list) -> bool:
        """Put what the deferred work at `records[index]` logged right after it, to be written
        in its place as records of this pass: in the group begun after the work, committed with
        the records that follow (at the next commit: before the next deferred work, a flush
        marker, after a full batch, at the end of the pass), not in a transaction of its own (a
        loop of short fits ran 7 commits a fit where 5 do). In `_inflight` (`records` is it when
        tracked), an exit that gives up on the worker spills them with the rest of the pass.
        False when that exit came first: they are spilled from here."""
        with self._taking:  # an exit that gives up takes `_inflight` under it
            if not self._abandoned:
                records[index + 1:index + 1] = emitted
                self._received += len(emitted)  # counted as records of the pass (the queue's are)
                return True
        self._spill_late(emitted)
        return False

    def _spill_late(self, emitted: list) -> None:
        """Spill what deferred work logged after an exit gave up on the worker (and spilled the
        pass without it): those records are not lost."""
        with containment.contained("keeping deferred work's records at exit"):
            ops, count = _encode_records(emitted, self)
            if ops:
                self._spill(ops, count)

    def _begin_group(self) -> bool:
        """Ask the backend to hold this pass's writes in one group; True if it does."""
        if self._down or self._abandoned:
            return False
        try:
            begin = getattr(self.backend, "begin_group", None)  # a lazy backend that cannot be built raises
            grouped = begin is not None and bool(begin())
        except BackendError:
            return False  # then each write meets the backend on its own: retried, spilled
        except Exception as exc:  # noqa: BLE001 - then each write is stored on its own, as ever
            containment.report("grouping the backend's writes", exc)
            return False
        if grouped:
            self._grouped, self._group_from = [], self._inflight_pos
        return grouped

    def _end_group(self) -> None:
        """Commit the open group. A commit that fails stored none of it: each of its writes is
        sent again on its own, retried and spilled as any write is."""
        entries, self._grouped = self._grouped, None
        if entries is None:
            return
        try:
            self.backend.commit_group()
        except Exception as exc:  # noqa: BLE001
            with containment.contained("dropping the backend's group of writes"):
                self.backend.abort_group()
            log.debug("autolog: committing %d grouped writes failed (%r); sending them one by one",
                      len(entries), exc)
            for run_id, op, encode, count, create, split, after in entries:
                self._send(run_id, op, encode, count, create=create, split=split, after=after)
        else:
            for entry in entries:
                self.stats.written += entry[3]
                if entry[6] is not None:
                    entry[6]()
        finally:
            self._group_from = None

    def _control(self, rec: tuple) -> Optional[list]:
        """Write or do one record other than a param, metric or tag; for deferred work, return
        the records it logged (the caller writes them in its place)."""
        kind = rec[0]
        if kind == "c":
            run = self._complete_run_start(rec[1])
            self._send(run.run_id, lambda: self.backend.create_run(run), lambda: encode_create(run), 1, create=True)
        elif kind == "e":
            _, run_id, status, end_time = rec
            self._send(run_id, lambda: self.backend.end_run(run_id, status, end_time),
                       lambda: encode_end(run_id, status, end_time), 1)
        elif kind == "a":
            self._send_artifact(*rec[1:])
        elif kind == "r":
            self._register(*rec[1:])
        elif kind == "i":
            self._log_inputs(rec[1], rec[2])
        elif kind == "x":
            return self._run_deferred(rec[1])
        elif kind == "f":
            try:
                if not self._down:
                    with containment.contained("flushing the backend"):
                        self.backend.flush()
            finally:
                rec[1].set()
        else:
            containment.report("the logger", ValueError(f"unknown record kind {kind!r}"))
        return None

    def _complete_run_start(self, run):
        """A run's creation as it is written or spilled: with the source tags (the run's own
        win), every text as UTF-8 can store it (a non-UTF-8 byte in argv must not lose the run)."""
        tags = dict(run.tags)
        if self._source_tags is not None:
            with containment.contained("collecting source tags"):
                tags = dict(self._source_tags())
                tags.update(run.tags)
        return type(run)(run.run_id, clean_text(run.experiment_name), clean_text(run.run_name), run.start_time,
                         run.parent_run_id, {k: clean_text(redact_command_tag(k, v)) if isinstance(v, str) else v
                                             for k, v in tags.items()})

    def _collect_inline(self, work: Callable[[], None], label: str) -> list:
        """Run deferred `work`, contained, and return the records it logged: they go to a list
        of their own, not to the queue (the gate is closed meanwhile, so that they take the
        checked path of `enqueue`)."""
        outer = self._inline
        emitted: list = []
        self._inline = emitted
        self._set_gate()
        try:
            # third-party code (a flavor's save may start a process): as a thread of the user's would run it
            with containment.contained(getattr(work, "autolog_label", label)), containment.async_signals_unblocked():
                work()
        finally:
            self._inline = outer
            self._set_gate()
        return emitted

    def _run_deferred(self, work: Callable[[], None]) -> Optional[list]:
        """Run deferred work; return the records it logged, to be written in its place (None
        when there are none, or when they went elsewhere: to the enclosing work's records, or
        to the journal after an exit that gave up on the worker)."""
        outer = self._inline
        emitted = self._collect_inline(work, "deferred logging work")
        if emitted and outer is None and self._abandoned:
            # the exit gave up on the worker while it ran this job: it spilled the records
            # after the job; what the job logged is spilled from here, not lost
            self._spill_late(emitted)
            return None
        if emitted and outer is not None:
            outer.extend(emitted)
            return None
        return emitted or None

    def _send_batches(self, pending: dict) -> None:
        try:
            limits = self.backend.limits
        except Exception:  # noqa: BLE001 - a backend that cannot even say its limits is down
            limits = BatchLimits()
        for run_id, (metric_records, params, tags) in pending.items():
            metrics = MetricRecords(metric_records, offset=2)
            for m_chunk, p_chunk, t_chunk in _chunks(metrics, params, tags, limits):
                self._send_chunk(run_id, m_chunk, p_chunk, t_chunk)

    def _send_chunk(self, run_id: str, metrics, params: list, tags: list) -> None:
        """One `log_batch`. Refused for good, it is cut in halves, each sent the same way, so
        that one bad record is set aside alone (journal's rejected file) and never takes the
        good ones of its batch down with it: about log2(batch) calls per bad record."""
        count = len(metrics) + len(params) + len(tags)

        def split():
            for part in _split_chunk(metrics, params, tags):
                self._send_chunk(run_id, *part)

        self._send(
            run_id,
            lambda: self.backend.log_batch(run_id, metrics=metrics, params=params, tags=tags),
            lambda: encode_batch(run_id, metrics, params, tags),
            count,
            split=split if count > 1 else None,
        )

    def _send_artifact(self, run_id: str, local_path: str, artifact_path: Optional[str], owned: bool) -> None:
        def deliver():
            # a staged copy of the logger's own may be moved into the backend (the local store
            # renames it) rather than copied: it is deleted after delivery anyway
            place = getattr(self.backend, "move_artifact", None) if owned else None
            (place or self.backend.log_artifact)(run_id, local_path, artifact_path)

        def encode():
            path = local_path
            if not owned or not _inside(path, self.journal.folder):
                path = self.journal.stage(local_path)  # the journal keeps its own copy
                if owned:
                    remove_staged_copy(local_path)
            return encode_artifact(run_id, path, artifact_path)

        self._send(run_id, deliver, encode, 1, after=(lambda: remove_staged_copy(local_path)) if owned else None)

    def _register(self, run_id: str, artifact_path: str, name: str) -> None:
        """A model registration goes the way of any record: retried, spilled while the backend
        is down and replayed after the model folder it names."""
        registry = getattr(self.backend, "register_model", None)
        if registry is None:
            _warn_no_registry(self.backend, name)
            return
        self._send(run_id, lambda: registry(run_id, artifact_path, name),
                   lambda: encode_register(run_id, artifact_path, name), 1)

    def _log_inputs(self, run_id: str, datasets: tuple) -> None:
        """Dataset inputs go the way of any record; a backend that does not store them (a
        third party's, from before `log_inputs`) is warned about once, and they are left out."""
        def deliver():
            try:
                self.backend.log_inputs(run_id, datasets)
            except NotImplementedError:
                containment.warn_once(f"no datasets {self.backend.uri}", "the backend %s does not store datasets "
                                      "(log_inputs): the datasets of the runs are not recorded", self.backend.uri)

        self._send(run_id, deliver, lambda: encode_inputs(run_id, datasets), len(datasets))

    def _send(self, run_id: str, op: Callable[[], None], encode: Callable[[], dict], count: int,
              create: bool = False, split: Optional[Callable[[], None]] = None,
              after: Optional[Callable[[], None]] = None) -> None:
        """Write one operation, retrying; spill it when the backend stays down. Refused for
        good, it is handed to `split` (which sends its parts) when given. `after` runs once
        it is stored (in a group: once the group is committed)."""
        if run_id in self._failed_runs:
            self._reject(encode, count, RunNotFound(run_id))
            return
        if self._down:
            self._spill(lambda: [encode()], count)
            return
        deadline = time.monotonic() + self.retry_seconds
        attempt = 0
        while True:
            try:
                op()
            except Exception as exc:  # noqa: BLE001 - sorted below
                if self._grouped is not None:
                    # the write was undone alone; the group's writes are stored before this
                    # one waits for a retry (holding the store's lock) or is split or spilled
                    self._end_group()
                last: BaseException = exc
                if isinstance(exc, CredentialsRefused):
                    break  # asking again now gets the same answer: keep it for later
                if not isinstance(exc, (BackendUnavailable, RunNotFound)):
                    # refused for good: journal it aside
                    if split is not None:
                        split()
                        return
                    if create:
                        self._failed_runs.add(run_id)
                    self._reject(encode, count, exc)
                    return
                # unavailable, or a missing run that another process's logger may create soon
                delay = retry_delay(attempt, getattr(exc, "retry_after", None))
                attempt += 1
                # a wait past the deadline (a long Retry-After included) is not taken: the records
                # are spilled, and the backend is probed again once that wait is over
                if self._stop or self._abandoned or time.monotonic() + delay > deadline:
                    break
                self.stats.retried += 1
                self._pause(delay)
                continue
            if self._grouped is not None:
                self._grouped.append((run_id, op, encode, count, create, split, after))
                return
            self.stats.written += count
            if after is not None:
                after()
            return
        self._mark_down(last)
        self._spill(lambda: [encode()], count)

    def _pause(self, seconds: float) -> None:
        """The worker's wait between two tries of a write (a method, so tests can watch it)."""
        time.sleep(seconds)

    def _mark_down(self, exc: Optional[BaseException]) -> None:
        if not self._down:
            containment.warn_once(
                f"backend down: {self.backend.uri}",
                "the tracking backend %s %s (%s); training goes on, records are kept in %s "
                "and sent when it takes them again (or with `autolog sync`)",
                self.backend.uri,
                "refused the credentials" if isinstance(exc, CredentialsRefused) else "is not answering",
                exc, self.journal.folder,
            )
        self._down = True
        self._probe_interval = _PROBE_FIRST_S
        self._next_probe = time.monotonic() + max(self._probe_interval, _asked_wait(exc))

    def _probe(self) -> None:
        """Try to replay the journal; on success write directly again."""
        try:
            result = self.journal.replay(self.backend)
        except Exception as exc:  # noqa: BLE001
            containment.report("replaying the journal", exc)
            result = None
        # segments still locked by other live processes are theirs to send, not ours to wait for
        if result is not None and result.unavailable is None:
            if result.sent:
                log.info("autolog: the backend %s is back; %d journalled records sent", self.backend.uri, result.sent)
            self.stats.replayed += result.sent
            self._down = False
            return
        if result is not None:
            self.stats.replayed += result.sent
        self._probe_interval = min(_PROBE_MAX_S, self._probe_interval * 2)
        asked = _asked_wait(result.unavailable if result is not None else None)
        self._next_probe = time.monotonic() + max(self._probe_interval, asked)

    def _spill(self, ops, count: int) -> None:
        """Append to the journal: a list of operations, or a function that makes it (encoding
        an artifact copies it into the journal, which may fail as the append does)."""
        try:
            if callable(ops):
                ops = ops()
            self.journal.append(ops)
        except Exception as exc:  # noqa: BLE001 - the journal's disk failed too: the one real loss
            self._lose(ops if isinstance(ops, list) else [], count, exc)
            return
        self.stats.spilled += count

    def _reject(self, op, count: int, exc: BaseException) -> None:
        """Set a record aside for good (`op`: the operation, or a function that makes it)."""
        self.stats.rejected += count
        try:
            if callable(op):
                op = op()
            self.journal._reject(op, exc)
        except Exception as journal_exc:  # noqa: BLE001
            self._lose([op] if isinstance(op, dict) else [], count, journal_exc)

    def _lose(self, ops: list, count: int, exc: BaseException) -> None:
        """Records neither the backend nor the journal took (a full disk under both). Counted,
        at DEBUG each time; one warning with the total when the logger closes (`_report_lost`).
        The runs' creations and ends among them are kept aside, tried again at close: a
        refused write is taken back whole, so the room it found may hold these small ones."""
        with self._loss_lock:
            self.stats.dropped += count
            self._lost += count
            if self._lost_exc is None:
                self._lost_exc = exc
            self._lost_vital.extend(op for op in ops if op.get("op") in ("create", "end"))
        log.debug("autolog: %d records lost: the spill journal %s could not be written (%r)",
                  count, self.journal.folder, exc)

    def _report_lost(self) -> None:
        """At close: the runs' creations and ends lost on the way are tried once more, then one
        warning says how many records were lost in all."""
        with self._loss_lock:
            vital, self._lost_vital = self._lost_vital, []
        if vital:
            try:
                self.journal.append(vital)
            except Exception:  # noqa: BLE001 - still no room: they stay lost, counted below
                pass
            else:
                with self._loss_lock:
                    kept = len(vital)
                    self._lost -= kept
                    self.stats.dropped -= kept
                    self.stats.spilled += kept
        with self._loss_lock:
            lost, exc = self._lost, self._lost_exc
            self._lost, self._lost_exc = 0, None
        if lost:
            containment.warn_once(
                f"records lost {id(self)} {time.monotonic()}",
                "%d records were lost: the tracking backend %s did not take them and the spill journal %s "
                "could not be written either (%s: %s)", lost, self.backend.uri, self.journal.folder,
                type(exc).__name__, exc)

    # -- shutdown, exit and fork ------------------------------------------------
    def close(self, timeout: Optional[float] = None) -> bool:
        """Flush within `timeout`, then stop the worker; spill whatever is left. True if all was written."""
        if self._pid != os.getpid():
            return True
        timeout = self.exit_flush_timeout if timeout is None else timeout
        complete = self.flush(timeout)
        self._stop = True
        self._wake.set()
        if not complete:
            self._abandon_and_spill()
        else:
            thread = self._thread
            if thread is not None and thread.is_alive() and thread is not threading.current_thread():
                thread.join(min(1.0, timeout))
        if not self._down:
            with containment.contained("closing the backend"):
                self.backend.flush()
        with containment.contained("reporting lost records"):
            self._report_lost()
        self.journal.close_segment()
        return complete

    def _abandon_and_spill(self) -> None:
        """The worker did not finish in time (a hung backend): spill its remaining work from here."""
        self._abandoned = True
        with self._taking:  # held only while records move from the queue, never during I/O
            # the worker's open group is not stored yet: spilled too (at least once, as a write
            # in flight is)
            start = self._inflight_pos if self._group_from is None else min(self._group_from, self._inflight_pos)
            leftover = list(self._inflight[start:]) + list(self._queue)
            self._queue.clear()
            self._inflight, self._inflight_pos = [], 0
        self._down = True
        if leftover:
            ops, count = _encode_records(leftover, self)
            if ops:
                self._spill(ops, count)
            containment.warn_once(
                "exit spill",
                "the tracking backend %s did not take everything before exit; %d records were kept in %s "
                "and will be sent by the next autolog process or `autolog sync`",
                self.backend.uri, count, self.journal.folder,
            )

    def _after_fork_in_child(self) -> None:
        journal = self.journal
        self._init_process_state()
        self._forked_child = True
        journal.after_fork_in_child()

    def _register_child_finalizer(self) -> None:
        """A multiprocessing worker leaves through os._exit: flush on its way out."""
        self._finalizer_registered = True
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.Finalize(None, self.close, exitpriority=10)


def _asked_wait(exc: Optional[BaseException]) -> float:
    """The seconds a backend asked us to wait before trying again (HTTP Retry-After), or 0."""
    seconds = getattr(exc, "retry_after", None)
    return float(seconds) if seconds is not None else 0.0


def _chunks(metrics: list, params: list, tags: list, limits):
    """Cut one run's batch to the backend's limits, keeping order within each kind."""
    if (len(metrics) <= limits.max_metrics and len(params) <= limits.max_params
            and len(tags) <= limits.max_tags and len(metrics) + len(params) + len(tags) <= limits.max_total):
        yield metrics, params, tags
        return
    mi = pi = ti = 0
    while mi < len(metrics) or pi < len(params) or ti < len(tags):
        room = limits.max_total
        p_chunk = params[pi: pi + min(limits.max_params, room)]
        room -= len(p_chunk)
        t_chunk = tags[ti: ti + min(limits.max_tags, room)]
        room -= len(t_chunk)
        m_chunk = metrics[mi: mi + min(limits.max_metrics, room)]
        pi += len(p_chunk)
        ti += len(t_chunk)
        mi += len(m_chunk)
        yield m_chunk, p_chunk, t_chunk


def _split_chunk(metrics, params: list, tags: list) -> list[tuple]:
    """Two or three smaller parts of a batch: one per kind when it holds several kinds,
    else the halves of its one kind (order kept within each kind)."""
    kinds = (metrics, params, tags)
    present = [i for i, seq in enumerate(kinds) if len(seq)]
    if len(present) > 1:
        return [tuple(seq if j == i else seq[:0] for j, seq in enumerate(kinds)) for i in present]
    only = present[0]
    half = len(kinds[only]) // 2
    return [tuple(piece if j == only else seq[:0] for j, seq in enumerate(kinds))
            for piece in (kinds[only][:half], kinds[only][half:])]


def _encode_records(records: list, logger: BatchingLogger) -> tuple[list, int]:
    """Records (tuples) as journal operations, for a spill from outside the worker."""
    ops: list = []
    count = 0
    pending: dict[str, list] = {}

    def flush_pending():
        nonlocal count
        for run_id, (metrics, params, tags) in pending.items():
            ops.append(encode_batch(run_id, MetricRecords(metrics, offset=2), params, tags))
            count += len(metrics) + len(params) + len(tags)
        pending.clear()

    for rec in records:
        kind = rec[0]
        if kind in ("m", "p", "t"):
            batch = pending.setdefault(rec[1], [[], [], []])
            if kind == "m":
                batch[0].append(rec)
            elif kind == "p":
                batch[1].append(Param(rec[2], rec[3]))
            else:
                batch[2].append((rec[2], rec[3]))
            continue
        flush_pending()
        if kind == "c":
            ops.append(encode_create(logger._complete_run_start(rec[1])))
            count += 1
        elif kind == "e":
            ops.append(encode_end(rec[1], rec[2], rec[3]))
            count += 1
        elif kind == "a":
            with containment.contained("keeping an artifact at exit"):
                path = rec[2] if _inside(rec[2], logger.journal.folder) else logger.journal.stage(rec[2])
                ops.append(encode_artifact(rec[1], path, rec[3]))
                count += 1
        elif kind == "r":
            if getattr(logger.backend, "register_model", None) is None:
                _warn_no_registry(logger.backend, rec[3])
            else:
                ops.append(encode_register(rec[1], rec[2], rec[3]))
                count += 1
        elif kind == "i":
            ops.append(encode_inputs(rec[1], rec[2]))
            count += len(rec[2])
        elif kind == "x":
            # deferred work (a model to write) runs here, on the exiting thread, in order
            was_worker = on_worker_thread()
            worker_thread_local.is_worker = True
            try:
                emitted = logger._collect_inline(rec[1], "deferred logging work at exit")
            finally:
                worker_thread_local.is_worker = was_worker
            more_ops, more = _encode_records(emitted, logger)
            ops.extend(more_ops)
            count += more
        elif kind == "f":
            rec[1].set()
    flush_pending()
    return ops, count


def _warn_no_registry(backend: Backend, name: str) -> None:
    containment.warn_once(f"no registry {backend.uri}", "registered_model_name=%r is ignored: the backend %s has "
                          "no model registry (use an MLflow tracking URI)", name, backend.uri)


def _inside(path: str, folder: str) -> bool:
    return os.path.abspath(path).startswith(os.path.abspath(folder) + os.sep)


def new_staging_dir(logger: BatchingLogger) -> str:
    """A fresh folder, inside the logger's journal, for files the worker will deliver and delete."""
    path = os.path.join(logger.journal.folder, "staged", uuid.uuid4().hex)
    os.makedirs(path, exist_ok=True)
    return path


# -- every logger of the process: exit and fork -----------------------------------------
_all_loggers: "weakref.WeakSet[BatchingLogger]" = weakref.WeakSet()


_exiting = False


def begin_exit() -> None:
    """The process is ending (atexit, SIGTERM): from now on no enqueue waits for room."""
    global _exiting
    _exiting = True


#: set by a SIGTERM's flush once it has ended the open runs (the ident of its thread): from then
#: on the process is only waiting to end, and other threads that log wait for that end
_held: Optional[int] = None
_the_end = threading.Event()  # never set: a held thread waits until the process ends


def hold_enqueues() -> None:
    """A SIGTERM's flush has ended the open runs: a record logged from now on (a fit the main
    thread went on with) would reach the store half-written (a run left RUNNING, no model), so
    the threads that log it wait until the process ends, which it does once the flush is done.
    Only the calling thread (the flush) and the loggers' workers go on."""
    global _held
    _held = threading.get_ident()
    for logger in list(_all_loggers):
        logger._set_gate()  # every enqueue takes the checked path


def _hold_until_the_end() -> None:
    while True:
        _the_end.wait(1.0)


def exiting() -> bool:
    """Whether the process is ending (`begin_exit`): post-fit work no longer waits for training."""
    return _exiting


def close_all(timeout: Optional[float] = None) -> None:
    for logger in list(_all_loggers):
        with containment.contained("flushing at exit"):
            logger.close(timeout)


def reset_exit_state() -> None:
    """The process is not ending (again): in a forked child, and between tests that ran the exit path."""
    global _exiting, _held
    _exiting = False
    _held = None


def _after_fork_in_child() -> None:
    reset_exit_state()
    for logger in list(_all_loggers):
        logger._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
#: without at-fork hooks, every enqueue compares the pid instead (a system call, ~0.2 us)
_CHECK_PID = not hasattr(os, "register_at_fork")
