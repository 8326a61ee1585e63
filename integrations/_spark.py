"""Spark-side pieces of the pyspark.ml integration: work that needs the live SparkSession,
done exactly once off the training thread (or first by whoever stops the session or ends the
process), and the model: a snapshot taken at the end of `fit` (about a millisecond), written
by Spark's own writer in MLflow's `spark` flavor, read back as what was trained.

Used by integrations/pyspark.py; imports pyspark only inside functions.
"""

from __future__ import annotations

import atexit
import copy
import json
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
    Spark's writer runs a job for it). In local mode Spark writes straight into the folder;
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
    metadata = os.path.join(folder, "metadata")
    os.makedirs(metadata)
    with open(os.path.join(metadata, f"part-00000-{uuid.uuid4()}-c000.txt"), "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    open(os.path.join(metadata, "_SUCCESS"), "wb").close()


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
        model.write().save(pathlib.Path(folder).absolute().as_uri())
        return
    remote = f"{_dfs_tmpdir()}/{uuid.uuid4().hex}"
    model.write().save(remote)
    os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)
    _hadoop_copy(context, remote, folder, to_local=True)


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
