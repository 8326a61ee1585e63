"""What autolog adds to scikit-learn fits, side by side with mlflow.autolog().

Workloads (data made once, outside the clock):
- LogisticRegression 20k x 20
- RandomForestClassifier, 50 trees on 5k x 20 (float32 in the fresh processes, as issue 18 times it)
- ElasticNet sweep: 12 fits over alpha x l1_ratio (the wine-quality tutorial's loop) on 5k x 11
- GridSearchCV: LogisticRegression, 4 values of C, 3 folds, on 5k x 20
- a loop of 100 LogisticRegression fits on 20k x 20 (fresh processes only)

Measurements:
1. fresh processes (benchmarks/harness.py `compare_fresh`), what a script that trains once
   sees: per workload, plain, `autolog.autolog()` and `mlflow.autolog()`, each in a new
   interpreter; autolog's figures are the call alone (the training thread) and the call
   plus `autolog.flush()` (until everything is written), with the training thread's CPU;
   `--sampled N` more autolog processes say where the worker's and the training thread's
   time went; `--context-off` adds a variant with log_environment, log_code_state,
   log_system_metrics and log_args off;
2. in one warm process, interleaved (`compare`): plain, autolog, autolog+flush, and the
   CPU seconds of the training thread (`time.thread_time()`), insensitive to other
   processes on a busy machine; plain and `mlflow.autolog()` with fewer repetitions;
3. `import sklearn` (and a first estimator import) with and without `autolog.autolog()`
   before it, in fresh interpreters;
4. `--loop-floor N`: the loop of 100 fits with the parts of the logging taken away one after
   another (the run context, the plots, the model and dataset, and, as a what-if no option
   offers, the training metrics), in fresh processes, with a bare run of the fluent API
   beside it: where the loop's added time goes, and what is left without any of it.

Targets (issues 3 and 18), at the defaults: the training thread at most max(5 % of plain,
20 ms) added; until everything is written at most max(25 % of plain, 150 ms) added and at
most 1/20 of what mlflow.autolog() adds; the loop of 100 fits, flush included, at most
1.5x plain; `import sklearn` after `autolog.autolog()` at most 1.2x. The script prints the
tables and each check, and exits 1 if one fails.

    python benchmarks/overhead_sklearn.py [--fresh-repeats 5] [--sampled 2] [--loop-repeats 3] [--loop-floor 3]
        [--repeats 9] [--mlflow-repeats 3] [--import-repeats 9]     (0 skips a part)
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repo root, for `benchmarks.harness`

from benchmarks.harness import (  # noqa: E402
    Workload, compare, compare_fresh, machine_summary, report_targets, thread_cpu)
from benchmarks.harness import import_times as harness_import_times  # noqa: E402

DATA = """from sklearn.datasets import make_classification, make_regression
X, y = make_classification(n_samples=20_000, n_features=20, random_state=0)
X5, y5 = make_classification(n_samples=5_000, n_features=20, random_state=1)
Xe, ye = make_regression(n_samples=5_000, n_features=11, noise=1.0, random_state=0)
"""
FRESH = {
    "LogisticRegression 20k x 20": Workload(
        setup="from sklearn.linear_model import LogisticRegression\n" + DATA,
        call="LogisticRegression(max_iter=200).fit(X, y)"),
    "RandomForest 50 trees 5k x 20 float32": Workload(
        setup="from sklearn.ensemble import RandomForestClassifier\n" + DATA + "X5 = X5.astype('float32')\n",
        call="RandomForestClassifier(n_estimators=50, random_state=0).fit(X5, y5)"),
    "ElasticNet sweep, 12 fits": Workload(
        setup="from sklearn.linear_model import ElasticNet\n" + DATA,
        call="for alpha in (0.1, 0.5, 1.0, 2.0):\n"
             "    for l1_ratio in (0.2, 0.5, 0.8):\n"
             "        ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42).fit(Xe, ye)"),
    "GridSearchCV 4 x 3 folds": Workload(
        setup="from sklearn.linear_model import LogisticRegression\n"
              "from sklearn.model_selection import GridSearchCV\n" + DATA,
        call="GridSearchCV(LogisticRegression(max_iter=200), {'C': [0.01, 0.1, 1.0, 10.0]}, cv=3).fit(X5, y5)"),
}
LOOP = {"100 x LogisticRegression 20k x 20": Workload(
    setup="from sklearn.linear_model import LogisticRegression\n" + DATA,
    call="for _ in range(100):\n    LogisticRegression(max_iter=200).fit(X, y)")}
CONTEXT_OFF = {"log_environment": False, "log_code_state": False, "log_system_metrics": False, "log_args": False}
# the loop's floor (--loop-floor): what each part of the logging adds, taken away cumulatively
FLOOR_VARIANTS = {
    "autolog, context off": CONTEXT_OFF,
    "autolog, context and plots off": {**CONTEXT_OFF, "log_plots": False},
    "autolog, params and training metrics only": {**CONTEXT_OFF, "log_plots": False, "log_models": False,
                                                  "log_datasets": False},
}
# a what-if, not an option: the same as the last variant with the training metrics taken out
# (the setup replaces the function that computes them; plain runs the same setup)
NO_TRAINING_METRICS = ("from autolog.integrations import sklearn_api as _api\n"
                       "_api.training_metrics = lambda *args, **kwargs: {}\n")
# the store's own floor: a run with as many params and metrics as the loop's, through the fluent API
BARE_RUNS = """import os, sys, tempfile, time
os.chdir(tempfile.mkdtemp())
import autolog
autolog.autolog(silent=True, **OPTIONS)
params = {f"p{i}": i * 0.5 for i in range(16)}
metrics = {f"training_m{i}": i * 0.1 for i in range(7)}
def one():
    with autolog.start_run():
        autolog.log_params(params)
        autolog.log_metrics(metrics)
