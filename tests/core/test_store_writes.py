"""The logger's worker writing into the local store (issue 18): the logger's own staged
files are moved into the store, not copied; the writes of one worker pass share one
transaction, and that never costs a good record: a refused one is undone and set aside
alone, a commit that fails sends each write again on its own.

Real SQLite files in tmp; the store's statements are counted through SQLite's trace hook.
Waiting is done with `flush()`; nothing asserts on elapsed time.
"""

from __future__ import annotations

import collections
import json
import os
import sqlite3

import pytest

import autolog
from autolog.backends.base import BackendUnavailable
from autolog.backends.local import LocalStore
from autolog.entities import RunStart, RunStatus
from autolog.transport.journal import Journal
from autolog.transport.logger import BatchingLogger, new_staging_dir

RUN = "a" * 32


@pytest.fixture
def statements(monkeypatch):
    """Counts of the SQL statements every connection opened from now on runs, by first words."""
    counts: collections.Counter = collections.Counter()
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(lambda sql: counts.update([" ".join(sql.split()[:2]).upper()]))
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    return counts


@pytest.fixture
def make_logger(tmp_path):
    made = []

    def make(**options):
        store = LocalStore(str(tmp_path / "store"))
        options.setdefault("flush_interval", 60.0)  # one pass per flush: the test decides
        options.setdefault("retry_seconds", 2.0)
        logger = BatchingLogger(store, journal=Journal(store.uri, folder=str(tmp_path / "journal")), **options)
        made.append(logger)
        return logger, store

    yield make
    for logger in made:
        logger.close(timeout=10)
        logger.backend.shutdown()


