"""The embedded SQLite store (autolog/backends/local.py), through the Backend protocol.

Real SQLite files in tmp, real processes for the concurrency test; no mocks.
"""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

import autolog
from autolog.backends import BackendError, BackendUnavailable, RunNotFound, get_backend
from autolog.backends import local as local_module
from autolog.backends.local import SCHEMA_VERSION, LocalStore
from autolog.entities import CONTEXT_TAG, Dataset, DatasetInput, Metric, Param, RunStart, RunStatus


def _now() -> int:
    return int(time.time() * 1000)


def _start(store: LocalStore, run_id: str, experiment: str = "Default", name: str = "run",
           parent: str | None = None, start: int | None = None, tags: dict | None = None) -> None:
    store.create_run(RunStart(run_id, experiment, name, start if start is not None else _now(), parent, tags or {}))


@pytest.fixture
def store(tmp_path) -> LocalStore:
    s = LocalStore(str(tmp_path / "store"))
    yield s
    s.shutdown()


# -- the round trip ---------------------------------------------------------------------------

def test_a_run_round_trips_params_metrics_tags_and_end(store):
    t0 = _now()
    _start(store, "a" * 32, experiment="exp", name="first", start=t0, tags={"origin": "test"})
    store.log_batch(
        "a" * 32,
        metrics=[Metric("loss", 1.0 / (s + 1), t0 + s, s) for s in range(5)] + [Metric("acc", 0.9, t0, 4)],
        params=[Param("lr", "0.1"), Param("depth", "3")],
        tags=[("stage", "train")],
    )
    store.end_run("a" * 32, RunStatus.FINISHED, t0 + 1234)

    run = store.get_run("a" * 32)
    assert (run.run_name, run.experiment_name, run.status) == ("first", "exp", "FINISHED")
    assert (run.start_time, run.end_time, run.duration_ms) == (t0, t0 + 1234, 1234)
    assert run.params == {"lr": "0.1", "depth": "3"}
    assert run.tags == {"origin": "test", "stage": "train"}
    assert run.metrics == {"loss": pytest.approx(0.2), "acc": 0.9}
    history = store.get_metric_history("a" * 32, "loss")
    assert [(m.step, m.value) for m in history] == [(s, pytest.approx(1.0 / (s + 1))) for s in range(5)]
    assert store.metric_keys("a" * 32) == ["acc", "loss"]
    assert os.path.isfile(os.path.join(store.root, "autolog.db"))


def test_last_metric_value_is_the_highest_step_then_the_latest_time(store):
    _start(store, "r1")
    store.log_batch("r1", metrics=[Metric("m", 5.0, 100, 2), Metric("m", 1.0, 200, 1)])
    store.log_batch("r1", metrics=[Metric("m", 7.0, 50, 2)])  # same step, older: not the last
    assert store.get_run("r1").metrics["m"] == 5.0
    store.log_batch("r1", metrics=[Metric("m", 9.0, 300, 2)])  # same step, newer: the last
    assert store.get_run("r1").metrics["m"] == 9.0
    history = store.get_metric_history("r1", "m")
    assert [(m.step, m.timestamp, m.value) for m in history] == [(1, 200, 1.0), (2, 50, 7.0), (2, 100, 5.0), (2, 300, 9.0)]



def test_one_batch_of_interleaved_keys_keeps_each_keys_order_and_last_value(store):
    """Points are packed per key and batch; within a batch the same rules hold."""
    _start(store, "r1")
    store.log_batch("r1", metrics=[
        Metric("a", 1.0, 10, 0), Metric("b", 10.0, 10, 0), Metric("a", 2.0, 11, 3),
        Metric("b", 20.0, 12, 5), Metric("a", 3.0, 11, 3),  # a full tie with the point before: the later wins
        Metric("a", 0.5, 9, 1),
    ])
    assert store.get_run("r1").metrics == {"a": 3.0, "b": 20.0}
    assert [(m.step, m.value) for m in store.get_metric_history("r1", "a")] == [(0, 1.0), (1, 0.5), (3, 2.0), (3, 3.0)]
    assert [m.value for m in store.get_metric_history("r1", "b")] == [10.0, 20.0]


def test_the_loggers_record_view_is_stored_like_a_list_of_metrics(store):
    from autolog.entities import MetricRecords

    _start(store, "r1")
    records = [("m", "r1", "loss", 1.0 / (s + 1), 1000 + s, s) for s in range(100)]
    store.log_batch("r1", metrics=MetricRecords(records, offset=2))
    history = store.get_metric_history("r1", "loss")
    assert history == [Metric("loss", 1.0 / (s + 1), 1000 + s, s) for s in range(100)]


def test_a_step_beyond_64_bits_is_a_clear_error_and_nothing_of_the_batch_is_written(store):
    _start(store, "r1")
    with pytest.raises(BackendError, match="metric 'x' of run r1: a step or timestamp is not a 64-bit integer"):
        store.log_batch("r1", metrics=[Metric("y", 1.0, 1, 0), Metric("x", 1.0, 1, 2**63)], params=[Param("p", "1")])
    run = store.get_run("r1")
    assert run.metrics == {} and run.params == {}