one(); autolog.flush()
start = time.perf_counter()
for _ in range(100):
    one()
autolog.flush()
print(time.perf_counter() - start)
"""


def workloads() -> dict:
    from sklearn.datasets import make_classification, make_regression
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import ElasticNet, LogisticRegression
    from sklearn.model_selection import GridSearchCV

    X, y = make_classification(n_samples=20_000, n_features=20, random_state=0)
    X5, y5 = make_classification(n_samples=5_000, n_features=20, random_state=1)
    Xe, ye = make_regression(n_samples=5_000, n_features=11, noise=1.0, random_state=0)

    def sweep():
        for alpha in (0.1, 0.5, 1.0, 2.0):
            for l1_ratio in (0.2, 0.5, 0.8):
                ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42).fit(Xe, ye)

    return {
        "LogisticRegression 20k x 20": lambda: LogisticRegression(max_iter=200).fit(X, y),
        "RandomForest 50 trees 5k x 20": lambda: RandomForestClassifier(n_estimators=50, random_state=0).fit(X5, y5),
        "ElasticNet sweep, 12 fits": sweep,
        "GridSearchCV 4 x 3 folds": lambda: GridSearchCV(LogisticRegression(max_iter=200),
                                                         {"C": [0.01, 0.1, 1.0, 10.0]}, cv=3).fit(X5, y5),
    }


def import_times(repeats: int) -> dict:
    """{variant: (seconds of `import sklearn`, of it and two estimator modules)}: medians of
    fresh interpreters, plain and after `autolog.autolog()` (benchmarks/harness.py)."""
    found = harness_import_times(["import sklearn", "from sklearn.ensemble import RandomForestClassifier\n"
                                  "from sklearn.linear_model import LogisticRegression"], repeats)
    return {v: (times[0][0], times[0][0] + times[1][0]) for v, times in found.items()}


def fresh(args) -> int:
    """Fresh processes: both figures of autolog and mlflow.autolog's, per workload; the loop."""
    failures = 0
    variants = ("plain", "autolog") + (("autolog, context off",) if args.context_off else ()) + (
        ("mlflow",) if args.mlflow_repeats else ())
    if args.fresh_repeats:
        result = compare_fresh(FRESH, variants, repeats=args.fresh_repeats, sampled=args.sampled,
                               variant_options={"autolog, context off": CONTEXT_OFF},
                               title="scikit-learn, fresh processes: the first fit of a script, at the defaults")
        print()
        failures += report_targets(result)
    if args.loop_repeats:
        loop = compare_fresh(LOOP, ("plain", "autolog"), repeats=args.loop_repeats, sampled=min(args.sampled, 1),
                             title="a loop of 100 short fits, fresh processes")
        for name in loop.samples:
            ratio = loop.median(name, "autolog", "written") / loop.median(name, "plain", "written")
            cpu = loop.median(name, "autolog", "train_cpu") / loop.median(name, "plain", "train_cpu")
            failures += ratio > 1.5
            print(f"\n- {name}: flush included {ratio:.2f}x plain (target <= 1.5x: {'ok' if ratio <= 1.5 else 'OVER'}); "
                  f"the training thread's CPU {cpu:.2f}x plain")
    if args.loop_floor:
        failures += loop_floor(args.loop_floor)
    return failures