def _stage(logger, name: str, data: bytes) -> str:
    path = os.path.join(new_staging_dir(logger), name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def _run_records(logger, run_id=RUN, value="0.1"):
    logger.enqueue(("c", RunStart(run_id, "Default", "r", 1, None, {})))
    logger.enqueue(("p", run_id, "lr", value))
    for step in range(5):
        logger.enqueue(("m", run_id, "loss", 1.0 / (step + 1), 1_000 + step, step))
    logger.enqueue(("t", run_id, "kind", "test"))


def test_a_staged_file_and_folder_are_moved_into_the_store(make_logger):
    logger, store = make_logger()
    _run_records(logger)
    plot = _stage(logger, "plot.png", b"png" * 100)
    model = os.path.join(new_staging_dir(logger), "model")
    os.makedirs(os.path.join(model, "data"))
    with open(os.path.join(model, "data", "model.pkl"), "wb") as fh:
        fh.write(b"\1" * 500)
    inodes = os.stat(plot).st_ino, os.stat(os.path.join(model, "data", "model.pkl")).st_ino
    logger.enqueue(("a", RUN, plot, None, True))
    logger.enqueue(("a", RUN, model, "model", True))
    logger.enqueue(("e", RUN, RunStatus.FINISHED, 2))
    assert logger.flush(30)

    run_dir = store.get_run(RUN).artifact_uri
    assert (os.stat(os.path.join(run_dir, "plot.png")).st_ino,
            os.stat(os.path.join(run_dir, "model", "data", "model.pkl")).st_ino) == inodes  # moved, not copied
    assert os.listdir(os.path.join(logger.journal.folder, "staged")) == []  # the staging folders are gone
    assert [a.path for a in store.list_artifacts(RUN)] == ["model", "plot.png"]
    assert logger.stats.written == 1 + 1 + 5 + 1 + 2 + 1 and logger.stats.spilled == 0


def test_the_writes_of_one_pass_are_one_transaction(make_logger, statements):
    logger, store = make_logger()
    logger.enqueue(("c", RunStart("0" * 32, "Default", "first", 1, None, {})))
    assert logger.flush(30)  # the store is made (its schema has transactions of its own)
    statements.clear()
    _run_records(logger)
    logger.enqueue(("a", RUN, _stage(logger, "plot.png", b"png"), None, True))
    logger.enqueue(("i", RUN, ()))
    logger.enqueue(("e", RUN, RunStatus.FINISHED, 2))
    assert logger.flush(30)
    # creation, params, metrics, tags, an artifact and the end: one commit, each write in a savepoint
    assert (statements["BEGIN IMMEDIATE"], statements["COMMIT"]) == (1, 1)
    assert statements["SAVEPOINT AUTOLOG_WRITE"] == statements["RELEASE AUTOLOG_WRITE"] >= 4
    run = store.get_run(RUN)
    assert (run.status, run.params, run.tags["kind"]) == (RunStatus.FINISHED, {"lr": "0.1"}, "test")


def test_deferred_work_and_a_flush_commit_what_came_before(make_logger, statements):
    logger, store = make_logger()
    reader = LocalStore(store.root)
    seen = []
    logger.enqueue(("c", RunStart(RUN, "Default", "r", 1, None, {})))
    # deferred work may take long: what came before it is stored before it runs
    logger.enqueue(("x", lambda: seen.append(reader.get_run(RUN).run_name)))
    logger.enqueue(("e", RUN, RunStatus.FINISHED, 2))
    assert logger.flush(30)
    assert seen == ["r"] and reader.get_run(RUN).status == RunStatus.FINISHED
    reader.shutdown()


def test_what_deferred_work_logs_is_committed_with_what_follows_it(make_logger, statements):
    logger, store = make_logger()
    logger.enqueue(("c", RunStart("0" * 32, "Default", "first", 1, None, {})))
    assert logger.flush(30)
    statements.clear()
    reader = LocalStore(store.root)
    seen = []

    def first():
        logger.enqueue(("p", RUN, "lr", "0.1"))

    def second():
        # what the first work logged is stored before this one runs, as what came before it
        seen.append(reader.get_run(RUN).params)
        logger.enqueue(("m", RUN, "loss", 0.5, 1_000, 0))

    logger.enqueue(("c", RunStart(RUN, "Default", "r", 1, None, {})))
    logger.enqueue(("x", first))
    logger.enqueue(("x", second))
    logger.enqueue(("t", RUN, "kind", "test"))
    logger.enqueue(("e", RUN, RunStatus.FINISHED, 2))
    assert logger.flush(30)
    assert seen == [{"lr": "0.1"}]
    # the creation (before the first work), its param (before the second), the second's metric
    # with the tag and the end: three commits, not one more for each work's own records
    assert (statements["BEGIN IMMEDIATE"], statements["COMMIT"]) == (3, 3)
    run = reader.get_run(RUN)
    assert (run.status, run.params, run.metrics, run.tags["kind"]) == (RunStatus.FINISHED, {"lr": "0.1"},
                                                                        {"loss": 0.5}, "test")
    reader.shutdown()


def test_a_refused_record_in_a_pass_is_set_aside_alone(make_logger, contained_errors):
    logger, store = make_logger()
    _run_records(logger)
    assert logger.flush(30)
    # one pass: good records around a param that changes its value (refused for good)
    logger.enqueue(("t", RUN, "before", "1"))
    logger.enqueue(("p", RUN, "lr", "0.5"))
    logger.enqueue(("m", RUN, "acc", 0.9, 2_000, 0))
    logger.enqueue(("e", RUN, RunStatus.FINISHED, 2))
    assert logger.flush(30)
    run = store.get_run(RUN)
    assert (run.status, run.params, run.tags["before"], run.metrics["acc"]) == (RunStatus.FINISHED, {"lr": "0.1"}, "1", 0.9)
    assert logger.stats.rejected == 1 and logger.stats.spilled == 0
    with open(os.path.join(logger.journal.folder, "rejected.jsonl"), encoding="utf-8") as fh:
        rejected = [json.loads(line) for line in fh]
    assert [(r["op"], r["params"]) for r in rejected] == [("batch", [["lr", "0.5"]])]


def test_a_failed_commit_sends_each_write_again_and_loses_nothing(make_logger, monkeypatch):
    logger, store = make_logger()
    real_commit = LocalStore.commit_group
    failures = []

    def commit_once_failing(self):
        group = self._groups.group
        if not failures and group is not None and group.open:
            failures.append(1)
            self._conns[__import__("threading").current_thread()].execute("ROLLBACK")  # as SQLite does on a full disk
        real_commit(self)

    monkeypatch.setattr(LocalStore, "commit_group", commit_once_failing)
    _run_records(logger)
    plot = _stage(logger, "plot.png", b"png" * 10)
    logger.enqueue(("a", RUN, plot, None, True))
    logger.enqueue(("e", RUN, RunStatus.FINISHED, 2))
    assert logger.flush(30)
    assert failures == [1]
    run = store.get_run(RUN)
    assert (run.status, run.params, run.tags["kind"]) == (RunStatus.FINISHED, {"lr": "0.1"}, "test")
    assert [m.step for m in store.get_metric_history(RUN, "loss")] == [0, 1, 2, 3, 4]  # once each, not twice
    with open(os.path.join(run.artifact_uri, "plot.png"), "rb") as fh:
        assert fh.read() == b"png" * 10
    assert not os.path.exists(plot)
    stats = logger.stats
    assert (stats.written, stats.spilled, stats.rejected, stats.dropped) == (10, 0, 0, 0)


def test_a_store_down_at_the_commit_spills_the_group_whole(make_logger, monkeypatch):
    logger, store = make_logger(retry_seconds=0.2)

    def down(self):
        self.abort_group()
        raise BackendUnavailable("the autolog store is unavailable: disk I/O error")

    _run_records(logger)
    plot = _stage(logger, "plot.png", b"png")
    logger.enqueue(("a", RUN, plot, None, True))
    monkeypatch.setattr(LocalStore, "commit_group", down)
    monkeypatch.setattr(LocalStore, "log_batch", lambda self, *a, **k: down(self))
    assert logger.flush(30)
    monkeypatch.undo()
    stats = logger.stats
    assert stats.spilled >= 8 and stats.dropped == 0 and stats.rejected == 0
    # the journal holds the run whole, its artifact staged: a replay stores it all
    result = logger.journal.replay(store)
    assert result.unavailable is None and result.rejected == 0
    run = store.get_run(RUN)
    assert (run.params, run.tags["kind"]) == ({"lr": "0.1"}, "test")
    assert [a.path for a in store.list_artifacts(RUN)] == ["plot.png"]


def test_the_worker_makes_the_store_as_it_starts_and_autolog_alone_makes_none(store_dir):
    autolog.autolog()
    try:
        assert not os.path.exists(store_dir)  # no run, no store
        with autolog.start_run():
            pass
        autolog.flush()
        assert os.path.exists(os.path.join(store_dir, "autolog.db"))
    finally:
        autolog.autolog(disable=True)


def test_a_long_backlog_is_committed_batch_by_batch(make_logger, statements):
    logger, store = make_logger(max_batch_size=100, max_queue_size=10_000)
    logger.enqueue(("c", RunStart(RUN, "Default", "r", 1, None, {})))
    assert logger.flush(30)
    statements.clear()
    # one pass over a backlog of 1,000 points (as the worker takes it), here on the test's thread
    logger._process([("m", RUN, "loss", float(step), 1_000 + step, step) for step in range(1000)])
    assert len(store.get_metric_history(RUN, "loss")) == 1000
    assert statements["COMMIT"] == 10  # a group per batch of 100 points, not one transaction for all


def test_a_backend_that_cannot_be_built_has_everything_spilled(tmp_path):
    """The run API's lazy backend raises BackendUnavailable from any attribute while it cannot be
    built (a bad URI, a client library missing): asking it whether it groups writes or moves
    files must not cost the records, they are spilled as every write to it is."""
    from autolog.runs.lifecycle import _LazyBackend

    backend = _LazyBackend("nope://nowhere")
    logger = BatchingLogger(backend, journal=Journal(backend.uri, folder=str(tmp_path / "journal")),
                            flush_interval=60.0, retry_seconds=0.1)
    try:
        _run_records(logger)
        logger.enqueue(("a", RUN, _stage(logger, "plot.png", b"png"), None, True))
        logger.enqueue(("e", RUN, RunStatus.FINISHED, 2))
        assert logger.flush(30)
        stats = logger.stats
        assert (stats.spilled, stats.dropped, stats.rejected, stats.written) == (10, 0, 0, 0)
    finally:
        logger.close(timeout=10)
