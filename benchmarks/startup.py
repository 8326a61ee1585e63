"""What `import autolog; autolog.autolog()` costs a script, in fresh interpreters.

    python benchmarks/startup.py [--repeats 21] [--importtime 5] [--before DIR]

Interleaved, in a rotating order, `--repeats` times each: `python -c pass` (the
interpreter alone), `python -c "import autolog"` and `python -c "import autolog;
autolog.autolog()"`. Each is timed by the wall clock and by the CPU time of the child
process (user + system, from `os.wait4`), which a busy machine stretches far less. Then
`-X importtime` of the last command, `--importtime` times: the modules that take the most
time of their own, medians, and the total by top-level package. With `--before DIR`, an older
copy of the package (DIR/autolog, with its integrations/ at DIR/autolog/integrations) is timed
beside the last command, interleaved with the others; `--before` may be given more than once
(an older tree and a trial one, say).

Bytecode is cached as in an installed package (a development shell's
PYTHONDONTWRITEBYTECODE is dropped for the children). Target (issue 18): the last command
at most 150 ms on the development machine. Exits 1 when its median wall time is over.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repo root, for `benchmarks.harness`

from benchmarks.harness import machine_summary  # noqa: E402

COMMANDS = {
    "python -c pass": "pass",
    "import autolog": "import autolog",
    "import autolog; autolog.autolog()": "import autolog; autolog.autolog()",
}
TARGET_S = 0.150


def before_name(folder: str) -> str:
    return f"import autolog; autolog.autolog() (--before {folder})"


def _env(folder: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "MLFLOW_TRACKING_URI")}
    env["AUTOLOG_TRACKING_URI"] = os.path.join(folder, "autolog-runs")  # never created: no run starts
    return env


def run_once(code: str, folder: str, extra: tuple = (), env: Optional[dict] = None) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child, its stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *extra, "-c", code], cwd=folder, env={**_env(folder), **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{code!r} failed: {stderr[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, stderr


def timings(repeats: int, folder: str, before: Sequence[str] = ()) -> dict:
    """{name: ([wall], [cpu])} of COMMANDS, and for each folder of `before` (holding another copy
    of the `autolog` package) the last command again with that copy first on the path."""
    commands = {name: (code, None) for name, code in COMMANDS.items()}
    for other in before:
        commands[before_name(other)] = (COMMANDS["import autolog; autolog.autolog()"], {"PYTHONPATH": other})
    names = list(commands)
    out: dict = {name: ([], []) for name in names}
    for name in names:  # warm the file cache and write the bytecode
        run_once(*commands[name][:1], folder, env=commands[name][1])
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu, _ = run_once(commands[name][0], folder, env=commands[name][1])
            out[name][0].append(wall)
            out[name][1].append(cpu)
    return out


def import_times(repeats: int, folder: str) -> tuple[dict, dict]:
    """Medians of -X importtime: microseconds of each module's own import, and per top-level package."""
    own: dict = collections.defaultdict(list)
    packages: dict = collections.defaultdict(list)
    for _ in range(repeats):
        _, _, stderr = run_once(COMMANDS["import autolog; autolog.autolog()"], folder, ("-X", "importtime"))
        per_package: dict = collections.Counter()
        for line in stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, name = _fields(line)
            own[name].append(self_us)
            per_package[name.split(".")[0]] += self_us
        for package, total in per_package.items():
            packages[package].append(total)
    return ({k: statistics.median(v) for k, v in own.items()},
            {k: statistics.median(v + [0] * (repeats - len(v))) for k, v in packages.items()})


def _fields(line: str) -> tuple[int, str]:
    """(own microseconds, module name) of one -X importtime line."""
    self_us, _, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
    return int(self_us), name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--importtime", type=int, default=5)
    parser.add_argument("--before", action="append", default=[],
                        help="a folder with an older copy of the autolog package (e.g. from `git archive`), "
                             "timed beside this one, interleaved; may be given more than once")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="autolog-bench-startup-")
    print(f"machine: {machine_summary()}, load average before: {os.getloadavg()[0]:.1f}\n")
    found = timings(args.repeats, folder, args.before)
    base_wall = statistics.median(found["python -c pass"][0])
    base_cpu = statistics.median(found["python -c pass"][1])
    print("| command | wall (median) | min | CPU, user + system (median) | wall less the bare interpreter's |")
    print("|---|---|---|---|---|")
    for name, (walls, cpus) in found.items():
        print(f"| `{name}` | {statistics.median(walls) * 1e3:.0f} ms | {min(walls) * 1e3:.0f} ms | "
              f"{statistics.median(cpus) * 1e3:.0f} ms | {(statistics.median(walls) - base_wall) * 1e3:+.0f} ms |")
    print(f"\nMedians of {args.repeats} interleaved runs each; the bare interpreter: {base_wall * 1e3:.0f} ms wall, "
          f"{base_cpu * 1e3:.0f} ms CPU.")
    if args.importtime:
        own, packages = import_times(args.importtime, folder)
        print(f"\n`-X importtime` of `import autolog; autolog.autolog()`, medians of {args.importtime} runs; "
              "the modules with the most time of their own:\n")
        print("| module | own import time |\n|---|---|")
        for name, us in sorted(own.items(), key=lambda kv: -kv[1])[:25]:
            print(f"| `{name}` | {us / 1e3:.1f} ms |")
        watched = ("wrapt", "asyncio", "importlib.metadata", "packaging")
        print("\nImported: " + ", ".join(f"`{name}` {'yes' if name in own else 'no'}" for name in watched))
        print("\nBy top-level package (own times added up):\n")
        print("| package | import time |\n|---|---|")
        for name, us in sorted(packages.items(), key=lambda kv: -kv[1])[:20]:
            print(f"| `{name}` | {us / 1e3:.1f} ms |")
    wall = statistics.median(found["import autolog; autolog.autolog()"][0])
    ok = wall <= TARGET_S
    print(f"\n- `import autolog; autolog.autolog()`: {wall * 1e3:.0f} ms wall, median "
          f"(target <= {TARGET_S * 1e3:.0f} ms: {'ok' if ok else 'OVER'}); "
          f"CPU {statistics.median(found['import autolog; autolog.autolog()'][1]) * 1e3:.0f} ms")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
