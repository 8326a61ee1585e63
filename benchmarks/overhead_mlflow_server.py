"""autolog and MLflow side by side, logging into one real MLflow tracking server.

Starts `mlflow server` on a loopback port (SQLite store, served artifacts: the test
suite's own helper, tests/backends/conftest.py) and measures, against that server:

1. Manual logging, 10,000 metric points into one run: `run.log_metric` of autolog vs
   `mlflow.log_metric(..., synchronous=False)` vs `mlflow.log_metric(...)` (synchronous:
   one request per call, so timed on 1,000 calls): the caller's cost per call, the
   time until every point is on the server (`autolog.flush()` /
   `mlflow.flush_async_logging()`), and the HTTP requests sent (counted on the wire).
   Every point is read back from the server before a figure is printed.
2. The overhead workloads of every integration benchmark that has one
   (`benchmarks/overhead_<name>.py` with a `workloads()` function), plus a scikit-learn
   fit when the sklearn integration exists: plain, `autolog.autolog()` (the caller's cost),
   `autolog.autolog()` with `autolog.flush()` inside the clock (until everything is on
   the server), and `mlflow.autolog()`, all into the same server, interleaved.

    python benchmarks/overhead_mlflow_server.py [--repeats 5] [--points 10000] [--only OLS]
"""

from __future__ import annotations

import argparse
import glob
import importlib
import importlib.util
import os
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # the repo root, for `benchmarks.harness`

from benchmarks.harness import Comparison, _all_off, _seconds, _time_once, _Variant, machine_summary  # noqa: E402


