"""The MLflow server fixtures of tests/backends, for the distributed tests that use a real server."""

from __future__ import annotations

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "autolog_tests_backends_conftest", pathlib.Path(__file__).parent.parent / "backends" / "conftest.py")
_backends = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_backends)

mlflow_server = _backends.mlflow_server
mlflow_client = _backends.mlflow_client
mlflow_experiment = _backends.mlflow_experiment
