"""What `capture_checkpoint` costs the training thread for a large checkpoint file.

Each repetition writes a checkpoint of `--size-mb` MB as a framework does (`open(path,
"wb")`, one write: the file is all dirty pages, as right after `torch.save`), then times:

- `capture`: the `capture_checkpoint(run, path)` call itself, on the caller;
- `copy done`: from the call until the background copy is done (`wait_for_checkpoint`);
- `loop alone` / `loop during copy`: a pure-Python loop (it needs the GIL, as a training
  step's Python does) timed alone and started right after a capture, while the copy runs;
- for reference, on the caller: `shutil.copyfile` (a plain copy), `os.link`, and a
  reflink (`FICLONE`) of the freshly written file where the filesystem has one.

The checkpoint and autolog's staging folder (`AUTOLOG_JOURNAL_DIR`) live in `--dir`, the
store in a temporary folder of its own (deleted after each repetition). The mechanism the
copy used is read back from the delivered sidecar (`checkpoints/NAME.json`).

    python benchmarks/checkpoint_capture.py [--dir /tmp] [--size-mb 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from benchmarks.harness import machine_summary  # noqa: E402

_FICLONE = 0x40049409


def write_checkpoint(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def python_loop(n: int) -> float:
    start = time.perf_counter()
    w = 0.0
    for i in range(n):
        x = (i % 97) / 97.0
        w -= 0.01 * ((w * x - x * 0.5) * x)
    return time.perf_counter() - start


def filesystem(path: str) -> str:
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            mounts = [line.split()[1:3] for line in fh]
    except OSError:
        return "unknown"
    best = ("", "unknown")
    real = os.path.realpath(path)
    for mount_point, kind in mounts:
        if (real == mount_point or real.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) > len(best[0]):
            best = (mount_point, kind)
    return best[1]


def reflink_on_caller(src: str, dst: str) -> float | None:
    import fcntl

    start = time.perf_counter()
    s = os.open(src, os.O_RDONLY)
    d = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        fcntl.ioctl(d, _FICLONE, s)
        return time.perf_counter() - start
    except OSError:
        return None
    finally:
        os.close(s)
        os.close(d)
        os.unlink(dst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the checkpoint and the staging folder live")
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop", type=int, default=400_000, help="iterations of the pure-Python loop")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="autolog-ckpt-bench-", dir=args.dir)
    os.environ["AUTOLOG_JOURNAL_DIR"] = os.path.join(work, "journal")
    os.environ["AUTOLOG_LOG_SYSTEM_METRICS"] = "false"
    import autolog
    from autolog import runs
    from autolog.instrument.checkpoints import capture_checkpoint, wait_for_checkpoint
    from autolog.testing import reset_for_tests

    data = os.urandom(args.size_mb * 1024 * 1024)
    path = os.path.join(work, "model.ckpt")
    times: dict[str, list[float]] = {k: [] for k in ("capture", "copy done", "loop alone", "loop during copy",
                                                     "shutil.copyfile", "os.link", "reflink (caller)")}
    mechanisms = set()
    try:
        for _ in range(args.repeats):
            store = tempfile.mkdtemp(prefix="autolog-ckpt-store-")
            os.environ["AUTOLOG_TRACKING_URI"] = store
            try:
                write_checkpoint(path, data)
                with autolog.start_run() as run:
                    start = time.perf_counter()
                    capture_checkpoint(run, path, step=1)
                    times["capture"].append(time.perf_counter() - start)
                    wait_for_checkpoint(path)
                    times["copy done"].append(time.perf_counter() - start)

                    write_checkpoint(path, data)
                    capture_checkpoint(run, path, step=2)
                    times["loop during copy"].append(python_loop(args.loop))
                    wait_for_checkpoint(path)
                    times["loop alone"].append(python_loop(args.loop))
                autolog.flush()
                meta = runs._reader().download_artifacts(run.run_id, "checkpoints/model.ckpt.json",
                                                         tempfile.mkdtemp(dir=store))
                with open(meta, encoding="utf-8") as fh:
                    mechanisms.add(json.load(fh)["snapshot"])
                reset_for_tests()
            finally:
                shutil.rmtree(store, ignore_errors=True)

            write_checkpoint(path, data)
            start = time.perf_counter()
            shutil.copyfile(path, path + ".copy")
            times["shutil.copyfile"].append(time.perf_counter() - start)
            os.unlink(path + ".copy")
            start = time.perf_counter()
            os.link(path, path + ".link")
            times["os.link"].append(time.perf_counter() - start)
            os.unlink(path + ".link")
            write_checkpoint(path, data)
            cloned = reflink_on_caller(path, path + ".clone")
            if cloned is not None:
                times["reflink (caller)"].append(cloned)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"checkpoint of {args.size_mb} MB in {args.dir} ({filesystem(args.dir)}); "
          f"copy made by: {', '.join(sorted(mechanisms))}; medians of {args.repeats} (min-max)\n")
    print("| what | median | range |")
    print("|---|---|---|")
    for name, values in times.items():
        if not values:
            print(f"| {name} | not supported here | |")
            continue
        unit, scale = ("µs", 1e6) if statistics.median(values) < 0.001 else ("ms", 1e3)
        print(f"| {name} | {statistics.median(values) * scale:.1f} {unit} | "
              f"{min(values) * scale:.1f}-{max(values) * scale:.1f} {unit} |")
    print()
    print(machine_summary())


if __name__ == "__main__":
    main()
