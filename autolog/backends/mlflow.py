"""The MLflow backend: autolog's runs in an MLflow tracking server (or any MLflow store).

URIs (see autolog/backends/__init__.py): `http://host:5000`, `https://...`, `databricks`,
`databricks://PROFILE`, and `mlflow+STORE` for any other MLflow store URI
(`mlflow+sqlite:///mlflow.db`, `mlflow+file:///path/mlruns`). Uses the `mlflow` client
library (`pip install 'autolog[mlflow]'`), imported when the backend is built, which
happens on the logger's worker thread, never at `autolog()` time.

Run ids. autolog makes its run ids locally (the training thread never waits for a
server); an MLflow server makes its own. Every MLflow run we create carries the tag
`autolog.run_id`; this backend keeps a map autolog id -> MLflow id, filled when it
creates a run and, on a miss, by searching that tag. `create_run` of an autolog id
that is already on the server does nothing, which makes journal replay and
`autolog sync` idempotent. Reading (`get_run`, `search_runs`, ...) takes an autolog
id or an MLflow run id and returns runs whose `run_id` is the autolog id; the MLflow
id is in the returned run's tag `autolog.mlflow_run_id` (and `mlflow_run_id(id)`).

Tags. The source tags autolog collects (`autolog.source.script`, `autolog.user`, ...)
are kept and also written under MLflow's names (`mlflow.source.name`,
`mlflow.source.type`, `mlflow.source.git.commit`, `mlflow.user`, `mlflow.runName`,
`mlflow.parentRunId`, `mlflow.autologging`) so that the MLflow UI fills its columns.

HTTP. MLflow's client retries for minutes by default; the logger already retries
with backoff and spills to its journal, so this backend's own requests run with no
retries inside MLflow and short timeouts (only on threads inside this backend: the
user's own `mlflow` calls keep MLflow's settings). `MLFLOW_HTTP_REQUEST_MAX_RETRIES`
and `MLFLOW_HTTP_REQUEST_TIMEOUT`, when the user sets them, are honoured. Connection
errors, timeouts, HTTP 429 and 5xx raise `BackendUnavailable` (with the server's
`Retry-After`, on a 429 or 503 that has one, as its `retry_after`: the logger waits that
long before it asks again); refused credentials
(401, 403) raise `CredentialsRefused`, which the logger treats as an outage that retrying
now will not end (records kept in the journal, sent once the server takes them); other
4xx are permanent `BackendError`s (`RunNotFound` for a missing run).

Datasets. `log_inputs` is MLflow's own (`MlflowClient.log_inputs` with its `DatasetInput`
and `InputTag` entities), so the UI's Datasets column lists them; a run read back carries
them as `Run.inputs`.

Models. A folder with an `MLmodel` file is uploaded as it is (MLflow's Model format,
written by autolog/instrument/models.py) and recorded in the run's `mlflow.log-model.history` tag;
`register_model` adds it to MLflow's model registry (`registered_model_name`).
Requests stay under MLflow's limits: entries per log-batch (`limits`) and 1 MB per body.

Credentials come from MLflow's own variables (`MLFLOW_TRACKING_USERNAME` /
`MLFLOW_TRACKING_PASSWORD`, `MLFLOW_TRACKING_TOKEN`, Databricks profiles); any param
or tag value that contains one of them is redacted before it is sent.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterable, Optional, Sequence

from autolog.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    BatchLimits,
    CredentialsRefused,
    RunNotFound,
    retry_after_seconds,
)
from autolog.backends.mlflow_tags import mlflow_source_tags  # noqa: F401  (also re-exported from here)
from autolog.entities import ArtifactInfo, Dataset, DatasetInput, Experiment, Metric, Param, Run, RunStart

# an ImportError here becomes the registry's BackendError naming the extra `autolog[mlflow]`
from mlflow.entities import Dataset as _MlflowDataset
from mlflow.entities import DatasetInput as _MlflowDatasetInput
from mlflow.entities import InputTag as _MlflowInputTag
from mlflow.entities import Metric as _MlflowMetric
from mlflow.entities import Param as _MlflowParam
from mlflow.entities import RunTag as _MlflowRunTag
from mlflow.entities import ViewType as _ViewType
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

TAG_RUN_ID = "autolog.run_id"
TAG_PARENT_RUN_ID = "autolog.parent_run_id"
TAG_MLFLOW_RUN_ID = "autolog.mlflow_run_id"  # only in runs read back, never stored

# MLflow's REST log-batch limits (mlflow/utils/validation.py: MAX_METRICS_PER_BATCH,
# MAX_PARAMS_TAGS_PER_BATCH, MAX_ENTITIES_PER_BATCH)
MLFLOW_BATCH_LIMITS = BatchLimits(max_metrics=1000, max_params=100, max_tags=100, max_total=1000)

# MLflow's cap on the body of one log-batch request (MAX_BATCH_LOG_REQUEST_SIZE, 1 MB); we stay
# under it with room for JSON's quoting
_MAX_BATCH_BYTES = 800_000

# our requests: no retries inside MLflow (the logger retries), a short connect timeout
_DEFAULT_MAX_RETRIES = 0
# (connect, read) seconds: a server that accepts and never answers holds the worker at most
# this long per request (then the records are retried, spilled, replayed), not MLflow's 120 s
_DEFAULT_TIMEOUT = (5.0, 15.0)

_SECRET_VARIABLES = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "DATABRICKS_TOKEN",
                     "DATABRICKS_CLIENT_SECRET", "MLFLOW_TRACKING_CLIENT_CERT_PATH")
_REDACTED = "***"


def to_mlflow_inputs(datasets: Iterable[DatasetInput]) -> list:
    """autolog's dataset inputs as MLflow's entities (`mlflow.entities.DatasetInput`)."""
    return [_MlflowDatasetInput(
        dataset=_MlflowDataset(name=d.dataset.name, digest=d.dataset.digest, source_type=d.dataset.source_type,
                               source=d.dataset.source, schema=d.dataset.schema, profile=d.dataset.profile),
        tags=[_MlflowInputTag(key=str(k), value=str(v)) for k, v in d.tags.items()],
    ) for d in datasets]


def from_mlflow_inputs(dataset_inputs: Iterable) -> list[DatasetInput]:
    """MLflow's `run.inputs.dataset_inputs` as autolog's `DatasetInput`s."""
    return [DatasetInput(
        Dataset(d.dataset.name, d.dataset.digest, d.dataset.source_type, d.dataset.source,
                d.dataset.schema or None, d.dataset.profile or None),
        {t.key: t.value for t in d.tags},
    ) for d in dataset_inputs]


def mlflow_store_uri(uri: str) -> str:
    """The MLflow tracking URI behind an autolog URI (`mlflow+sqlite:///x` -> `sqlite:///x`)."""
    return uri[len("mlflow+"):] if uri.lower().startswith("mlflow+") else uri


# -- our HTTP policy, for the threads inside this backend only ---------------------------
_policy = threading.local()
_install_lock = threading.Lock()
_installed = False


def _install_http_policy() -> None:
    """Wrap MLflow's one HTTP entry point so that our calls do not retry for minutes.

    MLflow reads its retry and timeout settings from the environment at each request;
    changing the environment would change them for the user's own MLflow calls too. The
    wrapper applies ours only on a thread that is inside one of this backend's calls. There it
    also asks for the last answer rather than urllib3's RetryError when retries run out
    (MLflow turns a non-200 answer into its own exception all the same), so that the status
    and the Retry-After header of a 429 or 503 reach `_classify`.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        from mlflow.utils import rest_utils

        original = rest_utils._get_http_response_with_retries

        def _with_autolog_policy(method, url, max_retries, backoff_factor, backoff_jitter, retry_codes,
                                 *args, **kwargs):
            if not getattr(_policy, "depth", 0):
                return original(method, url, max_retries, backoff_factor, backoff_jitter, retry_codes,
                                *args, **kwargs)
            if "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ:
                max_retries = _DEFAULT_MAX_RETRIES
                backoff_factor = 0
            if "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ:
                kwargs["timeout"] = _DEFAULT_TIMEOUT
            if args:  # raise_on_status, the first parameter after retry_codes
                args = (False,) + args[1:]
            else:
                kwargs["raise_on_status"] = False
            _policy.retry_after = None
            response = original(method, url, max_retries, backoff_factor, backoff_jitter, retry_codes,
                                *args, **kwargs)
            if getattr(response, "status_code", None) in (429, 503):
                _policy.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            return response

        _with_autolog_policy.__wrapped__ = original  # type: ignore[attr-defined]
        rest_utils._get_http_response_with_retries = _with_autolog_policy
        _installed = True


