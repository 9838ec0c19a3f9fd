"""Resuming from the last checkpoint another run logged (`--resume-from RUN_ID`):
each epoch's full model (weights and optimizer state) is the artifact
`checkpoints/epoch-NNNN.keras`, and the tag `checkpoint.last_epoch` names the last."""

from __future__ import annotations

LAST_EPOCH_TAG = "checkpoint.last_epoch"


class ResumeError(ValueError):
    pass


def artifact_path(epoch: int) -> str:
    return f"checkpoints/epoch-{epoch:04d}.keras"


def last_epoch(run_id: str) -> int:
    """The last epoch `run_id` logged a checkpoint for (checked before training)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        raise ResumeError(f"resume_from: no run {run_id}") from None
    tag = run.data.tags.get(LAST_EPOCH_TAG, "")
    if not tag.isdigit():
        raise ResumeError(f"resume_from: run {run_id} logged no checkpoint")
    return int(tag)


def download(run_id: str, epoch: int, into: str) -> str:
    import mlflow

    return mlflow.MlflowClient().download_artifacts(run_id, artifact_path(epoch), into)
