"""Spark-side pieces of the pyspark.ml integration: work that needs the live SparkSession,
done exactly once off the training thread (or first by whoever stops the session or ends the
process), and the model: a snapshot taken at the end of `fit` (about a millisecond), written
in Spark's own format in MLflow's `spark` flavor (in local mode without Spark jobs where
`write_without_jobs` knows the classes, else by Spark's own writer), read back as what was trained.

Used by integrations/pyspark.py; imports pyspark only inside functions.
"""

from __future__ import annotations

import atexit
import copy
import json
import math
import os
import pathlib
import shutil
import threading
import time
import uuid
from typing import Any, Callable, Optional

from autolog.instrument import containment
from autolog.instrument.models import ModelFlavor, read_mlmodel

MODEL_DATA = "sparkml"  # the folder mlflow.spark writes the model into, inside model/
PIPELINE_MODEL_CLASS = "pyspark.ml.pipeline.PipelineModel"
# Spark attributes of fitted models that hold other models (PipelineModel, the tuning
# models, OneVsRestModel): a snapshot copies them too
NESTED_MODELS = ("stages", "bestModel", "subModels", "models")


# -- Spark work, done while the session is alive ---------------------------------------------------
class SparkWork:
    """One piece of work that needs the live SparkSession, done exactly once: normally on the
    logger's worker, or first on the thread that stops the SparkContext or ends the process.
    Afterwards `result` is set, or `error` (what the work raised), or `skipped` (no Spark
    context was running any more)."""

    __slots__ = ("_do", "_lock", "label", "result", "error", "skipped", "__weakref__")

    def __init__(self, do: Callable[[], Any], label: str):
        self._do: Optional[Callable[[], Any]] = do
        self._lock = threading.Lock()
        self.label = label
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.skipped = False

    def run(self) -> None:
        with self._lock:
            do, self._do = self._do, None
            if do is None:
                return  # done already
            try:
                if _spark_alive():
                    self.result = do()
                else:
                    self.skipped = True
            except Exception as exc:  # noqa: BLE001 - handed to the one who delivers the result
                self.error = exc
            finally:
                pending.discard(self)


