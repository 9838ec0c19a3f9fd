"""The models a container logs to a local artifact store (container_models.py): only
those MLflow records as the run's own, at their own place, move into the store; a
real SQLite MLflow store, folders on disk (the whole path in Docker is in
test_docker.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ct_service.execution.container_models import collect, models_folder


def logged_model(client: MlflowClient, experiment_id: str, run_id: str) -> str:
    return client.create_logged_model(experiment_id, source_run_id=run_id).model_id


@pytest.mark.integration
def test_only_the_runs_own_new_models_move_into_the_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    experiment_id = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    models = models_folder(client, experiment_id)
    assert models == str(tmp_path / "art" / "models")
    run = client.create_run(experiment_id).info.run_id
    other_run = client.create_run(experiment_id).info.run_id
    own = logged_model(client, experiment_id, run)
    present = logged_model(client, experiment_id, run)
    others = logged_model(client, experiment_id, other_run)
    linked = logged_model(client, experiment_id, run)
    (Path(models) / present / "artifacts").mkdir(parents=True)
    (Path(models) / present / "artifacts" / "MLmodel").write_text("the stored one")

    staging = tmp_path / "staging"  # as the container left it
    for model_id in (own, present, others, "not-a-model"):
        (staging / model_id / "artifacts").mkdir(parents=True)
        (staging / model_id / "artifacts" / "MLmodel").write_text(f"written for {model_id}")
    os.symlink("/etc", staging / linked)

    assert collect(client, staging, models, run) == [own]
    assert (Path(models) / own / "artifacts" / "MLmodel").read_text() == f"written for {own}"
    # never over a model that is there, another run's, a link, or anything else
    assert (Path(models) / present / "artifacts" / "MLmodel").read_text() == "the stored one"
    assert sorted(p.name for p in Path(models).iterdir()) == sorted([own, present])


@pytest.mark.integration
def test_a_served_store_has_no_models_folder_here(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    experiment_id = client.create_experiment("e", artifact_location="mlflow-artifacts:/e")
    assert models_folder(client, experiment_id) == ""
