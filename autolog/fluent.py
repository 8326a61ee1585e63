"""MLflow's fluent API, by MLflow's names and with MLflow's semantics, over autolog's runs.

What MLflow tutorials call, so that porting a script means changing `mlflow.` to `autolog.`:
the tracking URI and the active experiment, experiments by name and by search, `log_dict`,
`log_figure`, `log_image`, a generic `log_model(model, name)`, `search_runs` as a pandas
DataFrame, and `run.info` with `experiment_id`, `artifact_uri` and `lifecycle_stage`.
docs/api.md has the table (MLflow call -> autolog call, and what differs).

Like the rest of the manual API, every call logs through the batching logger: the caller
does no I/O beyond what the call itself is about (rendering a figure, encoding an image
given as an artifact file). Calls that read (`get_experiment_by_name`, `search_*`,
`run.info.experiment_id`) flush first, as `autolog.get_run` does, so they see what was
logged before them.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import time
import uuid
from typing import Any, Iterable, Optional

from autolog import runs as _runs
from autolog.backends import (BackendError, StoreNotFound, backend_kind, check_tracking_uri,
                              require_client_library, resolve_tracking_uri)
from autolog.entities import Experiment, Run, RunStatus
from autolog.instrument import containment

LIFECYCLE_ACTIVE = "active"  # nothing is ever deleted through autolog: every run and experiment is active
ENV_TRACKING_URI = "AUTOLOG_TRACKING_URI"
ENV_EXPERIMENT = "AUTOLOG_EXPERIMENT"
TAG_LOGGED_IMAGES = "mlflow.loggedImages"  # MLflow's tag for runs with step images (the UI's image grid)
COMPRESSED_IMAGE_SIZE = 256  # MLflow's thumbnail size for step images
_IMAGE_KEY = re.compile(r"^[a-zA-Z0-9_\-./ ]+$")


# -- the tracking URI and the active experiment ---------------------------------------------------
def set_tracking_uri(uri: "str | os.PathLike") -> None:
    """Where runs started from now on are logged (a folder, or any MLflow tracking URI).

    Checked now: an unknown scheme raises ValueError, an MLflow URI without the mlflow
    package raises BackendError. Like MLflow, it also sets the environment variable
    (`AUTOLOG_TRACKING_URI`), so child processes and a later `autolog.autolog()` use it;
    an explicit `autolog(tracking_uri=...)` still wins. Runs already active keep theirs.
    """
    text = os.fspath(uri) if isinstance(uri, os.PathLike) else str(uri)
    if not text.strip():
        raise ValueError("set_tracking_uri needs a URI or a folder")
    check_tracking_uri(text)
    require_client_library(text)
    os.environ[ENV_TRACKING_URI] = text
    _runs.set_settings(_runs.settings().replace(tracking_uri=text))


def get_tracking_uri() -> str:
    """The tracking URI new runs go to: an MLflow URI as given, a local store as an absolute path."""
    return resolve_tracking_uri(_runs.settings().tracking_uri)


def set_experiment(experiment_name: Optional[str] = None, experiment_id: Optional[str] = None) -> Experiment:
    """Make an experiment the one new runs go to (by name, or by the id of an existing one).

    As in MLflow it is remembered for the process (and `AUTOLOG_EXPERIMENT` is set for child
    processes). Unlike MLflow, an experiment is made by its first run, not by this call:
    a new experiment is returned with `experiment_id=None` until a run is logged in it.
    """
    if (experiment_name is None) == (experiment_id is None):
        raise ValueError("set_experiment takes exactly one of experiment_name and experiment_id")
    if experiment_id is not None:
        found = [e for e in _experiments() if e.experiment_id == str(experiment_id)]
        if not found:
            raise ValueError(f"no experiment with id {experiment_id!r} in {get_tracking_uri()}")
        experiment_name = found[0].name
    name = str(experiment_name)
    if not name.strip():
        raise ValueError("an experiment name must not be empty")
    os.environ[ENV_EXPERIMENT] = name
    _runs.set_settings(_runs.settings().replace(experiment=name))
    return get_experiment_by_name(name) or Experiment(None, name, None)  # type: ignore[arg-type]


def get_experiment_by_name(name: str) -> Optional[Experiment]:
    """The experiment called `name` in the current tracking store, or None."""
    for experiment in _experiments():
        if experiment.name == name:
            return experiment
    return None


def search_experiments(view_type: Any = None, max_results: Optional[int] = None, filter_string: Optional[str] = None,
                       order_by: Optional[Iterable[str]] = None) -> list[Experiment]:
    """Experiments of the current tracking store, filtered and ordered as MLflow's call does.

    `filter_string`: clauses on `name` (`=`, `!=`, `LIKE`, `ILIKE`), `creation_time` and
    `experiment_id` (`=`, `!=`, `<`, `<=`, `>`, `>=`) joined by `AND`, e.g. "name LIKE 'sweep-%'".
    `order_by`: e.g. ["name ASC"], ["creation_time DESC"] (default: newest first).
    `view_type`: every experiment is active; `ViewType.DELETED_ONLY` (2) gives [].
    """
    if _view_name(view_type) == "DELETED_ONLY":
        return []
    found = [e for e in _experiments() if _experiment_matches(e, _parse_filter(filter_string))]
    for clause in reversed(list(order_by or ["creation_time DESC", "experiment_id ASC"])):
        key, descending = _parse_order(clause)
        present = [e for e in found if getattr(e, key) is not None]
        missing = [e for e in found if getattr(e, key) is None]
        present.sort(key=lambda e: _sortable(getattr(e, key)), reverse=descending)
        found = present + missing
    return found if max_results is None else found[:max(0, int(max_results))]


def _experiments() -> list[Experiment]:
    try:
        return _runs._reader().list_experiments()
    except StoreNotFound:
        return []


def _view_name(view_type: Any) -> str:
    if view_type is None:
        return "ACTIVE_ONLY"
    return {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}.get(view_type, str(view_type).upper())


_CLAUSE = re.compile(r"^\s*(?:attributes\.)?(name|experiment_id|creation_time|`[^`]+`|tags\.\S+)\s*"
                     r"(=|!=|<=|>=|<|>|ILIKE\b|LIKE\b)\s*(.+?)\s*$", re.IGNORECASE)


def _parse_filter(text: Optional[str]) -> list[tuple[str, str, Any]]:
    if not text or not text.strip():
        return []
    clauses = []
    for part in re.split(r"\s+AND\s+(?=(?:[^']*'[^']*')*[^']*$)", text.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(part)
        if not match:
            raise ValueError(f"search_experiments: cannot parse the filter clause {part!r} (e.g. \"name LIKE 'x%'\")")
        key, op, raw = match.group(1), match.group(2).upper(), match.group(3)
        if raw[:1] in "'\"" and raw[-1:] == raw[:1] and len(raw) >= 2:
            value: Any = raw[1:-1]
        else:
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"search_experiments: {raw!r} in {part!r} is neither a quoted string nor a number") from None
        clauses.append((key, op, value))
    return clauses


def _experiment_matches(experiment: Experiment, clauses: list) -> bool:
    for key, op, value in clauses:
        if key.startswith("tags."):
            return False  # autolog's experiments have no tags
        have = getattr(experiment, key)
        if have is None:
            return False
        if op in ("LIKE", "ILIKE"):
            pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(value))
            if not re.fullmatch(pattern, str(have), re.IGNORECASE if op == "ILIKE" else 0 | re.DOTALL):
                return False
            continue
        left, right = (int(have), int(value)) if key in ("creation_time", "experiment_id") else (str(have), str(value))
        if not {"=": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
                ">": left > right, ">=": left >= right}[op]:
            return False
    return True


def _parse_order(clause: str) -> tuple[str, bool]:
    parts = clause.split()
    key = parts[0].removeprefix("attributes.") if parts else ""
    if key == "last_update_time":
        key = "creation_time"  # autolog's experiments are never updated
    if key not in ("name", "experiment_id", "creation_time") or len(parts) > 2 or (
            len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
        raise ValueError(f"search_experiments: cannot order by {clause!r} (name, experiment_id or creation_time, "
                         f"then ASC or DESC)")
    return key, len(parts) == 2 and parts[1].upper() == "DESC"


def _sortable(value: Any) -> Any:
    text = str(value)
    return int(text) if text.lstrip("-").isdigit() else text


# -- runs ---------------------------------------------------------------------------------------------
def search_runs(experiment: "Optional[str | Iterable[str]]" = None, *, status: "Optional[str | Iterable[str]]" = None,
                parent_run_id: Optional[str] = None, max_results: Optional[int] = None,
                tracking_uri: Optional[str] = None, output_format: str = "pandas", experiment_names=None):
    """Runs newest first, as a pandas DataFrame (MLflow's columns) or, `output_format="list"`,
    as a list of `Run`. When pandas is not installed the list is returned (one warning).

    `experiment` (or MLflow's `experiment_names`): a name or names; `status`: RUNNING,
    FINISHED, FAILED, KILLED; `parent_run_id`: the children of one run.
    """
    if output_format not in ("pandas", "list"):
        raise ValueError(f"output_format must be 'pandas' or 'list', not {output_format!r}")
    if experiment is not None and experiment_names is not None:
        raise ValueError("give experiment or experiment_names, not both")
    found = _runs.search_runs(experiment if experiment is not None else experiment_names, status=status,
                              parent_run_id=parent_run_id, max_results=max_results, tracking_uri=tracking_uri)
    if output_format == "list":
        return found
    try:
        import pandas
    except ImportError:
        containment.warn_once("search_runs without pandas", "pandas is not installed: autolog.search_runs returns "
                              "a list of runs (pass output_format='list' to ask for it)")
        return found
    return runs_frame(found, pandas)


def runs_frame(found: list[Run], pandas) -> Any:
    """MLflow's search_runs DataFrame: run_id, experiment_id, status, artifact_uri, start_time and
    end_time (UTC datetimes), then metrics.*, params.*, tags.*; autolog adds run_name,
    experiment_name and parent_run_id next to the attributes."""
    rows = []
    for run in found:
        row = {"run_id": run.run_id, "run_name": run.run_name, "experiment_id": run.experiment_id,
               "experiment_name": run.experiment_name, "status": run.status,
               "artifact_uri": artifact_uri_of(run), "start_time": run.start_time, "end_time": run.end_time,
               "parent_run_id": run.parent_run_id}
        row.update({f"metrics.{k}": v for k, v in run.metrics.items()})
        row.update({f"params.{k}": v for k, v in run.params.items()})
        row.update({f"tags.{k}": v for k, v in run.tags.items()})
        rows.append(row)
    attributes = ["run_id", "run_name", "experiment_id", "experiment_name", "status", "artifact_uri",
                  "start_time", "end_time", "parent_run_id"]
    data = pandas.DataFrame(rows, columns=None if rows else attributes)
    for column in ("start_time", "end_time"):
        data[column] = pandas.to_datetime(data[column], unit="ms", utc=True)
    ordered = attributes + sorted(c for c in data.columns if c.startswith("metrics.")) + sorted(
        c for c in data.columns if c.startswith("params.")) + sorted(c for c in data.columns if c.startswith("tags."))
    return data[ordered]


def artifact_uri_of(run: Run) -> Optional[str]:
    """A run's artifact location as a URI (MLflow's `artifact_uri`): a local folder as file://."""
    uri = run.artifact_uri
    if uri and os.path.isabs(uri) and backend_kind(uri) == "local":
        return pathlib.Path(uri).as_uri()
    return uri


class RunInfo:
    """`run.info` of an active run, with MLflow's fields. The ones the backend assigns
    (`experiment_id`, `artifact_uri`, `user_id`) are read back on first use (the logger is
    flushed first, as any read does); None while the backend cannot be read."""

    lifecycle_stage = LIFECYCLE_ACTIVE

    def __init__(self, run):
        self._run = run
        self._stored: Optional[Run] = None

    run_id = property(lambda self: self._run.run_id)
    run_uuid = run_id
    run_name = property(lambda self: self._run.run_name)
    experiment_name = property(lambda self: self._run.experiment_name)
    status = property(lambda self: self._run.status)
    start_time = property(lambda self: self._run.start_time)
    end_time = property(lambda self: self._run.end_time)
    parent_run_id = property(lambda self: self._run.parent_run_id)

    def _read_back(self) -> Optional[Run]:
        if self._stored is None:
            try:
                self._stored = _runs.get_run(self._run.run_id, tracking_uri=self._run.tracking_uri)
            except BackendError as exc:
                containment.warn_once(f"run.info {self._run.run_id}", "run.info of run %s: the run cannot be read "
                                      "back yet (%s)", self._run.run_id, exc)
                return None
        return self._stored

    @property
    def experiment_id(self) -> Optional[str]:
        stored = self._read_back()
        return None if stored is None else stored.experiment_id

    @property
    def artifact_uri(self) -> Optional[str]:
        stored = self._read_back()
        return None if stored is None else artifact_uri_of(stored)

    @property
    def user_id(self) -> Optional[str]:
        stored = self._read_back()
        return None if stored is None else stored.tags.get("autolog.user", "")

    def __repr__(self) -> str:
        return f"<RunInfo run_id={self.run_id!r} run_name={self.run_name!r} status={self.status!r}>"


# -- artifacts ----------------------------------------------------------------------------------------
def _owned_file(run, artifact_file: str) -> tuple[str, Optional[str]]:
    """A path in a fresh staging folder named as `artifact_file`, and the folder it goes to."""
    from autolog.runs.handle import _check_artifact_path

    checked = _check_artifact_path(artifact_file)
    if not checked:
        raise ValueError(f"artifact_file must name a file, not {artifact_file!r}")
    return os.path.join(run.staging_dir(), os.path.basename(checked)), (os.path.dirname(checked) or None)


def log_dict(dictionary: Any, artifact_file: str) -> None:
    """Log a dict (or any JSON-able value) as the artifact `artifact_file`: YAML for
    `.yaml`/`.yml` (needs PyYAML), JSON (indented) otherwise, as MLflow writes it."""
    if os.path.splitext(artifact_file)[1].lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ImportError(f"log_dict writes {artifact_file!r} as YAML, which needs PyYAML: pip install pyyaml") from None
        text = yaml.safe_dump(dictionary, default_flow_style=False, sort_keys=False)
    else:
        text = json.dumps(dictionary, indent=2)
    _runs.run_or_start().log_text(text, artifact_file)


def log_figure(figure: Any, artifact_file: str, *, save_kwargs: Optional[dict] = None) -> None:
    """Log a matplotlib or plotly figure as `artifact_file` (rendered now: the figure may change after)."""
    run = _runs.run_or_start()
    path, folder = _owned_file(run, artifact_file)
    extension = os.path.splitext(path)[1].lower()
    if hasattr(figure, "savefig"):  # matplotlib
        figure.savefig(path, **(save_kwargs or {}))
    elif hasattr(figure, "write_html") and hasattr(figure, "write_image"):  # plotly
        if extension == ".html":
            figure.write_html(path, **(save_kwargs or {}))
        else:
            figure.write_image(path, **(save_kwargs or {}))
    else:
        raise TypeError(f"log_figure takes a matplotlib or plotly figure, not {type(figure).__name__}")
    run.log_owned_artifact(path, folder)


def log_image(image: Any, artifact_file: Optional[str] = None, *, key: Optional[str] = None,
              step: Optional[int] = None, timestamp: Optional[int] = None, synchronous: Optional[bool] = None) -> None:
    """Log an image (numpy array HxW, HxWx1/3/4; a PIL image; an `mlflow.Image`), as MLflow does:

    - `artifact_file="dir/name.png"`: one image file, encoded now;
    - `key="samples", step=N`: one image per step under `images/` (MLflow's file names, a
      thumbnail, the `mlflow.loggedImages` tag), which the MLflow UI shows as an image grid
      with a step slider; copied now, encoded on the logger's worker.

    `synchronous` is accepted for MLflow's signature; autolog never blocks here.
    """
    if (artifact_file is None) == (key is None):
        raise TypeError("log_image takes exactly one of artifact_file and key")
    picture = _to_pil(image)
    run = _runs.run_or_start()
    if artifact_file is not None:
        path, folder = _owned_file(run, artifact_file)
        picture.save(path)
        run.log_owned_artifact(path, folder)
        return
    if not _IMAGE_KEY.match(key):
        raise ValueError(f"image key {key!r} may only contain letters, digits, _ - . / and spaces")
    step = 0 if step is None else int(step)
    timestamp = int(time.time() * 1000) if timestamp is None else int(timestamp)
    stem = f"{key.replace('/', '~')}+step+{step}+timestamp+{timestamp}+{uuid.uuid4()}"

    def encode_and_log() -> None:
        folder = run.staging_dir()
        full = os.path.join(folder, f"{stem}.png")
        picture.save(full)
        thumbnail = os.path.join(folder, f"{stem}+compressed.webp")
        _compressed(picture).save(thumbnail)
        run.log_owned_artifact(full, "images")
        run.log_owned_artifact(thumbnail, "images")

    run.defer(encode_and_log, label=f"writing image {key!r} step {step} of run {run.run_id}")
    run.set_tag(TAG_LOGGED_IMAGES, "True")


def _compressed(picture):
    width, height = picture.size
    scale = COMPRESSED_IMAGE_SIZE / max(width, height, 1)
    return picture.resize((max(1, int(width * scale)), max(1, int(height * scale))))


def _to_pil(image: Any):
    """A PIL image of its own (never the caller's object): numpy arrays as MLflow converts them."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("log_image needs Pillow: pip install pillow") from None
    if isinstance(image, Image.Image):
        return image.copy()
    if hasattr(image, "to_pil"):  # mlflow.Image
        return image.to_pil().copy()
    if type(image).__module__.split(".")[0] == "numpy" or isinstance(image, list):
        import numpy as np

        array = np.asarray(image)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
            raise ValueError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, not {array.shape}")
        if np.issubdtype(array.dtype, np.integer):
            if array.size and (array.min() < 0 or array.max() > 255):
                raise ValueError(f"integer pixel values must be in [0, 255] (found {array.min()} to {array.max()})")
            array = array.astype(np.uint8)
        else:
            array = array.astype(np.float64)
            low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)
            if low < 0.0 or high > 1.0:
                containment.warn_once("log_image float range", "log_image: float pixel values outside [0, 1] "
                                      "(%s to %s) are rescaled with min/max", low, high)
                array = (array - low) / ((high - low) or 1.0)
            array = (array * 255).astype(np.uint8)
        return Image.fromarray(array)
    raise TypeError(f"log_image takes a numpy array, a PIL image or an mlflow.Image, not {type(image).__name__}")


# -- models ---------------------------------------------------------------------------------------------
def model_flavor_for(model: Any):
    """The installed integration's model flavor for `model`, found by the top-level package of
    the model's class (`sklearn`, `xgboost`, `torch`, ...): the integration of that name first,
    then any integration whose trigger module is in that package; each is asked with its
    `model_flavor(model)` (None: not a model it can write). LookupError when none can."""
    from autolog.instrument.integration import available, load

    package = type(model).__module__.split(".")[0]
    known = available()
    candidates = ([package] if package in known else []) + sorted(n for n in known if n != package)
    for name in candidates:
        try:
            integration = load(known[name])()
        except ImportError:
            continue
        if name != package and integration.module.split(".")[0] != package:
            continue
        ask = getattr(integration, "model_flavor", None)
        flavor = ask(model) if ask is not None else None
        if flavor is not None:
            return flavor
    raise LookupError(f"no installed autolog integration writes models of type {type(model).__module__}."
                      f"{type(model).__qualname__} (integrations: {', '.join(sorted(known))})")


def log_model(model: Any, name: str = "model", *, input_example: Any = None, signature: Any = None) -> str:
    """Log `model` under the artifact folder `name` in the MLflow Model format, with the flavor
    of the integration for its library (`model_flavor_for`); return its `runs:/ID/NAME` URI.

    `input_example`: rows of input data (saved with the model; the signature is inferred from
    them unless given); `signature`: an MLflow `ModelSignature` or its `to_dict()`. The model is
    snapshotted now and written on the logger's worker; `max_model_size_mb` applies.
    """
    from autolog.instrument import models
    from autolog.instrument.snapshots import input_example_of, signature_of

    flavor = model_flavor_for(model)
    run = _runs.run_or_start()
    example = input_example_of(input_example) if input_example is not None else None
    if signature is not None and hasattr(signature, "to_dict"):
        signature = signature.to_dict()
    elif signature is None and input_example is not None:
        signature = signature_of(model, input_example)
    from autolog.runs.handle import _check_artifact_path

    path = _check_artifact_path(name)
    if not path:
        raise ValueError(f"log_model needs a name for the model's folder, not {name!r}")
    models.log_model(run, model, flavor, artifact_path=path, signature=signature, input_example=example,
                     max_size_mb=_runs.settings().max_model_size_mb)
    return f"runs:/{run.run_id}/{path}"


__all__ = [
    "set_tracking_uri", "get_tracking_uri", "set_experiment", "get_experiment_by_name", "search_experiments",
    "search_runs", "log_dict", "log_figure", "log_image", "log_model", "RunInfo", "RunStatus",
]
