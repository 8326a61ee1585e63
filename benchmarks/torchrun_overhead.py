"""torchrun, 2 ranks (gloo, CPU), 500 DDP steps: the training loop's time plain and under
autolog, side by side (issue 16; on demand).

Each repetition launches torchrun once per variant, in an order rotated per repetition.
Rank 0 times its loop, in wall time and in its training thread's CPU time (the latter
shows what autolog adds to that thread when other load makes wall times noisy) (from a barrier to the last step; the logging autolog causes is
written by its worker and at exit, outside the clock, as a user's loop sees it). Target:
added time at most max(5 %, 20 ms) of plain.

    .venv/bin/python benchmarks/torchrun_overhead.py --repeats 5 --steps 500
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

RANK_SCRIPT = r'''
import os, sys, time
if os.environ["VARIANT"] == "autolog":
    import autolog
    autolog.autolog(log_system_metrics=False)
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
dist.init_process_group("gloo")
torch.manual_seed(0)
model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(64, 32), torch.randn(64, 1)
steps = int(os.environ["STEPS"])
dist.barrier()
start, cpu_start = time.perf_counter(), time.thread_time()
for step in range(steps):
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
if dist.get_rank() == 0:
    print(f"LOOP {elapsed:.6f} {cpu:.6f}", flush=True)
dist.destroy_process_group()
'''


def launch(variant: str, steps: int, script: str, store: str) -> tuple:
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, VARIANT=variant, STEPS=str(steps), AUTOLOG_TRACKING_URI=store, OMP_NUM_THREADS="1")
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", script], env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    wall, cpu = next(line.split()[1:3] for line in done.stdout.splitlines() if line.startswith("LOOP "))
    return float(wall), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="autolog-bench-torchrun-")
    script = os.path.join(folder, "rank.py")
    with open(script, "w") as fh:
        fh.write(RANK_SCRIPT)
    variants = ["plain", "autolog"]
    times: dict[str, list] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        order = variants[repeat % 2:] + variants[:repeat % 2]
        for variant in order:
            times[variant].append(launch(variant, args.steps, script, os.path.join(folder, f"store-{repeat}")))
    print(f"| variant | median loop wall (s), {args.steps} steps | median training-thread CPU (s) | all walls |")
    print("|---|---|---|---|")
    for variant in variants:
        walls, cpus = [t[0] for t in times[variant]], [t[1] for t in times[variant]]
        print(f"| {variant} | {statistics.median(walls):.3f} | {statistics.median(cpus):.3f} | "
              + ", ".join(f"{w:.3f}" for w in walls) + " |")
    for index, what in ((0, "wall"), (1, "training-thread CPU")):
        plain = statistics.median(t[index] for t in times["plain"])
        added = statistics.median(t[index] for t in times["autolog"]) - plain
        limit = max(0.05 * plain, 0.020)
        print(f"\nadded {what}: {added * 1000:+.1f} ms ({added / plain * 100:+.1f} %); "
              f"target at most {limit * 1000:.0f} ms: {'met' if added <= limit else 'NOT met'}")


if __name__ == "__main__":
    main()
