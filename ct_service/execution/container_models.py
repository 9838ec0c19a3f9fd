"""Models a container logs to a local (file:) artifact store.

MLflow 3 logs a model apart from its run's artifacts, under the experiment's
`models/<model id>/artifacts`, a folder the container cannot be given: it holds
every model of the experiment, the one in production among them. So a container
gets an empty folder of its own mounted where that `models` folder would be, and
after the attempt the worker moves each model it finds there into the store, only
if MLflow records it as a model of this very run at exactly that place, and
never over a model that is there already.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.utils.file_utils import local_file_uri_to_path

log = logging.getLogger(__name__)

MODEL_ID = re.compile(r"m-[0-9a-f]{32}")


def models_folder(client: MlflowClient, experiment_id: str) -> str:
    """Where the experiment's logged models go on this host; "" when its artifacts
    are not in a local folder (a served store is reached over HTTP)."""
    location = client.get_experiment(experiment_id).artifact_location
    if not location.startswith("file:"):
        return ""
    return str(Path(local_file_uri_to_path(location)) / "models")


def collect(client: MlflowClient, staging: Path, models: str, run_id: str) -> list[str]:
    """Move the run's models from the container's folder `staging` into `models`;
    anything else found there is left out (and removed with the staging folder)."""
    moved = []
    entries = sorted(staging.iterdir()) if staging.is_dir() else []
    for entry in entries:
        target = Path(models) / entry.name
        if not (MODEL_ID.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink()):
            log.warning("run %s: %s is not a logged model; left out", run_id, entry.name)
            continue
        try:
            model = client.get_logged_model(entry.name)
        except MlflowException:
            log.warning("run %s: no logged model %s; left out", run_id, entry.name)
            continue
        location = model.artifact_location
        place = Path(local_file_uri_to_path(location)) if location.startswith("file:") else None
        if model.source_run_id != run_id or place != target / "artifacts":
            log.warning("run %s: model %s is not this run's; left out", run_id, entry.name)
            continue
        if target.exists():
            log.warning("run %s: model %s is in the store already; left out", run_id, entry.name)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(entry), target)
        moved.append(entry.name)
    return moved
