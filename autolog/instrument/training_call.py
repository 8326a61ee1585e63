"""The training-call wrapper: one flat object every integration patches its training calls with.

An integration subclasses `TrainingWrapper`, overrides the hooks it needs, and hands an
instance to `patcher.wrap(owner, "Model.fit", wrapper)`. For each call the wrapper

1. lets the call through untouched when it must not log: inside another training call
   (any integration's: a fit inside a fit is logged once, at the outermost call), on the
   logger's worker thread, when `should_log(call)` says no, or when the run choice of
   `runs.TrainingCall` gives no run (`exclusive` with a user's run active);
2. picks the run (`runs.TrainingCall`: the user's active run for the first training call
   in it, else a new run named `run_name(call)` with `run_tags(call)`, a child run when a
   run is active; a new run ends with the call, FAILED or KILLED when the call raises);
3. runs `before(call)`, the original exactly once, then `after(call)` or, when the original
   raised, `failed(call, exc)`, each hook contained: an error in one is reported once per
   kind and training goes on. The user's result is returned and the user's exception
   propagates unchanged.

Hooks talk through the `Call`: `call.arguments` (bound by signature), `call.run`,
`call.state` (shared by the hooks of one call), `call.result`. A `before` hook may give the
original other arguments by REPLACING `call.args` / `call.kwargs` with new objects (a
copied list of callbacks with one more in it), never by changing the user's objects; if
`before` raises, the original runs with the arguments the user passed.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from autolog.instrument import containment
from autolog.instrument.patching import original_of
from autolog.runs.handle import ActiveRun
from autolog.runs.training import InsideTrainingCall, TrainingCall, training_call_in_progress
from autolog.transport.logger import on_worker_thread

if TYPE_CHECKING:
    from autolog.instrument.snapshots import TrainingActivity

__all__ = ["Call", "TrainingWrapper", "call_arguments", "peeked", "with_argument"]


class Call:
    """One training call, handed to the hooks of a `TrainingWrapper`."""

    __slots__ = ("wrapped", "instance", "args", "kwargs", "run", "state", "result", "_bind_defaults", "_bound",
                 "_later")

    def __init__(self, wrapped: Callable, instance: Any, args: tuple, kwargs: dict, bind_defaults: bool = False):
        self.wrapped = wrapped
        self.instance = instance
        self.args = args
        self.kwargs = kwargs
        self.run: Optional[ActiveRun] = None
        self.state: dict = {}
        self.result: Any = None
        self._bind_defaults = bind_defaults
        self._bound: Optional[tuple] = None  # (args, kwargs, arguments) of the last binding
        self._later: Optional["_LaterStart"] = None  # when the wrapper starts the run later

    def start_run(self) -> Optional[ActiveRun]:
        """Start the call's run now, for a wrapper whose `starts_run_later(call)` is True (its
        `started(call)` hook runs then); the run, or None when this call does not log. Once
        started, the same run again; for any other call, `call.run`."""
        later = self._later
        return self.run if later is None else later.start(self)

    @property
    def arguments(self) -> dict:
        """The call's arguments by parameter name (`self` and `*args` left out, `**kwargs`
        merged in; defaults applied when the wrapper has `bind_defaults`). Bound again when a
        hook has replaced `args` or `kwargs`. Raises TypeError when the call does not fit the
        signature (the original will raise it too)."""
        bound = self._bound
        if bound is None or bound[0] is not self.args or bound[1] is not self.kwargs:
            arguments = call_arguments(self.wrapped, self.args, self.kwargs, defaults=self._bind_defaults)
            self._bound = bound = (self.args, self.kwargs, arguments)
        return bound[2]

    def set_argument(self, name: str, value: Any) -> None:
        """Give the original `value` for its parameter `name`, by replacing `args` / `kwargs`
        with new objects (`with_argument`); the user's tuple and dict are left as they are."""
        self.args, self.kwargs = with_argument(self.wrapped, self.args, self.kwargs, name, value)

    def peek_argument(self, name: str) -> Optional[tuple]:
        """Read the first item of the iterator passed for `name` (a generator of batches) and
        give the original, in its place, an iterator that yields that item first, then the
        rest; `(item,)`, or None when the iterator was empty or raised (the original then
        meets the end, or the same exception, where it reads). Call it last in `before`:
        whatever fails after it, the original still gets the replaying iterator."""
        first, replay = peeked(self.arguments[name])
        self.set_argument(name, replay)
        return first

    def describe(self) -> str:
        """`Class.method` (or the function's name), for messages."""
        name = _name_of(self.wrapped)
        owner = self.instance if isinstance(self.instance, type) else type(self.instance)
        return name if self.instance is None else f"{owner.__name__}.{name}"

    def __repr__(self) -> str:
        return f"<Call {self.describe()} run={getattr(self.run, 'run_id', None)}>"


