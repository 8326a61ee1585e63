"""`autolog sync` from a crafted store (hole 12a): a run id such as `../../x` or an artifact
path leaving the run's folder is refused; nothing is written outside the target store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from autolog.backends.base import BackendError
from autolog.backends.local import LocalStore
from autolog.entities import RunStart

pytestmark = pytest.mark.timeout(120)


def db_of(folder):
    return next(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".db"))


def all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_a_crafted_run_id_never_writes_outside_the_target(tmp_path):
    src, dst = str(tmp_path / "src" / "store"), str(tmp_path / "dst" / "store")
    store = LocalStore(src)
    store.create_run(RunStart("a" * 32, "Default", "good", 1, None, {}))
    store.create_run(RunStart("b" * 32, "Default", "crafted", 2, None, {}))
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    store.log_artifact("b" * 32, str(payload), None)
    store.end_run("a" * 32, "FINISHED", 3)
    with sqlite3.connect(db_of(src)) as conn:  # what a crafted store holds
        for table in ("runs", "artifacts", "params", "tags", "latest_metrics", "metric_chunks", "dataset_inputs"):
            try:
                conn.execute(f"UPDATE {table} SET run_id = ? WHERE run_id = ?", ("../../../escaped", "b" * 32))
            except sqlite3.OperationalError:
                pass
    before = set(all_files(str(tmp_path)))
    out = subprocess.run([sys.executable, "-m", "autolog", "sync", "--from", src, "--to", dst, "--json"],
                         capture_output=True, text=True, timeout=100)
    after = set(all_files(str(tmp_path)))
    written = sorted(after - before)
    outside = [p for p in written if not p.startswith(os.path.join("dst", "store"))]
    assert not outside, (outside, out.stdout, out.stderr)
    assert "unsafe run id" in out.stdout + out.stderr, out.stdout + out.stderr
    assert LocalStore(dst).get_run("a" * 32).status == "FINISHED"


def test_the_local_store_refuses_unsafe_ids(tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    for bad in ("../x", "a/b", "..", "", "x" * 65, "a.b"):
        with pytest.raises(BackendError, match="unsafe run id"):
            store.create_run(RunStart(bad, "Default", "n", 1, None, {}))
