"""What autolog adds to statsmodels fits, side by side with mlflow.autolog().

Workloads (data made once, outside the clock):
- OLS 10k x 10          `sm.OLS(y, X).fit()` on numpy arrays
- formula OLS 10k x 10  `smf.ols("y ~ x0 + ... + x9", frame).fit()` (the formula is parsed in the timed region)
- Logit 10k x 10        `sm.Logit(label, X).fit(disp=0)`

Measurements:
1. fresh processes (benchmarks/harness.py `compare_fresh`), what a script that fits once
   sees: plain, `autolog.autolog()` and `mlflow.autolog()`, each in a new interpreter;
   autolog's figures are the call alone (the training thread) and the call plus
   `autolog.flush()` (until everything is written), with the training thread's CPU;
   `--sampled N` more autolog processes say where the worker's time went;
2. in one warm process, interleaved: plain, autolog (the caller's cost) and autolog with
   `autolog.flush()` inside the clock; plain and `mlflow.autolog()` with fewer
   repetitions; the CPU time of the training thread per fit, plain and under autolog;
3. `import statsmodels.api` with and without `autolog.autolog()` before it, in fresh
   interpreters, interleaved.

Targets (issues 3 and 18), at the defaults: the training thread at most max(5 % of plain,
20 ms) added; until everything is written at most max(25 % of plain, 150 ms) added and at
most 1/20 of what mlflow.autolog() adds; `import statsmodels.api` after `autolog.autolog()`
at most 1.2x. The script prints the tables, each check, and exits 1 if one fails.

    python benchmarks/overhead_statsmodels.py [--fresh-repeats 5] [--sampled 2] [--repeats 15]
        [--mlflow-repeats 3] [--import-repeats 9]     (0 skips a part)
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repo root, for `benchmarks.harness`

from benchmarks.harness import (  # noqa: E402
    Workload, compare, compare_fresh, machine_summary, report_targets, thread_cpu)
from benchmarks.harness import import_times as harness_import_times  # noqa: E402

DATA = """import numpy as np
import pandas as pd
rng = np.random.default_rng(0)
X = rng.normal(size=(10_000, 10))
y = X @ rng.normal(size=10) + rng.normal(size=10_000)
label = (y + rng.normal(size=10_000) > 0).astype(float)
Xc = sm.add_constant(X)
frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(10)])
frame["y"] = y
formula = "y ~ " + " + ".join(f"x{i}" for i in range(10))
"""
FRESH = {
    "OLS 10k x 10": Workload(setup="import statsmodels.api as sm\n" + DATA, call="sm.OLS(y, Xc).fit()"),
    "formula OLS 10k x 10": Workload(setup="import statsmodels.api as sm\nimport statsmodels.formula.api as smf\n" + DATA,
                                     call="smf.ols(formula, data=frame).fit()"),
    "Logit 10k x 10": Workload(setup="import statsmodels.api as sm\n" + DATA, call="sm.Logit(label, Xc).fit(disp=0)"),
}


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


def import_times(repeats: int) -> dict:
    """Seconds to `import statsmodels.api` in a fresh interpreter, plain and after autolog()
    (medians; benchmarks/harness.py)."""
    return {v: times[0][0] for v, times in harness_import_times(["import statsmodels.api"], repeats).items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh-repeats", type=int, default=5, help="fresh interpreters per variant (0 skips)")
    parser.add_argument("--sampled", type=int, default=2, help="sampled autolog processes per workload")
    parser.add_argument("--repeats", type=int, default=15, help="warm, in-process repetitions (0 skips)")
    parser.add_argument("--mlflow-repeats", type=int, default=3, help="0: leave mlflow.autolog out")
    parser.add_argument("--import-repeats", type=int, default=9, help="0 skips")
    args = parser.parse_args(argv)

    print(f"machine: {machine_summary()}, load average before: {os.getloadavg()[0]:.1f}")
    failures = 0
    if args.fresh_repeats:
        variants = ("plain", "autolog") + (("mlflow",) if args.mlflow_repeats else ())
        result = compare_fresh(FRESH, variants, repeats=args.fresh_repeats, sampled=args.sampled,
                               title="statsmodels, fresh processes: the first fit of a script, at the defaults")
        print()
        failures += report_targets(result)
    if args.repeats:
        failures += warm(args)
    if args.import_repeats:
        failures += imports(args)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 1 if failures else 0


def warm(args) -> int:
    """In one process, after a warm-up: the figures of issue 3, and the flush inside the clock."""
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
        written = ours.median(name, "autolog+flush") - plain
        budget = max(0.05 * plain, 0.020)
        written_budget = max(0.25 * plain, 0.150)
        ok_budget = added <= budget
        ok_written = written <= written_budget
        failures += (not ok_budget) + (not ok_written)
        line = (f"- {name}: autolog adds {added * 1e3:+.1f} ms (budget {budget * 1e3:.0f} ms: "
                f"{'ok' if ok_budget else 'OVER'}); until written {written * 1e3:+.1f} ms "
                f"(limit {written_budget * 1e3:.0f} ms: {'ok' if ok_written else 'OVER'})")
        if theirs is not None:
            mlflow_added = theirs.median(name, "mlflow") - theirs.median(name, "plain")
            ok_mlflow = added <= mlflow_added / 20 and written <= mlflow_added / 20
            failures += not ok_mlflow
            line += (f"; mlflow.autolog adds {mlflow_added * 1e3:+.0f} ms, 1/20 of it is "
                     f"{mlflow_added / 20 * 1e3:.1f} ms: {'ok' if ok_mlflow else 'OVER'}")
        print(line)

    cpu = thread_cpu(fits, args.repeats)
    print("\n| workload | training-thread CPU per fit, plain | with autolog | added |\n|---|---|---|---|")
    for name, t in cpu.items():
        print(f"| {name} | {t['plain'] * 1e3:.1f} ms | {t['autolog'] * 1e3:.1f} ms | "
              f"{(t['autolog'] - t['plain']) * 1e3:+.1f} ms |")
    print()
    return failures


def imports(args) -> int:
    failures = 0
    imports = import_times(args.import_repeats)
    ratio = imports["autolog"] / imports["plain"]
    failures += ratio > 1.2
    print(f"- import statsmodels.api: plain {imports['plain'] * 1e3:.0f} ms, after autolog.autolog() "
          f"{imports['autolog'] * 1e3:.0f} ms: {ratio:.2f}x (target <= 1.2x: {'ok' if ratio <= 1.2 else 'OVER'}); "
          f"medians of {args.import_repeats} fresh interpreters each")
    return failures


if __name__ == "__main__":
    sys.exit(main())
