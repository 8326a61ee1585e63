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

`Patcher.after(owner, "Class.method", hook)` is the cheap kind, for calls made thousands of
times a second (every `backward()`, every optimizer step): `hook(instance, args, kwargs,
result)` runs after each call that returned, inside a plain function that calls the original
itself, without wrapt's proxy and the call-once guard: on a method that does nothing, about
0.8 µs a call against `wrap`'s 1.6 on the 2-core machine (docs/benchmarks.md, "PyTorch and
Lightning: the per-step hooks"). That form is for a class's method; anything else handed to
`after` goes through `wrap`, the hook as its wrapper.

Integrations patch when their library is imported. Inside `patch()`,
`patcher.when_imported("sklearn.metrics", fn)` calls `fn(module)` now if the module is
imported, else right after its import, and only while that patcher is active: once
autolog is disabled the callback is dropped. Underneath, the module-level `when_imported`
and `forget` keep the callbacks of each module, and one finder in `sys.meta_path` runs them
right after the module's code (see "import hooks" below).

wrapt (with what it imports: asyncio, importlib.metadata; about 30 ms) is imported by the first
`wrap` that needs it, not with this module, so that `autolog()` before any library is imported
does not pay for it. A C function of a module, such as `sys.exit` (wrapped by `autolog()`
itself, autolog/runs/process.py), binds to nothing and has no signature of its own to keep:
it gets a plain function instead of wrapt's proxy, with its name, docstring and `__wrapped__`,
that hands the wrapper the same `(wrapped, None, args, kwargs)`.

A patcher is safe to use from any thread: `wrap` and `revert` take its lock, and `wrap`
does nothing once the patcher has been reverted, so a class patched lazily (on first use,
on import) while another thread disables autolog never leaves a stray patch behind.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import types
from typing import Any, Callable, Mapping, Optional

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


def _no_peers() -> Mapping[str, str]:
    return {}


