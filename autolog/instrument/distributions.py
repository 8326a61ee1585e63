"""Installed distributions read the cheap way: one entry-point group, and versions.

`autolog()` needs the integrations' entry points and the versions of their libraries.
`importlib.metadata` gives both, but importing it imports the `email` package (about 25 ms,
a sixth of what `import autolog; autolog.autolog()` costs a script), and its
`entry_points()` parses every distribution's file. Here the folders on `sys.path` are listed
once, each distribution's `entry_points.txt` is searched for the one group, and a version is
read from the header lines of its METADATA (or PKG-INFO) only.

Distributions are found as `importlib.metadata` finds them on a file system path:
`NAME-VERSION.dist-info` and `NAME[-VERSION...].egg-info` folders (an `.egg-info` file is
PKG-INFO itself), the first on `sys.path` of each normalised name winning. Whatever this
cannot read (a zip archive on the path, an error) is left to `importlib.metadata`:
`entry_points` falls back to it when the group is found nowhere here.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Optional


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    """{normalised name: its .dist-info / .egg-info path} of the distributions on `sys.path`.

    Kept while no folder of `sys.path` changes (their modification times, as importlib.metadata
    keeps its listings): model folders ask for versions at every model written."""
    global _installed
    key = []
    for entry in sys.path:
        folder = entry or "."
        try:
            key.append((folder, os.stat(folder).st_mtime_ns))
        except OSError:
            continue
    key = tuple(key)
    cached = _installed
    if cached is not None and cached[0] == key:
        return cached[1]
    found: dict[str, str] = {}
    for folder, _ in key:
        try:
            names = os.listdir(folder)
        except OSError:  # a zip archive
            continue
        for name in names:
            base, _, suffix = name.rpartition(".")
            if suffix in ("dist-info", "egg-info") and base:
                found.setdefault(canonical(base.partition("-")[0]), os.path.join(folder, name))
    _installed = (key, found)
    return found


_installed: Optional[tuple] = None  # (the folders of sys.path and their mtimes, what installed() found)


def entry_points(group: str) -> list[tuple[str, str]]:
    """[(name, value)] of the entry points in `group`, in the order of the distributions found."""
    found = []
    for path in installed().values():
        text = _read(os.path.join(path, "entry_points.txt")) if os.path.isdir(path) else None
        if text and f"[{group}]" in text:
            found += _section(text, group)
    if found:
        return found
    from importlib import metadata  # a distribution this does not read (a zip): importlib's answer

    return [(ep.name, ep.value) for ep in metadata.entry_points(group=group)]


def version(name: str) -> Optional[str]:
    """The version of the installed distribution `name`, or None when it is not installed."""
    path = installed().get(canonical(name))
    if path is None:
        return None
    text = (_read(os.path.join(path, "METADATA")) or _read(os.path.join(path, "PKG-INFO"))
            if os.path.isdir(path) else _read(path))
    for line in (text or "").splitlines():
        if not line.strip():
            break  # the headers end: the description begins
        key, colon, value = line.partition(":")
        if colon and key.strip().lower() == "version":
            return value.strip()
    from importlib import metadata  # no Version header: importlib's way

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        return None


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """The `name = value` lines of `[group]` in an entry_points.txt (INI: comments start with # or ;)."""
    found, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
            continue
        if inside:
            name, equals, value = line.partition("=")
            if equals:
                found.append((name.strip(), value.strip()))
    return found
