"""The console says when a step is retried after an infrastructure failure, with the
next try's time (#31 item 1), and a cancel during those retries leaves no run
RUNNING. As the issue reproduced it: CT_EXECUTION=docker with DOCKER_HOST at a Unix
socket that refuses connections (a socket file nobody listens on), a real worker
process on real Redis, a real SQLite store; nothing trains."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LENET, ROOT, WorkerProcess, ct_env
from helpers import wait_for

from ct_service import run_tags
from ct_service.cli.progress import Follower
from ct_service.orchestration import pipeline, retry_notice
from ct_service.orchestration.queue import enqueue, make_celery
from ct_service.settings import Settings
from ct_service.tracking import PipelineSpec, Tracker

NOTICE = re.compile(
    r"^  retrying run_attempt: no Docker engine answers at unix://(\S+): .*; "
    r"next try at (\d\d):(\d\d):(\d\d) UTC$"
)


def refusing_socket(path: Path) -> str:
    """A Unix socket file that refuses every connection: bound once, never listened on."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    return f"unix://{path}"


def seconds_of_day(hours: str, minutes: str, seconds: str) -> int:
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds)


@pytest.mark.integration
def test_a_retried_step_is_shown_with_its_next_try_and_cancel_leaves_nothing_running(
    tmp_path: Path, redis_url: str, mnist_dir: Path, services: list[WorkerProcess]
) -> None:
    docker_host = refusing_socket(tmp_path / "docker.sock")
    env = ct_env(
        CT_HOME=str(tmp_path / "ct"),
        CT_BROKER_URL=redis_url,
        CT_EXECUTION="docker",
        CT_DATA_DIRS=str(mnist_dir),
        DOCKER_HOST=docker_host,
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    services.append(worker)
    settings = Settings.from_env(env)
    tracker = Tracker(settings)
    # What `ct-service run` does after its checks (which would refuse this engine now:
    # here the engine goes away after the run was accepted).
    pipeline_id = pipeline.create(settings, str(LENET), {"data": str(mnist_dir)})
    enqueue(make_celery(settings), pipeline.Task.START, pipeline_id)

    lines: list[str] = []
    follower = Follower(tracker, pipeline_id, emit=lines.append)
    shown_at: dict[str, float] = {}

    def retries_shown() -> list[str]:
        follower.poll()
        notices = [line for line in lines if line.startswith("  retrying ")]
        for line in notices:
            shown_at.setdefault(line, time.time())
        return notices if len(notices) >= 2 else []

    notices = wait_for(retries_shown, 120, "two retries on the console", worker.log_path)
    assert len(set(notices)) == len(notices)  # each retry once
    for line in notices:
        match = NOTICE.match(line)
        assert match, line
        assert match.group(1) == str(tmp_path / "docker.sock")
        # the next try lies ahead of the moment it was shown, by the backoff (< 10 s)
        ahead = (seconds_of_day(*match.groups()[1:]) - shown_at[line] % 86400) % 86400
        assert ahead < 10 or ahead > 86400 - 2, (line, ahead)
    attempt_ids = [run.info.run_id for run in tracker.attempt_runs(tracker.pipeline(pipeline_id))]
    assert [tracker.client.get_run(a).data.tags[run_tags.STATUS] for a in attempt_ids] == [
        "queued"
    ]  # put back in the queue before each retry: it never started

    cancel = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "cancel", pipeline_id],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cancel.returncode == 0, cancel.stderr
    # The next try of the step finds the pipeline ended, does nothing, and ends the notice.
    wait_for(
        lambda: tracker.pipeline(pipeline_id).tags.get(run_tags.RETRY) == "",
        120,
        "the retried step to run once more",
        worker.log_path,
    )
    ended = follower.follow(interval_seconds=0.1)
    assert (ended.status.value, ended.outcome) == ("finished", "cancelled")
    runs = tracker.client.search_runs([ended.experiment_id])
    assert {run.info.run_id for run in runs} == {pipeline_id, *attempt_ids}
    assert [run.info.status for run in runs if run.info.status == "RUNNING"] == []
    assert worker.process.poll() is None  # the worker goes on serving


@pytest.mark.integration
def test_a_failure_of_the_tracking_store_itself_is_not_written(settings):
    """With the store down, writing the notice would wait out MLflow's own retries:
    the notice is skipped, and the step's retry is not held up."""
    from mlflow.exceptions import MlflowException

    tracker = Tracker(settings)
    pipeline_id = tracker.create_pipeline(
        PipelineSpec(
            project_path="/projects/lenet", project_name="lenet", model_name="lenet",
            initial_config={"epochs": 1},
        )
    )  # fmt: skip
    try:
        raise MlflowException("API request to http://tracking/api failed: Connection refused")
    except MlflowException as error:
        store_down = error
    retry_notice.record(settings, pipeline_id, "ct.pipeline.decide", store_down, 2.0)
    assert run_tags.RETRY not in tracker.pipeline(pipeline_id).tags

    engine_down = ConnectionRefusedError("[Errno 111] Connection refused")
    retry_notice.record(
        settings, pipeline_id, "ct.train.run_attempt", engine_down, 61.0, clock=lambda: 3600.0
    )
    assert tracker.pipeline(pipeline_id).tags[run_tags.RETRY] == (
        "run_attempt: [Errno 111] Connection refused; next try at 01:01:01 UTC"
    )