class TrainingWrapper:
    """Instantiate (or subclass) and pass the instance to `patcher.wrap`: it is the wrapt wrapper.

    Class attributes: `integration` (the name runs are tagged with), `bind_defaults`
    (`call.arguments` includes the defaults of the parameters not passed), `activity`
    (an optional `snapshots.TrainingActivity` marked busy while a logged call runs, so the
    worker does heavy post-training work between calls, not during them).
    """

    integration: str = ""
    bind_defaults: bool = False
    activity: Optional["TrainingActivity"] = None

    def __init__(self, integration: Optional[str] = None):
        if integration is not None:
            self.integration = integration
        if not self.integration:
            raise ValueError(f"{type(self).__name__} needs an integration name")

    # -- hooks an integration overrides ---------------------------------------------------
    def should_log(self, call: Call) -> bool:
        """False for calls that are not the user's training calls (e.g. made by the library
        itself); such calls run untouched."""
        return True

    def run_name(self, call: Call) -> str:
        """The name of an autolog-made run (a short random suffix is added)."""
        instance = call.instance
        if instance is not None and not isinstance(instance, type):
            return type(instance).__name__
        return _name_of(call.wrapped)

    def run_tags(self, call: Call) -> dict:
        """Tags of an autolog-made run (besides `autolog.integration`)."""
        return {}

    def starts_run_later(self, call: Call) -> bool:
        """True: the run starts when the integration calls `call.start_run()`, not at entry."""
        return False

    def before(self, call: Call) -> None:
        """Before the original; `call.run` is set (None when the run starts later). May
        replace `call.args` / `call.kwargs`."""

    def started(self, call: Call) -> None:
        """Once `call.start_run()` has started the run of a call whose run starts later."""

    def after(self, call: Call) -> None:
        """After the original returned; `call.result` is set."""

    def failed(self, call: Call, exc: BaseException) -> None:
        """After the original raised `exc` (which then propagates unchanged)."""

    # -- the wrapper ----------------------------------------------------------------------
    def __call__(self, wrapped, instance, args, kwargs):
        if training_call_in_progress() is not None or on_worker_thread():
            return wrapped(*args, **kwargs)  # a fit inside a fit: the outer call logs
        call = Call(wrapped, instance, args, dict(kwargs), self.bind_defaults)
        if not self._decide(call):
            return wrapped(*args, **kwargs)
        name = self._name(call)
        tags = self._tags(call)
        if self._ask("starts_run_later", self.starts_run_later, call):
            return self._started_later(call, TrainingCall(self.integration, name, tags), args, kwargs)
        with TrainingCall(self.integration, name, tags) as guard:
            if guard.run is None:
                return wrapped(*args, **kwargs)
            call.run = guard.run
            if self.activity is None:
                return self._logged(call, args, kwargs)
            with self.activity:
                return self._logged(call, args, kwargs)

    def _started_later(self, call: Call, guard: TrainingCall, args: tuple, kwargs: dict):
        later = call._later = _LaterStart(self, guard)
        try:
            if self.activity is None:
                return self._logged(call, args, kwargs)
            with self.activity:
                return self._logged(call, args, kwargs)
        finally:
            later.finish(*sys.exc_info())

    def _logged(self, call: Call, args: tuple, kwargs: dict):
        if not self._hook("before", self.before, call):
            call.args, call.kwargs = args, kwargs  # the user's own arguments, as passed
        try:
            result = call.result = call.wrapped(*call.args, **call.kwargs)
        except BaseException as exc:
            self._hook("failed", self.failed, call, exc)
            raise
        self._hook("after", self.after, call)
        return result  # the original's own result, whatever a hook did to call.result

    def _hook(self, label: str, hook: Callable, call: Call, *more) -> bool:
        try:
            hook(call, *more)
            return True
        except Exception as exc:  # noqa: BLE001 - the user's training goes on
            containment.report(f"{self.integration}: {label} {call.describe()}", exc)
            return False

    def _decide(self, call: Call) -> bool:
        return self._ask("should_log", self.should_log, call)

    def _ask(self, label: str, question: Callable, call: Call) -> bool:
        try:
            return bool(question(call))
        except Exception as exc:  # noqa: BLE001 - not knowing is "no"
            containment.report(f"{self.integration}: {label} {call.describe()}", exc)
            return False

    def _name(self, call: Call) -> str:
        try:
            return str(self.run_name(call))
        except Exception as exc:  # noqa: BLE001
            containment.report(f"{self.integration}: run_name {call.describe()}", exc)
            return TrainingWrapper.run_name(self, call)

    def _tags(self, call: Call) -> dict:
        try:
            return dict(self.run_tags(call) or {})
        except Exception as exc:  # noqa: BLE001
            containment.report(f"{self.integration}: run_tags {call.describe()}", exc)
            return {}


