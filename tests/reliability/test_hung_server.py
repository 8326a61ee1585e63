"""A tracking server that accepts connections and never answers (hole 8).

A loopback TCP server (this test's) accepts and reads, never writes. A real interpreter
logs 300,000 points (more than the queue holds) to it through the MLflow backend and exits:
logging waits at most about one request timeout (15 s: the worker's first request, after
which the backend counts as down and everything spills), the exit ends within its limit (AUTOLOG_EXIT_FLUSH_TIMEOUT) plus a margin
for the interpreter, and every point must be in the spill journal, ready for replay.
"""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest

from autolog.backends.local import LocalStore
from autolog.transport.journal import Journal
from tests.reliability.faults import figures, output, run_python

pytest.importorskip("mlflow")
pytestmark = pytest.mark.timeout(240)

POINTS = 300_000  # past the queue bound (200,000): the caller meets back-pressure
EXIT_LIMIT_S = 10.0


class SilentServer:
    """Accepts connections, reads what comes, never answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections: list = []
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)  # kept open, never answered

    def close(self):
        self.closed.set()
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def test_a_hung_server_never_holds_training_or_exit(tmp_path, silent_server):
    journal_root = tmp_path / "journal"
    proc = run_python(tmp_path, f"""
        import json, time
        import autolog
        began = time.monotonic()
        autolog.autolog()
        run = autolog.start_run(run_name="hung")
        for i in range({POINTS}):
            autolog.log_metric("loss", 1.0 / (i + 1), step=i)
        logged = time.monotonic() - began
        flushed = autolog.flush(timeout=2.0)
        print(json.dumps({{"run_id": run.run_id, "loop_s": logged, "flushed": flushed,
                           "exit_began": time.time()}}), flush=True)
    """, env={"AUTOLOG_TRACKING_URI": f"http://127.0.0.1:{silent_server.port}",
              "AUTOLOG_EXIT_FLUSH_TIMEOUT": str(EXIT_LIMIT_S), "AUTOLOG_JOURNAL_DIR": str(journal_root)},
        timeout=180)
    import time
    ended = time.time()
    assert proc.returncode == 0, output(proc)
    result = json.loads(proc.stdout.splitlines()[-1])
    exit_s = ended - result["exit_began"]
    folders = [journal_root / name for name in os.listdir(journal_root)]
    replayed = LocalStore(str(tmp_path / "replayed"))
    for folder in folders:
        Journal("replay", folder=str(folder)).replay(replayed)
    stored = len(replayed.get_metric_history(result["run_id"], "loss"))
    report = (f"hung server: logging loop {result['loop_s']:.2f} s, flush(2 s) -> {result['flushed']}, "
              f"exit {exit_s:.2f} s (limit {EXIT_LIMIT_S} s); journalled: {figures(POINTS, stored)}\n{output(proc)}")
    print(report)
    assert result["flushed"] is False, report
    assert result["loop_s"] < 40.0, report  # one 15 s read timeout, then spilling
    assert exit_s < EXIT_LIMIT_S + 15.0, report  # the limit, plus the interpreter's own teardown
    assert stored == POINTS, report
    assert replayed.get_run(result["run_id"]).status == "FINISHED", report
