"""pyspark.ml: `Estimator.fit` of every estimator, pipelines, tuning, post-training evaluation.

What is patched, when `pyspark.ml` is imported (it imports all of its submodules at once):
- `Estimator.fit` (pyspark.ml.base), which every estimator inherits: classification,
  regression, clustering, recommendation, the feature transformers that fit, `Pipeline`,
  `CrossValidator`, `TrainValidationSplit`, `OneVsRest`, xgboost.spark's estimators and
  anyone's own. A fit inside a fit (the stages of a Pipeline, the candidates of a search)
  is logged once, at the outermost call.
- `inheritable_thread_target` as `pyspark.ml.tuning` and `pyspark.ml.classification` see
  it: CrossValidator, TrainValidationSplit and OneVsRest fit on the threads of a pool, which
  do not inherit the caller's context; the tasks a training call hands to that pool are
  marked as inside it, so their fits log nothing.
- `Model.transform` and `Evaluator.evaluate`: `evaluator.evaluate(model.transform(test))`
  on a model autolog logged adds the metric to that model's run, named as MLflow names it
  (`areaUnderROC_test`).
- `SparkContext.stop`: Spark work autolog still has pending (writing a model with its own
  writer, a training summary's metrics, a DataFrame's statistics) is done on the stopping
  thread first, while the session is alive. The same happens at interpreter exit.

On the training thread a fit costs what pure Python costs: reading the estimator's param
maps, starting the run and the child runs, and a snapshot of the model (a shallow copy of
each Python wrapper with its param maps, and one JVM-side `copy` per Java object, about a
millisecond). No Spark job runs there. Writing the model, the training summary's metrics
and the input's row count need Spark: they run on the logger's worker, between fits. See
docs/integrations/pyspark.md for what is logged and how it is named.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import threading
from typing import Any, Callable, Iterable, Optional

from autolog import runs
from autolog.instrument import containment
from autolog.instrument.datasets import describe, log_dataset, spark_row_count
from autolog.instrument.integration import Integration
from autolog.instrument.models import TAG_MODEL_SKIPPED, log_model, skip_model
from autolog.instrument.params import flatten, is_scalar_number
from autolog.instrument.patching import Patcher
from autolog.instrument.post_training import PostTrainingMetrics
from autolog.instrument.snapshots import TrainingActivity, caller_variable_name
from autolog.instrument.training_call import Call, TrainingWrapper, call_arguments
from autolog.integrations._spark import (  # noqa: F401 - load_model, load_single_model: MLmodel files name them here
    MODEL_DATA, PIPELINE_FLAVOR, STAGE_FLAVOR, SparkFlavor, SparkWork, WrittenModel, load_model, load_single_model,
    copy_best_model, pending, save_model_data, snapshot_model,
)

log = logging.getLogger("autolog")

NAME = "pyspark"
# The scalar values of the training summaries of pyspark.ml models, logged as
# `training_<name>` (`weightedFMeasure` is a method, called with its default beta). What a
# value costs is what Spark computes on first reading it: the classification values all come
# from one Spark job (MulticlassMetrics' confusion counts, kept by the summary), those of
# LinearRegression from the fit itself, GeneralizedLinearRegression's from four small jobs
# (aic, nullDeviance, the row count). `areaUnderROC` is left out: Spark computes it with four
# jobs of its own (BinaryClassificationMetrics: a sort with its sampling job, a count, two
# collects), 4 of the 5 jobs of a 10,000-row LogisticRegression and 0.8-0.9 s of its 1.0-1.1 s
# in a warm JVM, 1.3-2.2 s in a new one; mlflow.autolog() logs no training summary at all, and `evaluator.evaluate(model.
# transform(df))` logs `areaUnderROC_<df>` for whoever wants it (docs/integrations/pyspark.md).
SUMMARY_METRICS = (
    "accuracy", "weightedPrecision", "weightedRecall", "weightedFMeasure",
    "weightedTruePositiveRate", "weightedFalsePositiveRate",
    "r2", "r2adj", "rootMeanSquaredError", "meanSquaredError", "meanAbsoluteError", "explainedVariance",
    "degreesOfFreedom", "aic", "deviance", "nullDeviance", "dispersion", "residualDegreeOfFreedom",
    "residualDegreeOfFreedomNull", "rank", "trainingCost", "logLikelihood",
    "totalIterations", "numIterations", "numIter",
)
TAG_PARAM_MAPS = "autolog.param_maps"

post_training = PostTrainingMetrics()
activity = TrainingActivity()
# set while a model's own transform or an evaluator runs: the calls inside it record nothing
_in_evaluation: contextvars.ContextVar[bool] = contextvars.ContextVar("autolog_pyspark_evaluation", default=False)


class PysparkIntegration(Integration):
    name = NAME
    module = "pyspark.ml"
    requires = "pyspark>=3.5"

    def patch(self, patcher: Patcher) -> None:
        from pyspark import SparkContext
        from pyspark.ml import classification, tuning  # (`import pyspark.ml.x` fails: the hook runs
        from pyspark.ml.base import Estimator, Model     # before `pyspark.ml` is set on `pyspark`)
        from pyspark.ml.evaluation import Evaluator

        post_training.clear()
        evaluator_calls.clear()
        patcher.wrap(Estimator, "fit", Fit())
        patcher.wrap(Model, "transform", _transform)
        patcher.wrap(Evaluator, "evaluate", _evaluate)
        patcher.wrap(SparkContext, "stop", _stop)
        for module in (tuning, classification):
            if hasattr(module, "inheritable_thread_target"):
                patcher.wrap(module, "inheritable_thread_target", _thread_target)


# -- fit -------------------------------------------------------------------------------------
class Fit(TrainingWrapper):
    """`Estimator.fit(dataset, params=None)`: one run. Params before the call (so that a
    failed fit has them too), everything about the fitted model after it."""

    integration = NAME
    activity = activity

    def should_log(self, call: Call) -> bool:
        instance = call.instance
        if instance is None or isinstance(instance, type):
            return False
        try:
            params = call.arguments.get("params")
        except TypeError:  # the caller's own mistake: fit raises it, unchanged
            return False
        return params is None or isinstance(params, (dict, list, tuple))  # else fit's own TypeError

    def before(self, call: Call) -> None:
        estimator, run = call.instance, call.run
        params = call.arguments.get("params")
        overrides = params if isinstance(params, dict) else {}
        call.state["overrides"] = overrides
        run.set_tags(estimator_tags(estimator), normalize=True)
        run.log_params(estimator_params(estimator, overrides), normalize=True)
        if isinstance(params, (list, tuple)):
            run.set_tag(TAG_PARAM_MAPS, len(params))
        dataset = call.arguments.get("dataset")
        if dataset is not None:
            _log_input_facts(run, estimator, dataset)

    def after(self, call: Call) -> None:
        run, estimator, result = call.run, call.instance, call.result
        overrides = call.state["overrides"]
        settings = runs.settings()
        if isinstance(result, list):
            _log_param_map_runs(run, estimator, list(call.arguments["params"]), result, settings)
        else:
            _log_fitted(run, estimator, result, settings)
        info = estimator_info(estimator, overrides)
        if _is_tuning_model(result):
            info.update(_log_tuning(run, estimator, result, overrides, settings))
        if info:
            text = json.dumps(info, default=str)
            run.defer(lambda: run.log_text(text, "estimator_info.json"),
                      label=f"pyspark: estimator_info.json of run {run.run_id}")


def estimator_tags(estimator: Any) -> dict:
    """MLflow's tags of a pyspark.ml run: `estimator_name` and `estimator_class`."""
    return {"estimator_name": type(estimator).__name__, "estimator_class": _class_name(estimator)}


