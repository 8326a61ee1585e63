"""End-to-end throughput of metric points into the local store, against MLflow's `log_batch`.

    python -m benchmarks.throughput                  # from the repository root
    python -m benchmarks.throughput --points 1000000 --repeats 3

Rows of the table (points a second, median of the repetitions; by the wall clock, and per
CPU second of the whole process, which a shared machine's load disturbs far less):

- `autolog, end to end`        `run.log_metric(...)` in a loop, then `autolog.flush()`: the clock
                                runs from the first call until every point is in the SQLite store.
- `autolog, log_metrics x10`   the same with ten keys a step through `autolog.log_metrics`.
- `autolog logger, no store`   the same calls into a backend that stores nothing: the cost of
                                autolog's own path (caller + worker), without SQLite.
- `LocalStore.log_batch alone` batches of 5,000 points written straight into the store: the
                                cost of SQLite alone.
- `MLflow log_batch (sqlite)`  `MlflowClient().log_batch` with 1,000 metrics a call into an
                                MLflow sqlite store (fewer points: it is slow).
- `plain sqlite3 rows ...`      the same points inserted as one row each with nothing but `sqlite3`,
                                into schema 1's metrics table (AUTOINCREMENT key and an index, the
                                store's layout before points were packed) and into a bare table: why
                                the store packs a batch's points of one key into one row.

Target (the core issue): at least 300,000 points a second end to end on the 2-core
development machine; MLflow's `log_batch` into sqlite was measured at about 13,500.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

TARGET_POINTS_PER_S = 300_000


class _Clock:
    """Wall time and process CPU time (all threads) of one timed region."""

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        return False

    def rates(self, points: int) -> tuple:
        return points / self.wall, points / self.cpu

if __package__ in (None, ""):  # run as `python benchmarks/NAME.py`: the repo root, for `benchmarks.harness`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fresh_env(root: str) -> None:
    os.environ["AUTOLOG_TRACKING_URI"] = os.path.join(root, "autolog-runs")
    os.environ["AUTOLOG_JOURNAL_DIR"] = os.path.join(root, "journal")
    os.environ.setdefault("AUTOLOG_LOG_SYSTEM_METRICS", "false")


def autolog_end_to_end(points: int) -> float:
    import autolog
    from autolog.testing import reset_for_tests

    root = tempfile.mkdtemp(prefix="autolog-bench-tp-")
    _fresh_env(root)
    reset_for_tests()
    run = autolog.start_run("throughput")
    assert autolog.flush(60)
    log = run.log_metric
    with _Clock() as clock:
        for step in range(points):
            log("loss", 0.5, step)
        assert autolog.flush(600)
    autolog.end_run()
    autolog.flush()
    _check_stats()
    return clock.rates(points)


def autolog_log_metrics(points: int, keys: int = 10) -> float:
    import autolog
    from autolog.testing import reset_for_tests

    root = tempfile.mkdtemp(prefix="autolog-bench-tp-")
    _fresh_env(root)
    reset_for_tests()
    autolog.start_run("throughput-dict")
    assert autolog.flush(60)
    names = [f"metric_{i}" for i in range(keys)]
    with _Clock() as clock:
        for step in range(points // keys):
            autolog.log_metrics({name: 0.5 for name in names}, step=step)
        assert autolog.flush(600)
    autolog.end_run()
    autolog.flush()
    _check_stats()
    return clock.rates((points // keys) * keys)


def _check_stats() -> None:
    from autolog import runs

    stats = runs.logger_for().snapshot_stats()
    assert stats.dropped == 0 and stats.spilled == 0 and stats.rejected == 0, stats


class _NullBackend:
    """Takes every write and keeps nothing: isolates autolog's own cost from the store's."""

    from autolog.backends.base import BatchLimits

    limits = BatchLimits(max_metrics=100_000, max_params=10_000, max_tags=10_000, max_total=100_000)
    uri = "null:"

    def create_run(self, run):
        pass

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        pass

    def end_run(self, run_id, status, end_time):
        pass

    def log_artifact(self, run_id, local_path, artifact_path=None):
        pass

    def flush(self):
        pass


def autolog_without_store(points: int) -> float:
    from autolog.transport.journal import Journal
    from autolog.transport.logger import BatchingLogger
    from autolog.runs import ActiveRun

    root = tempfile.mkdtemp(prefix="autolog-bench-tp-")
    logger = BatchingLogger(_NullBackend(), journal=Journal("null:", folder=os.path.join(root, "journal")))
    run = ActiveRun("0" * 32, "null", "Default", "null:", None, "user", 0, logger)
    log = run.log_metric
    with _Clock() as clock:
        for step in range(points):
            log("loss", 0.5, step)
        assert logger.flush(600)
    logger.close(10)
    return clock.rates(points)


def local_store_alone(points: int, batch: int = 5_000) -> float:
    from autolog.backends.local import LocalStore
    from autolog.entities import Metric, RunStart

    root = tempfile.mkdtemp(prefix="autolog-bench-tp-")
    store = LocalStore(os.path.join(root, "store"))
    run_id = "1" * 32
    store.create_run(RunStart(run_id, "Default", "store-alone", 0, None, {}))
    now = int(time.time() * 1000)
    batches = [[Metric("loss", 0.5, now, s) for s in range(b, min(points, b + batch))] for b in range(0, points, batch)]
    with _Clock() as clock:
        for metrics in batches:
            store.log_batch(run_id, metrics=metrics)
    store.shutdown()
    return clock.rates(points)


_METRICS_TABLE = ("CREATE TABLE metrics (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, "
                  "key TEXT NOT NULL, value REAL, step INTEGER NOT NULL, timestamp INTEGER NOT NULL)")
_METRICS_INDEX = "CREATE INDEX metrics_by_run_key_step ON metrics (run_id, key, step)"


def _raw_sqlite(points: int, schema: list, batch: int = 5_000) -> float:
    """Rows a second that plain `sqlite3` inserts into a metrics table (WAL, synchronous=NORMAL)."""
    import sqlite3

    root = tempfile.mkdtemp(prefix="autolog-bench-tp-sqlite-")
    conn = sqlite3.connect(os.path.join(root, "raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for statement in schema:
        conn.execute(statement)
    now = int(time.time() * 1000)
    rows = [("1" * 32, "loss", 0.5, step, now) for step in range(points)]
    with _Clock() as clock:
        for b in range(0, points, batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO metrics (run_id, key, value, step, timestamp) VALUES (?, ?, ?, ?, ?)",
                             rows[b:b + batch])
            conn.execute("COMMIT")
    conn.close()
    return clock.rates(points)


def sqlite_like_local_store(points: int) -> float:
    """Schema 1's metrics table (AUTOINCREMENT key, index on run, key, step): one row a point."""
    return _raw_sqlite(points, [_METRICS_TABLE, _METRICS_INDEX])


