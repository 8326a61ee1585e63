"""The BatchingLogger against the in-memory backend: batching, order, back-pressure,
flush deadlines, retry, spill to the journal and replay, refused records, counters.

Each test builds its own logger over its own `InMemoryBackend` and journal folder, so
nothing here depends on the run API. Waiting is done with `flush()`, events, or a
poll loop with a generous deadline; nothing asserts on elapsed time.
"""

from __future__ import annotations

import collections
import json
import os
import random
import threading
import time

import pytest

from autolog import config
from autolog.backends.base import BackendUnavailable, retry_after_seconds
from autolog.backends.memory import InMemoryBackend
from autolog.entities import CONTEXT_TAG, Dataset, DatasetInput, RunStart, RunStatus
from autolog.transport.journal import Journal
from autolog.transport import logger as logger_module
from autolog.transport.logger import BatchingLogger, retry_delay

RUN = "a" * 32
OTHER = "b" * 32


class RecordingBackend(InMemoryBackend):
    """The memory backend, also keeping the size of every batch it was sent."""

    def __init__(self, uri="memory:recording"):
        super().__init__(uri)
        self.batch_sizes: list[int] = []

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        super().log_batch(run_id, metrics=metrics, params=params, tags=tags)
        self.batch_sizes.append(len(metrics) + len(params) + len(tags))


class GatedBackend(InMemoryBackend):
    """A backend whose writes hang until the test opens the gate."""

    def __init__(self, uri="memory:gated"):
        super().__init__(uri)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self.entered.set()
        self.gate.wait(60)
        super().log_batch(run_id, metrics=metrics, params=params, tags=tags)


@pytest.fixture
def make_logger(tmp_path):
    made = []

    def make(backend=None, **options):
        backend = backend or InMemoryBackend("memory:test")
        options.setdefault("flush_interval", 0.05)
        options.setdefault("retry_seconds", 2.0)
        journal = Journal(backend.uri, folder=str(tmp_path / f"journal-{len(made)}"))
        logger = BatchingLogger(backend, journal=journal, **options)
        made.append(logger)
        return logger, backend

    yield make
    for logger in made:
        gate = getattr(logger.backend, "gate", None)
        if gate is not None:
            gate.set()
        logger.backend.fail_with = None
        logger.close(timeout=10)


def create(logger, run_id=RUN, name="r"):
    logger.enqueue(("c", RunStart(run_id, "Default", name, 1, None, {})))


def metric(logger, step, run_id=RUN, key="loss"):
    logger.enqueue(("m", run_id, key, float(step), 1_000 + step, step))


