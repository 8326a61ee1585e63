"""The embedded default store: one SQLite database (WAL) plus an artifact folder.

Layout of a store directory (``./autolog-runs`` unless told otherwise)::

    <dir>/autolog.db                                 runs, params, metrics, tags, dataset inputs
    <dir>/artifacts/<experiment_id>/<run_id>/...     files logged with log_artifact

The directory and the schema are made on the first write (or by `prepare`, which the
logger's worker calls as it starts); reading a store that does
not exist raises ``BackendError("no autolog store at PATH")``. Several processes on one
machine may write the same store at once: each write is one ``BEGIN IMMEDIATE``
transaction, SQLite's file locks serialise the writers, and a writer that waits past
the busy timeout gets ``BackendUnavailable`` (the logger retries, then spills). The
logger's worker groups the writes of one pass into one transaction (`begin_group`,
`commit_group`), each write in a savepoint of its own, so that one refused write is
undone alone.

Each process, and each thread in it, has its own connection; a forked child never
touches its parent's connections (``after_fork_in_child`` and a pid check).
docs/local-store.md describes the schema and the policies in full.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import operator
import os
import shutil
import sqlite3
import sys
import threading
import time
import uuid
from array import array
from typing import Iterable, Iterator, Optional, Sequence

from autolog.backends import local_path_of
from autolog.backends.base import (Backend, BackendError, BackendUnavailable, BatchLimits, RunNotFound,
                                   StoreNotFound)
from autolog.entities import (ArtifactInfo, Dataset, DatasetInput, Experiment, Metric, Param, Run, RunStart, RunStatus,
                              metric_columns)
from autolog.config import make_private_if_asked
from autolog.validation import check_run_id

log = logging.getLogger("autolog")

#: the schema this code reads and writes; an older store is migrated on open, a newer one refused
SCHEMA_VERSION = 3
DB_FILE = "autolog.db"
ARTIFACTS_DIR = "artifacts"
BUSY_TIMEOUT_S = 30.0
#: MLflow gives the experiment named "Default" the id 0; so do we
DEFAULT_EXPERIMENT_NAME = "Default"
DEFAULT_EXPERIMENT_ID = 0
#: files being copied into the artifact folder carry this prefix until os.replace
_TMP_PREFIX = ".autolog-tmp-"
#: stay well under SQLite's limit on host parameters per statement
_MAX_VARS = 900

# Metric points are stored packed: one row of `metric_chunks` holds the points of one key
# that one batch wrote, as three little-endian arrays (int64 steps, float64 values, int64
# timestamps), so a batch of 5,000 points of a few keys is a few rows, not 5,000. The
# float64 array keeps NaN and +-inf bit for bit. In latest_metrics.value, SQLite turns a
# bound NaN into NULL, so NULL there *means* NaN (a metric value is never missing otherwise).
_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE experiments (
        experiment_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        creation_time INTEGER)""",
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        run_name TEXT,
        experiment_id INTEGER NOT NULL,
        status TEXT NOT NULL,
        start_time INTEGER NOT NULL,
        end_time INTEGER,
        parent_run_id TEXT,
        artifact_uri TEXT NOT NULL)""",  # relative to the store dir, so a copied store still works
    "CREATE INDEX runs_by_start_time ON runs (start_time)",
    "CREATE INDEX runs_by_parent ON runs (parent_run_id)",
    """CREATE TABLE params (
        run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (run_id, key)) WITHOUT ROWID""",
    """CREATE TABLE metric_chunks (
        chunk_id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL, key TEXT NOT NULL, count INTEGER NOT NULL,
        min_step INTEGER NOT NULL, max_step INTEGER NOT NULL,
        steps BLOB NOT NULL, vals BLOB NOT NULL, timestamps BLOB NOT NULL)""",
    "CREATE INDEX metric_chunks_by_run_key ON metric_chunks (run_id, key)",
    """CREATE TABLE latest_metrics (
        run_id TEXT NOT NULL, key TEXT NOT NULL, value REAL,
        step INTEGER NOT NULL, timestamp INTEGER NOT NULL,
        PRIMARY KEY (run_id, key)) WITHOUT ROWID""",
    """CREATE TABLE tags (
        run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (run_id, key)) WITHOUT ROWID""",
    """CREATE TABLE artifacts (
        run_id TEXT NOT NULL, path TEXT NOT NULL, is_dir INTEGER NOT NULL, size INTEGER,
        PRIMARY KEY (run_id, path)) WITHOUT ROWID""",
    # schema 3: the datasets a run used (MLflow's dataset inputs), one per (name, digest) and
    # run, in the order first logged (rowid); `tags` is the input's tags as a JSON object
    """CREATE TABLE dataset_inputs (
        run_id TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL,
        source_type TEXT NOT NULL, source TEXT NOT NULL, schema TEXT, profile TEXT, tags TEXT NOT NULL,
        UNIQUE (run_id, name, digest))""",
)

_INSERT_CHUNK = ("INSERT INTO metric_chunks (run_id, key, count, min_step, max_step, steps, vals, timestamps)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
#: the arrays in metric_chunks are little-endian whatever the machine
_SWAP = sys.byteorder != "little"
_STEP_AND_TIME = operator.itemgetter(0, 1)
# the last value of a key is the one with the highest step, then the latest timestamp;
# on a full tie the later write wins, as it does within a batch
_UPSERT_LATEST = """
    INSERT INTO latest_metrics (run_id, key, value, step, timestamp) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (run_id, key) DO UPDATE SET
        value = excluded.value, step = excluded.step, timestamp = excluded.timestamp
    WHERE excluded.step > latest_metrics.step
       OR (excluded.step = latest_metrics.step AND excluded.timestamp >= latest_metrics.timestamp)
