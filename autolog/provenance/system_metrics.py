"""System metrics: one background thread samples the machine while runs are active.

`SystemMetricsSampler` owns one daemon thread, "autolog-system-metrics". It runs
while at least one run is registered (`add(run)` from the run-start hook, `remove(run)`
from the run-end hook) and stops by itself when none has been left for a couple of
seconds. Each run gets its
first sample as soon as it is registered (taken on the sampler thread, never on the
caller's) and then one every `interval` seconds, logged as metrics under `system/`
with step = that run's own sample index (0, 1, 2, ...). A run that starts within half
a second of the latest reading gets that reading as its first sample (a loop of short
fits does not read the machine once per fit).

Only the outermost runs are sampled: a run whose parent is itself registered gets no
samples of its own (the machine is the same; its parent's curves cover it).

Metric names follow MLflow's system metrics where MLflow has one
(`system/cpu_utilization_percentage`, `system/gpu_0_power_usage_watts`, ...), plus the
process's own memory and CPU and disk/network I/O rates. In a distributed job (RANK set,
or a run joined with `autolog.attach`) the names carry a node id,
`system/<node>/cpu_utilization_percentage`, so that ranks logging into one run do not
overwrite each other, and the run is tagged with the node's host and rank.

psutil is optional (extra `autolog[system]`): without it there is one info message and
no thread. GPUs are read through pynvml (nvidia-ml-py) when it is installed and NVML
initialises; otherwise there is one debug message and no GPU metrics.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Optional

from autolog.instrument import containment
from autolog.instrument.role import process_role
from autolog.validation import normalize_key

log = logging.getLogger("autolog")

THREAD_NAME = "autolog-system-metrics"
PREFIX = "system/"
_MB = 1e6
_MIN_RATE_SECONDS = 0.1  # rates over a shorter window are noise: left out of that sample
_REUSE_SECONDS = 0.5  # a reading this recent is reused for a run that starts now (loops of short fits)
_LINGER_SECONDS = 2.0  # the thread waits this long for a next run before it stops
ENV_NODE_ID = "AUTOLOG_SYSTEM_METRICS_NODE_ID"


# -- what a sample reads ------------------------------------------------------------------
_psutil_missing_reported = False


def load_psutil() -> Any:
    """The psutil module, or None (with one info message per process) when it is not installed."""
    global _psutil_missing_reported
    try:
        import psutil
    except ImportError:
        if not _psutil_missing_reported:
            _psutil_missing_reported = True
            log.info("autolog: system metrics need psutil (pip install 'autolog[system]'); they are not logged")
        return None
    return psutil


class GpuProbe:
    """NVIDIA GPUs through pynvml, initialised once per process (lazily, off the caller's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tried = False
        self._pid = os.getpid()
        self.nvml: Any = None
        self.handles: list = []
        self.names: list[str] = []

    def devices(self) -> list:
        """NVML handles of the GPUs; [] when there is no pynvml, no driver or no GPU."""
        with self._lock:
            if self._pid != os.getpid():  # NVML state does not survive a fork
                self._tried, self.nvml, self.handles, self.names = False, None, [], []
                self._pid = os.getpid()
            if not self._tried:
                self._tried = True
                self._init()
            return self.handles

    def _init(self) -> None:
        try:
            import pynvml
        except ImportError:
            log.debug("autolog: pynvml (nvidia-ml-py) is not installed; no GPU metrics")
            return
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            names = []
            for handle in handles:
                name = pynvml.nvmlDeviceGetName(handle)
                names.append(name.decode() if isinstance(name, bytes) else str(name))
        except Exception as exc:  # noqa: BLE001 - NVMLError of every kind: no driver, no GPU, ...
            log.debug("autolog: NVIDIA GPUs are not readable (%s); no GPU metrics", exc)
            return
        self.nvml, self.handles, self.names = pynvml, handles, names

    def sample(self) -> dict:
        """Utilisation, memory and power of each GPU, MLflow's names; a reading that fails is left out."""
        handles = self.devices()
        nvml = self.nvml
        metrics: dict[str, float] = {}
        for i, handle in enumerate(handles):
            try:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                metrics[f"gpu_{i}_memory_usage_megabytes"] = memory.used / _MB
                metrics[f"gpu_{i}_memory_usage_percentage"] = memory.used / memory.total * 100 if memory.total else 0.0
            except Exception:  # noqa: BLE001 - some GPUs do not report everything
                pass
            try:
                metrics[f"gpu_{i}_utilization_percentage"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:  # noqa: BLE001
                pass
            try:
                milliwatts = nvml.nvmlDeviceGetPowerUsage(handle)
                metrics[f"gpu_{i}_power_usage_watts"] = milliwatts / 1000
                limit = nvml.nvmlDeviceGetEnforcedPowerLimit(handle)
                if limit:
                    metrics[f"gpu_{i}_power_usage_percentage"] = milliwatts / limit * 100
            except Exception:  # noqa: BLE001
                pass
        return metrics


gpus = GpuProbe()


#: the longest a reading waits for the kernel's CPU counters to move past the baseline
_CPU_TICK_WAIT_SECONDS = 0.1


def _cpu_total(times) -> float:
    """All CPU time of a `cpu_times()` reading; on Linux guest time is already in user/nice."""
    return sum(times) - getattr(times, "guest", 0) - getattr(times, "guest_nice", 0)


class MachineReader:
    """Reads the machine with psutil; rates are computed against the previous reading."""

    def __init__(self, psutil: Any, gpu_probe: Optional[GpuProbe] = None):
        self.psutil = psutil
        self.gpu_probe = gpu_probe
        self.process = psutil.Process()
        self._previous: Optional[tuple] = None
        self.prime()

    def _counters(self) -> tuple:
        ps = self.psutil
        disk = net = None
        try:
            disk = ps.disk_io_counters()
        except Exception:  # noqa: BLE001 - containers without /proc/diskstats
            pass
        try:
            net = ps.net_io_counters()
        except Exception:  # noqa: BLE001
            pass
        return time.monotonic(), disk, net

    def prime(self) -> None:
        """Take the baseline for CPU percentages and rates (the next reading is measured from here).

        The machine's CPU share is measured against our own baseline of `cpu_times()`, not with
        `psutil.cpu_percent(None)`, whose baseline is per thread (psutil >= 5.9.6): primed on
        the thread that called `autolog()`, the sampler thread's first call would answer 0.0,
        and a run that ends before its second sample (most sklearn fits) would keep that."""
        self._cpu_before = self.psutil.cpu_times()
        try:
            self.process.cpu_percent(None)
        except Exception:  # noqa: BLE001
            pass
        self._previous = self._counters()

    def _cpu_busy_percentage(self) -> Optional[float]:
        """The machine's busy CPU share since the previous reading, as psutil computes it.

        The kernel's counters move in ticks (10 ms per CPU): a reading right after the baseline
        waits on this (the sampler's) thread for the next tick, at most _CPU_TICK_WAIT_SECONDS."""
        before = self._cpu_before
        deadline = time.monotonic() + _CPU_TICK_WAIT_SECONDS
        while True:
            now = self.psutil.cpu_times()
            total = _cpu_total(now) - _cpu_total(before)
            if total > 0:
                break
            if time.monotonic() >= deadline:
                return None  # counters that do not move: no value rather than a made-up 0.0
            time.sleep(0.005)
        self._cpu_before = now
        busy = total - (now.idle - before.idle) - (getattr(now, "iowait", 0) - getattr(before, "iowait", 0))
        return round(min(100.0, max(0.0, busy / total * 100)), 1)

    def read(self) -> dict:
        ps = self.psutil
        if self.process.pid != os.getpid():  # a forked child measures itself, from a fresh baseline
            self.process = ps.Process()
            self.prime()
        metrics: dict[str, float] = {}
        busy = self._cpu_busy_percentage()
        if busy is not None:
            metrics["cpu_utilization_percentage"] = busy
        memory = ps.virtual_memory()
        metrics["system_memory_usage_megabytes"] = memory.used / _MB
        metrics["system_memory_usage_percentage"] = memory.used / memory.total * 100 if memory.total else 0.0
        try:
            with self.process.oneshot():
                metrics["process_memory_rss_megabytes"] = self.process.memory_info().rss / _MB
                metrics["process_cpu_utilization_percentage"] = float(self.process.cpu_percent(None))
        except Exception:  # noqa: BLE001 - the process table may refuse
            pass
        try:
            usage = ps.disk_usage(os.sep)
            metrics["disk_usage_percentage"] = float(usage.percent)
            metrics["disk_usage_megabytes"] = usage.used / _MB
            metrics["disk_available_megabytes"] = usage.free / _MB
        except Exception:  # noqa: BLE001
            pass
        now = self._counters()
        before, self._previous = self._previous, now
        if before is not None:
            seconds = now[0] - before[0]
            if seconds >= _MIN_RATE_SECONDS:
                if now[1] is not None and before[1] is not None:
                    metrics["disk_read_megabytes_per_second"] = max(0, now[1].read_bytes - before[1].read_bytes) / _MB / seconds
                    metrics["disk_write_megabytes_per_second"] = max(0, now[1].write_bytes - before[1].write_bytes) / _MB / seconds
                if now[2] is not None and before[2] is not None:
                    metrics["network_receive_megabytes_per_second"] = max(0, now[2].bytes_recv - before[2].bytes_recv) / _MB / seconds
                    metrics["network_transmit_megabytes_per_second"] = max(0, now[2].bytes_sent - before[2].bytes_sent) / _MB / seconds
        if now[2] is not None:
            metrics["_network_totals"] = (now[2].bytes_recv / _MB, now[2].bytes_sent / _MB)
        if self.gpu_probe is not None:
            metrics.update(self.gpu_probe.sample())
        return metrics


# -- where a run's samples go --------------------------------------------------------------
_RANKED_LAUNCHERS = ("torchrun", "torch.distributed", "lightning", "tf_config")


def node_identity(attached: bool, role: Any = None) -> tuple[Optional[str], dict]:
    """(node id for metric names or None, tags naming host and rank) of this process. The
    rank is the process role's (autolog/instrument/role.py) in a multi-process job: Lightning's
    launcher and TF_CONFIG set no RANK variable."""
    try:
        host = socket.gethostname()
    except OSError:
        host = "unknown-host"
    role = role or process_role()
    if role.launcher in _RANKED_LAUNCHERS and role.rank >= 0:
        rank, local_rank, world_size = str(role.rank), str(role.local_rank), str(role.world_size)
    else:
        rank = os.environ.get("RANK")
        local_rank = os.environ.get("LOCAL_RANK")
        world_size = os.environ.get("WORLD_SIZE")
    node = os.environ.get(ENV_NODE_ID) or None
    if node is None and rank is not None:
        node = f"rank_{rank}"
    if node is None and attached:
        node = f"{host}_{os.getpid()}"  # several processes may join one run
    info = {"host": host}
    for name, value in (("rank", rank), ("local_rank", local_rank), ("world_size", world_size)):
        if value is not None:
            info[name] = value
    if node is not None:
        node = normalize_key(node).replace("/", "_")
        tags = {f"autolog.system.node.{node}.{k}": v for k, v in info.items()}
    else:
        tags = {f"autolog.system.{k}": v for k, v in info.items()}
    return node, tags


class _Watched:
    __slots__ = ("run", "step", "due", "prefix", "tags", "network_baseline")

    def __init__(self, run: Any, prefix: str, tags: dict):
        self.run = run
        self.step = 0
        self.due = 0.0  # first sample right away
        self.prefix = prefix
        self.tags = tags
        self.network_baseline: Optional[tuple] = None


class SystemMetricsSampler:
    """One daemon thread that samples while runs are registered, and logs to the outermost ones."""

    def __init__(self, reader: Any, interval: float = 10.0):
        self.interval = float(interval)
        self.reader = reader  # has read() -> {name: value}; a MachineReader in real use
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified after each logged sample
        self._wake = threading.Event()
        self._runs: dict[str, _Watched] = {}
        self._thread: Optional[threading.Thread] = None
        self._steps: dict[str, int] = {}  # run id -> samples logged, kept after the run ends
        self._closed = False
        self._pid = os.getpid()
        self._last_reading: Optional[tuple] = None  # (monotonic time, values) of the latest reading
        self.samples_logged = 0

    # -- registration (caller's thread: O(1), no I/O) ----------------------------------------
    def add(self, run: Any) -> None:
        if self._pid != os.getpid():
            self._init_process_state()  # a forked child: nothing of the parent's
        attached = getattr(run, "owner", None) == "attached"
        node, tags = _node_cache.get(attached)
        prefix = PREFIX + (node + "/" if node else "")
        with self._lock:
            if self._closed or run.run_id in self._runs:
                return
            self._runs[run.run_id] = _Watched(run, prefix, tags)
            if self._thread is None:
                thread = containment.background_thread(self._loop, THREAD_NAME)
                self._thread = thread
                thread.start()
        self._wake.set()

    def remove(self, run: Any) -> None:
        if self._pid != os.getpid():
            return
        with self._lock:
            self._runs.pop(run.run_id, None)
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop for good: after this returns, nothing more is logged."""
        if self._pid != os.getpid():
            self._init_process_state()  # a forked child: the parent's lock may be held
        with self._lock:
            self._closed = True
            self._runs.clear()
            thread = self._thread
            self._changed.notify_all()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread() and self._pid == os.getpid():
            thread.join(timeout)

    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def wait_for_samples(self, run_id: str, count: int, timeout: float = 30.0) -> bool:
        """Block until `run_id` has had `count` samples logged (tests and examples use it)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                if self._steps.get(run_id, 0) >= count:
                    return True
                if run_id not in self._runs or self._closed:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)

    # -- the thread -----------------------------------------------------------------------------
    def _loop(self) -> None:
        idle_since: Optional[float] = None
        try:
            while True:
                self._wake.clear()  # before looking: a run added from here on wakes the wait below
                with self._lock:
                    for run_id in [k for k, w in self._runs.items() if w.run.end_time is not None]:
                        del self._runs[run_id]  # ended without the end hook (a child ended with its parent)
                    now = time.monotonic()
                    if self._closed:
                        self._thread = None
                        return
                    if not self._runs:
                        # linger a little: a loop of short fits does not start a thread per run
                        idle_since = now if idle_since is None else idle_since
                        if now - idle_since >= _LINGER_SECONDS:
                            self._thread = None
                            return
                        due, wait = [], idle_since + _LINGER_SECONDS - now
                    else:
                        idle_since = None
                        eligible = self._outermost()
                        due = [w for w in eligible if w.due <= now]
                        wait = min((w.due for w in eligible), default=now + self.interval) - now
                if due:
                    self._sample(due)
                    continue
                self._wake.wait(max(0.0, wait))
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
                self._changed.notify_all()

    def _outermost(self) -> list:
        watched = [w for w in self._runs.values() if w.run.end_time is None]
        ids = {w.run.run_id for w in watched}
        return [w for w in watched if w.run.parent_run_id not in ids]

    def _sample(self, due: list) -> None:
        values: Optional[dict] = None
        last = self._last_reading
        if last is not None and time.monotonic() - last[0] < min(_REUSE_SECONDS, self.interval / 2):
            values = dict(last[1])  # the machine as read a moment ago: no second reading
        else:
            with containment.contained("sampling system metrics"):
                values = dict(self.reader.read())
                self._last_reading = (time.monotonic(), dict(values))
        totals = values.pop("_network_totals", None) if values is not None else None
        timestamp = time.time_ns() // 1_000_000
        with self._lock:
            # checked under the lock that close() and remove() take: nothing is logged after them
            now = time.monotonic()
            for w in due:
                w.due = now + self.interval  # also after a failed reading: no busy loop
                if values is None or self._closed or self._runs.get(w.run.run_id) is not w or w.run.end_time is not None:
                    continue
                metrics = dict(values)
                if totals is not None:
                    if w.network_baseline is None:
                        w.network_baseline = totals
                    metrics["network_receive_megabytes"] = max(0.0, totals[0] - w.network_baseline[0])
                    metrics["network_transmit_megabytes"] = max(0.0, totals[1] - w.network_baseline[1])
                with containment.contained("logging system metrics"):
                    if w.step == 0 and w.tags:
                        w.run.set_tags(w.tags, normalize=True)
                    w.run.log_metrics({w.prefix + k: v for k, v in metrics.items()}, step=w.step,
                                      timestamp=timestamp, normalize=True)
                w.step += 1
                self.samples_logged += 1
                if len(self._steps) > 10_000:
                    self._steps.clear()
                self._steps[w.run.run_id] = w.step
            self._changed.notify_all()


class _NodeCache:
    """The node identity per process and role (a Lightning process becomes rank 0 of its job
    inside `fit`)."""

    def __init__(self) -> None:
        self._values: dict = {}
        self._pid = os.getpid()

    def get(self, attached: bool) -> tuple:
        if self._pid != os.getpid():
            self._values, self._pid = {}, os.getpid()
        role = process_role()
        value = self._values.get((attached, role))
        if value is None:
            if len(self._values) > 16:
                self._values = {}
            value = self._values[(attached, role)] = node_identity(attached, role)
        return value

    def clear(self) -> None:
        self._values = {}


_node_cache = _NodeCache()
