"""Caller-side cost of one `log_metric` call: autolog against MLflow, side by side in one run.

    python -m benchmarks.log_metric_cost            # from the repository root
    python -m benchmarks.log_metric_cost --rounds 7 --calls 20000

What the training thread pays per call (the writing happens elsewhere, or not):

- `autolog.log_metric(key, value, step=i)`      the fluent API, into a local store
- `run.log_metric(key, value, step=i)`          the same through the run handle
- `mlflow.log_metric(..., synchronous=False)`   MLflow's async logging, sqlite store
- `mlflow.log_metric(..., synchronous=True)`    MLflow's default, sqlite store
- "writer idle before each 10 calls": groups of 10 calls, each starting after the background
  writer has caught up (outside the clock), as in training, where a step's compute separates
  a few metric calls. MLflow's async path is much dearer then than in a long burst, where
  its queue is already awake; autolog's cost is the same either way.

Rounds are interleaved (autolog, mlflow async, mlflow sync, ...), each store is flushed
between rounds outside the clock, so that no variant's background writer runs while
another is timed. Fewer calls are timed for MLflow (it is ~1,000x slower per call); the
figure is a per-call median over groups of calls either way.

Targets (the core issue): autolog's median at most 5 µs a call, and at least 100x
cheaper than `mlflow.log_metric(..., synchronous=False)`.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

TARGET_MEDIAN_S = 5e-6
TARGET_RATIO = 100.0

if __package__ in (None, ""):  # run as `python benchmarks/NAME.py`: the repo root, for `benchmarks.harness`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _autolog_setup(root: str):
    os.environ["AUTOLOG_TRACKING_URI"] = os.path.join(root, "autolog-runs")
    os.environ["AUTOLOG_JOURNAL_DIR"] = os.path.join(root, "journal")
    os.environ.setdefault("AUTOLOG_LOG_SYSTEM_METRICS", "false")
    import autolog

    run = autolog.start_run("log-metric-cost")
    autolog.flush()
    return autolog, run


def _mlflow_setup(root: str):
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    import mlflow

    mlflow.set_tracking_uri("sqlite:///" + os.path.join(root, "mlflow.db"))
    mlflow.set_experiment("log-metric-cost")
    mlflow.start_run()
    return mlflow


def _time_groups(call: str, namespace: dict, calls: int, batch: int, start_step: int, between=None) -> list[float]:
    """Seconds per call, one entry per group of `batch` calls; `between()` runs after each
    group, outside the clock (a training step's compute, during which writers catch up).

    `call` is the statement as a user writes it, with `s` for the step. It is compiled into
    the timing loop itself, as `timeit` does, so that no harness function call (a lambda
    around it) is counted as part of the call being measured.
    """
    source = (
        "def _loop(clock, groups, batch, s, between):\n"
        "    out = []\n"
        "    for _ in range(groups):\n"
        "        t0 = clock()\n"
        "        for _ in range(batch):\n"
        f"            {call}\n"
        "            s += 1\n"
        "        out.append((clock() - t0) / batch)\n"
        "        if between is not None:\n"
        "            between()\n"
        "    return out\n"
    )
    scope = dict(namespace)
    exec(compile(source, f"<timed: {call}>", "exec"), scope)  # noqa: S102 - our own fixed statements
    return scope["_loop"](time.perf_counter, max(1, calls // batch), batch, start_step, between)


def measure(rounds: int, calls: int, mlflow_async_calls: int, mlflow_sync_calls: int, with_mlflow: bool = True) -> dict:
    root = tempfile.mkdtemp(prefix="autolog-bench-lm-")
    autolog, run = _autolog_setup(root)
    mlflow = _mlflow_setup(root) if with_mlflow else None

    # only the writer of the variant being timed is waited for (an idle mlflow flush takes ~1 s)
    settle_autolog = lambda: _settle(autolog, None)  # noqa: E731
    settle_mlflow = lambda: _settle(None, mlflow)  # noqa: E731
    namespace = {"autolog": autolog, "run": run, "mlflow": mlflow}
    # name -> (statement, calls a round, calls a group, what runs between groups outside the clock)
    variants = {
        "autolog.log_metric": ('autolog.log_metric("loss", 0.5, step=s)', calls, 100, None),
        "ActiveRun.log_metric": ('run.log_metric("loss", 0.5, step=s)', calls, 100, None),
        "autolog.log_metric, writer idle before each 10 calls": (
            'autolog.log_metric("loss", 0.5, step=s)', calls // 10, 10, settle_autolog),
        # what the timing loop itself costs a call: it is inside every figure, not subtracted
        "empty loop (for reference)": ("pass", calls, 100, None),
    }
    if mlflow is not None:
        variants["mlflow.log_metric(synchronous=False)"] = (
            'mlflow.log_metric("loss", 0.5, step=s, synchronous=False)', mlflow_async_calls, 20, None)
        variants["mlflow.log_metric(synchronous=False), writer idle before each 10 calls"] = (
            'mlflow.log_metric("loss", 0.5, step=s, synchronous=False)', mlflow_async_calls // 5, 10,
            settle_mlflow)
        variants["mlflow.log_metric(synchronous=True)"] = (
            'mlflow.log_metric("loss", 0.5, step=s, synchronous=True)', mlflow_sync_calls, 5, None)

    samples: dict[str, list[float]] = {name: [] for name in variants}
    steps = {name: 0 for name in variants}
    for call, n, batch, _ in variants.values():  # warm-up, untimed
        _time_groups(call, namespace, batch * 2, batch, 10_000_000)
    _settle(autolog, mlflow)
    for _ in range(rounds):
        for name, (call, n, batch, between) in variants.items():
            samples[name].extend(_time_groups(call, namespace, n, batch, steps[name], between))
            steps[name] += n
            _settle(autolog, mlflow)  # background writers finish outside the clock
    if mlflow is not None:
        mlflow.end_run()
    autolog.end_run()
    autolog.flush()
    stats = autolog.runs.logger_for().snapshot_stats()
    return {
        "samples": samples,
        "calls": {name: len(v) * variants[name][2] for name, v in samples.items()},
        "autolog_stats": stats.as_dict(),
    }


def _settle(autolog, mlflow) -> None:
    if autolog is not None:
        autolog.flush()
    if mlflow is not None:
        try:
            mlflow.flush_async_logging()
        except Exception:  # noqa: BLE001
            pass


def report(result: dict, stream=sys.stdout) -> dict:
    samples = result["samples"]
    medians = {name: statistics.median(v) for name, v in samples.items()}
    base = medians["autolog.log_metric"]
    means = {name: statistics.fmean(v) for name, v in samples.items()}
    print("| call | median per call | mean | p90 | calls timed | median vs autolog.log_metric | mean vs autolog |",
          file=stream)
    print("|---|---|---|---|---|---|---|", file=stream)
    for name, values in samples.items():
        ordered = sorted(values)
        p90 = ordered[int(len(ordered) * 0.9)]
        print(f"| `{name}` | {_us(medians[name])} | {_us(means[name])} | {_us(p90)} | {result['calls'][name]:,} | "
              f"{medians[name] / base:,.1f}x | {means[name] / means['autolog.log_metric']:,.1f}x |", file=stream)
    verdict = {"median_us": base * 1e6, "median_ok": base <= TARGET_MEDIAN_S}
    async_name = "mlflow.log_metric(synchronous=False)"
    if async_name in medians:
        verdict["ratio_async"] = medians[async_name] / base
        verdict["ratio_async_mean"] = means[async_name] / means["autolog.log_metric"]
        verdict["ratio_ok"] = verdict["ratio_async"] >= TARGET_RATIO
    print(file=stream)
    print(f"autolog.log_metric median {base * 1e6:.2f} µs (target <= {TARGET_MEDIAN_S * 1e6:.0f} µs: "
          f"{'met' if verdict['median_ok'] else 'MISSED'})"
          + (f"; {verdict['ratio_async']:,.0f}x cheaper than mlflow async (target >= {TARGET_RATIO:.0f}x: "
             f"{'met' if verdict['ratio_ok'] else 'MISSED'}; by the means {verdict['ratio_async_mean']:,.0f}x)"
             if "ratio_async" in verdict else ""), file=stream)
    print(f"autolog logger counters: {result['autolog_stats']}", file=stream)
    return verdict


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.2f} µs" if seconds < 1e-3 else f"{seconds * 1e3:,.2f} ms"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20_000, help="autolog calls timed per round")
    parser.add_argument("--mlflow-async-calls", type=int, default=1_000)
    parser.add_argument("--mlflow-sync-calls", type=int, default=100)
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    from benchmarks.harness import machine_summary

    result = measure(args.rounds, args.calls, args.mlflow_async_calls, args.mlflow_sync_calls,
                     with_mlflow=not args.no_mlflow)
    print(f"\n{machine_summary()}\n")
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
