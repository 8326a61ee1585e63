"""One measurement in a fresh interpreter, for benchmarks/harness.py's `compare_fresh`.

    python benchmarks/fresh_child.py SPEC.json

SPEC holds the variant ("plain", "autolog...", "mlflow"), the options of the autologger,
the workload's setup and call (source code), a store folder and whether to sample where
the time goes. The script runs the workload's preamble if it has one (imports a script
makes above its autolog() line; timed: `preamble`), then turns the variant on, as a user's
script does at its top (timed: `enable`), runs the setup (imports, data; timed: `setup`), then the training call
(timed: `train`, and the calling thread's CPU time `train_cpu`), then waits until
everything is written (`autolog.flush()`; for mlflow, its active runs ended and its async
queue flushed; timed from the call's start: `written`, and the CPU time of every thread of
the process over the same span: `written_cpu`), then runs the workload's teardown if it has
one (`spark.stop()`, ...; not timed). It prints one JSON line.

It runs as a script file inside the repository (not `python -c`), so that autolog finds
an entry-point script in a git work tree, as it does for a user's training script: the
source tags, the script hash and the uncommitted diff are part of what is measured.

With `sample: true`, a thread reads the stacks of the training thread and of autolog's
worker every `sample_interval` seconds and says where their time went (`worker`,
`training`: seconds per category). Sampling takes the GIL for a moment each time, so
sampled runs are reported apart from the timed ones.
"""

from __future__ import annotations

import gc
import json
import linecache
import os
import sys
import threading
import time

_SEP = os.sep
# (category, test on one frame's (file, function)); the first category any frame of the
# stack matches names the sample, so the more specific ones come first
WORKER_CATEGORIES = (
    ("waiting for training to pause", lambda f, n: n == "wait" and f.endswith(_SEP + "snapshots.py")),
    ("plots", lambda f, n: n.endswith("_png") or _SEP + "matplotlib" + _SEP in f),
    ("training metrics", lambda f, n: n == "training_metrics"),
    ("model folder", lambda f, n: f.endswith(_SEP.join(("instrument", "models.py"))) or n in (
        "signature_of", "input_example_of")),
    ("unpickling the model snapshot", lambda f, n: n == "load" and f.endswith(_SEP + "snapshots.py")),
    ("datasets", lambda f, n: f.endswith(_SEP + "datasets.py")),
    ("environment", lambda f, n: f.endswith(_SEP + "environment.py") or (
        f.endswith(_SEP + "capture.py") and "environment" in n)),
    ("source tags, git and code state", lambda f, n: f.endswith(_SEP.join(("provenance", "source.py")))),
    ("system metrics", lambda f, n: f.endswith(_SEP + "system_metrics.py")),
    # Spark's jobs run by the pyspark integration after fit (its model's writer, the training
    # summary's metrics): the worker waits in py4j for the JVM
    ("Spark jobs (py4j calls into the JVM)", lambda f, n: _SEP + "py4j" + _SEP in f),
    ("params and other integration work", lambda f, n: _SEP + "integrations" + _SEP in f),
    ("store writes", lambda f, n: _SEP + "backends" + _SEP in f),
)
IDLE = "idle (waiting for records)"
SPARK_WAIT = "waiting for Spark jobs on autolog-spark-work"


def _categorise(frame, categories) -> str:
    stack = []
    while frame is not None:
        stack.append((frame.f_code.co_filename, frame.f_code.co_name))
        frame = frame.f_back
    if stack and stack[0][1] == "run" and stack[0][0].endswith(_SEP + "_spark.py"):
        # the pyspark integration's SparkWork.run blocked on its lock: the piece is being done
        # by another thread (the one `run_alongside` started), the worker waits for it
        return SPARK_WAIT
    for name, test in categories:
        if any(test(f, n) for f, n in stack):
            return name
    # idle: blocked in threading's waits called straight from the logger's loop (`_run`, its
    # `self._wake.wait(...)`), however many frames the thread's start adds below it
    inner = 0
    while inner < len(stack) and stack[inner][0].endswith("threading.py"):
        inner += 1
    if inner and stack[0][1] == "wait" and inner < len(stack) and stack[inner][1] == "_run" and \
            stack[inner][0].endswith(_SEP + "logger.py"):
        return IDLE
    return "other worker work (logger, records)"


_AFTER_FUNCTIONS = ("after_method",)  # autolog/instrument/patching.py, Patcher.after


def _training_category(frame) -> str:
    """autolog's own code, or the training: the innermost frame of autolog (or wrapt) decides;
    where that frame is calling the original (`wrapped(*args, **kwargs)`, as every wrapper
    does, or `original(...)` in the function of `Patcher.after`), what runs inside it is the
    training."""
    while frame is not None:
        path = frame.f_code.co_filename
        if _SEP + "autolog" + _SEP in path or _SEP + "integrations" + _SEP in path or _SEP + "wrapt" + _SEP in path:
            line = linecache.getline(path, frame.f_lineno)
            if "wrapped(" in line or (frame.f_code.co_name in _AFTER_FUNCTIONS and "original(" in line):
                return "training"
            return "autolog (hooks, snapshots, records)"
        frame = frame.f_back
    return "training"