@contextlib.contextmanager
def _calling(what: str, run_id: Optional[str] = None):
    """Our HTTP policy on, and MLflow's exceptions turned into the backend protocol's."""
    _policy.depth = getattr(_policy, "depth", 0) + 1
    _policy.retry_after = None
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:  # noqa: BLE001 - classified below, re-raised as ours
        raise _classify(exc, what, run_id, getattr(_policy, "retry_after", None)) from exc
    finally:
        _policy.depth -= 1


def _http_status(exc: BaseException) -> Optional[int]:
    getter = getattr(exc, "get_http_status_code", None)
    if getter is not None:
        try:
            return int(getter())
        except Exception:  # noqa: BLE001
            return None
    return None


def _classify(exc: BaseException, what: str, run_id: Optional[str],
              retry_after: Optional[float] = None) -> BackendError:
    """MLflow's exception as the backend protocol's; `retry_after`: the Retry-After of the
    server's last answer (a 429 or 503), carried on a BackendUnavailable."""
    import requests

    message = f"MLflow {what} failed: {exc}"
    chain = []
    seen = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for item in chain:
        if isinstance(item, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                             requests.exceptions.RetryError, ConnectionError, TimeoutError)):
            return BackendUnavailable(message, retry_after=retry_after)
    error_code = getattr(exc, "error_code", "") or ""
    status = _http_status(exc) if isinstance(exc, RestException) else None
    for item in chain:  # artifact uploads raise requests' HTTPError with the response
        response = getattr(item, "response", None) if isinstance(item, requests.exceptions.HTTPError) else None
        if status is None and response is not None:
            status = response.status_code
    if status is None and isinstance(exc, MlflowException):
        text = str(exc)
        for code in ("401", "403", "429", "500", "502", "503", "504"):
            if f"error code {code}" in text or f"status code {code}" in text or f"{code} Server Error" in text:
                status = int(code)
                break
    if status is not None and (status == 429 or status >= 500):
        return BackendUnavailable(message, retry_after=retry_after)
    if status in (401, 403) or error_code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return CredentialsRefused(
            f"{message} (credentials refused: check MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD "
            f"or MLFLOW_TRACKING_TOKEN, and the user's permissions on the server)")
    if error_code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "INTERNAL_ERROR"):
        return BackendUnavailable(message, retry_after=retry_after)
    if "database is locked" in str(exc):
        return BackendUnavailable(message)
    if run_id is not None and error_code == "RESOURCE_DOES_NOT_EXIST":
        return RunNotFound(run_id)
    return BackendError(message)