def _class_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# -- params, named as mlflow.pyspark.ml names them ---------------------------------------------
def estimator_params(estimator: Any, overrides: Optional[dict] = None) -> dict:
    """Every param that is set or has a default, with `overrides` (the param map given to
    `fit`) applied, as MLflow logs them: the estimator's own under their names, those of the
    stages of a Pipeline and of params that are estimators themselves (OneVsRest's classifier,
    a tuner's evaluator) as `<Class>.<param>` (`<Class>_<n>` when a class occurs twice); a
    tuner's `estimator` by its name and its `estimatorParamMaps` left out (they are in
    estimator_info.json and the child runs). Also `estimator_class`."""
    overrides = overrides or {}
    names = indexed_names(estimator, overrides)
    params = instance_params(estimator, 0, names, overrides)
    params["estimator_class"] = _class_name(estimator)
    return params


def _defined(stage: Any, overrides: dict) -> dict:
    """{Param: value} of every param of `stage` that is defined, `overrides` first."""
    values = {}
    for param in stage.params:
        if param in overrides:
            values[param] = overrides[param]
        elif stage.isDefined(param):
            values[param] = stage.getOrDefault(param)
    return values


def _is_params(value: Any) -> bool:
    from pyspark.ml.param import Params

    return isinstance(value, Params)


