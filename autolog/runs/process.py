"""The process that owns a run: who it is, and how it ended.

- **Identity.** Every run this process starts carries the tags `autolog.process.pid`,
  `autolog.process.host` and `autolog.process.start` (the process's start time as the
  kernel counts it, so that a reused pid is not mistaken for the owner). `owner_gone(run)`
  says whether that process is certainly gone (same host, and no process with that pid and
  start time); `autolog runs` shows such a RUNNING run as KILLED and `autolog gc` ends it
  KILLED in the store.
- **Exit status.** `exit_status()` is what the runs still open at interpreter exit end
  with: FAILED when an unhandled exception ends the interpreter (`sys.last_exc` /
  `sys.last_value`, set before atexit hooks run) or `sys.exit(n)` with a non-zero status;
  KILLED for KeyboardInterrupt or SIGTERM; FINISHED otherwise. `SystemExit` bypasses
  `sys.excepthook` and sets nothing an atexit hook can read, so while autolog is enabled
  `sys.exit` is wrapped through the patching engine (undone by `autolog(disable=True)`) to
  remember the status it was asked for. Limits: `raise SystemExit(n)`, `exit()` from `site`,
  and a `from sys import exit` done before `autolog()` are not seen (those runs end
  FINISHED); a `sys.exit(n)` whose SystemExit the program catches and survives still counts.
- **SIGTERM** (docker stop, Kubernetes, Slurm): installed by `autolog()` from the main
  thread only. When the signal's disposition was the default, a thread of autolog's ends the
  open runs KILLED and flushes within `SIGTERM_FLUSH_TIMEOUT` seconds (what it cannot send is
  spilled to the journal), then the process ends by the signal as it would have without
  autolog. The main thread is never made to wait for that flush, and the signal is noticed
  even while the main thread sits in a blocking call (details below, at `_on_sigterm`). A
  handler the user installed before `autolog()` is called after autolog notes the
  termination (runs then end KILLED at exit); an ignored SIGTERM stays ignored. A handler
  installed after `autolog()` replaces ours: then autolog does not see the signal.
  `autolog(disable=True)` puts back the handler it found, if ours is still the one installed.
  A forked child starts with the disposition autolog found and takes SIGTERM once it logs.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Optional

from autolog.entities import RunStatus

TAG_PID = "autolog.process.pid"
TAG_HOST = "autolog.process.host"
TAG_START = "autolog.process.start"

#: the bound on the flush a SIGTERM triggers (docker stop sends SIGKILL 10 s after SIGTERM)
SIGTERM_FLUSH_TIMEOUT = 5.0


class _ProcessState:
    def __init__(self):
        self.tags: Optional[dict] = None
        self.pid = 0
        self.exit_code: Any = None  # what sys.exit was last asked for
        self.terminated = False  # a SIGTERM arrived
        self.stale_exception: Any = None  # sys.last_value when autolog was enabled (an interactive session's)
        self.previous_sigterm: Any = None
        self.sigterm_installed = False
        self.exit_patcher = None
        self.arm_after_fork = False  # a forked child takes SIGTERM once its logger starts


_process = _ProcessState()


# -- identity ----------------------------------------------------------------------------------
def _start_ticks(pid: int) -> Optional[str]:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: fields follow the last ')'
    fields = data[data.rfind(b")") + 2:].split()
    try:
        return fields[19].decode()  # field 22 overall
    except IndexError:
        return None


def process_tags() -> dict:
    """The tags naming this process, for each run it starts."""
    pid = os.getpid()
    if _process.tags is None or _process.pid != pid:
        tags = {TAG_PID: str(pid), TAG_HOST: socket.gethostname()}
        start = _start_ticks(pid)
        if start is not None:
            tags[TAG_START] = start
        _process.tags, _process.pid = tags, pid
    return dict(_process.tags)


def owner_gone(tags: dict) -> bool:
    """True when the process named by a run's tags is certainly gone: it ran on this host and
    no live process has its pid (with the same start time, where the kernel tells it).
    False when unsure (another host, no tags, a process we may not signal but that exists)."""
    pid_text = tags.get(TAG_PID)
    if not pid_text or tags.get(TAG_HOST) != socket.gethostname():
        return False
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, owned by someone else: compare start times below
    except OSError:
        return False
    recorded = tags.get(TAG_START)
    if recorded is None:
        return False
    current = _start_ticks(pid)
    return current is not None and current != recorded


# -- exit status --------------------------------------------------------------------------------
def _ending_exception() -> Any:
    exc = getattr(sys, "last_exc", None)
    if exc is None:
        exc = getattr(sys, "last_value", None)
    if exc is None or exc is _process.stale_exception:
        return None
    return exc


def _code_fails(code: Any) -> bool:
    """Whether `sys.exit(code)` ends the process with a non-zero status."""
    if code is None:
        return False
    if isinstance(code, bool):
        return code
    if isinstance(code, int):
        return code != 0
    return True  # a message: printed, status 1


def exit_status() -> tuple[str, Optional[str]]:
    """(status, error text or None) for the runs still open at interpreter exit."""
    exc = _ending_exception()
    if isinstance(exc, KeyboardInterrupt):
        return RunStatus.KILLED, "KeyboardInterrupt"
    if isinstance(exc, SystemExit):
        if _code_fails(exc.code):
            return RunStatus.FAILED, f"SystemExit: {exc.code}"
    elif exc is not None:
        return RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
    if _process.terminated:
        return RunStatus.KILLED, "SIGTERM"
    if _code_fails(_process.exit_code):
        return RunStatus.FAILED, f"sys.exit({_process.exit_code!r})"
    return RunStatus.FINISHED, None


def _remember_exit(wrapped, instance, args, kwargs):
    _process.exit_code = args[0] if args else kwargs.get("status")
    return wrapped(*args, **kwargs)


# -- SIGTERM ----------------------------------------------------------------------------------
# Two things must not depend on the main thread: noticing the signal, and the flush.
# - A Python handler runs only when the main thread next runs bytecode. A SIGTERM that lands
#   just before the main thread enters a blocking call (the lock a multiprocessing Pool worker
#   waits on in `get()`, which `Pool.terminate()` relies on SIGTERM to end) is noticed only when
#   that call returns: never, there. So the C-level handler's wakeup byte is read by a thread
#   of ours (`signal.set_wakeup_fd`), which starts the flush whatever the main thread is doing.
# - The handler interrupts the main thread anywhere, also inside autolog's own code holding a
#   lock (an Event's lock while `enqueue` wakes the worker, a Pool worker's flush at exit). A
#   handler that waited there for the flush waited on itself: the flush stalled until its bound
#   and the process ended with its records unsent. The handler never waits: the flush runs on
#   its own thread while the main thread goes on, and ends the process when it is done.
_SIGTERM_DIE_WAIT = 2.0  # after the flush: how long the main thread has to end the process itself


class _SigtermState:
    """The handler's machinery of this process (fresh in a forked child)."""

    def __init__(self):
        self.lock = threading.RLock()  # re-entrant: the handler may interrupt the main thread inside it
        self.flushing: Optional[threading.Thread] = None
        self.flushed = threading.Event()
        self.wakeup_read = -1
        self.wakeup_write = -1
        self.previous_wakeup = -1  # the wakeup fd someone else had set: every byte is passed on to it
        self.reader: Optional[threading.Thread] = None


