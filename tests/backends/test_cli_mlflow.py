"""The CLI against a real MLflow server: runs are named by short id prefixes there as on the
local store, by autolog's run id or by MLflow's own (the one its UI shows)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mlflow")

import autolog  # noqa: E402
from autolog import cli  # noqa: E402
from autolog.backends import get_backend  # noqa: E402


def test_short_id_prefixes_against_an_mlflow_server(mlflow_uri, mlflow_experiment, capsys):
    with autolog.start_run("first") as first:
        autolog.log_param("lr", 0.1)
        autolog.log_metric("loss", 0.5)
    with autolog.start_run("second") as second:
        autolog.log_param("lr", 0.2)
    assert autolog.flush(timeout=60)
    for ref in (first.run_id[:8], get_backend(mlflow_uri).mlflow_run_id(first.run_id)[:8]):
        assert cli.main(["show", ref, "--json"]) == 0, capsys.readouterr().err
        shown = json.loads(capsys.readouterr().out)
        assert (shown["run_id"], shown["params"]) == (first.run_id, {"lr": "0.1"})
    assert cli.main(["compare", first.run_id[:8], second.run_id[:8], "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in compared["runs"]] == [first.run_id, second.run_id]
    assert cli.main(["show", "zzzz"]) == 1
    assert "no run with id 'zzzz'" in capsys.readouterr().err
