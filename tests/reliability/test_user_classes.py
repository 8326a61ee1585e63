"""The automatic path never changes the user's classes (hole 7).

A `__main__`-defined estimator with a lambda param is pickled with cloudpickle (by value); the
worker used to load that snapshot, which re-created the class in place: class attributes set
after the fit were reset and `fit` lost its wrapper (later fits silently not logged). The
worker now works from a deep copy made at the call; the snapshot is only written out.
"""

from __future__ import annotations

import json

import pytest

from tests.reliability.faults import output, run_python

pytest.importorskip("sklearn")
pytestmark = pytest.mark.timeout(180)


def test_a_main_class_is_never_recreated_by_the_worker(tmp_path, store):
    proc = run_python(tmp_path, """
        import json
        import numpy as np
        import autolog
        from sklearn.base import BaseEstimator, RegressorMixin
        from sklearn.linear_model import Ridge

        class Scaled(RegressorMixin, BaseEstimator):
            def __init__(self, transform=lambda x: x * 2.0, alpha=1.0):
                self.transform = transform
                self.alpha = alpha

            def fit(self, X, y):
                self.inner_ = Ridge(alpha=self.alpha).fit(self.transform(X), y)
                return self

            def predict(self, X):
                return self.inner_.predict(self.transform(X))

        autolog.autolog()
        X = np.arange(40, dtype=float).reshape(20, 2)
        y = X[:, 0] * 3.0
        Scaled().fit(X, y)
        Scaled.marker = "set after the first fit"
        wrapped_before = vars(Scaled)["fit"]
        autolog.flush()
        Scaled(alpha=2.0).fit(X, y)
        autolog.flush()
        runs = autolog.search_runs(output_format="list")
        print(json.dumps({"marker": getattr(Scaled, "marker", None), "same_fit": vars(Scaled)["fit"] is wrapped_before,
                          "runs": len(runs), "alphas": sorted(r.params.get("alpha") for r in runs),
                          "metrics": sorted(k for r in runs for k in r.metrics)}))
    """)
    assert proc.returncode == 0, output(proc)
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["marker"] == "set after the first fit", result
    assert result["same_fit"] and result["runs"] == 2 and result["alphas"] == ["1.0", "2.0"], result
    assert "training_r2_score" in result["metrics"], result
