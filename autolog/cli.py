"""The `autolog` command: list, show, compare and plot runs; sync them into another backend.

    autolog runs [--experiment NAME] [--status STATUS] [--limit N] [--metrics a,b] [--json]
    autolog show RUN [--json]
    autolog compare RUN RUN... [--only-diff] [--json]
    autolog plot RUN... --metric KEY [--metric KEY2] -o FILE.png
    autolog sync --to URI [--from URI] [--journal DIR ...] [--experiment NAME] [--dry-run] [--json]
    autolog ui [--store PATH] [--port P] [--host 127.0.0.1] [-- MLFLOW SERVER ARGS]
    autolog gc [--dry-run] [--json]

Every command reads the store through the Backend protocol's reading side, so it works
on any tracking URI (`--tracking-uri`, else AUTOLOG_TRACKING_URI, MLFLOW_TRACKING_URI,
./autolog-runs). A RUN is a run id or a unique prefix of one. Tables are aligned for a
terminal; `--json` prints JSON for scripts. A user error is one line on stderr,
`autolog: error: ...`, and exit code 1; a usage error exits with 2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shutil
import sys
from collections import Counter
from typing import Any, Optional, Sequence

from autolog.backends import Backend, BackendError, RunNotFound, get_backend, resolve_tracking_uri
from autolog.entities import Run, RunStatus
from autolog.runs.process import owner_gone
from autolog.transport.sync import SyncError, missing_store, sync

PROG = "autolog"
SHORT_ID = 8
SYSTEM_PREFIX = "system/"  # the run context's machine metrics (autolog/provenance/system_metrics.py)
TAG_BACKEND_RUN_ID = "autolog.mlflow_run_id"  # the MLflow backend's own id of a run read back
MAX_CELL = 48  # widest a table cell gets in the terminal view
MAX_TAG_VALUE = 60
MAX_ERROR_LINES = 10  # sync: refused runs listed on stderr


class CliError(Exception):
    """A user error: printed as one line, exit code 1."""


# -- entry point ----------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "compare" and len(args.runs) < 2:
        parser.error("compare needs at least two runs")
    try:
        return args.handler(args)
    except BrokenPipeError:  # `autolog runs | head`
        return 0
    except KeyboardInterrupt:  # Ctrl-C: a sync stopped this way is safe to run again
        _error("interrupted")
        return 130
    except (CliError, SyncError, BackendError, OSError) as exc:
        _error(_message(exc))
        return 1


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    # --tracking-uri is accepted before and after the command
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tracking-uri", metavar="URI", default=argparse.SUPPRESS,
                        help="the store to read (default: AUTOLOG_TRACKING_URI, MLFLOW_TRACKING_URI, ./autolog-runs)")
    parser = argparse.ArgumentParser(prog=PROG, parents=[common],
                                     description="List, show, compare and plot autolog runs; sync them to another backend.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("runs", parents=[common], help="a table of runs, newest first")
    p.add_argument("--experiment", metavar="NAME", help="only the runs of this experiment")
    p.add_argument("--status", type=str.upper, choices=RunStatus.ALL, help="only runs with this status")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N runs (default 50)")
    p.add_argument("--metrics", metavar="A,B",
                   help="the metric columns (default: the 3 most common model metrics, never system/*)")
    p.add_argument("--system", action="store_true", help="also the most common system metrics (system/*)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser("show", parents=[common], help="one run: params, metrics, tags, datasets, artifacts")
    p.add_argument("run", metavar="RUN", help="a run id or a unique prefix of one")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("compare", parents=[common], help="params and metrics of runs side by side")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--only-diff", action="store_true",
                   help="only the rows where the runs differ (system metrics left out unless --system)")
    p.add_argument("--system", action="store_true", help="with --only-diff, keep the system metrics that differ")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("plot", parents=[common],
                       help="metric curves over steps; for a sweep, a metric against a param or parallel coordinates")
    p.add_argument("runs", nargs="*", metavar="RUN")
    p.add_argument("--experiment", metavar="NAME", help="every run of this experiment (with or instead of RUNs)")
    p.add_argument("--metric", action="append", required=True, metavar="KEY", help="a metric key (repeatable)")
    p.add_argument("--x", metavar="PARAM", dest="x_param",
                   help="a sweep: each run's last value of the metric against this param")
    p.add_argument("--parallel", action="store_true",
                   help="a sweep: parallel coordinates of the params that differ and the metrics")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the image to write (.png, .svg, .pdf)")
    p.set_defaults(handler=cmd_plot)

    p = sub.add_parser("sync", parents=[common], help="copy runs and spill journals into another backend")
    p.add_argument("--to", required=True, metavar="URI", dest="to", help="the target backend")
    p.add_argument("--from", metavar="URI", dest="source",
                   help="the source store (default: the tracking URI)")
    p.add_argument("--journal", action="append", default=[], metavar="DIR",
                   help="also replay this journal folder into the target (repeatable)")
    p.add_argument("--experiment", metavar="NAME", help="copy only the runs of this experiment")
    p.add_argument("--dry-run", action="store_true", help="count what would be sent, send nothing")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=cmd_sync)

    p = sub.add_parser("ui", parents=[common], help="the MLflow UI on a local store (needs autolog[mlflow])",
                       description="Start the MLflow UI on a local autolog store, read in place through the "
                                   "autolog:/// tracking-store plugin. Arguments after -- go to `mlflow server`.")
    p.add_argument("--store", metavar="PATH", help="the store folder (default: the tracking URI, ./autolog-runs)")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5000, help="the port (default 5000, as `mlflow ui`)")
    p.add_argument("mlflow_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_ui)

    p = sub.add_parser("gc", parents=[common], help="end KILLED the RUNNING runs whose process is gone",
                       description="Mark KILLED the runs left RUNNING by a process that is gone (SIGKILL, a "
                                   "crash, a lost machine): runs started on this host whose owning process "
                                   "(autolog.process.pid / .start tags) no longer exists.")
    p.add_argument("--dry-run", action="store_true", help="list them, change nothing")
    p.add_argument("--json", action="store_true", help="print the run ids as JSON")
    p.set_defaults(handler=cmd_gc)
    return parser


# -- opening the store and finding runs ------------------------------------------------------

def open_store(args) -> Backend:
    uri = resolve_tracking_uri(getattr(args, "tracking_uri", None))
    missing = missing_store(uri)
    if missing is not None:
        raise CliError(f"no autolog store at {missing}")
    return get_backend(uri)


def find_run(store: Backend, ref: str) -> Run:
    """The run named by an id or a unique id prefix."""
    ref = ref.strip()
    if not ref:
        raise CliError("empty run id")
    resolver = getattr(store, "resolve_run_id", None)
    not_found = f"no run with id or prefix {ref!r}"
    if resolver is not None:
        try:
            run_id = resolver(ref)
        except LookupError as exc:  # no such id; a backend that resolves whole ids only may hold the prefix
            run_id, not_found = None, _message(exc)
        except (ValueError, BackendError) as exc:
            raise CliError(_message(exc)) from None
        if run_id:
            return store.get_run(run_id)
    else:
        try:
            return store.get_run(ref)
        except BackendError:  # not a whole id (an MLflow server refuses some prefixes outright)
            pass
    # a prefix of autolog's run id, or of the backend's own (MLflow's, shown in its UI)
    matches = [r for r in store.search_runs()
               if r.run_id.startswith(ref) or str(r.tags.get(TAG_BACKEND_RUN_ID, "")).startswith(ref)]
    if not matches:
        raise CliError(not_found)
    if len(matches) > 1:
        ids = ", ".join(r.run_id[:12] for r in matches[:5])
        raise CliError(f"run prefix {ref!r} is ambiguous: {len(matches)} runs match ({ids}{', ...' if len(matches) > 5 else ''})")
    return matches[0]


def last_points(store: Backend, run: Run) -> dict:
    """key -> {value, step, timestamp} of each metric's last point: the highest step, then the
    latest timestamp, then the later logged (as `runs` and `get_run` count it)."""
    out = {}
    for key in sorted(run.metrics):
        history = store.get_metric_history(run.run_id, key)
        if history:
            # histories come in the order logged within a step and timestamp: the last of the ties
            _, last = max(enumerate(history), key=lambda im: (im[1].step, im[1].timestamp, im[0]))
            out[key] = {"value": last.value, "step": last.step, "timestamp": last.timestamp}
        else:
            out[key] = {"value": run.metrics[key], "step": None, "timestamp": None}
    return out


def artifact_list(store: Backend, run_id: str, path: Optional[str] = None) -> list[dict]:
    out = []
    for info in store.list_artifacts(run_id, path):
        out.append({"path": info.path, "is_dir": info.is_dir, "size": info.size})
        if info.is_dir:
            out.extend(artifact_list(store, run_id, info.path))
    return out


# -- formatting -------------------------------------------------------------------------------

def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: Optional[int] = None,
                 max_cell: int = MAX_CELL, floors: Optional[dict] = None) -> str:
    """An aligned text table: numbers right-aligned, long cells cut, fitted to `width`.

    To fit, the widest column is cut first, down to its floor: the width of its values
    for numbers (a long header may be cut), `floors[i]` where given, else 8 characters."""
    cells = [[_cell_text(c) for c in row] for row in rows]
    head = [str(h) for h in headers]
    numeric = [bool(cells) and all(_looks_numeric(row[i]) for row in cells if row[i] not in ("", "-"))
               and any(row[i] not in ("", "-") for row in cells) for i in range(len(head))]
    widths = [max([len(head[i])] + [len(row[i]) for row in cells]) for i in range(len(head))]
    widths = [min(w, max(max_cell, len(head[i]))) for i, w in enumerate(widths)]
    if width is None:
        width = shutil.get_terminal_size((120, 24)).columns
    gap = 2
    floors = floors or {}
    floor = [floors[i] if i in floors else max([1] + [len(row[i]) for row in cells]) if numeric[i] else 8
             for i in range(len(head))]
    # shrink the widest column that may still shrink until the table fits
    while sum(widths) + gap * (len(widths) - 1) > width:
        shrinkable = [i for i in range(len(widths)) if widths[i] > floor[i]]
        if not shrinkable:
            break
        widths[max(shrinkable, key=lambda i: widths[i])] -= 1

    def line(values: Sequence[str]) -> str:
        parts = []
        for i, text in enumerate(values):
            text = _cut(text, widths[i])
            parts.append(text.rjust(widths[i]) if numeric[i] else text.ljust(widths[i]))
        return (" " * gap).join(parts).rstrip()

    out = [line(head), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def _cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format_number(value)
    return " ".join(str(value).split()) if "\n" in str(value) or "\t" in str(value) else str(value)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 3)] + "..."


def format_number(value: Any, digits: int = 6) -> str:
    if value is None:
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number) or math.isinf(number):
        return str(number)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    text = f"{number:.{digits}g}"
    if not any(c in text for c in ".en"):  # 0.999995 rounded to "1": say that it is not exactly 1
        text = f"{number:#.{digits}g}"
    return text


def format_time(ms: Optional[int]) -> str:
    if ms is None:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def format_duration(ms: Optional[int]) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{int(ms)}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, allow_nan=True))


def _child_mark() -> str:
    mark = "\u2514 "
    try:
        mark.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "`- "
    return mark


# -- runs -------------------------------------------------------------------------------------

def cmd_runs(args) -> int:
    store = open_store(args)
    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1")
    if args.experiment:
        names = sorted(e.name for e in store.list_experiments())
        if args.experiment not in names:
            raise CliError(f"no experiment named {args.experiment!r} (experiments: {', '.join(names) or 'none'})")
    runs = store.search_runs([args.experiment] if args.experiment else None,
                             [args.status] if args.status else None, None, args.limit)
    keys = _main_metric_keys(runs, args.metrics, args.system)
    if args.json:
        _print_json([dict(r.to_dict(), status=shown_status(r)) for r in runs])
        return 0
    if not runs:
        where = " matching the filters" if args.experiment or args.status else ""
        print(f"no runs{where} in {store.uri}")
        return 0
    rows = []
    mark = _child_mark()
    for run, depth in _tree_order(runs):
        name = ("  " * (depth - 1) + mark if depth else "") + run.run_name
        rows.append([run.run_id[:SHORT_ID], name, run.experiment_name, shown_status(run),
                     format_time(run.start_time), format_duration(run.duration_ms)]
                    + [format_number(run.metrics.get(k), 4) for k in keys])
    headers = ["id", "name", "experiment", "status", "start", "duration"] + _metric_headers(keys)
    print(format_table(headers, rows, floors=RUNS_FLOORS))
    return 0


#: the narrowest the columns before the metrics get in `autolog runs` (id, name, experiment, status, start, duration)
RUNS_FLOORS = {0: SHORT_ID, 1: 16, 2: 8, 3: 8, 4: 19, 5: 8}
RUNS_FIXED_WIDTH = sum(RUNS_FLOORS.values()) + 2 * len(RUNS_FLOORS)


def _metric_headers(keys: list[str]) -> list[str]:
    """The metric keys as column titles. When the table would not fit the terminal, shorter
    titles that stay apart: without what the keys all share (`training_r2_score` ->
    `r2_score`), else the first letters of their words (`mean_squared_error` -> `mse`)."""
    width = shutil.get_terminal_size((120, 24)).columns
    room = (width - RUNS_FIXED_WIDTH) // max(1, len(keys)) - 2
    shorter = _differing_parts(keys) or list(keys)
    candidates = [titles for titles in (list(keys), shorter, [_initials(k) for k in shorter])
                  if len(set(titles)) == len(titles)]
    for titles in candidates:
        if max(map(len, titles)) <= room:
            return titles
    return candidates[-1] if candidates else list(keys)


def _initials(key: str) -> str:
    """`mean_squared_error` -> `mse`; words with a digit stay whole (`r2_score` -> `r2s`)."""
    words = [w for w in re.split(r"[_\-./ ]+", key) if w]
    return "".join(w if any(c.isdigit() for c in w) else w[0] for w in words) if len(words) > 1 else key


def shown_status(run: Run) -> str:
    """A RUNNING run whose owning process is gone (autolog/runs/process.py) is shown KILLED."""
    if run.status == RunStatus.RUNNING and owner_gone(run.tags):
        return RunStatus.KILLED
    return run.status


def cmd_gc(args) -> int:
    """End KILLED, in the store, each RUNNING run whose owning process is gone."""
    import time

    store = open_store(args)
    gone = [run for run in store.search_runs(None, [RunStatus.RUNNING], None, None) if owner_gone(run.tags)]
    if not args.dry_run:
        for run in gone:
            store.log_batch(run.run_id, metrics=[], params=[], tags=[("autolog.error", "process gone (autolog gc)")])
            store.end_run(run.run_id, RunStatus.KILLED, int(time.time() * 1000))
        store.flush()
    if args.json:
        _print_json({"dry_run": args.dry_run, "killed": [run.run_id for run in gone]})
        return 0
    verb = "would mark" if args.dry_run else "marked"
    print(f"{verb} {len(gone)} run{'s' if len(gone) != 1 else ''} KILLED (their process is gone)")
    for run in gone:
        print(f"  {run.run_id[:SHORT_ID]}  {run.run_name}  pid {run.tags.get('autolog.process.pid')}")
    return 0


def is_system_metric(key: str) -> bool:
    """A machine metric of the run context (system/cpu_..., system/<node>/gpu_...), not the model's."""
    return key.startswith(SYSTEM_PREFIX)


