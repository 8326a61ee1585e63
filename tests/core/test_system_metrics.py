"""System metrics: the sampler thread with real psutil, real runs in the local store.

No sleeps and no timed assertions: `sampler.wait_for_samples(run_id, n)` waits on the
sampler's own condition; a run's first sample is awaited with a 60 s interval, which
shows it is taken at the start and not one interval later. GPU checks run where NVML
finds a GPU and are skipped otherwise; the no-GPU path is tested for real here.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import autolog
from autolog.provenance import capture as context
from autolog.provenance import system_metrics as sysmetrics
from autolog.runs import logger_for

MLFLOW_NAMES = [
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/system_memory_usage_percentage",
    "system/disk_usage_percentage",
    "system/disk_usage_megabytes",
    "system/network_receive_megabytes",
    "system/network_transmit_megabytes",
]
OUR_NAMES = ["system/process_memory_rss_megabytes", "system/process_cpu_utilization_percentage"]


def _sampler_threads() -> list:
    return [t for t in threading.enumerate() if t.name == sysmetrics.THREAD_NAME and t.is_alive()]


def _history(run_id: str, key: str) -> list:
    autolog.flush()
    return logger_for().backend.get_metric_history(run_id, key)


def _gpu_present() -> bool:
    return bool(sysmetrics.GpuProbe().devices())


@pytest.fixture
def sampling():
    """autolog with system metrics on (conftest turns them off for every other test)."""
    def enable(interval: float = 60.0, **options):
        autolog.autolog(log_system_metrics=True, system_metrics_interval=interval, **options)
        sampler = context.sampler()
        assert sampler is not None
        return sampler

    yield enable
    autolog.autolog(disable=True)


def test_first_sample_at_run_start_with_mlflow_names_and_steps(sampling):
    sampler = sampling(interval=60.0)
    with autolog.start_run() as run:
        # one interval is 60 s: this returns at once only because the first sample is taken at start
        assert sampler.wait_for_samples(run.run_id, 1, timeout=30)
    metrics = autolog.get_run(run.run_id).metrics
    for name in MLFLOW_NAMES + OUR_NAMES:
        assert name in metrics, name
    assert 0 <= metrics["system/cpu_utilization_percentage"] <= 100 * (os.cpu_count() or 1)
    assert 0 < metrics["system/system_memory_usage_percentage"] <= 100
    assert metrics["system/process_memory_rss_megabytes"] > 1
    assert metrics["system/network_receive_megabytes"] == 0.0  # counted from the run's start
    assert [m.step for m in _history(run.run_id, "system/cpu_utilization_percentage")] == [0]


def test_samples_every_interval_with_rates_and_stops_with_the_run(sampling):
    sampler = sampling(interval=0.2)
    with autolog.start_run() as run:
        assert sampler.wait_for_samples(run.run_id, 3, timeout=30)
        assert len(_sampler_threads()) == 1
        thread = _sampler_threads()[0]
    thread.join(timeout=30)
    assert not thread.is_alive(), "the sampler thread stops when no run is active"
    history = _history(run.run_id, "system/cpu_utilization_percentage")
    steps = [m.step for m in history]
    assert steps == list(range(len(steps))) and len(steps) >= 3
    metrics = autolog.get_run(run.run_id).metrics
    for rate in ("disk_read_megabytes_per_second", "disk_write_megabytes_per_second",
                 "network_receive_megabytes_per_second", "network_transmit_megabytes_per_second"):
        if f"system/{rate}" in metrics:  # a container may have no disk counters
            assert metrics[f"system/{rate}"] >= 0
    assert "system/network_receive_megabytes_per_second" in metrics
    assert autolog.get_run(run.run_id).tags["autolog.system.host"]


def test_outermost_runs_only_and_one_thread(sampling):
    sampler = sampling(interval=60.0)
    with autolog.start_run() as parent:
        with autolog.start_run(nested=True) as child:
            assert sampler.wait_for_samples(parent.run_id, 1, timeout=30)
            assert len(_sampler_threads()) == 1
    assert "system/cpu_utilization_percentage" in autolog.get_run(parent.run_id).metrics
    assert not any(k.startswith("system/") for k in autolog.get_run(child.run_id).metrics)


def test_each_run_counts_its_own_steps(sampling):
    sampler = sampling(interval=60.0)
    run_ids = []
    for _ in range(2):
        with autolog.start_run() as run:
            assert sampler.wait_for_samples(run.run_id, 1, timeout=30)
            run_ids.append(run.run_id)
    for run_id in run_ids:
        assert [m.step for m in _history(run_id, "system/system_memory_usage_megabytes")] == [0]


def test_disable_stops_the_thread_and_nothing_is_logged_after(sampling):
    sampler = sampling(interval=0.05)
    run = autolog.start_run()
    assert sampler.wait_for_samples(run.run_id, 2, timeout=30)
    autolog.autolog(disable=True)
    assert _sampler_threads() == []  # joined by disable: no thread is left that could log
    count = len(_history(run.run_id, "system/cpu_utilization_percentage"))
    assert count >= 2
    with autolog.start_run(nested=True):  # a new run after disable: no sampler wakes up for it
        assert _sampler_threads() == []
    autolog.end_run()
    assert len(_history(run.run_id, "system/cpu_utilization_percentage")) == count


def test_switched_off_by_option_and_environment(sampling, monkeypatch):
    autolog.autolog(log_system_metrics=False)
    with autolog.start_run() as run:
        assert context.sampler() is None and _sampler_threads() == []
    assert not any(k.startswith("system/") for k in autolog.get_run(run.run_id).metrics)
    monkeypatch.setenv("AUTOLOG_LOG_SYSTEM_METRICS", "true")
    monkeypatch.setenv("AUTOLOG_SYSTEM_METRICS_INTERVAL", "2.5")
    autolog.autolog()
    assert context.sampler() is not None and context.sampler().interval == 2.5
    with pytest.raises(ValueError, match="system_metrics_interval"):
        autolog.autolog(system_metrics_interval=0)


def test_without_psutil_one_info_message_and_nothing_else(sampling, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` raises ImportError, as when missing
    monkeypatch.setattr(sysmetrics, "_psutil_missing_reported", False)
    with caplog.at_level(logging.DEBUG, logger="autolog"):
        autolog.autolog(log_system_metrics=True)
        autolog.autolog(log_system_metrics=True)
        with autolog.start_run() as run:
            pass
    assert context.sampler() is None and _sampler_threads() == []
    messages = [r for r in caplog.records if "psutil" in r.getMessage()]
    assert len(messages) == 1 and messages[0].levelno == logging.INFO
    assert autolog.get_run(run.run_id).status == "FINISHED"


def test_no_gpu_means_no_gpu_metrics_and_one_debug_message(caplog):
    if _gpu_present():
        pytest.skip("a GPU is present here")
    probe = sysmetrics.GpuProbe()
    with caplog.at_level(logging.DEBUG, logger="autolog"):
        assert probe.devices() == []
        assert probe.devices() == []  # initialised once
        assert probe.sample() == {}
    gpu_messages = [r for r in caplog.records if "GPU" in r.getMessage()]
    assert len(gpu_messages) == 1 and gpu_messages[0].levelno == logging.DEBUG


@pytest.mark.skipif(not _gpu_present(), reason="no NVIDIA GPU with NVML here")
def test_gpu_metrics_when_a_gpu_is_present(sampling):
    sampler = sampling(interval=60.0)
    with autolog.start_run() as run:
        assert sampler.wait_for_samples(run.run_id, 1, timeout=30)
    metrics = autolog.get_run(run.run_id).metrics
    assert "system/gpu_0_memory_usage_megabytes" in metrics
    assert "system/gpu_0_utilization_percentage" in metrics
    tags = autolog.get_run(run.run_id).tags
    assert int(tags["autolog.env.gpu_count"]) >= 1 and tags["autolog.env.gpus"]


def test_distributed_rank_in_names_and_tags(sampling, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    sysmetrics._node_cache.clear()
    try:
        sampler = sampling(interval=60.0)
        with autolog.start_run() as run:
            assert sampler.wait_for_samples(run.run_id, 1, timeout=30)
    finally:
        sysmetrics._node_cache.clear()
    got = autolog.get_run(run.run_id)
    assert "system/rank_1/cpu_utilization_percentage" in got.metrics
    assert got.tags["autolog.system.node.rank_1.rank"] == "1"
    assert got.tags["autolog.system.node.rank_1.world_size"] == "2"
    assert got.tags["autolog.system.node.rank_1.local_rank"] == "1"


JOINER = textwrap.dedent('''
    import os, sys, autolog
    from autolog.provenance import capture as context
    autolog.autolog(log_system_metrics=True, system_metrics_interval=0.1)
    run = autolog.attach(sys.argv[1])
    assert context.sampler().wait_for_samples(run.run_id, 2, timeout=30)
    autolog.flush()
    print(os.getpid())
''')


def test_joined_run_gets_samples_under_its_node(sampling, tmp_path):
    sampling(interval=60.0)
    with autolog.start_run() as run:
        token = autolog.export_run_context()
        autolog.flush()
        script = tmp_path / "joiner.py"
        script.write_text(JOINER)
        done = subprocess.run([sys.executable, str(script), token], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "AUTOLOG_LOG_SYSTEM_METRICS": "true"})
        assert done.returncode == 0, done.stderr
    pid = done.stdout.strip().splitlines()[-1]
    got = autolog.get_run(run.run_id)
    node = [k for k in got.metrics if k.startswith("system/") and k.endswith(f"_{pid}/cpu_utilization_percentage")]
    assert len(node) == 1, sorted(got.metrics)
    assert len(_history(run.run_id, node[0])) >= 2
    host_tags = [k for k in got.tags if k.startswith("autolog.system.node.") and k.endswith(f"_{pid}.host")]
    assert host_tags


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_has_no_sampler_until_it_starts_a_run(sampling):
    sampler = sampling(interval=60.0)
    with autolog.start_run() as run:
        assert sampler.wait_for_samples(run.run_id, 1, timeout=30)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            status = 1
            try:
                os.close(read_end)
                before = len(_sampler_threads())
                # the parent's run is on the copied stack, but this process does not sample it:
                # its own (nested) run is the outermost one it watches
                with autolog.start_run(nested=True) as own:
                    ok = context.sampler().wait_for_samples(own.run_id, 1, timeout=30)
                autolog.flush()
                os.write(write_end, f"{before} {ok} {own.run_id}".encode())
                status = 0
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                os.write(write_end, f"error {exc!r}".encode())
            finally:
                os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end) as fh:
            answer = fh.read().split()
        _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, answer
    before, ok, own_id = answer
    assert before == "0" and ok == "True"
    assert "system/cpu_utilization_percentage" in autolog.get_run(own_id).metrics


class _VanishingProc:
    """A reader whose source went away (a container that lost /proc): every read fails."""

    def __init__(self):
        self.reads = 0
        self.third = threading.Event()

    def read(self):
        self.reads += 1
        if self.reads >= 3:
            self.third.set()
        raise OSError("/proc/stat: no such file")


def test_a_failing_reading_is_contained_and_sampling_goes_on(contained_errors):
    reader = _VanishingProc()
    sampler = sysmetrics.SystemMetricsSampler(reader, interval=0.05)
    with autolog.start_run() as run:
        sampler.add(run)
        assert reader.third.wait(30)  # tried again at its interval, not given up, not spinning
        sampler.remove(run)
    sampler.close()
    assert contained_errors and {where for where, _ in contained_errors} == {"sampling system metrics"}
    got = autolog.get_run(run.run_id)
    assert got.status == "FINISHED" and not any(k.startswith("system/") for k in got.metrics)
