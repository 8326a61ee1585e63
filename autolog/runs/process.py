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
  thread only. When the signal's disposition was the default, the handler ends the open
  runs KILLED, flushes within `SIGTERM_FLUSH_TIMEOUT` seconds (what it cannot send is
  spilled to the journal), puts the default back and sends itself SIGTERM again, so the
  process ends as it would have without autolog. A handler the user installed before
  `autolog()` is called after autolog notes the termination (runs then end KILLED at
  exit); an ignored SIGTERM stays ignored. A handler installed after `autolog()` replaces
  ours: then autolog does not see the signal. `autolog(disable=True)` puts back the
  handler it found, if ours is still the one installed.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
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
def _on_sigterm(signum, frame) -> None:
    previous = _process.previous_sigterm
    if previous == signal.SIG_IGN:
        return
    _process.terminated = True
    if callable(previous):
        previous(signum, frame)  # the user's: it decides whether and how the process ends
        return
    # the default: end the runs KILLED and flush, bounded, from a helper thread (the interrupted
    # main thread may hold a lock the flush needs), then end the process by the signal as before
    helper = threading.Thread(target=_end_for_sigterm, name="autolog-sigterm", daemon=True)
    helper.start()
    helper.join(SIGTERM_FLUSH_TIMEOUT + 2.0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _end_for_sigterm() -> None:
    from autolog.instrument import containment
    from autolog.runs.lifecycle import end_open_runs
    from autolog.transport.logger import begin_exit, close_all

    begin_exit()
    with containment.contained("ending runs on SIGTERM"):
        end_open_runs(RunStatus.KILLED, "SIGTERM")
    close_all(SIGTERM_FLUSH_TIMEOUT)


# -- enable / disable -------------------------------------------------------------------------
def enable() -> None:
    """Called by `autolog()`: remember sys.exit's status, take SIGTERM (main thread only)."""
    from autolog.instrument.patching import Patcher

    _process.stale_exception = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if _process.exit_patcher is None:
        patcher = Patcher("autolog.exit-status")
        patcher.wrap(sys, "exit", _remember_exit)
        _process.exit_patcher = patcher
    if (not _process.sigterm_installed and hasattr(signal, "SIGTERM")
            and threading.current_thread() is threading.main_thread()):
        try:
            _process.previous_sigterm = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _on_sigterm)
            _process.sigterm_installed = True
        except (ValueError, OSError):
            pass  # not the main interpreter, or a platform without it


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
        _process.sigterm_installed = False
        _process.previous_sigterm = None
