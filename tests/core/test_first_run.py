"""The run start-up work of a process (issue 18): prepared once at `autolog()`, off the
caller's thread, and the same tags and environment.txt as before, whichever way it is made.

- `environment.resolve` reads only METADATA headers, once per distribution; its answer equals
  the one `importlib.metadata`'s own accessors give, for every installed distribution.
- `autolog()` prepares the source tags, the code state and autolog's requirements on a short
  thread and opens no store; a training call's own run records its code state and
  environment when it ends, with the same content a user's run gets at its start.
- git: one `rev-parse` finds the top folder, the commit and the branch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from importlib import metadata

import pytest

import autolog
from autolog.provenance import environment, source
from autolog.runs import logger_for


def _artifact_text(run_id: str, path: str) -> str:
    autolog.flush()
    local = logger_for().backend.download_artifacts(run_id, path, "")
    with open(local, encoding="utf-8") as fh:
        return fh.read()


def _reference_resolve(roots, limit=environment.MAX_DISTRIBUTIONS) -> dict:
    """The resolution as it was written first: importlib.metadata's accessors, breadth first."""
    found, queue, seen = {}, list(roots), set()
    while queue and len(found) < limit:
        name = queue.pop(0)
        key = environment.canonical(name)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[key] = (dist.metadata.get("Name") or name, dist.version)
        for requirement in dist.requires or ():
            text, _, marker = requirement.partition(";")
            if "extra" in marker:
                continue
            match = environment._NAME_RE.match(text)
            if match:
                queue.append(match.group(1))
    return found


# -- environment.txt ---------------------------------------------------------------------------------
def test_every_installed_distribution_reads_as_importlib_metadata_reads_it():
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        expected = (name, dist.version, tuple(environment._requirement_names(dist.requires or ())))
        assert environment.describe(name) == expected, name


@pytest.mark.parametrize("roots", [["autolog"], ["scikit-learn", "numpy", "pandas", "autolog"],
                                   ["statsmodels", "scikit-learn", "autolog", "not-installed-xyz"]])
def test_resolution_equals_importlib_metadata_and_is_read_once(roots):
    assert environment.resolve(roots) == _reference_resolve(roots)
    assert environment.resolve(roots, limit=3) == _reference_resolve(roots, limit=3)
    described = dict(environment._described)
    environment.resolve(roots)
    assert environment._described == described  # nothing read again


def test_metadata_headers_fold_and_stop_at_the_body():
    text = "Name: demo\nVersion: 1.0\nRequires-Dist: numpy>=1\nRequires-Dist: rich; extra == 'ui'\n" \
           "License: line one\n  line two\n\nRequires-Dist: not-a-header-but-the-body\n"
    fields = environment._headers(text)
    assert fields["name"] == ["demo"] and fields["version"] == ["1.0"]
    assert fields["requires-dist"] == ["numpy>=1", "rich; extra == 'ui'"]
    assert fields["license"] == ["line one\n  line two"]
    assert environment._requirement_names(fields["requires-dist"]) == ["numpy"]


def test_a_training_calls_run_gets_the_environment_of_a_user_run():
    import sklearn  # noqa: F401 - a framework imported in this process

    autolog.autolog(log_models=False, log_plots=False)
    from sklearn.linear_model import LinearRegression

    with autolog.start_run() as user_run:
        pass
    LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])  # a run of its own, owner autolog
    trained = autolog.last_run()
    assert trained.run_id != user_run.run_id and trained.tags["autolog.run_owner"] == "autolog"
    assert _artifact_text(trained.run_id, "environment.txt") == _artifact_text(user_run.run_id, "environment.txt")
    assert "scikit-learn==" in _artifact_text(trained.run_id, "environment.txt")
    user_tags = autolog.get_run(user_run.run_id).tags
    for key in ("autolog.env.python_version", "autolog.env.platform", "autolog.env.cpu_count"):
        assert trained.tags[key] == user_tags[key]


# -- prepared at autolog() ------------------------------------------------------------------------------
PREPARE_SCRIPT = textwrap.dedent('''
    import os, sys, threading
    import autolog
    from autolog.provenance import environment, source
    store = sys.argv[1]
    autolog.autolog(tracking_uri=store)
    for thread in threading.enumerate():
        if thread.name == "autolog-provenance":
            thread.join(60)
    print(source._cached is not None and source._code_state is not None,
          "autolog" in environment._described, os.path.exists(store))
''')


def test_autolog_prepares_the_run_context_off_thread_and_opens_no_store(tmp_path):
    (tmp_path / "train.py").write_text(PREPARE_SCRIPT)
    store = str(tmp_path / "never-made")
    done = subprocess.run([sys.executable, "train.py", store], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "AUTOLOG_LOG_SYSTEM_METRICS": "false"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "False"]


def test_a_fork_while_the_source_lock_is_held_does_not_lock_the_child():
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    holding, release = threading.Event(), threading.Event()

    def hold():
        with source._lock:
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(30)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the lock must be free here
            os._exit(0 if source._lock.acquire(timeout=10) else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        thread.join()
    assert os.waitstatus_to_exitcode(status) == 0


# -- git ------------------------------------------------------------------------------------------------
def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})


def test_git_repository_top_commit_and_branch(tmp_path):
    repo = tmp_path / "project"
    (repo / "src").mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "topic")
    script = repo / "src" / "train.py"
    script.write_text("print(1)\n")
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=repo, capture_output=True,
                         text=True).stdout.strip()
    assert source.git_repository(str(script)) == (top, None, None)  # no commit yet
    tags, diff = source.collect_code_state(str(script))
    assert tags["autolog.source.git.branch"] == "topic" and diff is None  # the unborn branch has its name
    _git(repo, "add", "src/train.py")
    _git(repo, "commit", "-q", "-m", "first")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert source.git_repository(str(script)) == (top, commit, "topic")
    assert source.git_state(str(script))[source.TAG_GIT_DIRTY] == "false"
    _git(repo, "checkout", "-q", "--detach")
    assert source.git_repository(str(script)) == (top, commit, None)
    assert source.TAG_GIT_BRANCH not in source.collect_code_state(str(script))[0]
    assert source.git_repository(str(tmp_path)) is None
