"""The benchmark harness: time a workload plain, under `autolog.autolog()` and under `mlflow.autolog()`.

    from benchmarks.harness import compare

    def fit_logreg():
        LogisticRegression(max_iter=200).fit(X, y)

    compare({"LogisticRegression": fit_logreg}, repeats=7)

Each repetition runs every variant once, in an order rotated per repetition (so no
variant always runs first, on a cold cache, or last), after one untimed warm-up of
each. Every variant gets fresh state: autolog and mlflow autologging are both
disabled before each call, and each variant logs into its own temporary store.

The variants:

- `plain`          — neither autolog nor mlflow autologging is on.
- `autolog`        — `autolog.autolog()` into a fresh local store. The timed region is the
                     workload only: the logging it causes is written by autolog's worker
                     thread, and `autolog.flush()` runs *after* the clock stops (this is
                     the cost a user's training sees).
- `autolog+flush`  — the same, with `autolog.flush()` inside the timed region (the cost
                     until every record is on disk). Not in the default set; ask for it.
- `mlflow`         — `mlflow.autolog()` into a fresh sqlite store (`sqlite:///…/mlflow.db`),
                     MLflow's defaults; any run mlflow left active is ended after the clock.

Both autologgers run with `silent=True` unless the options say otherwise (their
warnings are not what is measured).

`compare` prints a Markdown table (median seconds per variant and the ratio of each
to `plain`) and returns the raw timings. `time_calls` measures the per-call cost of a
tiny function (log_metric and friends). Machine facts for a results page come from
`machine_summary()`.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

VARIANTS = ("plain", "autolog", "mlflow")
KNOWN_VARIANTS = ("plain", "autolog", "autolog+flush", "mlflow")


@dataclass
class Comparison:
    """Timings (seconds) per workload and variant, one entry per repetition."""

    variants: tuple
    timings: dict = field(default_factory=dict)  # workload -> variant -> [seconds]

    def median(self, workload: str, variant: str) -> float:
        return statistics.median(self.timings[workload][variant])

    def ratio(self, workload: str, variant: str, base: str = "plain") -> float:
        return self.median(workload, variant) / self.median(workload, base)

    def markdown(self) -> str:
        base = "plain" if "plain" in self.variants else None
        header = ["workload"] + [f"{v} (median)" for v in self.variants]
        if base:
            header += [f"{v} / plain" for v in self.variants if v != base]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for workload in self.timings:
            row = [workload] + [_seconds(self.median(workload, v)) for v in self.variants]
            if base:
                row += [f"{self.ratio(workload, v):.2f}x" for v in self.variants if v != base]
            lines.append("| " + " | ".join(row) + " |")
        repeats = {len(t) for per in self.timings.values() for t in per.values()}
        lines.append("")
        lines.append(f"Medians of {', '.join(map(str, sorted(repeats)))} interleaved repetitions.")
        return "\n".join(lines)


def _seconds(value: float) -> str:
    if value >= 1.0:
        return f"{value:.3f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.1f} µs"


class _Variant:
    """Turns one variant on before a call and off after it, with its own temporary store."""

    def __init__(self, name: str, root: str, autolog_options: Mapping[str, Any], mlflow_options: Mapping[str, Any]):
        if name not in KNOWN_VARIANTS:
            raise ValueError(f"unknown variant {name!r}; known: {', '.join(KNOWN_VARIANTS)}")
        self.name = name
        self.folder = os.path.join(root, name.replace("+", "_"))
        os.makedirs(self.folder, exist_ok=True)
        self.autolog_options = {"silent": True, **autolog_options}
        self.mlflow_options = {"silent": True, **mlflow_options}

    def setup(self) -> None:
        _all_off()
        if self.name.startswith("autolog"):
            import autolog

            autolog.autolog(tracking_uri=os.path.join(self.folder, "autolog-runs"), **self.autolog_options)
        elif self.name == "mlflow":
            import mlflow

            mlflow.set_tracking_uri("sqlite:///" + os.path.join(self.folder, "mlflow.db"))
            mlflow.set_experiment("benchmark")
            mlflow.autolog(**self.mlflow_options)

    def inside_timing(self) -> None:
        """What the variant does inside the timed region after the workload."""
        if self.name == "autolog+flush":
            import autolog

            autolog.flush()

    def teardown(self) -> None:
        if self.name.startswith("autolog"):
            import autolog

            autolog.flush()
        elif self.name == "mlflow":
            import mlflow

            while mlflow.active_run() is not None:
                mlflow.end_run()
            _flush_mlflow_async()
        _all_off()


def _flush_mlflow_async() -> None:
    try:
        import mlflow

        mlflow.flush_async_logging()
    except Exception:  # noqa: BLE001 - older mlflow without it, or nothing pending
        pass


def _all_off() -> None:
    if "autolog" in sys.modules:
        import autolog

        autolog.autolog(disable=True)
        autolog.end_run()
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.autolog(disable=True)


def compare(
    workloads: Mapping[str, Callable[[], Any]],
    variants: Sequence[str] = VARIANTS,
    repeats: int = 5,
    *,
    warmup: int = 1,
    autolog_options: Optional[Mapping[str, Any]] = None,
    mlflow_options: Optional[Mapping[str, Any]] = None,
    title: Optional[str] = None,
    stream=sys.stdout,
) -> Comparison:
    """Time each workload under each variant, interleaved; print and return the medians.

    `workloads`: name -> a callable that trains once (it should build its own estimator;
    data can be made once outside). `autolog_options` / `mlflow_options` go to
    `autolog.autolog(...)` / `mlflow.autolog(...)` (e.g. `{"log_models": False}`).
    """
    variants = tuple(variants)
    root = tempfile.mkdtemp(prefix="autolog-bench-")
    previous_uri = os.environ.get("MLFLOW_TRACKING_URI")
    previous_journal = os.environ.get("AUTOLOG_JOURNAL_DIR")
    os.environ["AUTOLOG_JOURNAL_DIR"] = os.path.join(root, "journal")  # staging copies stay in the temp folder
    result = Comparison(variants)
    try:
        runners = [_Variant(v, root, autolog_options or {}, mlflow_options or {}) for v in variants]
        for name, workload in workloads.items():
            per = result.timings.setdefault(name, {v: [] for v in variants})
            for runner in runners:
                for _ in range(warmup):
                    _time_once(runner, workload)
            for rep in range(repeats):
                shift = rep % len(runners)
                for runner in runners[shift:] + runners[:shift]:
                    per[runner.name].append(_time_once(runner, workload))
    finally:
        _all_off()
        if previous_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        if previous_journal is None:
            os.environ.pop("AUTOLOG_JOURNAL_DIR", None)
        else:
            os.environ["AUTOLOG_JOURNAL_DIR"] = previous_journal
        shutil.rmtree(root, ignore_errors=True)
    if title:
        print(f"\n### {title}\n", file=stream)
    print(result.markdown(), file=stream)
    return result


def _time_once(runner: _Variant, workload: Callable[[], Any]) -> float:
    runner.setup()
    gc.collect()
    try:
        start = time.perf_counter()
        workload()
        runner.inside_timing()
        elapsed = time.perf_counter() - start
    finally:
        runner.teardown()
    return elapsed


def time_calls(fn: Callable[[], Any], calls: int = 10_000, repeats: int = 7, batch: int = 100) -> dict:
    """Per-call cost of `fn`: `calls` calls per repetition, timed in groups of `batch`.

    Returns median / p90 / min seconds per call over all groups, and the total calls.
    The clock is read once per `batch` calls, so its own cost (~50 ns) is spread thin.
    """
    per_call: list[float] = []
    clock = time.perf_counter
    groups = max(1, calls // batch)
    for _ in range(repeats):
        for _ in range(groups):
            start = clock()
            for _ in range(batch):
                fn()
            per_call.append((clock() - start) / batch)
    per_call.sort()
    return {
        "median": statistics.median(per_call),
        "p90": per_call[int(len(per_call) * 0.9)],
        "min": per_call[0],
        "calls": groups * batch * repeats,
    }


def machine_summary() -> str:
    """One line about the machine and the versions, for a results page."""
    parts = [f"Python {platform.python_version()}", f"{os.cpu_count()} CPUs", platform.platform(terse=True)]
    for module in ("autolog", "mlflow", "sklearn", "statsmodels"):
        if module in sys.modules:
            parts.append(f"{module} {getattr(sys.modules[module], '__version__', '?')}")
    return ", ".join(parts)


def fresh_dir(prefix: str = "autolog-bench-") -> str:
    return tempfile.mkdtemp(prefix=prefix)


def iter_rows(result: Comparison) -> Iterable[tuple]:
    """(workload, variant, median seconds) rows, for scripts that write their own tables."""
    for workload, per in result.timings.items():
        for variant in per:
            yield workload, variant, result.median(workload, variant)