def wait_until(predicate, timeout=20.0):
    """Poll `predicate` until true; fail after a generous deadline (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        pause.wait(0.01)


def points(backend, run_id=RUN, key="loss"):
    return backend.metric_history.get((run_id, key), [])


def test_default_flush_interval_is_at_most_one_second(monkeypatch):
    monkeypatch.delenv("AUTOLOG_FLUSH_INTERVAL", raising=False)
    assert config.logger_options()["flush_interval"] <= 1.0
    logger = BatchingLogger(InMemoryBackend("memory:defaults"))
    try:
        assert logger.flush_interval <= 1.0
        assert logger.max_queue_size >= logger.max_batch_size
    finally:
        logger.close(timeout=5)


def test_batches_by_size_without_flush(make_logger):
    logger, backend = make_logger(RecordingBackend(), max_batch_size=100, max_queue_size=10_000, flush_interval=60.0)
    create(logger)
    for step in range(1000):
        metric(logger, step)
    # the worker is woken by the batch size, not by a flush or the (one minute) interval: all
    # but what arrived after its last pass, fewer than a batch, is written without either (how
    # much that is depends on when the worker ran: nothing on a quiet machine, up to 99 on a busy one)
    wait_until(lambda: len(points(backend)) > 1000 - 100)
    assert backend.batch_sizes and max(backend.batch_sizes) <= 100
    assert len(backend.batch_sizes) >= 9
    logger.flush()
    assert len(points(backend)) == 1000 and sum(backend.batch_sizes) == 1000


def test_batches_by_time_without_flush(make_logger):
    logger, backend = make_logger(max_batch_size=5000, flush_interval=0.1)
    create(logger)
    for step in range(3):
        metric(logger, step)
    # three records never fill a batch: the interval alone gets them written
    wait_until(lambda: len(points(backend)) == 3)
    assert logger.stats.written == 4  # the run's creation and three points


def test_enqueue_does_no_io(make_logger):
    logger, backend = make_logger(GatedBackend(), flush_interval=0.01)
    create(logger)
    metric(logger, 0)
    assert backend.entered.wait(20)  # the worker is now stuck inside the backend
    for step in range(1, 5001):
        metric(logger, step)  # returns at once although the backend hangs
    assert logger.pending() >= 5000
    backend.gate.set()
    assert logger.flush(30)
    assert len(points(backend)) == 5001


def test_order_kept_within_each_run(make_logger):
    logger, backend = make_logger(max_batch_size=64, max_queue_size=1000)
    create(logger, RUN)
    create(logger, OTHER)
    for step in range(3000):
        metric(logger, step, RUN)
        metric(logger, step, OTHER)
        if step % 500 == 0:
            logger.enqueue(("t", RUN, "phase", str(step)))
    logger.enqueue(("e", RUN, RunStatus.FINISHED, 5))
    logger.enqueue(("e", OTHER, RunStatus.FAILED, 6))
    assert logger.flush(30)
    for run_id in (RUN, OTHER):
        steps = [m.step for m in points(backend, run_id)]  # in the order the backend received them
        assert steps == list(range(3000))
        calls = [method for method, rid in backend.calls if rid == run_id]
        assert calls[0] == "create_run" and calls[-1] == "end_run"
        assert set(calls[1:-1]) == {"log_batch"}
    assert backend.runs[RUN].tags["phase"] == "2500"  # the last tag set wins
    assert backend.runs[RUN].status == RunStatus.FINISHED
    assert backend.runs[OTHER].status == RunStatus.FAILED


def test_back_pressure_waits_instead_of_dropping(make_logger):
    backend = InMemoryBackend("memory:slow")
    backend.write_delay_s = 0.002
    logger, _ = make_logger(backend, max_batch_size=10, max_queue_size=50)
    create(logger)
    longest = 0
    for step in range(1000):
        metric(logger, step)
        longest = max(longest, len(logger._queue))
    # the queue never grew past its bound: the producer waited for room
    assert longest <= 50
    assert logger.flush(60)
    assert [m.step for m in points(backend)] == list(range(1000))
    stats = logger.snapshot_stats()
    assert stats.dropped == 0 and stats.spilled == 0
    assert stats.written == 1001


def test_flush_honours_its_timeout(make_logger):
    logger, backend = make_logger(GatedBackend())
    create(logger)
    metric(logger, 0)
    assert logger.flush(0.05) is False  # the backend hangs: flush gives up at its deadline
    assert backend.entered.is_set()
    assert points(backend) == []
    backend.gate.set()
    assert logger.flush(30) is True
    assert len(points(backend)) == 1


def test_flush_with_nothing_pending_is_true(make_logger):
    logger, _ = make_logger()
    assert logger.flush(0) is True


def test_retry_with_backoff_then_success(make_logger):
    backend = InMemoryBackend("memory:flaky")
    backend.fail_with = BackendUnavailable("HTTP 503")
    backend.fail_remaining = 3
    logger, _ = make_logger(backend, retry_seconds=30.0)
    create(logger)
    for step in range(10):
        metric(logger, step)
    assert logger.flush(60)
    stats = logger.snapshot_stats()
    assert stats.retried >= 3
    assert stats.spilled == 0 and stats.dropped == 0
    assert [m.step for m in points(backend)] == list(range(10))
    assert not logger.journal.has_pending()


def test_backend_down_spills_then_replays(make_logger, contained_errors):
    backend = InMemoryBackend("memory:outage")
    backend.fail_with = BackendUnavailable("connection refused")
    logger, _ = make_logger(backend, retry_seconds=0.2)
    create(logger)
    logger.enqueue(("p", RUN, "lr", "0.1"))
    for step in range(100):
        metric(logger, step)
    logger.enqueue(("e", RUN, RunStatus.FINISHED, 9))
    assert logger.flush(30)  # spilled counts as done: flush does not hang on a dead backend
    stats = logger.snapshot_stats()
    assert stats.spilled == 103  # creation, param, 100 points, end
    assert stats.written == 0 and stats.dropped == 0
    segments = logger.journal.pending_segments()
    assert segments and all(os.path.getsize(s) > 0 for s in segments)
    assert backend.runs == {}

    # still down: more records go straight to the journal, in order
    for step in range(100, 110):
        metric(logger, step)
    assert logger.flush(30)
    assert logger.snapshot_stats().spilled == 113

    backend.fail_with = None  # the backend is back; the worker's probe replays the journal
    wait_until(lambda: logger.stats.replayed >= 113)
    assert [m.step for m in points(backend)] == list(range(110))
    assert backend.runs[RUN].params == {"lr": "0.1"}
    assert backend.runs[RUN].status == RunStatus.FINISHED
    assert not logger.journal.has_pending()
    # and new records are written directly again
    metric(logger, 110)
    assert logger.flush(30)
    assert len(points(backend)) == 111
    assert logger.stats.dropped == 0
    assert contained_errors == []


def test_a_new_logger_replays_an_older_journal_first(tmp_path, make_logger):
    backend = InMemoryBackend("memory:restart")
    backend.fail_with = BackendUnavailable("down")
    first, _ = make_logger(backend, retry_seconds=0.1)
    create(first)
    for step in range(5):
        metric(first, step)
    first.close(timeout=10)
    assert first.journal.has_pending()

    backend.fail_with = None
    second = BatchingLogger(backend, journal=Journal(backend.uri, folder=first.journal.folder), flush_interval=0.05)
    try:
        metric(second, 5)
        wait_until(lambda: len(points(backend)) == 6)
        assert [m.step for m in points(backend)] == list(range(6))  # the old spill came first
        assert not second.journal.has_pending()
    finally:
        second.close(timeout=10)


def test_permanent_errors_are_kept_not_dropped(make_logger):
    backend = InMemoryBackend("memory:refusing")
    logger, _ = make_logger(backend)
    create(logger)
    assert logger.flush(10)
    backend.fail_with = ValueError("payload refused")
    # a refused batch is cut in halves until each refused record stands alone (one bad record
    # never takes good ones down): 7 points refused every time make 13 calls, 7 rejections
    backend.fail_remaining = 13
    for step in range(7):
        metric(logger, step)
    assert logger.flush(10)
    stats = logger.snapshot_stats()
    assert stats.rejected == 7 and stats.dropped == 0
    rejected = os.path.join(logger.journal.folder, "rejected.jsonl")
    with open(rejected, encoding="utf-8") as fh:
        entries = [json.loads(line) for line in fh]
    assert len(entries) == 7
    assert all(e["op"] == "batch" and e["run_id"] == RUN for e in entries)
    assert sorted(m[3] for e in entries for m in e["metrics"]) == list(range(7))
    assert "payload refused" in entries[0]["error"]
    # later records are written as usual
    metric(logger, 7)
    assert logger.flush(10)
    assert [m.step for m in points(backend)] == [7]


def test_records_of_a_run_whose_creation_was_refused_are_kept(make_logger):
    backend = InMemoryBackend("memory:refused-create")
    backend.fail_with = ValueError("bad experiment")
    backend.fail_remaining = 1
    logger, _ = make_logger(backend)
    create(logger)
    metric(logger, 0)
    assert logger.flush(10)
    stats = logger.snapshot_stats()
    assert stats.rejected == 2 and stats.dropped == 0
    with open(os.path.join(logger.journal.folder, "rejected.jsonl"), encoding="utf-8") as fh:
        ops = [json.loads(line)["op"] for line in fh]
    assert ops == ["create", "batch"]


def test_deferred_work_runs_on_the_worker_in_order(make_logger):
    logger, backend = make_logger()
    create(logger)
    metric(logger, 0)
    seen = {}

    def work():
        seen["thread"] = threading.current_thread().name
        logger.enqueue(("m", RUN, "loss", 1.0, 1001, 1))  # logged from the worker, in place

    logger.enqueue(("x", work))
    metric(logger, 2)
    assert logger.flush(10)
    assert seen["thread"] == "autolog-logger"
    assert [m.step for m in points(backend)] == [0, 1, 2]


def test_deferred_work_is_let_go_once_done_not_at_the_end_of_the_pass(make_logger):
    """What deferred work holds (a model, copies of the data) is freed when the work is done,
    while the rest of its pass goes on: in a loop of short fits a pass spans many fits."""
    import gc
    import weakref

    logger, backend = make_logger()
    create(logger)
    started, release = threading.Event(), threading.Event()

    def first():  # holds the worker until both jobs below are queued: they are then one pass
        started.set()
        release.wait(10)

    class Held:
        pass

    held = Held()
    alive = weakref.ref(held)
    seen = {}

    def holding(data=held):
        seen["ran"] = data is not None

    def after():
        gc.collect()
        seen["alive after it ran"] = alive() is not None

    logger.enqueue(("x", first))
    assert started.wait(10)
    logger.enqueue(("x", holding))
    metric(logger, 0)
    logger.enqueue(("x", after))
    del held, holding
    release.set()
    assert logger.flush(10)
    assert seen == {"ran": True, "alive after it ran": False}
    assert [m.step for m in points(backend)] == [0]


def test_deferred_work_logging_past_a_batch_stays_in_order(make_logger):
    """While deferred work runs, the worker's own records go inline, even when a caller
    thread fills the queue past a batch at the same time."""
    logger, backend = make_logger(max_batch_size=10, max_queue_size=1000)
    create(logger)
    metric(logger, 0)
    started, release = threading.Event(), threading.Event()

    def work():
        started.set()
        release.wait(10)
        for step in range(1, 26):  # more than a batch, from the worker
            logger.enqueue(("m", RUN, "loss", float(step), 1000 + step, step))

    logger.enqueue(("x", work))
    assert started.wait(10)
    for step in range(26, 50):  # the caller keeps logging meanwhile
        metric(logger, step)
    release.set()
    assert logger.flush(10)
    assert [m.step for m in points(backend)] == list(range(50))


def test_without_fork_hooks_every_enqueue_takes_the_checked_path(make_logger, monkeypatch):
    from autolog.transport import logger as logger_module

    monkeypatch.setattr(logger_module, "_CHECK_PID", True)
    logger, backend = make_logger()
    create(logger)
    for step in range(20):
        metric(logger, step)
    assert logger._fast_limit == 0  # the pid is compared on every call
    assert logger.flush(10)
    assert [m.step for m in points(backend)] == list(range(20))


def test_deferred_work_that_fails_is_contained(make_logger, contained_errors):
    logger, backend = make_logger()
    create(logger)

    def broken():
        raise RuntimeError("model writer bug")

    broken.autolog_label = "writing a model"
    logger.enqueue(("x", broken))
    metric(logger, 0)
    assert logger.flush(10)
    assert len(points(backend)) == 1
    assert [(where, type(exc)) for where, exc in contained_errors] == [("writing a model", RuntimeError)]


def test_counters(make_logger):
    logger, backend = make_logger()
    create(logger)
    for step in range(250):
        metric(logger, step)
    logger.enqueue(("e", RUN, RunStatus.FINISHED, 3))
    assert logger.flush(10)
    stats = logger.snapshot_stats().as_dict()
    assert stats == {"enqueued": 252, "written": 252, "retried": 0, "spilled": 0, "rejected": 0,
                     "dropped": 0, "replayed": 0}


def test_chunks_to_the_backend_limits(make_logger):
    from autolog.backends.base import BatchLimits

    backend = RecordingBackend("memory:limits")
    backend.limits = BatchLimits(max_metrics=30, max_params=5, max_tags=5, max_total=40)
    logger, _ = make_logger(backend, max_batch_size=1000)
    create(logger)
    for i in range(12):
        logger.enqueue(("p", RUN, f"p{i}", str(i)))
    for step in range(100):
        metric(logger, step)
    assert logger.flush(10)
    assert max(backend.batch_sizes) <= 40
    assert sum(backend.batch_sizes) == 112
    assert [m.step for m in points(backend)] == list(range(100))
    assert len(backend.runs[RUN].params) == 12


def test_close_with_a_hung_backend_spills_what_is_left(make_logger):
    logger, backend = make_logger(GatedBackend())
    create(logger)
    for step in range(50):
        metric(logger, step)
    assert backend.entered.wait(20)
    ran_on = []

    def late_work():  # deferred work still queued at exit runs on the exiting thread
        ran_on.append(threading.current_thread())
        logger.enqueue(("m", RUN, "late", 1.0, 2_000, 0))

    logger.enqueue(("x", late_work))
    assert logger.close(timeout=0.1) is False  # gave up on the worker at its deadline
    stats = logger.snapshot_stats()
    assert stats.dropped == 0
    assert stats.spilled >= 50
    assert logger.journal.has_pending()
    backend.gate.set()  # the stuck write finishes; the abandoned worker writes nothing more
    replay = Journal(backend.uri, folder=logger.journal.folder).replay(backend)
    assert replay.unavailable is None
    steps = sorted({m.step for m in points(backend)})
    assert steps == list(range(50))
    assert ran_on == [threading.current_thread()]
    assert [m.value for m in points(backend, key="late")] == [1.0]  # what it logged was spilled too
    assert logger._inline is None


def test_a_backend_outage_warns_once(make_logger, caplog):
    import logging

    backend = InMemoryBackend("memory:warn-once")
    backend.fail_with = BackendUnavailable("connection refused")
    logger, _ = make_logger(backend, retry_seconds=0.05)
    with caplog.at_level(logging.WARNING, logger="autolog"):
        create(logger)
        for round_ in range(5):  # five flush cycles while the backend stays down
            for step in range(20):
                metric(logger, round_ * 20 + step)
            assert logger.flush(30)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "not answering" in warnings[0].getMessage() and "memory:warn-once" in warnings[0].getMessage()
    assert logger.snapshot_stats().spilled == 101



class PausingQueue(collections.deque):
    """The logger's queue, pausing the worker right after the pop that empties it, when armed:
    the records taken are then neither in the queue nor yet in the worker's in-flight list.
    `progress` is set when a flush marker is queued (a flush that waits for the worker)."""

    def __init__(self):
        super().__init__()
        self.armed = False
        self.paused = threading.Event()  # the worker is inside the window
        self.release = threading.Event()  # the test lets it go on
        self.progress = threading.Event()

    def popleft(self):
        record = super().popleft()
        if self.armed and not self:
            self.armed = False
            self.paused.set()
            self.release.wait()
        return record

    def append(self, record):
        super().append(record)
        if record[0] == "f":
            self.progress.set()


def test_flush_waits_for_records_the_worker_has_taken_but_not_written(make_logger):
    """Bug 1 of issue 10: between the worker's last pop and its marking the records in flight,
    the queue is empty and the previous in-flight list is done, and flush() said True with
    nothing written. The worker is held in that window; a flush from another thread must then
    wait for the worker (queue its marker) rather than return."""
    logger, backend = make_logger(flush_interval=60.0, max_batch_size=3, max_queue_size=100)
    queue = logger._queue = PausingQueue()
    create(logger)
    assert logger.flush(30)  # the worker runs, and its in-flight list is all done
    queue.armed = True
    for step in range(3):
        metric(logger, step)  # the third fills a batch: the worker wakes and takes all three
    assert queue.paused.wait(30)
    outcome = {}

    def flush_now():
        outcome["flushed"] = logger.flush(30)
        outcome["written_by_then"] = len(points(backend))
        queue.progress.set()  # flush returned without waiting for the worker

    flusher = threading.Thread(target=flush_now)
    flusher.start()
    assert queue.progress.wait(30)  # flush returned, or it waits on its marker
    queue.release.set()
    flusher.join(30)
    assert outcome == {"flushed": True, "written_by_then": 3}


# -- the retry schedule (bug 2 of issue 10) ----------------------------------------------------
def test_the_retry_schedule_backs_off_exponentially_to_a_cap_and_stays_there():
    low = [retry_delay(n, rand=lambda: 0.0) for n in range(60)]
    high = [retry_delay(n, rand=lambda: 1.0) for n in range(60)]
    assert low[0] == pytest.approx(0.025) and high[0] == pytest.approx(0.05)
    for n in range(1, 60):  # each ceiling twice the last until the cap; never back to the start
        assert high[n] == pytest.approx(min(2 * high[n - 1], logger_module._BACKOFF_CAP_S))
        assert low[n] >= low[n - 1]
    assert high[-1] == logger_module._BACKOFF_CAP_S
    assert min(low[20:]) == pytest.approx(logger_module._BACKOFF_CAP_S / 2)  # capped, not cycling


def test_the_retry_schedule_is_jittered_within_its_bounds():
    rng = random.Random(7)
    for attempt in range(12):
        ceiling = min(logger_module._BACKOFF_CAP_S, logger_module._BACKOFF_FIRST_S * 2 ** attempt)
        delays = {retry_delay(attempt, rand=rng.random) for _ in range(50)}
        assert len(delays) > 1  # two loggers that failed together do not retry together
        assert all(ceiling / 2 <= d <= ceiling for d in delays)


def test_the_retry_schedule_takes_what_the_backend_asked_for():
    assert retry_delay(0, retry_after=3.0) == 3.0
    assert retry_delay(9, retry_after=0.0) == 0.0
    assert retry_delay(2, retry_after=-1.0) == 0.0


def test_retry_after_header_values():
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds("-5") == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("") is None
    assert retry_after_seconds("soon") is None
    # an HTTP date: seconds from `now`
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412450.0) == 30.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412500.0) == 0.0


class PauseRecordingLogger(BatchingLogger):
    """Keeps the waits between retries instead of sleeping them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pauses: list[float] = []

    def _pause(self, seconds):
        self.pauses.append(seconds)