def _main_metric_keys(runs: Sequence[Run], wanted: Optional[str], system: bool = False) -> list[str]:
    """The metric columns: those asked for, else the 3 most common model metrics (training_*,
    validation, the user's), then with `system` the 3 most common system metrics."""
    if wanted:
        return [k.strip() for k in wanted.split(",") if k.strip()]
    counts = Counter(k for r in runs for k in r.metrics)
    ranked = [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    keys = [k for k in ranked if not is_system_metric(k)][:3]
    if system:
        keys += [k for k in ranked if is_system_metric(k)][:3]
    return keys


def _tree_order(runs: Sequence[Run]) -> list[tuple[Run, int]]:
    """Runs newest first, each child right under its parent (when the parent is listed)."""
    listed = {r.run_id for r in runs}
    # the store's order (newest first) breaks ties of start time between siblings
    position = {r.run_id: i for i, r in enumerate(runs)}
    children: dict[str, list[Run]] = {}
    roots = []
    for run in runs:
        if run.parent_run_id and run.parent_run_id in listed:
            children.setdefault(run.parent_run_id, []).append(run)
        else:
            roots.append(run)
    out: list[tuple[Run, int]] = []

    def walk(run: Run, depth: int) -> None:
        out.append((run, depth))
        for child in sorted(children.get(run.run_id, []), key=lambda r: (r.start_time, -position[r.run_id])):
            if depth < 20:
                walk(child, depth + 1)

    for run in roots:
        walk(run, 0)
    return out


# -- show -------------------------------------------------------------------------------------

def cmd_show(args) -> int:
    store = open_store(args)
    run = find_run(store, args.run)
    points = last_points(store, run)
    artifacts = artifact_list(store, run.run_id)
    if args.json:
        data = run.to_dict()
        data["last_metrics"] = points
        data["artifacts"] = artifacts
        _print_json(data)
        return 0
    header = [
        ("run", run.run_id),
        ("name", run.run_name),
        ("experiment", run.experiment_name),
        ("status", run.status),
        ("start", format_time(run.start_time)),
        ("end", format_time(run.end_time)),
        ("duration", format_duration(run.duration_ms)),
    ]
    if run.parent_run_id:
        parent = run.parent_run_id
        try:
            parent = f"{parent} ({store.get_run(parent).run_name})"
        except RunNotFound:
            pass
        header.append(("parent", parent))
    if run.artifact_uri:
        header.append(("artifacts at", run.artifact_uri))
    label = max(len(k) for k, _ in header)
    print("\n".join(f"{k.ljust(label)}  {v}" for k, v in header))
    _section("Params", ["key", "value"], [[k, run.params[k]] for k in sorted(run.params)])
    _section("Metrics, last values", ["key", "value", "step"],
             [[k, format_number(p["value"], 8), p["step"]] for k, p in points.items() if not is_system_metric(k)])
    _section("System metrics, last values", ["key", "value", "step"],
             [[k, format_number(p["value"], 8), p["step"]] for k, p in points.items() if is_system_metric(k)])
    _section("Tags", ["key", "value"],
             [[k, _cut(" ".join(str(run.tags[k]).split()), MAX_TAG_VALUE)] for k in sorted(run.tags)])
    _section("Datasets", ["name", "digest", "context", "profile", "source"],
             [[i.dataset.name, i.dataset.digest, i.context or "", _profile_text(i.dataset.profile), i.dataset.source_type]
              for i in run.inputs])
    _section("Artifacts", ["path", "size"],
             [[a["path"] + ("/" if a["is_dir"] else ""), _size(a["size"]) if not a["is_dir"] else ""]
              for a in artifacts])
    return 0


def _section(title: str, headers: list[str], rows: list) -> None:
    print()
    print(f"{title} ({len(rows)})" if rows else f"{title}: none")
    if rows:
        print(format_table(headers, rows, max_cell=max(MAX_CELL, MAX_TAG_VALUE)))


def _profile_text(profile: Optional[str]) -> str:
    """A dataset's profile, short: "1000 rows x 12" for a table, "1000x4 (+ targets 1000)" for arrays."""
    try:
        data = json.loads(profile) if profile else {}
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    if "num_rows" in data:
        rows, elements = data.get("num_rows"), data.get("num_elements")
        columns = f" x {elements // rows}" if isinstance(elements, int) and isinstance(rows, int) and rows else ""
        return f"{rows} rows{columns}"
    shapes = [("x".join(str(d) for d in data[f"{part}_shape"]), part) for part in ("features", "targets")
              if isinstance(data.get(f"{part}_shape"), list)]
    return " + ".join(shape if part == "features" else f"targets {shape}" for shape, part in shapes)


def _size(size: Optional[int]) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


# -- compare ----------------------------------------------------------------------------------

def cmd_compare(args) -> int:
    store = open_store(args)
    runs = [find_run(store, ref) for ref in args.runs]
    params = _side_by_side([r.params for r in runs])
    metrics = _side_by_side([r.metrics for r in runs])
    if args.only_diff:
        params = [row for row in params if row[2]]
        # machine metrics differ between any two runs: they would bury the model's differences
        metrics = [row for row in metrics if row[2] and (args.system or not is_system_metric(row[0]))]
    if args.json:
        _print_json({
            "runs": [{"run_id": r.run_id, "run_name": r.run_name, "experiment_name": r.experiment_name,
                      "status": r.status, "duration_ms": r.duration_ms} for r in runs],
            "params": [{"key": k, "values": v, "differs": d} for k, v, d in params],
            "metrics": [{"key": k, "values": v, "differs": d} for k, v, d in metrics],
        })
        return 0
    key_width = max([len("experiment")] + [len(k) for k, _, _ in params + metrics])
    columns = _run_columns(runs, _column_budget(len(runs), min(key_width, MAX_CELL) + 3))
    info = [["experiment"] + [r.experiment_name for r in runs],
            ["status"] + [r.status for r in runs],
            ["duration"] + [format_duration(r.duration_ms) for r in runs]]
    print(format_table(["run"] + columns, info))
    sections = (("Params", params), ("Metrics", [row for row in metrics if not is_system_metric(row[0])]),
                ("System metrics", [row for row in metrics if is_system_metric(row[0])]))
    for title, rows in sections:
        if title == "System metrics" and not rows:
            continue
        differing = sum(1 for row in rows if row[2])
        print()
        if not rows:
            print(f"{title}: {'no differences' if args.only_diff else 'none'}")
            continue
        print(f"{title} ({len(rows)}, {differing} differ{'s' if differing == 1 else ''})")
        table = [["*" if d else "", k] + [_compare_cell(v) for v in values] for k, values, d in rows]
        print(format_table(["", "key"] + columns, table))
    return 0


def _side_by_side(dicts: Sequence[dict]) -> list[tuple[str, list, bool]]:
    keys = sorted(set().union(*dicts))
    rows = []
    for key in keys:
        values = [d.get(key) for d in dicts]
        comparable = ["nan" if isinstance(v, float) and math.isnan(v) else v for v in values]
        rows.append((key, values, len({repr(v) for v in comparable}) > 1))
    return rows


def _compare_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def _column_budget(count: int, taken: int) -> int:
    """The width a run's column gets in a terminal when `taken` characters go to other columns."""
    width = shutil.get_terminal_size((120, 24)).columns
    return max(SHORT_ID, (width - taken - 2 * count) // max(1, count))


def _run_columns(runs: Sequence[Run], budget: int = 10_000) -> list[str]:
    """Column titles that stay apart when cut to `budget` characters: "name (short id)" when it
    fits, else the part of the names that differs (with the short id if that fits), else the
    short id alone. The same run twice still gets two columns."""
    ids = [r.run_id[:SHORT_ID] for r in runs]
    candidates = [[f"{r.run_name} ({i})" for r, i in zip(runs, ids)]]
    parts = _differing_parts([r.run_name for r in runs])
    if parts is not None:
        candidates += [[f"{p} ({i})" for p, i in zip(parts, ids)], parts]
    candidates.append(ids)
    for titles in candidates:
        if max(len(t) for t in titles) <= budget and len(set(titles)) == len(set(r.run_id for r in runs)):
            break
    else:
        titles = ids
    seen: Counter = Counter()
    out = []
    for title in titles:
        seen[title] += 1
        out.append(title if seen[title] == 1 else f"{title} #{seen[title]}")
    return out


def _differing_parts(names: Sequence[str]) -> Optional[list[str]]:
    """The names without what they all share at the start and the end (cut at - _ / or a
    space; not at ".", which numbers hold), when what is left tells them apart; else None."""
    if len(set(names)) < len(names) or len(names) < 2:
        return None
    separators = "-_/ "

    def common_start(texts: Sequence[str]) -> int:
        end = len(os.path.commonprefix(list(texts)))
        while end > 0 and texts[0][end - 1] not in separators:
            end -= 1
        return end

    start = common_start(names)
    stop = common_start([n[::-1] for n in names])
    parts = [n[start:len(n) - stop] if len(n) - stop > start else n[start:] for n in names]
    if any(not p for p in parts) or len(set(parts)) < len(parts):
        return None
    return parts


# -- plot -------------------------------------------------------------------------------------

def cmd_plot(args) -> int:
    store = open_store(args)
    runs = [find_run(store, ref) for ref in args.runs]
    if args.experiment:
        listed = {r.run_id for r in runs}
        runs += [r for r in reversed(store.search_runs([args.experiment], None, None, None)) if r.run_id not in listed]
    if not runs:
        raise CliError("plot needs runs: RUN ids, or --experiment NAME")
    keys = list(dict.fromkeys(args.metric))
    curves: dict[str, list[tuple[Run, list]]] = {key: [] for key in keys}
    for run in runs:
        for key in keys:
            if key not in run.metrics:
                known = ", ".join(sorted(run.metrics)) or "none"
                raise CliError(f"run {run.run_id[:SHORT_ID]} ({run.run_name}) has no metric {key!r} (its metrics: {known})")
            history = sorted(store.get_metric_history(run.run_id, key), key=lambda m: (m.step, m.timestamp))
            curves[key].append((run, history))
    x_param, parallel = args.x_param, args.parallel
    if x_param is None and not parallel and _is_sweep(curves):
        # one point per run and metric: a line over steps would be a column of dots at step 0
        differing = _differing_params(runs)
        x_param, parallel = (differing[0], False) if len(differing) == 1 else (None, True)
    plt = _pyplot()
    if parallel:
        fig, what = parallel_figure(plt, runs, keys), "parallel coordinates"
    elif x_param is not None:
        fig, what = sweep_figure(plt, runs, keys, x_param), f"against {x_param}"
    else:
        fig, what = curves_figure(plt, curves), ""
    try:
        fig.savefig(args.output, dpi=100)
    finally:
        plt.close(fig)
    print(f"wrote {args.output} ({len(runs)} run{'s' if len(runs) != 1 else ''}, "
          f"{len(keys)} metric{'s' if len(keys) != 1 else ''}{', ' + what if what else ''})")
    return 0


def _is_sweep(curves: dict) -> bool:
    pairs = [history for per_run in curves.values() for _, history in per_run]
    return len(next(iter(curves.values()))) > 1 and all(len(history) <= 1 for history in pairs)


def _differing_params(runs: Sequence[Run]) -> list[str]:
    """The params whose value is not the same in every run, sorted."""
    return [key for key, _, differs in _side_by_side([r.params for r in runs]) if differs]


def curves_figure(plt, curves: dict):
    """One panel per metric: each run's points over steps."""
    from matplotlib.ticker import MaxNLocator

    keys = list(curves)
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 3.2 * len(keys) + 0.6), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        for run, history in curves[key]:
            ax.plot([m.step for m in history], [m.value for m in history], marker="o" if len(history) <= 25 else None,
                    markersize=3, label=f"{run.run_name} ({run.run_id[:SHORT_ID]})")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _numbers(values: Sequence[Any]) -> Optional[list[float]]:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def sweep_figure(plt, runs: Sequence[Run], keys: Sequence[str], x_param: str):
    """One panel per metric: each run's last value against the param `x_param` (a numeric axis
    when every value is a number, else one tick per value), joined in the order of the param."""
    missing = [r for r in runs if x_param not in r.params]
    if missing:
        known = ", ".join(sorted(set().union(*(r.params for r in runs)))) or "none"
        raise CliError(f"run {missing[0].run_id[:SHORT_ID]} ({missing[0].run_name}) has no param {x_param!r} "
                       f"(params: {known})")
    raw = [r.params[x_param] for r in runs]
    numeric = _numbers(raw)
    labels = sorted(set(raw)) if numeric is None else None
    xs = numeric if numeric is not None else [labels.index(v) for v in raw]
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 3.2 * len(keys) + 0.6), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        points = sorted(zip(xs, [r.metrics[key] for r in runs]))
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", markersize=4)
        if labels is not None:
            ax.set_xticks(range(len(labels)), labels, rotation=30 if max(map(len, labels)) > 8 else 0)
        elif numeric and min(numeric) > 0 and max(numeric) / min(numeric) >= 100:
            ax.set_xscale("log")  # alphas, learning rates: a sweep over orders of magnitude
        ax.set_title(f"{key} against {x_param} ({len(runs)} runs)")
        ax.set_xlabel(x_param)
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def parallel_figure(plt, runs: Sequence[Run], keys: Sequence[str]):
    """Parallel coordinates: one vertical axis per param that differs and per metric, each run a
    line across them; every axis scaled to its own range (its min and max written at its ends)."""
    columns = [(name, [r.params.get(name) for r in runs]) for name in _differing_params(runs)]
    columns += [(key, [r.metrics.get(key) for r in runs]) for key in keys]
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(columns) + 2), 5))
    scaled = []
    for index, (name, values) in enumerate(columns):
        numeric = _numbers([v for v in values if v is not None])
        if numeric is not None and all(v is not None for v in values):
            low, high = min(numeric), max(numeric)
            span = (high - low) or 1.0
            scaled.append([(float(v) - low) / span for v in values])
            ends = (format_number(low, 4), format_number(high, 4))
        else:  # categories, spread evenly
            levels = sorted({str(v) for v in values})
            scaled.append([levels.index(str(v)) / max(1, len(levels) - 1) for v in values])
            ends = (levels[0], levels[-1])
        ax.axvline(index, color="0.6", linewidth=1)
        ax.text(index, -0.06, ends[0], ha="center", va="top", fontsize="small")
        ax.text(index, 1.06, ends[1], ha="center", va="bottom", fontsize="small")
    colors = plt.get_cmap("viridis")
    last = scaled[-1] if scaled else []
    for row, run in enumerate(runs):
        ax.plot(range(len(columns)), [column[row] for column in scaled], marker="o", markersize=3,
                color=colors(last[row] if last else 0.5), label=f"{run.run_name} ({run.run_id[:SHORT_ID]})")
    ax.set_xticks(range(len(columns)), [name for name, _ in columns], rotation=20)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.15)
    ax.set_title(f"{len(runs)} runs (colour: {keys[-1]})")
    if len(runs) <= 12:
        ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError("plot needs matplotlib: pip install 'autolog[plot]'") from None
    return plt