class StackSampler:
    """Samples the training thread and autolog's worker thread: wall and CPU seconds per category.

    The CPU time of each thread comes from its own clock (`pthread_getcpuclockid`): on a
    busy machine a thread waiting for a core or for the GIL spends wall time, not CPU time,
    so the CPU figures say what each step costs, the wall figures how long it took."""

    def __init__(self, interval: float):
        self.interval = interval
        self.worker: dict = {}
        self.worker_cpu: dict = {}
        self.training: dict = {}
        self.training_cpu: dict = {}
        self.threads_cpu: dict = {}  # other threads of autolog: CPU seconds since they started
        self._stop = threading.Event()
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._loop, name="benchmark-sampler", daemon=True)
        self.sampling_training = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _cpu(ident) -> float:
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(ident))
        except (OSError, AttributeError, OverflowError):
            return 0.0

    def _loop(self) -> None:
        last = time.perf_counter()
        cpu_last: dict = {self._main: self._cpu(self._main)}
        while not self._stop.wait(self.interval):
            now = time.perf_counter()
            dt, last = now - last, now
            frames = sys._current_frames()
            threads = threading.enumerate()
            worker = next((t for t in threads if t.name == "autolog-logger"), None)
            for t in threads:
                if t.name.startswith("autolog-") and t is not worker and t.ident in frames:
                    self.threads_cpu[t.name] = self._cpu(t.ident)
            if worker is None:
                self.worker["no worker yet"] = self.worker.get("no worker yet", 0.0) + dt
            elif worker.ident in frames:
                cpu = self._cpu(worker.ident)
                cpu_dt = cpu - cpu_last.get(worker.ident, cpu)
                cpu_last[worker.ident] = cpu
                name = _categorise(frames[worker.ident], WORKER_CATEGORIES)
                self.worker[name] = self.worker.get(name, 0.0) + dt
                self.worker_cpu[name] = self.worker_cpu.get(name, 0.0) + cpu_dt
            if self.sampling_training and self._main in frames:
                cpu = self._cpu(self._main)
                cpu_dt, cpu_last[self._main] = cpu - cpu_last[self._main], cpu
                name = _training_category(frames[self._main])
                self.training[name] = self.training.get(name, 0.0) + dt
                self.training_cpu[name] = self.training_cpu.get(name, 0.0) + cpu_dt
            del frames


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    variant, options = spec["variant"], spec.get("options") or {}
    out: dict = {}
    namespace: dict = {"__name__": "__benchmark__"}
    if spec.get("preamble"):  # what a script imports above its autolog() line, every variant alike
        start = time.perf_counter()
        exec(compile(spec["preamble"], "<preamble>", "exec"), namespace)
        out["preamble"] = time.perf_counter() - start
    start = time.perf_counter()
    if variant.startswith("autolog"):
        import autolog

        autolog.autolog(tracking_uri=os.path.join(spec["store"], "autolog-runs"), **options)
    elif variant == "mlflow":
        import mlflow

        mlflow.set_tracking_uri("sqlite:///" + os.path.join(spec["store"], "mlflow.db"))
        mlflow.set_experiment("benchmark")
        mlflow.autolog(**options)
    out["enable"] = time.perf_counter() - start

    import warnings

    warnings.simplefilter("ignore")  # convergence warnings and the like are not what is measured
    start = time.perf_counter()
    exec(compile(spec["setup"], "<setup>", "exec"), namespace)
    out["setup"] = time.perf_counter() - start
    code = compile(spec["call"], "<string>", "exec")
    gc.collect()

    sampler = StackSampler(spec.get("sample_interval", 0.002)) if spec.get("sample") else None
    if sampler is not None:
        sampler.start()
    start, cpu, process_cpu = time.perf_counter(), time.thread_time(), time.process_time()
    exec(code, namespace)
    out["train"] = time.perf_counter() - start
    out["train_cpu"] = time.thread_time() - cpu
    if sampler is not None:
        sampler.sampling_training = False
        out["worker_cpu_during_call"] = dict(sampler.worker_cpu)
    if variant.startswith("autolog"):
        autolog.flush()
    elif variant == "mlflow":
        while mlflow.active_run() is not None:
            mlflow.end_run()
        try:
            mlflow.flush_async_logging()
        except Exception:  # noqa: BLE001 - nothing pending, or an MLflow without it
            pass
    out["written"] = time.perf_counter() - start
    out["written_cpu"] = time.process_time() - process_cpu  # every thread of the process, the call and the flush
    if sampler is not None:
        sampler.stop()
        out["worker"], out["worker_cpu"] = sampler.worker, sampler.worker_cpu
        out["training"], out["training_cpu"] = sampler.training, sampler.training_cpu
        out["threads_cpu"] = sampler.threads_cpu
    if spec.get("teardown"):  # outside every clock: e.g. spark.stop(), a folder the setup made
        exec(compile(spec["teardown"], "<teardown>", "exec"), namespace)
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