def sqlite_plain_table(points: int) -> float:
    """The same rows into a table with a plain rowid and no index: what SQLite itself can do here."""
    return _raw_sqlite(points, [_METRICS_TABLE.replace(" AUTOINCREMENT", "")])


def mlflow_log_batch(points: int, batch: int = 1_000) -> float:
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    from mlflow.entities import Metric as MlflowMetric
    from mlflow.tracking import MlflowClient

    root = tempfile.mkdtemp(prefix="autolog-bench-tp-mlflow-")
    client = MlflowClient(tracking_uri="sqlite:///" + os.path.join(root, "mlflow.db"))
    experiment_id = client.create_experiment("throughput")
    run_id = client.create_run(experiment_id).info.run_id
    now = int(time.time() * 1000)
    with _Clock() as clock:
        for b in range(0, points, batch):
            client.log_batch(run_id, metrics=[MlflowMetric("loss", 0.5, now, s) for s in range(b, min(points, b + batch))])
    client.set_terminated(run_id)
    return clock.rates(points)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--mlflow-points", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                        help="skip the plain-sqlite3 rows that show where the store's time goes")
    args = parser.parse_args(argv)
    from benchmarks.harness import machine_summary

    cases = [
        ("autolog, end to end (`run.log_metric` + `flush`)", autolog_end_to_end, args.points),
        ("autolog, `log_metrics` with 10 keys a step + `flush`", autolog_log_metrics, args.points),
        ("autolog logger, no store (caller + worker only)", autolog_without_store, args.points),
        ("`LocalStore.log_batch` alone, 5,000 a batch", local_store_alone, args.points),
    ]
    if args.breakdown:
        cases += [
            ("plain `sqlite3`, one row a point, schema 1's metrics table", sqlite_like_local_store, args.points),
            ("plain `sqlite3`, one row a point, no AUTOINCREMENT, no index", sqlite_plain_table, args.points),
        ]
    if not args.no_mlflow:
        cases.append(("MLflow `log_batch` into sqlite, 1,000 a batch", mlflow_log_batch, args.mlflow_points))
    results = {name: [] for name, _, _ in cases}
    for _ in range(args.repeats):  # interleaved repetitions
        for name, fn, n in cases:
            results[name].append(fn(n))
    print(f"\n{machine_summary()}; load average {os.getloadavg()[0]:.1f}\n")
    print("| case | points | points a second (median, wall clock) | min | max | points per CPU second (median) |")
    print("|---|---|---|---|---|---|")
    for name, _, n in cases:
        wall = [w for w, _ in results[name]]
        cpu = [c for _, c in results[name]]
        print(f"| {name} | {n:,} | {statistics.median(wall):,.0f} | {min(wall):,.0f} | {max(wall):,.0f} | "
              f"{statistics.median(cpu):,.0f} |")
    end_to_end = statistics.median(w for w, _ in results[cases[0][0]])
    print(f"\n{args.repeats} interleaved repetitions. CPU seconds are the process's (every thread).")
    print(f"end to end {end_to_end:,.0f} points/s (target >= {TARGET_POINTS_PER_S:,}: "
          f"{'met' if end_to_end >= TARGET_POINTS_PER_S else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
