"""The MLflow backend against a real `mlflow server` (tests/backends/conftest.py).

What a user of the MLflow UI looks at is read back with MLflow's own `MlflowClient`:
experiments, run names, nesting, status, source tags, params, metric histories,
artifacts. Requests are counted on the wire (a counting pass-through around
`requests.Session.send`), not guessed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

pytest.importorskip("mlflow", reason="the MLflow backend's tests need the mlflow package (autolog[mlflow])")

import requests  # noqa: E402  (comes with mlflow)
import autolog  # noqa: E402
from autolog import runs  # noqa: E402
from autolog.backends import (  # noqa: E402
    BackendError,
    BackendUnavailable,
    CredentialsRefused,
    RunNotFound,
    backend_kind,
    get_backend,
    resolve_tracking_uri,
)
from autolog.backends.mlflow import MLFLOW_BATCH_LIMITS, TAG_MLFLOW_RUN_ID, TAG_RUN_ID, MlflowBackend  # noqa: E402
from autolog.entities import Metric, Param, RunStart  # noqa: E402


class RequestLog:
    """Every HTTP request this process sends, by (method, path), with its JSON body."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict, dict]] = []

    def record(self, request) -> None:
        body = {}
        if request.body and request.headers.get("Content-Type", "").startswith("application/json"):
            try:
                body = json.loads(request.body)
            except ValueError:
                body = {}
        path = requests.utils.urlparse(request.url).path
        with self.lock:
            self.requests.append((request.method, path, body, dict(request.headers)))

    def to(self, suffix: str) -> list[tuple[str, str, dict, dict]]:
        with self.lock:
            return [r for r in self.requests if r[1].endswith(suffix)]


@pytest.fixture
def request_log(monkeypatch):
    log = RequestLog()
    original = requests.Session.send

    def counting_send(self, request, **kwargs):
        log.record(request)
        return original(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", counting_send)
    return log


def mlflow_run_of(client, experiment: str, autolog_id: str):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment!r} was not created"
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.`autolog.run_id` = '{autolog_id}'")
    assert len(found) == 1, f"{len(found)} MLflow runs carry autolog.run_id={autolog_id}"
    return found[0]


# -- choosing the backend ----------------------------------------------------------------------

def test_uris_that_choose_the_mlflow_backend(monkeypatch):
    for uri in ("http://host:5000", "https://mlflow.example.com", "databricks", "databricks://profile",
                "mlflow+sqlite:///mlflow.db", "mlflow+file:///tmp/mlruns"):
        assert backend_kind(uri) == "mlflow", uri
    monkeypatch.delenv("AUTOLOG_TRACKING_URI")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri() == "http://127.0.0.1:5999"  # MLflow's own variable, when no autolog one
    monkeypatch.setenv("AUTOLOG_TRACKING_URI", "http://127.0.0.1:5998")
    assert resolve_tracking_uri() == "http://127.0.0.1:5998"
    assert resolve_tracking_uri("http://other:5000") == "http://other:5000"


def test_mlflow_sqlite_store_through_the_explicit_form(tmp_path, monkeypatch):
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("AUTOLOG_TRACKING_URI", f"mlflow+sqlite:///{db}")
    with autolog.start_run("on-sqlite", experiment="sqlite-exp") as run:
        autolog.log_param("alpha", 0.5)
        autolog.log_metric("loss", 0.25, step=3)
    autolog.flush()
    from mlflow.tracking import MlflowClient

    found = mlflow_run_of(MlflowClient(tracking_uri=f"sqlite:///{db}"), "sqlite-exp", run.run_id)
    assert found.data.params == {"alpha": "0.5"}
    assert found.data.metrics == {"loss": 0.25}
    assert found.info.status == "FINISHED"


