"""The `autolog` command (autolog/cli.py): runs, show, compare, plot; errors and exit codes.

Runs are made with the public API into the test's own store, then read back through
`main([...])` in-process, and through the installed console script as a real process.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

import autolog
from autolog.backends import get_backend
from autolog.cli import format_duration, format_number, format_table, main
from autolog.entities import RunStart

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CONSOLE_SCRIPT = os.path.join(os.path.dirname(sys.executable), "autolog")


@pytest.fixture
def runs(tmp_path):
    """Two finished runs with a child, and one failed run, in the test's store."""
    artifact = tmp_path / "notes.txt"
    artifact.write_text("hello")
    with autolog.start_run("alpha", experiment="exp1", tags={"long": "x" * 200, "team": "vision"}) as alpha:
        autolog.log_params({"lr": 0.1, "depth": 3})
        for step in range(5):
            autolog.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 5}, step=step)
        autolog.log_artifact(str(artifact), "docs")
        with autolog.start_run("alpha-child", nested=True) as child:
            autolog.log_metric("loss", 0.5)
    with autolog.start_run("beta", experiment="exp1") as beta:
        autolog.log_params({"lr": 0.2, "depth": 3})
        for step in range(5):
            autolog.log_metrics({"loss": 2.0 / (step + 1), "acc": math.nan if step == 4 else step / 6}, step=step)
    with autolog.start_run("gamma", experiment="exp2") as gamma:
        autolog.log_metric("f1", 0.7)
        autolog.log_param("kernel", "rbf")
        autolog.end_run("FAILED")
    autolog.flush()
    return {"alpha": alpha.run_id, "child": child.run_id, "beta": beta.run_id, "gamma": gamma.run_id}


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- runs ---------------------------------------------------------------------------------------

def test_runs_prints_an_aligned_table_with_children_under_parents(runs, capsys):
    code, out, err = _run(capsys, "runs")
    assert code == 0 and err == ""
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:6] == ["id", "name", "experiment", "status", "start", "duration"]
    assert set(header[6:]) == {"loss", "acc", "f1"}  # the most common metric keys
    assert set(lines[1]) <= {"-", " "}
    names = [line.split()[1] for line in lines[2:]]
    assert names[0] == "gamma" and names[2] == "alpha"
    child_line = lines[2 + names.index("alpha") + 1]
    assert "alpha-child" in child_line and runs["child"][:8] in child_line
    # every row has its columns where the header has them
    start_col = lines[0].index("status")
    assert all(line[start_col:].split()[0] in ("FINISHED", "FAILED") for line in lines[2:])
    assert runs["alpha"][:8] in out and runs["alpha"] not in out  # short ids in the table


def test_runs_filters_by_experiment_and_status_and_limits(runs, capsys):
    code, out, _ = _run(capsys, "runs", "--experiment", "exp2")
    assert code == 0 and "gamma" in out and "alpha" not in out
    code, out, _ = _run(capsys, "runs", "--status", "failed")
    assert code == 0 and "gamma" in out and "beta" not in out
    code, out, _ = _run(capsys, "runs", "--limit", "1")
    assert len(out.splitlines()) == 3
    code, out, _ = _run(capsys, "runs", "--experiment", "exp1", "--status", "RUNNING")
    assert code == 0 and out.strip().startswith("no runs matching the filters")


def test_runs_json_has_full_ids_and_every_field(runs, capsys):
    code, out, _ = _run(capsys, "runs", "--json", "--metrics", "loss")
    data = json.loads(out)
    assert code == 0
    assert {r["run_id"] for r in data} == set(runs.values())
    beta = next(r for r in data if r["run_name"] == "beta")
    assert beta["params"] == {"lr": "0.2", "depth": "3"}
    assert beta["metrics"]["loss"] == pytest.approx(0.4)
    assert math.isnan(beta["metrics"]["acc"])  # NaN survives as JSON's NaN
    assert beta["status"] == "FINISHED" and beta["duration_ms"] >= 0
    child = next(r for r in data if r["run_name"] == "alpha-child")
    assert child["parent_run_id"] == runs["alpha"]


def test_runs_with_chosen_metric_columns(runs, capsys):
    code, out, _ = _run(capsys, "runs", "--metrics", "f1,missing")
    header = out.splitlines()[0].split()
    assert code == 0 and header[6:] == ["f1", "missing"]


