"""Importing autolog and turning it on imports no ML framework (nor numpy, pandas, mlflow).

Checked in a fresh interpreter, since the test process itself has imported them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("sklearn", "tensorflow", "torch", "xgboost", "lightgbm", "statsmodels", "pyspark", "mlflow",
         "pandas", "numpy", "keras", "lightning", "scipy", "matplotlib")

PROGRAM = """
import json, sys
heavy = {heavy!r}
steps = {{}}
import autolog
steps["import"] = sorted(m for m in heavy if m in sys.modules)
enabled = autolog.autolog()
steps["autolog()"] = sorted(m for m in heavy if m in sys.modules)
with autolog.start_run():
    autolog.log_metric("loss", 0.5)
    autolog.log_param("lr", 0.1)
assert autolog.flush(60)
steps["a run logged"] = sorted(m for m in heavy if m in sys.modules)
autolog.autolog(disable=True)
print(json.dumps({{"steps": steps, "enabled": enabled}}))
"""


def _run(tmp_path, extra_env=None):
    env = dict(os.environ, AUTOLOG_TRACKING_URI=str(tmp_path / "store"), AUTOLOG_JOURNAL_DIR=str(tmp_path / "j"))
    env.update(extra_env or {})
    out = subprocess.run([sys.executable, "-c", PROGRAM.format(heavy=HEAVY)], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_and_autolog_import_no_framework(tmp_path):
    result = _run(tmp_path)
    assert result["steps"] == {"import": [], "autolog()": [], "a run logged": []}


def test_system_metrics_on_still_imports_no_framework(tmp_path):
    result = _run(tmp_path, {"AUTOLOG_LOG_SYSTEM_METRICS": "true"})
    assert result["steps"]["autolog()"] == [] and result["steps"]["a run logged"] == []