class PendingSparkWork:
    """The Spark work queued for the worker and not done yet. It is bounded by the logger's
    queue (each piece is one deferred record there). `run_all` does it on the calling thread;
    it runs before the SparkContext stops and at interpreter exit (registered when the first
    piece is queued, so after pyspark's own exit hook that kills the JVM, and thus before it)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._work: dict[int, SparkWork] = {}
        self._exit_hook = False

    def add(self, do: Callable[[], Any], label: str) -> SparkWork:
        work = SparkWork(do, label)
        with self._lock:
            self._work[id(work)] = work
            if not self._exit_hook:
                self._exit_hook = True
                atexit.register(self.run_all)
        return work

    def discard(self, work: SparkWork) -> None:
        with self._lock:
            self._work.pop(id(work), None)

    def __len__(self) -> int:
        return len(self._work)

    def run_all(self) -> None:
        with self._lock:
            todo = list(self._work.values())
        for work in todo:
            with containment.contained(f"pyspark: {work.label}"):
                work.run()

    def run_alongside(self, work: SparkWork) -> None:
        """Do `work` on this thread and, meanwhile, the oldest other piece not started yet on a
        short-lived thread of its own. Spark runs the two pieces' jobs side by side: each piece
        is a few small jobs (a model's writer, a summary's metrics) whose time is mostly Spark's
        scheduling, not its cores. A piece is done once, by whoever reaches it first
        (`SparkWork.run`); its own record then finds it done, or waits for it to be."""
        with self._lock:
            other = next((w for w in self._work.values() if w is not work and w._do is not None), None)
        if other is not None:
            def run_other() -> None:
                with containment.contained(f"pyspark: {other.label}"):
                    other.run()

            containment.background_thread(run_other, "autolog-spark-work").start()
        work.run()


pending = PendingSparkWork()


def _spark_alive() -> bool:
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    return context is not None and getattr(context, "_jsc", None) is not None


# -- the model: snapshot, writing, reading ----------------------------------------------------------
def snapshot_model(model: Any) -> Any:
    """A copy of a fitted model as it is now, for writing later: each Python wrapper copied
    shallowly with copies of its param maps (the user may call a setter right after fit), and
    each Java object copied in the JVM (`copy(ParamMap())`, one call: a later setter followed
    by a transform changes the Java object's params). `Model.copy()` would do the same and
    then transfer every param to the JVM again, one call each: tens of milliseconds."""
    from pyspark.ml.param import Params
    from pyspark.ml.wrapper import JavaWrapper

    memo: dict = {}

    def copied(value: Any) -> Any:
        if isinstance(value, list):
            return [copied(v) for v in value]
        if isinstance(value, tuple):
            return tuple(copied(v) for v in value)
        if not isinstance(value, Params):
            return value
        if id(value) in memo:
            return memo[id(value)]
        java = vars(value).get("_java_obj")
        owns_java = java is not None and isinstance(value, JavaWrapper)
        # a JavaWrapper detaches its Java object when it is collected: a copy must own a Java
        # object of its own from the start (made first: if that fails, no copy exists to detach the user's)
        java_copy = java.copy(_empty_java_param_map()) if owns_java else None
        that = memo[id(value)] = copy.copy(value)
        if owns_java:
            that._java_obj = java_copy
        that._paramMap = {p: copied(v) for p, v in value._paramMap.items()}
        that._defaultParamMap = {p: copied(v) for p, v in value._defaultParamMap.items()}
        for name in NESTED_MODELS:
            if name in vars(value):
                setattr(that, name, copied(vars(value)[name]))
        return that

    return copied(model)


_empty_maps: dict = {}  # id(py4j gateway) -> an empty org.apache.spark.ml.param.ParamMap


def _empty_java_param_map() -> Any:
    from pyspark import SparkContext
    from pyspark.ml.wrapper import JavaParams

    key = id(SparkContext._gateway)
    found = _empty_maps.get(key)
    if found is None:  # a JVM lookup of the class costs ~5 ms; the empty map is never changed
        _empty_maps.clear()
        found = _empty_maps[key] = JavaParams._empty_java_param_map()
    return found


def save_model_data(model: Any, folder: str) -> str:
    """Write `model` into the local `folder` as mlflow.spark does: a `PipelineModel`, written
    by its own writer; any other model as the one stage of a `PipelineModel`, which is what
    `PipelineModel([model]).write()` writes: the stage by the model's own writer, the
    pipeline's metadata (one line of JSON, written here: `write_pipeline_metadata`, where
    Spark's writer runs a job for it). In local mode the model goes straight into the folder,
    written without Spark jobs where `write_without_jobs` can (the same files), else by Spark;
    on a cluster the executors cannot reach the driver's disk, so the model goes to a
    temporary folder of the cluster's filesystem and is copied down."""
    from pyspark.ml import PipelineModel

    if isinstance(model, PipelineModel):
        _save(model, folder)
        return folder
    _save(model, stage_path(folder, model))
    write_pipeline_metadata(folder, model)
    return folder


def stage_path(folder: str, stage: Any) -> str:
    """Where a pipeline of one stage keeps it (Spark's `PipelineSharedReadWrite.getStagePath`)."""
    return os.path.join(folder, "stages", f"0_{stage.uid}")


def write_pipeline_metadata(folder: str, stage: Any) -> None:
    """`metadata/` of `PipelineModel([stage])`, as its writer writes it: Spark's JVM writer
    where the stage has a Java writer (`org.apache.spark.ml.PipelineModel`), else PySpark's
    (`pyspark.ml.pipeline.PipelineModel`, `"language": "Python"`); the same JSON in a file
    named as Spark's text writer names it, and `_SUCCESS` (a test compares with Spark's)."""
    from pyspark import SparkContext
    from pyspark.ml import PipelineModel
    from pyspark.ml.pipeline import PipelineSharedReadWrite
    from pyspark.ml.util import DefaultParamsWriter

    pipeline = PipelineModel([stage])
    context = SparkContext._active_spark_context
    if PipelineSharedReadWrite.checkStagesForJava([stage]):
        text = json.dumps({"class": "org.apache.spark.ml.PipelineModel", "timestamp": int(round(time.time() * 1000)),
                           "sparkVersion": context.version, "uid": pipeline.uid,
                           "paramMap": {"stageUids": [stage.uid]}, "defaultParamMap": {}}, separators=(",", ":"))
    else:
        text = DefaultParamsWriter._get_metadata_to_save(  # what PipelineSharedReadWrite.saveImpl writes
            pipeline, context, paramMap={"stageUids": [stage.uid], "language": "Python"})
    write_text_folder(os.path.join(folder, "metadata"), text)


def copy_best_model(written: str, search_model: Any, folder: str) -> str:
    """best_model/ of a search from its model/ already `written` (`save_model_data`): the
    search's writer wrote the best model with the best model's own writer into `bestModel/`,
    which is what `PipelineModel([best]).write()` writes as its stage; copied, not written
    again (three Spark jobs saved). The metadata as `write_pipeline_metadata` writes it."""
    from pyspark.ml import PipelineModel

    best = search_model.bestModel
    source = os.path.join(stage_path(written, search_model), "bestModel")
    if not os.path.isdir(source):  # not the layout of Spark's tuning writers: write it
        return save_model_data(best, folder)
    try:
        if isinstance(best, PipelineModel):  # written as it is, not as a stage
            shutil.copytree(source, folder)
        else:
            shutil.copytree(source, stage_path(folder, best))
            write_pipeline_metadata(folder, best)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return save_model_data(best, folder)  # its own writer, then
    return folder


def _save(model: Any, folder: str) -> None:
    """`model` written by its own writer into the local `folder` (through the cluster's
    filesystem where the executors may not share the driver's disk: `_via_dfs`)."""
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    if not _via_dfs(context):
        if not write_without_jobs(model, folder):
            model.write().save(pathlib.Path(folder).absolute().as_uri())
        return
    remote = f"{_dfs_tmpdir()}/{uuid.uuid4().hex}"
    model.write().save(remote)
    os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)
    _hadoop_copy(context, remote, folder, to_local=True)


