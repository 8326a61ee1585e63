"""The local store seen through MLflow: a read-only MLflow tracking store (and model registry).

Registered under MLflow's entry-point groups `mlflow.tracking_store` and
`mlflow.model_registry_store` with the scheme `autolog` (pyproject.toml), so every MLflow
tool reads an autolog store in place, live, with no server to set up and nothing copied:

    mlflow server --backend-store-uri autolog:///abs/path/to/autolog-runs   # or `autolog ui`
    mlflow.set_tracking_uri("autolog:///abs/path/to/autolog-runs")
    mlflow.search_runs(search_all_experiments=True)
    MlflowClient().get_run(run_id)
    mlflow.pyfunc.load_model(f"runs:/{run_id}/model")

`autolog:///ABS/PATH` names a store by its absolute path, `autolog:REL/PATH` relative to
the working folder. Everything is read through `LocalStore`'s reading side
(autolog/backends/local.py); filter strings, order-by and pages are MLflow's own
(`SearchUtils`), applied as MLflow's file store applies them. A run's `artifact_uri` is a
`file://` URI of its folder in the store, so MLflow's local artifact repository serves the
artifacts and `runs:/ID/model` finds the model; a model folder (one with an `MLmodel` file)
at the top of a run's artifacts is listed in the run's `mlflow.log-model.history` tag,
as MLflow's own `log_model` records it (the UI's Models column).

Read-only: a write (creating a run or experiment, logging, tagging, deleting) raises an
`MlflowException` that says so and how to write: `autolog.autolog()` into the store, or
an MLflow tracking server. The parts of MLflow this store has nothing for (traces, logged
model entities, prompts, registered models, evaluation datasets, scorers, the AI gateway)
answer their searches with empty pages, so the MLflow UI shows its own empty state there,
and a lookup of one such item by id is MLflow's RESOURCE_DOES_NOT_EXIST.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
import urllib.parse
import warnings
from typing import Optional

with warnings.catch_warnings():
    # when this module is imported before mlflow, importing mlflow loads MLflow's plugins, this
    # module among them while it is half made, and MLflow warns that it cannot register it:
    # `_register_with_mlflow` at the end does
    warnings.filterwarnings("ignore", message='Failure attempting to register store for scheme "autolog"')
    import mlflow.tracking  # noqa: F401

from mlflow.entities import Experiment as MlflowExperiment
from mlflow.entities import LifecycleStage, ViewType
from mlflow.entities import Metric as MlflowMetric
from mlflow.entities import Param as MlflowParam
from mlflow.entities import Run as MlflowRun
from mlflow.entities import Dataset as MlflowDataset
from mlflow.entities import DatasetInput as MlflowDatasetInput
from mlflow.entities import InputTag, RunData, RunInfo, RunInputs, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.model_registry.abstract_store import AbstractStore as AbstractRegistryStore
from mlflow.store.tracking import SEARCH_MAX_RESULTS_DEFAULT, SEARCH_MAX_RESULTS_THRESHOLD
from mlflow.store.tracking.abstract_store import AbstractStore
from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_MODELS, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME, MLFLOW_USER
from mlflow.utils.search_utils import SearchExperimentsUtils, SearchUtils

from autolog.backends import PLUGIN_SCHEME as SCHEME
from autolog.backends import plugin_uri as store_uri
from autolog.backends.base import RunNotFound, StoreNotFound
from autolog.backends.local import LocalStore
from autolog.backends.mlflow_tags import mlflow_source_tags
from autolog.entities import Run

MLMODEL = "MLmodel"
#: the most run ids in one SQL statement (SQLite's host-parameter limit is 999 on old builds)
_MAX_VARS = 900

READ_ONLY_MESSAGE = (
    "the autolog store at {root} is read-only through MLflow ({what} is a write). To write to it, "
    "log with autolog (`autolog.autolog()`, `autolog.start_run()`, ... with tracking_uri={root!r}); "
    "to write with MLflow's own API, use an MLflow tracking server or an MLflow store "
    "(`mlflow server`, `sqlite:///mlflow.db`)"
)


def store_path(uri: str) -> str:
    """The folder of an `autolog:` URI: `autolog:///abs/path`, `autolog:rel/path`, `autolog://localhost/abs`."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme.lower() != SCHEME:
        raise MlflowException(f"not an autolog store URI: {uri!r} (expected autolog:///path/to/autolog-runs)",
                              INVALID_PARAMETER_VALUE)
    if parsed.netloc not in ("", "localhost"):
        raise MlflowException(
            f"an autolog store URI names a folder on this machine: autolog:///abs/path, not host "
            f"{parsed.netloc!r} ({uri!r})", INVALID_PARAMETER_VALUE)
    path = urllib.parse.unquote(parsed.path)
    if not path:
        raise MlflowException(f"the autolog store URI {uri!r} names no folder", INVALID_PARAMETER_VALUE)
    return os.path.abspath(os.path.expanduser(path))