def _by_size(metrics: list, params: list, tags: list):
    """One batch as requests under MLflow's 1 MB body cap (long param and tag values add up)."""
    def size(entity) -> int:
        return 60 + len(entity.key) + len(str(entity.value)) * 2  # JSON escaping, at worst twice

    parts: list = [[[], [], []]]
    used = 0
    for kind, entities in enumerate((params, tags, metrics)):
        for entity in entities:
            cost = size(entity)
            if used + cost > _MAX_BATCH_BYTES and any(parts[-1]):
                parts.append([[], [], []])
                used = 0
            parts[-1][kind].append(entity)
            used += cost
    for p_part, t_part, m_part in parts:
        yield m_part, p_part, t_part


def _redactor():
    secrets = [os.environ[name] for name in _SECRET_VARIABLES if len(os.environ.get(name) or "") >= 4]
    if not secrets:
        return None

    def redact(text: str) -> str:
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text

    return redact


class MlflowBackend(Backend):
    schemes = ("http", "https", "databricks", "mlflow")
    limits = MLFLOW_BATCH_LIMITS

    def __init__(self, uri: str):
        super().__init__(uri)
        self.store_uri = mlflow_store_uri(uri)
        _install_http_policy()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._client = MlflowClient(tracking_uri=self.store_uri, registry_uri=self._registry_uri())
        self._ids: dict[str, str] = {}  # autolog run id -> MLflow run id
        self._autolog_ids: dict[str, str] = {}  # MLflow run id -> autolog run id
        self._experiment_ids: dict[str, str] = {}  # experiment name -> id
        self._experiment_names: dict[str, str] = {}  # id -> name

    def _registry_uri(self) -> Optional[str]:
        uri = self.store_uri
        if uri.startswith("databricks"):
            return os.environ.get("MLFLOW_REGISTRY_URI") or "databricks-uc"
        return os.environ.get("MLFLOW_REGISTRY_URI") or uri

    @property
    def client(self) -> "MlflowClient":
        """The MlflowClient this backend writes with (its tracking URI is `store_uri`)."""
        if self._pid != os.getpid():
            self.after_fork_in_child()
        return self._client

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._client = MlflowClient(tracking_uri=self.store_uri, registry_uri=self._registry_uri())

    # -- ids and experiments -------------------------------------------------------------
    def _remember(self, autolog_id: str, mlflow_id: str) -> None:
        with self._lock:
            self._ids[autolog_id] = mlflow_id
            self._autolog_ids[mlflow_id] = autolog_id

    def _experiment_id(self, name: str, create: bool) -> Optional[str]:
        known = self._experiment_ids.get(name)
        if known is not None:
            return known
        with _calling(f"looking up the experiment {name!r}"):
            exp = self.client.get_experiment_by_name(name)
            if exp is None and create:
                try:
                    exp_id = self.client.create_experiment(name)
                except MlflowException as exc:
                    if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                        raise
                    exp = self.client.get_experiment_by_name(name)  # created by another process
                else:
                    self._note_experiment(name, exp_id)
                    return exp_id
            if exp is None:
                return None
            if exp.lifecycle_stage == "deleted" and create:
                self.client.restore_experiment(exp.experiment_id)
        self._note_experiment(exp.name, exp.experiment_id)
        return exp.experiment_id

    def _note_experiment(self, name: str, exp_id: str) -> None:
        with self._lock:
            self._experiment_ids[name] = exp_id
            self._experiment_names[exp_id] = name

    def _experiment_name(self, exp_id: str) -> str:
        name = self._experiment_names.get(exp_id)
        if name is None:
            with _calling(f"looking up the experiment {exp_id}"):
                name = self.client.get_experiment(exp_id).name
            self._note_experiment(name, exp_id)
        return name

    def _all_experiment_ids(self) -> list[str]:
        with _calling("listing experiments"):
            exps = self.client.search_experiments(view_type=_ViewType.ALL)
        for exp in exps:
            self._note_experiment(exp.name, exp.experiment_id)
        return [exp.experiment_id for exp in exps]

    def _search_by_autolog_id(self, run_id: str, experiment_ids: Optional[list[str]] = None):
        ids = experiment_ids if experiment_ids is not None else self._all_experiment_ids()
        flt = f"tags.`{TAG_RUN_ID}` = '{run_id}'"
        for start in range(0, len(ids), 100):  # MLflow takes a bounded list of experiments per search
            with _calling(f"searching the run {run_id}", run_id):
                found = self.client.search_runs(ids[start:start + 100], filter_string=flt,
                                                run_view_type=_ViewType.ALL, max_results=1)
            if found:
                return found[0]
        return None

    def mlflow_run_id(self, run_id: str) -> str:
        """The MLflow run id of an autolog run id (an MLflow run id is returned as it is).

        Raises RunNotFound when neither an autolog run nor an MLflow run has this id.
        """
        known = self._ids.get(run_id)
        if known is not None:
            return known
        if run_id in self._autolog_ids:
            return run_id
        found = self._search_by_autolog_id(run_id)
        if found is not None:
            self._remember(run_id, found.info.run_id)
            return found.info.run_id
        try:
            with _calling(f"reading the run {run_id}", run_id):
                run = self.client.get_run(run_id)
        except RunNotFound:
            raise
        except BackendError as exc:  # MLflow answers a malformed id with INVALID_PARAMETER_VALUE
            if isinstance(exc, BackendUnavailable):
                raise
            raise RunNotFound(run_id) from exc
        autolog_id = run.data.tags.get(TAG_RUN_ID)
        if autolog_id:
            self._remember(autolog_id, run.info.run_id)
        return run.info.run_id

    resolve_run_id = mlflow_run_id  # what autolog.load_model calls

    # -- writing -----------------------------------------------------------------------------
    def create_run(self, run: RunStart) -> None:
        if run.run_id in self._ids:
            return
        exp_id = self._experiment_id(run.experiment_name, create=True)
        # a replay or `autolog sync` repeats the creation under the same experiment name
        existing = self._search_by_autolog_id(run.run_id, [exp_id])
        if existing is not None:
            self._remember(run.run_id, existing.info.run_id)
            return
        redact = _redactor()
        tags = {str(k): (redact(str(v)) if redact else str(v)) for k, v in run.tags.items()}
        tags.update(mlflow_source_tags(tags))
        tags[TAG_RUN_ID] = run.run_id
        tags["mlflow.runName"] = run.run_name
        if run.parent_run_id:
            tags[TAG_PARENT_RUN_ID] = run.parent_run_id
            try:
                tags["mlflow.parentRunId"] = self.mlflow_run_id(run.parent_run_id)
            except RunNotFound:
                pass  # the parent never reached this store; the autolog tag still links them
        with _calling(f"creating the run {run.run_id}", run.run_id):
            created = self.client.create_run(exp_id, start_time=run.start_time, tags=tags, run_name=run.run_name)
        self._remember(run.run_id, created.info.run_id)

    def log_batch(self, run_id: str, metrics: Sequence[Metric] = (), params: Sequence[Param] = (),
                  tags: Sequence[tuple[str, str]] = ()) -> None:
        mlflow_id = self.mlflow_run_id(run_id)
        redact = _redactor() if (params or tags) else None
        m = [_MlflowMetric(x.key, x.value, int(x.timestamp), int(x.step)) for x in metrics]
        p = [_MlflowParam(x.key, redact(x.value) if redact else x.value) for x in params]
        t = [_MlflowRunTag(k, redact(v) if redact else v) for k, v in tags]
        # source tags that arrive later (`autolog sync` copies them as tags) get MLflow's names too
        t.extend(_MlflowRunTag(k, v) for k, v in mlflow_source_tags({tag.key: tag.value for tag in t}).items())
        with _calling(f"logging a batch to run {run_id}", run_id):
            for m_part, p_part, t_part in _by_size(m, p, t):
                self.client.log_batch(mlflow_id, metrics=m_part, params=p_part, tags=t_part, synchronous=True)

    def end_run(self, run_id: str, status: str, end_time: int) -> None:
        mlflow_id = self.mlflow_run_id(run_id)
        with _calling(f"ending the run {run_id}", run_id):
            store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
            if store is not None and hasattr(store, "update_run_info"):
                # what set_terminated does, without its extra get-run request and printed URL
                from mlflow.entities import RunStatus as _MlflowRunStatus

                store.update_run_info(mlflow_id, run_status=_MlflowRunStatus.from_string(status),
                                      end_time=int(end_time), run_name=None)
            else:
                self.client.set_terminated(mlflow_id, status=status, end_time=int(end_time))

    def log_artifact(self, run_id: str, local_path: str, artifact_path: Optional[str] = None) -> None:
        """A file lands at `artifact_path/<its name>`, a folder's contents under `artifact_path`.

        A model folder (or, from `autolog sync`, which copies file by file, its MLmodel file)
        is also recorded as MLflow's log_model records it, with MLflow's run id in MLmodel."""
        mlflow_id = self.mlflow_run_id(run_id)
        is_dir = os.path.isdir(local_path)
        mlmodel = os.path.join(local_path, "MLmodel") if is_dir else local_path
        is_model = os.path.basename(mlmodel) == "MLmodel" and os.path.isfile(mlmodel)
        with _calling(f"uploading an artifact to run {run_id}", run_id):
            if is_dir:
                self.client.log_artifacts(mlflow_id, local_path, artifact_path or None)
                if is_model:
                    self._upload_mlmodel_with_run_id(mlflow_id, mlmodel, artifact_path)
            elif not (is_model and self._upload_mlmodel_with_run_id(mlflow_id, mlmodel, artifact_path)):
                self.client.log_artifact(mlflow_id, local_path, artifact_path or None)
        if is_model:
            try:
                self._record_model(run_id, mlflow_id, os.path.dirname(mlmodel), artifact_path or "")
            except BackendUnavailable:
                raise  # the logger sends the folder again (same files), then records it
            except Exception as exc:  # noqa: BLE001 - the files are there; only the UI's list misses it
                from autolog.instrument import containment

                containment.warn_once("mlflow model history", "the model of run %s is on the server but not in "
                                      "its mlflow.log-model.history tag: %s", run_id, exc)

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        mlflow_id = self.mlflow_run_id(run_id)
        with _calling(f"logging the datasets of run {run_id}", run_id):
            self.client.log_inputs(mlflow_id, datasets=to_mlflow_inputs(datasets))

    def _upload_mlmodel_with_run_id(self, mlflow_id: str, path: str, artifact_path: Optional[str]) -> bool:
        """Upload a copy of autolog's MLmodel file at `path` that names MLflow's run id instead of
        autolog's, as MLflow's own log_model writes it (`Model.load(...).run_id`); the local file
        is left as it is. False when the file is not autolog's (MLflow's YAML, a user's file)."""
        import json
        import tempfile

        try:
            with open(path, encoding="utf-8") as fh:
                mlmodel = json.load(fh)
        except (OSError, ValueError):
            return False
        if not isinstance(mlmodel, dict) or "autolog" not in mlmodel:
            return False
        mlmodel["run_id"] = mlflow_id
        with tempfile.TemporaryDirectory(prefix="autolog-mlmodel-") as tmp:
            fixed = os.path.join(tmp, "MLmodel")
            with open(fixed, "w", encoding="utf-8") as fh:
                json.dump(mlmodel, fh, indent=2)
            self.client.log_artifact(mlflow_id, fixed, artifact_path or None)
        return True

    def _record_model(self, run_id: str, mlflow_id: str, folder: str, artifact_path: str) -> None:
        """Add a model folder to the run's `mlflow.log-model.history` (the UI's Models column),
        as MLflow's own log_model does; once per model, so a replay adds nothing."""
        from mlflow.models import Model

        model = Model.load(os.path.join(folder, "MLmodel"))
        model.run_id = mlflow_id
        model.artifact_path = artifact_path
        with _calling(f"recording the model of run {run_id}", run_id):
            history = self.client.get_run(mlflow_id).data.tags.get("mlflow.log-model.history", "")
            if model.model_uuid and model.model_uuid in history:
                return
            self.client._record_logged_model(mlflow_id, model)

    def register_model(self, run_id: str, artifact_path: str, name: str) -> str:
        """Register the run's model folder as a new version of the registered model `name`;
        return the version. The folder must already be delivered. Registering the same folder
        under the same name again returns the version it has."""
        mlflow_id = self.mlflow_run_id(run_id)
        with _calling(f"registering the model of run {run_id} as {name!r}", run_id):
            try:
                self.client.create_registered_model(name)
            except MlflowException as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
            run = self.client.get_run(mlflow_id)
            source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path.strip('/')}"
            # a replay (journal, `autolog sync`) of a registration that got through: no second version
            for existing in self.client.search_model_versions(f"run_id='{mlflow_id}'"):
                if existing.name == name and existing.source == source:
                    return str(existing.version)
            version = self.client.create_model_version(name, source, run_id=mlflow_id,
                                                       tags={TAG_RUN_ID: self._autolog_ids.get(mlflow_id, run_id)})
        return str(version.version)

    # -- reading -------------------------------------------------------------------------------
    def _to_run(self, mlflow_run) -> Run:
        info, data = mlflow_run.info, mlflow_run.data
        tags = dict(data.tags)
        autolog_id = tags.get(TAG_RUN_ID) or info.run_id
        if autolog_id != info.run_id:
            self._remember(autolog_id, info.run_id)
        parent = tags.get(TAG_PARENT_RUN_ID)
        if parent is None and tags.get("mlflow.parentRunId"):
            parent = self._autolog_ids.get(tags["mlflow.parentRunId"], tags["mlflow.parentRunId"])
        tags[TAG_MLFLOW_RUN_ID] = info.run_id
        return Run(
            run_id=autolog_id,
            run_name=info.run_name or tags.get("mlflow.runName", ""),
            experiment_id=info.experiment_id,
            experiment_name=self._experiment_name(info.experiment_id),
            status=info.status,
            start_time=info.start_time,
            end_time=info.end_time,
            parent_run_id=parent,
            params=dict(data.params),
            metrics=dict(data.metrics),
            tags=tags,
            artifact_uri=info.artifact_uri,
            inputs=from_mlflow_inputs(getattr(getattr(mlflow_run, "inputs", None), "dataset_inputs", None) or ()),
        )

    def get_run(self, run_id: str) -> Run:
        mlflow_id = self.mlflow_run_id(run_id)
        with _calling(f"reading the run {run_id}", run_id):
            return self._to_run(self.client.get_run(mlflow_id))

    def search_runs(self, experiment_names: Optional[Iterable[str]] = None, statuses: Optional[Iterable[str]] = None,
                    parent_run_id: Optional[str] = None, max_results: Optional[int] = None) -> list[Run]:
        if experiment_names:
            ids = [i for i in (self._experiment_id(n, create=False) for n in experiment_names) if i is not None]
        else:
            ids = self._all_experiment_ids()
        if not ids:
            return []
        filters = []
        wanted = [s.upper() for s in statuses] if statuses else None
        if wanted and len(wanted) == 1:
            filters.append(f"attributes.status = '{wanted[0]}'")
        if parent_run_id is not None:
            filters.append(f"tags.`{TAG_PARENT_RUN_ID}` = '{parent_run_id}'")
        out: list[Run] = []
        for start in range(0, len(ids), 100):
            with _calling("searching runs"):
                found = self.client.search_runs(ids[start:start + 100], filter_string=" and ".join(filters),
                                                max_results=max_results or 50_000, order_by=["attributes.start_time DESC"])
            out.extend(self._to_run(r) for r in found if wanted is None or r.info.status in wanted)
        out.sort(key=lambda r: r.start_time or 0, reverse=True)
        return out[:max_results] if max_results else out

    def list_experiments(self) -> list[Experiment]:
        with _calling("listing experiments"):
            exps = self.client.search_experiments()
        return [Experiment(e.experiment_id, e.name, e.creation_time) for e in exps]

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        mlflow_id = self.mlflow_run_id(run_id)
        with _calling(f"reading the metric {key!r} of run {run_id}", run_id):
            history = self.client.get_metric_history(mlflow_id, key)
        points = [Metric(m.key, m.value, m.timestamp, m.step) for m in history]
        return sorted(points, key=lambda m: (m.step, m.timestamp))

    def list_artifacts(self, run_id: str, path: Optional[str] = None) -> list[ArtifactInfo]:
        mlflow_id = self.mlflow_run_id(run_id)
        with _calling(f"listing the artifacts of run {run_id}", run_id):
            files = self.client.list_artifacts(mlflow_id, path)
        return [ArtifactInfo(f.path, f.is_dir, f.file_size) for f in files]

    def download_artifacts(self, run_id: str, path: str, dst_dir: str) -> str:
        mlflow_id = self.mlflow_run_id(run_id)
        os.makedirs(dst_dir, exist_ok=True)
        with _calling(f"downloading {path!r} of run {run_id}", run_id):
            return self.client.download_artifacts(mlflow_id, path, dst_dir)

    def __repr__(self) -> str:
        return f"MlflowBackend({self.uri!r})"