"""
_UPSERT_TAG = """
    INSERT INTO tags (run_id, key, value) VALUES (?, ?, ?)
    ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value
"""
_INSERT_INPUT = """
    INSERT INTO dataset_inputs (run_id, name, digest, source_type, source, schema, profile, tags)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, name, digest) DO NOTHING
"""
_SELECT_INPUTS = "SELECT run_id, name, digest, source_type, source, schema, profile, tags FROM dataset_inputs"
_UPSERT_ARTIFACT = """
    INSERT INTO artifacts (run_id, path, is_dir, size) VALUES (?, ?, ?, ?)
    ON CONFLICT (run_id, path) DO UPDATE SET is_dir = excluded.is_dir, size = excluded.size
"""
_RUN_COLUMNS = """
    r.run_id, r.run_name, r.experiment_id, e.name, r.status, r.start_time, r.end_time,
    r.parent_run_id, r.artifact_uri
"""

# SQLite result codes (primary, the low byte) that mean "try again later"
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_PROTOCOL = 5, 6, 10, 13, 14, 15
_TRANSIENT_CODES = {_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_PROTOCOL}
_TRANSIENT_TEXT = ("locked", "busy", "disk is full", "disk i/o error", "unable to open database")
#: OS errors that pass (a full disk freed, a permission fixed, a read-only mount remounted):
#: the records are retried, spilled and replayed, never set aside for good
_TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EIO, errno.EAGAIN, getattr(errno, "EDQUOT", errno.ENOSPC),
                     errno.EACCES, errno.EPERM, errno.EROFS}

#: connections inherited through fork: kept referenced so that they are never closed
#: (closing one in the child could disturb the parent's locks and WAL)
_abandoned_after_fork: list = []


def _nan_if_null(value: Optional[float]) -> float:
    return math.nan if value is None else value


class LocalStore(Backend):
    """The SQLite + artifact folder store behind a local path or a ``file:`` URI."""

    schemes = ("local", "file")
    limits = BatchLimits(max_metrics=100_000, max_params=10_000, max_tags=10_000, max_total=100_000)

    def __init__(self, uri: str):
        super().__init__(uri)
        self.root = os.path.abspath(os.path.expanduser(local_path_of(uri)))
        self.db_path = os.path.join(self.root, DB_FILE)
        self.artifacts_root = os.path.join(self.root, ARTIFACTS_DIR)
        self._reset_connections()

    # -- connections -----------------------------------------------------
    def _reset_connections(self) -> None:
        # a fresh lock, never acquired here: after a fork the parent's may be held forever
        self._lock = threading.Lock()
        self._conns: dict[threading.Thread, sqlite3.Connection] = {}
        self._pid = os.getpid()
        self._schema_checked = False
        # per thread: the group of writes it has open (`begin_group`), if any
        self._groups = threading.local()
        # run id -> its artifact folder, checked to be inside the store (a run's folder never
        # changes); bounded: cleared when full
        self._run_dirs: dict[str, str] = {}
        self._real_root: Optional[str] = None

    def after_fork_in_child(self) -> None:
        _abandoned_after_fork.extend(self._conns.values())
        self._reset_connections()

    def _connection(self, create: bool) -> sqlite3.Connection:
        """This thread's connection; `create` makes the store if it does not exist yet."""
        if self._pid != os.getpid():  # forked without the at-fork hook (a store not from the registry)
            self.after_fork_in_child()
        thread = threading.current_thread()
        conn = self._conns.get(thread)
        if conn is not None:
            return conn
        if not os.path.exists(self.db_path):
            if not create:
                raise StoreNotFound(f"no autolog store at {self.root}")
            try:
                os.makedirs(self.root, exist_ok=True)
                make_private_if_asked(self.root)
            except OSError as exc:
                # unavailable, not refused: a disk not mounted yet or a path fixed later is
                # something that passes; the logger keeps the records in its journal and
                # `autolog sync` delivers them once the store can be made
                raise BackendUnavailable(f"cannot create the autolog store at {self.root}: {exc}") from exc
        with _sqlite_errors(self.root):
            conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                conn.execute("PRAGMA synchronous = NORMAL")
                if not self._schema_checked:
                    self._ensure_schema(conn)
                    self._schema_checked = True
            except BaseException:
                conn.close()
                raise
        with self._lock:
            # drop the connections of threads that have ended
            for dead in [t for t in self._conns if not t.is_alive()]:
                self._conns.pop(dead).close()
            self._conns[thread] = conn
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        tables = self._tables(conn)
        if not tables:
            # a new store: WAL is a property of the database file, set once here
            _set_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not self._tables(conn):  # another process may have won the race
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            tables = self._tables(conn)
        if "schema_version" not in tables:
            raise BackendError(
                f"{self.db_path} is not an autolog store (it has tables but no schema_version table)"
            )
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        version = row[0] if row else None
        if version is None:
            raise BackendError(f"the autolog store at {self.root} has an empty schema_version table")
        if version > SCHEMA_VERSION:
            raise BackendError(
                f"the autolog store at {self.root} has schema version {version}, newer than version "
                f"{SCHEMA_VERSION} that this autolog knows; upgrade autolog to read or write it"
            )
        if version < SCHEMA_VERSION:
            self._migrate(conn, version)

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        """Bring an older store up to SCHEMA_VERSION, in one transaction (all or nothing)."""
        if version not in _MIGRATIONS:
            raise BackendError(
                f"the autolog store at {self.root} has schema version {version}, older than version "
                f"{SCHEMA_VERSION} that this autolog knows, and no migration from it exists"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            # another process may have migrated it while this one waited for the lock
            current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            while current < SCHEMA_VERSION:
                if current not in _MIGRATIONS:
                    raise BackendError(f"the autolog store at {self.root}: no migration from schema version {current}")
                _MIGRATIONS[current](conn)
                current += 1
                conn.execute("UPDATE schema_version SET version = ?", (current,))
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    @staticmethod
    def _tables(conn: sqlite3.Connection) -> set:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {name for (name,) in rows if not name.startswith("sqlite_")}

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, or one savepoint of the thread's open group; the store is
        made on first use."""
        group = getattr(self._groups, "group", None)
        if group is not None:
            with self._grouped_write(group) as conn:
                yield conn
            return
        with _sqlite_errors(self.root):
            conn = self._connection(create=True)
            # IMMEDIATE takes the write lock now (waiting up to the busy timeout), rather
            # than failing at the first write of a read transaction that cannot be upgraded
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

    @contextlib.contextmanager
    def _grouped_write(self, group: "_Group") -> Iterator[sqlite3.Connection]:
        with _sqlite_errors(self.root):
            conn = self._connection(create=True)
            if not group.open:
                conn.execute("BEGIN IMMEDIATE")  # the write lock, held until commit_group
                group.open = True
            elif not conn.in_transaction:
                # SQLite rolled the group back on an error (a full disk, an I/O error)
                raise BackendUnavailable(f"the autolog store at {self.root} rolled back the open transaction")
            conn.execute("SAVEPOINT autolog_write")
            try:
                yield conn
                conn.execute("RELEASE autolog_write")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK TO autolog_write")
                        conn.execute("RELEASE autolog_write")
                raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for a read made of several queries (inside the thread's open
        group of writes, that group's transaction, which sees its own writes)."""
        with _sqlite_errors(self.root):
            conn = self._connection(create=False)
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                _rollback(conn)

    def shutdown(self) -> None:
        if self._pid != os.getpid():
            self.after_fork_in_child()
            return
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def prepare(self) -> None:
        """Open this thread's connection, making the store (folder, WAL, schema) if it does
        not exist yet: the logger's worker does it as it starts, while the first training
        call runs, rather than after it."""
        with _sqlite_errors(self.root):
            self._connection(create=True)

    # -- groups of writes ----------------------------------------------------
    def begin_group(self) -> bool:
        """This thread's writes from now on share one transaction (begun at the first of them),
        each in a savepoint of its own: a write that raises is undone alone, the others stay
        in the group. Nothing of it is stored until `commit_group`."""
        self.abort_group()
        self._groups.group = _Group()
        return True

    def commit_group(self) -> None:
        """Commit the thread's group. If it raises, nothing of the group is stored and the
        files it moved are back where they came from (the caller sends them again)."""
        group = getattr(self._groups, "group", None)
        self._groups.group = None
        if group is None or not group.open:
            return
        conn = self._conns.get(threading.current_thread())
        try:
            with _sqlite_errors(self.root):
                if conn is None or not conn.in_transaction:
                    raise BackendUnavailable(f"the autolog store at {self.root} rolled back the open transaction")
                conn.execute("COMMIT")
        except BaseException:
            if conn is not None:
                _rollback(conn)
            _undo_moves(group.moves)
            raise

    def abort_group(self) -> None:
        """Drop the thread's group, if any: roll it back and move its files back."""
        group = getattr(self._groups, "group", None)
        self._groups.group = None
        if group is None:
            return
        if group.open:
            conn = self._conns.get(threading.current_thread())
            if conn is not None:
                _rollback(conn)
        _undo_moves(group.moves)

    # -- writing ---------------------------------------------------------
    def create_run(self, run: RunStart) -> None:
        try:
            check_run_id(run.run_id)  # it names the run's artifact folder
            if run.parent_run_id is not None:
                check_run_id(run.parent_run_id)
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        with self._write() as conn:
            if _run_exists(conn, run.run_id):
                return  # a replay of the journal, or a second create: nothing to do
            experiment_id = self._experiment_id(conn, run.experiment_name, run.start_time)
            conn.execute(
                "INSERT INTO runs (run_id, run_name, experiment_id, status, start_time, end_time,"
                " parent_run_id, artifact_uri) VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
                (run.run_id, run.run_name, experiment_id, RunStatus.RUNNING, int(run.start_time),
                 run.parent_run_id, f"{ARTIFACTS_DIR}/{experiment_id}/{run.run_id}"),
            )
            if run.tags:
                conn.executemany(_UPSERT_TAG, [(run.run_id, str(k), str(v)) for k, v in run.tags.items()])

    @staticmethod
    def _experiment_id(conn: sqlite3.Connection, name: str, creation_time: int) -> int:
        row = conn.execute("SELECT experiment_id FROM experiments WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return row[0]
        if name == DEFAULT_EXPERIMENT_NAME:
            conn.execute(
                "INSERT INTO experiments (experiment_id, name, creation_time) VALUES (?, ?, ?)",
                (DEFAULT_EXPERIMENT_ID, name, int(creation_time)),
            )
            return DEFAULT_EXPERIMENT_ID
        cursor = conn.execute(
            "INSERT INTO experiments (experiment_id, name, creation_time)"
            " VALUES ((SELECT MAX(1, COALESCE(MAX(experiment_id), 0) + 1) FROM experiments), ?, ?)",
            (name, int(creation_time)),
        )
        return cursor.lastrowid

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[tuple[str, str]] = (),
    ) -> None:
        # the Python work happens before the write lock is taken
        chunk_rows, latest_rows = _pack_metrics(run_id, metrics) if metrics else ((), ())
        param_rows = _param_rows(run_id, params)
        tag_rows = [(run_id, str(k), str(v)) for k, v in tags]
        with self._write() as conn:
            if not _run_exists(conn, run_id):
                raise RunNotFound(run_id)
            if param_rows:
                self._check_params(conn, run_id, param_rows)
                conn.executemany(
                    "INSERT INTO params (run_id, key, value) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", param_rows
                )
            if tag_rows:
                conn.executemany(_UPSERT_TAG, tag_rows)
            if chunk_rows:
                conn.executemany(_INSERT_CHUNK, chunk_rows)
                conn.executemany(_UPSERT_LATEST, latest_rows)

    @staticmethod
    def _check_params(conn: sqlite3.Connection, run_id: str, rows: list[tuple]) -> None:
        """A param may be logged again with the value it has; another value is an error."""
        keys = [key for _, key, _ in rows]
        existing: dict[str, str] = {}
        for start in range(0, len(keys), _MAX_VARS):
            chunk = keys[start:start + _MAX_VARS]
            existing.update(conn.execute(
                f"SELECT key, value FROM params WHERE run_id = ? AND key IN ({','.join('?' * len(chunk))})",
                (run_id, *chunk),
            ).fetchall())
        for _, key, value in rows:
            old = existing.get(key)
            if old is not None and old != value:
                raise BackendError(
                    f"param {key!r} of run {run_id} was already logged as {old!r}; "
                    f"it cannot be changed to {value!r}"
                )

    def end_run(self, run_id: str, status: str, end_time: int) -> None:
        status = RunStatus.check(status)
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, end_time = ? WHERE run_id = ?", (status, int(end_time), run_id)
            )
            if cursor.rowcount == 0:
                raise RunNotFound(run_id)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: Optional[str] = None) -> None:
        """Copy a file into ``<artifact_path>/<its name>``, or a folder's contents into
        ``<artifact_path>/`` (MLflow's log_artifact / log_artifacts). Each file is written
        under a temporary name and renamed, so a reader never sees half a file."""
        self._place_artifact(run_id, local_path, artifact_path, move=False)

    def move_artifact(self, run_id: str, local_path: str, artifact_path: Optional[str] = None) -> None:
        """`log_artifact` for a file or folder the caller deletes afterwards: renamed into the
        run's folder (a whole folder at once where its place is free), copied only where a
        rename cannot do it (another filesystem, a link). If this raises, what it moved is
        back at `local_path`."""
        self._place_artifact(run_id, local_path, artifact_path, move=True)

    def _place_artifact(self, run_id: str, local_path: str, artifact_path: Optional[str], move: bool) -> None:
        run_dir = self._artifact_dir(run_id)
        rel_base = _clean_artifact_path(artifact_path)
        if not os.path.exists(local_path):
            raise BackendError(f"cannot log artifact {local_path!r}: no such file or folder")
        moves: list[tuple[str, str]] = []  # (where it is now, where it came from), to undo
        try:
            if os.path.isdir(local_path):
                rows = _place_tree(local_path, run_dir, rel_base, moves if move else None)
            else:
                rel = "/".join(p for p in (rel_base, os.path.basename(os.path.normpath(local_path))) if p)
                rows = _place_file(local_path, run_dir, rel, moves if move else None)
        except OSError as exc:
            _undo_moves(moves)
            raise _os_error(f"cannot copy {local_path!r} into the artifacts of run {run_id}", exc) from exc
        try:
            with self._write() as conn:
                if not _run_exists(conn, run_id):
                    raise RunNotFound(run_id)
                conn.executemany(_UPSERT_ARTIFACT, [(run_id, rel, is_dir, size) for rel, is_dir, size in rows])
        except BaseException:
            _undo_moves(moves)
            raise
        group = getattr(self._groups, "group", None)
        if group is not None:
            group.moves.extend(moves)  # undone too if the group is rolled back

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        """Record the datasets the run used; one per (name, digest), the first tags kept (as MLflow)."""
        rows = [(run_id, d.dataset.name, d.dataset.digest, d.dataset.source_type, d.dataset.source,
                 d.dataset.schema, d.dataset.profile, json.dumps(dict(d.tags), sort_keys=True)) for d in datasets]
        with self._write() as conn:
            if not _run_exists(conn, run_id):
                raise RunNotFound(run_id)
            conn.executemany(_INSERT_INPUT, rows)

    def _artifact_dir(self, run_id: str) -> str:
        """The run's artifact folder, checked once per run to be inside the store."""
        folder = self._run_dirs.get(run_id)
        if folder is not None:
            return folder
        with self._read() as conn:
            row = conn.execute("SELECT artifact_uri FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        folder = self._absolute_artifact_uri(row[0])
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        if not os.path.realpath(folder).startswith(self._real_root + os.sep):  # a crafted store row
            raise BackendError(f"the artifact folder of run {run_id!r} ({row[0]!r}) is outside the store")
        if len(self._run_dirs) >= 1024:
            self._run_dirs.clear()
        self._run_dirs[run_id] = folder
        return folder

    def _absolute_artifact_uri(self, stored: str) -> str:
        return os.path.normpath(os.path.join(self.root, stored))

    # -- reading ---------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs r JOIN experiments e USING (experiment_id) WHERE r.run_id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            run = self._run_from_row(row)
            run.params.update(conn.execute("SELECT key, value FROM params WHERE run_id = ?", (run_id,)))
            run.tags.update(conn.execute("SELECT key, value FROM tags WHERE run_id = ?", (run_id,)))
            run.metrics.update(
                (key, _nan_if_null(value))
                for key, value in conn.execute("SELECT key, value FROM latest_metrics WHERE run_id = ?", (run_id,))
            )
            run.inputs.extend(_input_from_row(row) for row in conn.execute(
                f"{_SELECT_INPUTS} WHERE run_id = ? ORDER BY rowid", (run_id,)))
            return run

    def _run_from_row(self, row: tuple) -> Run:
        run_id, run_name, experiment_id, experiment_name, status, start, end, parent, artifact_uri = row
        return Run(
            run_id=run_id,
            run_name=run_name,
            experiment_id=str(experiment_id),
            experiment_name=experiment_name,
            status=status,
            start_time=start,
            end_time=end,
            parent_run_id=parent,
            artifact_uri=self._absolute_artifact_uri(artifact_uri),
        )

    def search_runs(
        self,
        experiment_names: Optional[Iterable[str]] = None,
        statuses: Optional[Iterable[str]] = None,
        parent_run_id: Optional[str] = None,
        max_results: Optional[int] = None,
    ) -> list[Run]:
        """Runs newest first (by start time), filtered by experiment, status and parent."""
        where, args = [], []
        if experiment_names is not None:
            names = list(experiment_names)
            if not names:
                return []
            where.append(f"e.name IN ({','.join('?' * len(names))})")
            args.extend(names)
        if statuses is not None:
            wanted = [RunStatus.check(s) for s in statuses]
            if not wanted:
                return []
            where.append(f"r.status IN ({','.join('?' * len(wanted))})")
            args.extend(wanted)
        if parent_run_id is not None:
            where.append("r.parent_run_id = ?")
            args.append(parent_run_id)
        selected = (
            "SELECT r.run_id FROM runs r JOIN experiments e USING (experiment_id)"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY r.start_time DESC, r.rowid DESC"
        )
        if max_results is not None:
            selected += f" LIMIT {max(0, int(max_results))}"
        with self._read() as conn:
            found = {}
            for row in conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs r JOIN experiments e USING (experiment_id)"
                f" WHERE r.run_id IN ({selected}) ORDER BY r.start_time DESC, r.rowid DESC",
                args,
            ):
                found[row[0]] = self._run_from_row(row)
            # one query per table for all the runs found, whatever their number
            for table, field in (("params", "params"), ("tags", "tags"), ("latest_metrics", "metrics")):
                for run_id, key, value in conn.execute(
                    f"SELECT run_id, key, value FROM {table} WHERE run_id IN ({selected})", args
                ):
                    if run_id in found:
                        getattr(found[run_id], field)[key] = _nan_if_null(value) if field == "metrics" else value
            for row in conn.execute(f"{_SELECT_INPUTS} WHERE run_id IN ({selected}) ORDER BY rowid", args):
                if row[0] in found:
                    found[row[0]].inputs.append(_input_from_row(row))
            return list(found.values())

    def list_experiments(self) -> list[Experiment]:
        with self._read() as conn:
            return [
                Experiment(str(eid), name, ctime)
                for eid, name, ctime in conn.execute(
                    "SELECT experiment_id, name, creation_time FROM experiments ORDER BY experiment_id"
                )
            ]

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of one metric, by step, then timestamp, then the order written."""
        with self._read() as conn:
            if not _run_exists(conn, run_id):
                raise RunNotFound(run_id)
            chunks = conn.execute(
                "SELECT steps, vals, timestamps FROM metric_chunks WHERE run_id = ? AND key = ? ORDER BY chunk_id",
                (run_id, key),
            ).fetchall()
        steps, values, stamps = array("q"), array("d"), array("q")
        for s_blob, v_blob, t_blob in chunks:
            steps.frombytes(s_blob)
            values.frombytes(v_blob)
            stamps.frombytes(t_blob)
        if _SWAP:
            steps.byteswap()
            values.byteswap()
            stamps.byteswap()
        points = list(zip(steps, stamps, values))
        points.sort(key=_STEP_AND_TIME)  # then the order written: the sort is stable
        return [Metric(key, value, stamp, step) for step, stamp, value in points]

    def list_artifacts(self, run_id: str, path: Optional[str] = None) -> list[ArtifactInfo]:
        """The files and folders directly under `path` of the run's artifacts (one level, as
        MLflow lists them), read from the folder itself; [] when `path` is no folder."""
        rel = _clean_artifact_path(path)
        folder = os.path.join(self._artifact_dir(run_id), *rel.split("/")) if rel else self._artifact_dir(run_id)
        if not os.path.isdir(folder):
            return []
        out = []
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(_TMP_PREFIX):
                    continue  # a file still being copied in
                is_dir = entry.is_dir()
                out.append(ArtifactInfo(
                    "/".join(p for p in (rel, entry.name) if p), is_dir, None if is_dir else entry.stat().st_size
                ))
        return sorted(out, key=lambda a: a.path)

    def download_artifacts(self, run_id: str, path: str, dst_dir: str) -> str:
        """The artifact's own absolute path: the store is local, nothing is copied."""
        rel = _clean_artifact_path(path)
        run_dir = self._artifact_dir(run_id)
        local = os.path.join(run_dir, *rel.split("/")) if rel else run_dir
        if not os.path.exists(local):
            raise FileNotFoundError(f"no artifact {path!r} in run {run_id} (looked in {local})")
        return local

    # -- helpers for the CLI ---------------------------------------------
    def experiment_by_name(self, name: str) -> Optional[Experiment]:
        """The experiment called `name`, or None."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT experiment_id, name, creation_time FROM experiments WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else Experiment(str(row[0]), row[1], row[2])

    def metric_keys(self, run_id: str) -> list[str]:
        """The names of the metrics a run has, sorted."""
        with self._read() as conn:
            if not _run_exists(conn, run_id):
                raise RunNotFound(run_id)
            rows = conn.execute("SELECT key FROM latest_metrics WHERE run_id = ? ORDER BY key", (run_id,))
            return [key for (key,) in rows]

    def resolve_run_id(self, prefix: str) -> str:
        """The one run id that starts with `prefix` (like git's short hashes).

        Raises RunNotFound when no run matches, BackendError when several do."""
        prefix = str(prefix).strip()
        if not prefix:
            raise RunNotFound(prefix)
        with self._read() as conn:
            if _run_exists(conn, prefix):
                return prefix
            # a range over the primary key: every string that starts with `prefix`
            matches = [
                run_id
                for (run_id,) in conn.execute(
                    "SELECT run_id FROM runs WHERE run_id >= ? AND run_id < ? ORDER BY run_id LIMIT 6",
                    (prefix, prefix + "\U0010ffff"),
                )
            ]
        if not matches:
            raise RunNotFound(prefix)
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise BackendError(f"run id prefix {prefix!r} is ambiguous: it matches {shown}")
        return matches[0]


# -- module helpers ------------------------------------------------------------------------
def _run_exists(conn: sqlite3.Connection, run_id: str) -> bool:
    return conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None


def _pack_metrics(run_id: str, metrics: Sequence[Metric]) -> tuple[list, list]:
    """The rows of metric_chunks (one per key) and of latest_metrics for one batch."""
    chunk_rows, latest_rows = [], []
    for key, (values, stamps, steps) in metric_columns(metrics).items():
        try:
            s_arr, v_arr, t_arr = array("q", steps), array("d", values), array("q", stamps)
        except (OverflowError, TypeError) as exc:
            raise BackendError(
                f"metric {key!r} of run {run_id}: a step or timestamp is not a 64-bit integer, "
                f"or a value is not a number ({exc})"
            ) from exc
        # the last point: the highest step, then the latest timestamp, then the later write
        top, bottom = max(s_arr), min(s_arr)
        if s_arr.count(top) == 1:
            best = s_arr.index(top)
        else:
            best = max(reversed([i for i, s in enumerate(s_arr) if s == top]), key=t_arr.__getitem__)
        if _SWAP:
            s_arr.byteswap()
            v_arr.byteswap()
            t_arr.byteswap()
        chunk_rows.append((run_id, key, len(steps), bottom, top,
                           s_arr.tobytes(), v_arr.tobytes(), t_arr.tobytes()))
        latest_rows.append((run_id, key, values[best], steps[best], stamps[best]))
    return chunk_rows, latest_rows


def _input_from_row(row: tuple) -> DatasetInput:
    _, name, digest, source_type, source, schema, profile, tags = row
    return DatasetInput(Dataset(name, digest, source_type, source, schema, profile), json.loads(tags))


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Version 1 kept one row per point in `metrics`; pack them into metric_chunks."""
    conn.execute(_SCHEMA[_SCHEMA_CHUNKS])
    conn.execute(_SCHEMA[_SCHEMA_CHUNKS + 1])
    rows = conn.execute(
        "SELECT run_id, key, value, timestamp, step FROM metrics ORDER BY run_id, key, step, timestamp, seq"
    )
    group: list = []
    for row in rows:
        if group and (row[0], row[1]) != (group[0][0], group[0][1]):
            _write_migrated(conn, group)
            group = []
        group.append(row)
        if len(group) >= 100_000:
            _write_migrated(conn, group)
            group = []
    if group:
        _write_migrated(conn, group)
    conn.execute("DROP TABLE metrics")


def _write_migrated(conn: sqlite3.Connection, rows: list) -> None:
    run_id = rows[0][0]
    metrics = [Metric(key, _nan_if_null(value), timestamp, step) for _, key, value, timestamp, step in rows]
    chunk_rows, _ = _pack_metrics(run_id, metrics)
    conn.executemany(_INSERT_CHUNK, chunk_rows)


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Version 3 adds the table of dataset inputs (empty: no dataset was recorded before)."""
    conn.execute(_SCHEMA[_SCHEMA_INPUTS])


_SCHEMA_CHUNKS = next(i for i, statement in enumerate(_SCHEMA) if "CREATE TABLE metric_chunks" in statement)
_SCHEMA_INPUTS = next(i for i, statement in enumerate(_SCHEMA) if "CREATE TABLE dataset_inputs" in statement)
#: version -> the function that takes a store from it to the next version
_MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3}


def _param_rows(run_id: str, params: Sequence[Param]) -> list[tuple]:
    rows: dict[str, tuple] = {}
    for p in params:
        value = str(p.value)
        seen = rows.get(p.key)
        if seen is not None and seen[2] != value:
            raise BackendError(f"param {p.key!r} of run {run_id} is logged twice in one batch: {seen[2]!r} and {value!r}")
        rows[p.key] = (run_id, p.key, value)
    return list(rows.values())


def _set_wal(conn: sqlite3.Connection) -> None:
    """Switch a new database to WAL. SQLite answers "locked" at once, without its busy
    handler, while another process that is creating the same store reads it, so wait
    here (bounded by the busy timeout); a second switch is a no-op."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.002
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if not _is_transient(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _is_transient(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None and (code & 0xFF) in _TRANSIENT_CODES:
        return True
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and any(t in text for t in _TRANSIENT_TEXT)


@contextlib.contextmanager
def _sqlite_errors(root: str) -> Iterator[None]:
    """SQLite's errors as the backend protocol's: busy, locked, disk full and I/O errors
    are worth retrying (BackendUnavailable); anything else is a BackendError."""
    try:
        yield
    except sqlite3.Error as exc:
        if _is_transient(exc):
            raise BackendUnavailable(f"the autolog store at {root} is unavailable: {exc}") from exc
        raise BackendError(f"the autolog store at {root}: {exc}") from exc


def _os_error(what: str, exc: OSError) -> BackendError:
    cls = BackendUnavailable if exc.errno in _TRANSIENT_ERRNOS else BackendError
    return cls(f"{what}: {exc}")


def _clean_artifact_path(path: Optional[str]) -> str:
    """A relative, "/"-separated artifact path; refuses anything that leaves the run's folder."""
    if not path:
        return ""
    text = str(path).replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if text.startswith("/") or ".." in parts:
        raise BackendError(f"artifact path {path!r} must be relative and stay inside the run's artifacts")
    return "/".join(parts)


class _Group:
    """A thread's open group of writes: whether its transaction has begun, the files it moved."""

    __slots__ = ("open", "moves")

    def __init__(self):
        self.open = False
        self.moves: list[tuple[str, str]] = []


def _dest(run_dir: str, rel: str) -> str:
    return os.path.join(run_dir, *rel.split("/")) if rel else run_dir


def _rename(src: str, dest: str) -> None:
    """Rename `src` to `dest`, making the folders above `dest` when they are missing."""
    try:
        os.rename(src, dest)
    except FileNotFoundError:
        if not os.path.lexists(src):
            raise
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.rename(src, dest)


def _undo_moves(moves: list[tuple[str, str]]) -> None:
    """Put moved files and folders back where they came from, last first."""
    while moves:
        dest, src = moves.pop()
        try:
            os.rename(dest, src)
        except OSError as exc:
            log.warning("autolog: could not move the artifact %s back to %s (%s)", dest, src, exc)


def _place_file(src: str, run_dir: str, rel: str, moves: Optional[list]) -> list[tuple]:
    """Move (with `moves`: recorded there) or copy one file to `run_dir/rel`; its row for `artifacts`."""
    if moves is not None and not os.path.islink(src):
        dest = _dest(run_dir, rel)
        size = os.stat(src).st_size
        try:
            _rename(src, dest)
        except OSError:
            pass  # another filesystem (EXDEV), or a rename refused: copied below
        else:
            moves.append((dest, src))
            return [(rel, 0, size)]
    return _copy_file(src, run_dir, rel)


def _place_tree(src: str, run_dir: str, rel_base: str, moves: Optional[list]) -> list[tuple]:
    """Move (with `moves`) or copy a folder's contents under `run_dir/rel_base`; the rows for
    `artifacts`. A folder whose place is free moves in one rename; one that exists is merged."""
    rows = None if moves is None else _tree_rows(src, rel_base)
    if rows is None:  # a copy; or a folder that holds a link, never moved as a link: copied as ever
        return _copy_tree(src, run_dir, rel_base)
    dest = _dest(run_dir, rel_base)
    if rel_base and not os.path.lexists(dest):
        try:
            _rename(src, dest)
        except OSError as exc:
            if exc.errno == errno.EXDEV:  # another filesystem: no entry of it can be renamed either
                return _copy_tree(src, run_dir, rel_base)
        else:
            moves.append((dest, src))
            return rows
    os.makedirs(dest, exist_ok=True)
    placed: list[tuple] = []
    with os.scandir(src) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        rel = "/".join(p for p in (rel_base, entry.name) if p)
        if entry.is_dir():
            placed.append((rel, 1, None))
            placed.extend(_place_tree(entry.path, run_dir, rel, moves))
        else:
            placed.extend(_place_file(entry.path, run_dir, rel, moves))
    return placed


def _tree_rows(folder: str, rel_base: str) -> Optional[list[tuple]]:
    """The `artifacts` rows of everything under `folder`, as it would be at `rel_base`; None
    when it holds a link."""
    rows: list[tuple] = []
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        if entry.is_symlink():
            return None
        rel = f"{rel_base}/{entry.name}" if rel_base else entry.name
        if entry.is_dir():
            rows.append((rel, 1, None))
            inner = _tree_rows(entry.path, rel)
            if inner is None:
                return None
            rows.extend(inner)
        else:
            rows.append((rel, 0, entry.stat(follow_symlinks=False).st_size))
    return rows


def _copy_file(src: str, run_dir: str, rel: str) -> list[tuple]:
    """Copy one file to `run_dir/rel` through a temporary name; the rows for `artifacts`."""
    dest = _dest(run_dir, rel)
    folder = os.path.dirname(dest)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}")
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return [(rel, 0, os.path.getsize(dest))]


def _copy_tree(src: str, run_dir: str, rel_base: str) -> list[tuple]:
    """Copy a folder's contents under `run_dir/rel_base`, file by file."""
    rows = []
    os.makedirs(_dest(run_dir, rel_base), exist_ok=True)
    for folder, dirs, files in os.walk(src):
        dirs.sort()
        sub = os.path.relpath(folder, src).replace(os.sep, "/")
        rel_folder = "/".join(p for p in (rel_base, "" if sub == "." else sub) if p)
        for name in dirs:
            rel = "/".join(p for p in (rel_folder, name) if p)
            os.makedirs(_dest(run_dir, rel), exist_ok=True)
            rows.append((rel, 1, None))
        for name in sorted(files):
            rows.extend(_copy_file(os.path.join(folder, name), run_dir, "/".join(p for p in (rel_folder, name) if p)))
    return rows


__all__ = ["LocalStore", "SCHEMA_VERSION"]
