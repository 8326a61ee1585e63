"""StepMetrics: what lands in the run is exactly the finite scalars; tensors are read on the
logger's worker, never on the training thread; one warning per skipped key; never raises.
(TensorFlow tensors are tested in test_tensorflow_toolkit.py, the one module that imports TF.)"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch

import autolog
from autolog import runs
from autolog.instrument.step_metrics import StepMetrics


def history(run_id: str) -> dict:
    store = runs._reader()
    run = store.get_run(run_id)
    return {key: [(m.step, m.value) for m in store.get_metric_history(run_id, key)] for key in sorted(run.metrics)}


def test_only_finite_scalars_land_in_the_run(caplog):
    weight = torch.tensor(2.0, requires_grad=True)
    with caplog.at_level(logging.WARNING, logger="autolog"):
        with autolog.start_run() as run:
            sink = StepMetrics(run, "test")
            for step in (1, 2):
                sink.log({
                    "int": 3, "float": 0.5 * step, "np_float32": np.float32(0.25), "np_int64": np.int64(7),
                    "np_0d": np.array(1.5), "torch_0d": torch.tensor(0.75) * step, "torch_grad": weight * 3,
                    "torch_1_element": torch.tensor([4.0]),
                    "torch_vector": torch.ones(3), "np_vector": np.zeros(2), "nan": float("nan"),
                    "np_inf": np.float64("inf"), "torch_nan": torch.tensor(float("nan")), "text": "0.5",
                    "flag": True, "none": None,
                }, step=step)
    assert history(run.run_id) == {
        "float": [(1, 0.5), (2, 1.0)], "int": [(1, 3.0), (2, 3.0)], "np_0d": [(1, 1.5), (2, 1.5)],
        "np_float32": [(1, 0.25), (2, 0.25)], "np_int64": [(1, 7.0), (2, 7.0)],
        "torch_0d": [(1, 0.75), (2, 1.5)], "torch_1_element": [(1, 4.0), (2, 4.0)],
        "torch_grad": [(1, 6.0), (2, 6.0)],
    }
    skipped = sorted(r.getMessage().split("metric ")[1].split(" ")[0] for r in caplog.records if "is not logged" in r.getMessage())
    assert skipped == ["'flag'", "'nan'", "'none'", "'np_inf'", "'np_vector'", "'text'", "'torch_nan'",
                       "'torch_vector'"]  # once per key, though logged at two steps


def test_keys_are_prefixed_and_normalised():
    with autolog.start_run() as run:
        sink = StepMetrics(run, "test", prefix="train/")
        sink.log({"val loss@1": 1.0, "acc": torch.tensor(0.5)}, step=0)
    assert set(history(run.run_id)) == {"train/val loss_1", "train/acc"}


class RecordingTensor(torch.Tensor):
    """A real torch tensor that records which thread reads its value."""

    reads: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("item", "__float__", "tolist", "numpy", "__int__"):
            cls.reads.append((name, threading.current_thread().name))
        return super().__torch_function__(func, types, args, kwargs or {})


def test_tensors_are_read_on_the_loggers_worker_with_the_value_and_time_of_the_call():
    RecordingTensor.reads = []
    accumulator = torch.tensor(1.0).as_subclass(RecordingTensor)
    with autolog.start_run() as run:
        sink = StepMetrics(run, "test")
        sink.log({"running_loss": accumulator, "lr": 0.1}, step=5)
        assert RecordingTensor.reads == []  # nothing read on the training thread
        accumulator.add_(100.0)  # an accumulator updated in place after the call
    store = runs._reader()
    [loss] = store.get_metric_history(run.run_id, "running_loss")
    [lr] = store.get_metric_history(run.run_id, "lr")
    assert (loss.step, loss.value) == (5, 1.0)
    assert loss.timestamp == lr.timestamp  # the time of the log call, not of the conversion
    assert RecordingTensor.reads and all(thread == "autolog-logger" for _, thread in RecordingTensor.reads)


def test_log_never_raises(contained_errors):
    with autolog.start_run() as run:
        sink = StepMetrics(run, "test")
        sink.log(None, step=1)  # not a mapping
        sink.log({"loss": 1.0}, step="not a step")
        sink.log({"loss": 2.0}, step=np.int64(3))  # a numpy step is fine
    assert [(where, type(exc)) for where, exc in contained_errors] == [
        ("test: logging step metrics", AttributeError), ("test: logging step metrics", ValueError)]
    assert history(run.run_id) == {"loss": [(3, 2.0)]}


@pytest.mark.parametrize("integration", ["keras", "torch"])
def test_the_warning_names_the_integration(caplog, integration):
    with caplog.at_level(logging.WARNING, logger="autolog"):
        with autolog.start_run() as run:
            StepMetrics(run, integration).log({"bad": "x"}, step=0)
    [record] = [r for r in caplog.records if "bad" in r.getMessage()]
    assert record.getMessage().startswith(f"autolog: {integration}: metric 'bad' is not logged")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_tensor_is_not_synchronised_on_the_caller():
    """With a long kernel queued, `log` returns while the GPU is still busy (no .item() on the
    caller); the worker reads the value once the kernel is done."""
    stream = torch.cuda.current_stream()
    with autolog.start_run() as run:
        sink = StepMetrics(run, "torch")
        torch.cuda._sleep(2_000_000_000)  # about a second of GPU time, queued
        loss = torch.ones(4, device="cuda").sum()  # queued behind it
        sink.log({"loss": loss}, step=1)
        assert not stream.query()  # the caller did not wait for the GPU
    assert history(run.run_id) == {"loss": [(1, 4.0)]}
