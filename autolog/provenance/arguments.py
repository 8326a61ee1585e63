"""Parsed command-line arguments, logged as `args.<name>` params.

`argparse.ArgumentParser.parse_args` / `parse_known_args` (and click's
`Command.make_context`, where click is installed) are wrapped through a `Patcher`, so
`autolog(disable=True)` puts the original functions back. A parse counts when it
parses *the command line* of the main process, on its main thread:

- argparse: `args` is None or equal to `sys.argv[1:]`; parsers that libraries run on
  lists of their own (config strings, sub-command internals) are not the command line;
- click: inside `Command.main()` called with the command line (click's usual entry), the
  context of the command and of each sub-command chosen on it.

A command line parsed before `autolog()` is picked up when autolog is enabled
(`already_parsed`): the click command running now, or the `argparse.Namespace` held by a
variable of the code that called `autolog()` or of one of its callers.

The values are kept (the last parse wins) and logged to the run active at parse time,
if any, and to every outermost run started afterwards, once per run. Secrets are
redacted by name as in the source tags (`--api-key` -> `[REDACTED]`) and credentials
are stripped from URLs. A parse that raises (`SystemExit` for `--help` or bad
arguments) passes through unchanged and records nothing.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, Optional

from autolog.instrument import containment
from autolog.instrument.patching import Patcher
from autolog.validation import MAX_PARAM_VALUE_LENGTH, REDACTED, is_secret_name, redact_text, secret_options, value_to_text

PREFIX = "args."


def in_main_process_thread() -> bool:
    # a process that multiprocessing started has it imported: no need to import it here (startup)
    multiprocessing = sys.modules.get("multiprocessing")
    return threading.current_thread() is threading.main_thread() and (
        multiprocessing is None or multiprocessing.parent_process() is None)


def is_command_line(args: Any) -> bool:
    if args is None:
        return True
    try:
        return list(args) == sys.argv[1:]
    except TypeError:
        return False


def as_params(values: dict) -> dict:
    """`args.<name>` -> text, secrets redacted, URL credentials stripped."""
    params = {}
    for name, value in values.items():
        name = str(name)
        if name.startswith("_"):
            continue  # argparse internals (e.g. a sub-command's dispatch function)
        if is_secret_name(name) or name in _secret_dests:
            text = REDACTED
        elif callable(value) and not isinstance(value, (str, bytes)):
            text = getattr(value, "__qualname__", None) or value_to_text(value, MAX_PARAM_VALUE_LENGTH)
        else:
            text = redact_text(value_to_text(value, MAX_PARAM_VALUE_LENGTH))
        params[PREFIX + name] = text
    return params


#: dests of argparse actions one of whose option strings looks secret (`-k/--token` -> "k")
_secret_dests: set[str] = set()


def learn_secret_options(parser: Any) -> None:
    """Note every option string and the dest of each action of `parser` (and its
    sub-parsers) that any of its names marks secret: `-p` of `-p/--password` is then redacted
    in the command-line tag, and its dest in the params."""
    for action in getattr(parser, "_actions", ()):
        names = list(getattr(action, "option_strings", ()) or ()) + [str(getattr(action, "dest", "") or "")]
        if any(is_secret_name(n) for n in names):
            secret_options.update(action.option_strings)
            _secret_dests.add(str(action.dest))
        for sub in (getattr(action, "choices", None) or {}).values() if hasattr(action, "_name_parser_map") else ():
            learn_secret_options(sub)


#: the names a script usually gives its parsed arguments, looked at first
_USUAL_NAMES = ("args", "arguments", "opts", "options", "flags", "cfg", "config", "hparams", "params")


def already_parsed() -> dict:
    """The command line parsed before `autolog()` was called: the values of the click command
    running now, else an `argparse.Namespace` held by a variable of the code that called
    `autolog()` or of a caller of it, up to the script's top level (the nearest first; in one
    function, a variable named `args`, `opts`, `config`... first). {} when there is none."""
    click = sys.modules.get("click")
    if click is not None:
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            values: dict = {}
            chain = []
            while ctx is not None:
                chain.append(ctx)
                ctx = ctx.parent
            for each in reversed(chain):  # a sub-command's options join its group's
                values.update(each.params)
            return values
    argparse = sys.modules.get("argparse")
    if argparse is None:
        return {}
    frame = sys._getframe(1)
    while frame is not None:
        if not str(frame.f_globals.get("__name__", "")).startswith("autolog"):
            found = {name: value for name, value in frame.f_locals.items() if isinstance(value, argparse.Namespace)}
            if found:
                name = next((n for n in _USUAL_NAMES if n in found), next(iter(found)))
                return dict(getattr(found[name], "__dict__", None) or {})
        frame = frame.f_back
    return {}


class ArgumentRecorder:
    """Patches the parsers and keeps the last parsed values of the main process."""

    def __init__(self, on_parsed: Callable[[dict], None]):
        self.on_parsed = on_parsed  # called with the params on the parsing thread
        self.patcher: Optional[Patcher] = None
        self.params: dict = {}
        self._pid = os.getpid()
        self._depth = threading.local()
        self._click_main = threading.local()

    # -- enable / disable ------------------------------------------------------------------------
    def enable(self) -> None:
        if self.patcher is not None:
            return
        self.patcher = Patcher("run context: arguments")
        # patched when imported (at once if it is): a script without a command line does not pay
        # argparse's import in autolog()
        self.patcher.when_imported("argparse", self._patch_argparse)
        self.patcher.when_imported("click", self._patch_click)  # forgotten with the patcher at disable
        if not self.params and in_main_process_thread():
            with containment.contained("looking for arguments parsed before autolog()"):
                parsed = already_parsed()
                if parsed:
                    self._record(parsed)

    def disable(self) -> None:
        """Put the parsers back and forget the values (a later enable waits for a new parse)."""
        self.params = {}
        patcher, self.patcher = self.patcher, None
        if patcher is not None:
            patcher.revert()

    def current(self) -> dict:
        if self._pid != os.getpid():  # a forked child parses its own command line, if any
            return {}
        return dict(self.params)

    # -- argparse ------------------------------------------------------------------------------------
    def _patch_argparse(self, argparse: Any) -> None:
        patcher = self.patcher
        if patcher is not None:
            patcher.wrap(argparse, "ArgumentParser.parse_args", self._argparse_wrapper)
            patcher.wrap(argparse, "ArgumentParser.parse_known_args", self._argparse_wrapper)

    def _argparse_wrapper(self, wrapped, instance, args, kwargs):
        with containment.contained("learning the secret options of a parser"):
            learn_secret_options(instance)
        depth = getattr(self._depth, "value", 0)
        self._depth.value = depth + 1
        try:
            result = wrapped(*args, **kwargs)  # SystemExit and parse errors pass through unchanged
        finally:
            self._depth.value = depth
        if depth == 0 and in_main_process_thread():
            with containment.contained("recording parsed arguments"):
                given = args[0] if args else kwargs.get("args")
                if is_command_line(given):
                    namespace = result[0] if isinstance(result, tuple) else result
                    self._record(dict(getattr(namespace, "__dict__", None) or {}))  # a user namespace may have slots
        return result

    # -- click ----------------------------------------------------------------------------------------
    def _patch_click(self, click_module) -> None:
        patcher = self.patcher
        if patcher is None or not patcher.active:
            return  # autolog was disabled before click was imported
        import click.core

        patcher.wrap(click.core, "Command.main", self._click_main_wrapper)
        patcher.wrap(click.core, "Command.make_context", self._click_context_wrapper)

    def _click_main_wrapper(self, wrapped, instance, args, kwargs):
        given = args[0] if args else kwargs.get("args")
        outer = getattr(self._click_main, "value", None)
        if outer is None:
            self._click_main.value = {} if is_command_line(given) and in_main_process_thread() else False
        try:
            return wrapped(*args, **kwargs)
        finally:
            if outer is None:
                self._click_main.value = None

    def _click_context_wrapper(self, wrapped, instance, args, kwargs):
        ctx = wrapped(*args, **kwargs)
        collected = getattr(self._click_main, "value", None)
        if isinstance(collected, dict):
            with containment.contained("recording parsed click options"):
                collected.update(ctx.params)  # a sub-command's options join its group's
                self._record(dict(collected))
        return ctx

    def _record(self, values: dict) -> None:
        params = as_params(values)
        self._pid = os.getpid()
        self.params = params
        if params:
            self.on_parsed(params)