def test_runs_on_an_unknown_experiment_names_the_known_ones(runs, capsys):
    code, out, err = _run(capsys, "runs", "--experiment", "nope")
    assert code == 1 and out == ""
    assert err == "autolog: error: no experiment named 'nope' (experiments: exp1, exp2)\n"


# -- show -----------------------------------------------------------------------------------------

def test_show_prints_header_params_last_metrics_tags_and_artifacts(runs, capsys):
    code, out, err = _run(capsys, "show", runs["alpha"][:6])
    assert code == 0 and err == ""
    assert f"run           {runs['alpha']}" in out
    assert "experiment    exp1" in out and "status        FINISHED" in out
    sections = out.split("\n\n")
    params = next(s for s in sections if s.startswith("Params"))
    assert "lr" in params and "0.1" in params and "depth" in params
    metrics = next(s for s in sections if s.startswith("Metrics"))
    loss_line = next(line for line in metrics.splitlines() if line.startswith("loss"))
    assert loss_line.split() == ["loss", "0.2", "4"]  # last value, and its step
    tags = next(s for s in sections if s.startswith("Tags")).splitlines()
    keys = [line.split()[0] for line in tags[3:]]
    assert keys == sorted(keys) and "team" in keys and "autolog.source.script" in keys
    long_line = next(line for line in tags if line.startswith("long"))
    assert long_line.endswith("...") and len(long_line) < 120  # cut in the terminal
    artifacts = next(s for s in sections if s.startswith("Artifacts"))
    assert "docs/notes.txt" in artifacts and "5 B" in artifacts


def test_show_names_the_parent_of_a_child(runs, capsys):
    code, out, _ = _run(capsys, "show", runs["child"])
    assert code == 0
    assert f"parent        {runs['alpha']} (alpha)" in out


def test_show_lists_the_runs_datasets(capsys):
    import numpy as np
    import pandas as pd

    X_train = np.zeros((40, 3))
    holdout = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    with autolog.start_run("with data") as run:
        autolog.log_input(X_train, targets=np.zeros(40))
        autolog.log_input(holdout, context="eval")
    autolog.flush()
    code, out, _ = _run(capsys, "show", run.run_id)
    assert code == 0
    section = next(s for s in out.split("\n\n") if s.startswith("Datasets")).splitlines()
    assert section[0] == "Datasets (2)"
    assert section[3].split() == ["X_train", autolog.get_run(run.run_id).inputs[0].dataset.digest, "train",
                                  "40x3", "+", "targets", "40", "code"]
    assert section[4].split()[0] == "holdout" and "eval" in section[4] and "2 rows x 2" in section[4]
    code, out, _ = _run(capsys, "show", run.run_id, "--json")
    inputs = json.loads(out)["inputs"]
    assert [(i["dataset"]["name"], i["tags"]) for i in inputs] == [
        ("X_train", {"mlflow.data.context": "train"}), ("holdout", {"mlflow.data.context": "eval"})]


def test_show_json_is_complete(runs, capsys):
    code, out, _ = _run(capsys, "show", runs["alpha"], "--json")
    data = json.loads(out)
    assert code == 0
    assert data["tags"]["long"] == "x" * 200  # full values in JSON
    assert data["last_metrics"]["loss"]["step"] == 4
    assert data["last_metrics"]["loss"]["value"] == pytest.approx(0.2)
    assert {"path": "docs/notes.txt", "is_dir": False, "size": 5} in data["artifacts"]


# -- compare ---------------------------------------------------------------------------------------

def test_compare_marks_the_rows_that_differ(runs, capsys):
    code, out, err = _run(capsys, "compare", runs["alpha"][:8], runs["beta"][:8])
    assert code == 0 and err == ""
    lines = out.splitlines()
    lr = next(line for line in lines if line.split()[:2] == ["*", "lr"])
    assert lr.split()[2:] == ["0.1", "0.2"]
    depth = next(line for line in lines if "depth" in line)
    assert depth.startswith(" ") and depth.split() == ["depth", "3", "3"]
    assert any(line.split()[:2] == ["*", "acc"] and line.split()[-1] == "nan" for line in lines)
    assert "Params (2, 1 differs)" in out and "Metrics (2, 2 differ)" in out
    assert f"alpha ({runs['alpha'][:8]})" in lines[0] and f"beta ({runs['beta'][:8]})" in lines[0]


