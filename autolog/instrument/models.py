"""Models: how an integration logs a trained model, and `load_model` to get it back.

A logged model is a folder (by default the artifact `model/`) in the MLflow Model
format, so both `autolog.load_model(run_id)` and `mlflow.pyfunc.load_model(
"runs:/<id>/model")` read it:

    model/
      MLmodel            flavors (the native one and python_function), run id, signature,
                         and an `autolog` section naming the loader; written as JSON,
                         which YAML readers (MLflow's) parse as well
      requirements.txt   the libraries that trained it, pinned to the versions in use
      python_env.yaml, conda.yaml
      ...                the flavor's own files (e.g. model.pkl)

An integration describes its format with a `ModelFlavor`, and supplies only what is
its own: the flavor `name` in MLmodel, the `library` pinned in requirements.txt, the
`loader` ("module:function" taking the model folder) that `autolog.load_model` calls,
and `save(snapshot, path)`, which runs on the logger's worker, writes the model's files
and returns the `flavors` entries of MLmodel (the native flavor, and `python_function`
with MLflow's `loader_module` where the model can predict, so `mlflow.pyfunc.load_model`
reads it). Everything else is written here: MLmodel (run id, signature, input example,
the python_function environment), requirements.txt, python_env.yaml, conda.yaml; the
size limit; the delivery and the registration.

`snapshot(model)` runs on the training thread and must return a consistent copy (the
user may refit the same object right after). By default it is the model's pickle
(`snapshots.pickle_model`, cloudpickle where pickle refuses), which `save` writes out as
it is (`snapshot.data`); a flavor with a native format of its own (a booster's raw
bytes, a Keras file) overrides it. `snapshot_size` (for `max_model_size_mb`) knows bytes,
a pickle, an object with a `size` and a file or folder path; a flavor overrides it only
for another kind of snapshot. The version of the library is known, so requirements are
written directly (no subprocess to infer them). A library that saves its models only to
files (Keras's `model.save`) takes its snapshot as a `SavedFile`: the model saved on the
training thread into a private temporary folder, moved into the model folder by `save`.

The size limit: `log_model(..., max_size_mb=None)` takes `autolog(max_model_size_mb=...)`
(environment: `AUTOLOG_MAX_MODEL_SIZE_MB`); a model over it is not logged, the run gets
the tag `autolog.model_skipped` saying why, and one warning per flavor is logged; an
integration that cannot log a model for another reason says so the same way (`skip_model`).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
import weakref
from typing import Any, Callable, Iterable, Optional

from autolog.instrument import containment
from autolog.instrument import distributions as installed_distributions
from autolog.instrument.snapshots import PickledModel, pickle_model

MODEL_ARTIFACT_PATH = "model"
MLMODEL_FILE = "MLmodel"
TAG_MODEL_SKIPPED = "autolog.model_skipped"


class ModelFlavor:
    name: str = ""  # native flavor name in MLmodel, e.g. "sklearn"
    library: str = ""  # distribution pinned in requirements.txt, e.g. "scikit-learn"
    loader: str = ""  # "module:function" taking the model folder, returning the model
    requirements: tuple = ()  # other distributions the model needs to load (pinned when installed)

    def snapshot(self, model: Any) -> Any:
        """A consistent copy of `model`, taken on the training thread: its pickle by default."""
        return model if isinstance(model, PickledModel) else pickle_model(model)

    def snapshot_size(self, snapshot: Any) -> Optional[int]:
        """Bytes the model will take, for `max_model_size_mb`; None when not known."""
        return snapshot_size(snapshot)

    def save(self, snapshot: Any, path: str) -> dict:
        """Write the model's files under `path`; return MLmodel's flavors dict."""
        raise NotImplementedError


class SavedFile:
    """A model saved by its library to the file `filename` (`save(path)`) in a private temporary
    folder, on the training thread: a snapshot the user can no longer change. `move_to` moves the
    file into the model folder (on the worker) and removes the folder; so does dropping the
    snapshot (a model skipped for its size). Not at interpreter exit: weakref.finalize's exit
    hook would run before autolog's own flush at exit (atexit is LIFO, and the first snapshot
    registers it after autolog's), removing the file of a fit that was the script's last line
    before the worker wrote it. (A snapshot that the bounded flush at exit could not write
    leaves its folder in the temporary directory.)"""

    __slots__ = ("path", "size", "_cleanup", "__weakref__")

    def __init__(self, save: Callable[[str], Any], filename: str, *, prefix: str = "autolog-model-"):
        folder = tempfile.mkdtemp(prefix=prefix)
        self._cleanup = weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        self._cleanup.atexit = False
        self.path = os.path.join(folder, filename)
        try:
            save(self.path)
            self.size = os.path.getsize(self.path)
        except BaseException:
            self._cleanup()
            raise

    def move_to(self, target: str) -> None:
        """Move the saved file to `target` (a file path) and remove the temporary folder."""
        shutil.move(self.path, target)
        self._cleanup()


def skip_model(run, reason: str, kind: str) -> None:
    """The model of `run` is not logged, for `reason`: the tag `autolog.model_skipped` on the run
    and one warning per `kind` of reason for the process."""
    run.set_tag(TAG_MODEL_SKIPPED, reason, normalize=True)
    containment.warn_once(f"model skipped: {kind}", "%s; no model is logged (run %s)", reason, run.run_id)


def snapshot_size(snapshot: Any) -> Optional[int]:
    """The size of the usual kinds of snapshot: bytes, a `PickledModel` (or any object whose
    `data` is bytes), an object with an integer `size`, a file or folder path."""
    if isinstance(snapshot, (bytes, bytearray, memoryview)):
        return len(snapshot)
    data = getattr(snapshot, "data", None)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return len(data)
    size = getattr(snapshot, "size", None)
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    if isinstance(snapshot, (str, os.PathLike)):
        return _size_on_disk(os.fspath(snapshot))
    return None


def _size_on_disk(path: str) -> Optional[int]:
    if os.path.isfile(path):
        return os.path.getsize(path)
    if not os.path.isdir(path):
        return None
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(folder, name))
            except OSError:
                continue
    return total


def pinned(distributions: Iterable[str]) -> list[str]:
    """`name==version` for each installed distribution (others are left out)."""
    out = []
    for dist in distributions:
        version = _version(dist)
        if version is not None:
            out.append(f"{dist}=={version}")
    return out


def write_model_folder(path: str, flavor: ModelFlavor, snapshot: Any, *, run_id: Optional[str] = None,
                       artifact_path: str = MODEL_ARTIFACT_PATH, signature: Optional[dict] = None,
                       input_example: Optional[tuple[str, dict]] = None, metadata_extra: Optional[dict] = None) -> dict:
    """Write a complete model folder at `path` (created); return the MLmodel content."""
    os.makedirs(path, exist_ok=True)
    flavors = flavor.save(snapshot, path)
    requirements = pinned([flavor.library, *flavor.requirements]) if flavor.library else []
    python_version = platform.python_version()
    env = {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    pyfunc = flavors.get("python_function")
    if pyfunc is not None:
        pyfunc.setdefault("env", env)
        pyfunc.setdefault("python_version", python_version)
    mlmodel: dict = {
        "artifact_path": artifact_path,
        "flavors": flavors,
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime()),
        "autolog": {"loader": flavor.loader, "flavor": flavor.name, "python_version": python_version,
                    **({"library": flavor.library, "library_version": _version(flavor.library)} if flavor.library else {}),
                    **(metadata_extra or {})},
    }
    if run_id:
        mlmodel["run_id"] = run_id
    if signature:
        mlmodel["signature"] = signature
    if input_example is not None:
        name, content = input_example
        with open(os.path.join(path, name), "w", encoding="utf-8") as fh:
            fh.write(json.dumps({k: v for k, v in content.items() if k != "_info"}))  # "_info": MLmodel only
        mlmodel["saved_input_example_info"] = {"artifact_path": name, **content.get("_info", {})}
    with open(os.path.join(path, MLMODEL_FILE), "w", encoding="utf-8") as fh:
        fh.write(json.dumps(mlmodel, indent=2, default=str))  # one write, not one per token as json.dump
    with open(os.path.join(path, "requirements.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(requirements) + ("\n" if requirements else ""))
    with open(os.path.join(path, "python_env.yaml"), "w", encoding="utf-8") as fh:
        fh.write(f"python: {python_version}\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n")
    with open(os.path.join(path, "conda.yaml"), "w", encoding="utf-8") as fh:
        deps = "".join(f"  - {r}\n" for r in requirements)
        fh.write(f"channels:\n- conda-forge\ndependencies:\n- python={python_version}\n- pip\n- pip:\n{deps}name: autolog-env\n")
    return mlmodel


def _version(dist: str) -> Optional[str]:
    """The installed version of `dist`, found once per process (reading the metadata took a third
    of a model folder's time, three times a model). The library that trained the model was
    imported from that version: an upgrade on disk while the process runs does not change it."""
    version = _versions.get(dist)
    if version is None:
        version = installed_distributions.version(dist)
        if version is not None:
            _versions[dist] = version
    return version


_versions: dict = {}  # distribution -> version; a distribution not installed is looked up again


def log_model(run, model: Any, flavor: ModelFlavor, *, artifact_path: str = MODEL_ARTIFACT_PATH,
              signature: Optional[dict] = None, input_example: Optional[tuple[str, dict]] = None,
              max_size_mb: Optional[float] = None, on_logged=None) -> bool:
    """Snapshot `model` now (training thread), write and deliver it on the worker.

    `max_size_mb=None` means `autolog(max_model_size_mb=...)` (env AUTOLOG_MAX_MODEL_SIZE_MB;
    no limit when that is unset too). Returns False when the model was skipped for its size
    (tagged on the run, not silent). `on_logged(run, artifact_path)` is called on the worker
    once the folder is handed over (the MLflow backend registers models from there).
    """
    if max_size_mb is None:
        from autolog.runs import settings

        max_size_mb = settings().max_model_size_mb
    snapshot = flavor.snapshot(model)
    size = flavor.snapshot_size(snapshot)
    if max_size_mb is not None and size is not None and size > max_size_mb * 1024 * 1024:
        skip_model(run, f"model of {size / 1048576:.1f} MB is over max_model_size_mb={max_size_mb}",
                   f"size of a {flavor.name} model")
        return False

    def write_and_log() -> None:
        folder = run.staging_dir()  # itself the model folder: delivered whole (the local store renames it)
        write_model_folder(folder, flavor, snapshot, run_id=run.run_id, artifact_path=artifact_path,
                           signature=signature, input_example=input_example)
        run.log_owned_artifact(folder, artifact_path)
        if on_logged is not None:
            on_logged(run, artifact_path)
        _register_when_asked(run, artifact_path)

    # A model logged by deferred work on the worker (an integration's post-fit job, which holds
    # the snapshot) is written right after that job, in the same pass: it is not counted again
    # against the backlog's bound, so that the training thread, waiting for room, goes on as soon
    # as the job that took the room is done (while the worker writes the folder)
    from autolog.transport.logger import on_worker_thread

    run.defer(write_and_log, label=f"writing the {flavor.name} model of run {run.run_id}",
              holds_bytes=None if on_worker_thread() else (size or 0))
    return True


def _register_when_asked(run, artifact_path: str) -> None:
    """`autolog(registered_model_name=...)`: register the model folder as a new version. The
    registration is a record after the folder's artifact record, so it is retried, spilled and
    replayed like the folder itself when the backend is away."""
    from autolog.runs import settings

    name = settings().registered_model_name
    if name:
        run.register_model(artifact_path, name)


def read_mlmodel(folder: str) -> dict:
    path = os.path.join(folder, MLMODEL_FILE)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        return json.loads(text)
    except ValueError:
        try:
            import yaml  # MLmodel files written by MLflow itself are YAML
        except ImportError as exc:
            raise ValueError(f"{path} is YAML; install PyYAML to read it") from exc
        return yaml.safe_load(text)


def parse_model_uri(uri: str) -> tuple[Optional[str], str]:
    """(run id, artifact path) of `runs:/ID/PATH`, `ID` or `ID/PATH`; (None, path) of a local folder."""
    if uri.startswith("runs:/"):
        rest = uri[len("runs:/"):].strip("/")
        run_id, _, path = rest.partition("/")
        return run_id, path or MODEL_ARTIFACT_PATH
    if os.path.isdir(uri):
        return None, uri
    run_id, _, path = uri.strip("/").partition("/")
    return run_id, path or MODEL_ARTIFACT_PATH


def load_model(run_id_or_uri: str, *, tracking_uri: Optional[str] = None) -> Any:
    """Load a model logged by autolog: a run id (or unique prefix of one, in the local store),
    `runs:/<run id>/<path>`, or a local model folder."""
    from autolog import runs
    from autolog.instrument.integration import load

    run_id, path = parse_model_uri(str(run_id_or_uri))
    if run_id is None:
        folder = path
    else:
        backend = runs._reader(tracking_uri)
        resolve = getattr(backend, "resolve_run_id", None)
        if resolve is not None:
            run_id = resolve(run_id)
        folder = backend.download_artifacts(run_id, path, tempfile.mkdtemp(prefix="autolog-model-"))
    if not os.path.isfile(os.path.join(folder, MLMODEL_FILE)):
        raise FileNotFoundError(f"no model at {run_id_or_uri!r} (no {MLMODEL_FILE} file in {folder})")
    meta = read_mlmodel(folder)
    loader = (meta.get("autolog") or {}).get("loader")
    if not loader:
        raise ValueError(f"the model at {run_id_or_uri!r} was not written by autolog; load it with mlflow.pyfunc.load_model")
    _check_loader(loader, run_id_or_uri)
    if sys.modules.get("autolog.integrations") is None:
        import autolog.integrations  # noqa: F401 - the loaders live there
    return load(loader)(folder)


def _check_loader(loader: str, where: str) -> None:
    """The MLmodel file names the function that loads it; a model folder is data, so only a
    loader this process knows is called: the `load_model` of a known integration's module, or
    the `loader` of a ModelFlavor class defined in it (a crafted folder naming "os:system" must
    not run it)."""
    from autolog.instrument.integration import available

    known = {target.partition(":")[0] + ":load_model" for target in available().values()}
    pending = list(ModelFlavor.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if isinstance(getattr(cls, "loader", None), str):
            known.add(cls.loader)
    if str(loader) not in known:
        raise ValueError(f"the model at {where!r} names the loader {loader!r}, which is neither the load_model "
                         "of a known autolog integration nor the loader of a model flavor; refused")
