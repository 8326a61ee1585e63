"""The CLI shows the model first: `runs` and `compare --only-diff` leave the machine's system/*
metrics out unless asked, `show` lists them in a section of their own, compare's run columns
stay apart in a narrow terminal, `show`'s last value agrees with `runs` and get_run on ties,
and `plot` of a sweep draws a metric against a param or parallel coordinates."""

from __future__ import annotations

import json

import pytest

import autolog
from autolog import cli


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def sweep(store_dir):
    """Three runs of one sweep (alpha 0.01, 0.1, 1.0): one point per metric, and system metrics."""
    ids = []
    for alpha, score in ((0.01, 0.5), (0.1, 0.7), (1.0, 0.6)):
        with autolog.start_run(f"ridge-sweep-alpha-{alpha}", experiment="sweep") as run:
            autolog.log_params({"alpha": alpha, "solver": "auto"})
            autolog.log_metrics({"training_r2_score": score, "training_mean_squared_error": 10 - score,
                                 "validation_r2_score": score - 0.1})
            autolog.log_metrics({"system/cpu_utilization_percentage": 40 + score,
                                 "system/process_memory_rss_megabytes": 200 + score})
        ids.append(run.run_id)
    autolog.flush()
    return ids


def test_runs_shows_model_metrics_never_system_ones(sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run_cli(capsys, "runs")
    header = out.splitlines()[0].split()
    assert code == 0 and "training_r2_score" in header and "validation_r2_score" in header
    assert not any(h.startswith("system/") for h in header)
    monkeypatch.setenv("COLUMNS", "400")
    code, out, _ = run_cli(capsys, "runs", "--system")
    assert "system/cpu_utilization_percentage" in out.splitlines()[0]
    monkeypatch.setenv("COLUMNS", "100")  # too narrow for the keys: titles that stay apart
    code, out, _ = run_cli(capsys, "runs")
    assert out.splitlines()[0].split()[-3:] == ["tmse", "tr2s", "vr2s"]
    code, out, _ = run_cli(capsys, "runs", "--json")
    assert "system/cpu_utilization_percentage" in json.loads(out)[0]["metrics"]  # JSON keeps everything


def test_show_lists_system_metrics_in_their_own_section(sweep, capsys):
    code, out, _ = run_cli(capsys, "show", sweep[0][:8])
    metrics, system = out.split("\nMetrics, last values")[1], out.split("\nSystem metrics, last values")[1]
    metrics = metrics.split("\nSystem metrics")[0]
    assert "training_r2_score" in metrics and "system/" not in metrics
    assert "system/cpu_utilization_percentage" in system.split("\nTags")[0]


def test_compare_only_diff_leaves_system_metrics_out(sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(capsys, "compare", sweep[0][:8], sweep[1][:8], "--only-diff")
    assert code == 0 and "training_r2_score" in out and "alpha" in out
    assert "system/" not in out and "solver" not in out
    code, out, _ = run_cli(capsys, "compare", sweep[0][:8], sweep[1][:8], "--only-diff", "--system")
    assert "System metrics" in out and "system/cpu_utilization_percentage" in out
    code, out, _ = run_cli(capsys, "compare", sweep[0][:8], sweep[1][:8], "--only-diff", "--json")
    assert all(not row["key"].startswith("system/") for row in json.loads(out)["metrics"])


def test_compare_columns_stay_apart_in_a_narrow_terminal(sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    code, out, _ = run_cli(capsys, "compare", sweep[0][:8], sweep[1][:8])
    header = out.splitlines()[0].split()
    assert header[1:] == ["0.01", "0.1"]  # the differing part of "ridge-sweep-alpha-0.01" and "...-0.1"
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(capsys, "compare", sweep[0][:8], sweep[1][:8])
    assert f"ridge-sweep-alpha-0.01 ({sweep[0][:8]})" in out.splitlines()[0]


def test_run_columns_fall_back_to_short_ids():
    from autolog.entities import Run

    runs = [Run(f"{i}" * 32, "same-name", "0", "e", "FINISHED", 0) for i in (1, 2)]
    assert cli._run_columns(runs, budget=10) == ["11111111", "22222222"]
    assert cli._run_columns(runs[:1] * 2, budget=10) == ["11111111", "11111111 #2"]


def test_last_value_on_a_tie_is_the_later_logged_everywhere(store_dir, capsys):
    with autolog.start_run("ties") as run:
        autolog.log_metric("loss", 1.0, step=3, timestamp=1_700_000_000_000)
        autolog.log_metric("loss", 2.0, step=3, timestamp=1_700_000_000_000)
    autolog.flush()
    assert autolog.get_run(run.run_id).metrics["loss"] == 2.0
    code, out, _ = run_cli(capsys, "show", run.run_id[:8], "--json")
    assert json.loads(out)["last_metrics"]["loss"]["value"] == 2.0
    code, out, _ = run_cli(capsys, "runs", "--json")
    assert json.loads(out)[0]["metrics"]["loss"] == 2.0


@pytest.fixture
def pyplot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_plot_of_a_sweep_draws_the_metric_against_the_param(sweep, capsys, tmp_path, pyplot):
    out_file = tmp_path / "sweep.png"
    code, out, _ = run_cli(capsys, "plot", "--experiment", "sweep", "--metric", "training_r2_score",
                           "-o", str(out_file))
    assert code == 0 and "against alpha" in out  # one param differs: it is the x axis
    assert out_file.read_bytes().startswith(b"\x89PNG")
    runs = autolog.search_runs("sweep", output_format="list")
    figure = cli.sweep_figure(pyplot, runs, ["training_r2_score"], "alpha")
    (axes,) = figure.axes
    (line,) = axes.lines
    assert axes.get_xlabel() == "alpha" and axes.get_xscale() == "log"
    assert list(line.get_xdata()) == [0.01, 0.1, 1.0] and list(line.get_ydata()) == [0.5, 0.7, 0.6]


def test_plot_parallel_coordinates(sweep, capsys, tmp_path, pyplot):
    code, out, _ = run_cli(capsys, "plot", *sweep, "--metric", "training_r2_score", "--metric",
                           "validation_r2_score", "--parallel", "-o", str(tmp_path / "p.png"))
    assert code == 0 and "parallel coordinates" in out
    runs = autolog.search_runs("sweep", output_format="list")
    figure = cli.parallel_figure(pyplot, runs, ["training_r2_score", "validation_r2_score"])
    (axes,) = figure.axes
    assert [t.get_text() for t in axes.get_xticklabels()] == ["alpha", "training_r2_score", "validation_r2_score"]
    assert len([line for line in axes.lines if not line.get_label().startswith("_")]) == 3  # one per run


def test_plot_with_x_naming_an_unknown_param(sweep, capsys, tmp_path):
    code, _, err = run_cli(capsys, "plot", *sweep, "--metric", "training_r2_score", "--x", "beta",
                           "-o", str(tmp_path / "x.png"))
    assert code == 1 and "has no param 'beta'" in err
