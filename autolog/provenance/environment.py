"""The environment of a run: machine tags and `environment.txt`, a pip requirements file.

`environment_tags()`: Python version and implementation, platform, CPU count, and the
GPU names NVML reports (`autolog.env.*`).

`requirements()`: the ML framework distributions imported in this process (the modules
of `autolog.provenance.source.libraries()`: every registered integration's library, numpy
and pandas), their dependencies found in `importlib.metadata`
(requirements without an `extra ==` marker, resolved recursively, at most
`MAX_DISTRIBUTIONS`), and autolog itself, pinned `name==version`. Nothing is imported
and no subprocess runs: it is read from installed metadata, on the logger's worker.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import threading
from importlib import metadata
from typing import Iterable, Optional

ARTIFACT = "environment.txt"
MAX_DISTRIBUTIONS = 300
TAG_PREFIX = "autolog.env."

_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_frameworks() -> list[str]:
    """Distribution names of the ML libraries imported in this process (imports nothing)."""
    from autolog.provenance.source import libraries

    return sorted({dist for module, dist in libraries().items() if module in sys.modules})


def _requirement_names(dist: metadata.Distribution) -> list[str]:
    names = []
    for requirement in dist.requires or ():
        text, _, marker = requirement.partition(";")
        if "extra" in marker:  # an optional dependency: installed or not, it is not required
            continue
        match = _NAME_RE.match(text)
        if match:
            names.append(match.group(1))
    return names


def _distribution(name: str) -> Optional[metadata.Distribution]:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - broken metadata of one package must not stop the rest
        return None


def resolve(roots: Iterable[str], limit: int = MAX_DISTRIBUTIONS) -> dict[str, tuple[str, str]]:
    """{canonical name: (name, version)} of `roots` and their installed dependencies, breadth first."""
    found: dict[str, tuple[str, str]] = {}
    queue = list(roots)
    seen = set()
    while queue and len(found) < limit:
        name = queue.pop(0)
        key = canonical(name)
        if key in seen:
            continue
        seen.add(key)
        dist = _distribution(name)
        if dist is None:
            continue  # not installed: its marker excluded it here, or it is vendored
        real_name = dist.metadata.get("Name") or name
        found[key] = (real_name, dist.version)
        queue.extend(_requirement_names(dist))
    return found


def requirements_text(roots: Iterable[str], header: str = "") -> str:
    """A pip requirements file pinning `roots` and their dependencies, sorted by name."""
    pinned = resolve(roots)
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    lines += [f"{name}=={version}" for _, (name, version) in sorted(pinned.items())]
    return "\n".join(lines) + "\n"


def environment_tags(gpu_names: Optional[list[str]] = None) -> dict:
    tags = {
        TAG_PREFIX + "python_version": platform.python_version(),
        TAG_PREFIX + "python_implementation": platform.python_implementation(),
        TAG_PREFIX + "platform": platform.platform(),
        TAG_PREFIX + "cpu_count": str(os.cpu_count() or 0),
    }
    if gpu_names:
        tags[TAG_PREFIX + "gpu_count"] = str(len(gpu_names))
        tags[TAG_PREFIX + "gpus"] = ", ".join(gpu_names)
    return tags


class EnvironmentSnapshot:
    """environment.txt for the frameworks imported so far; recomputed only when that set grows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Optional[tuple] = None
        self._text = ""

    def current(self) -> tuple[tuple, str]:
        """(frameworks it covers, requirements text)."""
        frameworks = tuple(imported_frameworks())
        with self._lock:
            if self._key != (os.getpid(), frameworks):
                roots = list(frameworks) + ["autolog"]
                header = (f"Python {platform.python_version()} on {platform.platform()}\n"
                          f"frameworks: {', '.join(frameworks) or 'none imported'}; written by autolog")
                self._text = requirements_text(roots, header)
                self._key = (os.getpid(), frameworks)
            return frameworks, self._text


snapshot = EnvironmentSnapshot()