_sigterm = _SigtermState()


def _on_sigterm(signum, frame) -> None:
    previous = _process.previous_sigterm
    if previous == signal.SIG_IGN:
        return
    _process.terminated = True
    if callable(previous):
        previous(signum, frame)  # the user's: it decides whether and how the process ends
        return
    _begin_sigterm_flush()
    if _sigterm.flushed.is_set():
        _end_by_sigterm()  # the flush thread is done and asked the main thread to end the process


def _begin_sigterm_flush() -> None:
    """Start the flush a SIGTERM of the default disposition asks for, once per process. Called
    by the handler (main thread) and by the wakeup reader (whichever notices first)."""
    with _sigterm.lock:
        if _sigterm.flushing is not None:
            return
        _process.terminated = True
        from autolog.instrument import containment

        thread = containment.background_thread(_flush_then_end, "autolog-sigterm")
        _sigterm.flushing = thread
        thread.start()


def _flush_then_end() -> None:
    """End the runs KILLED and flush (bounded; what cannot be sent is spilled), then have the
    process end by the signal as it would have without autolog: the main thread's handler
    does that (only the main thread may restore SIGTERM's default), woken by a signal sent to
    it alone, which interrupts whatever blocking call it sits in. A main thread that never
    runs bytecode again ends the process from here, with the exit status of a SIGTERM.
    The flush itself runs on one more thread, waited for at most `SIGTERM_FLUSH_TIMEOUT` + 2 s:
    whatever it is stuck in, the process ends."""
    from autolog.instrument import containment

    try:
        flush = containment.background_thread(_end_for_sigterm, "autolog-sigterm-flush")
        flush.start()
        flush.join(SIGTERM_FLUSH_TIMEOUT + 2.0)
    finally:
        _sigterm.flushed.set()
        deadline = time.monotonic() + _SIGTERM_DIE_WAIT
        main = threading.main_thread().ident
        while time.monotonic() < deadline:
            try:
                signal.pthread_kill(main, signal.SIGTERM)
            except (OSError, ValueError, AttributeError):
                break
            time.sleep(0.1)
        os._exit(128 + signal.SIGTERM)


def _end_by_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def end_if_terminated() -> None:
    """Last step of the exit hook: after a SIGTERM whose flush autolog runs, the main thread
    may reach the end of the script before the flush is done; the process still ends by the
    signal, as it would have without autolog (not with status 0)."""
    if _sigterm.flushing is not None and threading.current_thread() is threading.main_thread():
        _end_by_sigterm()


def _end_for_sigterm() -> None:
    from autolog.instrument import containment
    from autolog.runs.lifecycle import end_open_runs
    from autolog.transport.logger import begin_exit, close_all, hold_enqueues

    begin_exit()
    with containment.contained("ending runs on SIGTERM"):
        end_open_runs(RunStatus.KILLED, "SIGTERM")
    hold_enqueues()  # the main thread goes on meanwhile: what it logs from now on waits for the end
    close_all(SIGTERM_FLUSH_TIMEOUT)


