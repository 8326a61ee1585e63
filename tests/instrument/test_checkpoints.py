"""Checkpoint capture: the snapshot taken at the call is what the run receives, whatever the
framework does to the file next; keep_last; log_checkpoints=False; folders; the sidecar."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import threading

import numpy as np
import pytest

import autolog
from autolog import runs
from autolog.instrument import checkpoints
from autolog.instrument.checkpoints import CapturedFiles, capture_checkpoint, wait_for_checkpoint


def store():
    return runs._reader()


def artifact_paths(run_id: str, path: str = "checkpoints") -> list[str]:
    found = []
    for info in store().list_artifacts(run_id, path):
        if info.is_dir:
            found.extend(artifact_paths(run_id, info.path))
        else:
            found.append(info.path)
    return sorted(found)


def read_artifact(run_id: str, path: str, tmp_path, mode: str = "rb"):
    local = store().download_artifacts(run_id, path, tempfile.mkdtemp(dir=tmp_path))
    with open(local, mode) as fh:
        return fh.read()


def sidecar(run_id: str, name: str, tmp_path) -> dict:
    return json.loads(read_artifact(run_id, f"checkpoints/{name}.json", tmp_path, "r"))


def staged_left() -> list[str]:
    staged = os.path.join(runs.logger_for().journal.folder, "staged")
    return os.listdir(staged) if os.path.isdir(staged) else []


def write(path, data: bytes) -> None:
    with open(path, "wb") as fh:  # as torch.save and Keras write: the same inode, truncated
        fh.write(data)


def test_a_file_rewritten_in_place_after_capture_is_delivered_with_its_old_content(tmp_path):
    path = tmp_path / "last.ckpt"
    write(path, b"epoch 1" * 1000)
    with autolog.start_run() as run:
        assert capture_checkpoint(run, str(path), step=1, metrics={"val_loss": np.float32(0.5)},
                                  integration="test") is True
        wait_for_checkpoint(str(path))  # what an integration calls before the framework saves again
        write(path, b"epoch 2")
    assert autolog.flush(60)
    assert artifact_paths(run.run_id) == ["checkpoints/last.ckpt", "checkpoints/last.ckpt.json"]
    assert read_artifact(run.run_id, "checkpoints/last.ckpt", tmp_path) == b"epoch 1" * 1000
    meta = sidecar(run.run_id, "last.ckpt", tmp_path)
    assert meta["step"] == 1 and meta["metrics"] == {"val_loss": 0.5}
    assert meta["kind"] == "file" and meta["size_bytes"] == 7000 and meta["integration"] == "test"
    assert meta["source"] == str(path) and meta["artifact_path"] == "checkpoints/last.ckpt"
    assert meta["snapshot"] in ("reflink", "copy_file_range", "sendfile", "read/write")
    assert staged_left() == []


def test_a_file_replaced_or_deleted_right_after_capture_is_delivered_with_its_old_content(tmp_path):
    """Frameworks that write a new file and rename it over the old one, or delete old
    checkpoints: no wait is needed, the snapshot holds the captured file."""
    replaced, deleted = tmp_path / "replaced.ckpt", tmp_path / "deleted.ckpt"
    write(replaced, b"old replaced")
    write(deleted, b"old deleted")
    with autolog.start_run() as run:
        assert capture_checkpoint(run, str(replaced), step=1)
        assert capture_checkpoint(run, str(deleted), step=1)
        write(tmp_path / "tmp", b"new content")
        os.replace(tmp_path / "tmp", replaced)
        os.unlink(deleted)
    assert autolog.flush(60)
    assert read_artifact(run.run_id, "checkpoints/replaced.ckpt", tmp_path) == b"old replaced"
    assert read_artifact(run.run_id, "checkpoints/deleted.ckpt", tmp_path) == b"old deleted"


@pytest.mark.parametrize("same_size", [False, True])
def test_a_file_rewritten_while_it_is_copied_is_not_delivered_torn(tmp_path, monkeypatch, caplog, same_size):
    """The framework writes the file again while the copy runs (no wait_for_checkpoint): the
    guard sees it, says so once, and delivers nothing rather than a torn file."""
    path = tmp_path / "model.pt"
    write(path, b"a" * 4096)
    os.utime(path, ns=(10**18, 10**18))  # written a while ago (an epoch takes longer than a clock tick)
    real_copy = checkpoints._copy_content

    def framework_writes_during_the_copy(src, dst, size):
        write(path, b"b" * (4096 if same_size else 10))
        return real_copy(src, dst, size)

    monkeypatch.setattr(checkpoints, "_copy_content", framework_writes_during_the_copy)
    with caplog.at_level(logging.WARNING, logger="autolog"):
        with autolog.start_run() as run:
            assert capture_checkpoint(run, str(path), step=3, integration="torch")
        assert autolog.flush(60)
    assert artifact_paths(run.run_id) == []
    warnings = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and "model.pt" in warnings[0] and "rewritten while it was copied" in warnings[0]
    assert staged_left() == []


def test_keep_last_delivers_only_the_last_k_checkpoints_when_the_run_ends(tmp_path):
    with autolog.start_run() as run:
        for epoch in range(5):
            path = tmp_path / f"epoch={epoch}.ckpt"
            write(path, f"weights {epoch}".encode())
            assert capture_checkpoint(run, str(path), step=epoch, keep_last=2)
        write(tmp_path / "epoch=3.ckpt", b"weights 3, saved again")  # the same name again: replaces it
        wait_for_checkpoint(str(tmp_path / "epoch=3.ckpt"))
        assert capture_checkpoint(run, str(tmp_path / "epoch=3.ckpt"), step=30, keep_last=2)
        assert autolog.flush(60)
        assert artifact_paths(run.run_id) == []  # held back until the run ends
    assert autolog.flush(60)
    assert artifact_paths(run.run_id) == ["checkpoints/epoch=3.ckpt", "checkpoints/epoch=3.ckpt.json",
                                          "checkpoints/epoch=4.ckpt", "checkpoints/epoch=4.ckpt.json"]
    assert read_artifact(run.run_id, "checkpoints/epoch=3.ckpt", tmp_path) == b"weights 3, saved again"
    assert sidecar(run.run_id, "epoch=3.ckpt", tmp_path)["step"] == 30
    assert read_artifact(run.run_id, "checkpoints/epoch=4.ckpt", tmp_path) == b"weights 4"
    assert staged_left() == []  # the dropped snapshots' copies are gone too


def test_without_keep_last_every_checkpoint_is_kept(tmp_path):
    with autolog.start_run() as run:
        for epoch in range(3):
            path = tmp_path / f"e{epoch}.ckpt"
            write(path, bytes([epoch]) * 10)
            capture_checkpoint(run, str(path), step=epoch)
        assert autolog.flush(60)
        # delivered while the run goes on
        assert [p for p in artifact_paths(run.run_id) if not p.endswith(".json")] == [
            "checkpoints/e0.ckpt", "checkpoints/e1.ckpt", "checkpoints/e2.ckpt"]


def test_captured_files_capture_a_file_again_only_once_it_is_written_again(tmp_path, monkeypatch):
    path, missing = tmp_path / "best.keras", tmp_path / "not-written.keras"
    write(path, b"weights 1")
    waited = []
    monkeypatch.setattr(checkpoints, "wait_for_checkpoint", lambda p, timeout=None: waited.append(p))
    with autolog.start_run() as run:
        files = CapturedFiles(run, integration="test", keep_last=None)
        assert files.capture(str(path), step=0, metrics={"loss": 1.0}) is True
        assert files.capture(str(path), step=1) is False  # not written since: the same file
        assert files.capture(str(missing), step=1) is False  # not written this time (save_best_only)
        os.utime(path, ns=(10**18, 10**18))
        write(path, b"weights 3")
        assert files.capture(os.path.relpath(path), step=2) is True  # written again, by another spelling
        assert len(files) == 1
        files.wait()
        assert waited == [str(path)]
    assert autolog.flush(60)
    assert read_artifact(run.run_id, "checkpoints/best.keras", tmp_path) == b"weights 3"
    assert sidecar(run.run_id, "best.keras", tmp_path)["step"] == 2


def test_log_checkpoints_false_does_nothing(tmp_path):
    path = tmp_path / "model.ckpt"
    write(path, b"x")
    runs.set_settings(runs.settings().replace(log_checkpoints=False))
    with autolog.start_run() as run:
        before = staged_left()
        assert capture_checkpoint(run, str(path), step=1) is False
        assert capture_checkpoint(run, str(path), step=1, keep_last=1) is False
        assert staged_left() == before
    assert autolog.flush(60)
    assert store().list_artifacts(run.run_id) == []


def test_log_checkpoints_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOLOG_LOG_CHECKPOINTS", "false")
    autolog.autolog(integrations=[])
    write(tmp_path / "m.ckpt", b"x")
    with autolog.start_run() as run:
        assert capture_checkpoint(run, str(tmp_path / "m.ckpt")) is False


def test_a_folder_is_captured_with_its_contents(tmp_path):
    folder = tmp_path / "saved_model"
    (folder / "variables").mkdir(parents=True)
    (folder / "assets").mkdir()  # an empty folder
    write(folder / "saved_model.pb", b"graph v1")
    write(folder / "variables" / "variables.data-00000-of-00001", b"weights v1")
    with autolog.start_run() as run:
        assert capture_checkpoint(run, str(folder), step=2, metrics={"loss": 0.25, "nan": float("nan")})
        wait_for_checkpoint(str(folder / "variables" / "variables.data-00000-of-00001"))
        write(folder / "variables" / "variables.data-00000-of-00001", b"weights v2")
        os.unlink(folder / "saved_model.pb")
    assert autolog.flush(60)
    assert artifact_paths(run.run_id) == ["checkpoints/saved_model.json", "checkpoints/saved_model/saved_model.pb",
                                          "checkpoints/saved_model/variables/variables.data-00000-of-00001"]
    assert read_artifact(run.run_id, "checkpoints/saved_model/saved_model.pb", tmp_path) == b"graph v1"
    assert read_artifact(run.run_id, "checkpoints/saved_model/variables/variables.data-00000-of-00001",
                         tmp_path) == b"weights v1"
    meta = sidecar(run.run_id, "saved_model", tmp_path)
    assert meta["kind"] == "folder" and meta["size_bytes"] == len(b"graph v1") + len(b"weights v1")
    assert meta["metrics"] == {"loss": 0.25}  # NaN is not a number JSON readers take


def test_a_missing_path_is_warned_once_and_not_captured(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="autolog"):
        with autolog.start_run() as run:
            assert capture_checkpoint(run, str(tmp_path / "nope.ckpt"), step=1, integration="keras") is False
            assert capture_checkpoint(run, str(tmp_path / "nope.ckpt"), step=2, integration="keras") is False
    assert len([r for r in caplog.records if "nope.ckpt" in r.getMessage()]) == 1
    with pytest.raises(ValueError, match="keep_last"):
        capture_checkpoint(run, str(tmp_path), keep_last=0)


def test_a_checkpoint_on_another_filesystem_is_copied_without_a_link(tmp_path, monkeypatch):
    """The staging folder on tmpfs, the checkpoint on the disk: no hard link is possible."""
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a filesystem of its own")
    journal = tempfile.mkdtemp(prefix="autolog-test-journal-", dir="/dev/shm")
    monkeypatch.setenv("AUTOLOG_JOURNAL_DIR", journal)
    try:
        path = tmp_path / "far.ckpt"
        write(path, b"far away" * 100)
        with autolog.start_run() as run:
            assert capture_checkpoint(run, str(path), step=1)
            wait_for_checkpoint(str(path))
            write(path, b"rewritten")
        assert autolog.flush(60)
        assert read_artifact(run.run_id, "checkpoints/far.ckpt", tmp_path) == b"far away" * 100
    finally:
        import shutil

        autolog.flush(60)
        shutil.rmtree(journal, ignore_errors=True)


def test_a_reflink_filesystem_is_used_when_there_is_one(tmp_path, monkeypatch):
    """Set AUTOLOG_TEST_REFLINK_DIR to a folder on btrfs / XFS (reflink=1) to run this one."""
    folder = os.environ.get("AUTOLOG_TEST_REFLINK_DIR")
    if not folder:
        pytest.skip("AUTOLOG_TEST_REFLINK_DIR names no reflink-capable folder")
    base = tempfile.mkdtemp(dir=folder)
    monkeypatch.setenv("AUTOLOG_JOURNAL_DIR", os.path.join(base, "journal"))
    try:
        path = os.path.join(base, "model.ckpt")
        write(path, b"cloned" * 1000)
        with autolog.start_run() as run:
            assert capture_checkpoint(run, path, step=1)
            wait_for_checkpoint(path)
            write(path, b"new")
        assert autolog.flush(60)
        assert read_artifact(run.run_id, "checkpoints/model.ckpt", tmp_path) == b"cloned" * 1000
        assert sidecar(run.run_id, "model.ckpt", tmp_path)["snapshot"] == "reflink"
    finally:
        import shutil

        autolog.flush(60)
        shutil.rmtree(base, ignore_errors=True)


def test_held_checkpoints_of_a_run_never_ended_are_delivered_at_exit(tmp_path):
    """A helper thread's run is not ended at exit; its keep_last checkpoints still arrive."""
    program = textwrap.dedent("""
        import sys, threading, autolog
        from autolog.instrument.checkpoints import capture_checkpoint
        path = sys.argv[1]
        with open(path, "wb") as fh:
            fh.write(b"kept at exit")
        def train():
            run = autolog.start_run(run_name="helper")
            assert capture_checkpoint(run, path, step=7, keep_last=1)
            print(run.run_id)
        thread = threading.Thread(target=train)
        thread.start()
        thread.join()
    """)
    env = dict(os.environ)
    done = subprocess.run([sys.executable, "-c", program, str(tmp_path / "exit.ckpt")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    assert artifact_paths(run_id) == ["checkpoints/exit.ckpt", "checkpoints/exit.ckpt.json"]
    assert read_artifact(run_id, "checkpoints/exit.ckpt", tmp_path) == b"kept at exit"


def test_captures_from_several_threads(tmp_path):
    """More captures at once than MAX_PENDING_COPIES: the callers wait for room, none is lost."""
    count = checkpoints.MAX_PENDING_COPIES * 3
    with autolog.start_run() as run:
        def capture(i):
            path = tmp_path / f"t{i}.ckpt"
            write(path, bytes([i]) * 100_000)
            assert capture_checkpoint(run, str(path), step=i)

        threads = [threading.Thread(target=capture, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert autolog.flush(60)
    delivered = [p for p in artifact_paths(run.run_id) if p.endswith(".ckpt")]
    assert len(delivered) == count
    assert read_artifact(run.run_id, "checkpoints/t5.ckpt", tmp_path) == bytes([5]) * 100_000
