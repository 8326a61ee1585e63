"""Quickstart: one line, `autolog.autolog()`, and a scikit-learn training is tracked.

Run it from any folder:

    python examples/quickstart.py

It trains a random forest on the wine data set (bundled with scikit-learn, no download),
evaluates it on a held-out split, and prints the run autolog recorded in the default
local store (./autolog-runs/): its params, training metrics, the post-training metrics
of the test split, and the model, loaded back. Then look at it with the CLI:

    autolog runs
    autolog show <run id>
"""

from __future__ import annotations

import os
import sys

import autolog

autolog.autolog()  # every scikit-learn fit from here on is tracked

from sklearn.datasets import load_wine  # noqa: E402 - imported after autolog() on purpose (either order works)
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402


def main() -> int:
    X, y = load_wine(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)

    model = RandomForestClassifier(n_estimators=50, max_depth=6, random_state=0)
    model.fit(X_train, y_train)  # a run: params, training metrics, confusion matrix, the model

    # post-training metrics go to the run that trained the model, named after the data set
    test_accuracy = model.score(X_test, y_test)
    test_f1 = f1_score(y_test, model.predict(X_test), average="macro")

    autolog.flush()  # wait until the worker thread has written everything (only for this printout)
    run = autolog.last_run()
    if run is None:
        print("autolog recorded no run", file=sys.stderr)
        return 1

    print(f"run id:      {run.run_id}")
    print(f"run name:    {run.run_name}  (experiment {run.experiment_name!r}, status {run.status})")
    print(f"stored in:   {os.path.abspath('autolog-runs')}  (the default local store)")
    print("params:")
    for key in ("n_estimators", "max_depth", "criterion", "random_state"):
        print(f"  {key:<34} {run.params.get(key)}")
    print(f"  ... {len(run.params)} params in all")
    print("metrics:")
    for key, value in sorted(run.metrics.items()):
        if not key.startswith("system/"):
            print(f"  {key:<34} {value:.4f}")
    print(f"test accuracy {test_accuracy:.4f}, macro F1 {test_f1:.4f} (as computed here, and logged above)")

    reloaded = autolog.load_model(run.run_id)
    same = (reloaded.predict(X_test) == model.predict(X_test)).all()
    print(f"model:       {type(reloaded).__name__} loaded back with autolog.load_model; same predictions: {bool(same)}")
    print()
    print("Look at it with the CLI:")
    print("  autolog runs")
    print(f"  autolog show {run.run_id}")
    if not same or "training_accuracy_score" not in run.metrics:
        print("the run is incomplete", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
