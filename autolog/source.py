"""Source tags every run gets: where the code came from and what ran it.

Collected once per process, on the logger's worker (git is a subprocess), and cached:
entry-point script, command line (secrets redacted), git commit and dirty flag when
inside a git repository, user, host, Python version, autolog's version, and the
versions of the ML libraries already imported. Tag names are autolog's own
(`autolog.source.*`); the MLflow backend maps them onto MLflow's `mlflow.source.*`.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
import threading
from typing import Optional

from autolog.validation import redact_argv, truncate, MAX_TAG_VALUE_LENGTH

TAG_SCRIPT = "autolog.source.script"
TAG_COMMAND = "autolog.source.command"
TAG_GIT_COMMIT = "autolog.source.git.commit"
TAG_GIT_DIRTY = "autolog.source.git.dirty"
TAG_GIT_REPO = "autolog.source.git.repo"
TAG_USER = "autolog.user"
TAG_HOST = "autolog.host"
TAG_PYTHON = "autolog.python_version"
TAG_AUTOLOG = "autolog.version"
TAG_LIBRARY_PREFIX = "autolog.library."

# libraries whose version is worth a tag when they are already imported (never imported here)
_LIBRARIES = {
    "sklearn": "scikit-learn",
    "statsmodels": "statsmodels",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "tensorflow": "tensorflow",
    "keras": "keras",
    "torch": "torch",
    "lightning": "lightning",
    "pytorch_lightning": "pytorch-lightning",
    "pyspark": "pyspark",
    "numpy": "numpy",
    "pandas": "pandas",
}

_lock = threading.Lock()
_cached: Optional[dict] = None


def entry_point_script() -> Optional[str]:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        return os.path.abspath(path)
    if sys.argv and sys.argv[0] and sys.argv[0] not in ("-c", "-m", ""):
        return os.path.abspath(sys.argv[0])
    return None


def _git(args: list[str], cwd: str) -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(path: Optional[str]) -> dict:
    """Commit, dirty flag and top folder of the git repository holding `path`; {} outside git."""
    folder = os.path.dirname(path) if path and os.path.isfile(path) else (path or os.getcwd())
    if not os.path.isdir(folder):
        return {}
    top = _git(["rev-parse", "--show-toplevel"], folder)
    if not top:
        return {}
    commit = _git(["rev-parse", "HEAD"], top)
    if not commit:
        return {TAG_GIT_REPO: top}  # a repository without commits
    status = _git(["status", "--porcelain", "--untracked-files=no"], top)
    tags = {TAG_GIT_REPO: top, TAG_GIT_COMMIT: commit}
    if status is not None:
        tags[TAG_GIT_DIRTY] = "true" if status else "false"
    return tags


def library_versions() -> dict:
    """Versions of the ML libraries imported so far (reads metadata; imports nothing)."""
    from importlib import metadata

    tags = {}
    for module, dist in _LIBRARIES.items():
        if module in sys.modules:
            try:
                tags[TAG_LIBRARY_PREFIX + dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                version = getattr(sys.modules[module], "__version__", None)
                if version:
                    tags[TAG_LIBRARY_PREFIX + dist] = str(version)
    return tags


def _process_tags() -> dict:
    from autolog import __version__

    tags = {
        TAG_PYTHON: platform.python_version(),
        TAG_AUTOLOG: __version__,
        TAG_COMMAND: truncate(" ".join(redact_argv([sys.executable, *sys.argv])), MAX_TAG_VALUE_LENGTH),
    }
    try:
        tags[TAG_USER] = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        pass
    try:
        tags[TAG_HOST] = socket.gethostname()
    except OSError:
        pass
    script = entry_point_script()
    if script:
        tags[TAG_SCRIPT] = script
    tags.update(git_state(script))
    return tags


def source_tags() -> dict:
    """The tags above; the process part is computed once, library versions each time."""
    global _cached
    with _lock:
        if _cached is None or _cached.get("_pid") != os.getpid():
            _cached = dict(_process_tags(), _pid=os.getpid())
        tags = {k: v for k, v in _cached.items() if k != "_pid"}
    tags.update(library_versions())
    return tags
