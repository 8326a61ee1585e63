"""Helpers of the fault suite: child programs in real interpreters, and the logged / stored /
lost figures every case reports in its assertion messages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


from autolog.backends.local import LocalStore


def write_script(tmp_path, source: str, name: str = "child.py") -> str:
    script = tmp_path / name
    script.write_text(textwrap.dedent(source))
    return str(script)


def child_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(extra or {})
    return env


def run_python(tmp_path, source: str, env: dict | None = None, timeout: float = 120, name: str = "child.py"):
    """Run `source` in a fresh interpreter in tmp_path; the CompletedProcess (never checked)."""
    script = write_script(tmp_path, source, name)
    return subprocess.run([sys.executable, script], cwd=str(tmp_path), env=child_env(env),
                          capture_output=True, text=True, timeout=timeout)


def start_python(tmp_path, source: str, env: dict | None = None, name: str = "child.py") -> subprocess.Popen:
    script = write_script(tmp_path, source, name)
    return subprocess.Popen([sys.executable, script], cwd=str(tmp_path), env=child_env(env), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def output(proc) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


def figures(logged: int, stored: int) -> str:
    """The line each case reports: records logged / stored / lost."""
    return f"logged {logged} / stored {stored} / lost {logged - stored}"


def stored_points(store_dir: str, run_id: str, key: str) -> int:
    return len(LocalStore(store_dir).get_metric_history(run_id, key))


def replay_journals(journal_root, store_dir: str) -> int:
    """Replay every spill journal under `journal_root` into the local store at `store_dir`
    (what the next autolog process or `autolog sync` does); the records sent."""
    from autolog.transport.journal import Journal

    sent = 0
    if not os.path.isdir(journal_root):
        return 0
    for name in sorted(os.listdir(journal_root)):
        folder = os.path.join(journal_root, name)
        if os.path.isdir(folder):
            sent += Journal("replay", folder=folder).replay(LocalStore(store_dir)).sent
    return sent