def _stages(stage: Any, overrides: dict) -> list:
    from pyspark.ml import Pipeline

    if not isinstance(stage, Pipeline):
        return []
    for param, value in _defined(stage, overrides).items():
        if param.name == "stages":
            return list(value or [])
    return []


def _walk(stage: Any, overrides: dict) -> Iterable[Any]:
    """The stage, then its sub-stages depth first: a Pipeline's stages, else the params whose
    values are Params (mlflow.pyspark.ml's `_traverse_stage`)."""
    from pyspark.ml import Pipeline

    yield stage
    if isinstance(stage, Pipeline):
        for sub in _stages(stage, overrides):
            yield from _walk(sub, overrides)
        return
    for value in _defined(stage, overrides).values():
        if _is_params(value):
            yield from _walk(value, overrides)


def indexed_names(root: Any, overrides: Optional[dict] = None) -> dict:
    """uid -> `<Class>`, or `<Class>_<n>` (depth-first order) for a class that occurs more than once."""
    overrides = overrides or {}
    counts: dict = {}
    seen: dict = {}
    for stage in _walk(root, overrides):
        name = type(stage).__name__
        counts[name] = counts.get(name, 0) + 1
        seen[stage.uid] = (name, counts[name])
    return {uid: f"{name}_{n}" if counts[name] > 1 else name for uid, (name, n) in seen.items()}


def instance_params(instance: Any, level: int, names: dict, overrides: dict) -> dict:
    """mlflow.pyspark.ml's `_get_instance_param_map_recursively`, values made loggable; a
    param whose value is a dict also gives one `<param>.<key>` param per entry."""
    from pyspark.ml import Pipeline

    prefix = "" if level == 0 else names[instance.uid] + "."
    tuning = _is_tuning_estimator(instance)
    out: dict = {}
    for param, value in _defined(instance, overrides).items():
        key = prefix + param.name
        if isinstance(instance, Pipeline) and param.name == "stages":
            out[key] = [names[stage.uid] for stage in value]
            for stage in value:
                out.update(instance_params(stage, level + 1, names, overrides))
        elif tuning and param.name == "estimator":
            out[key] = names[value.uid]
        elif tuning and param.name == "estimatorParamMaps":
            continue
        elif _is_params(value):
            out[key] = names[value.uid]
            out.update(instance_params(value, level + 1, names, overrides))
        else:
            out[key] = _plain(value)
            if isinstance(value, dict) and value:  # e.g. xgboost.spark's arbitrary_params_dict
                out.update({k: _plain(v) for k, v in flatten(value, prefix=key).items()})
    return out


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers (a param grid built with numpy), inside lists too."""
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if is_scalar_number(value) and not isinstance(value, (int, float)):
        return value.item()
    return value


def estimator_info(estimator: Any, overrides: dict) -> dict:
    """estimator_info.json's `hierarchy`, for estimators made of others (a Pipeline, OneVsRest,
    a tuner, any estimator with a param that is an estimator), as MLflow writes it; else {}."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import OneVsRest

    nested = any(_is_params(v) for v in _defined(estimator, overrides).values())
    if not (nested or isinstance(estimator, (Pipeline, OneVsRest)) or _is_tuning_estimator(estimator)):
        return {}
    return {"hierarchy": hierarchy(estimator, indexed_names(estimator, overrides), overrides)}