def _not_found(what: str) -> MlflowException:
    return MlflowException(what, RESOURCE_DOES_NOT_EXIST)


class _ReadOnly:
    """Writes through MLflow raise the one clear error, naming the call and how to write."""

    root: str

    def _refuse(self, what: str):
        raise MlflowException(READ_ONLY_MESSAGE.format(root=self.root, what=what), INVALID_PARAMETER_VALUE)


class AutologTrackingStore(_ReadOnly, AbstractStore):
    """MLflow's tracking-store interface over a `LocalStore` folder, read-only."""

    def __init__(self, store_uri: str, artifact_uri: Optional[str] = None):
        super().__init__()
        self.store_uri = store_uri
        self.root = store_path(store_uri)
        self.local = LocalStore(self.root)
        self._models_lock = threading.Lock()
        self._models: dict[tuple, Optional[dict]] = {}  # (MLmodel path, mtime) -> its history entry

    # -- experiments ------------------------------------------------------------------------
    def _experiments(self) -> list[MlflowExperiment]:
        try:
            found = self.local.list_experiments()
        except StoreNotFound:
            return []
        return [self._experiment(e.experiment_id, e.name, e.creation_time) for e in found]

    def _experiment(self, experiment_id: str, name: str, creation_time: Optional[int]) -> MlflowExperiment:
        location = pathlib.Path(self.local.artifacts_root, str(experiment_id)).as_uri()
        return MlflowExperiment(experiment_id=str(experiment_id), name=name, artifact_location=location,
                                lifecycle_stage=LifecycleStage.ACTIVE, tags=[], creation_time=creation_time,
                                last_update_time=creation_time)

    def search_experiments(self, view_type=ViewType.ACTIVE_ONLY, max_results=SEARCH_MAX_RESULTS_DEFAULT,
                           filter_string=None, order_by=None, page_token=None):
        _check_max_results(max_results)
        experiments = self._experiments() if view_type in (ViewType.ACTIVE_ONLY, ViewType.ALL) else []
        experiments = SearchExperimentsUtils.filter(experiments, filter_string)
        experiments = SearchExperimentsUtils.sort(experiments, order_by or ["creation_time DESC", "experiment_id ASC"])
        page, token = SearchUtils.paginate(experiments, page_token, max_results)
        return PagedList(page, token)

    def get_experiment(self, experiment_id):
        for experiment in self._experiments():
            if experiment.experiment_id == str(experiment_id):
                return experiment
        raise _not_found(f"No Experiment with id={experiment_id} exists (autolog store at {self.root})")

    def get_experiment_by_name(self, experiment_name):
        for experiment in self._experiments():
            if experiment.name == experiment_name:
                return experiment
        return None

    def create_experiment(self, name, artifact_location=None, tags=None):
        self._refuse(f"create_experiment({name!r})")

    def delete_experiment(self, experiment_id):
        self._refuse("delete_experiment")

    def restore_experiment(self, experiment_id):
        self._refuse("restore_experiment")

    def rename_experiment(self, experiment_id, new_name):
        self._refuse("rename_experiment")

    def set_experiment_tag(self, experiment_id, tag):
        self._refuse("set_experiment_tag")

    def delete_experiment_tag(self, experiment_id, key):
        self._refuse("delete_experiment_tag")

    # -- runs -----------------------------------------------------------------------------------
    def get_run(self, run_id):
        try:
            run = self.local.get_run(run_id)
        except (RunNotFound, StoreNotFound):
            raise _not_found(f"Run '{run_id}' not found (autolog store at {self.root})") from None
        return self._to_mlflow([run])[0]

    def _search_runs(self, experiment_ids, filter_string, run_view_type, max_results, order_by, page_token):
        _check_max_results(max_results)
        if run_view_type == ViewType.DELETED_ONLY:
            return [], None  # nothing is ever deleted here
        wanted = {str(e) for e in experiment_ids or ()}
        names = [e.name for e in self._experiments() if e.experiment_id in wanted]
        if not names:
            return [], None
        try:
            runs = self.local.search_runs(experiment_names=names)
        except StoreNotFound:
            return [], None
        found = SearchUtils.filter(self._to_mlflow(runs), filter_string)
        ordered = SearchUtils.sort(found, order_by)
        return SearchUtils.paginate(ordered, page_token, max_results)

    def _to_mlflow(self, runs: list[Run]) -> list[MlflowRun]:
        points = self._latest_points([r.run_id for r in runs])
        return [self._mlflow_run(run, points.get(run.run_id, {})) for run in runs]

    def _latest_points(self, run_ids: list[str]) -> dict:
        """run id -> key -> (step, timestamp) of each metric's last point: the plain
        `latest_metrics` rows the store keeps (docs/local-store.md), in one read snapshot."""
        out: dict = {}
        with self.local._read() as conn:
            for start in range(0, len(run_ids), _MAX_VARS):
                chunk = run_ids[start:start + _MAX_VARS]
                for run_id, key, step, timestamp in conn.execute(
                        f"SELECT run_id, key, step, timestamp FROM latest_metrics"
                        f" WHERE run_id IN ({','.join('?' * len(chunk))})", chunk):
                    out.setdefault(run_id, {})[key] = (step, timestamp)
        return out

    def _mlflow_run(self, run: Run, points: dict) -> MlflowRun:
        tags = dict(run.tags)
        tags.update(mlflow_source_tags(run.tags))
        tags.setdefault(MLFLOW_RUN_NAME, run.run_name)
        if run.parent_run_id:
            tags.setdefault(MLFLOW_PARENT_RUN_ID, run.parent_run_id)
        models = self._model_history(run)
        if models and MLFLOW_LOGGED_MODELS not in tags:
            tags[MLFLOW_LOGGED_MODELS] = json.dumps(models)
        artifact_uri = pathlib.Path(run.artifact_uri).as_uri() if run.artifact_uri else None
        info = RunInfo(run_id=run.run_id, experiment_id=str(run.experiment_id),
                       user_id=tags.get(MLFLOW_USER, ""), status=run.status, start_time=run.start_time,
                       end_time=run.end_time, lifecycle_stage=LifecycleStage.ACTIVE,
                       artifact_uri=artifact_uri, run_name=run.run_name)
        metrics = []
        for key, value in run.metrics.items():
            step, timestamp = points.get(key, (0, run.start_time))
            metrics.append(MlflowMetric(key, value, timestamp, step))
        data = RunData(metrics=metrics, params=[MlflowParam(k, v) for k, v in run.params.items()],
                       tags=[RunTag(k, v) for k, v in tags.items()])
        return MlflowRun(info, data, RunInputs(dataset_inputs=_dataset_inputs(run)))

    def _model_history(self, run: Run) -> list[dict]:
        """The model folders at the top of the run's artifacts, as `mlflow.log-model.history` entries."""
        if not run.artifact_uri or not os.path.isdir(run.artifact_uri):
            return []
        history = []
        with os.scandir(run.artifact_uri) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_dir():
                    entry_info = self._model_entry(os.path.join(entry.path, MLMODEL), run.run_id, entry.name)
                    if entry_info is not None:
                        history.append(entry_info)
        return history

    def _model_entry(self, mlmodel: str, run_id: str, artifact_path: str) -> Optional[dict]:
        try:
            mtime = os.stat(mlmodel).st_mtime_ns
        except OSError:
            return None
        key = (mlmodel, mtime)
        with self._models_lock:
            if key in self._models:
                return self._models[key]
        from autolog.instrument.models import read_mlmodel

        try:
            meta = read_mlmodel(os.path.dirname(mlmodel))
        except (OSError, ValueError):
            meta = None
        entry = None
        if isinstance(meta, dict):
            entry = {k: meta[k] for k in ("utc_time_created", "model_uuid") if k in meta}
            entry.update(run_id=run_id, artifact_path=artifact_path, flavors={
                name: {k: v for k, v in conf.items() if k != "config"} if isinstance(conf, dict) else conf
                for name, conf in (meta.get("flavors") or {}).items()})
        with self._models_lock:
            if len(self._models) > 4096:  # bounded: a UI open for days over many runs
                self._models.clear()
            self._models[key] = entry
        return entry

    def get_metric_history(self, run_id, metric_key, max_results=None, page_token=None):
        try:
            points = self.local.get_metric_history(run_id, metric_key)
        except (RunNotFound, StoreNotFound):
            raise _not_found(f"Run '{run_id}' not found (autolog store at {self.root})") from None
        metrics = [MlflowMetric(m.key, m.value, m.timestamp, m.step, run_id=run_id) for m in points]
        if max_results is None:
            offset = SearchUtils.parse_start_offset_from_page_token(page_token)
            return PagedList(metrics[offset:], None)
        page, token = SearchUtils.paginate(metrics, page_token, max_results)
        return PagedList(page, token)

    def create_run(self, experiment_id, user_id, start_time, tags, run_name):
        self._refuse("create_run")

    def update_run_info(self, run_id, run_status, end_time, run_name):
        self._refuse("update_run_info")

    def delete_run(self, run_id):
        self._refuse("delete_run")

    def restore_run(self, run_id):
        self._refuse("restore_run")

    def log_batch(self, run_id, metrics, params, tags):
        self._refuse("log_batch")

    def log_metric(self, run_id, metric):
        self._refuse("log_metric")

    def log_param(self, run_id, param):
        self._refuse("log_param")

    def set_tag(self, run_id, tag):
        self._refuse("set_tag")

    def delete_tag(self, run_id, key):
        self._refuse("delete_tag")

    def log_inputs(self, run_id, datasets=None, models=None):
        self._refuse("log_inputs")

    def log_outputs(self, run_id, models):
        self._refuse("log_outputs")

    def record_logged_model(self, run_id, mlflow_model):
        self._refuse("record_logged_model (log_model)")

    def log_batch_async(self, run_id, metrics, params, tags):
        self._refuse("log_batch_async")

    # -- what this store has none of: empty pages, never an error page --------------------
    def search_traces(self, experiment_ids=None, filter_string=None, max_results=100, order_by=None,
                      page_token=None, model_id=None, locations=None):
        return [], None

    def find_completed_sessions(self, experiment_id, min_last_trace_timestamp_ms, max_last_trace_timestamp_ms,
                                max_results=None, filter_string=None):
        return []

    def query_trace_metrics(self, experiment_ids, view_type, metric_name, aggregations, dimensions=None,
                            filters=None, time_interval_seconds=None, start_time_ms=None, end_time_ms=None,
                            max_results=1000, page_token=None):
        return PagedList([], None)

    def search_issues(self, experiment_id=None, filter_string=None, max_results=None, page_token=None,
                      include_trace_count=False):
        return PagedList([], None)

    def search_logged_models(self, experiment_ids, filter_string=None, datasets=None, max_results=None,
                             order_by=None, page_token=None):
        return PagedList([], None)

    def get_logged_model(self, model_id, allow_deleted=False):
        raise _not_found(f"Logged model with ID '{model_id}' not found (an autolog store has no logged model entities)")

    def _search_datasets(self, experiment_ids):
        """The datasets the experiments' runs used, one per (experiment, name, digest, context),
        as MLflow's stores list them (the runs table's Datasets filter)."""
        from mlflow.entities import _DatasetSummary as DatasetSummary
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        wanted = {str(e) for e in experiment_ids or ()}
        names = [e.name for e in self._experiments() if e.experiment_id in wanted]
        try:
            runs = self.local.search_runs(experiment_names=names) if names else []
        except StoreNotFound:
            return []
        summaries = {}
        for run in runs:
            for used in getattr(run, "inputs", None) or ():
                key = (str(run.experiment_id), used.dataset.name, used.dataset.digest,
                       used.tags.get(MLFLOW_DATASET_CONTEXT))
                summaries.setdefault(key, DatasetSummary(*key))
        return list(summaries.values())[:1000]  # MLflow's own cap on dataset summaries

    def search_datasets(self, experiment_ids=None, filter_string=None, max_results=1000, order_by=None,
                        page_token=None):
        return PagedList([], None)

    def list_scorers(self, experiment_id):
        return []

    def list_scorers_across_experiments(self, experiment_ids):
        return []

    def list_scorer_versions(self, experiment_id, name):
        return []

    def list_label_schemas(self, experiment_id, max_results=100, page_token=None):
        return PagedList([], None)

    def list_review_queues(self, experiment_id, *, user=None, item_id=None, max_results=None, page_token=None):
        return PagedList([], None)

    def search_mcp_servers(self, filter_string=None, max_results=SEARCH_MAX_RESULTS_DEFAULT, order_by=None,
                           page_token=None):
        return PagedList([], None)

    def search_mcp_server_versions(self, name, filter_string=None, max_results=SEARCH_MAX_RESULTS_DEFAULT,
                                   order_by=None, page_token=None):
        return PagedList([], None)

    def search_mcp_access_endpoints(self, server_name=None, server_version=None, server_alias=None,
                                    filter_string=None, max_results=SEARCH_MAX_RESULTS_DEFAULT, order_by=None,
                                    page_token=None):
        return PagedList([], None)

    def list_secret_infos(self, provider=None):
        return []

    def list_gateway_endpoints(self, provider=None, secret_id=None):
        return []

    def list_gateway_model_definitions(self, provider=None, secret_id=None):
        return []

    def list_endpoint_bindings(self, endpoint_id=None, resource_type=None, resource_id=None):
        return []

    def list_budget_policies(self, max_results=SEARCH_MAX_RESULTS_DEFAULT, page_token=None):
        return PagedList([], None)

    def list_gateway_guardrails(self, max_results=SEARCH_MAX_RESULTS_DEFAULT, page_token=None):
        return PagedList([], None)

    # -- writes of those parts: refused like every other write ------------------------------
    def start_trace(self, trace_info):
        self._refuse("start_trace (tracing)")

    def log_spans(self, location, spans, tracking_uri=None):
        self._refuse("log_spans (tracing)")

    def link_traces_to_run(self, trace_ids, run_id):
        self._refuse("link_traces_to_run")

    def create_logged_model(self, experiment_id, name=None, source_run_id=None, tags=None, params=None,
                            model_type=None):
        self._refuse("create_logged_model (log_model)")

    def create_dataset(self, *args, **kwargs):
        self._refuse("create_dataset")

    def register_scorer(self, *args, **kwargs):
        self._refuse("register_scorer")

    def get_or_create_user_queue(self, experiment_id, *, user):
        self._refuse("get_or_create_user_queue (a review queue)")


