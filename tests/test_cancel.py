"""Interruption and cancel (#31 item 2): Ctrl-C (SIGINT) to a real `ct-service run`
mid-epoch ends its pipeline as cancelled, leaves no training process, says so in one
line and exits 130; `ct-service cancel` ends a pipeline that real worker processes
train, through the attempt's stop request. Real MNIST, LeNet, Redis and workers."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, WorkerProcess, ct_env
from helpers import (
    SMALL,
    attempt_runs,
    checkpointed_attempt,
    enqueue_pipeline,
    epochs_logged,
    lenet_trained_to_the_end,
    only_pipeline,
    processes_with,
    wait_for,
)

from ct_service.settings import Settings
from ct_service.tracking import Tracker


@pytest.mark.slow
def test_ctrl_c_cancels_the_pipeline_and_leaves_no_training_behind(
    tmp_path: Path, mnist_dir: Path
) -> None:
    home = tmp_path / "ct"
    tracker = Tracker(Settings(home=home))
    params = {**SMALL, "epochs": "8", "data": str(mnist_dir)}
    run = subprocess.Popen(
        [sys.executable, "-m", "ct_service.cli", "run", str(lenet_trained_to_the_end(tmp_path))]
        + [arg for k, v in params.items() for arg in ("-P", f"{k}={v}")],
        env=ct_env(CT_HOME=str(home)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pipeline_id = wait_for(lambda: only_pipeline(tracker), 120, "the pipeline")
        attempt_id = wait_for(
            lambda: checkpointed_attempt(tracker, pipeline_id), 300, "an epoch's checkpoint"
        )
        run.send_signal(signal.SIGINT)  # what Ctrl-C sends
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        f"ct-service: pipeline {pipeline_id} cancelled (interrupted by the user)"
    )
    assert "Traceback" not in err
    pipeline = tracker.pipeline(pipeline_id)
    assert (pipeline.status.value, pipeline.outcome) == ("finished", "cancelled")
    assert pipeline.reason == "interrupted by the user"
    (attempt,) = attempt_runs(tracker, pipeline_id)
    assert attempt.data.tags["ct.status"] == "failed"
    assert attempt.data.tags["ct.failure"] == "cancelled: interrupted by the user"
    assert attempt.info.status != "RUNNING"
    assert len(epochs_logged(tracker, attempt_id)) < 8  # it stopped mid-training
    wait_for(lambda: not processes_with(attempt_id), 10, "no training process left")


@pytest.mark.slow
def test_cancel_ends_a_pipeline_its_workers_train(
    tmp_path: Path, redis_url: str, mnist_dir: Path, services: list[WorkerProcess]
) -> None:
    home = tmp_path / "ct"
    env = ct_env(CT_HOME=str(home), CT_BROKER_URL=redis_url)
    tracker = Tracker(Settings(home=home))
    worker = WorkerProcess(env, tmp_path / "worker.log")
    services.append(worker)
    pipeline_id = enqueue_pipeline(env, mnist_dir, epochs=8)
    attempt_id = wait_for(
        lambda: checkpointed_attempt(tracker, pipeline_id), 300, "an epoch's checkpoint"
    )
    cancel = subprocess.run(  # by the short id `ct-service run` and `status` print
        [sys.executable, "-m", "ct_service.cli", "cancel", pipeline_id[:8]],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cancel.returncode == 0, cancel.stderr
    assert cancel.stdout.strip() == f"pipeline {pipeline_id} cancelled"
    pipeline = tracker.pipeline(pipeline_id)
    assert (pipeline.status.value, pipeline.outcome) == ("finished", "cancelled")
    # The worker stops the attempt through its stop request, and goes on serving.
    wait_for(
        lambda: (
            tracker.client.get_run(attempt_id).info.status != "RUNNING"
            and not processes_with(attempt_id)
        ),
        120,
        "the attempt to stop",
        worker.log_path,
    )
    assert len(epochs_logged(tracker, attempt_id)) < 8
    attempt = tracker.client.get_run(attempt_id)
    assert attempt.data.tags["ct.status"] == "failed"
    assert attempt.data.tags["ct.failure"].startswith("cancelled: cancelled by")
    assert worker.process.poll() is None
    again = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "cancel", pipeline_id],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "had ended already" in again.stdout
