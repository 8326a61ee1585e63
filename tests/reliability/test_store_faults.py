"""Local store faults (hole 11): a permission or read-only error is transient (retried,
spilled, replayed), never a reason to set a model aside for good; and `autolog sync` sends
again what was set aside once its cause is gone.

The tests run as root on the CI machine, where chmod cannot make a folder unwritable, so the
EACCES case injects the error into the store's file rename and copy (the one fault injection of
the suite).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

import autolog
from autolog.backends import local as local_module
from autolog.backends.local import LocalStore
from autolog.entities import RunStart
from autolog.transport.journal import Journal, encode_artifact
from tests.reliability.faults import figures

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_a_permission_error_is_retried_not_set_aside(tmp_path, store, store_dir, monkeypatch, code):
    real_copy, real_rename = local_module.shutil.copy2, local_module.os.rename
    failures = []

    def copy_failing_twice(src, dst, *args, **kwargs):
        if str(dst).startswith(store_dir) and len(failures) < 2:  # writes into the store only
            failures.append(dst)
            raise OSError(code, os.strerror(code), dst)
        return real_copy(src, dst, *args, **kwargs)

    def rename_failing_meanwhile(src, dst, *args, **kwargs):
        # the logger's staged copy is moved into the store; refused, the store copies it
        if str(dst).startswith(store_dir) and len(failures) < 2:
            raise OSError(code, os.strerror(code), dst)
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(local_module.shutil, "copy2", copy_failing_twice)
    monkeypatch.setattr(local_module.os, "rename", rename_failing_meanwhile)
    f = tmp_path / "weights.bin"
    f.write_bytes(b"w" * 1000)
    with autolog.start_run() as run:
        autolog.log_artifact(str(f), artifact_path="model")
    assert autolog.flush(60)
    files = [a.path for a in store().list_artifacts(run.run_id, "model")]
    journal = tmp_path / "journal"
    rejected = [p for p in journal.rglob("rejected.jsonl")] if journal.exists() else []
    report = f"{os.strerror(code)} twice: artifacts {files}, rejected files {rejected}, {figures(1, len(files))}"
    assert files == ["model/weights.bin"], report
    assert not rejected and len(failures) == 2, report


def test_sync_replays_what_was_set_aside(tmp_path):
    target = str(tmp_path / "target")
    store = LocalStore(target)
    store.create_run(RunStart("c" * 32, "Default", "r", 1, None, {}))
    folder = str(tmp_path / "journal" / "old")
    journal = Journal(target, folder)
    model = tmp_path / "model.pkl"
    model.write_bytes(b"model")
    staged = journal.stage(str(model))
    journal._reject(encode_artifact("c" * 32, staged, "model"), PermissionError(errno.EACCES, "denied"))
    assert os.path.exists(os.path.join(folder, "rejected.jsonl"))
    out = subprocess.run([sys.executable, "-m", "autolog", "sync", "--to", target, "--journal", folder, "--json"],
                         capture_output=True, text=True, timeout=100, env=dict(os.environ, AUTOLOG_JOURNAL_DIR=str(tmp_path / "none")))
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    files = [a.path for a in LocalStore(target).list_artifacts("c" * 32, "model")]
    assert files == ["model/model.pkl"], (files, summary)
    assert not os.path.exists(os.path.join(folder, "rejected.jsonl")), summary