def hierarchy(stage: Any, names: dict, overrides: dict) -> dict:
    """mlflow.pyspark.ml's `hierarchy` entry of estimator_info.json."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import OneVsRest

    node: dict = {"name": names[stage.uid]}
    if isinstance(stage, Pipeline):
        node["stages"] = [hierarchy(s, names, overrides) for s in _stages(stage, overrides)]
    elif isinstance(stage, OneVsRest):
        node["classifier"] = hierarchy(stage.getClassifier(), names, overrides)
    elif _is_tuning_estimator(stage):
        node["evaluator"] = hierarchy(stage.getEvaluator(), names, overrides)
        node["tuned_estimator"] = hierarchy(stage.getEstimator(), names, overrides)
    else:
        nested = {p.name: v for p, v in _defined(stage, overrides).items() if _is_params(v)}
        if nested:
            node["params"] = {k: hierarchy(v, names, overrides) for k, v in nested.items()}
    return node


# -- a fitted model ----------------------------------------------------------------------------
def _log_fitted(run: runs.ActiveRun, estimator: Any, model: Any, settings, artifact_path: str = "model") -> None:
    """Remember the model for post-training metrics; queue its training summary's metrics
    and, with `log_models`, its snapshot to be written (both need Spark: the worker)."""
    post_training.register_model(model, run)
    summary_models = _summary_models(model, estimator)
    if summary_models:
        work = pending.add(lambda: _summary_metrics(summary_models), f"the training metrics of run {run.run_id}")
        run.defer(functools.partial(_deliver_metrics, run, work), label=f"pyspark: training metrics of run {run.run_id}")
    if settings.log_models:
        _log_model(run, model, artifact_path, settings)


def _log_model(run: runs.ActiveRun, model: Any, artifact_path: str, settings) -> None:
    """The model's snapshot written on the worker (Spark's writer) into `artifact_path`; a
    search's model also gives `best_model/`, copied from what its writer wrote (`bestModel/`)."""
    unwritable = _unwritable(model)
    if unwritable is not None:
        skip_model(run, f"{_class_name(unwritable)} has no writer (it is not MLWritable)", "pyspark: no writer")
        return
    snapshot = snapshot_model(model)
    folder = os.path.join(run.staging_dir(), MODEL_DATA)
    folders = {artifact_path: (model, folder)}
    if _is_tuning_model(model):
        folders["best_model"] = (model.bestModel, os.path.join(run.staging_dir(), MODEL_DATA))
        best_folder = folders["best_model"][1]

        def write() -> dict:
            written = save_model_data(snapshot, folder)
            return {artifact_path: written, "best_model": copy_best_model(written, snapshot, best_folder)}
    else:
        def write() -> dict:
            return {artifact_path: save_model_data(snapshot, folder)}
    work = pending.add(write, f"writing the model {' and '.join(f'{p}/' for p in folders)} of run {run.run_id}")
    for path, (written_model, _folder) in folders.items():
        flavor = PIPELINE_FLAVOR if _is_pipeline_model(written_model) else STAGE_FLAVOR
        # a job that holds a copy (in the JVM, of unknown size): the logger bounds how many wait; a
        # wait for room is not training (the worker's job that makes room must not wait for it)
        with activity.paused():
            run.defer(functools.partial(_deliver_model, run, work, flavor, path, settings),
                      label=f"pyspark: model {path}/ of run {run.run_id}", holds_bytes=0)