def test_nan_and_infinities_round_trip(store):
    _start(store, "r1")
    values = [math.nan, math.inf, -math.inf, 0.0, -1.5e300]
    store.log_batch("r1", metrics=[Metric("x", v, 1000 + i, i) for i, v in enumerate(values)])
    store.log_batch("r1", metrics=[Metric("last_nan", math.nan, 1, 0), Metric("last_inf", -math.inf, 1, 0)])
    got = [m.value for m in store.get_metric_history("r1", "x")]
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf, 0.0, -1.5e300]
    run = store.get_run("r1")
    assert math.isnan(run.metrics["last_nan"]) and run.metrics["last_inf"] == -math.inf
    assert math.isnan(store.search_runs()[0].metrics["last_nan"])


def test_experiments_default_gets_id_0_and_others_count_up(store):
    _start(store, "r1", experiment="Default")
    _start(store, "r2", experiment="alpha")
    _start(store, "r3", experiment="beta")
    _start(store, "r4", experiment="alpha")
    assert [(e.experiment_id, e.name) for e in store.list_experiments()] == [("0", "Default"), ("1", "alpha"), ("2", "beta")]
    assert store.experiment_by_name("beta").experiment_id == "2"
    assert store.experiment_by_name("nope") is None
    assert store.get_run("r4").experiment_id == "1"


def test_search_runs_filters_and_orders_newest_first(store):
    t0 = _now()
    _start(store, "p", experiment="a", start=t0)
    _start(store, "c1", experiment="a", parent="p", start=t0 + 1)
    _start(store, "c2", experiment="a", parent="p", start=t0 + 2)
    _start(store, "other", experiment="b", start=t0 + 3)
    store.log_batch("c1", params=[Param("k", "v")], metrics=[Metric("m", 1.0, t0, 0)], tags=[("t", "1")])
    store.end_run("c1", "FAILED", t0 + 10)
    store.end_run("p", "FINISHED", t0 + 20)

    assert [r.run_id for r in store.search_runs()] == ["other", "c2", "c1", "p"]
    assert [r.run_id for r in store.search_runs(["a"])] == ["c2", "c1", "p"]
    assert [r.run_id for r in store.search_runs(None, ["failed"])] == ["c1"]
    assert [r.run_id for r in store.search_runs(None, None, "p")] == ["c2", "c1"]
    assert [r.run_id for r in store.search_runs(None, None, None, 2)] == ["other", "c2"]
    assert store.search_runs([]) == [] and store.search_runs(["zzz"]) == []
    c1 = store.search_runs(None, ["FAILED"])[0]
    assert (c1.params, c1.metrics, c1.tags, c1.parent_run_id) == ({"k": "v"}, {"m": 1.0}, {"t": "1"}, "p")
    with pytest.raises(ValueError):
        store.search_runs(None, ["DONE"])


# -- idempotence and refusals -------------------------------------------------------------------

def test_create_run_twice_is_a_no_op(store):
    _start(store, "r1", experiment="exp", name="original", tags={"a": "1"})
    store.log_batch("r1", params=[Param("p", "1")])
    _start(store, "r1", experiment="other", name="replayed", tags={"a": "2"})
    run = store.get_run("r1")
    assert (run.run_name, run.experiment_name, run.tags, run.params) == ("original", "exp", {"a": "1"}, {"p": "1"})
    assert [e.name for e in store.list_experiments()] == ["exp"]


def test_param_relogged_with_its_value_is_fine_another_value_is_an_error(store):
    _start(store, "r1")
    store.log_batch("r1", params=[Param("lr", "0.1")])
    store.log_batch("r1", params=[Param("lr", "0.1"), Param("depth", "3")])
    with pytest.raises(BackendError, match="'lr'.*already logged as '0.1'"):
        store.log_batch("r1", params=[Param("lr", "0.2")], metrics=[Metric("m", 1.0, 1, 0)])
    # the refused batch wrote nothing at all (one transaction per batch)
    assert store.get_run("r1").params == {"lr": "0.1", "depth": "3"}
    assert store.get_metric_history("r1", "m") == []
    with pytest.raises(BackendError, match="twice in one batch"):
        store.log_batch("r1", params=[Param("x", "1"), Param("x", "2")])


def test_tags_are_overwritten(store):
    _start(store, "r1", tags={"t": "old"})
    store.log_batch("r1", tags=[("t", "new")])
    assert store.get_run("r1").tags == {"t": "new"}


def test_writes_to_an_unknown_run_raise_run_not_found(store):
    _start(store, "r1")
    with pytest.raises(RunNotFound):
        store.log_batch("nope", metrics=[Metric("m", 1.0, 1, 0)])
    with pytest.raises(RunNotFound):
        store.end_run("nope", "FINISHED", 1)
    with pytest.raises(RunNotFound):
        store.get_run("nope")
    with pytest.raises(RunNotFound):
        store.get_metric_history("nope", "m")
    with pytest.raises(ValueError, match="unknown run status"):
        store.end_run("r1", "DONE", 1)