def test_the_logger_waits_what_the_backend_asks_for(tmp_path):
    backend = InMemoryBackend("memory:retry-after")
    backend.fail_with = BackendUnavailable("HTTP 429", retry_after=1.5)
    backend.fail_remaining = 3
    logger = PauseRecordingLogger(backend, journal=Journal(backend.uri, folder=str(tmp_path / "j")),
                                  flush_interval=0.05, retry_seconds=30.0)
    try:
        create(logger)
        metric(logger, 0)
        assert logger.flush(30)
        assert logger.pauses == [1.5, 1.5, 1.5]
        assert logger.snapshot_stats().spilled == 0
        assert [m.step for m in points(backend)] == [0]
    finally:
        logger.close(timeout=10)


def test_the_logger_backs_off_without_retry_after(tmp_path):
    backend = InMemoryBackend("memory:backoff")
    backend.fail_with = BackendUnavailable("HTTP 503")
    backend.fail_remaining = 8
    logger = PauseRecordingLogger(backend, journal=Journal(backend.uri, folder=str(tmp_path / "j")),
                                  flush_interval=0.05, retry_seconds=600.0)
    try:
        create(logger)
        assert logger.flush(30)
        assert len(logger.pauses) == 8
        for attempt, pause in enumerate(logger.pauses):
            ceiling = min(logger_module._BACKOFF_CAP_S, logger_module._BACKOFF_FIRST_S * 2 ** attempt)
            assert ceiling / 2 <= pause <= ceiling
        assert "create_run" in [method for method, _ in backend.calls]
    finally:
        logger.close(timeout=10)