def loop_floor(repeats: int) -> int:
    """The loop of 100 fits with the parts of the logging taken away one after another (fresh
    processes, interleaved): what each part adds to a fit, and what is left when only the run,
    its params and tags remain; and a bare run of the fluent API (the store's own floor)."""
    import statistics
    import subprocess

    variants = ("plain", "autolog") + tuple(FLOOR_VARIANTS)
    table = compare_fresh(LOOP, variants, repeats=repeats, variant_options=FLOOR_VARIANTS,
                          title="the loop of 100 short fits, parts of the logging taken away (fresh processes)")
    (name, loop), = LOOP.items()
    what_if = compare_fresh({name + ", training metrics taken out": Workload(setup=loop.setup + NO_TRAINING_METRICS,
                                                                             call=loop.call)},
                            ("plain", "autolog, run, params and tags only"), repeats=repeats,
                            variant_options={"autolog, run, params and tags only":
                                             FLOOR_VARIANTS["autolog, params and training metrics only"]},
                            title="the same, the training metrics taken out too (a what-if: no option does this)")
    bare = {}
    for label, options in (("defaults", {}), ("context off", CONTEXT_OFF)):
        seconds = [float(subprocess.run([sys.executable, "-c", BARE_RUNS.replace("OPTIONS", repr(options))],
                                        capture_output=True, text=True, check=True).stdout.split()[-1])
                   for _ in range(repeats)]
        bare[label] = statistics.median(seconds) / 100
    print("\n### Where the loop's time goes (ms a fit, medians; 100 fits a process, its first fit inside the clock)\n")
    print("| variant | until written, ms a fit | added to plain | x plain | the process's CPU, ms a fit |")
    print("|---|---|---|---|---|")
    plain = table.median(name, "plain", "written") / 100
    for variant in variants:
        written = table.median(name, variant, "written") / 100
        cpu = table.median(name, variant, "written_cpu") / 100
        print(f"| {variant} | {written * 1e3:.2f} | {(written - plain) * 1e3:+.2f} | {written / plain:.2f}x | "
              f"{cpu * 1e3:.2f} |")
    (what_name,) = what_if.samples
    what_plain = what_if.median(what_name, "plain", "written") / 100
    what = what_if.median(what_name, "autolog, run, params and tags only", "written") / 100
    print(f"| run, params and tags only (training metrics taken out) | {what * 1e3:.2f} | "
          f"{(what - what_plain) * 1e3:+.2f} | {what / what_plain:.2f}x (its plain {what_plain * 1e3:.2f}) | "
          f"{what_if.median(what_name, 'autolog, run, params and tags only', 'written_cpu') / 100 * 1e3:.2f} |")
    for label, seconds in bare.items():
        print(f"\n- a bare run of the fluent API (start_run, 16 params, 7 metrics, end), {label}: "
              f"{seconds * 1e3:.2f} ms until written")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh-repeats", type=int, default=5, help="fresh interpreters per variant (0 skips)")
    parser.add_argument("--sampled", type=int, default=2, help="sampled autolog processes per workload")
    parser.add_argument("--loop-repeats", type=int, default=3, help="fresh processes for the 100-fit loop (0 skips)")
    parser.add_argument("--context-off", action="store_true", help="add autolog with the run context off")
    parser.add_argument("--loop-floor", type=int, default=0,
                        help="fresh processes per variant for the loop with parts of the logging taken away (0 skips)")
    parser.add_argument("--repeats", type=int, default=9, help="warm, in-process repetitions (0 skips)")
    parser.add_argument("--mlflow-repeats", type=int, default=3, help="0 skips mlflow.autolog")
    parser.add_argument("--import-repeats", type=int, default=9, help="0 skips")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # convergence warnings of the small max_iter are not what is measured

    print(f"machine: {machine_summary()}, load average before: {os.getloadavg()[0]:.1f}")
    failures = fresh(args)
    if args.repeats:
        failures += warm(args)
    if args.import_repeats:
        failures += imports(args)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 1 if failures else 0