def _read_wakeups(read_fd: int) -> None:
    """The wakeup reader: one byte per signal that reached a Python handler, written by
    CPython's C-level handler whatever the main thread is doing."""
    while True:
        try:
            data = os.read(read_fd, 512)
        except InterruptedError:
            continue
        except OSError:
            return
        if not data:  # ours was given back and its write end closed
            os.close(read_fd)
            return
        forward = _sigterm.previous_wakeup
        if forward >= 0:
            try:
                os.write(forward, data)
            except OSError:
                pass
        if signal.SIGTERM in data and _sigterm.wakeup_read == read_fd and _ours_decides():
            _begin_sigterm_flush()


def _ours_decides() -> bool:
    """Whether autolog's handler is installed and the disposition it found was the default."""
    previous = _process.previous_sigterm
    return (_process.sigterm_installed and previous != signal.SIG_IGN and not callable(previous)
            and signal.getsignal(signal.SIGTERM) is _on_sigterm)


def _watch_wakeups() -> None:
    """Point CPython's wakeup fd at a pipe our reader thread reads (main thread only)."""
    if _sigterm.wakeup_write >= 0 or not hasattr(signal, "set_wakeup_fd"):
        return
    from autolog.instrument import containment

    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(write_fd, False)
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (OSError, ValueError):
        os.close(read_fd)
        os.close(write_fd)
        return
    _sigterm.wakeup_read, _sigterm.wakeup_write, _sigterm.previous_wakeup = read_fd, write_fd, previous
    reader = containment.background_thread(_read_wakeups, "autolog-signals", (read_fd,))
    _sigterm.reader = reader
    reader.start()


def _unwatch_wakeups() -> None:
    """Give the wakeup fd back to whoever had it (if ours is still set); the reader ends."""
    write_fd = _sigterm.wakeup_write
    if write_fd < 0:
        return
    try:
        current = signal.set_wakeup_fd(_sigterm.previous_wakeup, warn_on_full_buffer=False)
        if current != write_fd:  # someone set theirs after ours: theirs stays
            signal.set_wakeup_fd(current)
    except (OSError, ValueError):
        return
    _sigterm.wakeup_read = _sigterm.wakeup_write = -1
    _sigterm.previous_wakeup = -1
    try:
        os.close(write_fd)  # the reader sees the end of the pipe, closes its end and ends
    except OSError:
        pass


def _install_sigterm() -> None:
    if (_process.sigterm_installed or not hasattr(signal, "SIGTERM")
            or threading.current_thread() is not threading.main_thread()):
        return
    try:
        _process.previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
        _process.sigterm_installed = True
    except (ValueError, OSError):
        return  # not the main interpreter, or a platform without it
    _watch_wakeups()


def arm_in_forked_child() -> None:
    """A forked child starts with the SIGTERM disposition autolog found (see
    `_after_fork_in_child`); its logger calls this when it starts, and the child takes
    SIGTERM from then on, if the call comes from its main thread."""
    if _process.arm_after_fork and threading.current_thread() is threading.main_thread():
        _process.arm_after_fork = False
        _install_sigterm()


def _after_fork_in_child() -> None:
    """A forked child gets the SIGTERM disposition autolog found, not autolog's handler, until
    it logs something (`arm_in_forked_child`): a child with nothing to flush ends at once, as
    without autolog (`Pool.terminate()` ends idle workers by SIGTERM). The parent's wakeup
    pipe and reader are not the child's."""
    global _sigterm
    inherited, _sigterm = _sigterm, _SigtermState()
    if not _process.sigterm_installed:
        return
    previous = _process.previous_sigterm
    _process.sigterm_installed = False
    _process.arm_after_fork = True
    _process.terminated = False
    try:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if inherited.wakeup_write >= 0:
            signal.set_wakeup_fd(inherited.previous_wakeup)
    except (ValueError, OSError):
        pass
    for fd in (inherited.wakeup_read, inherited.wakeup_write):
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


# -- enable / disable -------------------------------------------------------------------------
def enable() -> None:
    """Called by `autolog()`: remember sys.exit's status, take SIGTERM (main thread only)."""
    from autolog.instrument.patching import Patcher

    _process.stale_exception = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if _process.exit_patcher is None:
        patcher = Patcher("autolog.exit-status")
        patcher.wrap(sys, "exit", _remember_exit)
        _process.exit_patcher = patcher
    _install_sigterm()


def disable() -> None:
    """Undo `enable`: sys.exit is the original again, SIGTERM's previous handler is back
    (unless someone replaced ours meanwhile: theirs stays)."""
    patcher, _process.exit_patcher = _process.exit_patcher, None
    if patcher is not None:
        patcher.revert()
    if _process.sigterm_installed and threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) is _on_sigterm:
                previous = _process.previous_sigterm
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        except (ValueError, OSError):
            pass
        _unwatch_wakeups()
        _process.sigterm_installed = False
        _process.previous_sigterm = None
    _process.arm_after_fork = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
