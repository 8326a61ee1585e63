"""The environment of a run: machine tags and `environment.txt`, a pip requirements file.

`environment_tags()`: Python version and implementation, platform, CPU count, and the
GPU names NVML reports (`autolog.env.*`).

`requirements()`: the ML framework distributions imported in this process (the modules
of `autolog.provenance.source.libraries()`: every registered integration's library, numpy
and pandas), their dependencies found in `importlib.metadata`
(requirements without an `extra ==` marker, resolved recursively, at most
`MAX_DISTRIBUTIONS`), and autolog itself, pinned `name==version`. Nothing is imported
and no subprocess runs: it is read from installed metadata, on the logger's worker.

Cheap on purpose, because it runs while the first training call of a process does: each
distribution is looked up by name (no scan of every installed one), its METADATA file is
read once and only its header lines are parsed (`importlib.metadata`'s own accessors
parse the whole file with the email package, once per attribute), and what was read is
kept for the life of the process. The machine tags are computed once per process too.
"""

from __future__ import annotations

import collections
import os
import platform
import re
import sys
import threading
from typing import Any, Iterable, Optional

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


def _requirement_names(requires: Iterable[str]) -> list[str]:
    names = []
    for requirement in requires or ():
        text, _, marker = requirement.partition(";")
        if "extra" in marker:  # an optional dependency: installed or not, it is not required
            continue
        match = _NAME_RE.match(text)
        if match:
            names.append(match.group(1))
    return names


def _distribution(name: str) -> Any:
    from importlib import metadata  # here, on the provenance thread: 11-18 ms that autolog() need not pay

    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - broken metadata of one package must not stop the rest
        return None


def _headers(text: str) -> dict[str, list[str]]:
    """The header fields of a METADATA / PKG-INFO text (RFC 822 style: up to the first empty
    line, continuation lines folded in), each name lower-cased, with every value it has."""
    fields: dict[str, list[str]] = {}
    last: Optional[list[str]] = None
    for line in text.splitlines():
        if not line.strip():
            break
        if line[0] in " \t":  # a continuation of the field above
            if last:
                last[-1] += "\n" + line
            continue
        key, colon, value = line.partition(":")
        if not colon:
            break  # not a header: the body begins (as the email parser decides too)
        last = fields.setdefault(key.strip().lower(), [])
        last.append(value.strip())
    return fields


def describe(name: str) -> Optional[tuple[str, str, tuple[str, ...]]]:
    """(name, version, names of the required distributions) of the installed distribution
    `name`, or None when it is not installed; read once per process."""
    key = canonical(name)
    with _cache_lock:
        if _cache_pid[0] != os.getpid():
            _described.clear()
            _cache_pid[0] = os.getpid()
        if key in _described:
            return _described[key]
    found = _read_distribution(name)
    with _cache_lock:
        _described[key] = found
    return found


def _read_distribution(name: str) -> Optional[tuple[str, str, tuple[str, ...]]]:
    dist = _distribution(name)
    if dist is None:
        return None  # not installed: its marker excluded it here, or it is vendored
    try:
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        fields = _headers(text)
        real_name = (fields.get("name") or [None])[0] or name
        version = (fields.get("version") or [None])[0]
        requires = fields.get("requires-dist")
        if version is None or requires is None:  # no header for it: importlib.metadata's way (egg-info's requires.txt)
            version = version or dist.version
            requires = dist.requires or ()
        return real_name, version, tuple(_requirement_names(requires))
    except Exception:  # noqa: BLE001 - broken metadata of one package must not stop the rest
        return None


_cache_lock = threading.Lock()
_cache_pid = [os.getpid()]
_described: dict[str, Optional[tuple[str, str, tuple[str, ...]]]] = {}  # canonical name -> describe()


def resolve(roots: Iterable[str], limit: int = MAX_DISTRIBUTIONS) -> dict[str, tuple[str, str]]:
    """{canonical name: (name, version)} of `roots` and their installed dependencies, breadth first."""
    found: dict[str, tuple[str, str]] = {}
    queue = collections.deque(roots)
    seen = set()
    while queue and len(found) < limit:
        name = queue.popleft()
        key = canonical(name)
        if key in seen:
            continue
        seen.add(key)
        described = describe(name)
        if described is None:
            continue
        real_name, version, requires = described
        found[key] = (real_name, version)
        queue.extend(requires)
    return found


def requirements_text(roots: Iterable[str], header: str = "") -> str:
    """A pip requirements file pinning `roots` and their dependencies, sorted by name."""
    pinned = resolve(roots)
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    lines += [f"{name}=={version}" for _, (name, version) in sorted(pinned.items())]
    return "\n".join(lines) + "\n"


def environment_tags(gpu_names: Optional[list[str]] = None) -> dict:
    tags = dict(_machine_tags())
    if gpu_names:
        tags[TAG_PREFIX + "gpu_count"] = str(len(gpu_names))
        tags[TAG_PREFIX + "gpus"] = ", ".join(gpu_names)
    return tags


def _machine_tags() -> dict:
    """Python, platform and CPU count: the same for the life of the process, computed once."""
    global _machine
    if _machine is None:
        _machine = {
            TAG_PREFIX + "python_version": platform.python_version(),
            TAG_PREFIX + "python_implementation": platform.python_implementation(),
            TAG_PREFIX + "platform": platform.platform(),
            TAG_PREFIX + "cpu_count": str(os.cpu_count() or 0),
        }
    return _machine


_machine: Optional[dict] = None


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


def _after_fork_in_child() -> None:
    # the worker or capture's preparing thread may have held a lock at the fork
    global _cache_lock
    _cache_lock = threading.Lock()
    snapshot._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