def _deliver_model(run: runs.ActiveRun, work: "SparkWork", flavor: "SparkFlavor", artifact_path: str, settings) -> None:
    """On the worker: the model written (here, or already when the session was stopping),
    then the model folder logged, subject to `max_model_size_mb`."""
    if not _finished(run, work, f"the model {artifact_path}/"):
        run.set_tag(TAG_MODEL_SKIPPED, "the SparkSession was stopped before the model could be written", normalize=True)
        return
    if work.error is not None:
        skip_model(run, f"its writer failed ({type(work.error).__name__}: {work.error})", "pyspark: writer failed")
        return
    log_model(run, WrittenModel(work.result[artifact_path]), flavor, artifact_path=artifact_path,
              max_size_mb=settings.max_model_size_mb)


def _finished(run: runs.ActiveRun, work: "SparkWork", what: str, *, heavy: bool = True) -> bool:
    """On the worker: `work` done (now, between fits when it is `heavy`, or earlier by a
    stopping session); False when it found no session: it was stopped while autolog was off
    (a stop while it is on does the work first). One warning for the process about that."""
    if heavy:
        activity.wait()
        pending.run_alongside(work)  # the run's other Spark work (its model's writer) meanwhile
    else:
        work.run()
    if work.skipped:
        containment.warn_once("pyspark session stopped", "the SparkSession was stopped before autolog could "
                              "read or write %s of run %s (nor any other Spark work still pending): not logged",
                              what, run.run_id)
    return not work.skipped


def _deliver_metrics(run: runs.ActiveRun, work: "SparkWork") -> None:
    if not _finished(run, work, "the training metrics"):
        return
    if work.error is not None:
        raise work.error
    scalars, histories = work.result
    if scalars:
        run.log_metrics(scalars, normalize=True)
    for key, values in histories.items():
        for step, value in enumerate(values):
            run.log_metric(key, value, step=step, normalize=True)


def _log_input_facts(run: runs.ActiveRun, estimator: Any, dataset: Any) -> None:
    """The input's column names and its row count where Spark knows it without a job, and
    with `log_datasets` the input as MLflow's SparkDataset describes it (digest from the
    plan's semantic hash, schema, row count: autolog/instrument/datasets.py), all read on
    the worker."""
    described = runs.settings().log_datasets
    name = caller_variable_name(dataset) if described else None
    work = pending.add(functools.partial(_input, dataset, described, name), f"the input of run {run.run_id}")
    run.defer(functools.partial(_deliver_input_facts, run, work, type(estimator).__name__),
              label=f"pyspark: the input of run {run.run_id}")


def _input(dataset: Any, described: bool, name: Optional[str]) -> tuple:
    """(column names, row count or None, the described dataset or None)."""
    columns, rows = input_facts(dataset)
    return columns, rows, (describe(dataset, name=name) if described else None)


def _deliver_input_facts(run: runs.ActiveRun, work: "SparkWork", estimator_name: str) -> None:
    if not _finished(run, work, "the input's columns and row count", heavy=False):
        return
    if work.error is not None:
        raise work.error
    columns, rows, described = work.result
    if described is not None:
        log_dataset(run, described, context="train")
    params: dict = {"input_columns": columns}
    if rows is not None:
        params["input_rows"] = rows
        if rows == 0:
            containment.warn_once("pyspark zero rows", "%s.fit was given a DataFrame with zero rows (run %s)",
                                  estimator_name, run.run_id)
    run.log_params(params, normalize=True)


def input_facts(dataset: Any) -> tuple:
    """(column names, row count or None). The count is the optimised plan's statistics,
    which Spark has without running a job for local data (a pandas or Python collection),
    `spark.range`, a cached DataFrame that has been materialised and a table with statistics."""
    return list(dataset.columns), spark_row_count(dataset)


# -- the training summary ------------------------------------------------------------------------
def _summary_models(model: Any, estimator: Any) -> list:
    """(prefix, model) of the fitted models whose training summary is logged: the model, the
    best model of a search, the stages of a PipelineModel (prefixed with the stage's name
    when more than one stage has a summary)."""
    if _is_tuning_model(model):
        model = model.bestModel
    stages = list(getattr(model, "stages", None) or []) if _is_pipeline_model(model) else [model]
    found = [stage for stage in stages if _has_summary_attribute(stage)]
    if len(found) <= 1:
        return [("", stage) for stage in found]
    names = indexed_names(estimator)
    return [(names.get(stage.uid, type(stage).__name__) + ".", stage) for stage in found]


