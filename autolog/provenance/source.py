"""Source tags every run gets: where the code came from and what ran it.

Collected once per process, on the logger's worker (git is a subprocess), and cached:
entry-point script, command line (secrets redacted), git commit and dirty flag when
inside a git repository, user, host, Python version, autolog's version, and the
versions of the ML libraries already imported. Tag names are autolog's own
(`autolog.source.*`); the MLflow backend maps them onto MLflow's `mlflow.source.*`.

The code state (`code_state()`, logged by autolog/provenance/capture.py unless
`log_code_state=False`) adds the git branch, the remote URL with credentials
stripped, the entry-point script's sha256 and the uncommitted diff (`git diff HEAD`,
capped at `AUTOLOG_MAX_DIFF_BYTES`, 1 MiB by default). Git runs as a subprocess
with a timeout; no git, no repository or a broken one simply means no such tags.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import socket
import subprocess
import sys
import threading
from typing import Optional

from autolog.validation import redact_argv, strip_url_credentials, truncate, MAX_TAG_VALUE_LENGTH

log = logging.getLogger("autolog")

TAG_SCRIPT = "autolog.source.script"
TAG_COMMAND = "autolog.source.command"
TAG_GIT_COMMIT = "autolog.source.git.commit"
TAG_GIT_DIRTY = "autolog.source.git.dirty"
TAG_GIT_REPO = "autolog.source.git.repo"
TAG_GIT_BRANCH = "autolog.source.git.branch"
TAG_GIT_REMOTE = "autolog.source.git.remote"
TAG_GIT_DIFF_TRUNCATED = "autolog.source.git.diff_truncated"
TAG_SCRIPT_SHA256 = "autolog.source.script.sha256"
DIFF_ARTIFACT = "code/uncommitted.diff"
DEFAULT_MAX_DIFF_BYTES = 1024 * 1024
TAG_USER = "autolog.user"
TAG_HOST = "autolog.host"
TAG_PYTHON = "autolog.python_version"
TAG_AUTOLOG = "autolog.version"
TAG_LIBRARY_PREFIX = "autolog.library."

# data libraries nearly every training script imports; the ML libraries come from the
# registered integrations (`libraries()`), so a new integration needs no edit here
_DATA_LIBRARIES = {"numpy": "numpy", "pandas": "pandas"}


def libraries() -> dict:
    """{top-level module: distribution} whose versions are recorded when imported: the
    libraries of every registered integration, and numpy and pandas (never imported here)."""
    from autolog.instrument.integration import libraries as integration_libraries

    return {**_DATA_LIBRARIES, **integration_libraries()}


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


_git_missing_reported = False


def _git(args: list[str], cwd: str, timeout: float = 5, strip: bool = True) -> Optional[str]:
    """stdout of `git ARGS` in `cwd`, or None when git is missing, fails or takes too long."""
    global _git_missing_reported
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, encoding="utf-8", errors="replace",
            timeout=timeout, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"},
        )
    except FileNotFoundError:
        if not _git_missing_reported:
            _git_missing_reported = True
            log.debug("autolog: no git on PATH; runs get no git tags")
        return None
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() if strip else out.stdout


def _script_folder(path: Optional[str]) -> str:
    return os.path.dirname(path) if path and os.path.isfile(path) else (path or os.getcwd())


def git_repository(path: Optional[str]) -> Optional[tuple[str, Optional[str], Optional[str]]]:
    """(top folder, HEAD commit, branch) of the git work tree holding `path` (a file or a
    folder; None: the current folder), from one `git rev-parse`; commit and branch are None
    in a repository without commits, the branch is None on a detached HEAD. None outside git."""
    folder = _script_folder(path)
    if not os.path.isdir(folder):
        return None
    out = _git(["rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref", "HEAD"], folder)
    lines = out.splitlines() if out else []
    if len(lines) == 3:
        top, commit, branch = lines
        return top, commit, (branch if branch and branch != "HEAD" else None)
    top = _git(["rev-parse", "--show-toplevel"], folder)  # no commit yet, or not a repository at all
    return (top, None, None) if top else None


def git_state(path: Optional[str]) -> dict:
    """Commit, dirty flag and top folder of the git repository holding `path`; {} outside git."""
    found = git_repository(path)
    if found is None:
        return {}
    top, commit, _ = found
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
    for module, dist in libraries().items():
        if module in sys.modules:
            version = _versions.get(dist)  # metadata.version scans sys.path: a few ms per call and run
            if version is None:
                try:
                    version = metadata.version(dist)
                except metadata.PackageNotFoundError:
                    version = getattr(sys.modules[module], "__version__", None)
                    version = str(version) if version else None
                if version:
                    _versions[dist] = version
            if version:
                tags[TAG_LIBRARY_PREFIX + dist] = version
    return tags


_versions: dict = {}  # distribution -> version, found once per process


def _process_tags() -> dict:
    from autolog import __version__

    tags = {
        TAG_PYTHON: platform.python_version(),
        TAG_AUTOLOG: __version__,
        TAG_COMMAND: truncate(" ".join(redact_argv([sys.executable, *sys.argv])), MAX_TAG_VALUE_LENGTH),
    }
    try:
        import getpass  # on the worker, when the first run starts: not at autolog()

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


# -- code state: branch, remote, diff, script hash (autolog/provenance/capture.py logs it) ---------------
def file_sha256(path: str) -> Optional[str]:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def max_diff_bytes() -> int:
    from autolog.config import env_value

    try:
        return max(0, env_value("AUTOLOG_MAX_DIFF_BYTES", int, DEFAULT_MAX_DIFF_BYTES))
    except ValueError:
        return DEFAULT_MAX_DIFF_BYTES


def cap_diff(diff: str, limit: int) -> tuple[str, bool]:
    """`diff` cut to about `limit` bytes (UTF-8) at a line end, with a closing marker line."""
    data = diff.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return diff, False
    kept = data[:limit]
    cut = kept.rfind(b"\n")
    if cut > 0:
        kept = kept[:cut + 1]
    text = kept.decode("utf-8", errors="ignore")
    if not text.endswith("\n"):
        text += "\n"
    return text + f"# autolog: diff truncated, {len(kept)} of {len(data)} bytes kept (AUTOLOG_MAX_DIFF_BYTES)\n", True


def git_remote(top: str) -> Optional[str]:
    url = _git(["config", "--get", "remote.origin.url"], top)
    if not url:
        names = (_git(["remote"], top) or "").split()
        url = _git(["config", "--get", f"remote.{names[0]}.url"], top) if names else None
    return strip_url_credentials(url) if url else None


def collect_code_state(script: Optional[str]) -> tuple[dict, Optional[str]]:
    """(tags, uncommitted diff or None) for the entry-point script and the repository holding it."""
    tags: dict = {}
    if script and os.path.isfile(script):
        digest = file_sha256(script)
        if digest:
            tags[TAG_SCRIPT_SHA256] = digest
    found = git_repository(script)
    if found is None:
        return tags, None
    top, commit, branch = found
    if not commit:  # an unborn branch has a name already
        branch = _git(["symbolic-ref", "--short", "-q", "HEAD"], top)
    if branch:
        tags[TAG_GIT_BRANCH] = branch
    remote = git_remote(top)
    if remote:
        tags[TAG_GIT_REMOTE] = truncate(remote, MAX_TAG_VALUE_LENGTH)
    diff = None
    if commit:
        diff = _git(["diff", "HEAD", "--no-color", "--no-ext-diff"], top, timeout=20, strip=False) or None
    if diff:
        diff, truncated = cap_diff(diff, max_diff_bytes())
        if truncated:
            tags[TAG_GIT_DIFF_TRUNCATED] = "true"
    return tags, diff


_code_state: Optional[tuple] = None  # (pid, tags, diff)


def code_state() -> tuple[dict, Optional[str]]:
    """`collect_code_state` of this process's entry point, computed once per process (on the worker)."""
    global _code_state
    with _lock:
        if _code_state is None or _code_state[0] != os.getpid():
            tags, diff = collect_code_state(entry_point_script())
            _code_state = (os.getpid(), tags, diff)
        return dict(_code_state[1]), _code_state[2]


def reset_cache() -> None:
    """Forget what was computed for this process (tests that change the working tree use it)."""
    global _cached, _code_state
    with _lock:
        _cached = None
        _code_state = None


def _after_fork_in_child() -> None:
    # another thread (the worker, or capture's preparing thread) may have held the lock at
    # the fork; the child's copy would stay locked forever
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
