"""Callbacks that autolog adds inside a user's training call, and that can never break it.

Keras, XGBoost, LightGBM and Lightning let autolog hook their training loop only through
a callback, which runs inside the user's `fit`: an exception raised there would reach the
user as if `fit` had raised it. `contained_callback` makes every public method defined on
the decorated class (and `__call__`) run contained:

    @contained_callback("keras")
    class _KerasLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None): ...

The first exception in any of those methods is reported once (containment.report, named
"<integration>: <Class>.<method>"), the instance turns itself off, and that call and every
later call of its contained methods return at once with the fallback value; training goes
on. Methods inherited from the framework's base class are left alone (they are the
framework's), as are private methods, properties, class- and static methods.

The fallback is `default` (None unless given), or, with `default=BASE_CLASS`, what the
framework's base class returns for the same call: XGBoost's `TrainingCallback` must give
the model back from `before_training`/`after_training` (its container asserts it) and
False from `after_iteration` (True stops training), which is exactly what the base class
does. A method that no base class defines returns None under `BASE_CLASS`.

Only `Exception` is contained: KeyboardInterrupt and SystemExit pass through.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from typing import Any, Callable

from autolog.instrument import containment

__all__ = ["contained_callback", "BASE_CLASS", "is_turned_off"]

_OFF_ATTRIBUTE = "_autolog_callback_off"
_MARK = "__autolog_contained__"


class _BaseClassFallback:
    def __repr__(self) -> str:
        return "BASE_CLASS"


#: `default=BASE_CLASS`: a failed or turned-off method returns what the base class's method returns
BASE_CLASS = _BaseClassFallback()

# instances that cannot take an attribute (`__slots__` without `__dict__`) are remembered here
_off_without_dict: "weakref.WeakSet[Any]" = weakref.WeakSet()
_off_lock = threading.Lock()


def contained_callback(integration: str, *, default: Any = None) -> Callable[[type], type]:
    """Class decorator: every public method defined on the class (and `__call__`) runs
    contained; the first exception is reported once, the instance turns itself off (later
    calls return `default` at once), training goes on."""

    def decorate(cls: type) -> type:
        for name, member in list(vars(cls).items()):
            if not inspect.isfunction(member) or getattr(member, _MARK, False):
                continue
            if name.startswith("_") and name != "__call__":
                continue
            setattr(cls, name, _contained_method(cls, name, member, integration, default))
        return cls

    return decorate


def is_turned_off(callback: Any) -> bool:
    """True once one of the callback's contained methods has failed."""
    try:
        return bool(vars(callback).get(_OFF_ATTRIBUTE, False))
    except TypeError:  # no __dict__
        return callback in _off_without_dict


def _turn_off(callback: Any) -> None:
    try:
        object.__setattr__(callback, _OFF_ATTRIBUTE, True)
    except (AttributeError, TypeError):
        with _off_lock:
            _off_without_dict.add(callback)


def _contained_method(cls: type, name: str, method: Callable, integration: str, default: Any) -> Callable:
    where = f"{integration}: {cls.__qualname__}.{name}"

    @functools.wraps(method)
    def contained(self, *args, **kwargs):
        if not is_turned_off(self):
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the callback runs inside the user's training
                _turn_off(self)
                containment.report(where, exc)
        if default is BASE_CLASS:
            return _base_result(cls, name, self, args, kwargs, where)
        return default

    setattr(contained, _MARK, True)
    return contained


def _base_result(cls: type, name: str, instance: Any, args: tuple, kwargs: dict, where: str) -> Any:
    """What the base classes of `cls` return for this call (None when none defines `name`)."""
    try:
        method = getattr(super(cls, instance), name)
    except AttributeError:
        return None
    try:
        return method(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        containment.report(where + " (the base class's method)", exc)
        return None
