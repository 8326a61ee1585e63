"""Choosing a backend from a tracking URI.

Resolution order for the URI: the `tracking_uri` argument, then `AUTOLOG_TRACKING_URI`,
then MLflow's own `MLFLOW_TRACKING_URI`, then the embedded local store under
`./autolog-runs`. The scheme picks the backend:

| URI                                   | backend                        |
|---------------------------------------|--------------------------------|
| a path, `file:PATH`, `file:///PATH`   | `local` (SQLite + artifact dir)|
| `http://...`, `https://...`           | `mlflow` (a tracking server)   |
| `mlflow+sqlite:///db`, `mlflow+file:` | `mlflow` with that MLflow store|
| `databricks`, `databricks://profile`  | `mlflow` (Databricks)          |
| `memory:` / `memory:NAME`             | `memory` (tests of the core)   |
| `SCHEME:...` of a plugin              | entry point `autolog.backends` |

Backends are built once per URI and process (a fork builds its own).
"""

from __future__ import annotations

import os
import threading
from importlib import metadata
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

_BUILTIN = {
    "local": "autolog.backends.local:LocalStore",
    "memory": "autolog.backends.memory:InMemoryBackend",
    "mlflow": "autolog.backends.mlflow:MlflowBackend",
}

_lock = threading.Lock()
_instances: dict[tuple[int, str], Backend] = {}


def default_tracking_uri() -> str:
    return os.path.join(os.getcwd(), DEFAULT_LOCAL_DIR)


def resolve_tracking_uri(uri: Optional[str] = None) -> str:
    """The URI autolog logs to: argument, `AUTOLOG_TRACKING_URI`, `MLFLOW_TRACKING_URI`, default."""
    for candidate in (uri, os.environ.get("AUTOLOG_TRACKING_URI"), os.environ.get("MLFLOW_TRACKING_URI")):
        if candidate and str(candidate).strip():
            return normalize_uri(str(candidate).strip())
    return default_tracking_uri()


def normalize_uri(uri: str) -> str:
    """Make local paths absolute, so a later `chdir` does not move the store."""
    if backend_kind(uri) == "local":
        return os.path.abspath(os.path.expanduser(local_path_of(uri)))
    return uri


def local_path_of(uri: str) -> str:
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
    if lowered.startswith("file:"):
        return "local"
    scheme, sep, _ = uri.partition(":")
    # "C:\\..." on Windows and plain relative or absolute paths are local
    if not sep or len(scheme) == 1 or "/" in scheme or "\\" in scheme or uri.startswith((".", "/", "~")):
        return "local"
    return scheme.lower()


def _load_class(kind: str):
    target = _BUILTIN.get(kind)
    if target is None:
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


def require_client_library(uri: Optional[str] = None) -> None:
    """Raise BackendError now when `uri` (resolved) needs a client library that is not installed.

    Checked with `find_spec`, without importing it (importing mlflow takes seconds).
    """
    import importlib.util

    if backend_kind(resolve_tracking_uri(uri)) == "mlflow" and importlib.util.find_spec("mlflow") is None:
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
