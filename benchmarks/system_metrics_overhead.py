"""Overhead of system-metrics sampling on the training thread.

A CPU-bound training-like workload runs inside a run, with sampling off and with
sampling on at a 1 s interval, the two interleaved (off, on, off, on, ...) so that
drift of the machine hits both alike. Reported: the median wall time of each, their
ratio, and the cost of one sample on the sampler thread.

Wall time on a shared machine is noisy (other processes take the CPUs); the CPU time
of the whole process (`time.process_time`, which includes the sampler thread) is the
steadier figure: its on/off ratio is what sampling costs in CPU.

Two workloads: a pure-Python loop (the worst case: it holds the GIL the sampler thread
needs) and a scikit-learn fit (numpy/BLAS code, as most training is).

    python benchmarks/system_metrics_overhead.py [--repeats 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from benchmarks.harness import machine_summary  # noqa: E402


def python_loop(seconds: float):
    """Calibrated to take about `seconds`: an SGD-like update in pure Python."""
    n = int(seconds * _loop_rate())

    def run():
        w, acc = 0.0, 0.0
        for i in range(n):
            x = (i % 97) / 97.0
            g = (w * x - x * 0.5) * x
            w -= 0.01 * g
            acc += w
        return acc

    return run


_RATE = None


def _loop_rate() -> float:
    global _RATE
    if _RATE is None:
        n = 200_000
        start = time.perf_counter()
        w = 0.0
        for i in range(n):
            x = (i % 97) / 97.0
            w -= 0.01 * ((w * x - x * 0.5) * x)
        _RATE = n / (time.perf_counter() - start)
    return _RATE


def sklearn_fit(seconds: float):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 50))
    y = (X[:, 0] + 0.5 * rng.normal(size=len(X)) > 0).astype(int)
    LogisticRegression(max_iter=200).fit(X, y)  # warm: imports, BLAS threads
    start = time.perf_counter()
    LogisticRegression(max_iter=200).fit(X, y)
    one = time.perf_counter() - start
    fits = max(1, round(seconds / one))

    def run():
        for _ in range(fits):
            LogisticRegression(max_iter=200).fit(X, y)

    return run


def timed(workload, sampling: bool, interval: float) -> tuple[float, float, float]:
    """(wall seconds, process CPU seconds, CPU seconds of the sampler thread) of one workload."""
    import autolog
    from autolog.provenance import capture as context

    autolog.autolog(log_system_metrics=sampling, system_metrics_interval=interval, integrations=[])
    sampler_cpu = 0.0
    with autolog.start_run() as run:
        if sampling:
            context.sampler().wait_for_samples(run.run_id, 1, timeout=30)  # the thread is up
            thread = context.sampler()._thread
            before = _thread_cpu(thread)
        start, cpu_start = time.perf_counter(), time.process_time()
        workload()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if sampling:
            sampler_cpu = _thread_cpu(thread) - before
    autolog.flush()
    return elapsed, cpu, sampler_cpu


def _thread_cpu(thread) -> float:
    """CPU seconds `thread` has used so far (its POSIX CPU-time clock: nanosecond resolution)."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError):  # not a POSIX system, or the thread has ended
        return 0.0


def sample_cost(count: int = 200) -> float:
    """Seconds one sample takes on the sampler thread (psutil reads, GPUs if any)."""
    import psutil

    from autolog.provenance.system_metrics import MachineReader, gpus

    reader = MachineReader(psutil, gpus)
    reader.read()
    start = time.perf_counter()
    for _ in range(count):
        reader.read()
    return (time.perf_counter() - start) / count


def run_start_cost(runs: int = 300) -> dict:
    """Microseconds a start_run + end_run pair takes on the caller, per run-context setting."""
    import autolog

    cases = {
        "context off": dict(log_system_metrics=False, log_args=False, log_code_state=False, log_environment=False),
        "args+code+env": dict(log_system_metrics=False),
        "all + sampling": dict(log_system_metrics=True, system_metrics_interval=1.0),
    }
    out = {}
    for name, options in cases.items():
        autolog.autolog(integrations=[], **options)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(runs):
                with autolog.start_run():
                    pass
            times.append((time.perf_counter() - start) / runs)
            autolog.flush()
        out[name] = statistics.median(times) * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=1.0)
    options = parser.parse_args()
    os.environ.setdefault("AUTOLOG_TRACKING_URI", tempfile.mkdtemp(prefix="autolog-bench-"))
    os.environ.setdefault("AUTOLOG_JOURNAL_DIR", tempfile.mkdtemp(prefix="autolog-bench-journal-"))
    import autolog

    print(f"{machine_summary()}; interval {options.interval} s, {options.repeats} interleaved repeats "
          f"of ~{options.seconds} s; load average {os.getloadavg()[0]:.1f}")
    print(f"one sample on the sampler thread: {sample_cost() * 1e3:.2f} ms")
    costs = run_start_cost()
    print("start_run + end_run on the caller: " + ", ".join(f"{k} {v:.0f} us" for k, v in costs.items()))
    print(f"{'workload':<12} {'wall off':>9} {'wall on':>9} {'on/off':>7}   {'cpu off':>8} {'cpu on':>8} {'on/off':>7}"
          "   wall spread off / on (min-max)")
    sampler_share = []
    for name, make in (("python loop", python_loop), ("sklearn fit", sklearn_fit)):
        workload = make(options.seconds)
        timed(workload, False, options.interval)  # warm-up
        off, on = [], []
        for _ in range(options.repeats):
            off.append(timed(workload, False, options.interval))
            on.append(timed(workload, True, options.interval))
        w_off, w_on = statistics.median(t[0] for t in off), statistics.median(t[0] for t in on)
        c_off, c_on = statistics.median(t[1] for t in off), statistics.median(t[1] for t in on)
        sampler_share.append(sum(t[2] for t in on) / sum(t[0] for t in on))
        print(f"{name:<12} {w_off:>8.3f}s {w_on:>8.3f}s {w_on / w_off:>7.3f}   {c_off:>7.3f}s {c_on:>7.3f}s {c_on / c_off:>7.3f}"
              f"   {min(t[0] for t in off):.2f}-{max(t[0] for t in off):.2f} / {min(t[0] for t in on):.2f}-{max(t[0] for t in on):.2f}")
    autolog.autolog(disable=True)
    print("CPU time of the sampler thread per second of workload: "
          + ", ".join(f"{share * 1e3:.2f} ms ({share * 100:.3f}% of one core)" for share in sampler_share))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
