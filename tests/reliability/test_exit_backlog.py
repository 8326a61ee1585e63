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


class EndHangsStore(LocalStore):
    """A local store whose end of a run hangs until released (a disk that stopped answering)."""

    def __init__(self, uri):
        super().__init__(uri)
        self.gate, self.hanging = threading.Event(), threading.Event()

    def end_run(self, run_id, status, end_time):
        self.hanging.set()
        self.gate.wait(30)
        super().end_run(run_id, status, end_time)


def test_what_deferred_work_logged_in_the_open_group_is_spilled_when_the_exit_gives_up(tmp_path):
    import json
    import os

    run_id = "r" * 32
    store = EndHangsStore(str(tmp_path / "store"))
    logger = make_logger(tmp_path, store)
    logger.enqueue(("c", RunStart(run_id, "Default", "fit", 0, None, {})))
    # the job's param is written in the group begun after the job, with the end that hangs: that
    # group is not committed while the worker hangs (nor ever, if the process then ends)
    logger.enqueue(("x", lambda: logger.enqueue(("p", run_id, "lr", "0.1"))))
    logger.enqueue(("e", run_id, "FINISHED", 1))
    assert store.hanging.wait(30)
    assert logger.close(timeout=0.5) is False  # the exit gives up on the worker
    reader = LocalStore(store.root)  # what is committed, as the next process finds it
    stored = reader.get_run(run_id)
    spilled = []
    for name in sorted(os.listdir(tmp_path / "journal")):
        if name.startswith("segment-"):
            with open(tmp_path / "journal" / name, encoding="utf-8") as fh:
                spilled += [json.loads(line) for line in fh if line.strip()]
    store.gate.set()
    logger._thread.join(30)
    reader.shutdown()
    store.shutdown()
    spilled_params = [p for op in spilled if op["op"] == "batch" for p in op["params"]]
    assert stored.params == {"lr": "0.1"} or spilled_params == [["lr", "0.1"]], (stored.params, spilled)
    assert stored.status == "FINISHED" or [op["op"] for op in spilled][-1:] == ["end"], spilled