def test_missing_mlflow_is_a_clear_error_at_autolog_time(tmp_path):
    code = textwrap.dedent("""
        import sys
        import autolog
        from autolog.backends import BackendError
        autolog.autolog(tracking_uri="http://127.0.0.1:1")
        print("mlflow imported by autolog():", "mlflow" in sys.modules)  # it takes seconds: not at call time
        autolog.autolog(disable=True)
        sys.modules["mlflow"] = None  # as if mlflow were not installed
        try:
            autolog.autolog(tracking_uri="http://127.0.0.1:1")
        except BackendError as exc:
            print("ERROR:", exc)
        else:
            print("NO ERROR")
    """)
    env = dict(os.environ, AUTOLOG_JOURNAL_DIR=str(tmp_path / "journal"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=str(tmp_path))
    assert "mlflow imported by autolog(): False" in out.stdout, out.stdout + out.stderr
    assert "ERROR:" in out.stdout, out.stdout + out.stderr
    assert "pip install 'autolog[mlflow]'" in out.stdout


# -- the mapping ----------------------------------------------------------------------------------

def test_run_round_trip_as_mlflow_shows_it(mlflow_uri, mlflow_experiment, mlflow_client):
    with autolog.start_run("round-trip", experiment=mlflow_experiment, tags={"team": "vision"}) as run:
        autolog.log_params({"lr": 0.01, "optimizer": "adam"})
        for step in range(5):
            autolog.log_metric("loss", 1.0 / (step + 1), step=step, timestamp=1_700_000_000_000 + step)
        autolog.set_tag("stage", "dev")
    autolog.flush()

    found = mlflow_run_of(mlflow_client, mlflow_experiment, run.run_id)
    assert found.info.run_name == "round-trip"
    assert found.info.status == "FINISHED"
    assert found.info.start_time == run.start_time and found.info.end_time == run.end_time
    assert found.data.params == {"lr": "0.01", "optimizer": "adam"}
    history = mlflow_client.get_metric_history(found.info.run_id, "loss")
    assert [(m.step, m.value, m.timestamp) for m in sorted(history, key=lambda m: m.step)] == [
        (s, 1.0 / (s + 1), 1_700_000_000_000 + s) for s in range(5)]
    tags = found.data.tags
    assert tags["team"] == "vision" and tags["stage"] == "dev"
    assert tags[TAG_RUN_ID] == run.run_id
    assert tags["mlflow.runName"] == "round-trip"
    # MLflow's source columns, next to autolog's own tags
    assert tags["mlflow.source.name"] == tags["autolog.source.script"]
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"] == tags["autolog.user"]
    if "autolog.source.git.commit" in tags:
        assert tags["mlflow.source.git.commit"] == tags["autolog.source.git.commit"]

    # read back through autolog: the autolog id, with the MLflow id beside it
    back = autolog.get_run(run.run_id)
    assert back.run_id == run.run_id
    assert back.tags[TAG_MLFLOW_RUN_ID] == found.info.run_id
    assert back.experiment_name == mlflow_experiment
    assert back.params == {"lr": "0.01", "optimizer": "adam"} and back.metrics == {"loss": 0.2}
    assert autolog.get_run(found.info.run_id).run_id == run.run_id  # an MLflow id is accepted too
    history = get_backend(mlflow_uri).get_metric_history(run.run_id, "loss")
    assert [m.step for m in history] == list(range(5))


def test_nested_runs_carry_the_parent_in_mlflow(mlflow_uri, mlflow_experiment, mlflow_client):
    with autolog.start_run("parent", experiment=mlflow_experiment) as parent:
        with autolog.start_run("child", nested=True) as child:
            autolog.log_metric("score", 0.9)
    autolog.flush()
    mlflow_parent = mlflow_run_of(mlflow_client, mlflow_experiment, parent.run_id)
    mlflow_child = mlflow_run_of(mlflow_client, mlflow_experiment, child.run_id)
    assert mlflow_child.data.tags["mlflow.parentRunId"] == mlflow_parent.info.run_id
    assert autolog.get_run(child.run_id).parent_run_id == parent.run_id
    children = autolog.search_runs(mlflow_experiment, parent_run_id=parent.run_id, output_format="list")
    assert [r.run_id for r in children] == [child.run_id]
    assert {r.run_id for r in autolog.search_runs(mlflow_experiment, status="FINISHED", output_format="list")} == {parent.run_id, child.run_id}


def test_failed_run_status(mlflow_uri, mlflow_experiment, mlflow_client):
    with pytest.raises(ZeroDivisionError):
        with autolog.start_run("fails", experiment=mlflow_experiment) as run:
            1 / 0
    autolog.flush()
    found = mlflow_run_of(mlflow_client, mlflow_experiment, run.run_id)
    assert found.info.status == "FAILED"
    assert found.data.tags["autolog.error"].startswith("ZeroDivisionError")


def test_artifacts_files_and_folders(mlflow_uri, mlflow_experiment, mlflow_client, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("1,2\n")
    (folder / "sub" / "b.json").write_text("{}")
    with autolog.start_run("artifacts", experiment=mlflow_experiment) as run:
        autolog.log_artifact(str(tmp_path / "notes.txt"))
        autolog.log_artifact(str(tmp_path / "notes.txt"), "docs/text")
        autolog.log_artifacts(str(folder), "plots")
        autolog.log_text("summary", "reports/summary.md")
    autolog.flush()
    found = mlflow_run_of(mlflow_client, mlflow_experiment, run.run_id)

    def files(path=None):
        out = []
        for info in mlflow_client.list_artifacts(found.info.run_id, path):
            out.extend(files(info.path) if info.is_dir else [info.path])
        return sorted(out)

    assert files() == ["docs/text/notes.txt", "notes.txt", "plots/a.csv", "plots/sub/b.json", "reports/summary.md"]
    local = get_backend(mlflow_uri).download_artifacts(run.run_id, "docs/text/notes.txt", str(tmp_path / "dl"))
    assert open(local).read() == "hello"
    listed = get_backend(mlflow_uri).list_artifacts(run.run_id, "plots")
    assert {(a.path, a.is_dir) for a in listed} == {("plots/a.csv", False), ("plots/sub", True)}


# -- batching -------------------------------------------------------------------------------------

def test_a_hundred_epochs_are_a_handful_of_requests(mlflow_uri, mlflow_experiment, request_log):
    with autolog.start_run("epochs", experiment=mlflow_experiment) as run:
        autolog.log_params({f"hp{i}": i for i in range(20)})
        for epoch in range(100):
            autolog.log_metrics({"loss": 1.0 / (epoch + 1), "accuracy": epoch / 100, "val_loss": 2.0 / (epoch + 1)},
                                step=epoch)
    autolog.flush()
    batches = request_log.to("/runs/log-batch")
    points = sum(len(body.get("metrics", [])) for _, _, body, _ in batches)
    assert points == 300
    assert 1 <= len(batches) <= 5, f"{len(batches)} log-batch requests for 100 epochs"
    assert not request_log.to("/runs/log-metric") and not request_log.to("/runs/log-parameter")
    # the whole run (experiment, create, batches, end) is a handful of requests, not hundreds
    assert len(request_log.requests) <= 12, [r[1] for r in request_log.requests]
    assert len(autolog.get_run(run.run_id).params) == 20


def test_batches_stay_within_mlflow_request_limits(mlflow_uri, mlflow_experiment, mlflow_client, request_log):
    with autolog.start_run("big", experiment=mlflow_experiment) as run:
        autolog.log_params({f"p{i}": i for i in range(250)})
        autolog.set_tags({f"t{i}": i for i in range(150)})
        for step in range(2500):
            autolog.log_metric("m", float(step), step=step)
    autolog.flush()
    batches = [body for _, _, body, _ in request_log.to("/runs/log-batch")]
    for body in batches:
        metrics, params, tags = (len(body.get(k, [])) for k in ("metrics", "params", "tags"))
        assert metrics <= MLFLOW_BATCH_LIMITS.max_metrics and params <= MLFLOW_BATCH_LIMITS.max_params
        assert tags <= MLFLOW_BATCH_LIMITS.max_tags and metrics + params + tags <= MLFLOW_BATCH_LIMITS.max_total
    assert sum(len(b.get("metrics", [])) for b in batches) == 2500
    assert len(batches) <= 8  # 2900 records in chunks near the limits, not one request each
    found = mlflow_run_of(mlflow_client, mlflow_experiment, run.run_id)
    assert len(found.data.params) == 250
    assert len(mlflow_client.get_metric_history(found.info.run_id, "m")) == 2500


def test_long_values_stay_under_mlflow_request_size_cap(mlflow_server, mlflow_experiment, mlflow_client):
    """100 params of 6,000 characters and 100 tags of 8,000 are 1.4 MB: over MLflow's 1 MB per request."""
    backend = MlflowBackend(mlflow_server.url)
    start = RunStart(uuid.uuid4().hex, mlflow_experiment, "long-values", int(time.time() * 1000))
    backend.create_run(start)
    params = [Param(f"p{i}", str(i % 10) * 6000) for i in range(100)]
    tags = [(f"t{i}", str(i % 10) * 8000) for i in range(100)]
    backend.log_batch(start.run_id, params=params, tags=tags)
    found = mlflow_run_of(mlflow_client, mlflow_experiment, start.run_id)
    assert found.data.params == {p.key: p.value for p in params}
    assert all(found.data.tags[k] == v for k, v in tags)


# -- ids, idempotence, errors ---------------------------------------------------------------------

def test_create_run_is_idempotent_by_autolog_id(mlflow_server, mlflow_experiment, mlflow_client):
    start = RunStart(uuid.uuid4().hex, mlflow_experiment, "once", int(time.time() * 1000), None, {"k": "v"})
    first = MlflowBackend(mlflow_server.url)
    first.create_run(start)
    first.create_run(start)
    fresh = MlflowBackend(mlflow_server.url)  # no in-process map: found by its tag on the server
    fresh.create_run(start)
    fresh.log_batch(start.run_id, metrics=[Metric("x", 1.0, start.start_time, 0)], params=[Param("a", "1")])
    fresh.log_batch(start.run_id, params=[Param("a", "1")])  # the same param again: a replay, accepted
    found = mlflow_run_of(mlflow_client, mlflow_experiment, start.run_id)
    assert found.data.params == {"a": "1"}
    assert fresh.mlflow_run_id(start.run_id) == found.info.run_id
    assert fresh.get_run(found.info.run_id).run_id == start.run_id


def test_errors_map_onto_the_backend_protocol(mlflow_server, mlflow_experiment):
    backend = MlflowBackend(mlflow_server.url)
    with pytest.raises(RunNotFound):
        backend.get_run(uuid.uuid4().hex)
    with pytest.raises(RunNotFound):
        backend.log_batch(uuid.uuid4().hex, params=[Param("a", "1")])
    start = RunStart(uuid.uuid4().hex, mlflow_experiment, "bad", int(time.time() * 1000))
    backend.create_run(start)
    backend.log_batch(start.run_id, params=[Param("a", "1")])
    with pytest.raises(BackendError) as info:  # changing a param: refused for good, not "retry"
        backend.log_batch(start.run_id, params=[Param("a", "2")])
    assert not isinstance(info.value, BackendUnavailable)


def test_an_unreachable_server_is_unavailable_at_once(mlflow_experiment, closed_port_url):
    backend = MlflowBackend(closed_port_url)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        backend.create_run(RunStart(uuid.uuid4().hex, mlflow_experiment, "nowhere", 0))
    # MLflow's own client would retry for minutes; the logger does its own retrying
    assert time.monotonic() - started < 30


def test_credentials_go_in_headers_never_into_a_run(mlflow_uri, mlflow_experiment, mlflow_client, request_log,
                                                    monkeypatch):
    token = "s3cr3t-" + uuid.uuid4().hex
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    with autolog.start_run("auth", experiment=mlflow_experiment, tags={"cmd": f"train.py --token {token}"}) as run:
        autolog.log_param("api_token", token)
        autolog.log_metric("m", 1.0)
    autolog.flush()
    sent = request_log.to("/runs/create") + request_log.to("/runs/log-batch")
    assert sent and all(headers.get("Authorization") == f"Bearer {token}" for _, _, _, headers in sent)
    found = mlflow_run_of(mlflow_client, mlflow_experiment, run.run_id)
    values = list(found.data.params.values()) + list(found.data.tags.values())
    assert not any(token in value for value in values)
    assert found.data.params["api_token"] == "***" and found.data.tags["cmd"] == "train.py --token ***"


def test_basic_auth_through_mlflow_variables(new_mlflow_server, monkeypatch, mlflow_experiment, tmp_path, caplog):
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth server needs Flask-WTF (mlflow[auth])")
    from mlflow.tracking import MlflowClient

    password = "pw-" + uuid.uuid4().hex
    config = tmp_path / "basic_auth.ini"  # MLflow's defaults, with its credential cache on (PBKDF2 per request is slow)
    config.write_text("[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///basic_auth.db\n"
                      "admin_username = admin\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                      "auth_cache_ttl_seconds = 60\n")
    server = new_mlflow_server("auth-server", extra_args=("--app-name", "basic-auth"),
                               extra_env={"MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_AUTH_CONFIG_PATH": str(config),
                                          "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex})
    monkeypatch.setenv("AUTOLOG_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    with autolog.start_run("with-auth", experiment=mlflow_experiment, tags={"cmd": f"serve --password {password}"}) as run:
        autolog.log_param("depth", 4)
        autolog.log_metric("loss", 0.5)
    autolog.flush()
    found = mlflow_run_of(MlflowClient(tracking_uri=server.url), mlflow_experiment, run.run_id)
    assert found.data.params == {"depth": "4"} and found.data.metrics == {"loss": 0.5}
    assert found.data.tags["cmd"] == "serve --password ***"
    assert not any(password in value for value in found.data.tags.values())

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-password")
    with pytest.raises(CredentialsRefused, match="credentials refused"):
        MlflowBackend(server.url).create_run(RunStart(uuid.uuid4().hex, mlflow_experiment, "denied", 0))

    # training while the credentials are refused (a token that expired): nothing is set aside
    # for good, one warning says why, and the records reach the server once they are accepted
    from autolog.transport import logger as logger_module

    monkeypatch.setattr(logger_module, "_PROBE_MAX_S", 1.0)
    logger = runs.logger_for()
    with caplog.at_level(logging.WARNING, logger="autolog"):
        with autolog.start_run("while-refused", experiment=mlflow_experiment) as refused:
            autolog.log_param("depth", 5)
            for step in range(50):
                autolog.log_metric("loss", 1.0 / (step + 1), step=step)
        assert autolog.flush(60)
    assert logger._down and logger.stats.spilled > 0 and logger.stats.rejected == 0
    warnings = [r.getMessage() for r in caplog.records if "refused the credentials" in r.getMessage()]
    assert len(warnings) == 1 and password not in warnings[0] and "wrong-password" not in warnings[0]

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)  # renewed
    deadline = time.monotonic() + 60
    while logger._down or logger.journal.has_pending():  # the logger probes and replays on its own
        assert time.monotonic() < deadline, "the journal was not replayed once the credentials were accepted"
        assert autolog.flush(30)
        time.sleep(0.2)
    assert logger.stats.rejected == 0
    found = mlflow_run_of(MlflowClient(tracking_uri=server.url), mlflow_experiment, refused.run_id)
    assert found.info.status == "FINISHED" and found.data.params == {"depth": "5"}
    assert len(MlflowClient(tracking_uri=server.url).get_metric_history(found.info.run_id, "loss")) == 50


# -- offline, then sync --------------------------------------------------------------------------

def test_sync_into_mlflow_twice_creates_nothing_twice(mlflow_server, mlflow_experiment, mlflow_client, store_dir,
                                                      tmp_path):
    from autolog.transport.sync import sync

    (tmp_path / "weights.bin").write_bytes(b"\x00\x01" * 100)
    with autolog.start_run("offline", experiment=mlflow_experiment) as parent:  # the local store (conftest)
        autolog.log_params({"depth": 3})
        for step in range(30):
            autolog.log_metric("loss", 1.0 / (step + 1), step=step)
        autolog.log_artifact(str(tmp_path / "weights.bin"), "ckpt")
        with autolog.start_run("offline-child", nested=True) as child:
            autolog.log_metric("score", 0.5)
    autolog.flush()

    first = sync(store_dir, mlflow_server.url)
    assert first.ok and first.runs_copied == 2, first.to_json()
    second = sync(store_dir, mlflow_server.url)
    assert second.ok and second.runs_copied == 0 and second.runs_updated == 0 and second.runs_skipped == 2, \
        second.to_json()

    exp = mlflow_client.get_experiment_by_name(mlflow_experiment)
    all_runs = mlflow_client.search_runs([exp.experiment_id])
    assert len(all_runs) == 2
    mlflow_parent = mlflow_run_of(mlflow_client, mlflow_experiment, parent.run_id)
    mlflow_child = mlflow_run_of(mlflow_client, mlflow_experiment, child.run_id)
    assert mlflow_child.data.tags["mlflow.parentRunId"] == mlflow_parent.info.run_id
    assert mlflow_parent.info.status == "FINISHED" and mlflow_parent.info.end_time == parent.end_time
    assert mlflow_parent.data.params == {"depth": "3"}
    assert len(mlflow_client.get_metric_history(mlflow_parent.info.run_id, "loss")) == 30
    assert [a.path for a in mlflow_client.list_artifacts(mlflow_parent.info.run_id, "ckpt")] == ["ckpt/weights.bin"]
    assert mlflow_parent.data.tags["mlflow.source.name"] == mlflow_parent.data.tags["autolog.source.script"]


def test_journal_spilled_while_the_server_was_away_is_synced_once(mlflow_server, closed_port_url, mlflow_experiment,
                                                                 mlflow_client, monkeypatch):
    from autolog.transport.journal import journal_dir_for
    from autolog.transport.sync import sync

    monkeypatch.setenv("AUTOLOG_RETRY_SECONDS", "0.2")
    with autolog.start_run("spilled", experiment=mlflow_experiment, tracking_uri=closed_port_url) as run:
        autolog.log_param("k", "v")
        for step in range(50):
            autolog.log_metric("loss", float(step), step=step)
    assert autolog.flush(60)
    logger = runs.logger_for(closed_port_url)
    assert logger.stats.spilled > 0 and logger.stats.written == 0
    logger.close(timeout=10)  # the process "ends" with everything in the journal

    folder = journal_dir_for(closed_port_url)
    first = sync(None, mlflow_server.url, journals=[folder])
    assert first.ok and first.journal_records == logger.stats.spilled, first.to_json()
    second = sync(None, mlflow_server.url, journals=[folder])
    assert second.ok and second.journal_records == 0, second.to_json()
    found = mlflow_run_of(mlflow_client, mlflow_experiment, run.run_id)  # exactly one
    assert found.info.status == "FINISHED" and found.data.params == {"k": "v"}
    assert sorted(m.step for m in mlflow_client.get_metric_history(found.info.run_id, "loss")) == list(range(50))


# -- outage: the server goes away in the middle of training -------------------------------------

def test_outage_mid_training_loses_nothing(mlflow_server, monkeypatch, mlflow_experiment):
    """Kills the suite's shared server (an MLflow server start costs seconds) and starts it again."""
    from mlflow.tracking import MlflowClient

    from autolog.transport import logger as logger_module

    server = mlflow_server
    monkeypatch.setenv("AUTOLOG_TRACKING_URI", server.url)
    monkeypatch.setenv("AUTOLOG_RETRY_SECONDS", "0.3")
    monkeypatch.setenv("AUTOLOG_FLUSH_INTERVAL", "0.05")
    monkeypatch.setattr(logger_module, "_PROBE_MAX_S", 1.0)  # probe the restarted server soon, not after 16 s
    try:
        _train_through_an_outage(server, mlflow_experiment, MlflowClient)
    finally:
        if server.process is None:
            server.start()  # the rest of the suite needs it


def _train_through_an_outage(server, mlflow_experiment, MlflowClient) -> None:
    run = autolog.start_run("through-an-outage", experiment=mlflow_experiment)
    autolog.log_param("epochs", 300)
    for step in range(100):
        autolog.log_metric("loss", 1.0 / (step + 1), step=step)
    assert autolog.flush(60)
    logger = runs.logger_for()
    assert logger.stats.spilled == 0

    server.kill()  # SIGKILL of the server and its workers, mid-training
    for step in range(100, 200):
        autolog.log_metric("loss", 1.0 / (step + 1), step=step)
    autolog.set_tag("phase", "during the outage")
    assert autolog.flush(60)
    assert logger.stats.spilled > 0 and logger._down  # the training thread went on; records on disk

    server.start()  # same port, same store
    for step in range(200, 300):
        autolog.log_metric("loss", 1.0 / (step + 1), step=step)
    autolog.end_run()
    deadline = time.monotonic() + 90
    while logger._down or logger.journal.has_pending():  # the logger probes and replays on its own
        assert time.monotonic() < deadline, "the journal was not replayed after the server came back"
        assert autolog.flush(30)
        time.sleep(0.2)
    assert logger.stats.dropped == 0 and logger.stats.rejected == 0

    client = MlflowClient(tracking_uri=server.url)
    found = mlflow_run_of(client, mlflow_experiment, run.run_id)
    assert found.info.status == "FINISHED"
    assert found.data.params == {"epochs": "300"}
    assert found.data.tags["phase"] == "during the outage"
    history = client.get_metric_history(found.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(300))


class ThrottlingProxy:
    """A real HTTP server on 127.0.0.1 in front of an MLflow server: it answers the first
    `throttle` requests with `status` and a `Retry-After` header, as a rate-limiting reverse
    proxy does, and forwards every later one. Keeps (received, answered, method, path, status)
    of each request, times from time.monotonic()."""

    def __init__(self, upstream: str, throttle: int, retry_after: str = "1", status: int = 429):
        import http.server
        import urllib.parse

        self.upstream = urllib.parse.urlsplit(upstream)
        self.throttle = throttle
        self.retry_after = retry_after
        self.status = status
        self.seen: list[tuple[float, float, str, str, int]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                received = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    throttled = proxy.throttle > 0
                    proxy.throttle -= int(throttled)
                if throttled:
                    status, headers, payload = proxy.status, {"Retry-After": proxy.retry_after}, json.dumps(
                        {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}).encode()
                else:
                    status, headers, payload = proxy.forward(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                with proxy.lock:
                    proxy.seen.append((received, time.monotonic(), self.command, self.path, status))

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="throttling-proxy", daemon=True)

    def forward(self, method: str, path: str, headers: dict, body: bytes):
        import http.client

        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            kept = {k: v for k, v in response.getheaders()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server")}
            return response.status, kept, payload
        finally:
            conn.close()

    def __enter__(self) -> "ThrottlingProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.mark.parametrize("status", [429, 503])
def test_a_throttling_server_is_retried_after_the_time_it_asks(mlflow_server, mlflow_experiment, mlflow_client,
                                                                monkeypatch, status):
    """Issue 10, bug 2: HTTP 429/503 with Retry-After from in front of a real MLflow server. The
    logger waits what the server asked for (not its own 50 ms backoff) and loses nothing."""
    with ThrottlingProxy(mlflow_server.url, throttle=2, retry_after="1", status=status) as proxy:
        monkeypatch.setenv("AUTOLOG_TRACKING_URI", proxy.url)
        monkeypatch.setenv("AUTOLOG_RETRY_SECONDS", "30")
        with autolog.start_run("throttled", experiment=mlflow_experiment) as run:
            for step in range(20):
                autolog.log_metric("loss", 1.0 / (step + 1), step=step)
        assert autolog.flush(60)
        logger = runs.logger_for()
        stats = logger.snapshot_stats()
        assert stats.retried == 2 and stats.spilled == 0 and stats.rejected == 0 and stats.dropped == 0
        seen = list(proxy.seen)
    throttled = [i for i, entry in enumerate(seen) if entry[4] == status]
    assert throttled == [0, 1]
    for index in throttled:  # the next request came no sooner than Retry-After after the answer
        assert seen[index + 1][0] - seen[index][1] >= 1.0
    found = mlflow_run_of(mlflow_client, mlflow_experiment, run.run_id)
    assert found.info.status == "FINISHED"
    assert sorted(m.step for m in mlflow_client.get_metric_history(found.info.run_id, "loss")) == list(range(20))


def test_retry_after_reaches_the_backend_protocol(mlflow_server, mlflow_experiment):
    with ThrottlingProxy(mlflow_server.url, throttle=1, retry_after="7") as proxy:
        backend = MlflowBackend(proxy.url)
        with pytest.raises(BackendUnavailable) as info:
            backend.create_run(RunStart(uuid.uuid4().hex, mlflow_experiment, "throttled", 0))
        assert info.value.retry_after == 7.0
        backend.create_run(RunStart(uuid.uuid4().hex, mlflow_experiment, "let-through", 0))  # then forwarded


# -- datasets: the MLflow UI's Datasets column -------------------------------------------------
def test_datasets_reach_mlflow_as_mlflow_log_input_records_them(mlflow_uri, mlflow_experiment, mlflow_client):
    import numpy as np
    import pandas as pd
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.numpy_dataset import from_numpy

    from autolog.instrument.datasets import describe

    rng = np.random.default_rng(3)
    X_train, y_train = rng.normal(size=(200, 4)), rng.integers(0, 2, size=200)
    eval_frame = pd.DataFrame({"a": rng.normal(size=50), "label": ["yes", "no"] * 25})
    with autolog.start_run("with data", experiment=mlflow_experiment) as run:
        autolog.log_input(X_train, targets=y_train)
        autolog.log_input(eval_frame, context="eval")
        autolog.log_input(X_train, targets=y_train)  # again (a replay, a second fit): still one input
    assert autolog.flush(60)

    found = mlflow_client.get_run(mlflow_run_of(mlflow_client, mlflow_experiment, run.run_id).info.run_id)
    inputs = found.inputs.dataset_inputs
    assert [(d.dataset.name, [(t.key, t.value) for t in d.tags]) for d in inputs] == [
        ("X_train", [("mlflow.data.context", "train")]), ("eval_frame", [("mlflow.data.context", "eval")])]
    theirs = from_numpy(features=X_train, targets=y_train, source=CodeDatasetSource({})).to_dict()
    train = inputs[0].dataset
    assert (train.digest, train.source_type, train.schema, train.profile) == (
        theirs["digest"], "code", theirs["schema"], theirs["profile"])
    assert inputs[1].dataset.digest == describe(eval_frame).digest
    assert json.loads(inputs[1].dataset.profile) == {"num_rows": 50, "num_elements": 100}
    # and read back through autolog
    assert [(i.dataset.name, i.context) for i in autolog.get_run(run.run_id).inputs] == [
        ("X_train", "train"), ("eval_frame", "eval")]


def test_sync_copies_dataset_inputs_once(mlflow_server, mlflow_experiment, mlflow_client, store_dir):
    import numpy as np

    from autolog.transport.sync import sync

    features = np.arange(20.0).reshape(10, 2)
    with autolog.start_run("offline with data", experiment=mlflow_experiment) as run:  # the local store
        autolog.log_input(features)
    assert autolog.flush(30)
    first = sync(store_dir, mlflow_server.url)
    assert first.ok and first.datasets == 1, first.to_json()
    second = sync(store_dir, mlflow_server.url)
    assert second.ok and second.datasets == 0 and second.runs_skipped == 1, second.to_json()
    found = mlflow_client.get_run(mlflow_run_of(mlflow_client, mlflow_experiment, run.run_id).info.run_id)
    assert [d.dataset.name for d in found.inputs.dataset_inputs] == ["features"]