def load_server_helper():
    """`MlflowServer` of tests/backends/conftest.py (one way to start a server, shared with the tests)."""
    spec = importlib.util.spec_from_file_location("autolog_test_mlflow_server",
                                                  os.path.join(ROOT, "tests", "backends", "conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MlflowServer


class RequestCounter:
    """Counts HTTP requests sent by this process (a pass-through around requests.Session.send)."""

    def __init__(self):
        import requests

        self.count = 0
        self._lock = threading.Lock()
        original = requests.Session.send
        counter = self

        def counting_send(session, request, **kwargs):
            with counter._lock:
                counter.count += 1
            return original(session, request, **kwargs)

        requests.Session.send = counting_send

    def take(self) -> int:
        with self._lock:
            value, self.count = self.count, 0
        return value


# -- 1. manual logging ------------------------------------------------------------------------

def manual_logging(url: str, points: int, sync_points: int, counter: RequestCounter) -> list[str]:
    """One run of `points` metric points per way of logging; every point is read back."""
    import mlflow
    from mlflow.tracking import MlflowClient

    import autolog

    client = MlflowClient(tracking_uri=url)
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("bench-manual-mlflow")

    def stored_points(mlflow_run_id: str) -> int:
        return len(client.get_metric_history(mlflow_run_id, "loss"))

    rows = []
    # autolog: the caller's loop, then flush until everything is on the server
    counter.take()
    start = time.perf_counter()
    with autolog.start_run("end-to-end", experiment="bench-manual-autolog", tracking_uri=url) as run:
        for i in range(points):
            run.log_metric("loss", 1.0 / (i + 1), step=i)
        caller = time.perf_counter() - start
    autolog.flush()
    total = time.perf_counter() - start
    rows.append(("autolog: `run.log_metric`, then `autolog.flush()`", points, caller, total, counter.take()))
    mlflow_id = autolog.get_run(run.run_id, tracking_uri=url).tags["autolog.mlflow_run_id"]
    assert stored_points(mlflow_id) == points, "autolog: points missing on the server"

    # MLflow async: the caller's loop, then flush_async_logging
    counter.take()
    start = time.perf_counter()
    with mlflow.start_run() as mlflow_run:
        for i in range(points):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i, synchronous=False)
        caller = time.perf_counter() - start
        mlflow.flush_async_logging()
    total = time.perf_counter() - start
    rows.append(("MLflow: `mlflow.log_metric(..., synchronous=False)`, then `mlflow.flush_async_logging()`",
                 points, caller, total, counter.take()))
    assert stored_points(mlflow_run.info.run_id) == points, "mlflow async: points missing on the server"

    # MLflow synchronous: one request per call; fewer calls
    counter.take()
    start = time.perf_counter()
    with mlflow.start_run() as mlflow_run:
        for i in range(sync_points):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
        caller = time.perf_counter() - start
    total = time.perf_counter() - start
    rows.append(("MLflow: `mlflow.log_metric(...)` (synchronous)", sync_points, caller, total, counter.take()))
    assert stored_points(mlflow_run.info.run_id) == sync_points, "mlflow sync: points missing on the server"

    lines = ["| way of logging | points | caller's cost per call | caller's loop | until all on the server | "
             "HTTP requests (whole run) |", "|---|---|---|---|---|---|"]
    for name, n, caller, total, requests_sent in rows:
        lines.append(f"| {name} | {n:,} | {_seconds(caller / n)} | {_seconds(caller)} | {_seconds(total)} | {requests_sent:,} |")
    return lines


# -- 2. integration workloads ------------------------------------------------------------------

def integration_workloads() -> dict:
    """name -> callable: every benchmarks/overhead_<name>.py's `workloads()`, and an sklearn fit."""
    found: dict = {}
    for path in sorted(glob.glob(os.path.join(HERE, "overhead_*.py"))):
        module_name = os.path.splitext(os.path.basename(path))[0]
        if module_name == "overhead_mlflow_server":
            continue
        try:
            module = importlib.import_module(f"benchmarks.{module_name}")
            made = module.workloads() if hasattr(module, "workloads") else {}
        except Exception as exc:  # noqa: BLE001 - a benchmark whose library is missing is left out
            print(f"(left out {module_name}: {type(exc).__name__}: {exc})")
            continue
        found.update({f"{name}": fn for name, fn in made.items()})
    if importlib.util.find_spec("autolog.integrations.sklearn") is not None and not any(
            "Logistic" in name for name in found):
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        rng = np.random.default_rng(0)
        X = rng.normal(size=(5_000, 20))
        y = (X @ rng.normal(size=20) > 0).astype(int)
        found["sklearn LogisticRegression 5k x 20"] = lambda: LogisticRegression(max_iter=200).fit(X, y)
    return found


class ServerVariant(_Variant):
    """The harness's variants (plain, autolog, autolog+flush, mlflow), all into one server
    instead of a temporary store each; timing, flushing and teardown are the harness's."""

    def __init__(self, name: str, url: str):
        super().__init__(name, tempfile.mkdtemp(prefix="autolog-bench-"), {"log_system_metrics": False}, {})
        self.url = url

    def setup(self) -> None:
        _all_off()
        if self.name.startswith("autolog"):
            import autolog

            autolog.autolog(tracking_uri=self.url, experiment="bench-fit-autolog", **self.autolog_options)
        elif self.name == "mlflow":
            import mlflow

            mlflow.set_tracking_uri(self.url)
            mlflow.set_experiment("bench-fit-mlflow")
            mlflow.autolog(**self.mlflow_options)


def fits(url: str, repeats: int, only: str = "") -> Comparison:
    variants = [ServerVariant(v, url) for v in ("plain", "autolog", "autolog+flush", "mlflow")]
    result = Comparison(tuple(v.name for v in variants))
    for name, workload in integration_workloads().items():
        if only.lower() not in name.lower():
            continue
        per = result.timings.setdefault(name, {v.name: [] for v in variants})
        for variant in variants:
            _time_once(variant, workload)  # warm-up
        for rep in range(repeats):
            shift = rep % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                per[variant.name].append(_time_once(variant, workload))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--sync-points", type=int, default=1000)
    parser.add_argument("--only", default="", help="run only the fit workloads whose name contains this")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    os.environ.setdefault("AUTOLOG_JOURNAL_DIR", tempfile.mkdtemp(prefix="autolog-bench-journal-"))
    os.environ["AUTOLOG_LOG_SYSTEM_METRICS"] = "false"
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    server = load_server_helper()(tempfile.mkdtemp(prefix="autolog-bench-mlflow-")).start()
    try:
        import autolog
        import mlflow

        counter = RequestCounter()
        print(f"machine: {machine_summary()}")
        print(f"server: {server.url} (mlflow server, SQLite store, --serve-artifacts, 1 worker)\n")
        print("\n".join(manual_logging(server.url, args.points, args.sync_points, counter)))
        result = fits(server.url, args.repeats, args.only)
        print("\nFits, every variant into the same server (median seconds per fit):\n")
        print(result.markdown())
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
