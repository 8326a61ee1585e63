"""Consistent copies taken on the training thread, for work done later on the worker.

The user may change their arrays or refit the same estimator right after a training
call returns, so whatever the worker needs later is copied first:
- `pickle_model` takes a byte snapshot of a fitted model (pickle, cloudpickle for what
  pickle refuses); the bytes are written out as the model file, never unpickled into this
  process (unpickling re-creates `__main__` classes in place);
- `DataSnapshot.take` copies at most `max_rows` rows of X / y / sample_weight (arrays into
  memory kept from one fit to the next, `_KeptMemory`);
- `signature_of` and `input_example_of` give MLflow's model signature and input example;
- `TrainingActivity` lets the worker do its heavy post-fit work between fits;
- `caller_variable_name` names a dataset after the caller's variable, as MLflow does.

Imports no ML library at import time; numpy and pandas are imported where needed.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import pickle
import sys
import threading
import time
import weakref
from typing import Any, Optional

log = logging.getLogger("autolog")

INPUT_EXAMPLE_ROWS = 5


# -- the model snapshot -------------------------------------------------------------------
class PickledModel:
    """A fitted estimator as bytes, taken on the training thread."""

    __slots__ = ("data", "serialization_format")

    def __init__(self, data: bytes, serialization_format: str):
        self.data = data
        self.serialization_format = serialization_format

    def load(self) -> Any:
        return pickle.loads(self.data)


def pickle_model(estimator: Any) -> PickledModel:
    """pickle, or cloudpickle for what pickle refuses (lambdas in a FunctionTransformer)."""
    try:
        return PickledModel(pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL), "pickle")
    except Exception as first:  # noqa: BLE001
        try:
            import cloudpickle
        except ImportError:
            raise first from None
        return PickledModel(cloudpickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL), "cloudpickle")


# -- the data snapshot ---------------------------------------------------------------------
class DataSnapshot:
    """At most `max_rows` rows of X, y and sample_weight, copied; evenly spaced when capped
    (so data sorted by label still gives every label). `rows` is the row index used, or
    None when every row was taken."""

    __slots__ = ("X", "y", "sample_weight", "n_rows", "rows")

    def __init__(self, X, y, sample_weight, n_rows: int, rows):
        self.X, self.y, self.sample_weight, self.n_rows, self.rows = X, y, sample_weight, n_rows, rows

    @classmethod
    def take(cls, X, y=None, sample_weight=None, max_rows: int = 100_000) -> Optional["DataSnapshot"]:
        n = _n_rows(X)
        if n is None or max_rows <= 0:
            return None
        rows = None
        if n > max_rows:
            import numpy as np

            rows = np.linspace(0, n - 1, max_rows).round().astype(np.intp)
        X_copy = _copy_rows(X, rows)
        if X_copy is None:
            return None
        y_copy = _copy_rows(y, rows) if y is not None and _n_rows(y) == n else None
        sw_copy = _copy_rows(sample_weight, rows) if sample_weight is not None and _n_rows(sample_weight) == n else None
        return cls(X_copy, y_copy, sw_copy, n, rows)


def _n_rows(data: Any) -> Optional[int]:
    shape = getattr(data, "shape", None)
    if shape is not None:
        try:
            return int(shape[0]) if len(shape) else None
        except (TypeError, IndexError):
            return None
    if isinstance(data, (list, tuple)):
        return len(data)
    return None


def _copy_rows(data: Any, rows) -> Any:
    """A copy of `data` (only `rows` of it when given); None for what cannot be copied."""
    if data is None:
        return None
    try:
        if hasattr(data, "iloc"):  # pandas DataFrame / Series
            return data.iloc[rows].copy() if rows is not None else data.copy()
        if hasattr(data, "tocsr") and hasattr(data, "nnz"):  # scipy sparse
            return data.tocsr()[rows] if rows is not None else data.copy()
        if hasattr(data, "__array__") and hasattr(data, "shape"):
            import numpy as np

            array = np.asarray(data)
            kept = _kept.copy(array, rows)
            if kept is not None:
                return kept
            return array[rows] if rows is not None else array.copy()
        if isinstance(data, (list, tuple)):
            import numpy as np

            picked = [data[i] for i in rows] if rows is not None else list(data)
            return np.asarray(picked)
    except Exception as exc:  # noqa: BLE001 - exotic containers: no metrics, not a failure
        log.debug("autolog: could not copy %s for training metrics: %r", type(data).__name__, exc)
    return None



class _KeptMemory:
    """Memory kept from one fit's data copies to the next's.

    In a loop of short fits each `DataSnapshot` copied X into fresh memory, and the copy was
    freed on the worker after the post-fit job: the allocator gave the pages back and took new
    ones, and the training thread paid hundreds of page faults a fit, in the copy and in the
    fit's own arrays that followed (about a millisecond a fit on 20,000 x 20). Here a copy goes
    into a block kept for its size. A block is lent through a ctypes view of it that every
    array made from the copy refers to (numpy keeps the exporter of a buffer as the base of
    the arrays and views made from it); once the last of them is gone, that view dies and the
    block is free again. So a block is never written while anything can still read it.

    At most `max_bytes` are kept in all, in blocks of `min_block` bytes and up; a copy that
    does not fit is made as before. A block left free for more than `idle_s` is given back at
    the next copy (so a process that stopped fitting keeps at most `max_bytes`).
    """

    def __init__(self, max_bytes: int = 64 * 1048576, min_block: int = 64 * 1024, idle_s: float = 30.0):
        self.max_bytes = max_bytes
        self.min_block = min_block
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._free: list = []  # [block, time it was given back]
        # blocks given back, not yet in `_free`: a deque's append takes no lock of ours, since the
        # last array of a copy may die anywhere, a garbage collection inside `_take` included
        self._returned: collections.deque = collections.deque()
        self._kept = 0  # bytes of every block, free or lent

    def copy(self, array, rows) -> Any:
        """A C-ordered copy of `array` (only `rows` of it when given) in kept memory; None when it
        is not one for kept memory (too small or too large, an object dtype, no room)."""
        import numpy as np

        if array.dtype.hasobject or array.ndim == 0 or not array.dtype.isnative:
            return None
        shape = array.shape if rows is None else (len(rows), *array.shape[1:])
        nbytes = math.prod(shape) * array.dtype.itemsize  # Python ints: np.prod cost 3 us a copy
        if nbytes < self.min_block or nbytes > self.max_bytes:
            return None
        block = self._take(nbytes)
        if block is None:
            return None
        import ctypes

        lent = (ctypes.c_char * nbytes).from_buffer(block)
        out = np.frombuffer(lent, dtype=array.dtype).reshape(shape)
        try:
            if rows is None:
                np.copyto(out, array, casting="no")
            else:
                np.take(array, rows, axis=0, out=out)
        except Exception:  # noqa: BLE001 - as the plain copy would fail or succeed
            del out
            del lent
            return None
        weakref.finalize(lent, self._give_back, block).atexit = False  # nothing to give back at exit
        return out

    def _take(self, nbytes: int) -> Any:
        now = time.monotonic()
        with self._lock:
            while self._returned:
                self._free.append(self._returned.popleft())
            found = None
            for index, (block, _) in enumerate(self._free):
                if block.nbytes == nbytes:
                    found = self._free.pop(index)[0]
                    break
            # blocks idle for long, and blocks of other sizes when there is no room, go back
            for entry in [e for e in self._free if now - e[1] > self.idle_s]:
                self._drop(entry)
            if found is not None:
                return found
            while self._free and self._kept + nbytes > self.max_bytes:
                self._drop(self._free[0])
            if self._kept + nbytes > self.max_bytes:
                return None
            self._kept += nbytes
        import numpy as np

        return np.empty(nbytes, np.uint8)

    def _drop(self, entry: list) -> None:
        self._free.remove(entry)
        self._kept -= entry[0].nbytes

    def _give_back(self, block) -> None:
        self._returned.append([block, time.monotonic()])

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # another thread of the parent may have held it at the fork


_kept = _KeptMemory()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_kept._after_fork_in_child)


# -- schema and input example (on the worker) ---------------------------------------------------
_PANDAS_TO_MLFLOW = {"float64": "double", "float32": "float", "int64": "long", "int32": "integer",
                     "int16": "integer", "int8": "integer", "uint8": "integer", "uint16": "integer",
                     "bool": "boolean", "object": "string", "string": "string", "str": "string"}


def signature_of(model: Any, X: Any, predictions: Any = None) -> Optional[dict]:
    """MLflow's `signature` entry of MLmodel: column names and types (DataFrame) or a tensor spec
    with the shape (arrays); outputs from predicting a few rows, or from the first of
    `predictions` (the model's `predict(X)`, made already for the training metrics)."""
    inputs = _schema_json(X)
    if inputs is None:
        return None
    signature = {"inputs": inputs, "outputs": None, "params": None}
    if predictions is not None or hasattr(model, "predict"):
        try:
            head = _head(predictions, INPUT_EXAMPLE_ROWS) if predictions is not None else model.predict(
                _head(X, INPUT_EXAMPLE_ROWS))
            signature["outputs"] = _schema_json(head, outputs=True)
        except Exception as exc:  # noqa: BLE001 - no outputs in the signature, inputs still useful
            log.debug("autolog: predicting for the signature failed: %r", exc)
    return signature


def _schema_json(data: Any, outputs: bool = False) -> Optional[str]:
    import numpy as np

    if hasattr(data, "dtypes") and hasattr(data, "columns"):  # DataFrame
        cols = []
        for name, dtype in data.dtypes.items():
            kind = _PANDAS_TO_MLFLOW.get(str(dtype))
            if kind is None and str(dtype).startswith("datetime64"):
                kind = "datetime"
            if kind is None:
                return None  # categorical and friends: no schema rather than a wrong one
            cols.append({"type": kind, "name": str(name), "required": True})
        return json.dumps(cols)
    if hasattr(data, "dtype") and hasattr(data, "name") and getattr(data, "ndim", 0) == 1:  # Series
        kind = _PANDAS_TO_MLFLOW.get(str(data.dtype))
        return json.dumps([{"type": kind, "required": True}]) if kind else None
    if hasattr(data, "tocsr"):
        return None  # sparse input: MLflow has no schema type for it
    try:
        array = np.asarray(data)
    except Exception:  # noqa: BLE001
        return None
    if array.dtype.kind not in "biuf":
        if outputs and array.ndim == 1 and array.dtype.kind in "OUS":
            return json.dumps([{"type": "string", "required": True}])
        return None
    shape = [-1, *array.shape[1:]]
    return json.dumps([{"type": "tensor", "tensor-spec": {"dtype": str(array.dtype), "shape": shape}}])


def _head(data: Any, n: int) -> Any:
    if hasattr(data, "iloc"):
        return data.iloc[:n]
    return data[:n]


def input_example_of(X: Any) -> Optional[tuple[str, dict]]:
    """(file name, content) of MLflow's input example: the first rows of the training data."""
    head = _head(X, INPUT_EXAMPLE_ROWS)
    if hasattr(head, "to_json") and hasattr(head, "columns"):
        content = json.loads(head.to_json(orient="split", index=False, date_format="iso"))
        content.pop("index", None)
        content["_info"] = {"type": "dataframe", "pandas_orient": "split"}
        return "input_example.json", content
    if hasattr(head, "toarray"):
        head = head.toarray()
    import numpy as np

    array = np.asarray(head)
    if array.dtype.kind not in "biuf":
        return None
    content = {"inputs": array.tolist(), "_info": {"type": "ndarray", "format": "tf-serving"}}
    return "input_example.json", content


def data_shape(X: Any) -> Optional[str]:
    shape = getattr(X, "shape", None)
    return "x".join(str(int(s)) for s in shape) if shape is not None else None



# -- letting the worker work between fits -------------------------------------------------------
class TrainingActivity:
    """When estimators are being fitted, so that the worker does its heavy post-fit work
    (predicting for metrics, drawing, pickling to disk) between fits, not during them.

    In a loop of short fits (a parameter sweep) the worker's work for fit k would otherwise
    compete with fit k+1 for the GIL and the cores. `wait()` (on the worker) returns once
    no fit has run for `quiet_s`, or after `max_wait_s` at the latest: a long fit that
    starts right after delays the previous fit's metrics by at most that, never more, and
    nothing is dropped. While someone waits for everything to be written (`flushing()`:
    `autolog.flush()`, the exit) it returns at once: the caller waits for the work, and the
    quiet time would only add to its wait (50 ms after a script's last fit).
    """

    _all: "weakref.WeakSet[TrainingActivity]" = weakref.WeakSet()

    def __init__(self, quiet_s: float = 0.05, max_wait_s: float = 2.0):
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self._changed = threading.Condition(threading.Lock())
        self._busy = 0
        self._last_end = 0.0
        TrainingActivity._all.add(self)

    def __enter__(self) -> "TrainingActivity":
        with self._changed:
            self._busy += 1
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        with self._changed:
            self._busy -= 1
            self._last_end = time.monotonic()
            self._changed.notify_all()
        return False

    @contextlib.contextmanager
    def paused(self):
        """On the training thread, inside a fit's hooks, around a wait that is not training: the
        logger's back-pressure on its backlog of post-fit work. Without it that wait counts as a
        fit in progress, and the worker, whose job would make room, waits `max_wait_s` for it to
        end (a loop of short fits then ran at one fit per `max_wait_s`)."""
        with self._changed:
            self._busy -= 1
            self._last_end = time.monotonic() - self.quiet_s  # quiet now: the worker need not wait
            self._changed.notify_all()
        try:
            yield self
        finally:
            with self._changed:
                self._busy += 1

    def wait(self) -> None:
        from autolog.transport.logger import exiting

        if exiting():  # atexit or SIGTERM: the exit's flush is bounded, and nothing will train after it
            return
        deadline = time.monotonic() + self.max_wait_s
        with self._changed:
            while True:
                now = time.monotonic()
                if now >= deadline or _flushes:
                    return
                if self._busy:
                    self._changed.wait(deadline - now)
                    continue
                quiet_for = now - self._last_end
                if quiet_for >= self.quiet_s:
                    return
                self._changed.wait(min(self.quiet_s - quiet_for, deadline - now))



_flushes = 0  # how many callers wait in flushing() now
_flushes_lock = threading.Lock()


@contextlib.contextmanager
def flushing():
    """Around a wait for everything to be written (`autolog.flush()`): the worker's post-fit
    work stops waiting for training to pause (`TrainingActivity.wait`) while it lasts."""
    global _flushes
    with _flushes_lock:
        _flushes += 1
    for activity in list(TrainingActivity._all):
        with activity._changed:
            activity._changed.notify_all()
    try:
        yield
    finally:
        with _flushes_lock:
            _flushes -= 1


def _own_module(name: str) -> bool:
    return name in ("autolog", "wrapt") or name.startswith(("autolog.", "wrapt."))


def caller_variable_name(value: Any) -> Optional[str]:
    """Name of a local (or global) variable holding `value` in the first frame outside
    autolog and wrapt, as MLflow's autologging names evaluation datasets."""
    frame = sys._getframe(1)
    try:
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if not _own_module(module):
                break
            frame = frame.f_back
        if frame is None:
            return None
        for scope in (frame.f_locals, frame.f_globals):
            for name, candidate in scope.items():
                if candidate is value and not name.startswith("_"):
                    return name
        return None
    finally:
        del frame