def test_a_store_is_made_by_the_first_write_never_by_a_read(tmp_path):
    path = tmp_path / "not-yet"
    store = LocalStore(str(path))
    for read in (store.search_runs, store.list_experiments, lambda: store.get_run("x"), lambda: store.resolve_run_id("x")):
        with pytest.raises(BackendError, match=f"no autolog store at {path}"):
            read()
    assert not path.exists()
    _start(store, "r1")
    assert [r.run_id for r in store.search_runs()] == ["r1"]
    assert LocalStore(f"file://{path}").get_run("r1").run_id == "r1"


def test_a_store_that_cannot_be_created_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = LocalStore(str(blocker / "store"))
    with pytest.raises(BackendUnavailable, match="cannot create the autolog store"):
        _start(store, "r1")


# -- the schema version -------------------------------------------------------------------------

def _set_schema_version(store: LocalStore, version: int) -> None:
    conn = sqlite3.connect(store.db_path)
    with conn:
        conn.execute("UPDATE schema_version SET version = ?", (version,))
    conn.close()


def test_a_newer_schema_version_is_refused_on_open(tmp_path):
    path = str(tmp_path / "store")
    writer = LocalStore(path)
    _start(writer, "r1")
    writer.shutdown()
    _set_schema_version(writer, SCHEMA_VERSION + 1)
    for attempt in (lambda s: s.get_run("r1"), lambda s: _start(s, "r2")):
        with pytest.raises(BackendError, match=f"schema version {SCHEMA_VERSION + 1}, newer .* upgrade autolog"):
            attempt(LocalStore(path))


def test_a_version_with_no_migration_is_refused_on_open(tmp_path):
    path = str(tmp_path / "store")
    writer = LocalStore(path)
    _start(writer, "r1")
    writer.shutdown()
    _set_schema_version(writer, 0)
    with pytest.raises(BackendError, match="older .* no migration"):
        LocalStore(path).search_runs()


# version 1 of the schema, as autolog 0.1.0 development builds wrote it: one row per point
_SCHEMA_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, creation_time INTEGER);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, run_name TEXT, experiment_id INTEGER NOT NULL, status TEXT NOT NULL,
    start_time INTEGER NOT NULL, end_time INTEGER, parent_run_id TEXT, artifact_uri TEXT NOT NULL);
CREATE INDEX runs_by_start_time ON runs (start_time);
CREATE INDEX runs_by_parent ON runs (parent_run_id);
CREATE TABLE params (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)) WITHOUT ROWID;
CREATE TABLE metrics (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, key TEXT NOT NULL, value REAL,
    step INTEGER NOT NULL, timestamp INTEGER NOT NULL);
CREATE INDEX metrics_by_run_key_step ON metrics (run_id, key, step);
CREATE TABLE latest_metrics (run_id TEXT NOT NULL, key TEXT NOT NULL, value REAL, step INTEGER NOT NULL,
    timestamp INTEGER NOT NULL, PRIMARY KEY (run_id, key)) WITHOUT ROWID;
CREATE TABLE tags (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)) WITHOUT ROWID;
CREATE TABLE artifacts (run_id TEXT NOT NULL, path TEXT NOT NULL, is_dir INTEGER NOT NULL, size INTEGER,
    PRIMARY KEY (run_id, path)) WITHOUT ROWID;
