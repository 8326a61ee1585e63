"""The datasets a run was trained or evaluated on, recorded as MLflow's `log_input` records them.

Each dataset becomes MLflow's Dataset entity (`autolog.entities.Dataset`): a name, a digest,
a source (`source_type` "code": the script and git commit that ran), a schema and a profile
in MLflow's JSON, and the input tag `mlflow.data.context` ("train", "eval"), so that the
MLflow backend fills the UI's Datasets column and a run logged by `mlflow.autolog()` on the
same data shows the same digest:

| data                      | digest (8 hex)                                  | schema             | profile |
|---------------------------|-------------------------------------------------|--------------------|---------|
| pandas DataFrame (Series) | first 10,000 rows' string and number columns, row count, column names | `mlflow_colspec` | `num_rows`, `num_elements` |
| numpy array, list         | first 10,000 elements of features (and targets), every dimension | `mlflow_tensorspec` | `features_shape/size/nbytes` (and `targets_...`) |
| scipy sparse matrix       | as the dense array would give (first rows only are made dense) | `mlflow_tensorspec` | as dense |
| Spark DataFrame           | its logical plan's semantic hash, as MLflow's SparkDataset | `mlflow_colspec` | `approx_count` |

A Spark DataFrame is described without a Spark job: MLflow's SparkDataset counts the rows with
an approximate-count job (up to 5 s, on the training thread), autolog takes the row count
from the optimised plan's statistics, which Spark has for local data, `spark.range`, cached
and materialised DataFrames and tables with statistics; elsewhere `approx_count` is
"unknown", MLflow's own word for a count it could not make.

On the training thread only a bounded copy is taken: the first rows that the digest and the
schema read (at most 10,000 rows), or nothing at all when the integration hands over the
`DataSnapshot` it took already; the digest, schema and profile are computed on the logger's
worker (`ActiveRun.defer`), and the result is one "i" record of the logger, retried, spilled
and replayed like any other. The digest equals MLflow's when pandas is installed (MLflow
hashes with pandas) and, from a `DataSnapshot`, when it holds every row; a snapshot capped
at `max_metric_rows` rows hashes the rows it holds (the profile still counts every row).

    from autolog.instrument.datasets import log_dataset
    log_dataset(run, data_snapshot, context="train", name=caller_variable_name(X))   # an integration
    autolog.log_input(df, context="eval")                                           # a user

`data_rows(data)` and `declared_batch_size(data)` say what training data tells of itself
without being read (an integration inferring the batch size a fit uses): the rows of arrays
and of structures of them, and the batch a data loader or a tf.data pipeline states.

Imports no ML library at import time; numpy (and pandas, for DataFrames) where needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import struct
from collections.abc import Mapping
from typing import Any, Callable, Optional

from autolog.entities import CONTEXT_TAG, Dataset, DatasetInput
from autolog.instrument import containment
from autolog.instrument.params import is_array_like
from autolog.instrument.snapshots import DataSnapshot, caller_variable_name

#: MLflow's digest reads at most this many rows (DataFrames) or elements (arrays): mlflow.data.digest_utils.MAX_ROWS
DIGEST_ROWS = 10_000
DEFAULT_NAME = "dataset"  # MLflow's name for a dataset nobody named
SOURCE_TYPE = "code"  # MLflow's CodeDatasetSource: the code that ran is the source
# MLflow's limits (mlflow/utils/validation.py): a longer name or context is cut, a longer schema left out
MAX_NAME_LENGTH = 500
MAX_SCHEMA_LENGTH = 1_048_575
MAX_TAG_VALUE_LENGTH = 500

__all__ = ["log_dataset", "log_input", "describe", "data_rows", "declared_batch_size", "DIGEST_ROWS", "UnsupportedData"]


class UnsupportedData(TypeError):
    """Data of a kind no dataset can be described from (a generator, a dict, a string...)."""


def log_dataset(run, data: Any, *, targets: Any = None, context: Optional[str] = "train",
                name: Optional[str] = None) -> bool:
    """For integrations: record `data` as an input of `run` when `log_datasets` is on.

    `data`: the `DataSnapshot` the integration took (nothing is copied again), or the data
    itself (a bounded copy is taken now); `targets`: y, with raw array data (a snapshot
    carries its own). Cheap on the training thread; the description is made on the worker.
    Returns False (and records nothing) when `log_datasets` is off or the data is of a kind
    no dataset is made of (one warning per kind, as MLflow's "Unrecognized dataset type"; never
    an error: training goes on either way).
    """
    from autolog.runs import settings

    if not settings().log_datasets:
        return False
    try:
        return _queue(run, data, targets, context, name)
    except UnsupportedData as exc:
        containment.warn_once(f"datasets: {type(data).__name__}", "no dataset is recorded for %s", exc)
        return False


def log_input(run, data: Any, *, targets: Any = None, context: Optional[str] = "train",
              name: Optional[str] = None) -> None:
    """What `autolog.log_input` does: record `data` as an input of `run`, whatever the
    `log_datasets` setting (the user asked). Raises UnsupportedData (a TypeError) for data
    no dataset can be made of."""
    _queue(run, data, targets, context, name)


def _queue(run, data: Any, targets: Any, context: Optional[str], name: Optional[str]) -> bool:
    if name is None and not isinstance(data, (DataSnapshot, Dataset)):
        name = caller_variable_name(data)
    sample = _Sample.take(data, targets)  # on the caller: a bounded copy, or none from a snapshot
    run_id = run.run_id

    def describe_on_worker() -> None:
        run._enqueue(("i", run_id, (DatasetInput(sample.describe(name), _tags(context)),)))

    run.defer(describe_on_worker, label=f"describing a dataset of run {run_id}")
    return True


def describe(data: Any, *, targets: Any = None, name: Optional[str] = None) -> Dataset:
    """The Dataset entity of `data` (computed here, on the calling thread)."""
    return _Sample.take(data, targets).describe(name)


def _tags(context: Optional[str]) -> dict:
    return {CONTEXT_TAG: str(context)[:MAX_TAG_VALUE_LENGTH]} if context else {}


# -- what is taken on the training thread -----------------------------------------------------
class _Sample:
    """What the description needs, taken on the caller: the rows the digest and the schema read
    (a copy, or the snapshot's own copies), the full shapes, and what kind of data it was."""

    __slots__ = ("kind", "features", "targets", "shape", "targets_shape", "given")

    def __init__(self, kind: str, features: Any, targets: Any, shape: tuple, targets_shape: Optional[tuple],
                 given: Any = None):
        self.kind = kind  # "frame", "tensor", "sparse", "given" (an MLflow Dataset object)
        self.features, self.targets = features, targets
        self.shape, self.targets_shape = shape, targets_shape
        self.given = given

    @classmethod
    def take(cls, data: Any, targets: Any = None) -> "_Sample":
        if isinstance(data, DataSnapshot):
            if data.X is None:
                raise UnsupportedData("a data snapshot without features")
            kind = _kind(data.X)
            shape = (data.n_rows,) + tuple(data.X.shape[1:])
            y = data.y if kind != "frame" else None
            y_shape = (data.n_rows,) + tuple(getattr(y, "shape", (0,))[1:]) if y is not None else None
            return cls(kind, data.X, y, shape, y_shape)
        if _is_mlflow_dataset(data) or isinstance(data, Dataset):
            return cls("given", None, None, (), None, given=data)
        kind = _kind(data)
        if kind == "spark":  # immutable (a plan): described on the worker, nothing copied
            return cls(kind, data, None, (), None)
        if kind == "frame":
            frame = data.to_frame() if getattr(data, "ndim", 2) == 1 else data
            return cls(kind, frame.iloc[:DIGEST_ROWS].copy(), None, tuple(frame.shape), None)
        features, shape = _head(data, kind)
        y, y_shape = None, None
        if targets is not None:
            try:
                y, y_shape = _head(targets, _kind(targets))
            except UnsupportedData:
                pass  # the features alone, as for data without targets
        return cls(kind, features, y, shape, y_shape)

    # -- on the worker -------------------------------------------------------------------
    def describe(self, name: Optional[str]) -> Dataset:
        if isinstance(self.given, Dataset):  # described already (by an integration, off this thread)
            return dataclasses.replace(self.given, name=_name(name)) if name else self.given
        if self.kind == "given":
            return _from_mlflow_dataset(self.given, name)
        if self.kind == "spark":
            rows = spark_row_count(self.features)
            digest, schema = _spark_digest(self.features), _spark_schema(self.features.schema)
            profile = {"approx_count": rows if rows else "unknown"}
        elif self.kind == "frame":
            head = self.features.iloc[:DIGEST_ROWS]  # a snapshot may hold more rows than are read
            digest, schema = _frame_digest(head, self.shape[0]), _frame_schema(head)
            profile: dict = {"num_rows": int(self.shape[0]), "num_elements": int(math.prod(self.shape))}
        else:
            features = _dense(self.features[:_rows_for(self.shape)])
            targets = _dense(self.targets[:_rows_for(self.targets_shape)]) if self.targets is not None else None
            digest = _tensor_digest([(features, self.shape)] +
                                    ([(targets, self.targets_shape)] if targets is not None else []))
            schema = {"mlflow_tensorspec": {"features": _tensor_spec(features),
                                            "targets": _tensor_spec(targets) if targets is not None else None}}
            profile = _tensor_profile("features", features, self.shape)
            if targets is not None:
                profile.update(_tensor_profile("targets", targets, self.targets_shape))
        schema_text = json.dumps(schema) if schema is not None else None
        if schema_text is not None and len(schema_text) > MAX_SCHEMA_LENGTH:
            schema_text = None  # thousands of columns: MLflow would refuse the whole dataset
        return Dataset(name=_name(name), digest=digest, source_type=SOURCE_TYPE, source=_source(),
                       schema=schema_text, profile=json.dumps(profile))


def _name(name: Optional[str]) -> str:
    return str(name)[:MAX_NAME_LENGTH] if name else DEFAULT_NAME


def _kind(data: Any) -> str:
    if _is_spark_frame(data):
        return "spark"
    if hasattr(data, "iloc") and (hasattr(data, "columns") or getattr(data, "ndim", 0) == 1):
        return "frame"  # pandas DataFrame or Series
    if hasattr(data, "tocsr") and hasattr(data, "nnz"):
        return "sparse"
    if isinstance(data, (list, tuple)) or (hasattr(data, "__array__") and hasattr(data, "shape")):
        return "tensor"
    raise UnsupportedData(f"data of type {type(data).__name__} (expected a pandas DataFrame, a numpy array, "
                          "a scipy sparse matrix, a list or a Spark DataFrame)")


def _head(data: Any, kind: str) -> tuple[Any, tuple]:
    """A copy of the first rows that hold the digest's first DIGEST_ROWS elements, and the full shape."""
    import numpy as np

    if kind == "frame":  # a pandas Series as targets of an array
        data = data.to_numpy()
        kind = "tensor"
    if kind == "sparse":
        shape = tuple(int(s) for s in data.shape)
        rows = _rows_for(shape)
        head = data[:rows] if getattr(data, "format", "") in ("csr", "csc") else data.tocsr()[:rows]
        return head.copy(), shape
    if isinstance(data, (list, tuple)):
        if not data:
            return np.asarray(data), (0,)
        first = np.asarray(data[0])
        shape = (len(data),) + first.shape
        return np.asarray(data[:_rows_for(shape)]), shape
    array = np.asarray(data)
    if array.ndim == 0:
        raise UnsupportedData("a 0-d array")
    shape = tuple(int(s) for s in array.shape)
    return array[:_rows_for(shape)].copy(), shape


def _rows_for(shape: tuple) -> int:
    per_row = math.prod(shape[1:]) if len(shape) > 1 else 1
    return max(1, -(-DIGEST_ROWS // max(1, per_row)))


def _dense(data: Any) -> Any:
    import numpy as np

    if hasattr(data, "toarray"):
        return data.toarray()
    return np.asarray(data)


# -- digest ----------------------------------------------------------------------------------
class _LastDigest:
    """The digest of the last data hashed, kept with what it was computed from (bytes): a loop of
    fits on the same data gives the same bytes fit after fit, and comparing them again is a
    memcmp where hashing them is not."""

    def __init__(self) -> None:
        self._last: tuple = ((), "")  # (key, digest): replaced whole, so a reader sees one pair

    def of(self, key: tuple, compute: Callable[[], str]) -> str:
        last = self._last
        if last[0] == key:
            return last[1]
        digest = compute()
        self._last = (key, digest)
        return digest


def _md5(parts: list) -> str:
    """The first 8 hex digits of the MD5 of `parts` (arrays, numpy scalars, bytes) one after the
    other; the same 160 kB again (MD5: about 0.2 ms) is compared, not hashed (`_LastDigest`)."""
    key = tuple(part.tobytes() if hasattr(part, "tobytes") else bytes(part) for part in parts)

    def compute() -> str:
        md5 = hashlib.md5(usedforsecurity=False)
        for part in key:
            md5.update(part)
        return md5.hexdigest()[:8]

    return _last_md5.of(key, compute)


_last_md5 = _LastDigest()


def _tensor_digest(items: list[tuple[Any, tuple]]) -> str:
    """mlflow.data.digest_utils.compute_numpy_digest, from the first rows and the full shapes.

    The digest of the last arrays hashed is kept with their elements' bytes, dtypes and the
    shapes: a loop of fits on the same data gives the same elements fit after fit, and
    comparing them again is a memcmp where pandas' hash of them cost about 0.05 ms. Arrays
    of Python objects are hashed each time (their bytes are pointers, not values)."""
    trimmed_items = [(head.flatten()[:DIGEST_ROWS], shape) for head, shape in items]
    if any(trimmed.dtype.hasobject for trimmed, _ in trimmed_items):
        return _hash_tensors(trimmed_items)
    key = tuple((trimmed.dtype.str, trimmed.tobytes(), tuple(int(d) for d in shape)) for trimmed, shape in trimmed_items)
    return _last_tensor_digest.of(key, lambda: _hash_tensors(trimmed_items))


_last_tensor_digest = _LastDigest()  # keyed on each array's dtype, element bytes and shape


def _hash_tensors(items: list[tuple[Any, tuple]]) -> str:
    import numpy as np

    try:
        import pandas as pd
    except ImportError:  # MLflow always has pandas; without it, the same elements hashed as bytes
        pd = None
    parts: list = []
    for trimmed, shape in items:
        if pd is not None:
            try:
                parts.append(pd.util.hash_array(trimmed))
            except TypeError:  # what pandas cannot hash (MLflow: the element count instead)
                parts.append(np.int64(trimmed.size))
        elif trimmed.dtype.kind in "biufcmMSU":
            parts.append(np.ascontiguousarray(trimmed).tobytes())
        else:
            parts.append(np.int64(trimmed.size))
        parts.extend(np.int64(dim) for dim in shape)
    return _md5(parts)


def _frame_digest(head: Any, n_rows: int) -> str:
    """mlflow.data.digest_utils.compute_pandas_digest, from the first DIGEST_ROWS rows."""
    import numpy as np
    import pandas as pd

    # MLflow keeps the columns whose every value is a str, and the number columns (sorted, by Index.union)
    strings = head.columns[[_all_str(head.iloc[:, i]) for i in range(head.shape[1])]]
    numbers = head.select_dtypes(include=[np.number]).columns
    kept = head[strings.union(numbers)]
    return _md5([pd.util.hash_pandas_object(kept).values, np.int64(n_rows)] + [str(c).encode() for c in head.columns])


def _all_str(column: Any) -> bool:
    if column.dtype.kind != "O" and str(column.dtype) != "string":
        return False  # numbers, dates, categories: never every value a str
    return all(type(value) is str for value in column)


# -- schema: MLflow's JSON -------------------------------------------------------------------
def _tensor_spec(array: Any) -> str:
    """mlflow.types.Schema([TensorSpec(...)]).to_json() of an array: dtype and shape, rows variable."""
    import numpy as np

    dtype = array.dtype
    if dtype.kind == "U":
        dtype = np.dtype(str)
    elif dtype.kind == "S":
        dtype = np.dtype(bytes)
    return json.dumps([{"type": "tensor", "tensor-spec": {"dtype": dtype.name, "shape": [-1, *array.shape[1:]]}}])


def _frame_schema(head: Any) -> Optional[dict]:
    """MLflow's `mlflow_colspec` of a DataFrame, from its first rows; None when a column has a
    type MLflow's schema has no name for (MLflow records no schema then either)."""
    columns = []
    for index, name in enumerate(head.columns):
        column = head.iloc[:, index]
        kind = _column_type(column)
        if kind is None:
            return None
        columns.append({"type": kind, "name": str(name), "required": not bool(column.isna().any())})
    return {"mlflow_colspec": columns}


def _column_type(column: Any) -> Optional[str]:
    """mlflow.types.utils._infer_pandas_column's answer for one column."""
    dtype = column.dtype
    if str(dtype) == "category":
        return _column_type(column.cat.categories.to_series())
    if str(dtype) == "string":
        return "string"
    kind = getattr(dtype, "kind", None)
    if kind == "O":
        values = {type(v) for v in column if v is not None and not (isinstance(v, float) and math.isnan(v))}
        for python_type, name in ((str, "string"), (bytes, "binary"), (bool, "boolean"), (int, "long"),
                                  (float, "double")):
            if values == {python_type}:
                return name
        return None
    return _numpy_type(dtype)


def _numpy_type(dtype: Any) -> Optional[str]:
    """mlflow.types.utils._infer_numpy_dtype."""
    kind, size = getattr(dtype, "kind", None), getattr(dtype, "itemsize", 0)
    if kind == "b":
        return "boolean"
    if kind in ("i", "u"):
        if size < 4 or (kind == "i" and size == 4):
            return "integer"
        if size < 8 or (kind == "i" and size == 8):
            return "long"
        return None  # uint64: MLflow has no type for it
    if kind == "f":
        return "float" if size <= 4 else ("double" if size <= 8 else None)
    if kind == "U":
        return "string"
    if kind == "S":
        return "binary"
    if kind == "M":
        return "datetime"
    return None


# -- Spark DataFrames ------------------------------------------------------------------------
def _is_spark_frame(data: Any) -> bool:
    return type(data).__module__.startswith("pyspark.sql") and hasattr(data, "semanticHash") and hasattr(data, "schema")


def spark_row_count(frame: Any) -> Optional[int]:
    """The row count of a Spark DataFrame where Spark knows it without running a job (the
    optimised plan's statistics: local data, `spark.range`, a cached DataFrame that has been
    materialised, a table with statistics); None elsewhere and for Spark Connect."""
    jdf = getattr(frame, "_jdf", None)  # a classic DataFrame's JVM side
    if jdf is None:
        return None
    count = jdf.queryExecution().optimizedPlan().stats().rowCount()
    return int(str(count.get())) if count.isDefined() else None  # a Python int, or a JVM BigInt


def _spark_digest(frame: Any) -> str:
    """mlflow.data.spark_dataset.SparkDataset._compute_digest: md5 of the semantic hash as an int64."""
    return hashlib.md5(struct.pack("<q", int(frame.semanticHash())), usedforsecurity=False).hexdigest()[:8]


def _spark_schema(struct_type: Any) -> Optional[dict]:
    """MLflow's `mlflow_colspec` of a Spark schema (mlflow.types.utils._infer_spark_type);
    None when a column has a type MLflow has no name for."""
    columns = []
    for field in struct_type.fields:
        spec = _spark_type(field.dataType)
        if spec is None:
            return None
        columns.append({**spec, "name": field.name, "required": True})  # MLflow leaves Spark's nullable out
    return {"mlflow_colspec": columns}


_SPARK_TYPES = {"LongType": "long", "IntegerType": "integer", "ShortType": "integer", "ByteType": "integer",
                "FloatType": "float", "DoubleType": "double", "BooleanType": "boolean", "StringType": "string",
                "BinaryType": "binary", "DateType": "datetime", "TimestampType": "datetime",
                "VectorUDT": "sparkml_vector"}


def _spark_type(data_type: Any) -> Optional[dict]:
    name = type(data_type).__name__
    if name in _SPARK_TYPES:
        return {"type": _SPARK_TYPES[name]}
    if name == "ArrayType":
        items = _spark_type(data_type.elementType)
        return {"type": "array", "items": items} if items is not None else None
    if name == "StructType":
        properties = {}
        for field in data_type.fields:
            spec = _spark_type(field.dataType)
            if spec is None:
                return None
            properties[field.name] = {**spec, "required": not field.nullable}
        return {"type": "object", "properties": properties}
    return None  # a map (MLflow reads the data to type it), a decimal, a timestamp without zone...


# -- profile and source ----------------------------------------------------------------------
def _tensor_profile(prefix: str, array: Any, shape: tuple) -> dict:
    size = math.prod(shape)
    return {f"{prefix}_shape": [int(s) for s in shape], f"{prefix}_size": int(size),
            f"{prefix}_nbytes": int(size * array.dtype.itemsize)}


def _source() -> str:
    """MLflow's CodeDatasetSource: the tags of the code that ran (script, git commit, user)."""
    tags: dict = {}
    with containment.contained("datasets: the source tags"):
        from autolog.backends.mlflow_tags import mlflow_source_tags
        from autolog.provenance.source import source_tags

        tags = mlflow_source_tags(source_tags())
    return json.dumps({"tags": tags})


# -- an MLflow Dataset object, as `mlflow.log_input` takes it ----------------------------------
def _is_mlflow_dataset(data: Any) -> bool:
    return all(hasattr(data, a) for a in ("digest", "source", "to_dict", "_to_mlflow_entity"))


def _from_mlflow_dataset(dataset: Any, name: Optional[str]) -> Dataset:
    d = dataset.to_dict()
    return Dataset(name=_name(name or d["name"]), digest=d["digest"], source_type=d["source_type"], source=d["source"],
                   schema=d.get("schema"), profile=d.get("profile"))


# -- what training data says about itself, read without consuming it -----------------------------
def data_rows(data: Any) -> Optional[int]:
    """Rows of array data: the first dimension of an array, tensor or data frame, or of the
    first array in a list, tuple or dict of them (a model with several inputs); the length of
    a plain list of numbers. None for anything else (a pipeline, a generator) or an unknown dimension."""
    while isinstance(data, (list, tuple, Mapping)) and data:
        first = next(iter(data.values())) if isinstance(data, Mapping) else data[0]
        if not (is_array_like(first) or isinstance(first, (list, tuple, Mapping))):
            return len(data) if isinstance(data, list) else None  # a plain list of numbers
        data = first
    if is_array_like(data):
        shape = data.shape
        return int(shape[0]) if len(shape) and shape[0] is not None else None
    return None


def declared_batch_size(data: Any) -> Optional[int]:
    """The batch size a data object states: its integer `batch_size` (Keras's PyDataset, a
    torch DataLoader), or the batch of a tf.data pipeline (`dataset.batch(n)`, possibly followed
    by map / prefetch / ...: the BatchDataset's `_batch_size`, found through `_input_dataset`).
    None for arrays and containers of them, and for objects that state none."""
    if data is None or is_array_like(data) or isinstance(data, (list, tuple, Mapping)):
        return None
    value = getattr(data, "batch_size", None)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    dataset = data
    for _ in range(16):  # tf.data: the batch is on the BatchDataset, under the later stages
        value = getattr(dataset, "_batch_size", None)
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
        dataset = getattr(dataset, "_input_dataset", None)
        if dataset is None:
            return None
    return None