# -- sync -------------------------------------------------------------------------------------

def cmd_sync(args) -> int:
    source = args.source or getattr(args, "tracking_uri", None)
    # a progress bar on a terminal; nothing when stderr is piped or a file (scripts, CI logs)
    progress = ProgressBar("sync", "runs") if _is_terminal(sys.stderr) else None
    try:
        report = sync(source, args.to, journals=args.journal, dry_run=args.dry_run, experiment=args.experiment,
                      progress=progress)
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        print(report.to_json())
    else:
        print(_sync_summary(report))
    if report.unavailable is not None:
        _error(f"the target {report.target} did not take the records ({report.unavailable}); run the sync again later")
        return 1
    if report.errors:
        for line in report.errors[:MAX_ERROR_LINES]:
            _error(line)
        if len(report.errors) > MAX_ERROR_LINES:
            _error(f"... and {len(report.errors) - MAX_ERROR_LINES} more (all of them with --json)")
        return 1
    return 0


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


class ProgressBar:
    """`sync [#########...........] 12/30 runs`, redrawn in place on stderr (a terminal)."""

    WIDTH = 24

    def __init__(self, label: str, unit: str):
        self.label, self.unit = label, unit
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        filled = self.WIDTH * done // total if total else self.WIDTH
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} {self.unit}")
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _sync_summary(report) -> str:
    verb = "would copy" if report.dry_run else "copied"
    lines = [f"{'dry run: ' if report.dry_run else ''}sync {report.source or 'journals'} -> {report.target}"]
    if report.source is None:
        lines.append("runs:     the target is the tracking store itself; journals only")
    elif report.source_missing:
        lines.append(f"runs:     no store at {report.source}; journals only")
    else:
        lines.append(f"runs:     {report.runs_copied} {verb}, {report.runs_updated} "
                     f"{'would be ' if report.dry_run else ''}completed, {report.runs_skipped} already there"
                     + (f", {report.runs_failed} refused" if report.runs_failed else ""))
        lines.append(f"records:  {report.metric_points} metric points, {report.params} params, "
                     f"{report.tags} tags, "
                     + (f"{report.datasets} dataset input{'s' if report.datasets != 1 else ''}, " if report.datasets else "")
                     + f"{report.artifacts} artifact file{'s' if report.artifacts != 1 else ''}")
    lines.append(f"journals: {report.journal_records} records {'pending' if report.dry_run else 'replayed'} "
                 f"from {len(report.journals)} journal{'s' if len(report.journals) != 1 else ''}"
                 + (f", {report.journal_rejected} rejected" if report.journal_rejected else ""))
    return "\n".join(lines)


