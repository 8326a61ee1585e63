"""Choosing a backend from a tracking URI.

Resolution order for the URI: the `tracking_uri` argument, then `AUTOLOG_TRACKING_URI`,
then MLflow's own `MLFLOW_TRACKING_URI`, then the embedded local store under
`./autolog-runs`. The scheme picks the backend:

| URI                                   | backend                        |
|---------------------------------------|--------------------------------|
| a path, `file:PATH`, `file:///PATH`   | `local` (SQLite + artifact dir)|
| `autolog:///PATH` (the MLflow plugin's)| `local`                       |
| `http://...`, `https://...`           | `mlflow` (a tracking server)   |
| `sqlite:///db`, `postgresql://...`, `mysql://...`, `mssql://...` (any `+driver`) | `mlflow` with that MLflow store |
| `mlflow+STORE` (`mlflow+file:///mlruns`) | `mlflow` with that MLflow store |
| `databricks`, `databricks://profile`  | `mlflow` (Databricks)          |
| `memory:` / `memory:NAME`             | `memory` (tests of the core)   |
| `SCHEME:...` of a plugin              | entry point `autolog.backends` |

`MLFLOW_TRACKING_URI` is MLflow's own variable, so what it names is MLflow's: a path or
`file:` URI there is an MLflow file store (`mlflow+file:`), unless the folder already holds
an autolog store (`autolog.db`); the other schemes mean what they mean above. A scheme nobody answers to is an error when
`autolog()` checks the URI (`check_tracking_uri`), never records sent to a journal.

Backends are built once per URI and process (a fork builds its own).
"""

from __future__ import annotations

import os
import pathlib
import threading
import urllib.parse
from typing import Optional

from autolog.backends.base import (  # noqa: F401  (re-exported)
    Backend,
    BackendError,
    BackendUnavailable,
    BatchLimits,
    CredentialsRefused,
    RunNotFound,
    StoreNotFound,
)

DEFAULT_LOCAL_DIR = "autolog-runs"
ENTRY_POINT_GROUP = "autolog.backends"
#: the database file of a local store (autolog/backends/local.py's DB_FILE)
LOCAL_DB_FILE = "autolog.db"
#: the URI scheme of autolog's MLflow tracking-store plugin (autolog/backends/mlflow_store.py)
PLUGIN_SCHEME = "autolog"
#: MLflow's SQLAlchemy stores (`postgresql+psycopg2://` and other drivers included)
MLFLOW_DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mssql")

_BUILTIN = {
    "local": "autolog.backends.local:LocalStore",
    "memory": "autolog.backends.memory:InMemoryBackend",
    "mlflow": "autolog.backends.mlflow:MlflowBackend",
}

_lock = threading.Lock()
_instances: dict[tuple[int, str], Backend] = {}


def default_tracking_uri() -> str:
    return os.path.join(os.getcwd(), DEFAULT_LOCAL_DIR)


def plugin_uri(path: str) -> str:
    """The `autolog:///ABS/PATH` URI of a local store folder, for MLflow's tools."""
    return f"{PLUGIN_SCHEME}://" + pathlib.Path(os.path.abspath(os.path.expanduser(path))).as_uri()[len("file://"):]


def resolve_tracking_uri(uri: Optional[str] = None) -> str:
    """The URI autolog logs to: argument, `AUTOLOG_TRACKING_URI`, `MLFLOW_TRACKING_URI`, default."""
    for candidate in (uri, os.environ.get("AUTOLOG_TRACKING_URI")):
        if candidate and str(candidate).strip():
            return normalize_uri(str(candidate).strip())
    mlflow_uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if mlflow_uri:
        return normalize_uri(mlflow_store_of(mlflow_uri))
    return default_tracking_uri()


def mlflow_store_of(uri: str) -> str:
    """An MLflow tracking URI as autolog names it: MLflow's file store (a path, `file:`) is
    `mlflow+file:///ABS`, unless that folder holds an autolog store (its `autolog.db`), which
    stays the local store; every other MLflow URI is the same string."""
    if backend_kind(uri) == "local" and not uri.lower().startswith(f"{PLUGIN_SCHEME}:"):
        folder = os.path.abspath(os.path.expanduser(local_path_of(uri)))
        if not os.path.exists(os.path.join(folder, LOCAL_DB_FILE)):
            return "mlflow+file://" + pathlib.Path(folder).as_uri()[len("file://"):]
    return uri


