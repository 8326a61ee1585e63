"""The first system-metrics sample measures the machine's CPU share: a run that ends before its
second sample (most sklearn fits) does not keep a meaningless 0.0. psutil's own
`cpu_percent(None)` keeps its baseline per thread, and autolog primes on the caller's thread
but reads on the sampler's; the reader keeps a baseline of its own."""

from __future__ import annotations

import threading
import time

import pytest

import autolog

psutil = pytest.importorskip("psutil")

from autolog.provenance.system_metrics import MachineReader  # noqa: E402


def burn(seconds: float) -> None:
    """Keep one core busy (real work, so that the kernel's CPU counters move)."""
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1


def test_first_reading_on_another_thread_is_measured():
    reader = MachineReader(psutil)  # primed here, on this thread
    burn(0.3)
    found: dict = {}
    reader_thread = threading.Thread(target=lambda: found.update(reader.read()))
    reader_thread.start()
    reader_thread.join()
    assert 0.0 < found["cpu_utilization_percentage"] <= 100.0


def test_a_run_shorter_than_the_interval_has_a_measured_cpu_share(monkeypatch):
    monkeypatch.setenv("AUTOLOG_LOG_SYSTEM_METRICS", "true")
    autolog.autolog(system_metrics_interval=60)
    burn(0.3)  # between autolog() and the run, as loading data is
    with autolog.start_run("short") as run:
        from autolog.provenance import capture

        assert capture._state.sampler.wait_for_samples(run.run_id, 1, timeout=60)
    autolog.flush()
    history = autolog.runs._reader().get_metric_history(run.run_id, "system/cpu_utilization_percentage")
    assert len(history) == 1 and 0.0 < history[0].value <= 100.0