def _has_summary_attribute(model: Any) -> bool:
    # `hasSummary` is a property of the models that can have one (no Spark call to ask the class)
    return isinstance(getattr(type(model), "hasSummary", None), property)


def _summary_metrics(models: list) -> tuple[dict, dict]:
    """On the worker (Spark jobs: most summary values are computed from the predictions on
    the training data when first read): `training_<name>` scalars and per-iteration histories."""
    scalars: dict = {}
    histories: dict = {}
    for prefix, model in models:
        if not model.hasSummary:
            continue
        summary = model.summary
        for name in SUMMARY_METRICS:
            value = _summary_value(summary, name)
            if is_scalar_number(value):
                scalars[f"{prefix}{_training_key(name)}"] = float(value)
        history = _summary_value(summary, "objectiveHistory")
        if isinstance(history, (list, tuple)) and history:
            histories[f"{prefix}training_objectiveHistory"] = [float(v) for v in history if is_scalar_number(v)]
    return scalars, histories


def _summary_value(summary: Any, name: str) -> Any:
    try:
        value = getattr(summary, name)
        return value() if name == "weightedFMeasure" and callable(value) else value
    except Exception as exc:  # noqa: BLE001 - not defined for this model (areaUnderROC of 3 classes)
        log.debug("autolog: pyspark summary value %s not read: %r", name, exc)
        return None


def _training_key(name: str) -> str:
    if name.startswith("training") and name != "training":
        rest = name[len("training"):]
        return "training_" + rest[0].lower() + rest[1:]  # trainingCost -> training_cost
    return "training_" + name


# -- tuning: CrossValidator, TrainValidationSplit --------------------------------------------------
def _is_tuning_estimator(stage: Any) -> bool:
    from pyspark.ml.tuning import CrossValidator, TrainValidationSplit

    return isinstance(stage, (CrossValidator, TrainValidationSplit))


def _is_tuning_model(model: Any) -> bool:
    from pyspark.ml.tuning import CrossValidatorModel, TrainValidationSplitModel

    return isinstance(model, (CrossValidatorModel, TrainValidationSplitModel))


def _is_pipeline_model(model: Any) -> bool:
    from pyspark.ml import PipelineModel

    return isinstance(model, PipelineModel)


def search_metrics(model: Any) -> dict:
    """metric key -> one value per param map: `avg_<metric>` and `std_<metric>` of a
    CrossValidatorModel, `<metric>` of a TrainValidationSplitModel (MLflow's names)."""
    from pyspark.ml.tuning import CrossValidatorModel

    metric = model.getEvaluator().getMetricName()
    if isinstance(model, CrossValidatorModel):
        found = {f"avg_{metric}": list(model.avgMetrics)}
        std = getattr(model, "stdMetrics", None)
        if std:
            found[f"std_{metric}"] = list(std)
        return found
    return {metric: list(model.validationMetrics)}