def normalize_uri(uri: str) -> str:
    """Make local paths absolute, so a later `chdir` does not move the store."""
    if backend_kind(uri) == "local":
        return os.path.abspath(os.path.expanduser(local_path_of(uri)))
    return uri


def local_path_of(uri: str) -> str:
    if uri.lower().startswith(f"{PLUGIN_SCHEME}:"):  # autolog:///abs/path, the MLflow plugin's URI
        rest = uri[len(PLUGIN_SCHEME) + 1:]
        rest = rest[len("//localhost"):] if rest.startswith("//localhost/") else rest
        return urllib.parse.unquote(rest[2:] if rest.startswith("///") else rest)
    if uri.startswith("file://"):
        return uri[len("file://"):] or "/"
    if uri.startswith("file:"):
        return uri[len("file:"):]
    return uri


def backend_kind(uri: str) -> str:
    """The registry name for a URI's scheme."""
    lowered = uri.lower()
    if lowered.startswith(("http://", "https://", "mlflow+", "databricks")):
        return "mlflow"
    if lowered.startswith("memory:"):
        return "memory"
    if lowered.startswith(("file:", f"{PLUGIN_SCHEME}:")):
        return "local"
    if lowered.partition(":")[0].partition("+")[0] in MLFLOW_DATABASE_SCHEMES and "://" in lowered:
        return "mlflow"
    scheme, sep, _ = uri.partition(":")
    # "C:\\..." on Windows and plain relative or absolute paths are local
    if not sep or len(scheme) == 1 or "/" in scheme or "\\" in scheme or uri.startswith((".", "/", "~")):
        return "local"
    return scheme.lower()


def _load_class(kind: str):
    target = _BUILTIN.get(kind)
    if target is None:
        from importlib import metadata  # a plugin's scheme only: not imported at startup

        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == kind:
                return ep.load()
        raise BackendError(
            f"no autolog backend for URI scheme {kind!r}; install a package that registers one "
            f"under the entry-point group {ENTRY_POINT_GROUP!r}"
        )
    module_name, _, attr = target.partition(":")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if kind == "mlflow":
            raise BackendError(_MLFLOW_MISSING) from exc
        raise
    return getattr(module, attr)


_MLFLOW_MISSING = "logging to an MLflow tracking URI needs the mlflow client library: pip install 'autolog[mlflow]'"


def check_tracking_uri(uri: Optional[str] = None) -> str:
    """The backend kind of `uri` (resolved); BackendError when no backend answers to its scheme."""
    resolved = resolve_tracking_uri(uri)
    kind = backend_kind(resolved)
    if kind in _BUILTIN:
        return kind
    from importlib import metadata  # a plugin's scheme only: not imported at startup

    try:
        names = {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # noqa: BLE001 - broken metadata of another package: let get_backend say more
        return kind
    if kind not in names:
        raise BackendError(
            f"no autolog backend for the tracking URI {resolved!r} (scheme {kind!r}): use a folder or file:///PATH "
            f"(the local store), an MLflow URI (http(s)://, sqlite:///, postgresql://, mysql://, mssql://, "
            f"databricks, mlflow+file:///mlruns), or install a package that registers {kind!r} under the "
            f"entry-point group {ENTRY_POINT_GROUP!r}")
    return kind


def require_client_library(uri: Optional[str] = None) -> None:
    """Raise BackendError now when `uri` (resolved) has a scheme no backend answers to, or needs
    a client library that is not installed (called by `autolog()` before any patching).

    The library is found with `find_spec`, without importing it (importing mlflow takes seconds).
    """
    import importlib.util

    if check_tracking_uri(uri) == "mlflow" and importlib.util.find_spec("mlflow") is None:
        raise BackendError(_MLFLOW_MISSING)


def get_backend(uri: Optional[str] = None) -> Backend:
    """The backend for `uri` (resolved as `resolve_tracking_uri` does), built once per process."""
    resolved = resolve_tracking_uri(uri)
    key = (os.getpid(), resolved)
    with _lock:
        backend = _instances.get(key)
        if backend is None:
            backend = _load_class(backend_kind(resolved))(resolved)
            _instances[key] = backend
        return backend


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    inherited = list(_instances.values())
    _instances.clear()
    for backend in inherited:
        try:
            backend.after_fork_in_child()
        except Exception:  # a child must start even if a backend cannot clean up
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
