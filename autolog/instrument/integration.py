"""The integration base class, the registry of integrations, and enabling/disabling them.

An integration is one class in one module of `integrations/` (installed as
`autolog.integrations`): a `name`, the `module` whose import triggers it, the
`requires` string of the versions it is tested on, and `patch(patcher)`. Third
parties register theirs under the entry-point group `autolog.integrations`; the
built-ins are registered the same way, and also listed here so that a source
checkout without entry points finds them.

The engine keeps one `Patcher` per enabled integration. Enabling twice is harmless.
An installed library of an unsupported version is skipped with a warning, or an
error when the user named that integration in `autolog(integrations=[...])`.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from importlib import metadata
from typing import Any, Optional

from autolog.instrument import containment
from autolog.instrument.patching import Patcher, when_imported

log = logging.getLogger("autolog")

ENTRY_POINT_GROUP = "autolog.integrations"

BUILTIN = {
    "sklearn": "autolog.integrations.sklearn:SklearnIntegration",
    "statsmodels": "autolog.integrations.statsmodels:StatsmodelsIntegration",
}


class Integration:
    name: str = ""
    module: str = ""  # the import that triggers patching, e.g. "sklearn"
    requires: str = ""  # e.g. "scikit-learn>=1.3"

    def patch(self, patcher: Patcher) -> None:
        raise NotImplementedError

    # -- version check ------------------------------------------------------
    def distribution(self) -> str:
        return _split_requirement(self.requires)[0] if self.requires else self.module

    def installed_version(self) -> Optional[str]:
        try:
            return metadata.version(self.distribution())
        except metadata.PackageNotFoundError:
            return None

    def supports(self, version: Optional[str]) -> bool:
        if not self.requires or version is None:
            return True
        return version_satisfies(version, _split_requirement(self.requires)[1])


# -- version strings -------------------------------------------------------------------
_REQ_RE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$")


def _split_requirement(requirement: str) -> tuple[str, str]:
    match = _REQ_RE.match(requirement)
    if not match:
        raise ValueError(f"bad requirement {requirement!r}")
    return match.group(1), match.group(2).strip()


def _version_tuple(version: str) -> tuple:
    parts = []
    for piece in re.split(r"[.+\-]", version):
        number = re.match(r"\d+", piece)
        if not number:
            break
        parts.append(int(number.group()))
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def version_satisfies(version: str, specifiers: str) -> bool:
    """Does `version` meet `specifiers` like ">=1.3,<2"? (numeric release parts only)"""
    have = _version_tuple(version)
    for spec in filter(None, (s.strip() for s in specifiers.split(","))):
        match = re.match(r"(>=|<=|==|!=|>|<|~=)\s*(.+)", spec)
        if not match:
            raise ValueError(f"bad version specifier {spec!r}")
        op, want = match.group(1), _version_tuple(match.group(2))
        ok = {
            ">=": have >= want, "<=": have <= want, ">": have > want, "<": have < want,
            "==": have == want, "!=": have != want,
            "~=": have >= want and have[: max(1, len(want) - 1)] == want[: max(1, len(want) - 1)],
        }[op]
        if not ok:
            return False
    return True


# -- the registry ------------------------------------------------------------------------
def available() -> dict[str, str]:
    """name -> "module:Class" of every known integration (built-in and plugins)."""
    found = dict(BUILTIN)
    try:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            found.setdefault(ep.name, ep.value)
    except Exception as exc:  # noqa: BLE001 - broken metadata of another package
        containment.report("reading integration entry points", exc)
    return found


def load(target: str) -> type:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


class Engine:
    """Which integrations are wanted and which are patched, under one lock."""

    def __init__(self):
        self.lock = threading.RLock()
        self.wanted: dict[str, Integration] = {}
        self.patchers: dict[str, Patcher] = {}

    def enable(self, names: Optional[tuple], exclude: tuple) -> list[str]:
        """Make exactly the selected integrations wanted; return their names."""
        known = available()
        explicit = names is not None
        unknown = [n for n in (names or ()) if n not in known]
        if unknown:
            raise ValueError(f"unknown integration(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        selected = [n for n in (names if explicit else sorted(known)) if n not in exclude]
        with self.lock:
            for name in list(self.wanted):
                if name not in selected:
                    self.disable(name)
            for name in selected:
                if name in self.wanted:
                    continue
                try:
                    integration = load(known[name])()
                except ImportError as exc:
                    if explicit:
                        raise
                    log.debug("autolog: integration %s not loaded: %s", name, exc)
                    continue
                version = integration.installed_version()
                if version is not None and not integration.supports(version):
                    message = (f"integration {name} supports {integration.requires}, "
                               f"but {integration.distribution()} {version} is installed")
                    if explicit:
                        raise RuntimeError("autolog: " + message)
                    containment.warn_once(f"version {name}", "%s; it is not patched", message)
                    continue
                self.wanted[name] = integration
                when_imported(integration.module, self._hook_for(name))
        return list(self.wanted)

    def _hook_for(self, name: str):
        engine = self

        def on_import(module: Any) -> None:
            engine.patch_now(name)

        on_import.__qualname__ = f"autolog_on_import_{name}"
        _hooks.setdefault(name, on_import)
        return _hooks[name]

    def patch_now(self, name: str) -> None:
        with self.lock:
            integration = self.wanted.get(name)
            if integration is None or name in self.patchers:
                return
            patcher = Patcher(name)
            self.patchers[name] = patcher
            try:
                integration.patch(patcher)
            except Exception:
                patcher.revert()  # all or nothing
                del self.patchers[name]
                raise

    def disable(self, name: str) -> None:
        with self.lock:
            self.wanted.pop(name, None)
            patcher = self.patchers.pop(name, None)
            if patcher is not None:
                patcher.revert()

    def disable_all(self) -> None:
        with self.lock:
            for name in list(self.wanted) + list(self.patchers):
                self.disable(name)

    def patched(self) -> dict[str, Patcher]:
        with self.lock:
            return dict(self.patchers)


_hooks: dict[str, Any] = {}  # one hook function per integration name, for the life of the process
engine = Engine()
