"""The local store on its own: write rates by batch size, reading a history, size on disk.

    python -m benchmarks.local_store                 # from the repository root
    python -m benchmarks.local_store --points 200000 --repeats 3

`LocalStore.log_batch` is called straight (no logger) in one process, one run, one key,
with batches of 5,000 points (the logger's default batch), of 100, and of 1 (one
transaction a point: the worst case, a logger flushed after every point). Then the
200,000-point history is read back with `get_metric_history`, and the database's size
on disk is reported. Medians of interleaved repetitions, each into a fresh store. The
figures go into docs/local-store.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as `python benchmarks/NAME.py`: the repo root, for `benchmarks.harness`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _store():
    from autolog.backends.local import LocalStore
    from autolog.entities import RunStart

    store = LocalStore(os.path.join(tempfile.mkdtemp(prefix="autolog-bench-store-"), "store"))
    store.create_run(RunStart("1" * 32, "Default", "store-bench", 0, None, {}))
    return store


def write_rate(points: int, batch: int) -> float:
    """Points a second through `log_batch` in batches of `batch`."""
    from autolog.entities import Metric

    store = _store()
    now = int(time.time() * 1000)
    batches = [[Metric("loss", 1.0 / (s + 1), now + s, s) for s in range(b, min(points, b + batch))]
               for b in range(0, points, batch)]
    t0 = time.perf_counter()
    for metrics in batches:
        store.log_batch("1" * 32, metrics=metrics)
    elapsed = time.perf_counter() - t0
    store.shutdown()
    return points / elapsed


def read_and_size(points: int) -> tuple[float, int]:
    """Seconds to read a `points`-point history, and the database's bytes on disk."""
    from autolog.entities import Metric

    store = _store()
    now = int(time.time() * 1000)
    for b in range(0, points, 5_000):
        store.log_batch("1" * 32, metrics=[Metric("loss", 1.0 / (s + 1), now + s, s)
                                           for s in range(b, min(points, b + 5_000))])
    t0 = time.perf_counter()
    history = store.get_metric_history("1" * 32, "loss")
    elapsed = time.perf_counter() - t0
    assert len(history) == points and history[-1].step == points - 1
    conn = store._connection(create=False)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.shutdown()
    size = sum(os.path.getsize(os.path.join(store.root, name)) for name in os.listdir(store.root)
               if name.startswith("autolog.db"))
    return elapsed, size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--single-points", type=int, default=5_000,
                        help="points written one transaction each (slow)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from benchmarks.harness import machine_summary

    cases = [("batches of 5,000", 5_000, args.points), ("batches of 100", 100, args.points),
             ("one point a transaction", 1, args.single_points)]
    rates: dict[str, list] = {name: [] for name, _, _ in cases}
    reads, sizes = [], []
    for _ in range(args.repeats):
        for name, batch, n in cases:
            rates[name].append(write_rate(n, batch))
        seconds, size = read_and_size(args.points)
        reads.append(seconds)
        sizes.append(size)
    print(f"\n{machine_summary()}; load average {os.getloadavg()[0]:.1f}\n")
    print("| `LocalStore.log_batch` | points | points a second (median) | min | max |")
    print("|---|---|---|---|---|")
    for name, batch, n in cases:
        r = rates[name]
        print(f"| {name} | {n:,} | {statistics.median(r):,.0f} | {min(r):,.0f} | {max(r):,.0f} |")
    print(f"\nreading a {args.points:,}-point history: {statistics.median(reads) * 1000:,.0f} ms (median); "
          f"database on disk: {statistics.median(sizes) / 1e6:.1f} MB "
          f"({statistics.median(sizes) / args.points:.0f} bytes a point)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
