"""What autolog adds to XGBoost and LightGBM training, side by side with mlflow.autolog().

Workloads (issue 12; data made once, outside the clock):
- xgb.train 200 rounds      `xgb.train(params, dtrain, 200, evals=[(dvalid, "valid")])` on 10k x 20
- lgb.train 200 rounds      the same with LightGBM (`valid_sets=[dvalid]`)
- xgb.train 1,000 rounds    1,000 rounds, two eval sets (train and valid)
- lgb.train 1,000 rounds    the same with LightGBM
- XGBClassifier.fit         200 trees, `eval_set=[(X_valid, y_valid)]`

Measured, each interleaved by benchmarks/harness.py:
1. fresh processes (`compare_fresh`), what a script that trains once sees: plain,
   `autolog.autolog()` and `mlflow.autolog()`, each in a new interpreter; autolog's figures are
   the call alone (the training thread) and the call plus `autolog.flush()` (until every
   record, chart and model is written); `--sampled N` more autolog processes say where the
   worker's time went (charts, model folder, store writes, ...);
2. in one warm process (`--repeats`): plain, autolog and autolog with `autolog.flush()` inside
   the clock; plain and `mlflow.autolog()` with fewer repetitions; the CPU seconds of the
   training thread (`harness.thread_cpu`);
3. `import xgboost` / `import lightgbm` (plain and after `autolog.autolog()`), each in its own
   fresh interpreter (`harness.import_times`).

Targets (issues 12 and 18), at the defaults: the training thread at most max(5 % of plain,
20 ms) added; until everything is written at most max(25 % of plain, 150 ms) added and at most
1/20 of what mlflow.autolog() adds; `import xgboost` / `import lightgbm` after `autolog()` at
most 1.05x plain. The script prints the tables and each check, and exits 1 if one fails.

    python benchmarks/overhead_xgboost_lightgbm.py [--fresh-repeats 3] [--sampled 1] [--omp-threads 0]
        [--repeats 7] [--mlflow-repeats 3] [--import-repeats 7]     (0 skips a part)
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repo root, for `benchmarks.harness`

from benchmarks.harness import (  # noqa: E402
    Workload, compare, compare_fresh, import_times, machine_summary, report_targets, report_thread_budgets,
    thread_cpu)

ROWS, COLUMNS = 10_000, 20

# one workload per line: how to build its data and its call, run in this process and in fresh ones
WORKLOAD_CODE = {
    "xgb.train 200 rounds": (
        "import xgboost as xgb",
        "dtrain, dvalid = xgb.DMatrix(X, y), xgb.DMatrix(Xv, yv)",
        "xgb.train({'objective': 'binary:logistic', 'max_depth': 6}, dtrain, 200, evals=[(dvalid, 'valid')], "
        "verbose_eval=False)",
    ),
    "lgb.train 200 rounds": (
        "import lightgbm as lgb",
        "dtrain = lgb.Dataset(X, y, free_raw_data=False); dvalid = lgb.Dataset(Xv, yv, reference=dtrain, "
        "free_raw_data=False)",
        "lgb.train({'objective': 'binary', 'verbose': -1}, dtrain, 200, valid_sets=[dvalid])",
    ),
    "xgb.train 1,000 rounds, 2 eval sets": (
        "import xgboost as xgb",
        "dtrain, dvalid = xgb.DMatrix(X, y), xgb.DMatrix(Xv, yv)",
        "xgb.train({'objective': 'binary:logistic', 'max_depth': 3}, dtrain, 1000, "
        "evals=[(dtrain, 'train'), (dvalid, 'valid')], verbose_eval=False)",
    ),
    "lgb.train 1,000 rounds, 2 eval sets": (
        "import lightgbm as lgb",
        "dtrain = lgb.Dataset(X, y, free_raw_data=False); dvalid = lgb.Dataset(Xv, yv, reference=dtrain, "
        "free_raw_data=False)",
        "lgb.train({'objective': 'binary', 'verbose': -1, 'num_leaves': 7}, dtrain, 1000, "
        "valid_sets=[dtrain, dvalid])",
    ),
    "XGBClassifier.fit, eval set": (
        "import xgboost as xgb",
        "",
        "xgb.XGBClassifier(n_estimators=200, max_depth=6).fit(X, y, eval_set=[(Xv, yv)], verbose=False)",
    ),
}

DATA_CODE = f"""
import numpy as np
rng = np.random.default_rng(0)
X = rng.normal(size=({ROWS}, {COLUMNS}))
y = (X[:, :5].sum(axis=1) + rng.normal(size={ROWS}) > 0).astype(int)
Xv = rng.normal(size=({ROWS // 4}, {COLUMNS}))
yv = (Xv[:, :5].sum(axis=1) + rng.normal(size={ROWS // 4}) > 0).astype(int)
"""


def workloads() -> dict:
    """name -> a callable that trains once (data and DMatrix/Dataset built once, here)."""
    fits = {}
    for name, (imports, prepare, call) in WORKLOAD_CODE.items():
        namespace: dict = {}
        exec(DATA_CODE + imports + "\n" + prepare, namespace)
        code = compile(call, name, "eval")
        fits[name] = lambda code=code, namespace=namespace: eval(code, namespace)
    return fits


def fresh_workloads(names=None) -> dict:
    """name -> Workload for benchmarks/harness.py `compare_fresh`: the imports, the data and the
    DMatrix/Dataset before the clock, the training call timed."""
    return {name: Workload(setup=imports + "\n" + DATA_CODE + prepare, call=call)
            for name, (imports, prepare, call) in WORKLOAD_CODE.items() if names is None or name in names}


IMPORTS = {"xgboost": "import xgboost", "lightgbm": "import lightgbm"}


def fresh(args) -> int:
    """Fresh processes: what a script that trains once sees, autolog's two figures beside
    mlflow.autolog()'s, and where the worker's time goes (`--sampled`)."""
    variants = ("plain", "autolog") + (("mlflow",) if args.mlflow_repeats else ())
    env = {"OMP_NUM_THREADS": str(args.omp_threads)} if args.omp_threads else None
    result = compare_fresh(fresh_workloads(args.fresh_workloads), variants, repeats=args.fresh_repeats,
                           sampled=args.sampled, env=env,
                           title="XGBoost and LightGBM, fresh processes: the first training call of a script")
    print()
    return report_targets(result)


def warm(args) -> int:
    """In one process, after a warm-up: the training call, and the flush inside the clock, then
    mlflow.autolog() with fewer repetitions, and the training thread's CPU."""
    fits = workloads()
    ours = compare(fits, variants=("plain", "autolog", "autolog+flush"), repeats=args.repeats,
                   title="XGBoost and LightGBM, autolog at its defaults (median wall seconds)")
    theirs = None
    if args.mlflow_repeats:
        theirs = compare(fits, variants=("plain", "mlflow"), repeats=args.mlflow_repeats,
                         title="XGBoost and LightGBM, mlflow.autolog() at its defaults (median wall seconds)")
    # the thread also runs its share of the OpenMP work
    failures = report_thread_budgets(ours, thread_cpu(fits, args.repeats), theirs)

    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--mlflow-repeats", type=int, default=3, help="0: leave mlflow.autolog out")
    parser.add_argument("--fresh-repeats", type=int, default=3, help="0: no fresh-process figures")
    parser.add_argument("--fresh-workloads", nargs="*", default=None, help="names of WORKLOAD_CODE (default: all)")
    parser.add_argument("--sampled", type=int, default=1, help="sampled autolog processes per workload")
    parser.add_argument("--omp-threads", type=int, default=0,
                        help="OMP_NUM_THREADS of the fresh processes, every variant alike (0: the libraries' default); "
                             "1 on a loaded machine, where OpenMP threads descheduled at each barrier stretch a "
                             "0.5 s training call to tens of seconds")
    parser.add_argument("--import-repeats", type=int, default=7, help="0 skips")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    print(f"machine: {machine_summary()}, xgboost and lightgbm as installed; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    failures = 0
    if args.fresh_repeats:
        failures += fresh(args)
    if args.repeats:
        failures += warm(args)
    if args.import_repeats:
        found = import_times(list(IMPORTS.values()), args.import_repeats, separate=True)
        print(f"\n### import, fresh interpreters (medians of {args.import_repeats}, CPU seconds)\n")
        for k, library in enumerate(IMPORTS):
            plain, after = found["plain"][k][1], found["autolog"][k][1]
            ratio = after / plain
            failures += ratio > 1.05
            print(f"- import {library}: plain {plain * 1e3:.0f} ms CPU, after autolog.autolog() {after * 1e3:.0f} ms: "
                  f"{ratio:.2f}x (target <= 1.05x: {'ok' if ratio <= 1.05 else 'OVER'}); wall "
                  f"{found['plain'][k][0] * 1e3:.0f} and {found['autolog'][k][0] * 1e3:.0f} ms")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
