"""`autolog sync` into a real MLflow server: a second sync with nothing to copy reads the
server's runs in one search and skips each complete copy by its `autolog.synced` fingerprint
(no history or artifact listing per run: counted on the wire); a run that changed since is
compared and completed. On a terminal sync draws a progress bar; piped, it prints none."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest

pytest.importorskip("mlflow")
import requests  # noqa: E402  (comes with mlflow)

import autolog  # noqa: E402
from autolog.backends import get_backend  # noqa: E402
from autolog.transport.sync import TAG_SYNCED, sync  # noqa: E402

RUNS = 6


@pytest.fixture
def wire(monkeypatch):
    """The paths of every HTTP request this process sends."""
    sent: list[str] = []
    original = requests.Session.send

    def counting_send(self, request, **kwargs):
        sent.append(requests.utils.urlparse(request.url).path)
        return original(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", counting_send)
    return sent


@pytest.fixture
def local_runs(store_dir, mlflow_experiment):
    """RUNS finished runs in the local store: 3 metric keys of 5 steps, params, an artifact."""
    ids = []
    for index in range(RUNS):
        with autolog.start_run(f"run-{index}", experiment=mlflow_experiment) as run:
            autolog.log_params({"index": index, "lr": 0.1})
            for step in range(5):
                autolog.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 5, "lr": 0.1}, step=step)
            autolog.log_text("notes", "notes/readme.txt")
        ids.append(run.run_id)
    autolog.flush()
    return ids


def test_a_second_sync_with_nothing_to_copy_sends_a_handful_of_requests(store_dir, local_runs, mlflow_server, wire,
                                                                          mlflow_client, mlflow_experiment):
    first = sync(store_dir, mlflow_server.url)
    assert (first.runs_copied, first.errors) == (RUNS, [])
    copies = {get_backend(mlflow_server.url).get_run(r).tags.get(TAG_SYNCED) for r in local_runs}
    assert None not in copies

    wire.clear()
    second = sync(store_dir, mlflow_server.url)
    assert (second.runs_skipped, second.runs_copied, second.runs_updated) == (RUNS, 0, 0)
    assert not any(p.endswith(("/metrics/get-history", "/artifacts/list", "/runs/get")) for p in wire), wire
    assert len(wire) <= 6, wire  # experiments and one search of runs, not requests per run

    # a run that changed since its copy is compared in full and completed
    with autolog.start_run(run_id=local_runs[0]):
        autolog.log_metric("loss", 0.01, step=5)
    autolog.flush()
    third = sync(store_dir, mlflow_server.url)
    assert (third.runs_updated, third.runs_skipped, third.metric_points) == (1, RUNS - 1, 1)
    mlflow_id = get_backend(mlflow_server.url).mlflow_run_id(local_runs[0])
    assert [m.step for m in mlflow_client.get_metric_history(mlflow_id, "loss")] == list(range(6))


CONSOLE_SCRIPT = os.path.join(os.path.dirname(sys.executable), "autolog")


def run_sync(store_dir: str, target: str, terminal: bool) -> tuple[int, str, str]:
    command = [CONSOLE_SCRIPT, "sync", "--from", store_dir, "--to", target]
    env = dict(os.environ, COLUMNS="100")
    if not terminal:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        return done.returncode, done.stdout, done.stderr
    leader, follower = pty.openpty()  # stderr is a terminal
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=follower, text=True, env=env)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closes with the process
                break
            if not chunk:
                break
            chunks.append(chunk)
        out = process.stdout.read()
        process.wait(timeout=300)
    finally:
        os.close(leader)
    return process.returncode, out, b"".join(chunks).decode()


def test_progress_bar_on_a_terminal_and_none_when_piped(store_dir, local_runs, tmp_path):
    code, out, err = run_sync(store_dir, str(tmp_path / "copy-a"), terminal=True)
    assert code == 0 and f"runs:     {RUNS} copied" in out
    assert f"sync [{'#' * 24}] {RUNS}/{RUNS} runs" in err and "\r" in err
    code, out, err = run_sync(store_dir, str(tmp_path / "copy-b"), terminal=False)
    assert code == 0 and f"runs:     {RUNS} copied" in out
    assert err == ""  # piped: no progress, nothing else
    report = json.loads(subprocess.run([CONSOLE_SCRIPT, "sync", "--from", store_dir, "--to", str(tmp_path / "copy-b"),
                                        "--json"], capture_output=True, text=True, timeout=300).stdout)
    assert report["runs_skipped"] == RUNS