# -- writing Spark's model format without Spark jobs (local mode) ------------------------------------
# The Spark versions whose writers' output this was compared with, file by file and value by value
# (tests/integrations/test_pyspark.py); any other version goes to Spark's own writer.
JOBLESS_SPARK_VERSIONS = ("4.3",)
WARNING_KEY = "pyspark writer without jobs"


class Unsupported(Exception):
    """What `write_without_jobs` does not write itself: Spark's writer writes it, silently."""


def write_without_jobs(model: Any, folder: str) -> bool:
    """Write `model` into the local `folder` exactly as its own Spark writer does (the same
    files, the same metadata JSON, Parquet data that Spark reads back as its own), but without
    a Spark job: the JVM's writers in Spark's "local saving mode" (`MLWriter.saveToLocal`,
    plain file writes of the very metadata JSON the Spark writer writes, and of the model data
    in a binary form of their own), then each `metadata` file put where Spark's text writer
    puts it and each `data` file replaced by the Parquet file Spark's writer would write
    (`DATA_WRITERS`: the classes done so far, from the model's own accessors). A stage whose
    writer writes anything else, a model whose writer is PySpark's Python writer, another Spark
    version: False, with nothing left in `folder` (Spark's writer then writes it, as before).
    An error is reported once through logging and also gives False: the model is never lost."""
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    if context is None or ".".join(context.version.split(".")[:2]) not in JOBLESS_SPARK_VERSIONS:
        return False
    if os.path.exists(folder):  # not ours to clear: Spark's writer says what it says about it
        return False
    try:
        _write_locally(context, model, os.path.abspath(folder))
        return True
    except Exception as exc:  # noqa: BLE001 - Spark's own writer writes it instead
        # pyarrow missing (PySpark without its pandas extras) is not a failure: Spark's writer, silently
        missing = isinstance(exc, ImportError) and (exc.name or "").split(".")[0] == "pyarrow"
        if not (isinstance(exc, Unsupported) or missing or type(exc).__name__ == "UnsupportedOperationException"):
            containment.warn_once(WARNING_KEY, "writing the %s model without Spark jobs failed (%s: %s); "
                                  "Spark's own writer writes it (and any later one that fails so)",
                                  type(model).__name__, type(exc).__name__, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return False


def _write_locally(context: Any, model: Any, folder: str) -> None:
    from pyspark.ml.tuning import CrossValidatorModel, TrainValidationSplitModel, _ValidatorSharedReadWrite
    from pyspark.ml.util import JavaMLWriter

    if isinstance(model, (CrossValidatorModel, TrainValidationSplitModel)):
        if not _ValidatorSharedReadWrite.is_java_convertible(model):
            raise Unsupported("a search written by PySpark's Python writer")
        _write_validator_locally(context, model._to_java(), folder)  # what JavaMLWriter(model) writes
    else:
        writer = model.write()
        if not isinstance(writer, JavaMLWriter):
            raise Unsupported(f"{type(writer).__name__} is PySpark's Python writer")
        writer._jwrite.saveToLocal(folder)
    _to_spark_layout(context, folder, _models_by_folder(model, folder))


def _write_validator_locally(context: Any, java: Any, folder: str) -> None:
    """The JVM's CrossValidatorModelWriter / TrainValidationSplitModelWriter (`saveImpl`, which
    refuses the local saving mode itself), step by step in that mode: `ValidatorParams.saveImpl`
    with the same extra metadata (the metadata, `evaluator/`, `estimator/`, `epm_*`), then
    `bestModel/`. Sub-models are not written here."""
    from py4j.clientserver import ClientServer

    jvm = context._jvm
    if not isinstance(context._gateway, ClientServer):  # PYSPARK_PIN_THREAD=false: calls may change JVM thread
        raise Unsupported("py4j without pinned threads")
    if java.hasSubModels():
        raise Unsupported("a search with sub-models")
    cross_validation = java.getClass().getName() == "org.apache.spark.ml.tuning.CrossValidatorModel"
    metrics = [float(v) for v in (java.avgMetrics() if cross_validation else java.validationMetrics())]
    if not all(math.isfinite(v) for v in metrics):
        raise Unsupported("a metric that is not finite")
    extra = json.dumps({"avgMetrics" if cross_validation else "validationMetrics": metrics, "persistSubModels": False})
    as_input = _scala_object(jvm.org.json4s, "AsJsonInput").stringAsJsonInput()
    extra = _scala_object(jvm.org.json4s.jackson, "JsonMethods").parse(extra, False, True, as_input)
    session = jvm.org.apache.spark.sql.SparkSession.active()
    state = _scala_object(jvm.org.apache.spark.ml.util, "ReadWriteUtils").localSavingModeState()
    state.set(True)  # a thread-local of the JVM thread that serves this Python thread (py4j's pinned threads)
    try:
        _scala_object(jvm.org.apache.spark.ml.tuning, "ValidatorParams").saveImpl(
            folder, java, session, jvm.scala.Some(extra))
        java.bestModel().write().save(os.path.join(folder, "bestModel"))
    finally:
        state.remove()


def _scala_object(package: Any, name: str) -> Any:
    """A Scala `object` through py4j (its class `name$`, field `MODULE$`)."""
    return getattr(getattr(package, name + "$"), "MODULE$")


def _models_by_folder(model: Any, folder: str) -> dict:
    """folder -> the Python model its writer writes there: `model` in `folder`, a PipelineModel's
    stages in `stages/<i>_<uid>` (PipelineSharedReadWrite), a search's best model in `bestModel`.
    A model found nowhere else (OneVsRestModel's `model_<i>`, sub-models) has no entry."""
    found = {folder: model}
    nested = vars(model)
    if isinstance(nested.get("stages"), list):
        for index, stage in enumerate(nested["stages"]):
            found.update(_models_by_folder(stage, os.path.join(folder, "stages", f"{index}_{stage.uid}")))
    if nested.get("bestModel") is not None:
        found.update(_models_by_folder(nested["bestModel"], os.path.join(folder, "bestModel")))
    return found


def _to_spark_layout(context: Any, folder: str, models: dict) -> None:
    """What the local saving mode wrote, as Spark's writer writes it: in each folder of a stage,
    the `metadata` file becomes `metadata/part-00000-<uuid>-c000.txt` (its JSON and a newline,
    as Spark's text writer writes it) and `_SUCCESS`; the `data` file becomes `data/`, a Parquet
    file written by `DATA_WRITERS` from the model. Anything else: Unsupported."""
    stages = []
    for where, _dirs, files in os.walk(folder):
        if not files:
            continue
        if "metadata" not in files or set(files) - {"metadata", "data"}:
            raise Unsupported(f"a writer wrote {sorted(files)} in {where}")
        stages.append((where, "data" in files))
    for where, has_data in stages:
        with open(os.path.join(where, "metadata"), encoding="utf-8") as fh:
            text = fh.read()
        metadata = json.loads(text)
        if has_data:
            writer = DATA_WRITERS.get(metadata.get("class"))
            model = models.get(where)
            if (writer is None or model is None or model.uid != metadata.get("uid")
                    or model._java_obj.getClass().getName() != metadata.get("class")):
                raise Unsupported(f"the data of {metadata.get('class')} in {where}")
            os.remove(os.path.join(where, "data"))
            writer(context, model, os.path.join(where, "data"))
        os.remove(os.path.join(where, "metadata"))
        write_text_folder(os.path.join(where, "metadata"), text)


def write_text_folder(folder: str, text: str) -> None:
    """One line of text as Spark's text writer writes it from one partition: a part file and `_SUCCESS`."""
    os.makedirs(folder)
    with open(os.path.join(folder, f"part-00000-{uuid.uuid4()}-c000.txt"), "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    open(os.path.join(folder, "_SUCCESS"), "wb").close()


# Spark's schemas of the Vector and Matrix UDT columns, as Spark writes them into the Parquet footer
VECTOR_UDT_JSON = (
    '{"type":"udt","class":"org.apache.spark.ml.linalg.VectorUDT","pyClass":"pyspark.ml.linalg.VectorUDT",'
    '"sqlType":{"type":"struct","fields":[{"name":"type","type":"byte","nullable":false,"metadata":{}},'
    '{"name":"size","type":"integer","nullable":true,"metadata":{}},'
    '{"name":"indices","type":{"type":"array","elementType":"integer","containsNull":false},"nullable":true,"metadata":{}},'
    '{"name":"values","type":{"type":"array","elementType":"double","containsNull":false},"nullable":true,"metadata":{}}]}}')
MATRIX_UDT_JSON = (
    '{"type":"udt","class":"org.apache.spark.ml.linalg.MatrixUDT","pyClass":"pyspark.ml.linalg.MatrixUDT",'
    '"sqlType":{"type":"struct","fields":[{"name":"type","type":"byte","nullable":false,"metadata":{}},'
    '{"name":"numRows","type":"integer","nullable":false,"metadata":{}},'
    '{"name":"numCols","type":"integer","nullable":false,"metadata":{}},'
    '{"name":"colPtrs","type":{"type":"array","elementType":"integer","containsNull":false},"nullable":true,"metadata":{}},'
    '{"name":"rowIndices","type":{"type":"array","elementType":"integer","containsNull":false},"nullable":true,"metadata":{}},'
    '{"name":"values","type":{"type":"array","elementType":"double","containsNull":false},"nullable":true,"metadata":{}},'
    '{"name":"isTransposed","type":"boolean","nullable":false,"metadata":{}}]}}')
SPARK_TYPE_JSON = {
    "integer": '"integer"', "long": '"long"', "double": '"double"', "boolean": '"boolean"',
    "vector": VECTOR_UDT_JSON, "matrix": MATRIX_UDT_JSON,
    "array<integer>": '{"type":"array","elementType":"integer","containsNull":false}',  # Array[Int]
    "array<long>": '{"type":"array","elementType":"long","containsNull":false}',  # Array[Long]
    "array<array<string>>": ('{"type":"array","elementType":{"type":"array","elementType":"string",'
                             '"containsNull":true},"containsNull":true}'),  # Seq[Seq[String]]
}


def _arrow_type(kind: str) -> Any:
    import pyarrow as pa

    ints, doubles = pa.list_(pa.field("element", pa.int32(), False)), pa.list_(pa.field("element", pa.float64(), False))
    if kind == "vector":
        return pa.struct([pa.field("type", pa.int8(), False), pa.field("size", pa.int32()),
                          pa.field("indices", ints), pa.field("values", doubles)])
    if kind == "matrix":
        return pa.struct([pa.field("type", pa.int8(), False), pa.field("numRows", pa.int32(), False),
                          pa.field("numCols", pa.int32(), False), pa.field("colPtrs", ints),
                          pa.field("rowIndices", ints), pa.field("values", doubles),
                          pa.field("isTransposed", pa.bool_(), False)])
    if kind == "array<array<string>>":
        return pa.list_(pa.field("element", pa.list_(pa.field("element", pa.string(), True)), True))
    if kind.startswith("array<"):
        return pa.list_(pa.field("element", _arrow_type(kind[len("array<"):-1]), False))
    return {"integer": pa.int32(), "long": pa.int64(), "double": pa.float64(), "boolean": pa.bool_()}[kind]


def write_parquet_row(context: Any, folder: str, columns: list) -> None:
    """One row as Spark writes `createDataFrame(Seq(data)).write.parquet(folder)`: one Snappy
    Parquet file and `_SUCCESS`; the columns as Spark's Parquet writer lays them out, Spark's
    schema in the footer (`org.apache.spark.sql.parquet.row.metadata`, so a Vector or Matrix
    column reads back as that UDT) and the Spark version. `columns`: (name, kind, nullable,
    value), kind one of SPARK_TYPE_JSON, a vector or matrix as PySpark's UDT serializes it."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.ml.linalg import MatrixUDT, VectorUDT

    udts = {"vector": VectorUDT(), "matrix": MatrixUDT()}
    row = {}
    for name, kind, _nullable, value in columns:
        if kind in udts and value is not None:
            serialized = udts[kind].serialize(value)
            value = dict(zip(_arrow_type(kind).names, serialized))
        row[name] = value
    spark_schema = '{"type":"struct","fields":[' + ",".join(
        f'{{"name":{json.dumps(name)},"type":{SPARK_TYPE_JSON[kind]},"nullable":{json.dumps(nullable)},"metadata":{{}}}}'
        for name, kind, nullable, _value in columns) + "]}"
    schema = pa.schema([pa.field(name, _arrow_type(kind), nullable) for name, kind, nullable, _value in columns])
    os.makedirs(folder)
    path = os.path.join(folder, f"part-00000-{uuid.uuid4()}-c000.snappy.parquet")
    # as parquet-mr lays out Spark's file: format version 1, plain encodings; no ARROW:schema
    with pq.ParquetWriter(path, schema, compression="snappy", version="1.0", use_dictionary=False,
                          store_schema=False) as writer:
        writer.write_table(pa.Table.from_pylist([row], schema=schema))
        writer.add_key_value_metadata({"org.apache.spark.sql.parquet.row.metadata": spark_schema,
                                       "org.apache.spark.version": context.version})
    open(os.path.join(folder, "_SUCCESS"), "wb").close()


def _data_of(*columns: tuple) -> Callable[[Any, Any, str], None]:
    """The writer of a model's `data/` whose writer's `Data` has these columns: (name, kind,
    nullable, the model's accessor that gives the value)."""
    def write(context: Any, model: Any, folder: str) -> None:
        write_parquet_row(context, folder, [(name, kind, nullable, read(model)) for name, kind, nullable, read in columns])

    return write


# class written in the metadata -> the writer of its `data/` (each compared with Spark's in the tests)
DATA_WRITERS: dict = {
    "org.apache.spark.ml.classification.LogisticRegressionModel": _data_of(
        ("numClasses", "integer", False, lambda m: int(m.numClasses)),
        ("numFeatures", "integer", False, lambda m: int(m.numFeatures)),
        ("interceptVector", "vector", True, lambda m: m.interceptVector),
        ("coefficientMatrix", "matrix", True, lambda m: m.coefficientMatrix),
        ("isMultinomial", "boolean", False, lambda m: bool(getattr(
            m._java_obj, "org$apache$spark$ml$classification$LogisticRegressionModel$$isMultinomial")()))),
    # its internal-format writer's data
    "org.apache.spark.ml.regression.LinearRegressionModel": _data_of(
        ("intercept", "double", False, lambda m: float(m.intercept)), ("coefficients", "vector", True, lambda m: m.coefficients),
        ("scale", "double", False, lambda m: float(m._java_obj.scale()))),
    "org.apache.spark.ml.classification.LinearSVCModel": _data_of(
        ("coefficients", "vector", True, lambda m: m.coefficients), ("intercept", "double", False, lambda m: m.intercept)),
    "org.apache.spark.ml.regression.GeneralizedLinearRegressionModel": _data_of(
        ("intercept", "double", False, lambda m: m.intercept), ("coefficients", "vector", True, lambda m: m.coefficients)),
    "org.apache.spark.ml.feature.StringIndexerModel": _data_of(
        ("labelsArray", "array<array<string>>", True, lambda m: [list(labels) for labels in m.labelsArray])),
    "org.apache.spark.ml.feature.OneHotEncoderModel": _data_of(
        ("categorySizes", "array<integer>", True, lambda m: [int(v) for v in m.categorySizes])),
    "org.apache.spark.ml.feature.StandardScalerModel": _data_of(
        ("std", "vector", True, lambda m: m.std), ("mean", "vector", True, lambda m: m.mean)),
    "org.apache.spark.ml.feature.MinMaxScalerModel": _data_of(
        ("originalMin", "vector", True, lambda m: m.originalMin), ("originalMax", "vector", True, lambda m: m.originalMax)),
    "org.apache.spark.ml.feature.MaxAbsScalerModel": _data_of(("maxAbs", "vector", True, lambda m: m.maxAbs)),
    "org.apache.spark.ml.feature.IDFModel": _data_of(
        ("idf", "vector", True, lambda m: m.idf), ("docFreq", "array<long>", True, lambda m: [int(v) for v in m.docFreq]),
        ("numDocs", "long", False, lambda m: int(m.numDocs))),
}


DFS_TMPDIR_VARIABLE = "AUTOLOG_SPARK_DFS_TMPDIR"


def _via_dfs(context: Any) -> bool:
    """Models go through a temporary folder of the cluster's filesystem when the executors
    may not share the driver's disk (a master other than local[...] and local-cluster[...]),
    or when AUTOLOG_SPARK_DFS_TMPDIR names that folder."""
    return bool(os.environ.get(DFS_TMPDIR_VARIABLE)) or not context.master.startswith("local")


def _dfs_tmpdir() -> str:
    return (os.environ.get(DFS_TMPDIR_VARIABLE) or "/tmp/autolog-sparkml").rstrip("/")


def _hadoop_copy(context: Any, source: str, target: str, *, to_local: bool) -> None:
    jvm = context._jvm
    conf = context._jsc.hadoopConfiguration()
    remote = jvm.org.apache.hadoop.fs.Path(source if to_local else target)
    local = jvm.org.apache.hadoop.fs.Path(pathlib.Path(target if to_local else source).absolute().as_uri())
    filesystem = remote.getFileSystem(conf)
    if to_local:
        filesystem.copyToLocalFile(True, remote, local)  # and delete the temporary copy
    else:
        filesystem.copyFromLocalFile(False, True, local, remote)


class WrittenModel:
    """A model folder already written by Spark (`sparkml/`); `size` for max_model_size_mb."""

    __slots__ = ("path", "size")

    def __init__(self, path: str):
        self.path = path
        total = 0
        for folder, _dirs, files in os.walk(path):
            total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
        self.size = total


class SparkFlavor(ModelFlavor):
    """MLflow's `spark` flavor: `sparkml/` holds a PipelineModel written by Spark's own
    writer; MLmodel's `spark` and `python_function` entries are those mlflow.spark writes,
    so mlflow.spark.load_model and mlflow.pyfunc.load_model read it. `autolog.load_model`
    gives back what was trained: the PipelineModel, or the single model mlflow.spark wraps."""

    name = "spark"
    library = "pyspark"
    loader = "autolog.integrations.pyspark:load_model"

    def snapshot(self, model: WrittenModel) -> WrittenModel:
        return model  # written already, by Spark, on the worker

    def save(self, snapshot: WrittenModel, path: str) -> dict:
        import pyspark

        shutil.move(snapshot.path, os.path.join(path, MODEL_DATA))
        return {
            "spark": {"pyspark_version": pyspark.__version__, "model_data": MODEL_DATA, "code": None,
                      "model_class": PIPELINE_MODEL_CLASS},
            "python_function": {"loader_module": "mlflow.spark", "data": MODEL_DATA},
        }


class SparkStageFlavor(SparkFlavor):
    """The same folder, for a model that is not a PipelineModel: loaded back as that model."""

    loader = "autolog.integrations.pyspark:load_single_model"


PIPELINE_FLAVOR = SparkFlavor()
STAGE_FLAVOR = SparkStageFlavor()


def load_model(folder: str) -> Any:
    """The PipelineModel of a model folder written by `SparkFlavor` (or by mlflow.spark)."""
    from pyspark import SparkContext
    from pyspark.ml import PipelineModel
    from pyspark.sql import SparkSession

    flavor = (read_mlmodel(folder).get("flavors") or {}).get("spark") or {}
    data = os.path.join(folder, flavor.get("model_data", MODEL_DATA))
    SparkSession.builder.getOrCreate()  # loading needs a session, as mlflow.spark's does
    context = SparkContext._active_spark_context
    if not _via_dfs(context):
        return PipelineModel.load(pathlib.Path(data).absolute().as_uri())
    remote = f"{_dfs_tmpdir()}/{uuid.uuid4().hex}"  # left there: Spark may read it again later
    _hadoop_copy(context, data, remote, to_local=False)
    return PipelineModel.load(remote)


def load_single_model(folder: str) -> Any:
    """The model (not a Pipeline) of a model folder: the one stage of its PipelineModel."""
    return load_model(folder).stages[0]
