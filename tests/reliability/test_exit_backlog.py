"""Exit with a backlog (hole 10): the deferred job the worker is running when the exit gives
up on it runs once, and what it logs is kept; a run spilled at exit keeps its source tags."""

from __future__ import annotations

import threading

import pytest

from autolog.backends.local import LocalStore
from autolog.backends.memory import InMemoryBackend
from autolog.entities import RunStart
from autolog.transport.journal import Journal
from autolog.transport.logger import BatchingLogger
from tests.reliability.faults import figures

pytestmark = pytest.mark.timeout(120)


def make_logger(tmp_path, backend, **options):
    return BatchingLogger(backend, journal=Journal(backend.uri, folder=str(tmp_path / "journal")),
                          flush_interval=0.05, **options)


def replay(tmp_path):
    store = LocalStore(str(tmp_path / "replayed"))
    Journal("replay", folder=str(tmp_path / "journal")).replay(store)
    return store


def test_the_deferred_job_in_flight_at_exit_runs_once(tmp_path):
    logger = make_logger(tmp_path, InMemoryBackend("memory:backlog"))
    logger.enqueue(("c", RunStart("r1", "Default", "fits", 0, None, {})))
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow_model_job():  # a model written off the training thread, slower than the exit limit
        calls.append(threading.current_thread().name)
        started.set()
        release.wait(30)
        logger.enqueue(("p", "r1", "model_written", "yes"))

    logger.enqueue(("x", slow_model_job))
    for i in range(100):  # the fits queued after it
        logger.enqueue(("m", "r1", "score", float(i), 0, i))
    assert started.wait(30)
    complete = logger.close(timeout=0.5)  # the exit gives up on the worker
    release.set()
    assert logger._thread is not None
    logger._thread.join(30)
    logger.journal.close_segment()  # what the end of the process does to the segment it writes
    backend = logger.backend
    written = len(backend.get_metric_history("r1", "score"))
    Journal("replay", folder=str(tmp_path / "journal")).replay(backend)  # as the next process does
    points = len(backend.get_metric_history("r1", "score"))
    params = backend.get_run("r1").params
    report = (f"job ran {len(calls)} time(s) on {calls}; points {figures(100, points)} "
              f"({written} before the exit, the rest replayed); params {params}")
    assert complete is False, report
    assert len(calls) == 1, report
    assert points == 100, report
    assert params.get("model_written") == "yes", report


class HangingBackend(InMemoryBackend):
    def __init__(self, uri):
        super().__init__(uri)
        self.gate = threading.Event()

    def create_run(self, run):
        self.gate.wait(30)
        super().create_run(run)


def test_a_run_spilled_at_exit_keeps_its_source_tags(tmp_path):
    backend = HangingBackend("memory:hanging")
    logger = make_logger(tmp_path, backend, source_tags=lambda: {"autolog.source.name": "train.py"})
    logger.enqueue(("c", RunStart("r0", "Default", "first", 0, None, {})))  # holds the worker
    logger.flush(0.2)
    logger.enqueue(("c", RunStart("r1", "Default", "spilled", 0, None, {"mine": "1"})))
    logger.enqueue(("m", "r1", "loss", 0.5, 0, 0))
    assert logger.close(timeout=0.5) is False
    backend.gate.set()
    run = replay(tmp_path).get_run("r1")
    assert run.tags.get("autolog.source.name") == "train.py" and run.tags.get("mine") == "1", run.tags