def _log_tuning(run: runs.ActiveRun, estimator: Any, model: Any, overrides: dict, settings) -> dict:
    """A child run per param map (the best `max_tuning_runs`, best first) with its params and
    metrics; `best_<param>` params and `best_<metric>` metrics on the parent; on the worker
    search_results.csv and best_parameters.json, as MLflow writes them. Returns the tuner's
    entry of estimator_info.json."""
    names = indexed_names(estimator, overrides)
    tuned = model.getEstimator()
    param_maps = list(model.getEstimatorParamMaps())
    metrics = search_metrics(model)
    ranking_key = next(iter(metrics))
    ranking = metrics[ranking_key]
    larger_is_better = bool(model.getEvaluator().isLargerBetter())
    order = sorted(range(len(ranking)), key=lambda i: ranking[i], reverse=larger_is_better)
    best = order[0] if order else None
    tuning_maps = [{_tuning_key(param, names): _plain(value) for param, value in pm.items()} for pm in param_maps]
    if best is not None:
        run.log_params({f"best_{k}": v for k, v in tuning_maps[best].items()}, normalize=True)
        run.log_metrics({f"best_{k}": float(v[best]) for k, v in metrics.items()}, normalize=True)
    limit = settings.max_tuning_runs
    for index in order if limit is None else order[:limit]:
        child_overrides = {**overrides, **param_maps[index]}
        tags = {runs.TAG_INTEGRATION: NAME, runs.TAG_CANDIDATE: index, **estimator_tags(tuned)}
        params = instance_params(tuned, 0, names, child_overrides)
        params["estimator_class"] = _class_name(tuned)
        with runs.child_run(f"{run.run_name}-candidate-{index}", parent=run, tags=tags) as child:
            child.log_params(params, normalize=True)
            child.log_metrics({k: float(v[index]) for k, v in metrics.items()}, normalize=True)
    run.defer(functools.partial(_write_search_artifacts, run, tuning_maps, metrics, best),
              label=f"pyspark: search results of run {run.run_id}")
    return {names[estimator.uid]: {"tuning_parameter_map_list": tuning_maps,
                                   "tuned_estimator_parameter_map": instance_params(tuned, 1, names, overrides)}}


def _tuning_key(param: Any, names: dict) -> str:
    if param.parent not in names:
        raise ValueError(f"a tuned param that the tuned estimator does not own: {param}")
    return f"{names[param.parent]}.{param.name}"


def _write_search_artifacts(run: runs.ActiveRun, tuning_maps: list, metrics: dict, best: Optional[int]) -> None:
    import csv
    import io

    columns = sorted({k for pm in tuning_maps for k in pm})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["params", *metrics, *(f"param.{c}" for c in columns)])
    for index, pm in enumerate(tuning_maps):
        writer.writerow([json.dumps(pm, default=str), *(v[index] for v in metrics.values()),
                         *(pm.get(c, "") for c in columns)])
    run.log_text(out.getvalue(), "search_results.csv")
    if best is not None:
        run.log_text(json.dumps(tuning_maps[best], default=str), "best_parameters.json")


# -- fit(dataset, [param maps]) ------------------------------------------------------------------
def _log_param_map_runs(run: runs.ActiveRun, estimator: Any, param_maps: list, fitted: list, settings) -> None:
    """`fit` with a list of param maps returns a model per map: a child run for each (the
    first `max_tuning_runs`), with the params the map gives, the training metrics and the model."""
    limit = settings.max_tuning_runs
    count = len(fitted) if limit is None else min(limit, len(fitted))
    for index in range(count):
        param_map = param_maps[index] if isinstance(param_maps[index], dict) else {}
        tags = {runs.TAG_INTEGRATION: NAME, runs.TAG_CANDIDATE: index, **estimator_tags(estimator)}
        with runs.child_run(f"{run.run_name}-param-map-{index}", parent=run, tags=tags) as child:
            child.log_params(estimator_params(estimator, param_map), normalize=True)
            _log_fitted(child, estimator, fitted[index], settings)


# -- the model ------------------------------------------------------------------------------------
def _unwritable(model: Any) -> Any:
    """The model, or the stage inside it, that has no writer; None when all can be written."""
    from pyspark.ml.util import MLWritable

    if _is_pipeline_model(model):
        for stage in model.stages:
            found = _unwritable(stage)
            if found is not None:
                return found
        return None
    if not isinstance(model, MLWritable):
        return model
    if _is_tuning_model(model):
        return _unwritable(model.bestModel)
    return None



def _stop(wrapped, instance, args, kwargs):
    """`SparkContext.stop`: what autolog still has to do with Spark is done first."""
    if len(pending):
        with containment.contained("pyspark: finishing Spark work before the SparkContext stops"):
            pending.run_all()
    return wrapped(*args, **kwargs)


# -- post-training metrics ----------------------------------------------------------------------
def _evaluating(wrapped, args: tuple, kwargs: dict) -> Any:
    """The original call, during which the transforms and evaluations it makes itself (a
    PipelineModel's stages, an evaluator's own) record nothing."""
    token = _in_evaluation.set(True)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _in_evaluation.reset(token)


