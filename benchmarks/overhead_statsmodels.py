"""What autolog adds to statsmodels fits, side by side with mlflow.autolog().

Workloads (data made once, outside the clock):
- OLS 10k x 10          `sm.OLS(y, X).fit()` on numpy arrays
- formula OLS 10k x 10  `smf.ols("y ~ x0 + ... + x9", frame).fit()` (the formula is parsed in the timed region)
- Logit 10k x 10        `sm.Logit(label, X).fit(disp=0)`

Each is timed plain, under `autolog.autolog()` (the caller's cost: the worker writes
after the clock stops) and under `autolog.autolog()` with `autolog.flush()` inside the
clock (until everything is on disk), interleaved by benchmarks/harness.py; then plain and
under `mlflow.autolog()` into a sqlite store, interleaved, with fewer repetitions (it
takes seconds per fit). Last, the CPU time of the training thread per fit, plain and
under autolog, which a busy machine does not blur. Then the cost of `import statsmodels.api` with and
without `autolog.autolog()` before it, in fresh interpreters, interleaved.

Targets (issue 3): autolog adds at most max(5 % of plain, 20 ms) and at most 1/20 of
what mlflow.autolog() adds; `import statsmodels.api` after `autolog.autolog()` takes at
most 1.2x as long. The script prints the table, each check, and exits 1 if one fails.

    python benchmarks/overhead_statsmodels.py [--repeats 15] [--mlflow-repeats 3] [--import-repeats 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repo root, for `benchmarks.harness`

from benchmarks.harness import compare, machine_summary  # noqa: E402


def workloads() -> dict:
    import numpy as np
    import pandas as pd
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(0)
    X = rng.normal(size=(10_000, 10))
    y = X @ rng.normal(size=10) + rng.normal(size=10_000)
    label = (y + rng.normal(size=10_000) > 0).astype(float)
    Xc = sm.add_constant(X)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(10)])
    frame["y"] = y
    formula = "y ~ " + " + ".join(f"x{i}" for i in range(10))
    return {
        "OLS 10k x 10": lambda: sm.OLS(y, Xc).fit(),
        "formula OLS 10k x 10": lambda: smf.ols(formula, data=frame).fit(),
        "Logit 10k x 10": lambda: sm.Logit(label, Xc).fit(disp=0),
    }


def training_thread_cpu(fits: dict, repeats: int) -> dict:
    """Median CPU seconds the calling thread spends per fit, plain and under autolog.autolog().

    Wall-clock medians move with whatever else the machine runs; the CPU time of the
    training thread (`time.thread_time`) does not, so its difference is what autolog's
    code costs the caller. (Work on other threads, BLAS's and autolog's worker, is not in it.)
    """
    import autolog

    store = tempfile.mkdtemp(prefix="autolog-bench-cpu-")
    out: dict = {}
    for name, fit in fits.items():
        times: dict = {"plain": [], "autolog": []}
        for rep in range(repeats + 1):  # round 0 warms up and is dropped
            for variant in (("plain", "autolog") if rep % 2 == 0 else ("autolog", "plain")):
                autolog.autolog(disable=True)
                if variant == "autolog":
                    autolog.autolog(tracking_uri=store, silent=True)
                start = time.thread_time()
                fit()
                elapsed = time.thread_time() - start
                autolog.flush()
                if rep:
                    times[variant].append(elapsed)
        autolog.autolog(disable=True)
        out[name] = {k: statistics.median(v) for k, v in times.items()}
    return out


IMPORT_SCRIPT = """
import os, sys, time
if sys.argv[1] == "autolog":
    import autolog
    autolog.autolog(tracking_uri=sys.argv[2], silent=True)
start = time.perf_counter()
import statsmodels.api
print(time.perf_counter() - start)
"""


def import_times(repeats: int) -> dict:
    """Seconds to `import statsmodels.api` in a fresh interpreter, plain and after autolog()."""
    store = tempfile.mkdtemp(prefix="autolog-bench-import-")
    env = {**os.environ, "AUTOLOG_LOG_SYSTEM_METRICS": "false"}
    times: dict = {"plain": [], "autolog": []}
    for rep in range(repeats + 1):  # the first round warms the file cache and is dropped
        order = ("plain", "autolog") if rep % 2 == 0 else ("autolog", "plain")
        for variant in order:
            out = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT, variant, store], env=env,
                                 capture_output=True, text=True, check=True)
            if rep:
                times[variant].append(float(out.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--mlflow-repeats", type=int, default=3, help="0: leave mlflow.autolog out")
    parser.add_argument("--import-repeats", type=int, default=9)
    args = parser.parse_args(argv)

    print(f"machine: {machine_summary()}")
    fits = workloads()
    ours = compare(fits, variants=("plain", "autolog", "autolog+flush"), repeats=args.repeats,
                   title="statsmodels fits, autolog at its defaults (median seconds per fit)")
    # mlflow.autolog takes seconds per fit: fewer repetitions, compared with its own plain runs
    theirs = None
    if args.mlflow_repeats:
        theirs = compare(fits, variants=("plain", "mlflow"), repeats=args.mlflow_repeats,
                         title="statsmodels fits, mlflow.autolog() at its defaults (median seconds per fit)")
    failures = 0
    print()
    for name in ours.timings:
        plain = ours.median(name, "plain")
        added = ours.median(name, "autolog") - plain
        budget = max(0.05 * plain, 0.020)
        ok_budget = added <= budget
        failures += not ok_budget
        line = f"- {name}: autolog adds {added * 1e3:+.1f} ms (budget {budget * 1e3:.0f} ms: {'ok' if ok_budget else 'OVER'})"
        if theirs is not None:
            mlflow_added = theirs.median(name, "mlflow") - theirs.median(name, "plain")
            ok_mlflow = added <= mlflow_added / 20
            failures += not ok_mlflow
            line += (f"; mlflow.autolog adds {mlflow_added * 1e3:+.0f} ms, 1/20 of it is "
                     f"{mlflow_added / 20 * 1e3:.1f} ms: {'ok' if ok_mlflow else 'OVER'}")
        print(line)

    cpu = training_thread_cpu(fits, args.repeats)
    print("\n| workload | training-thread CPU per fit, plain | with autolog | added |\n|---|---|---|---|")
    for name, t in cpu.items():
        print(f"| {name} | {t['plain'] * 1e3:.1f} ms | {t['autolog'] * 1e3:.1f} ms | "
              f"{(t['autolog'] - t['plain']) * 1e3:+.1f} ms |")
    print()

    imports = import_times(args.import_repeats)
    ratio = imports["autolog"] / imports["plain"]
    failures += ratio > 1.2
    print(f"- import statsmodels.api: plain {imports['plain'] * 1e3:.0f} ms, after autolog.autolog() "
          f"{imports['autolog'] * 1e3:.0f} ms: {ratio:.2f}x (target <= 1.2x: {'ok' if ratio <= 1.2 else 'OVER'}); "
          f"medians of {args.import_repeats} fresh interpreters each")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
