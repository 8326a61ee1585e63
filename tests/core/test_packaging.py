"""The distribution: a wheel built from this tree holds only `autolog/...` (integrations
inside it as `autolog.integrations`), `py.typed`, the entry points and the `autolog`
console script; installed into a fresh virtual environment it imports from anywhere.

The build runs on a copy of the source files in tmp_path, so the shared working tree
gets no `build/` or `*.egg-info` folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

import wrapt

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = ("pyproject.toml", "README.md", "autolog", "integrations")


def _copy_sources(dest):
    for name in SOURCES:
        src = os.path.join(REPO, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif os.path.exists(src):
            shutil.copy2(src, os.path.join(dest, name))


def _run(args, **kwargs):
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert out.returncode == 0, f"{args}\nstdout:\n{out.stdout[-3000:]}\nstderr:\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    _copy_sources(str(src))
    dist = tmp_path_factory.mktemp("dist")
    # no build isolation: setuptools and wheel come from the test environment (no network needed)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)])
    wheels = [f for f in os.listdir(dist) if f.endswith(".whl")]
    assert len(wheels) == 1, wheels
    return os.path.join(dist, wheels[0])


@pytest.mark.slow
def test_the_wheel_holds_only_the_autolog_package(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        top = {name.split("/")[0] for name in names}
        dist_info = [t for t in top if t.endswith(".dist-info")]
        assert top - set(dist_info) == {"autolog"}, top  # no top-level `integrations`
        assert "autolog/py.typed" in names
        assert "autolog/integrations/__init__.py" in names
        assert "autolog/backends/local.py" in names
        for module in os.listdir(os.path.join(REPO, "integrations")):
            if module.endswith(".py"):
                assert f"autolog/integrations/{module}" in names
        assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
        entry_points = zf.read(f"{dist_info[0]}/entry_points.txt").decode()
    assert "[console_scripts]" in entry_points and "autolog = autolog.cli:main" in entry_points
    assert "[autolog.backends]" in entry_points and "[autolog.integrations]" in entry_points


@pytest.mark.slow
def test_the_wheel_installs_and_imports_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel])
    # wrapt, the one dependency, comes from this environment through a .pth file (no network needed)
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    deps = tmp_path / "deps"
    deps.mkdir()
    os.symlink(os.path.dirname(wrapt.__file__), deps / "wrapt")
    with open(os.path.join(site, "test-deps.pth"), "w", encoding="utf-8") as fh:
        fh.write(str(deps) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "AUTOLOG_TRACKING_URI": str(tmp_path / "store"),
           "AUTOLOG_JOURNAL_DIR": str(tmp_path / "journal")}
    program = (
        "import autolog, autolog.integrations, autolog.integrations.sklearn, autolog.backends.local, importlib.util;"
        "print(autolog.__file__); print(autolog.integrations.__file__);"
        "print(importlib.util.find_spec('integrations'));"
        "from importlib.metadata import entry_points;"
        "print(sorted(ep.name for ep in entry_points(group='autolog.integrations')))"
    )
    out = _run([python, "-c", program], cwd=str(elsewhere), env=env).stdout.splitlines()
    assert out[0].startswith(site) and out[1].startswith(os.path.join(site, "autolog", "integrations"))
    assert out[2] == "None"  # nothing called `integrations` at the top level
    assert "sklearn" in out[3]

    script = venv / "bin" / "autolog"
    assert script.exists()
    help_text = _run([str(script), "--help"], cwd=str(elsewhere), env=env).stdout
    assert "autolog" in help_text
    # the installed package logs a run, read back through the installed CLI
    _run([python, "-c", "import autolog\nwith autolog.start_run('from-wheel'):\n    autolog.log_metric('x', 1.0)"],
         cwd=str(elsewhere), env=env)
    listing = _run([str(script), "runs"], cwd=str(elsewhere), env=env).stdout
    assert "from-wheel" in listing
