"""The integration base class, the registry of integrations, and enabling/disabling them.

An integration is one class in one module of `integrations/` (installed as
`autolog.integrations`): a `name`, the `module` whose import triggers it, the
`requires` string of the versions it is tested on, and `patch(patcher)`. Built-ins
and third parties alike are found through the entry-point group `autolog.integrations`;
`register_integration(name, "module:Class")` adds one at run time (tests, code that
cannot ship entry points). Nothing else in the core names an integration or its
library: the libraries whose versions runs record come from `libraries()`.

The engine keeps one `Patcher` per enabled integration. Enabling twice is harmless.
An installed library of an unsupported version is skipped with a warning, or an
error when the user named that integration in `autolog(integrations=[...])`.
Entry points and versions are read from the installed metadata without importing
`importlib.metadata` (autolog/instrument/distributions.py); requirements are judged with
`packaging`.
"""

from __future__ import annotations

import importlib
import logging
import operator
import re
import threading
from typing import Any, Optional

from autolog.instrument import containment, distributions
from autolog.instrument.patching import Patcher, forget, when_imported

log = logging.getLogger("autolog")

ENTRY_POINT_GROUP = "autolog.integrations"


class Integration:
    name: str = ""
    module: str = ""  # the import that triggers patching, e.g. "sklearn"
    requires: str = ""  # one requirement string, e.g. "scikit-learn>=1.3"

    def patch(self, patcher: Patcher) -> None:
        raise NotImplementedError

    # -- the library and its versions -------------------------------------------------
    def distribution(self) -> str:
        """The distribution (pip name) of the library: from `requires`, else `module`."""
        return _requirement(self.requires).name if self.requires else self.module.partition(".")[0]

    def model_flavor(self, model: Any) -> Any:
        """The `ModelFlavor` that writes `model`, an object of this integration's library, for
        the generic `autolog.log_model(model, name)` (autolog/fluent.py); None when it writes no
        such model. An integration with several flavors picks one by the model's type."""
        return None

    def libraries(self) -> dict[str, str]:
        """{top-level module: distribution} of the libraries whose versions a run records
        when they are imported. One by default; an integration of two libraries says so."""
        return {self.module.partition(".")[0]: self.distribution()}

    def installed_version(self) -> Optional[str]:
        return distributions.version(self.distribution())

    def supports(self, version: Optional[str]) -> bool:
        """Does `version` meet `requires`? Pre-releases count; a version string that is not
        PEP 440 (a local build) cannot be judged and is let through."""
        if not self.requires or version is None:
            return True
        requirement = _requirement(self.requires)
        if isinstance(requirement.specifier, _ReleaseSpecifier):
            verdict = requirement.specifier.contains(version)
            if verdict is not None:
                return verdict
            requirement = _requirement(self.requires, releases_only=False)
        from packaging.version import InvalidVersion, Version

        try:
            parsed = Version(version)
        except InvalidVersion:
            log.debug("autolog: %s version %r is not PEP 440; not checked against %s",
                      self.distribution(), version, self.requires)
            return True
        return requirement.specifier.contains(parsed, prereleases=True)


# "name>=1.3,<2" (PEP 508's name and version specifiers, no extras, URL or marker): the form
# integrations use, parsed here without packaging's full requirement grammar, whose import
# (about 15 ms) `autolog()` would pay for every installed library
_SIMPLE_REQUIREMENT = re.compile(
    r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"((?:(?:~=|==|!=|<=|>=|<|>|===)\s*[A-Za-z0-9.*+!_-]+\s*)(?:,\s*(?:~=|==|!=|<=|>=|<|>|===)\s*[A-Za-z0-9.*+!_-]+\s*)*)?")


class _Requirement:
    """What `supports` needs of a requirement: its name and its specifier set."""

    def __init__(self, name: str, specifier: Any):
        self.name, self.specifier = name, specifier