def test_a_retry_after_past_the_deadline_spills_and_probes_no_sooner(tmp_path):
    backend = InMemoryBackend("memory:retry-after-long")
    backend.fail_with = BackendUnavailable("HTTP 503", retry_after=120.0)
    logger = PauseRecordingLogger(backend, journal=Journal(backend.uri, folder=str(tmp_path / "j")),
                                  flush_interval=0.05, retry_seconds=5.0)
    try:
        before = time.monotonic()
        create(logger)
        assert logger.flush(30)
        assert logger.pauses == []  # not waited for on the worker: past the retry deadline
        assert logger.snapshot_stats().spilled == 1
        assert logger._down and logger._next_probe >= before + 120.0
    finally:
        backend.fail_with = None
        logger.close(timeout=10)


# -- dataset inputs: the "i" record ------------------------------------------------------------
def dataset_inputs(*names):
    return tuple(DatasetInput(Dataset(name, f"{index:08x}", "code", '{"tags": {}}', None, '{"num_rows": 3}'),
                              {CONTEXT_TAG: "train"}) for index, name in enumerate(names))


def test_dataset_inputs_are_written_in_order_with_the_runs_records(make_logger):
    logger, backend = make_logger()
    create(logger)
    metric(logger, 0)
    logger.enqueue(("i", RUN, dataset_inputs("X_train", "X_test")))
    logger.enqueue(("e", RUN, RunStatus.FINISHED, 5))
    assert logger.flush(10)
    assert [i.dataset.name for i in backend.runs[RUN].inputs] == ["X_train", "X_test"]
    assert [m for m, rid in backend.calls if rid == RUN] == ["create_run", "log_batch", "log_inputs", "end_run"]
    assert logger.snapshot_stats().written == 5  # creation, a point, two datasets, the end


