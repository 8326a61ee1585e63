"""The patching engine: every patch autolog makes goes through here, and is undone here.

`Patcher.wrap(owner, "Class.method", wrapper)` installs a wrapt `FunctionWrapper` and
records `(parent, attribute, had_own_attribute, original)`. `revert()` restores the
original object itself (identity, not just behaviour) or deletes the attribute when
the patched class had only inherited it, so `vars(cls)` is as it was.

Wrappers have wrapt's signature, `wrapper(wrapped, instance, args, kwargs)`. The
engine adds one safety layer around every wrapper: if the wrapper fails before it
called the original, the original is called; if it fails after, the original's
result is returned; the original's own exception always passes through unchanged.
The wrapper is skipped entirely (the original called directly) when autolog has
been disabled since, or on the logger's worker thread.

Integrations patch when their library is imported: `when_imported("sklearn", fn)`
uses wrapt's post-import hooks, which fire at once if the library is already
imported. Hooks cannot be unregistered, so each one checks that its integration is
still wanted before patching.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Callable

import wrapt

from autolog.instrument import containment
from autolog.transport.logger import on_worker_thread

log = logging.getLogger("autolog")

_MISSING = object()


class Patch:
    __slots__ = ("parent", "attribute", "had_own", "original", "wrapper")

    def __init__(self, parent: Any, attribute: str, had_own: bool, original: Any, wrapper: Any):
        self.parent = parent
        self.attribute = attribute
        self.had_own = had_own
        self.original = original  # the raw object from the parent's __dict__ (or _MISSING)
        self.wrapper = wrapper

    def __repr__(self) -> str:
        name = getattr(self.parent, "__qualname__", getattr(self.parent, "__name__", repr(self.parent)))
        return f"<Patch {name}.{self.attribute}>"


class Patcher:
    """The patches of one integration."""

    def __init__(self, integration: str):
        self.integration = integration
        self.patches: list[Patch] = []
        self._keys: set[tuple[int, str]] = set()
        self.active = True

    def wrap(self, owner: Any, path: str, wrapper: Callable) -> bool:
        """Wrap `owner.<path>` (`path` may be dotted: "Class.method"). False if already wrapped."""
        parent = owner
        *parents, attribute = path.split(".")
        for name in parents:
            parent = getattr(parent, name)
        key = (id(parent), attribute)
        if key in self._keys:
            return False
        namespace = vars(parent)
        had_own = attribute in namespace
        original = namespace[attribute] if had_own else _MISSING
        if not had_own and not hasattr(parent, attribute):
            raise AttributeError(f"{parent!r} has no attribute {attribute!r} to patch")
        wrapt.wrap_function_wrapper(parent, attribute, self._safe(wrapper))
        installed = vars(parent)[attribute]
        self.patches.append(Patch(parent, attribute, had_own, original, installed))
        self._keys.add(key)
        return True

    def is_wrapped(self, owner: Any, path: str) -> bool:
        parent = owner
        *parents, attribute = path.split(".")
        for name in parents:
            parent = getattr(parent, name)
        return (id(parent), attribute) in self._keys

    def revert(self) -> None:
        """Undo every patch, newest first: the original objects are back."""
        self.active = False
        for patch in reversed(self.patches):
            try:
                if patch.had_own:
                    setattr(patch.parent, patch.attribute, patch.original)
                elif patch.attribute in vars(patch.parent):
                    delattr(patch.parent, patch.attribute)
            except Exception as exc:  # noqa: BLE001 - undo the others even if one fails
                containment.report(f"{self.integration}: undoing {patch!r}", exc)
        self.patches.clear()
        self._keys.clear()

    def _safe(self, wrapper: Callable) -> Callable:
        patcher = self

        def safe_wrapper(wrapped, instance, args, kwargs):
            if not patcher.active or on_worker_thread():
                return wrapped(*args, **kwargs)
            call = _OriginalCall(wrapped)
            try:
                return wrapper(call, instance, args, kwargs)
            except BaseException as exc:
                if call.raised is exc:
                    raise  # the user's own exception, unchanged
                if not isinstance(exc, Exception):
                    raise  # KeyboardInterrupt and friends raised by autolog's code: not ours to eat
                containment.report(f"{patcher.integration}: {getattr(wrapped, '__qualname__', wrapped)}", exc)
                if call.raised is not None:
                    raise call.raised from None
                if call.called:
                    return call.result
                return wrapped(*args, **kwargs)

        return safe_wrapper


class _OriginalCall:
    """The original function, called at most once; remembers its result or exception."""

    __slots__ = ("wrapped", "called", "result", "raised")

    def __init__(self, wrapped: Callable):
        self.wrapped = wrapped
        self.called = False
        self.result: Any = None
        self.raised: Any = None

    def __call__(self, *args, **kwargs):
        if self.called:
            raise RuntimeError("autolog: a wrapper called the original function twice")
        self.called = True
        try:
            self.result = self.wrapped(*args, **kwargs)
        except BaseException as exc:
            self.raised = exc
            raise
        return self.result

    def __getattr__(self, name: str) -> Any:  # __self__, __name__, ... of the original
        return getattr(self.wrapped, name)


# -- import hooks ----------------------------------------------------------------------
_hook_lock = threading.Lock()
_hooked: dict[str, list[Callable[[Any], None]]] = {}


def when_imported(module_name: str, callback: Callable[[Any], None]) -> None:
    """Call `callback(module)` now if `module_name` is imported, else right after its import.

    A callback is registered once per module and process (calling again with it only
    runs it now, if the module is imported); it decides itself whether there is
    still anything to do.
    """
    with _hook_lock:
        first = module_name not in _hooked
        callbacks = _hooked.setdefault(module_name, [])
        if callback not in callbacks:
            callbacks.append(callback)
    if first:
        wrapt.register_post_import_hook(_dispatch, module_name)  # fires now if already imported
    elif module_name in sys.modules:
        _call(callback, sys.modules[module_name])


def _dispatch(module: Any) -> None:
    for callback in list(_hooked.get(module.__name__, ())):
        _call(callback, module)


def _call(callback: Callable[[Any], None], module: Any) -> None:
    with containment.contained(f"patching {module.__name__}"):
        callback(module)
