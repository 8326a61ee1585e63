"""MLflow's names for autolog's own tags, without importing mlflow.

The MLflow backend writes a run's source tags under MLflow's names as well (so the MLflow
UI fills its columns), the MLflow view of the local store (mlflow_store.py) reads them so,
and a dataset's source (autolog/instrument/datasets.py) names the code that ran as
MLflow's CodeDatasetSource does; all three take the names from here.
"""

from __future__ import annotations

# autolog's source tags -> MLflow's (the autolog ones are kept as well)
MLFLOW_TAGS = {
    "autolog.source.script": "mlflow.source.name",
    "autolog.source.git.commit": "mlflow.source.git.commit",
    "autolog.source.git.branch": "mlflow.source.git.branch",
    "autolog.source.git.remote": "mlflow.source.git.repoURL",
    "autolog.user": "mlflow.user",
    "autolog.integration": "mlflow.autologging",
}


def mlflow_source_tags(tags: dict) -> dict:
    """MLflow's names for the autolog source tags in `tags` that MLflow's own are not set for."""
    out = {theirs: tags[ours] for ours, theirs in MLFLOW_TAGS.items() if ours in tags and theirs not in tags}
    if ("autolog.source.script" in tags or "autolog.source.command" in tags) and "mlflow.source.type" not in tags:
        out["mlflow.source.type"] = "LOCAL"
    return out