def _transform(wrapped, instance, args, kwargs):
    """`model.transform(dataset)` of a model autolog logged: its predictions are remembered
    (by id, while they live) with the model's run and the caller's name for `dataset`."""
    run = post_training.run_of(instance) if instance is not None else None
    if run is None or _in_evaluation.get() or runs.training_call_in_progress() is not None:
        return wrapped(*args, **kwargs)
    result = _evaluating(wrapped, args, kwargs)
    with containment.contained("pyspark: remembering predictions for post-training metrics"):
        dataset = next(iter(call_arguments(wrapped, args, kwargs).values()), None)
        post_training.register_prediction(result, run, post_training.dataset_name(run, dataset))
    return result


def _evaluate(wrapped, instance, args, kwargs):
    """`evaluator.evaluate(predictions)` on predictions of a model autolog logged: the
    metric goes to that model's run as `<metricName>_<dataset>` (`-2`, `-3` on a repeat)."""
    if _in_evaluation.get() or runs.training_call_in_progress() is not None or instance is None:
        return wrapped(*args, **kwargs)
    try:
        arguments = call_arguments(wrapped, args, kwargs)
    except TypeError:  # the caller's own mistake: evaluate raises it, unchanged
        return wrapped(*args, **kwargs)
    source = post_training.prediction_source([arguments.get("dataset")])
    if source is None:
        return wrapped(*args, **kwargs)
    result = _evaluating(wrapped, args, kwargs)
    with containment.contained("pyspark: logging a post-training metric"):
        if is_scalar_number(result):
            run, dataset_name = source
            params = arguments.get("params")
            evaluator = instance.copy(params) if isinstance(params, dict) and params else instance
            key = post_training.metric_key(run, evaluator.getMetricName(), dataset_name)
            run.log_metric(key, result, normalize=True)
            _remember_evaluator(run, key, evaluator)
    return result


class EvaluatorCalls:
    """metric_info.json of a run, as MLflow writes it: for each post-training metric key, the
    evaluator's class and params. Kept for at most `MAX_RUNS` runs (the oldest forgotten)."""

    MAX_RUNS = 1_000

    def __init__(self):
        self._lock = threading.Lock()
        self._runs: dict[str, dict] = {}

    def add(self, run_id: str, key: str, info: dict) -> dict:
        with self._lock:
            calls = self._runs.pop(run_id, None) or {}
            calls[key] = info
            self._runs[run_id] = calls
            while len(self._runs) > self.MAX_RUNS:
                self._runs.pop(next(iter(self._runs)))
            return dict(sorted(calls.items()))

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()


evaluator_calls = EvaluatorCalls()


def _remember_evaluator(run: runs.ActiveRun, key: str, evaluator: Any) -> None:
    params = {p.name: _plain(v) for p, v in _defined(evaluator, {}).items()}
    calls = evaluator_calls.add(run.run_id, key, {"evaluator_class": _class_name(evaluator), "params": params})
    text = json.dumps(calls, default=str)
    run.defer(lambda: run.log_text(text, "metric_info.json"), label=f"pyspark: metric_info.json of run {run.run_id}")


# -- thread pools of tuning and OneVsRest --------------------------------------------------------------
def _thread_target(wrapped, instance, args, kwargs):
    """`inheritable_thread_target(function)` gives a thread target, `inheritable_thread_target(
    session)` a decorator of thread targets. Made inside a training call, the targets run as
    inside it on the pool's threads, so the fits they make are not logged on their own."""
    made = wrapped(*args, **kwargs)
    if runs.training_call_in_progress() is None:
        return made
    target = args[0] if args else next(iter(kwargs.values()), None)
    if callable(target):
        return _inside_training_call(made)
    return lambda function: _inside_training_call(made(function))


def _inside_training_call(function: Callable) -> Callable:
    @functools.wraps(function)
    def inside(*args, **kwargs):
        with runs.InsideTrainingCall():
            return function(*args, **kwargs)

    return inside