def test_dataset_inputs_spilled_while_the_backend_is_down_are_replayed(make_logger, contained_errors):
    backend = InMemoryBackend("memory:inputs-outage")
    backend.fail_with = BackendUnavailable("connection refused")
    logger, _ = make_logger(backend, retry_seconds=0.1)
    create(logger)
    logger.enqueue(("i", RUN, dataset_inputs("X_train")))
    assert logger.flush(30)
    assert logger.snapshot_stats().spilled == 2
    with open(logger.journal.pending_segments()[0], encoding="utf-8") as fh:
        ops = [json.loads(line) for line in fh]
    assert [op["op"] for op in ops] == ["create", "inputs"]
    assert ops[1]["datasets"][0]["name"] == "X_train" and ops[1]["datasets"][0]["tags"] == {CONTEXT_TAG: "train"}
    backend.fail_with = None  # back: the worker's probe replays the journal
    wait_until(lambda: logger.stats.replayed >= 2)
    assert backend.runs[RUN].inputs == list(dataset_inputs("X_train"))
    assert contained_errors == []


def test_dataset_inputs_still_queued_at_a_hung_exit_are_spilled(make_logger):
    logger, backend = make_logger(GatedBackend())
    create(logger)
    metric(logger, 0)
    assert backend.entered.wait(20)  # the worker hangs inside the backend
    logger.enqueue(("i", RUN, dataset_inputs("X_train")))
    assert logger.close(timeout=0.1) is False
    backend.gate.set()
    Journal(backend.uri, folder=logger.journal.folder).replay(backend)
    assert [i.dataset.name for i in backend.runs[RUN].inputs] == ["X_train"]


def test_a_backend_without_datasets_is_warned_about_once(make_logger, caplog):
    import logging

    class NoDatasets(InMemoryBackend):
        def log_inputs(self, run_id, datasets):
            raise NotImplementedError

    logger, backend = make_logger(NoDatasets("memory:no-datasets"))
    create(logger)
    with caplog.at_level(logging.WARNING, logger="autolog"):
        for _ in range(3):
            logger.enqueue(("i", RUN, dataset_inputs("X_train")))
        metric(logger, 0)
        assert logger.flush(10)
    assert len([r for r in caplog.records if "does not store datasets" in r.getMessage()]) == 1
    assert len(points(backend)) == 1  # the rest goes on
    assert logger.snapshot_stats().rejected == 0