class _LaterStart:
    """The run of one call that starts later: the guard holds from entry (a placeholder
    until the run starts), the run starts at most once, in the thread that made the call."""

    __slots__ = ("wrapper", "guard", "placeholder", "pid", "thread", "started")

    def __init__(self, wrapper: TrainingWrapper, guard: TrainingCall):
        self.wrapper = wrapper
        self.guard = guard
        self.placeholder: Optional[InsideTrainingCall] = InsideTrainingCall().__enter__()
        self.pid, self.thread = os.getpid(), threading.get_ident()
        self.started = False

    def start(self, call: Call) -> Optional[ActiveRun]:
        if self.started or self.placeholder is None:
            return call.run
        if os.getpid() != self.pid or threading.get_ident() != self.thread:
            return None  # a forked or spawned worker, another thread: the call's own process starts it
        self.started = True
        self.placeholder, placeholder = None, self.placeholder
        placeholder.__exit__(None, None, None)
        call.run = self.guard.__enter__().run
        if call.run is not None:
            self.wrapper._hook("started", self.wrapper.started, call)
        return call.run

    def finish(self, exc_type, exc, tb) -> None:
        if self.placeholder is not None:
            self.placeholder, placeholder = None, self.placeholder
            placeholder.__exit__(None, None, None)
        elif self.started and os.getpid() == self.pid:
            self.guard.__exit__(exc_type, exc, tb)


# -- binding a call's arguments ---------------------------------------------------------------
def call_arguments(wrapped: Callable, args: tuple, kwargs: dict, *, defaults: bool = False) -> dict:
    """The arguments of `wrapped(*args, **kwargs)` by parameter name, as `Call.arguments`.

    `wrapped` is what a wrapt wrapper receives: a bound method (`model.fit`), wrapt's
    partial of the function with the instance (`Model.fit(model, ...)` through the class),
    or a plain function. The instance (`self` / `cls`) and `*args` are left out, `**kwargs` merged in.
    Raises TypeError when the call does not fit the signature. A callable without a
    readable signature gives just `kwargs`.
    """
    function, leading = _function_and_leading(original_of(wrapped))
    signature = _signature(function)
    if signature is None:
        return dict(kwargs)
    bound = signature.bind_partial(*leading, *args, **kwargs)
    if defaults:
        bound.apply_defaults()
    parameters = signature.parameters
    out: dict = {}
    for index, (name, value) in enumerate(bound.arguments.items()):
        kind = parameters[name].kind
        if index < len(leading) or kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        if kind is inspect.Parameter.VAR_KEYWORD:
            for key, item in value.items():
                out.setdefault(key, item)
        else:
            out[name] = value
    return out


def with_argument(wrapped: Callable, args: tuple, kwargs: dict, name: str, value: Any) -> tuple[tuple, dict]:
    """New `(args, kwargs)` for a call of `wrapped` that give its parameter `name` the value
    `value`: in its place among `args` when the call passed it positionally, else as a
    keyword. `args` and `kwargs` themselves are not changed (they are the user's)."""
    position = _position(wrapped, name)
    if position is not None and position < len(args):
        return (*args[:position], value, *args[position + 1:]), kwargs
    return args, {**kwargs, name: value}


def peeked(iterator: Iterator) -> tuple[Optional[tuple], Iterator]:
    """`((first item,), replay)`: the first item of `iterator`, read now, and a generator that
    yields it, then the rest of `iterator`. `(None, replay)` when `iterator` was empty (the
    replay is empty too) or raised (the replay raises the same exception when first read)."""
    try:
        first, failure = (next(iterator),), None
    except StopIteration:
        first, failure = None, None
    except Exception as exc:  # noqa: BLE001 - the user's iterator: raised again where the library reads it
        first, failure = None, exc

    def replay():
        if failure is not None:
            raise failure
        if first is not None:
            yield first[0]
            yield from iterator

    return first, replay()


def _position(wrapped: Callable, name: str) -> Optional[int]:
    """The index of parameter `name` among the call's own positional arguments; None when it
    cannot be passed positionally (or the signature cannot be read)."""
    function, leading = _function_and_leading(original_of(wrapped))
    signature = _signature(function)
    if signature is None:
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for index, parameter in enumerate(signature.parameters.values()):
        if parameter.kind not in positional:
            return None
        if parameter.name == name:
            return index - len(leading) if index >= len(leading) else None
    return None


def _name_of(wrapped: Callable) -> str:
    function, _ = _function_and_leading(original_of(wrapped))
    return getattr(function, "__name__", None) or type(function).__name__


def _function_and_leading(target: Callable) -> tuple[Callable, tuple]:
    """(the plain function, the arguments bound in front of the call's own)."""
    wrapt = sys.modules.get("wrapt")  # imported by the first patch: before it, no wrapt partial exists
    if wrapt is not None and isinstance(target, wrapt.PartialCallableObjectProxy):  # Model.fit(model, ...)
        if not target._self_kwargs:
            return target.__wrapped__, target._self_args
        return target, ()
    function = getattr(target, "__func__", None)
    if function is not None:  # a bound method: model.fit, Model.from_config
        return function, (target.__self__,)
    if isinstance(target, functools.partial) and not target.keywords:
        return target.func, target.args
    return target, ()


def _signature(function: Callable) -> Optional[inspect.Signature]:
    try:
        return _cached_signature(function)
    except TypeError:  # an unhashable callable object: read it each time
        return _read_signature(function)


def _read_signature(function: Callable) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None


_cached_signature = functools.lru_cache(maxsize=4096)(_read_signature)