class Patcher:
    """The patches of one integration, and what its `patch()` may ask of the engine.

    `peers` (given by the engine) returns `{name: module}` of every enabled integration.
    """

    def __init__(self, integration: str, peers: Callable[[], Mapping[str, str]] = _no_peers):
        self.integration = integration
        self.patches: list[Patch] = []
        self._keys: set[tuple[int, str]] = set()
        self._import_hooks: list[tuple[str, "_WhileActive"]] = []
        self._peers = peers
        self._lock = threading.RLock()
        self.active = True

    def wrap(self, owner: Any, path: str, wrapper: Callable) -> bool:
        """Wrap `owner.<path>` (`path` may be dotted: "Class.method"). False if already
        wrapped, or if this patcher has been reverted (autolog was disabled meanwhile)."""
        parent = owner
        *parents, attribute = path.split(".")
        for name in parents:
            parent = getattr(parent, name)
        key = (id(parent), attribute)
        with self._lock:
            if key in self._keys or not self.active:
                return False
            namespace = vars(parent)
            had_own = attribute in namespace
            original = namespace[attribute] if had_own else _MISSING
            if not had_own and not hasattr(parent, attribute):
                raise AttributeError(f"{parent!r} has no attribute {attribute!r} to patch")
            if type(original) is types.BuiltinFunctionType and isinstance(parent, types.ModuleType):
                installed = _builtin_wrapper(original, self._safe(wrapper))  # sys.exit: see the docstring
                setattr(parent, attribute, installed)
            else:
                import wrapt  # here, not at this module's import: see the docstring

                wrapt.wrap_function_wrapper(parent, attribute, self._safe(wrapper))
                installed = vars(parent)[attribute]
            patch = Patch(parent, attribute, had_own, original, installed)
            self.patches.append(patch)
            self._keys.add(key)
            with _stacks_lock:
                _stacks.setdefault(key, []).append(patch)
        return True

    def after(self, owner: Any, path: str, hook: Callable[[Any, tuple, dict, Any], None]) -> bool:
        """Wrap `owner.<path>` with a hook that runs after each call that returned:
        `hook(instance, args, kwargs, result)`, its return value ignored. For the hot paths
        (a tensor's `backward()`, every optimizer step), where `wrap`'s wrapt proxy and its
        call-once guard cost about 1.6 µs a call and this about half: the original is called
        by the engine itself, so its result and its exceptions are the user's
        untouched (the hook never runs after an exception), and an error in the hook is
        contained and reported like a wrapper's. Skipped, as `wrap`'s wrappers are, once the
        patcher is reverted and on the logger's worker thread.

        A method of a class that is a plain function (its own or inherited) gets a plain
        function (with its name, docstring and `__wrapped__`, so `inspect.signature` reads the
        original's); anything else (a module's function, a C method, a classmethod) goes
        through `wrap`, the hook as its wrapper. Same return value and the same bookkeeping as
        `wrap`."""
        parent = owner
        *parents, attribute = path.split(".")
        for name in parents:
            parent = getattr(parent, name)
        namespace = vars(parent)
        had_own = attribute in namespace
        function = None
        if isinstance(parent, type):
            function = namespace[attribute] if had_own else _inherited(parent, attribute)
        if type(function) is not types.FunctionType:
            return self.wrap(owner, path, _after_as_wrapper(hook))
        key = (id(parent), attribute)
        with self._lock:
            if key in self._keys or not self.active:
                return False
            installed = _after_method(function, hook, self)
            setattr(parent, attribute, installed)
            patch = Patch(parent, attribute, had_own, function if had_own else _MISSING, installed)
            self.patches.append(patch)
            self._keys.add(key)
            with _stacks_lock:
                _stacks.setdefault(key, []).append(patch)
        return True

    def when_imported(self, module_name: str, callback: Callable[[Any], None]) -> None:
        """Call `callback(module)` now if `module_name` is imported, else right after its
        import; only while this patcher is active (after `revert` it never fires). An error
        in the callback is contained and reported."""
        hook = _WhileActive(self, callback)
        with self._lock:
            if not self.active:
                return
            self._import_hooks.append((module_name, hook))
        when_imported(module_name, hook)

    def other_integration_for(self, module_name: str) -> Optional[str]:
        """The name of another enabled integration whose library is the top-level package of
        `module_name` (e.g. "xgboost" for "xgboost.sklearn"), or None. sklearn leaves the
        scikit-learn API of such a library to that library's own integration."""
        package = module_name.partition(".")[0]
        for name, module in self._peers().items():
            if name != self.integration and module.partition(".")[0] == package:
                return name
        return None

    def is_wrapped(self, owner: Any, path: str) -> bool:
        parent = owner
        *parents, attribute = path.split(".")
        for name in parents:
            parent = getattr(parent, name)
        return (id(parent), attribute) in self._keys

    def revert(self) -> None:
        """Undo every patch, newest first: the original objects are back; import callbacks
        registered with `when_imported` are dropped. Where another patcher wrapped the same
        attribute after this one and is still active, it takes over what this one replaced,
        so `vars()` ends as it was whichever of the two is reverted first."""
        with self._lock:
            self.active = False
            for patch in reversed(self.patches):
                if _hand_over(patch):
                    continue
                try:
                    if patch.had_own:
                        setattr(patch.parent, patch.attribute, patch.original)
                    elif patch.attribute in vars(patch.parent):
                        delattr(patch.parent, patch.attribute)
                except Exception as exc:  # noqa: BLE001 - undo the others even if one fails
                    containment.report(f"{self.integration}: undoing {patch!r}", exc)
            self.patches.clear()
            self._keys.clear()
            hooks, self._import_hooks = self._import_hooks, []
        for module_name, hook in hooks:
            forget(module_name, hook)

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


# The live patches of every attribute, across patchers, oldest first. Two integrations may
# wrap one attribute (sklearn and xgboost both wrap XGBModel.fit); they may be reverted in
# either order, and `vars()` must end as it was.
_stacks: dict[tuple[int, str], list[Patch]] = {}
_stacks_lock = threading.Lock()