def test_compare_only_diff_and_json(runs, capsys):
    code, out, _ = _run(capsys, "compare", runs["alpha"], runs["beta"], runs["gamma"], "--only-diff")
    assert code == 0 and "depth" in out  # gamma has no depth: a difference
    code, out, _ = _run(capsys, "compare", runs["alpha"], runs["beta"], "--only-diff")
    assert "depth" not in out
    code, out, _ = _run(capsys, "compare", runs["alpha"], runs["beta"], "--json")
    data = json.loads(out)
    assert [r["run_name"] for r in data["runs"]] == ["alpha", "beta"]
    params = {p["key"]: p for p in data["params"]}
    assert params["lr"] == {"key": "lr", "values": ["0.1", "0.2"], "differs": True}
    assert params["depth"]["differs"] is False


def test_compare_needs_two_runs(runs, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", runs["alpha"]])
    assert exc.value.code == 2
    assert "compare needs at least two runs" in capsys.readouterr().err


# -- plot -------------------------------------------------------------------------------------------

def test_plot_writes_a_png_with_one_curve_per_run_and_key(runs, capsys, tmp_path):
    target = tmp_path / "curves.png"
    code, out, err = _run(capsys, "plot", runs["alpha"], runs["beta"][:8], "--metric", "loss", "--metric", "acc",
                          "-o", str(target))
    assert code == 0 and err == ""
    assert out.strip() == f"wrote {target} (2 runs, 2 metrics)"
    data = target.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000


def test_plot_refuses_a_metric_a_run_does_not_have(runs, capsys, tmp_path):
    code, out, err = _run(capsys, "plot", runs["alpha"], runs["gamma"], "--metric", "loss", "-o", str(tmp_path / "x.png"))
    assert code == 1 and out == ""
    assert err == f"autolog: error: run {runs['gamma'][:8]} (gamma) has no metric 'loss' (its metrics: f1)\n"
    assert not (tmp_path / "x.png").exists()


def test_plot_without_matplotlib_names_the_extra(runs, capsys, tmp_path, monkeypatch):
    # an import of matplotlib that fails as it does where the package is not installed
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = _run(capsys, "plot", runs["alpha"], "--metric", "loss", "-o", str(tmp_path / "x.png"))
    assert code == 1
    assert err == "autolog: error: plot needs matplotlib: pip install 'autolog[plot]'\n"


# -- errors ---------------------------------------------------------------------------------------

def test_unknown_and_ambiguous_runs_are_one_line_errors(runs, capsys):
    code, out, err = _run(capsys, "show", "does-not-exist")
    assert (code, out, err) == (1, "", "autolog: error: no run with id 'does-not-exist'\n")
    code, _, err = _run(capsys, "compare", runs["alpha"], "zzz")
    assert code == 1 and err == "autolog: error: no run with id 'zzz'\n"


def test_an_ambiguous_prefix_is_a_one_line_error(store_dir, capsys):
    store = get_backend(store_dir)
    for run_id in ("abc1" + "0" * 28, "abc2" + "0" * 28):
        store.create_run(RunStart(run_id, "Default", "twin", 1_700_000_000_000))
    code, out, err = _run(capsys, "show", "abc")
    assert (code, out) == (1, "")
    assert err == f"autolog: error: run id prefix 'abc' is ambiguous: it matches abc1{'0' * 28}, abc2{'0' * 28}\n"
    code, out, _ = _run(capsys, "show", "abc2", "--json")
    assert code == 0 and json.loads(out)["run_id"] == "abc2" + "0" * 28


def test_a_missing_store_is_a_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nothing-here"
    for argv in (["runs"], ["show", "abc"], ["compare", "a", "b"], ["plot", "a", "--metric", "m", "-o", "x.png"]):
        code, out, err = _run(capsys, "--tracking-uri", str(missing), *argv)
        assert (code, out, err) == (1, "", f"autolog: error: no autolog store at {missing}\n")
    assert not missing.exists()  # reading never creates a store


def test_tracking_uri_option_goes_before_or_after_the_command(runs, store_dir, capsys, monkeypatch):
    monkeypatch.setenv("AUTOLOG_TRACKING_URI", "/nonexistent/elsewhere")
    for argv in (["--tracking-uri", store_dir, "runs", "--json"], ["runs", "--tracking-uri", store_dir, "--json"]):
        code, out, _ = _run(capsys, *argv)
        assert code == 0 and len(json.loads(out)) == 4
    monkeypatch.delenv("AUTOLOG_TRACKING_URI")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_dir)  # the library's resolution order
    code, out, _ = _run(capsys, "runs", "--json")
    assert code == 0 and len(json.loads(out)) == 4


