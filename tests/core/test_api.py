"""The manual API as a user sees it, read back from the local store: values converted or
refused with a clear message, artifacts, source tags (a real git repository and a real
script in a subprocess), secrets redacted, settings from arguments and the environment."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import autolog
from autolog import runs


def backend():
    autolog.flush()
    return runs.logger_for().backend


def test_public_names_exist():
    for name in autolog.__all__:
        assert hasattr(autolog, name), name


def test_log_calls_start_a_run_when_none_is_active():
    autolog.log_metric("loss", 0.25)
    run = autolog.active_run()
    assert run is not None and run.owner == "user"
    autolog.log_params({"lr": 0.1, "layers": 3})
    autolog.set_tags({"team": "vision"})
    autolog.end_run()
    stored = autolog.get_run(run.run_id)
    assert stored.metrics == {"loss": 0.25}
    assert stored.params == {"lr": "0.1", "layers": "3"}
    assert stored.tags["team"] == "vision"
    assert stored.status == "FINISHED"


def test_param_conflict_names_key_old_and_new_value():
    with autolog.start_run():
        autolog.log_param("optimizer", "adam")
        autolog.log_param("optimizer", "adam")  # same value again: fine
        with pytest.raises(ValueError) as excinfo:
            autolog.log_param("optimizer", "sgd")
    message = str(excinfo.value)
    assert "'optimizer'" in message and "'adam'" in message and "'sgd'" in message


def test_automatic_logging_renames_a_conflicting_param():
    with autolog.start_run() as run:
        run.log_params({"alpha": 1}, normalize=True)
        run.log_params({"alpha": 2}, normalize=True)
        run.log_params({"alpha": 2}, normalize=True)
    assert autolog.get_run(run.run_id).params == {"alpha": "1", "alpha.2": "2"}


@pytest.mark.parametrize("key, problem", [
    ("", "empty"),
    ("x" * 251, "251 characters"),
    ("bad!key", "only letters"),
    ("/absolute", "may not start with '/'"),
    ("a/../b", "'..'"),
])
def test_bad_keys_are_refused_with_the_reason(key, problem):
    with autolog.start_run():
        for call in (lambda: autolog.log_param(key, 1), lambda: autolog.log_metric(key, 1.0),
                     lambda: autolog.set_tag(key, "v")):
            with pytest.raises(ValueError) as excinfo:
                call()
            assert problem in str(excinfo.value)


def test_a_key_that_is_not_text_is_a_type_error():
    with autolog.start_run():
        with pytest.raises(TypeError, match="must be a string"):
            autolog.log_metric(3, 1.0)



def test_steps_and_timestamps_are_64_bit_integers_or_a_clear_error():
    with autolog.start_run() as run:
        autolog.log_metric("numpy_step", 0.5, step=np.int64(3), timestamp=np.int64(1_700_000_000_000))
        autolog.log_metric("float_step", 0.5, step=4.0)
        autolog.log_metric("edge", 1.0, step=2**63 - 1)
        autolog.log_metric("edge", 2.0, step=-(2**63))
        for bad in (2**63, -(2**63) - 1):
            with pytest.raises(ValueError, match=f"metric step {bad} does not fit in a signed 64-bit integer"):
                autolog.log_metric("huge", 1.0, step=bad)
            with pytest.raises(ValueError, match="metric step .* does not fit"):
                autolog.log_metrics({"huge": 1.0}, step=bad)
            with pytest.raises(ValueError, match="metric timestamp .* does not fit"):
                autolog.log_metric("huge", 1.0, timestamp=bad)
        with pytest.raises(ValueError, match="metric step must be an integer, got str: 'three'"):
            autolog.log_metric("huge", 1.0, step="three")
        with pytest.raises(TypeError, match="metric timestamp must be an integer, got list"):
            autolog.log_metric("huge", 1.0, timestamp=[1])
        autolog.log_metric("after", 1.0, step=1)  # nothing of the above reached the logger
    assert autolog.flush(30)
    store = backend()
    assert [(m.step, m.timestamp) for m in store.get_metric_history(run.run_id, "numpy_step")] == \
        [(3, 1_700_000_000_000)]
    assert [m.step for m in store.get_metric_history(run.run_id, "float_step")] == [4]
    assert [(m.step, m.value) for m in store.get_metric_history(run.run_id, "edge")] == [(-(2**63), 2.0),
                                                                                         (2**63 - 1, 1.0)]
    assert "huge" not in autolog.get_run(run.run_id).metrics
    assert runs.logger_for().snapshot_stats().rejected == 0

def test_fluent_log_metric_matches_run_handle(monkeypatch):
    """`autolog.log_metric` inlines `ActiveRun.log_metric` for speed: the two must queue the
    same records and refuse the same input with the same error."""
    monkeypatch.setattr(runs.handle, "_time_ns", lambda: 1_700_000_000_123_456_789)
    monkeypatch.setattr(autolog, "_time_ns", lambda: 1_700_000_000_123_456_789)
    calls = [
        ("loss", 0.5, None, None), ("loss", 0.25, 3, None), ("acc", np.float32(0.5), np.int64(4), None),
        ("n", 7, 4.0, np.int64(1_700_000_000_000)), ("edge", True, 2**63 - 1, -(2**63)),
        ("fresh/key.name-1", math.nan, -(2**63), 0), ("inf", math.inf, None, 5),
        ("bad key!", 1.0, None, None), (3, 1.0, None, None), ("v", "0.5", None, None),
        ("s", 1.0, 2**63, None), ("s", 1.0, "three", None), ("t", 1.0, None, [1]), ("t", 1.0, None, 2**63),
    ]
    with autolog.start_run() as run:
        queued: list = []
        monkeypatch.setattr(run, "_enqueue", queued.append)
        outcomes = {}
        for name, log in (("fluent", autolog.log_metric), ("handle", run.log_metric)):
            out = []
            for key, value, step, timestamp in calls:
                queued.clear()
                try:
                    log(key, value, step=step, timestamp=timestamp)
                    out.append(list(queued))
                except Exception as exc:  # noqa: BLE001 - the error is what is compared
                    assert not queued
                    out.append((type(exc), str(exc)))
            outcomes[name] = out
    assert outcomes["fluent"] == outcomes["handle"]
    assert sum(isinstance(o, tuple) for o in outcomes["fluent"]) == 7  # the bad inputs were refused
    assert outcomes["fluent"][0] == [("m", run.run_id, "loss", 0.5, 1_700_000_000_123, 0)]


def test_metric_values_are_converted():
    torch = pytest.importorskip("torch")
    with autolog.start_run() as run:
        autolog.log_metric("np_float32", np.float32(0.5))
        autolog.log_metric("np_int64", np.int64(7))
        autolog.log_metric("np_0d", np.array(2.5))
        autolog.log_metric("torch_scalar", torch.tensor(1.5))
        autolog.log_metric("torch_int", torch.tensor(3))
        autolog.log_metric("python_bool", True)
        autolog.log_metrics({"nan": float("nan"), "pos_inf": math.inf, "neg_inf": -math.inf})
        with pytest.raises(TypeError, match="must be a number"):
            autolog.log_metric("text", "0.5")
        with pytest.raises(TypeError):
            autolog.log_metric("array", np.array([1.0, 2.0]))
    metrics = autolog.get_run(run.run_id).metrics
    assert metrics["np_float32"] == 0.5 and metrics["np_int64"] == 7.0 and metrics["np_0d"] == 2.5
    assert metrics["torch_scalar"] == 1.5 and metrics["torch_int"] == 3.0 and metrics["python_bool"] == 1.0
    assert math.isnan(metrics["nan"])
    assert metrics["pos_inf"] == math.inf and metrics["neg_inf"] == -math.inf
    assert all(type(v) is float for v in metrics.values())
    nan_history = backend().get_metric_history(run.run_id, "nan")
    assert len(nan_history) == 1 and math.isnan(nan_history[0].value)


def test_steps_and_timestamps_are_kept():
    with autolog.start_run() as run:
        for step in range(5):
            autolog.log_metric("acc", step / 10, step=step, timestamp=1_000_000 + step)
    points = backend().get_metric_history(run.run_id, "acc")
    assert [(p.step, p.value, p.timestamp) for p in points] == [(s, s / 10, 1_000_000 + s) for s in range(5)]


def test_param_values_become_text_and_long_ones_are_truncated():
    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no repr")

    class Huge:
        def __repr__(self):
            return "H" * 10_000

    with autolog.start_run() as run:
        autolog.log_params({
            "none": None, "flag": False, "ratio": 0.5, "numpy": np.float64(0.25),
            "list": [1, 2], "dict": {"a": 1}, "huge": Huge(), "unprintable": Unprintable(),
        })
        autolog.set_tag("long_tag", "t" * 9000)
    params = autolog.get_run(run.run_id).params
    assert params["none"] == "None" and params["flag"] == "False" and params["ratio"] == "0.5"
    assert params["numpy"] in ("0.25", "np.float64(0.25)")
    assert params["list"] == "[1, 2]" and params["dict"] == "{'a': 1}"
    assert len(params["huge"]) == 6000
    assert params["huge"].endswith("chars]") and "...[truncated " in params["huge"]
    cut = int(params["huge"].rsplit("truncated ", 1)[1].split()[0])
    assert cut + params["huge"].index("...[truncated") == 10_000  # the marker counts what was cut
    assert params["unprintable"] == "<unrepresentable Unprintable>"
    tag = autolog.get_run(run.run_id).tags["long_tag"]
    assert len(tag) == 8000 and "...[truncated" in tag


def test_artifacts_are_copied_when_logged(tmp_path):
    source = tmp_path / "notes.txt"
    source.write_text("version one")
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "a.txt").write_text("A")
    with autolog.start_run() as run:
        autolog.log_artifact(str(source))
        autolog.log_artifacts(str(folder), "plots")
        autolog.log_text("hello", "docs/readme.md")
        source.write_text("version two")  # changed after logging: the logged copy is kept
        with pytest.raises(FileNotFoundError):
            autolog.log_artifact(str(tmp_path / "missing.txt"))
        with pytest.raises(ValueError, match="relative"):
            autolog.log_artifact(str(source), "../outside")
    store = backend()
    assert sorted(a.path for a in store.list_artifacts(run.run_id)) == ["docs", "notes.txt", "plots"]
    with open(store.download_artifacts(run.run_id, "notes.txt", str(tmp_path / "dl")), encoding="utf-8") as fh:
        assert fh.read() == "version one"
    with open(store.download_artifacts(run.run_id, "docs/readme.md", str(tmp_path / "dl2")), encoding="utf-8") as fh:
        assert fh.read() == "hello"
    assert [a.path for a in store.list_artifacts(run.run_id, "plots")] == ["plots/a.txt"]
    # the copies taken at logging time are gone once delivered, folders included
    staged = os.path.join(runs.logger_for().journal.folder, "staged")
    assert os.listdir(staged) == []


# -- settings --------------------------------------------------------------------------
def test_tracking_uri_from_the_environment_then_the_argument(tmp_path, store_dir):
    with autolog.start_run() as run:
        pass
    assert run.tracking_uri == store_dir
    assert autolog.get_run(run.run_id).run_id == run.run_id
    other = str(tmp_path / "other-store")
    autolog.autolog(tracking_uri=other, integrations=[])
    with autolog.start_run() as elsewhere:
        pass
    assert elsewhere.tracking_uri == other
    assert autolog.get_run(elsewhere.run_id, tracking_uri=other).status == "FINISHED"
    assert [r.run_id for r in autolog.search_runs(tracking_uri=store_dir, output_format="list")] == [run.run_id]


def test_experiment_from_the_environment_then_the_argument(monkeypatch):
    monkeypatch.setenv("AUTOLOG_EXPERIMENT", "from-env")
    autolog.autolog(integrations=[])
    with autolog.start_run() as run:
        pass
    assert autolog.get_run(run.run_id).experiment_name == "from-env"
    autolog.autolog(integrations=[], experiment="from-argument")
    with autolog.start_run() as run:
        pass
    assert autolog.get_run(run.run_id).experiment_name == "from-argument"
    with autolog.start_run(experiment="explicit") as run:
        pass
    assert autolog.get_run(run.run_id).experiment_name == "explicit"


def test_autolog_disable_from_the_environment(monkeypatch):
    monkeypatch.setenv("AUTOLOG_DISABLE", "true")
    assert autolog.autolog() == []
    assert autolog.enabled_integrations() == []
    monkeypatch.setenv("AUTOLOG_DISABLE", "maybe")
    with pytest.raises(ValueError, match="AUTOLOG_DISABLE"):
        autolog.autolog()


def test_extra_tags_go_on_every_run():
    autolog.autolog(integrations=[], extra_tags={"team": "nlp", "ticket": 42})
    with autolog.start_run(tags={"mine": "yes"}) as run:
        pass
    tags = autolog.get_run(run.run_id).tags
    assert tags["team"] == "nlp" and tags["ticket"] == "42" and tags["mine"] == "yes"


def test_bad_settings_are_refused_at_autolog():
    with pytest.raises(ValueError, match="max_tuning_runs"):
        autolog.autolog(max_tuning_runs=-1)
    with pytest.raises(TypeError, match="extra_tags"):
        autolog.autolog(extra_tags=["not", "a", "mapping"])


# -- source tags: a real script in a real git repository ---------------------------------
SCRIPT = textwrap.dedent('''
    import json, sys
    import autolog
    with autolog.start_run() as run:
        autolog.log_metric("x", 1.0)
    autolog.flush()
    print(json.dumps({"run_id": run.run_id}))
''')


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
                   cwd=repo, check=True, capture_output=True)


def _run_script(repo, store_dir, *argv):
    env = dict(os.environ, AUTOLOG_TRACKING_URI=store_dir)
    out = subprocess.run([sys.executable, "train.py", *argv], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])["run_id"]


def test_source_tags_in_a_git_repository(tmp_path, store_dir):
    import getpass
    import platform
    import socket

    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "train.py").write_text(SCRIPT)
    _git(repo, "init", "-q")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()

    clean_id = _run_script(repo, store_dir, "--epochs", "3", "--password", "hunter2", "--api-key=abc123",
                           "--data", "https://user:pw@example.com/data.csv")
    tags = autolog.get_run(clean_id, tracking_uri=store_dir).tags
    assert tags["autolog.source.script"] == str(repo / "train.py")
    assert tags["autolog.source.git.commit"] == commit
    assert tags["autolog.source.git.dirty"] == "false"
    assert os.path.realpath(tags["autolog.source.git.repo"]) == os.path.realpath(repo)
    assert tags["autolog.python_version"] == platform.python_version()
    assert tags["autolog.version"] == autolog.__version__
    assert tags["autolog.user"] == getpass.getuser()
    assert tags["autolog.host"] == socket.gethostname()
    command = tags["autolog.source.command"]
    assert "train.py --epochs 3" in command
    assert "hunter2" not in command and "abc123" not in command and "user:pw" not in command
    assert "--password [REDACTED]" in command and "--api-key=[REDACTED]" in command
    assert "https://example.com/data.csv" in command

    (repo / "train.py").write_text(SCRIPT + "\n# an edit not committed\n")
    dirty_id = _run_script(repo, store_dir)
    dirty = autolog.get_run(dirty_id, tracking_uri=store_dir).tags
    assert dirty["autolog.source.git.dirty"] == "true"
    assert dirty["autolog.source.git.commit"] == commit


def test_source_tags_outside_git(tmp_path, store_dir, monkeypatch):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.py").write_text(SCRIPT)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never look above tmp_path for a repository
    run_id = _run_script(folder, store_dir)
    tags = autolog.get_run(run_id, tracking_uri=store_dir).tags
    assert tags["autolog.source.script"] == str(folder / "train.py")
    assert not any(k.startswith("autolog.source.git") for k in tags)


def test_search_runs_on_a_store_nothing_was_written_to_is_empty(store_dir):
    assert not os.path.exists(os.path.join(store_dir, "autolog.db"))
    assert autolog.search_runs(output_format="list") == []
    assert autolog.search_runs(experiment="anything", output_format="list") == []
    assert not os.path.exists(os.path.join(store_dir, "autolog.db"))  # a read makes no store