def _hand_over(patch: Patch) -> bool:
    """Forget `patch`; True when another patcher wrapped the same attribute after it and is not
    reverted yet. That patch then takes over what this one replaced (and restores it when it
    is reverted); this one's wrapper stays inside its chain until then, inactive: it calls
    straight through."""
    key = (id(patch.parent), patch.attribute)
    with _stacks_lock:
        stack = _stacks.get(key, [])
        index = next((i for i, p in enumerate(stack) if p is patch), None)
        if index is None:
            return False
        above = stack[index + 1] if index + 1 < len(stack) else None
        del stack[index]
        if not stack:
            del _stacks[key]
        if above is None:
            return False
        above.had_own, above.original = patch.had_own, patch.original
        return True


class _WhileActive:
    """An import callback of one patcher: it runs only while that patcher is active."""

    __slots__ = ("patcher", "callback")

    def __init__(self, patcher: Patcher, callback: Callable[[Any], None]):
        self.patcher = patcher
        self.callback = callback

    def __call__(self, module: Any) -> None:
        if self.patcher.active:
            self.callback(module)


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


def _builtin_wrapper(builtin: Callable, safe_wrapper: Callable) -> Callable:
    @functools.wraps(builtin)
    def wrapper(*args, **kwargs):
        return safe_wrapper(builtin, None, args, kwargs)

    return wrapper


def _inherited(cls: type, attribute: str) -> Any:
    """The raw object a class inherits as `attribute` (from its MRO's `__dict__`s), or None."""
    for base in cls.__mro__[1:]:
        if attribute in vars(base):
            return vars(base)[attribute]
    return None