def test_an_empty_store_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with autolog.start_run("only", experiment="e"):
        pass
    autolog.flush()
    code, out, _ = _run(capsys, "runs", "--status", "KILLED")
    assert code == 0 and out.startswith("no runs matching the filters in ")


def test_the_console_script_as_a_real_process(runs, store_dir, tmp_path):
    env = dict(os.environ, AUTOLOG_TRACKING_URI=store_dir, COLUMNS="100")
    assert os.path.exists(CONSOLE_SCRIPT), "the venv's autolog console script (pip install -e .)"
    done = subprocess.run([CONSOLE_SCRIPT, "runs"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "alpha" in done.stdout and done.stderr == ""
    assert max(len(line) for line in done.stdout.splitlines()) <= 100  # fits the terminal
    done = subprocess.run([CONSOLE_SCRIPT, "show", "nope"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "autolog: error: no run with id 'nope'\n")
    done = subprocess.run([CONSOLE_SCRIPT, "--tracking-uri", str(tmp_path / "none"), "runs"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (1, f"autolog: error: no autolog store at {tmp_path / 'none'}\n")
    done = subprocess.run([CONSOLE_SCRIPT, "frobnicate"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "invalid choice" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "autolog", "show", runs["beta"], "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout)["run_name"] == "beta"


# -- the table formatter ------------------------------------------------------------------------

def test_format_table_aligns_numbers_right_and_text_left():
    table = format_table(["name", "value"], [["a", 1.5], ["longer", 10], ["c", None]], width=80)
    lines = table.splitlines()
    assert lines == [
        "name    value",
        "------  -----",
        "a         1.5",
        "longer     10",
        "c           -",
    ]


def test_format_table_cuts_long_cells_to_fit_the_width():
    table = format_table(["k", "v"], [["key", "y" * 300]], width=40)
    assert all(len(line) <= 40 for line in table.splitlines())
    assert table.splitlines()[2].endswith("...")


def test_durations_read_naturally():
    assert [format_duration(ms) for ms in (None, 7, 1500, 61_000, 3_725_000)] == ["-", "7ms", "1.5s", "1m01s", "1h02m"]


def test_numbers_rounded_to_an_integer_do_not_look_exact():
    assert [format_number(v, 4) for v in (0.999995, 2.0, 0.25, 1e-7, float("nan"), -float("inf"), None)] == [
        "1.000", "2", "0.25", "1e-07", "nan", "-inf", "-"]


def test_python_dash_m_autolog_runs_main(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["autolog", "--help"])
    monkeypatch.delitem(sys.modules, "autolog.__main__", raising=False)
    with pytest.raises(SystemExit) as exc:
        import autolog.__main__  # noqa: F401
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: autolog")


def test_a_backend_without_prefix_lookup_is_read_through_the_protocol(runs, store_dir, capsys):
    """A non-local backend (the in-memory one, filled by a sync): ids and prefixes still work."""
    from autolog.transport.sync import sync

    assert sync(store_dir, "memory:cli-read").ok
    memory = get_backend("memory:cli-read")
    assert not hasattr(memory, "resolve_run_id")
    code, out, _ = _run(capsys, "--tracking-uri", "memory:cli-read", "show", runs["alpha"][:6], "--json")
    data = json.loads(out)
    assert code == 0 and data["run_name"] == "alpha" and data["params"] == {"lr": "0.1", "depth": "3"}
    assert {"path": "docs/notes.txt", "is_dir": False, "size": 5} in data["artifacts"]
    code, out, _ = _run(capsys, "--tracking-uri", "memory:cli-read", "runs")
    assert code == 0 and len(out.splitlines()) == 2 + 4
    for run_id in ("abc1" + "0" * 28, "abc2" + "0" * 28):
        memory.create_run(RunStart(run_id, "Default", "twin", 1_700_000_000_000))
    code, _, err = _run(capsys, "--tracking-uri", "memory:cli-read", "show", "abc")
    assert code == 1 and err.startswith("autolog: error: run prefix 'abc' is ambiguous: 2 runs match")
    code, _, err = _run(capsys, "--tracking-uri", "memory:cli-read", "show", "zzz")
    assert (code, err) == (1, "autolog: error: no run with id or prefix 'zzz'\n")
