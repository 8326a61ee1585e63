"""A real `mlflow server` for the MLflow backend's tests.

`MlflowServer` starts `mlflow server` in its own process group on a loopback port
(SQLite backend store, local artifact folder, `--serve-artifacts`), waits for its
`/health` answer (bounded), and stops it with SIGTERM then SIGKILL of the group. It
can be stopped and started again on the same port and store (the outage tests).

The `mlflow_server` fixture is session-scoped: an MLflow server takes seconds to
start and the machine has two cores, so the whole suite shares one. Each test gets
its own experiment name (`mlflow_experiment`), so tests never read each other's runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mlflow_executable() -> list[str]:
    """`mlflow` of the interpreter running the tests (the venv's)."""
    candidate = os.path.join(os.path.dirname(sys.executable), "mlflow")
    if os.path.exists(candidate):
        return [candidate]
    return [sys.executable, "-m", "mlflow"]


class MlflowServer:
    """One `mlflow server` process (group) with its store in `folder`."""

    def __init__(self, folder: str, port: int | None = None, extra_args: tuple = (), extra_env: dict | None = None):
        self.folder = folder
        self.extra_args = tuple(extra_args)  # e.g. ("--app-name", "basic-auth")
        self.extra_env = dict(extra_env or {})
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.backend_store = f"sqlite:///{os.path.join(folder, 'mlflow.db')}"
        self.artifacts = os.path.join(folder, "artifacts")
        self.log_path = os.path.join(folder, "server.log")
        self.process: subprocess.Popen | None = None
        os.makedirs(folder, exist_ok=True)

    def start(self, timeout: float = START_TIMEOUT_S) -> "MlflowServer":
        env = dict(os.environ)
        for name in ("MLFLOW_TRACKING_URI", "AUTOLOG_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                     "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
            env.pop(name, None)
        env.update(self.extra_env)
        command = mlflow_executable() + [
            "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", self.backend_store,
            "--artifacts-destination", self.artifacts, "--serve-artifacts", *self.extra_args,
        ]
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(command, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        finally:
            log.close()
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(delay)  # polling a starting process; not a timing assertion
            delay = min(0.5, delay * 2)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer /health within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the whole process group (server and its workers), then SIGKILL."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill_group(process)
        else:
            self.kill_group(process)  # workers that outlived the parent

    def kill(self) -> None:
        """An outage: SIGKILL of the whole group, no clean shutdown."""
        process, self.process = self.process, None
        if process is not None:
            self.kill_group(process)

    @staticmethod
    def kill_group(process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, chars: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read()[-chars:].decode("utf-8", "replace")
        except OSError:
            return ""


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(str(tmp_path_factory.mktemp("mlflow-server")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mlflow_uri(mlflow_server, monkeypatch):
    """autolog logs into the shared server in this test."""
    monkeypatch.setenv("AUTOLOG_TRACKING_URI", mlflow_server.url)
    return mlflow_server.url


@pytest.fixture
def mlflow_experiment(monkeypatch):
    """An experiment name of this test's own (runs of other tests never show up)."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("AUTOLOG_EXPERIMENT", name)
    return name


@pytest.fixture
def mlflow_client(mlflow_server):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url)


@pytest.fixture
def new_mlflow_server(tmp_path):
    """Start a server of this test's own (for tests that kill it); stopped after the test."""
    started: list[MlflowServer] = []

    def start(name: str = "mlflow-server", **options) -> MlflowServer:
        server = MlflowServer(str(tmp_path / name), **options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def closed_port_url() -> str:
    """An http URL on a loopback port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"
