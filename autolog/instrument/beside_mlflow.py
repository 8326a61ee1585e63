"""Living beside MLflow's own autologging: autolog steps aside for the libraries it has taken.

When a flavor of MLflow's autologging is on (`mlflow.autolog()`, `mlflow.sklearn.autolog()`,
...), autolog does not patch that flavor's library: two autologgers on the same methods would
log every fit twice, and MLflow's patching of scikit-learn fails on methods another library
has wrapped (`'FunctionWrapper' object has no attribute 'fn'`). Instead autolog takes its
integration for that library out (its patches reverted, identity restored) and says so once:
the library's fits are MLflow's to log. The other libraries stay autolog's.

- at `autolog()`: the libraries whose MLflow flavor is on already are left out;
- afterwards: MLflow reports each flavor's `autolog()` call to its `AutologgingEventLogger`
  (MLflow's public hook for autologging events, `AutologgingEventLogger.set_logger`).
  autolog installs one that hands every event on to the logger that was there and, on
  `log_autolog_called`, takes its integrations of that library out *before* MLflow patches
  (or back in after `mlflow.<flavor>.autolog(disable=True)`).

MLflow's table flavor -> library module is MLflow's own (`FLAVOR_TO_MODULE_NAME`); an
integration's libraries are its `module` and `libraries()`. Nothing here imports mlflow: it
is looked at only once the user's code has imported it.
"""

from __future__ import annotations

import sys
import threading
from typing import Optional

from autolog.instrument import containment

MLFLOW_AUTOLOGGING = "mlflow.utils.autologging_utils"
#: flavors that patch no library's training (MLflow's Spark datasource autologging)
_NOT_TRAINING = {"spark", "mlflow"}

_lock = threading.RLock()
_watch: Optional["_Watch"] = None


class _Watch:
    """One `autolog()` session's watch on MLflow's autologging."""

    def __init__(self, integrations, exclude):
        from autolog.instrument.patching import Patcher

        self.integrations, self.exclude = integrations, exclude  # what autolog() was asked for
        self.patcher = Patcher("beside mlflow")
        self.previous = None  # MLflow's event logger before ours (None: MLflow's default)
        self.installed = None

    def install(self, autologging_utils) -> None:
        events = autologging_utils.AutologgingEventLogger
        with _lock:
            if self.installed is not None or _watch is not self:
                return
            self.previous = events._event_logger
            self.installed = _step_aside_logger(events, events.get_logger())
            events.set_logger(self.installed)

    def uninstall(self) -> None:
        self.patcher.revert()  # no later install from the import hook
        module = sys.modules.get(MLFLOW_AUTOLOGGING)
        if module is not None and self.installed is not None:
            events = module.AutologgingEventLogger
            if events._event_logger is self.installed:
                events.set_logger(self.previous)
        self.installed = None


def taken_by_mlflow() -> tuple:
    """The autolog integrations whose library an MLflow autologging flavor has taken (on now)."""
    utils = sys.modules.get(MLFLOW_AUTOLOGGING)
    if utils is None:
        return ()
    modules = set()
    for flavor in list(utils.AUTOLOGGING_INTEGRATIONS):
        if flavor in _NOT_TRAINING or utils.autologging_is_disabled(flavor):
            continue
        module = _flavor_module(flavor)
        if module:
            modules.add(module)
    return tuple(sorted(_integrations_of(modules)))


def watch(integrations: Optional[tuple], exclude: tuple) -> tuple:
    """Called by `autolog()`: watch MLflow's autologging from now on; return the integrations
    to leave out now (MLflow's already), with one warning naming them."""
    global _watch
    with _lock:
        if _watch is not None:
            _watch.uninstall()
        _watch = _Watch(integrations, exclude)
        _watch.patcher.when_imported(MLFLOW_AUTOLOGGING, _watch.install)
    taken = taken_by_mlflow()
    _warn(taken)
    return taken


def unwatch() -> None:
    """`autolog(disable=True)`: MLflow's event logger is the one that was there before."""
    global _watch
    with _lock:
        current, _watch = _watch, None
    if current is not None:
        current.uninstall()


def _on_autolog_called(flavor: str) -> None:
    """MLflow turns a flavor on or off: autolog's integrations of its library follow, now."""
    from autolog.instrument.integration import engine

    watching = _watch
    if watching is None or flavor in _NOT_TRAINING or not _flavor_module(flavor):
        return
    utils = sys.modules[MLFLOW_AUTOLOGGING]
    if utils.autologging_is_disabled(flavor) and hasattr(utils, "revert_patches"):
        # MLflow reverts its patches of the flavor right after this event; autolog patches
        # the library again now, so MLflow's revert goes first (it is idempotent), or it
        # would put the originals back over autolog's wrappers
        utils.revert_patches(flavor)
    taken = taken_by_mlflow()
    engine.enable(watching.integrations, tuple(watching.exclude) + taken)
    _warn(taken)


def _warn(taken: tuple) -> None:
    """One warning per library MLflow's autologging takes (`mlflow.autolog()` turns its
    flavors on one by one: each library is named once, not a growing list each time)."""
    for name in taken:
        containment.warn_once(
            f"beside mlflow {name}",
            "MLflow's own autologging is on for %s: autolog leaves it to it (not patched, nothing logged "
            "by autolog for it) and logs the other libraries; turn MLflow's off "
            "(mlflow.autolog(disable=True)) to have autolog log it", name)


def _flavor_module(flavor: str) -> Optional[str]:
    table = getattr(sys.modules.get("mlflow.ml_package_versions"), "FLAVOR_TO_MODULE_NAME", None) or {}
    module = table.get(flavor)
    return module.partition(".")[0] if module else None


def _integrations_of(modules: set) -> list:
    """Names of the known autolog integrations whose library is one of `modules` (top level)."""
    from autolog.instrument.integration import available, load

    found = []
    for name, target in available().items():
        try:
            integration = load(target)()
        except ImportError:
            continue
        libraries = {integration.module.partition(".")[0], *getattr(integration, "libraries", dict)()}
        if libraries & modules:
            found.append(name)
    return found


def _step_aside_logger(events, previous):
    """An MLflow AutologgingEventLogger that passes every event on to `previous` and, on each
    flavor's `autolog()` call, first lets autolog step aside (or come back)."""

    class StepAsideLogger(events):
        def log_autolog_called(self, integration, call_args, call_kwargs):
            with containment.contained("stepping aside for MLflow's autologging"):
                _on_autolog_called(integration)
            return previous.log_autolog_called(integration, call_args, call_kwargs)

    for name in dir(events):
        if name.startswith("log_") and name != "log_autolog_called":
            setattr(StepAsideLogger, name, _passed_on(previous, name))
    return StepAsideLogger()


def _passed_on(previous, name: str):
    def method(self, *args, **kwargs):
        return getattr(previous, name)(*args, **kwargs)

    method.__name__ = name
    return method
