"""Peak memory with 1,000,000 metric points queued, and while writing them to the local store.

    python -m benchmarks.memory                      # from the repository root
    python -m benchmarks.memory --points 1000000

Each case runs in a fresh interpreter (a child process of this script), so that peak
resident memory (VmHWM) belongs to that case alone:

- `queued`:  the backend is held shut (its writes wait on an event) and the queue is made
             big enough (`AUTOLOG_MAX_QUEUE_SIZE`) to hold every point: all of them sit in
             autolog's memory at once. Reported: resident memory added, and per point.
- `default`: the default settings, into the local store: the queue is bounded (200,000
             records), so the producer waits for room rather than growing without end.
             Reported: peak resident memory added while logging and flushing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

if __package__ in (None, ""):  # run as `python benchmarks/NAME.py`: the repo root, for `benchmarks.harness`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _case_queued(points: int) -> dict:
    import autolog
    from autolog import runs

    run = autolog.start_run("memory-queued")
    autolog.flush()
    backend = runs.logger_for().backend._get()
    gate = threading.Event()
    original = backend.log_batch

    def held(*args, **kwargs):
        gate.wait()
        return original(*args, **kwargs)

    backend.log_batch = held  # every write waits until the points are all queued
    before = _rss_kib()
    start = time.perf_counter()
    for step in range(points):
        run.log_metric("loss", 0.5, step)
    enqueue_s = time.perf_counter() - start
    queued = runs.logger_for().pending()
    after = _rss_kib()
    gate.set()
    flush_start = time.perf_counter()
    assert autolog.flush(1200)
    flush_s = time.perf_counter() - flush_start
    stats = runs.logger_for().snapshot_stats()
    return {
        "case": "queued", "points": points, "queued_when_measured": queued,
        "rss_added_mib": (after - before) / 1024, "bytes_per_point": (after - before) * 1024 / points,
        "peak_mib": _rss_kib("VmHWM") / 1024, "baseline_mib": before / 1024,
        "enqueue_s": enqueue_s, "flush_s": flush_s, "dropped": stats.dropped, "written": stats.written,
    }


def _case_default(points: int) -> dict:
    import autolog
    from autolog import runs

    run = autolog.start_run("memory-default")
    autolog.flush()
    before = _rss_kib()
    start = time.perf_counter()
    for step in range(points):
        run.log_metric("loss", 0.5, step)
    assert autolog.flush(1200)
    elapsed = time.perf_counter() - start
    stats = runs.logger_for().snapshot_stats()
    return {
        "case": "default", "points": points, "max_queue_size": runs.logger_for().max_queue_size,
        "peak_added_mib": (_rss_kib("VmHWM") - before) / 1024, "baseline_mib": before / 1024,
        "seconds": elapsed, "dropped": stats.dropped, "written": stats.written,
    }


def _child(case: str, points: int) -> None:
    result = {"queued": _case_queued, "default": _case_default}[case](points)
    print(json.dumps(result))


def run_case(case: str, points: int) -> dict:
    root = tempfile.mkdtemp(prefix="autolog-bench-mem-")
    env = dict(os.environ, AUTOLOG_TRACKING_URI=os.path.join(root, "autolog-runs"),
               AUTOLOG_JOURNAL_DIR=os.path.join(root, "journal"), AUTOLOG_LOG_SYSTEM_METRICS="false")
    if case == "queued":
        env["AUTOLOG_MAX_QUEUE_SIZE"] = str(max(points + 10, 10_000))
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", case, "--points", str(points)],
                         env=env, capture_output=True, text=True, timeout=3600,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--child", choices=("queued", "default"))
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.points)
        return 0
    from benchmarks.harness import machine_summary

    queued = run_case("queued", args.points)
    default = run_case("default", args.points)
    print(f"\n{machine_summary()}\n")
    print("| case | points | memory added | per point | peak resident | notes |")
    print("|---|---|---|---|---|---|")
    print(f"| all queued (backend held) | {queued['points']:,} | {queued['rss_added_mib']:,.0f} MiB | "
          f"{queued['bytes_per_point']:,.0f} bytes | {queued['peak_mib']:,.0f} MiB | "
          f"{queued['queued_when_measured']:,} records pending; enqueue {queued['enqueue_s']:.1f} s, "
          f"then flush {queued['flush_s']:.1f} s; dropped {queued['dropped']} |")
    print(f"| default settings, local store | {default['points']:,} | {default['peak_added_mib']:,.0f} MiB (peak) | "
          f"{default['peak_added_mib'] * 1024 * 1024 / default['points']:,.0f} bytes | "
          f"{default['baseline_mib'] + default['peak_added_mib']:,.0f} MiB | queue bounded at "
          f"{default['max_queue_size']:,}; {default['seconds']:.1f} s end to end; dropped {default['dropped']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
