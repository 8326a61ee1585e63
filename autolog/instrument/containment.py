"""One place where autolog's own errors are caught, reported once, and swallowed.

Like sentry's `capture_internal_exceptions()`: every piece of logging code that runs
around a user's training call runs inside `contained(where)`. The user's call itself
never runs inside it, so its result and its own exceptions pass through unchanged.

A failure is reported through the `autolog` logger once per (where, exception type),
not once per step; later repeats are counted and logged at DEBUG. Tests install a
hook (`set_error_hook`) that makes anything contained fail the test.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

try:  # the C function: the same masks, as plain ints (signal.pthread_sigmask converts each to an enum)
    from _signal import pthread_sigmask as _pthread_sigmask
except ImportError:  # another interpreter: signal's own, if it has one (Windows has none)
    _pthread_sigmask = getattr(signal, "pthread_sigmask", None)

log = logging.getLogger("autolog")

_lock = threading.Lock()
_seen: dict[tuple[str, str], int] = {}
_error_hook: Optional[Callable[[str, BaseException], None]] = None
_silent = False


def set_silent(silent: bool) -> None:
    """`autolog(silent=True)`: report contained errors at DEBUG only."""
    global _silent
    _silent = bool(silent)


def set_error_hook(hook: Optional[Callable[[str, BaseException], None]]) -> None:
    """Call `hook(where, exc)` for every contained error (the test suite uses this)."""
    global _error_hook
    _error_hook = hook


def report(where: str, exc: BaseException) -> None:
    """Log `exc` once per (where, type); count the repeats."""
    key = (where, type(exc).__name__)
    with _lock:
        count = _seen.get(key, 0) + 1
        _seen[key] = count
    if count == 1:
        level = logging.DEBUG if _silent else logging.WARNING
        log.log(
            level,
            "autolog: %s failed (%s: %s); training is not affected, further errors of this kind are logged at DEBUG",
            where,
            type(exc).__name__,
            exc,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
    else:
        log.debug("autolog: %s failed again (%d times): %r", where, count, exc)
    hook = _error_hook
    if hook is not None:
        hook(where, exc)


def warn_once(where: str, message: str, *args) -> None:
    """A warning (not an exception) that should appear once per process and `where`."""
    key = (where, "warning")
    with _lock:
        first = key not in _seen
        _seen[key] = _seen.get(key, 0) + 1
    if first:
        log.log(logging.DEBUG if _silent else logging.WARNING, "autolog: " + message, *args)


def error_counts() -> dict[tuple[str, str], int]:
    with _lock:
        return dict(_seen)


def reset() -> None:
    with _lock:
        _seen.clear()


@contextmanager
def contained(where: str) -> Iterator[None]:
    """Run a block of autolog's own code; an exception in it is reported and swallowed."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - this is the one place that swallows
        report(where, exc)


# -- background threads ----------------------------------------------------------------------
#: what a terminal, a scheduler or the user sends a process: left to the main thread
_ASYNC_SIGNALS = tuple(
    getattr(signal, name) for name in
    ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD", "SIGWINCH")
    if hasattr(signal, name)
)


def background_thread(target: Callable[..., None], name: str, args: tuple = ()) -> threading.Thread:
    """A daemon thread (not started) for autolog's own work that leaves the process's signals
    to the main thread.

    The kernel hands a signal sent to the process (`kill`, `docker stop`, Ctrl-C) to any
    thread that does not block it. Python runs its handlers on the main thread only when
    that thread next runs bytecode, and only the thread the signal landed on sees its
    blocking call interrupted: a SIGTERM landing on our idle worker left a main thread
    blocked in `read()` (or `queue.get()`, a barrier) unaware, and the user's handler
    never ran. Our threads block these signals, so they land where the user expects.
    """

    def run() -> None:
        block_async_signals()
        target(*args)

    return threading.Thread(target=run, name=name, daemon=True)


def block_async_signals() -> None:
    """Block, in the calling thread, the signals a process is sent (see `background_thread`)."""
    if not _ASYNC_SIGNALS or _pthread_sigmask is None:
        return
    try:
        _pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)
    except (OSError, ValueError):
        pass


@contextmanager
def async_signals_unblocked() -> Iterator[None]:
    """Unblock, for the block, the signals `background_thread` blocks: around work that may
    start processes (a subprocess inherits the mask; a child deaf to SIGTERM would be a bug).
    Around every piece of deferred work on the worker: the C function, not `signal`'s wrapper,
    whose conversion of the returned mask to enums cost four times the two system calls."""
    if not _ASYNC_SIGNALS or _pthread_sigmask is None:
        yield
        return
    try:
        previous = _pthread_sigmask(signal.SIG_UNBLOCK, _ASYNC_SIGNALS)
    except (OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        try:
            _pthread_sigmask(signal.SIG_SETMASK, previous)
        except (OSError, ValueError):
            pass