def warm(args) -> int:
    """In one process, after a warm-up: the figures of issue 3."""
    fits = workloads()
    ours = compare(fits, variants=("plain", "autolog", "autolog+flush"), repeats=args.repeats,
                   title="scikit-learn fits, autolog at its defaults (median wall seconds)")
    cpu = thread_cpu(fits, args.repeats)
    print("\n### CPU seconds of the training thread (median)\n")
    print("| workload | plain | autolog | added |\n|---|---|---|---|")
    for name, per in cpu.items():
        print(f"| {name} | {per['plain'] * 1e3:.1f} ms | {per['autolog'] * 1e3:.1f} ms | "
              f"{(per['autolog'] - per['plain']) * 1e3:+.1f} ms |")
    theirs = None
    if args.mlflow_repeats > 0:  # 0: skip it (it takes minutes)
        theirs = compare(fits, variants=("plain", "mlflow"), repeats=args.mlflow_repeats,
                         title="scikit-learn fits, mlflow.autolog() at its defaults (median wall seconds)")

    failures = 0
    print()
    for name in ours.timings:
        plain = ours.median(name, "plain")
        added_wall = ours.median(name, "autolog") - plain
        added_cpu = cpu[name]["autolog"] - cpu[name]["plain"]
        mlflow_added = theirs.median(name, "mlflow") - theirs.median(name, "plain") if theirs else float("nan")
        budget = max(0.05 * plain, 0.020)
        # the pass/fail of the budget is on the training thread's CPU time: on a shared, busy
        # machine the wall clock of a 50 ms workload moves by more than the budget between
        # repetitions; the wall-clock figure is printed beside it, judged too
        ok_budget = added_cpu <= budget
        ok_wall = added_wall <= budget
        ok_mlflow = theirs is None or added_wall <= mlflow_added / 20
        added_written = ours.median(name, "autolog+flush") - plain
        written_budget = max(0.25 * plain, 0.150)
        ok_written = added_written <= written_budget and (theirs is None or added_written <= mlflow_added / 20)
        failures += (not ok_budget) + (not ok_mlflow) + (not ok_written)
        print(f"- {name}: autolog adds {added_cpu * 1e3:+.1f} ms CPU of the training thread and "
              f"{added_wall * 1e3:+.1f} ms wall (budget {budget * 1e3:.0f} ms: CPU {'ok' if ok_budget else 'OVER'}, "
              f"wall {'ok' if ok_wall else 'OVER'}); " + (
                  f"mlflow.autolog adds {mlflow_added * 1e3:+.0f} ms wall, 1/20 of it is "
                  f"{mlflow_added / 20 * 1e3:.1f} ms: {'ok' if ok_mlflow else 'OVER'}" if theirs
                  else "mlflow.autolog not measured (--mlflow-repeats 0)")
              + f"; until written {added_written * 1e3:+.1f} ms (limit {written_budget * 1e3:.0f} ms"
              + (f" and {mlflow_added / 20 * 1e3:.0f} ms" if theirs else "") + f": {'ok' if ok_written else 'OVER'})")

    return failures


def imports(args) -> int:
    failures = 0
    imports = import_times(args.import_repeats)
    ratio = imports["autolog"][0] / imports["plain"][0]
    ratio_both = imports["autolog"][1] / imports["plain"][1]
    failures += ratio > 1.2
    print(f"- import sklearn: plain {imports['plain'][0] * 1e3:.0f} ms, after autolog.autolog() "
          f"{imports['autolog'][0] * 1e3:.0f} ms: {ratio:.2f}x (target <= 1.2x: {'ok' if ratio <= 1.2 else 'OVER'}); "
          f"with sklearn.ensemble and sklearn.linear_model too: {imports['plain'][1] * 1e3:.0f} ms vs "
          f"{imports['autolog'][1] * 1e3:.0f} ms, {ratio_both:.2f}x; medians of {args.import_repeats} fresh interpreters")
    return failures


if __name__ == "__main__":
    sys.exit(main())
