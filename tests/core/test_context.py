"""Run context: parsed arguments, code state and environment, with real argparse, real
click, a real temporary git repository and real scripts run as subprocesses.

The round trip of every patch: enable -> parse -> logged; disable -> `vars()` of the
parser class identical to before, nothing logged; enable again -> logged again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import textwrap
import threading

import pytest

import autolog
from autolog.provenance import capture as context
from autolog.provenance import environment
from autolog.provenance import source
from autolog.runs import logger_for


def _artifact_text(run_id: str, path: str) -> str:
    autolog.flush()
    local = logger_for().backend.download_artifacts(run_id, path, "")
    with open(local, encoding="utf-8") as fh:
        return fh.read()


def _artifacts(run_id: str, path=None) -> set:
    autolog.flush()
    return {a.path for a in logger_for().backend.list_artifacts(run_id, path)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train.py")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--data", default="s3://bucket/data")
    return parser


@pytest.fixture
def command_line(monkeypatch):
    def set_argv(*args: str) -> list:
        monkeypatch.setattr(sys, "argv", ["train.py", *args])
        return list(args)

    return set_argv


@pytest.fixture
def enabled():
    autolog.autolog()
    yield
    autolog.autolog(disable=True)


# -- arguments ------------------------------------------------------------------------------------
def test_args_parsed_before_the_run_are_logged_redacted(enabled, command_line):
    command_line("--lr", "0.5", "--api-key", "abc123", "--data", "https://user:pw@host.example/data")
    parsed = _parser().parse_args()
    assert parsed.lr == 0.5 and parsed.api_key == "abc123"  # the caller's values are untouched
    with autolog.start_run() as run:
        pass
    params = autolog.get_run(run.run_id).params
    assert params["args.lr"] == "0.5"
    assert params["args.epochs"] == "3"
    assert params["args.api_key"] == "[REDACTED]"
    assert params["args.data"] == "https://host.example/data"


def test_args_go_to_the_active_run_at_parse_time_and_once_per_run(enabled, command_line):
    command_line("--epochs", "7")
    with autolog.start_run() as run:
        _parser().parse_known_args()
        _parser().parse_args()  # the same values again: nothing new
        with autolog.start_run(nested=True) as child:
            pass
    with autolog.start_run() as later:
        pass
    assert autolog.get_run(run.run_id).params["args.epochs"] == "7"
    assert not any(k.startswith("args.") for k in autolog.get_run(run.run_id).params if k.count(".") > 1)
    assert not any(k.startswith("args.") for k in autolog.get_run(child.run_id).params)  # the parent holds them
    assert autolog.get_run(later.run_id).params["args.epochs"] == "7"


def test_only_the_command_line_of_the_main_thread_counts(enabled, command_line):
    command_line("--lr", "0.2")
    _parser().parse_args(["--lr", "0.9"])  # a list of the caller's own: not the command line
    thread = threading.Thread(target=lambda: _parser().parse_args())
    thread.start()
    thread.join()
    assert context.parsed_arguments() == {}
    _parser().parse_args(sys.argv[1:])  # the command line, passed explicitly
    assert context.parsed_arguments()["args.lr"] == "0.2"


def test_help_and_bad_arguments_pass_through_and_the_run_starts(enabled, command_line, capsys):
    command_line("--help")
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args()
    assert exit_info.value.code == 0
    assert "usage: train.py" in capsys.readouterr().out
    command_line("--epochs", "many")
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args()
    assert exit_info.value.code == 2
    with autolog.start_run() as run:
        pass
    got = autolog.get_run(run.run_id)
    assert got.status == "FINISHED" and not any(k.startswith("args.") for k in got.params)


def test_disable_restores_argparse_and_enable_again_logs(command_line):
    before = dict(vars(argparse.ArgumentParser))
    autolog.autolog()
    assert vars(argparse.ArgumentParser)["parse_args"] is not before["parse_args"]
    autolog.autolog(disable=True)
    assert dict(vars(argparse.ArgumentParser)) == before
    assert all(vars(argparse.ArgumentParser)[k] is v for k, v in before.items())
    command_line("--lr", "0.3")
    _parser().parse_args()
    assert context.parsed_arguments() == {}
    autolog.autolog()
    try:
        _parser().parse_args()
        with autolog.start_run() as run:
            pass
        assert autolog.get_run(run.run_id).params["args.lr"] == "0.3"
    finally:
        autolog.autolog(disable=True)
    assert dict(vars(argparse.ArgumentParser)) == before


def test_log_args_off_by_option_and_environment(command_line, monkeypatch):
    before = dict(vars(argparse.ArgumentParser))
    autolog.autolog(log_args=False)
    assert dict(vars(argparse.ArgumentParser)) == before
    monkeypatch.setenv("AUTOLOG_LOG_ARGS", "false")
    autolog.autolog()
    command_line("--lr", "0.4")
    _parser().parse_args()
    with autolog.start_run() as run:
        pass
    assert not any(k.startswith("args.") for k in autolog.get_run(run.run_id).params)
    autolog.autolog(disable=True)


def test_click_command_options(command_line):
    click = pytest.importorskip("click")
    import click.core

    before = dict(vars(click.core.Command))
    autolog.autolog()
    seen = {}

    @click.group()
    @click.option("--seed", type=int, default=0)
    def cli(seed):
        pass

    @cli.command()
    @click.option("--depth", type=int, default=2)
    @click.option("--token", default="")
    def train(depth, token):
        with autolog.start_run() as run:
            seen["run_id"] = run.run_id

    command_line("--seed", "5", "train", "--depth", "4", "--token", "t0k3n")
    cli.main(standalone_mode=False)
    params = autolog.get_run(seen["run_id"]).params
    assert params["args.seed"] == "5"
    assert params["args.depth"] == "4"
    assert params["args.token"] == "[REDACTED]"
    cli.main(["--seed", "9", "train"], standalone_mode=False)  # not the command line: ignored
    assert context.parsed_arguments()["args.seed"] == "5"
    autolog.autolog(disable=True)
    assert all(vars(click.core.Command)[k] is v for k, v in before.items())
    assert dict(vars(click.core.Command)) == before


# -- code state ----------------------------------------------------------------------------------
SCRIPT = textwrap.dedent('''
    import argparse, sys
    import autolog
    autolog.autolog()
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--db-password")
    args = parser.parse_args()
    with autolog.start_run(run_name="script") as run:
        import numpy  # imported after the run started: environment.txt is updated at its end
    print(run.run_id)
''')


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})


@pytest.fixture
def repo(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    _git(folder, "init", "-q", "-b", "feature/x")
    _git(folder, "remote", "add", "origin", "https://alice:s3cret-token@git.example.com/team/project.git")
    (folder / "train.py").write_text(SCRIPT)
    (folder / "model.py").write_text("DEPTH = 3\n")
    _git(folder, "add", "train.py", "model.py")
    _git(folder, "commit", "-q", "-m", "first")
    return folder


def _run_script(folder, *args, env=None):
    done = subprocess.run([sys.executable, "train.py", *args], cwd=folder, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_script_in_a_git_repository(repo):
    (repo / "model.py").write_text("DEPTH = 5  # uncommitted\n")
    run_id = _run_script(repo, "--epochs", "2", "--db-password", "hunter2")
    run = autolog.get_run(run_id)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert run.tags["autolog.source.git.commit"] == commit
    assert run.tags["autolog.source.git.branch"] == "feature/x"
    assert run.tags["autolog.source.git.remote"] == "https://git.example.com/team/project.git"
    assert run.tags["autolog.source.git.dirty"] == "true"
    script = str(repo / "train.py")
    assert run.tags["autolog.source.script"] == os.path.realpath(script) or run.tags["autolog.source.script"] == script
    assert run.tags["autolog.source.script.sha256"] == hashlib.sha256((repo / "train.py").read_bytes()).hexdigest()
    assert "s3cret" not in " ".join(run.tags.values())
    diff = _artifact_text(run_id, "code/uncommitted.diff")
    assert "+DEPTH = 5  # uncommitted" in diff and "-DEPTH = 3" in diff
    assert run.params["args.epochs"] == "2" and run.params["args.db_password"] == "[REDACTED]"
    # the environment, brought up to date at the end of the run (numpy was imported inside it)
    text = _artifact_text(run_id, "environment.txt")
    assert re.search(r"^numpy==\S+$", text, re.M) and re.search(r"^autolog==\S+$", text, re.M)
    assert run.tags["autolog.env.cpu_count"] == str(os.cpu_count())


def test_clean_tree_has_no_diff_and_a_big_diff_is_capped(repo):
    run_id = _run_script(repo)
    assert autolog.get_run(run_id).tags["autolog.source.git.dirty"] == "false"
    assert "code" not in _artifacts(run_id)
    (repo / "model.py").write_text("".join(f"LINE_{i} = {i}\n" for i in range(2000)))
    run_id = _run_script(repo, env={"AUTOLOG_MAX_DIFF_BYTES": "1000"})
    diff = _artifact_text(run_id, "code/uncommitted.diff")
    assert diff.endswith("bytes kept (AUTOLOG_MAX_DIFF_BYTES)\n") and "# autolog: diff truncated" in diff
    assert len(diff.encode()) < 1200
    assert autolog.get_run(run_id).tags["autolog.source.git.diff_truncated"] == "true"


@pytest.mark.parametrize("breakage", ["corrupt HEAD", "no git on PATH", "not a repository"])
def test_broken_git_never_stops_the_run(repo, tmp_path, breakage):
    env = {}
    if breakage == "corrupt HEAD":
        (repo / ".git" / "HEAD").write_text("this is not a ref\n")
    elif breakage == "no git on PATH":
        empty = tmp_path / "bin"
        empty.mkdir()
        env["PATH"] = f"{empty}{os.pathsep}{os.path.dirname(sys.executable)}"
    else:
        import shutil

        shutil.rmtree(repo / ".git")
    run_id = _run_script(repo, "--epochs", "4", env=env)
    run = autolog.get_run(run_id)
    assert run.status == "FINISHED" and run.params["args.epochs"] == "4"
    assert not any(k.startswith("autolog.source.git.") for k in run.tags)
    assert run.tags["autolog.source.script.sha256"]
    assert "environment.txt" in _artifacts(run_id)


def test_code_state_of_a_path_directly(repo, tmp_path, monkeypatch, caplog):
    tags, diff = source.collect_code_state(str(repo / "train.py"))
    assert tags["autolog.source.git.branch"] == "feature/x" and diff is None
    outside = tmp_path / "elsewhere.py"
    outside.write_text("print(1)\n")
    tags, diff = source.collect_code_state(str(outside))
    assert set(tags) == {"autolog.source.script.sha256"} and diff is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git here
    monkeypatch.setattr(source, "_git_missing_reported", False)
    with caplog.at_level("DEBUG", logger="autolog"):
        assert source.collect_code_state(str(repo / "train.py"))[0] == {
            "autolog.source.script.sha256": hashlib.sha256((repo / "train.py").read_bytes()).hexdigest()}
        source.collect_code_state(str(repo / "train.py"))
    assert len([r for r in caplog.records if "git" in r.getMessage()]) == 1


def test_code_state_and_environment_off(repo):
    run_id = _run_script(repo, env={"AUTOLOG_LOG_CODE_STATE": "false", "AUTOLOG_LOG_ENVIRONMENT": "false"})
    run = autolog.get_run(run_id)
    assert "autolog.source.git.branch" not in run.tags and "autolog.source.script.sha256" not in run.tags
    assert not any(k.startswith("autolog.env.") for k in run.tags)
    assert _artifacts(run_id) == set()
    assert run.tags["autolog.source.git.commit"]  # the core's source tags stay


# -- environment ----------------------------------------------------------------------------------
def test_environment_txt_is_pip_requirements_of_the_imported_frameworks(enabled):
    import numpy  # noqa: F401 - a framework imported in this process
    from packaging.requirements import Requirement

    with autolog.start_run() as run:
        pass
    text = _artifact_text(run.run_id, "environment.txt")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    pins = {}
    for line in lines:
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "=="
        pins[environment.canonical(requirement.name)] = spec.version
    from importlib import metadata

    assert pins["numpy"] == metadata.version("numpy")
    assert pins["autolog"] == autolog.__version__
    assert "wrapt" in pins  # a dependency of autolog, resolved through metadata
    assert lines == sorted(lines, key=lambda line: environment.canonical(line.split("==")[0]))
    tags = autolog.get_run(run.run_id).tags
    assert tags["autolog.env.python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert tags["autolog.env.cpu_count"] == str(os.cpu_count())
    assert tags["autolog.env.platform"]


def test_child_runs_repeat_nothing_and_a_run_active_before_autolog_gets_it(command_line):
    command_line("--lr", "0.7")
    _parser().parse_args()  # before autolog(): not recorded
    with autolog.start_run() as run:
        autolog.autolog()
        try:
            _parser().parse_args()
            with autolog.start_run(nested=True) as child:
                pass
        finally:
            autolog.autolog(disable=True)
    got = autolog.get_run(run.run_id)
    assert got.params["args.lr"] == "0.7"
    assert "environment.txt" in _artifacts(run.run_id)
    child_run = autolog.get_run(child.run_id)
    assert not any(k.startswith(("args.", "autolog.env.")) for k in {**child_run.params, **child_run.tags})
    assert _artifacts(child.run_id) == set()


def test_requirements_resolution_is_bounded_and_skips_extras():
    found = environment.resolve(["autolog", "not-an-installed-distribution-xyz"])
    assert "autolog" in found and "wrapt" in found
    assert "not-an-installed-distribution-xyz" not in found
    assert len(environment.resolve(["pandas"], limit=2)) == 2