# -- ui ---------------------------------------------------------------------------------------

UI_START_TIMEOUT_S = 120.0


def cmd_ui(args) -> int:
    import importlib.util
    import signal
    import subprocess
    import time
    import urllib.request

    from autolog.backends import backend_kind

    if importlib.util.find_spec("mlflow") is None:
        raise CliError("autolog ui runs the MLflow UI, which needs MLflow: pip install 'autolog[mlflow]'")
    uri = args.store or resolve_tracking_uri(getattr(args, "tracking_uri", None))
    if backend_kind(uri) != "local":
        raise CliError(f"autolog ui shows a local store; {uri} is an MLflow tracking URI: open that server's own UI "
                       f"(or `mlflow ui --backend-store-uri {uri}`)")
    missing = missing_store(uri)
    if missing is not None:
        raise CliError(f"no autolog store at {missing}")
    from autolog.backends import local_path_of, plugin_uri

    folder = os.path.abspath(os.path.expanduser(local_path_of(uri)))
    store = plugin_uri(folder)
    extra = [a for a in args.mlflow_args if a != "--"]
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
               "--host", args.host, "--port", str(args.port), "--workers", "1", *extra]
    address = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    print(f"starting the MLflow UI on {folder} ...", file=sys.stderr, flush=True)
    # MLflow's own output goes to stderr; stdout carries only the address, for scripts
    server = subprocess.Popen(command, stdout=sys.stderr, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # `kill` stops the server too
    try:
        deadline = time.monotonic() + UI_START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                raise CliError(f"mlflow server exited with code {server.returncode} (is port {args.port} in use? "
                               f"try --port)")
            try:
                with urllib.request.urlopen(f"{address}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise CliError(f"the MLflow UI did not answer at {address} within {UI_START_TIMEOUT_S:.0f} s")
            time.sleep(0.25)  # polling a starting server
        print(f"MLflow UI on {folder}: {address}", flush=True)
        print("(read-only; press Ctrl-C to stop)", file=sys.stderr, flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_group(server)
        signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop_group(process) -> None:
    """SIGTERM to the server's process group (uvicorn runs in a child of it), then SIGKILL."""
    import signal
    import subprocess

    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
