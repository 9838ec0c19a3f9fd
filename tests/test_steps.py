"""The pipeline's steps called directly, as a task (and its retries) calls them,
against a real MLflow store: what a failing step leaves behind for its retry."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from conftest import LENET

from ct_service import run_tags
from ct_service.exceptions import is_infrastructure_failure
from ct_service.orchestration import pipeline
from ct_service.orchestration.pipeline import Task
from ct_service.settings import Settings
from ct_service.tracking import Tracker


def queued_attempt(settings: Settings) -> tuple[str, str]:
    pipeline_id = pipeline.create(settings, str(LENET), {"epochs": 1})
    step = pipeline.start(settings, pipeline_id)
    assert step is not None and step.task is Task.RUN_ATTEMPT
    return pipeline_id, step.args[1]


@pytest.mark.integration
def test_a_retried_run_attempt_runs_again_after_an_infrastructure_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Docker engine whose socket file exists but refuses connections: each call of
    the step (the task's retries) tries again, and the attempt stays queued."""
    stale = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(stale))
    listener.close()  # the socket file stays; connecting to it is refused
    monkeypatch.setenv("DOCKER_HOST", f"unix://{stale}")
    settings = Settings(home=tmp_path / "ct", execution="docker")
    pipeline_id, attempt_id = queued_attempt(settings)
    for _ in range(3):
        with pytest.raises(Exception) as raised:
            pipeline.run_attempt(settings, pipeline_id, attempt_id)
        assert is_infrastructure_failure(raised.value), raised.value
    tags = Tracker(settings).client.get_run(attempt_id).data.tags
    assert tags[run_tags.STATUS] == "queued"