class _ReleaseSpecifier:
    """A specifier of plain releases only (">=1.3,<2": <, <=, >, >=, ==, != and numbers), which
    judges plain releases (1.5.2) and releases with a local label (2.2.0+cpu) as packaging does
    (release numbers compared zero-padded; a local label does not count against a specifier
    without one, and makes no version greater than its own release), without importing packaging
    (4-7 ms of `autolog()`). These are the requirements of integrations and the versions of
    installed libraries nearly always; for anything else `contains` says None: ask packaging."""

    _CLAUSE = re.compile(r"\s*(<=|>=|==|!=|<|>)\s*([0-9]+(?:\.[0-9]+)*)\s*")
    _VERSION = re.compile(r"([0-9]+(?:\.[0-9]+)*)(?:\+[a-z0-9]+(?:\.[a-z0-9]+)*)?")
    _COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
                "==": operator.eq, "!=": operator.ne}

    def __init__(self, clauses: list):
        self.clauses = clauses  # [(operator, release tuple)]

    @classmethod
    def parse(cls, text: str) -> Optional["_ReleaseSpecifier"]:
        clauses = []
        for part in text.split(",") if text.strip() else ():
            clause = cls._CLAUSE.fullmatch(part)
            if clause is None:
                return None
            clauses.append((cls._COMPARE[clause.group(1)], _release(clause.group(2))))
        return cls(clauses)

    def contains(self, version: str) -> Optional[bool]:
        match = self._VERSION.fullmatch(version)
        if match is None:
            return None
        release = _release(match.group(1))
        for compare, bound in self.clauses:
            width = max(len(release), len(bound))
            if not compare(release + (0,) * (width - len(release)), bound + (0,) * (width - len(bound))):
                return False
        return True


def _release(text: str) -> tuple:
    return tuple(int(part) for part in text.split("."))


def _requirement(text: str, releases_only: bool = True):
    """The name and specifier of a requirement; a `_ReleaseSpecifier` where it is one (unless
    `releases_only` is false), else packaging's `SpecifierSet`. ValueError when it is not valid."""
    simple = _SIMPLE_REQUIREMENT.fullmatch(text)
    if simple:
        releases = _ReleaseSpecifier.parse(simple.group(2) or "") if releases_only else None
        if releases is not None:
            return _Requirement(simple.group(1), releases)
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            return _Requirement(simple.group(1), SpecifierSet(simple.group(2) or ""))
        except InvalidSpecifier:
            pass  # packaging's parser says why, below
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise ValueError(f"bad requirement {text!r}: {exc}") from None


# -- the registry ------------------------------------------------------------------------
_registered: dict[str, str] = {}  # run-time registrations, name -> "module:Class"
_registry_lock = threading.Lock()
_libraries: Optional[dict[str, str]] = None  # libraries() of the registry as it is, until it changes


def register_integration(name: str, target: str) -> None:
    """Register the integration class `target` ("module:Class") under `name`, as an entry
    point would. A run-time registration takes the place of an entry point of that name."""
    module_name, colon, attr = target.partition(":")
    if not name or not module_name or not colon or not attr:
        raise ValueError(f"register_integration needs a name and a 'module:Class' target, not {name!r}, {target!r}")
    global _libraries
    with _registry_lock:
        _registered[name] = target
        _libraries = None


def unregister_integration(name: str) -> None:
    """Undo `register_integration(name, ...)`: the integration is disabled (its patches
    reverted) and no longer known, unless an entry point of that name remains."""
    global _libraries
    engine.disable(name)
    with _registry_lock:
        _registered.pop(name, None)
        _libraries = None


def available() -> dict[str, str]:
    """name -> "module:Class" of every known integration (entry points, then run-time ones)."""
    found: dict[str, str] = {}
    try:
        for name, value in distributions.entry_points(ENTRY_POINT_GROUP):
            found.setdefault(name, value)
    except Exception as exc:  # noqa: BLE001 - broken metadata of another package
        containment.report("reading integration entry points", exc)
    with _registry_lock:
        found.update(_registered)
    return found


def load(target: str) -> type:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def libraries() -> dict[str, str]:
    """{top-level module: distribution} of the libraries of every known integration (their
    integration modules are imported, which imports no library). Computed once, and again
    after a run-time registration; an integration that cannot be loaded is left out."""
    global _libraries
    found = _libraries
    if found is not None:
        return found
    found = {}
    for name, target in sorted(available().items()):
        try:
            found.update(load(target)().libraries())
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the others
            log.debug("autolog: the libraries of integration %s are unknown: %r", name, exc)
    _libraries = found
    return found


class Engine:
    """Which integrations are wanted and which are patched, under one lock."""

    def __init__(self):
        self.lock = threading.RLock()
        self.wanted: dict[str, Integration] = {}
        self.patchers: dict[str, Patcher] = {}

    def wanted_modules(self) -> dict[str, str]:
        """{name: module} of the enabled integrations (what a `Patcher` tells its integration)."""
        return {name: integration.module for name, integration in list(self.wanted.items())}

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
            patcher = Patcher(name, peers=self.wanted_modules)
            self.patchers[name] = patcher
            try:
                integration.patch(patcher)
            except Exception:
                patcher.revert()  # all or nothing
                del self.patchers[name]
                raise

    def disable(self, name: str) -> None:
        with self.lock:
            integration = self.wanted.pop(name, None)
            if integration is not None:  # its import no longer waited for (enable registers it again)
                forget(integration.module, self._hook_for(name))
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