class AutologRegistryStore(_ReadOnly, AbstractRegistryStore):
    """The model registry of an autolog store: there is none, so every search is empty
    (the UI's Models and Prompts pages show MLflow's empty state) and every write is refused."""

    def __init__(self, store_uri: str, tracking_uri: Optional[str] = None):
        super().__init__(store_uri, tracking_uri)
        self.root = store_path(store_uri)

    def search_registered_models(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        return PagedList([], None)

    def search_model_versions(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        return PagedList([], None)

    def get_registered_model(self, name):
        raise _not_found(f"Registered Model with name={name} not found (an autolog store has no model registry)")

    def get_latest_versions(self, name, stages=None):
        raise _not_found(f"Registered Model with name={name} not found (an autolog store has no model registry)")

    def get_model_version(self, name, version):
        raise _not_found(f"Model Version (name={name}, version={version}) not found (an autolog store has no model registry)")

    def get_model_version_download_uri(self, name, version):
        self.get_model_version(name, version)

    def get_model_version_by_alias(self, name, alias):
        raise _not_found(f"Registered model alias {alias} not found (an autolog store has no model registry)")

    def list_webhooks(self, max_results=None, page_token=None):
        return PagedList([], None)

    def create_registered_model(self, name, tags=None, description=None, deployment_job_id=None):
        self._refuse("create_registered_model")

    def update_registered_model(self, name, description, deployment_job_id=None):
        self._refuse("update_registered_model")

    def rename_registered_model(self, name, new_name):
        self._refuse("rename_registered_model")

    def delete_registered_model(self, name):
        self._refuse("delete_registered_model")

    def set_registered_model_tag(self, name, tag):
        self._refuse("set_registered_model_tag")

    def delete_registered_model_tag(self, name, key):
        self._refuse("delete_registered_model_tag")

    def create_model_version(self, name, source, run_id=None, tags=None, run_link=None, description=None,
                             local_model_path=None, model_id=None):
        self._refuse("create_model_version (register_model)")

    def update_model_version(self, name, version, description):
        self._refuse("update_model_version")

    def transition_model_version_stage(self, name, version, stage, archive_existing_versions):
        self._refuse("transition_model_version_stage")

    def delete_model_version(self, name, version):
        self._refuse("delete_model_version")

    def set_model_version_tag(self, name, version, tag):
        self._refuse("set_model_version_tag")

    def delete_model_version_tag(self, name, version, key):
        self._refuse("delete_model_version_tag")

    def set_registered_model_alias(self, name, alias, version):
        self._refuse("set_registered_model_alias")

    def delete_registered_model_alias(self, name, alias):
        self._refuse("delete_registered_model_alias")


def _dataset_inputs(run: Run) -> list:
    """The run's dataset inputs (`Run.inputs` of the local store) as MLflow's entities."""
    out = []
    for used in getattr(run, "inputs", None) or ():
        d = used.dataset
        dataset = MlflowDataset(name=d.name, digest=d.digest, source_type=d.source_type, source=d.source,
                                schema=d.schema, profile=d.profile)
        out.append(MlflowDatasetInput(dataset, [InputTag(k, str(v)) for k, v in dict(used.tags).items()]))
    return out


def _check_max_results(max_results) -> None:
    if not isinstance(max_results, int) or max_results < 1 or max_results > SEARCH_MAX_RESULTS_THRESHOLD:
        raise MlflowException(
            f"Invalid value {max_results!r} for parameter 'max_results': it must be an integer from 1 to "
            f"{SEARCH_MAX_RESULTS_THRESHOLD}", INVALID_PARAMETER_VALUE)


def _register_with_mlflow() -> None:
    """MLflow registers these stores from its entry points while `mlflow.tracking` is imported.
    When this module is imported before mlflow, that happens while the module is half made and
    MLflow skips it (with a warning): register them directly then (a second time is harmless)."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    tracking_utils._tracking_store_registry.register(SCHEME, AutologTrackingStore)
    if registry_utils._model_registry_store_registry is not None:  # else made later, from the entry points
        registry_utils._model_registry_store_registry.register(SCHEME, AutologRegistryStore)


_register_with_mlflow()

__all__ = ["AutologTrackingStore", "AutologRegistryStore", "SCHEME", "store_path", "store_uri"]