INSERT INTO schema_version (version) VALUES (1);
INSERT INTO experiments VALUES (0, 'Default', 1);
INSERT INTO runs VALUES ('r1', 'old-run', 0, 'FINISHED', 1, 9, NULL, 'artifacts/0/r1');
INSERT INTO params VALUES ('r1', 'lr', '0.1');
"""


def test_a_version_1_store_is_migrated_on_open_with_every_point(tmp_path):
    os.makedirs(tmp_path / "store")
    conn = sqlite3.connect(tmp_path / "store" / "autolog.db")
    conn.executescript(_SCHEMA_V1)
    # written out of order, a repeated step, a NaN (NULL in version 1) and an infinity
    rows = [("r1", "loss", 0.5, 2, 20), ("r1", "loss", 1.0, 0, 10), ("r1", "loss", None, 1, 15),
            ("r1", "loss", 0.7, 1, 16), ("r1", "acc", math.inf, 3, 30)]
    conn.executemany("INSERT INTO metrics (run_id, key, value, step, timestamp) VALUES (?, ?, ?, ?, ?)", rows)
    conn.executemany("INSERT INTO latest_metrics VALUES (?, ?, ?, ?, ?)",
                     [("r1", "loss", 0.5, 2, 20), ("r1", "acc", math.inf, 3, 30)])
    conn.commit()
    conn.close()

    store = LocalStore(str(tmp_path / "store"))
    loss = store.get_metric_history("r1", "loss")
    assert [(m.step, m.timestamp) for m in loss] == [(0, 10), (1, 15), (1, 16), (2, 20)]
    assert loss[0].value == 1.0 and math.isnan(loss[1].value) and loss[2:] == [Metric("loss", 0.7, 16, 1),
                                                                                Metric("loss", 0.5, 20, 2)]
    assert store.get_metric_history("r1", "acc") == [Metric("acc", math.inf, 30, 3)]
    run = store.get_run("r1")
    assert run.params == {"lr": "0.1"} and run.metrics == {"loss": 0.5, "acc": math.inf}
    # and the migrated store takes new points after the old ones
    store.log_batch("r1", metrics=[Metric("loss", 0.25, 40, 3)])
    assert [m.value for m in store.get_metric_history("r1", "loss")][-1] == 0.25
    store.shutdown()
    check = sqlite3.connect(tmp_path / "store" / "autolog.db")
    try:
        assert check.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        tables = {name for (name,) in check.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "metrics" not in tables and "metric_chunks" in tables
    finally:
        check.close()


def test_a_foreign_sqlite_file_is_not_taken_for_a_store(tmp_path):
    os.makedirs(tmp_path / "store")
    conn = sqlite3.connect(tmp_path / "store" / "autolog.db")
    conn.execute("CREATE TABLE something (x)")
    conn.commit()
    conn.close()
    with pytest.raises(BackendError, match="is not an autolog store"):
        LocalStore(str(tmp_path / "store")).search_runs()


def test_the_database_is_in_wal_mode_with_the_documented_tables(store):
    _start(store, "r1")
    conn = sqlite3.connect(store.db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"schema_version", "experiments", "runs", "params", "metric_chunks", "latest_metrics", "tags",
                "artifacts"} <= tables
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


# -- busy and locked ------------------------------------------------------------------------------

def test_a_locked_store_raises_backend_unavailable_then_works_again(store, monkeypatch):
    _start(store, "r1")
    monkeypatch.setattr(local_module, "BUSY_TIMEOUT_S", 0.05)
    other = LocalStore(store.root)  # fresh connections, made with the short timeout
    holder = sqlite3.connect(store.db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(BackendUnavailable, match="unavailable"):
            other.log_batch("r1", metrics=[Metric("m", 1.0, 1, 0)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    other.log_batch("r1", metrics=[Metric("m", 1.0, 1, 0)])
    assert store.get_metric_history("r1", "m") == [Metric("m", 1.0, 1, 0)]
    other.shutdown()


def test_a_store_locked_past_the_retries_spills_and_sync_delivers_it(store_dir, tmp_path):
    """The logger treats a locked store as down: records go to the journal, not lost, and
    `autolog sync --to STORE` replays them once the lock is gone."""
    seed = LocalStore(store_dir)
    _start(seed, "seed")  # the store exists
    seed.shutdown()
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import autolog
        from autolog.backends import local
        local.BUSY_TIMEOUT_S = 0.05
        with autolog.start_run("locked-out", experiment="spill") as run:
            autolog.log_param("lr", 0.5)
            for step in range(20):
                autolog.log_metric("loss", 1.0 / (step + 1), step=step)
        autolog.flush()
        print(run.run_id)
    """))
    env = dict(os.environ, AUTOLOG_RETRY_SECONDS="0.2", AUTOLOG_EXIT_FLUSH_TIMEOUT="5")
    holder = sqlite3.connect(os.path.join(store_dir, "autolog.db"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    with pytest.raises(RunNotFound):
        LocalStore(store_dir).get_run(run_id)

    cli = subprocess.run([sys.executable, "-m", "autolog", "sync", "--to", store_dir, "--json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    reader = LocalStore(store_dir)
    run = reader.get_run(run_id)
    assert (run.run_name, run.status, run.params) == ("locked-out", "FINISHED", {"lr": "0.5"})
    assert [m.step for m in reader.get_metric_history(run_id, "loss")] == list(range(20))


# -- artifacts --------------------------------------------------------------------------------------

def test_artifacts_files_and_folders(store, tmp_path):
    _start(store, "r1", experiment="exp")
    (tmp_path / "model.bin").write_bytes(b"\0" * 100)
    folder = tmp_path / "plots"
    (folder / "inner").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "inner" / "b.txt").write_text("bb")
    store.log_artifact("r1", str(tmp_path / "model.bin"))
    store.log_artifact("r1", str(tmp_path / "model.bin"), "models/best")
    store.log_artifact("r1", str(folder), "figures")

    top = store.list_artifacts("r1")
    assert [(a.path, a.is_dir, a.size) for a in top] == [("figures", True, None), ("model.bin", False, 100), ("models", True, None)]
    assert [a.path for a in store.list_artifacts("r1", "figures")] == ["figures/a.txt", "figures/inner"]
    assert [(a.path, a.size) for a in store.list_artifacts("r1", "figures/inner")] == [("figures/inner/b.txt", 2)]
    assert store.list_artifacts("r1", "nope") == []
    local = store.download_artifacts("r1", "figures/inner/b.txt", str(tmp_path / "dst"))
    with open(local) as fh:
        assert fh.read() == "bb"
    assert os.path.isdir(store.download_artifacts("r1", "models", str(tmp_path / "dst")))
    run = store.get_run("r1")
    assert run.artifact_uri == os.path.join(store.root, "artifacts", run.experiment_id, "r1")
    with pytest.raises(FileNotFoundError):
        store.download_artifacts("r1", "missing.txt", str(tmp_path))


@pytest.mark.parametrize("method", ["log_artifact", "move_artifact"])
def test_artifact_paths_may_not_leave_the_run_folder(store, tmp_path, method):
    _start(store, "r1")
    (tmp_path / "f.txt").write_text("x")
    log = getattr(store, method)
    for bad in ("../escape", "/abs", "a/../../b"):
        with pytest.raises(BackendError, match="must be relative"):
            log("r1", str(tmp_path / "f.txt"), bad)
    with pytest.raises(BackendError, match="no such file"):
        log("r1", str(tmp_path / "missing.txt"))
    with pytest.raises(RunNotFound):
        log("nope", str(tmp_path / "f.txt"))
    assert (tmp_path / "f.txt").exists()  # nothing moved


def test_a_store_moved_to_another_folder_keeps_working(store, tmp_path):
    _start(store, "r1")
    store.log_batch("r1", metrics=[Metric("m", 2.0, 1, 0)])
    (tmp_path / "f.txt").write_text("payload")
    store.log_artifact("r1", str(tmp_path / "f.txt"))
    store.shutdown()
    moved = tmp_path / "elsewhere"
    shutil.move(store.root, moved)
    again = LocalStore(str(moved))
    assert again.get_run("r1").metrics == {"m": 2.0}
    with open(again.download_artifacts("r1", "f.txt", str(tmp_path))) as fh:
        assert fh.read() == "payload"
    assert again.get_run("r1").artifact_uri.startswith(str(moved))
    again.shutdown()


def test_a_backup_taken_while_the_store_is_open_is_a_working_store(store, tmp_path):
    """docs/local-store.md: SQLite's backup API plus a copy of the artifacts."""
    _start(store, "r1", experiment="exp")
    store.log_batch("r1", metrics=[Metric("m", math.nan, 1, 0)], params=[Param("p", "1")])
    (tmp_path / "f.txt").write_text("kept")
    store.log_artifact("r1", str(tmp_path / "f.txt"))
    backup = tmp_path / "backup"
    backup.mkdir()
    source, target = sqlite3.connect(store.db_path), sqlite3.connect(backup / "autolog.db")
    source.backup(target)
    source.close()
    target.close()
    shutil.copytree(os.path.join(store.root, "artifacts"), backup / "artifacts")
    store.log_batch("r1", metrics=[Metric("m", 1.0, 2, 1)])  # written after the backup: not in it
    copy = LocalStore(str(backup))
    assert [r.run_id for r in copy.search_runs(["exp"])] == ["r1"]
    assert math.isnan(copy.get_run("r1").metrics["m"]) and copy.get_run("r1").params == {"p": "1"}
    with open(copy.download_artifacts("r1", "f.txt", str(tmp_path))) as fh:
        assert fh.read() == "kept"
    copy.shutdown()


# -- run id prefixes --------------------------------------------------------------------------------

def test_resolve_run_id_takes_a_unique_prefix(store):
    for run_id in ("abc111", "abc222", "def333"):
        _start(store, run_id)
    assert store.resolve_run_id("abc111") == "abc111"
    assert store.resolve_run_id("d") == "def333"
    assert store.resolve_run_id("abc2") == "abc222"
    with pytest.raises(BackendError, match="ambiguous.*abc111, abc222"):
        store.resolve_run_id("abc")
    with pytest.raises(RunNotFound):
        store.resolve_run_id("zzz")
    with pytest.raises(RunNotFound):
        store.resolve_run_id("  ")


# -- processes ----------------------------------------------------------------------------------------

def _run_together(argvs: list) -> None:
    """Start one Python process per argv; each prints "ready" and waits for a line on stdin,
    so that all of them start their work at the same moment. All must exit with 0."""
    procs = [subprocess.Popen([sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv in argvs]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


_WRITER = textwrap.dedent("""
    import sys, time
    from autolog.backends.local import LocalStore
    from autolog.entities import Metric, Param
    path, run_id, worker, points, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    store = LocalStore(path)
    store.get_run(run_id)  # connected
    print("ready", flush=True)
    sys.stdin.readline()  # every writer starts at once
    now = int(time.time() * 1000)
    key = f"worker_{worker}"
    for start in range(0, points, batch):
        store.log_batch(run_id, metrics=[Metric(key, float(s), now, s) for s in range(start, min(points, start + batch))],
                        params=[Param("shared", "same"), Param(key, str(worker))])
    store.shutdown()
""")


def test_four_processes_write_10000_points_each_into_one_store_without_loss(store, tmp_path):
    _start(store, "shared-run")
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    points, batch = 10_000, 50  # 200 write transactions per process, interleaved
    _run_together([[str(script), store.root, "shared-run", str(i), str(points), str(batch)] for i in range(4)])
    run = store.get_run("shared-run")
    assert run.params == {"shared": "same", **{f"worker_{i}": str(i) for i in range(4)}}
    for i in range(4):
        history = store.get_metric_history("shared-run", f"worker_{i}")
        assert [m.step for m in history] == list(range(points))
        assert run.metrics[f"worker_{i}"] == float(points - 1)


def test_four_processes_log_through_the_public_api_into_one_store(store_dir, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import sys, autolog
        with autolog.start_run(f"proc-{sys.argv[1]}", experiment="parallel"):
            for step in range(2000):
                autolog.log_metric("loss", 1.0 / (step + 1), step=step)
    """))
    procs = [subprocess.Popen([sys.executable, str(script), str(i)], stderr=subprocess.PIPE, text=True) for i in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    store = get_backend(store_dir)
    found = store.search_runs(["parallel"])
    assert sorted(r.run_name for r in found) == [f"proc-{i}" for i in range(4)]
    for run in found:
        assert run.status == "FINISHED"
        assert len(store.get_metric_history(run.run_id, "loss")) == 2000


_CREATOR = textwrap.dedent("""
    import sys
    from autolog.backends.local import LocalStore
    from autolog.entities import Metric, RunStart
    store = LocalStore(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    store.create_run(RunStart(sys.argv[2], "Default", "creator", 1))
    store.log_batch(sys.argv[2], metrics=[Metric("m", 1.0, 1, 0)])
""")


def test_processes_that_create_a_new_store_at_once_all_get_in(tmp_path):
    """The first write of several processes into a store that does not exist yet: one
    makes the schema and switches to WAL, none is refused (a race once seen here)."""
    script = tmp_path / "creator.py"
    script.write_text(_CREATOR)
    for round_ in range(2):
        path = str(tmp_path / f"new-store-{round_}")
        _run_together([[str(script), path, f"run-{i}"] for i in range(4)])
        store = LocalStore(path)
        assert sorted(r.run_id for r in store.search_runs()) == [f"run-{i}" for i in range(4)]
        conn = sqlite3.connect(store.db_path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
        store.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_writes_through_its_own_connection(store):
    _start(store, "r1")
    store.log_batch("r1", metrics=[Metric("m", 0.0, 1, 0)])  # the parent has a connection now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            store.log_batch("r1", metrics=[Metric("m", 1.0, 2, 1)])
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.log_batch("r1", metrics=[Metric("m", 2.0, 3, 2)])  # the parent's connection still works
    assert [m.value for m in store.get_metric_history("r1", "m")] == [0.0, 1.0, 2.0]


def test_the_public_api_reads_back_what_it_logged(store_dir):
    with autolog.start_run("api", experiment="e") as run:
        autolog.log_params({"a": 1})
        autolog.log_metric("m", math.inf, step=3)
    autolog.flush()
    got = LocalStore(store_dir).get_run(run.run_id)
    assert (got.params, got.metrics, got.status) == ({"a": "1"}, {"m": math.inf}, "FINISHED")


# -- dataset inputs (schema 3) ------------------------------------------------------------------
def _inputs(*specs):
    return [DatasetInput(Dataset(name, digest, "code", '{"tags": {}}', '{"mlflow_colspec": []}', '{"num_rows": 3}'),
                         {CONTEXT_TAG: context} if context else {}) for name, digest, context in specs]


def test_dataset_inputs_round_trip_one_per_name_and_digest(store):
    _start(store, "d" * 32)
    store.log_inputs("d" * 32, _inputs(("X_train", "00000001", "train"), ("X_test", "00000002", "eval")))
    # again, with another context, and a new one: the first input of a dataset stays (as MLflow)
    store.log_inputs("d" * 32, _inputs(("X_train", "00000001", "eval"), ("X_train", "00000003", None)))
    expected = _inputs(("X_train", "00000001", "train"), ("X_test", "00000002", "eval"), ("X_train", "00000003", None))
    assert store.get_run("d" * 32).inputs == expected
    _start(store, "e" * 32)
    assert {r.run_id: r.inputs for r in store.search_runs()} == {"d" * 32: expected, "e" * 32: []}
    with pytest.raises(RunNotFound):
        store.log_inputs("f" * 32, _inputs(("X", "00000004", "train")))


def test_a_version_2_store_is_migrated_to_keep_dataset_inputs(tmp_path):
    path = str(tmp_path / "store")
    writer = LocalStore(path)
    _start(writer, "r1")
    writer.log_batch("r1", params=[Param("lr", "0.1")])
    writer.shutdown()
    conn = sqlite3.connect(writer.db_path)  # as autolog with schema 2 left it: no dataset_inputs table
    with conn:
        conn.execute("DROP TABLE dataset_inputs")
        conn.execute("UPDATE schema_version SET version = 2")
    conn.close()

    store = LocalStore(path)
    assert store.get_run("r1").inputs == [] and store.get_run("r1").params == {"lr": "0.1"}
    store.log_inputs("r1", _inputs(("X", "0000000a", "train")))
    assert store.get_run("r1").inputs == _inputs(("X", "0000000a", "train"))
    store.shutdown()
    check = sqlite3.connect(writer.db_path)
    try:
        assert check.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)] == [(3,)]
    finally:
        check.close()


def test_autolog_records_datasets_into_the_local_store(store_dir):
    import numpy as np

    X_train = np.arange(12.0).reshape(4, 3)
    with autolog.start_run() as run:
        autolog.log_input(X_train, context="train")
    assert autolog.flush(30)
    stored = LocalStore(store_dir).get_run(run.run_id)
    assert [(i.dataset.name, i.context, i.dataset.source_type) for i in stored.inputs] == [("X_train", "train", "code")]


# -- artifacts the caller gives up: moved, not copied ------------------------------------------------

def _artifact_rows(store: LocalStore, run_id: str) -> list[tuple]:
    with sqlite3.connect(store.db_path) as conn:
        return conn.execute("SELECT path, is_dir, size FROM artifacts WHERE run_id = ? ORDER BY path",
                            (run_id,)).fetchall()


def _model_folder(parent) -> str:
    folder = parent / "model"
    (folder / "data").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "data" / "model.pkl").write_bytes(b"\1" * 300)
    return str(folder)


def test_move_artifact_renames_files_and_whole_folders_into_the_run(store, tmp_path):
    _start(store, "r1")
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "plot.png").write_bytes(b"\x89PNG" + b"\0" * 60)
    folder = _model_folder(staged)
    inode = os.stat(os.path.join(folder, "data", "model.pkl")).st_ino
    store.move_artifact("r1", str(staged / "plot.png"))
    store.move_artifact("r1", folder, "model")

    assert not (staged / "plot.png").exists() and not os.path.exists(folder)  # moved, nothing left behind
    run_dir = store.get_run("r1").artifact_uri
    assert os.stat(os.path.join(run_dir, "model", "data", "model.pkl")).st_ino == inode  # the same file, not a copy
    assert _artifact_rows(store, "r1") == [
        ("model/MLmodel", 0, 12), ("model/data", 1, None), ("model/data/model.pkl", 0, 300), ("plot.png", 0, 64)]
    # the rows a copy records
    _start(store, "r2")
    store.log_artifact("r2", str(staged / "plot.png") if (staged / "plot.png").exists() else os.path.join(run_dir, "plot.png"))
    store.log_artifact("r2", os.path.join(run_dir, "model"), "model")
    assert _artifact_rows(store, "r2") == _artifact_rows(store, "r1")
    assert [a.path for a in store.list_artifacts("r1", "model")] == ["model/MLmodel", "model/data"]


def test_move_artifact_into_a_folder_that_exists_merges_it(store, tmp_path):
    _start(store, "r1")
    first = tmp_path / "first" / "figures"
    first.mkdir(parents=True)
    (first / "a.txt").write_text("a")
    store.log_artifact("r1", str(first), "figures")  # a copy: the folder exists in the run now
    second = tmp_path / "second" / "figures"
    (second / "inner").mkdir(parents=True)
    (second / "a.txt").write_text("A")
    (second / "inner" / "b.txt").write_text("bb")
    store.move_artifact("r1", str(second), "figures")
    local = store.download_artifacts("r1", "figures", "")
    assert sorted(os.listdir(local)) == ["a.txt", "inner"]
    with open(os.path.join(local, "a.txt")) as fh:
        assert fh.read() == "A"  # the later one wins, as with log_artifact
    assert ("figures/inner/b.txt", 0, 2) in _artifact_rows(store, "r1")


def test_move_artifact_across_filesystems_copies_and_leaves_the_source(store, tmp_path, monkeypatch):
    """A rename refused with EXDEV (the journal on another filesystem than the store): the
    files are copied as log_artifact copies them; the caller deletes the source afterwards."""
    import errno

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    _start(store, "r1")
    folder = _model_folder(tmp_path)
    (tmp_path / "plot.png").write_bytes(b"png")
    monkeypatch.setattr(local_module.os, "rename", cross_device)
    store.move_artifact("r1", folder, "model")
    store.move_artifact("r1", str(tmp_path / "plot.png"))
    monkeypatch.undo()
    assert os.path.exists(os.path.join(folder, "data", "model.pkl")) and (tmp_path / "plot.png").exists()
    run_dir = store.get_run("r1").artifact_uri
    with open(os.path.join(run_dir, "model", "data", "model.pkl"), "rb") as fh:
        assert fh.read() == b"\1" * 300
    assert ("plot.png", 0, 3) in _artifact_rows(store, "r1")
    assert not [n for n in os.listdir(os.path.join(run_dir, "model")) if n.startswith(".autolog-tmp-")]


def test_a_move_whose_rows_cannot_be_written_is_undone(store, tmp_path, monkeypatch):
    _start(store, "r1")
    folder = _model_folder(tmp_path)
    (tmp_path / "plot.png").write_bytes(b"png")

    def locked(self):
        raise BackendUnavailable("the autolog store is unavailable: database is locked")

    monkeypatch.setattr(LocalStore, "_write", locked)
    with pytest.raises(BackendUnavailable):
        store.move_artifact("r1", folder, "model")
    with pytest.raises(BackendUnavailable):
        store.move_artifact("r1", str(tmp_path / "plot.png"))
    monkeypatch.undo()
    # everything back where it came from, so that the logger can send it again or spill it
    assert os.path.exists(os.path.join(folder, "data", "model.pkl")) and (tmp_path / "plot.png").exists()
    assert store.list_artifacts("r1") == [] and _artifact_rows(store, "r1") == []
    store.move_artifact("r1", folder, "model")
    assert [a.path for a in store.list_artifacts("r1")] == ["model"]


def test_a_run_whose_artifact_folder_row_leaves_the_store_is_refused(store, tmp_path):
    _start(store, "r1")
    (tmp_path / "f.txt").write_text("x")
    with sqlite3.connect(store.db_path) as conn:
        conn.execute("UPDATE runs SET artifact_uri = '../outside' WHERE run_id = 'r1'")
    with pytest.raises(BackendError, match="outside the store"):
        store.move_artifact("r1", str(tmp_path / "f.txt"))
    assert (tmp_path / "f.txt").exists() and not (tmp_path / "outside").exists()


def test_a_link_in_a_moved_folder_is_placed_as_a_copy_would_place_it(store, tmp_path):
    _start(store, "r1")
    folder = tmp_path / "staged" / "files"
    folder.mkdir(parents=True)
    (folder / "kept.txt").write_text("inside")
    (folder / "link.txt").symlink_to(folder / "kept.txt")
    store.move_artifact("r1", str(folder), "files")
    local = store.download_artifacts("r1", "files", "")
    assert sorted(os.listdir(local)) == ["kept.txt", "link.txt"]
    assert not os.path.islink(os.path.join(local, "link.txt"))  # never a link inside the store
    with open(os.path.join(local, "link.txt")) as fh:
        assert fh.read() == "inside"


# -- groups of writes: one transaction, each write undone alone ---------------------------------------

def test_a_group_of_writes_is_stored_at_its_commit_only(store, tmp_path):
    _start(store, "r1")
    reader = LocalStore(store.root)
    assert store.begin_group()
    _start(store, "r2")
    store.log_batch("r2", metrics=[Metric("loss", 0.5, _now(), 0)], params=[Param("lr", "0.1")])
    store.end_run("r2", RunStatus.FINISHED, _now())
    assert store.get_run("r2").status == RunStatus.FINISHED  # the writer reads its own group
    with pytest.raises(RunNotFound):
        reader.get_run("r2")  # nothing of it is stored yet
    store.commit_group()
    run = reader.get_run("r2")
    assert (run.status, run.params, run.metrics) == (RunStatus.FINISHED, {"lr": "0.1"}, {"loss": 0.5})
    reader.shutdown()


def test_a_refused_write_in_a_group_is_undone_alone(store):
    _start(store, "r1")
    store.log_batch("r1", params=[Param("lr", "0.1")])
    store.begin_group()
    store.log_batch("r1", tags=[("before", "1")])
    with pytest.raises(BackendError, match="already logged"):
        store.log_batch("r1", params=[Param("lr", "0.2")], tags=[("refused", "1")])
    with pytest.raises(RunNotFound):
        store.log_batch("nope", tags=[("x", "1")])
    store.log_batch("r1", tags=[("after", "1")])
    store.commit_group()
    tags = store.get_run("r1").tags
    assert ("before" in tags, "after" in tags, "refused" in tags) == (True, True, False)
    assert store.get_run("r1").params == {"lr": "0.1"}


def test_an_aborted_group_stores_nothing_and_moves_its_files_back(store, tmp_path):
    _start(store, "r1")
    folder = _model_folder(tmp_path)
    store.begin_group()
    store.log_batch("r1", tags=[("t", "1")])
    store.move_artifact("r1", folder, "model")
    assert not os.path.exists(folder)
    store.abort_group()
    assert os.path.exists(os.path.join(folder, "data", "model.pkl"))
    assert "t" not in store.get_run("r1").tags and _artifact_rows(store, "r1") == []
    store.log_batch("r1", tags=[("t", "2")])  # the store writes as ever afterwards
    assert store.get_run("r1").tags["t"] == "2"


def test_a_failed_commit_stores_nothing_and_moves_the_files_back(store, tmp_path, monkeypatch):
    _start(store, "r1")
    folder = _model_folder(tmp_path)
    store.begin_group()
    store.log_batch("r1", tags=[("t", "1")])
    store.move_artifact("r1", folder, "model")
    conn = store._conns[__import__("threading").current_thread()]
    conn.execute("ROLLBACK")  # as SQLite does itself on some errors (a full disk, an I/O error)
    with pytest.raises(BackendUnavailable, match="rolled back"):
        store.commit_group()
    assert os.path.exists(os.path.join(folder, "data", "model.pkl"))
    assert "t" not in store.get_run("r1").tags and _artifact_rows(store, "r1") == []


def test_prepare_makes_the_store_and_a_read_still_makes_none(tmp_path):
    idle = LocalStore(str(tmp_path / "idle"))
    idle.shutdown()
    assert not (tmp_path / "idle").exists()
    store = LocalStore(str(tmp_path / "made"))
    store.prepare()
    assert (tmp_path / "made" / "autolog.db").exists()
    assert store.search_runs() == []
    store.shutdown()
