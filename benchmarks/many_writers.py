"""Many writers, one MLflow server (issue 16; on demand, not in CI).

N processes each log a training-like stream into one real `mlflow server` (sqlite backend,
one worker, as tests/backends starts it): `--metrics` metrics per step, `--rate` steps a
second, for `--seconds`, with autolog's defaults. Reported per N:

- requests per writer per second: calls of the backend's `log_batch` (one REST request
  each, a batch under MLflow's limits) plus run creation and end, counted in each writer;
- points per request;
- server CPU: the server's process group, CPU seconds over the wall time of the stream
  (100 % = one core);
- log call to visible: each writer logs a `probe` metric once a second whose value is
  the wall time of the `log_metric` call; when the `log_batch` carrying it returns (the
  server has committed it) the difference is one latency sample;
- lost: points logged minus points the server holds (read back with MlflowClient).

    .venv/bin/python benchmarks/many_writers.py --writers 4 16 64 --seconds 30

Writers are paced with sleeps: this is a load generator, not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

WRITER = r'''
import json, os, sys, time
import autolog
from autolog import runs

seconds, rate, n_metrics = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
autolog.autolog(log_system_metrics=False, log_environment=False, log_code_state=False, log_args=False)
run = autolog.start_run(run_name=f"writer-{os.getpid()}")
backend = runs.logger_for().backend
counts = {"requests": 0, "points": 0, "latencies": []}
original = backend.log_batch

def counting(run_id, metrics=(), params=(), tags=()):
    original(run_id, metrics=metrics, params=params, tags=tags)
    now = time.time()
    counts["requests"] += 1
    counts["points"] += len(metrics)
    counts["latencies"].extend(now - m.value for m in metrics if m.key == "probe")

backend.log_batch = counting
autolog.flush()  # the run is created and the client imported before the clock starts
print("ready", flush=True)
sys.stdin.readline()  # every writer starts together
start = time.monotonic()
step, next_probe = 0, 0.0
while time.monotonic() - start < seconds:
    autolog.log_metrics({f"m{i}": step * 0.001 + i for i in range(n_metrics)}, step=step)
    elapsed = time.monotonic() - start
    if elapsed >= next_probe:
        autolog.log_metric("probe", time.time(), step=step)
        next_probe += 1.0
    step += 1
    time.sleep(max(0.0, start + step / rate - time.monotonic()))
logged = step * n_metrics + int(next_probe)
autolog.end_run()
autolog.flush()
print(json.dumps({"run_id": backend.mlflow_run_id(run.run_id), "logged": logged, "steps": step,
                  "requests": counts["requests"] + 2, "points": counts["points"], "latencies": counts["latencies"],
                  "seconds": seconds}), flush=True)
'''


def mlflow_server_class():
    path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "backends" / "conftest.py"
    spec = importlib.util.spec_from_file_location("autolog_bench_backends", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MlflowServer


def group_cpu_seconds(pid: int) -> float:
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for process in [root] + root.children(recursive=True):
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def run_once(server, writers: int, seconds: float, rate: float, metrics: int, experiment: str) -> dict:
    env = dict(os.environ, AUTOLOG_TRACKING_URI=server.url, AUTOLOG_EXPERIMENT=experiment,
               AUTOLOG_JOURNAL_DIR=tempfile.mkdtemp(prefix="autolog-bench-journal-"))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(seconds), str(rate), str(metrics)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(writers)]
    for proc in procs:
        line = proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(proc.stderr.read()[-2000:])
    cpu0, wall0 = group_cpu_seconds(server.process.pid), time.monotonic()
    for proc in procs:
        proc.stdin.write("\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=seconds * 10 + 300)
        if proc.returncode != 0:
            raise RuntimeError(err[-2000:])
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.monotonic() - wall0
    server_cpu = (group_cpu_seconds(server.process.pid) - cpu0) / wall * 100

    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.url)
    stored = 0
    for result in results:
        for key in [f"m{i}" for i in range(metrics)] + ["probe"]:
            stored += len(client.get_metric_history(result["run_id"], key))
    latencies = sorted(x for r in results for x in r["latencies"])
    requests = sum(r["requests"] for r in results)
    points = sum(r["points"] for r in results)
    return {
        "writers": writers,
        "requests_per_writer_per_s": requests / writers / seconds,
        "points_per_request": points / max(1, requests),
        "server_cpu_percent": server_cpu,
        "latency_p50_s": statistics.median(latencies) if latencies else float("nan"),
        "latency_p95_s": latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan"),
        "latency_max_s": latencies[-1] if latencies else float("nan"),
        "logged": sum(r["logged"] for r in results),
        "stored": stored,
        "lost": sum(r["logged"] for r in results) - stored,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=10.0, help="steps per second per writer")
    parser.add_argument("--metrics", type=int, default=4, help="metrics per step")
    args = parser.parse_args()
    server = mlflow_server_class()(tempfile.mkdtemp(prefix="autolog-bench-mlflow-")).start()
    try:
        print("| writers | requests / writer / s | points / request | server CPU % | log → visible p50 / p95 / max (s) | logged | lost |")
        print("|---|---|---|---|---|---|---|")
        for n in args.writers:
            r = run_once(server, n, args.seconds, args.rate, args.metrics, f"many-writers-{n}-{os.getpid()}")
            print(f"| {n} | {r['requests_per_writer_per_s']:.2f} | {r['points_per_request']:.1f} | "
                  f"{r['server_cpu_percent']:.0f} | {r['latency_p50_s']:.2f} / {r['latency_p95_s']:.2f} / "
                  f"{r['latency_max_s']:.2f} | {r['logged']} | {r['lost']} |", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