def _after_method(original: types.FunctionType, hook: Callable, patcher: Patcher) -> Callable:
    """`Patcher.after`'s function for a method: the original, then the hook, contained; the
    hook gets the instance (the first argument) apart, as a `wrap` wrapper does."""
    where = f"{patcher.integration}: {original.__qualname__}"

    @functools.wraps(original)
    def after_method(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if patcher.active and not on_worker_thread():
            try:
                hook(self, args, kwargs, result)
            except Exception as exc:  # noqa: BLE001 - autolog's own error: the user's result stands
                containment.report(where, exc)
        return result

    return after_method


def _after_as_wrapper(hook: Callable) -> Callable:
    """`Patcher.after`'s hook as a `wrap` wrapper, for what is not a plain function."""

    def wrapper(wrapped, instance, args, kwargs):
        result = wrapped(*args, **kwargs)
        hook(instance, args, kwargs, result)
        return result

    return wrapper


def leading_arguments(args: tuple, kwargs: dict, names: tuple) -> list:
    """For a `Patcher.after` hook: the values of the leading parameters `names` of a call that
    returned (so the call fitted its signature), each given by position or by name, None when
    left to its default; without binding the signature on every call."""
    return [args[index] if index < len(args) else kwargs.get(name) for index, name in enumerate(names)]


def original_of(wrapped: Callable) -> Callable:
    """The function a wrapper was handed as `wrapped`, without the engine's call-once guard
    (for reading its signature; call `wrapped` itself, which the guard watches)."""
    return wrapped.wrapped if type(wrapped) is _OriginalCall else wrapped


# -- import hooks ----------------------------------------------------------------------
# `when_imported` runs callbacks right after a module's code has run, inside its import: one
# finder at the front of sys.meta_path (put there by the first `when_imported`) takes part only
# in the imports of modules that callbacks wait for. It asks the finders behind it for the
# module's spec, as the import system would, and returns that spec with the loader wrapped:
# the wrapper gives the module its own loader back, runs the module's code, then the callbacks.
# So another thread importing the module meanwhile waits (the import system's module lock)
# and gets the module patched. A module no callback waits for any more is let through
# untouched; with no callbacks at all the finder is inert. It stays in sys.meta_path (taking
# an entry out while another thread walks the list could make that import skip a finder).
# (wrapt's post-import hooks, used before, meant importing wrapt at `autolog()`: see the
# module's docstring.)
_hook_lock = threading.Lock()
_hooked: dict[str, list[Callable[[Any], None]]] = {}  # module name -> callbacks; no empty lists
_finder: Optional["_PostImportFinder"] = None


def when_imported(module_name: str, callback: Callable[[Any], None]) -> None:
    """Call `callback(module)` now if `module_name` is imported, else right after its import
    (and after each later execution of the module: imported again, `importlib.reload`).

    A callback is registered once per module (calling again with it only runs it now, if
    the module is imported), until `forget`; it decides itself whether there is still
    anything to do. An error in it is contained and reported.
    """
    global _finder
    with _hook_lock:
        callbacks = _hooked.setdefault(module_name, [])
        if callback not in callbacks:
            callbacks.append(callback)
        if _finder is None:
            _finder = _PostImportFinder()
        if not any(finder is _finder for finder in sys.meta_path):
            sys.meta_path.insert(0, _finder)
    module = sys.modules.get(module_name)
    if module is not None:
        _call(callback, module_name, module)


def forget(module_name: str, callback: Callable[[Any], None]) -> None:
    """Undo `when_imported(module_name, callback)`: the callback is not called again."""
    with _hook_lock:
        callbacks = _hooked.get(module_name, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            _hooked.pop(module_name, None)


def _call(callback: Callable[[Any], None], module_name: str, module: Any) -> None:
    with containment.contained(f"patching {module_name}"):
        callback(module)


class _PostImportFinder:
    """The sys.meta_path entry of `when_imported` (see above)."""

    def __init__(self):
        self._busy = threading.local()  # names this thread is finding: a finder behind that asks
        # the import system again about the same name gets no answer from this one

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _hooked:
            return None
        busy = self._busy.__dict__.setdefault("names", set())
        if fullname in busy:
            return None
        busy.add(fullname)
        try:
            spec = self._spec_behind(fullname, path, target)
        finally:
            busy.discard(fullname)
        if spec is None:
            return None
        namespace = spec.loader is None and spec.submodule_search_locations is not None
        if namespace:  # the loader the import system gives a namespace package: module_from_spec
            # sets spec.loader to it, here on a module thrown away
            import importlib.util

            importlib.util.module_from_spec(spec)
        if not hasattr(spec.loader, "exec_module"):
            return spec  # no loader, or a legacy one (load_module only): not watched
        spec.loader = _NotifyingLoader(spec.loader, fullname, namespace)
        return spec

    def _spec_behind(self, fullname: str, path: Any, target: Any) -> Any:
        """The spec the finders after this one in sys.meta_path give, asked in order."""
        meta_path = list(sys.meta_path)
        behind = next((i + 1 for i, finder in enumerate(meta_path) if finder is self), len(meta_path))
        for finder in meta_path[behind:]:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                return None  # a legacy finder: left to the import system, which asks it itself
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


class _NotifyingLoader:
    """The loader of one module while it is imported: it gives the module and its spec their
    own loader back, runs the module's code, then the callbacks waiting for the module.
    Anything else is the module's own loader's (`get_code`, `is_package`, `isinstance`)."""

    __slots__ = ("_autolog_loader", "_autolog_name", "_autolog_namespace")

    def __init__(self, loader: Any, name: str, namespace: bool):
        self._autolog_loader = loader
        self._autolog_name = name
        self._autolog_namespace = namespace

    @property
    def __class__(self):  # isinstance(spec.loader, SourceFileLoader) holds as without autolog
        return type(self._autolog_loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._autolog_loader, name)

    def __repr__(self) -> str:
        return f"<autolog post-import loader of {self._autolog_name!r}: {self._autolog_loader!r}>"

    def create_module(self, spec: Any) -> Any:
        create = getattr(self._autolog_loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: Any) -> None:
        loader = self._autolog_loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = loader
        if self._autolog_namespace and getattr(module, "__file__", None) is None:
            module.__file__ = None  # as the import system sets it for a namespace package
        loader.exec_module(module)
        name = self._autolog_name
        module = sys.modules.get(name, module)  # what `import` returns, should the code have replaced it
        for callback in list(_hooked.get(name, ())):
            _call(callback, name, module)
