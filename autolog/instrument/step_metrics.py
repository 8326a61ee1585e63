"""Per-step and per-epoch scalars from any framework, logged without stalling the training loop.

    sink = StepMetrics(run, "torch", prefix="train/")
    sink.log({"loss": loss, "lr": 0.01, "acc": np.float32(0.9)}, step=global_step)

- Python and numpy numbers (and 0-d numpy arrays: `params.is_scalar_number`) are logged at once: one record each
  for the logger, keys normalised (`validation.normalize_key`, cached per sink).
- Framework tensors holding one element (torch, TensorFlow / Keras, JAX, ...) are not
  read on the training thread: reading a GPU tensor (`.item()`, `float()`, `.numpy()`)
  waits for every kernel queued before it. The sink keeps a detached copy instead (torch:
  `detach().clone()`, a kernel queued like any other, so a later in-place update of an
  accumulator does not change the value logged; a mutable TF or Keras variable:
  `read_value()` of it; immutable tensors as they are) and converts it to a float on the logger's worker
  (`run.defer`), where the wait costs the training loop nothing. The metric keeps the
  time of the `log` call, and the worker writes it in order with the run's other records.
- NaN, infinities, tensors of more than one element, bools, strings and anything else
  that is not a number are skipped, with one warning per key (`containment.warn_once`).
- `log` never raises; an unexpected failure is reported once through containment.

Imports no framework: a tensor is told by its type's module (torch's, by isinstance once
torch is imported).
"""

from __future__ import annotations

import math
import sys
from time import time_ns
from typing import Any, Mapping

from autolog.instrument import containment
from autolog.instrument.params import is_scalar_number
from autolog.validation import metric_int, normalize_key

__all__ = ["StepMetrics"]

_MAX_CACHED_KEYS = 10_000


class StepMetrics:
    def __init__(self, run, integration: str, *, prefix: str = ""):
        self.run = run
        self.integration = integration
        self.prefix = prefix
        self._keys: dict = {}  # the caller's key -> normalised key with prefix

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log one step's scalars; never raises (see the module docstring)."""
        try:
            self._log(metrics, step)
        except Exception as exc:  # noqa: BLE001 - called from inside the user's training loop
            containment.report(f"{self.integration}: logging step metrics", exc)

    def _log(self, metrics: Mapping[str, Any], step: int) -> None:
        step = step if type(step) is int else metric_int(step, "step")
        timestamp = time_ns() // 1_000_000
        run = self.run
        held = None
        for raw_key, value in metrics.items():
            key = self._key(raw_key)
            if type(value) is float or type(value) is int or is_scalar_number(value):
                number = float(value)
            else:
                tensor = _one_element_tensor(value)
                if tensor is None:
                    self._skip(key, value, "not a number or a one-element tensor")
                else:
                    held = held or []
                    held.append((key, tensor))
                continue
            if math.isfinite(number):
                run.log_metric(key, number, step, timestamp, normalize=True)
            else:
                self._skip(key, number, "not finite")
        if held:
            run.defer(lambda: self._log_held(held, step, timestamp),
                      label=f"{self.integration}: converting step metrics")

    def _log_held(self, held: list, step: int, timestamp: int) -> None:
        """On the logger's worker: the tensors kept by `log`, read now."""
        for key, tensor in held:
            try:
                number = _read(tensor)
            except (TypeError, ValueError, RuntimeError) as exc:
                self._skip(key, tensor, f"cannot be read as a number ({exc})")
                continue
            if math.isfinite(number):
                self.run.log_metric(key, number, step, timestamp, normalize=True)
            else:
                self._skip(key, number, "not finite")

    def _key(self, raw_key: Any) -> str:
        key = self._keys.get(raw_key)
        if key is None:
            key = normalize_key(f"{self.prefix}{raw_key}")
            if len(self._keys) < _MAX_CACHED_KEYS:
                self._keys[raw_key] = key
        return key

    def _skip(self, key: str, value: Any, why: str) -> None:
        containment.warn_once(f"{self.integration} step metric {key}",
                              "%s: metric %r is not logged (a %s, %s); this is said once per key",
                              self.integration, key, type(value).__name__, why)


def _read(tensor: Any) -> float:
    """float() of a one-element tensor (TF refuses float() of a shape-(1,) tensor: via numpy)."""
    try:
        return float(tensor)
    except (TypeError, ValueError):
        to_numpy = getattr(tensor, "numpy", None)
        if to_numpy is None:
            raise
        return float(to_numpy().reshape(()))


def _one_element_tensor(value: Any) -> Any:
    """A copy of a framework tensor of one element, safe to read later; None for anything else.
    A tensor is told by the module of its class or of a base class (subclasses of
    torch.Tensor: Parameter, DTensor, a user's own)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return _torch_scalar(value)
    for cls in type(value).__mro__:
        if (cls.__module__ or "").partition(".")[0] in _FRAMEWORKS:
            return _framework_scalar(value)
    return None


_FRAMEWORKS = ("tensorflow", "keras", "tf_keras", "jax", "jaxlib")


def _torch_scalar(value: Any) -> Any:
    torch = sys.modules["torch"]
    if value.dtype is torch.bool or value.dtype.is_complex:
        return None
    if value.numel() != 1:
        return None
    return value.detach().clone()


def _framework_scalar(value: Any) -> Any:
    shape = getattr(value, "shape", None)
    try:
        size = 1
        for dim in shape:
            size *= int(dim)
    except (TypeError, ValueError):  # no shape, or an unknown dimension (a symbolic tensor)
        return None
    if size != 1:
        return None
    read_value = getattr(value, "read_value", None)  # tf.Variable: mutable; read_value() is a snapshot
    if callable(read_value):
        return read_value()
    if callable(getattr(value, "assign", None)):  # a Keras variable: a copy of its backend's value
        inner = getattr(value, "value", None)
        if inner is not None and inner is not value and not callable(inner):
            return _one_element_tensor(inner)
    return value  # immutable (TF and JAX tensors)
