"""Crash recovery with real processes and real signals: Celery workers and beat as
separate processes, TensorFlow training on MNIST, Redis servers that are restarted
with their contents lost, and an MLflow tracking server that is restarted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import ROOT, WorkerProcess, ct_env, free_port
from helpers import (
    FAST_RECOVERY,
    SMALL,
    MlflowServer,
    attempt_runs,
    checkpointed_attempt,
    enqueue_pipeline,
    epochs_logged,
    only_pipeline,
    processes_with,
    start_embedded_run,
    wait_finished,
    wait_for,
)

from ct_service import run_tags
from ct_service.settings import Settings
from ct_service.tracking import Tracker

pytestmark = pytest.mark.e2e
T = TypeVar("T")


@pytest.mark.slow
def test_a_worker_killed_mid_epoch_is_resumed_from_its_last_checkpoint(
    tmp_path: Path, redis_url: str, mnist_dir: Path, services: list[WorkerProcess]
) -> None:
    home = tmp_path / "ct"
    env = ct_env(CT_HOME=str(home), CT_BROKER_URL=redis_url, **FAST_RECOVERY)
    tracker = Tracker(Settings(home=home))
    first = WorkerProcess(env, tmp_path / "worker-1.log")
    services.append(first)
    pipeline_id = enqueue_pipeline(env, mnist_dir, epochs=4)
    dead_id = wait_for(
        lambda: checkpointed_attempt(tracker, pipeline_id), 300, "a checkpoint", first.log_path
    )
    # Freeze the training (the launcher and its command), so that no epoch ends between
    # reading its last checkpoint and killing its worker: the kill lands mid-attempt.
    frozen = processes_with(dead_id)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    first.kill()  # the worker and its pool child, with SIGKILL
    for pid in frozen:  # let the launcher see that its worker is gone
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    # The training it had started dies with it (nothing left to race the resumption).
    wait_for(lambda: not processes_with(dead_id), 10, "the orphaned training to stop")
    dead = tracker.client.get_run(dead_id)
    assert dead.data.tags["ct.status"] == "running"  # as the dead worker left it
    last_checkpoint = int(dead.data.tags["checkpoint.last_epoch"])
    assert 1 <= last_checkpoint < 4

    services.append(WorkerProcess(env, tmp_path / "worker-2.log"))
    services.append(WorkerProcess(env, tmp_path / "beat.log", "beat"))
    wait_finished(tracker, pipeline_id, tmp_path / "worker-2.log")

    pipeline = tracker.pipeline(pipeline_id)
    assert pipeline.outcome == "promoted", pipeline.reason
    runs = attempt_runs(tracker, pipeline_id)
    assert [r.info.run_id for r in runs][0] == dead_id and len(runs) == 2
    dead, resumed = (tracker.client.get_run(r.info.run_id) for r in runs)
    assert dead.data.tags["ct.status"] == "resumed"
    assert dead.data.tags[run_tags.REPLACED_BY] == resumed.info.run_id
    assert "stopped renewing the lease" in dead.data.tags["ct.failure"]
    assert resumed.data.tags[run_tags.REPLACES_RUN] == dead_id
    assert resumed.data.tags[run_tags.CHECKPOINT_RUN] == dead_id
    assert resumed.data.tags["checkpoint.loaded_epoch"] == str(last_checkpoint)
    # Epochs after the checkpoint are trained once more at most: the one in progress.
    before, after = epochs_logged(tracker, dead_id), epochs_logged(tracker, resumed.info.run_id)
    assert after == list(range(last_checkpoint + 1, 5))
    assert before[:last_checkpoint] == list(range(1, last_checkpoint + 1))
    assert len(before) + len(after) <= 4 + 1
    # The pipeline's view: one attempt, its history continuous across the two runs.
    (attempt,) = tracker.attempts(pipeline)
    assert attempt.run_id == resumed.info.run_id and attempt.resumes == 1
    assert len(attempt.curves["val_accuracy"]) == 4
    status = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "status", pipeline_id],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "resumed 1x after a crash" in status.stdout, status.stdout
    # Promoted exactly once.
    versions = tracker.client.search_model_versions(f"name = '{pipeline.spec.model_name}'")
    assert [v.run_id for v in versions] == [resumed.info.run_id]


@pytest.mark.slow
def test_a_training_process_killed_from_outside_is_resumed_embedded(
    tmp_path: Path, mnist_dir: Path
) -> None:
    """What the OOM killer does: SIGKILL to the training process only. The launcher
    reports it as an interruption, and the pipeline resumes it with no watchdog."""
    home = tmp_path / "ct"
    env = ct_env(CT_HOME=str(home), **FAST_RECOVERY)
    tracker = Tracker(Settings(home=home))
    params = {**SMALL, "epochs": "3", "data": str(mnist_dir)}
    log = (tmp_path / "run.log").open("wb")
    run = start_embedded_run(env, params, log)
    try:
        pipeline_id = wait_for(lambda: only_pipeline(tracker), 120, "the pipeline")
        dead_id = wait_for(lambda: checkpointed_attempt(tracker, pipeline_id), 300, "a checkpoint")
        training = [p for p in processes_with(dead_id) if _is_train_py(p)]
        assert len(training) == 1
        os.kill(training[0], signal.SIGKILL)
        assert run.wait(timeout=600) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if run.poll() is None:
            run.kill()
        log.close()
    runs = attempt_runs(tracker, pipeline_id)
    assert len(runs) == 2
    dead, resumed = runs
    assert dead.data.tags["ct.status"] == "resumed"
    assert "killed by SIGKILL" in dead.data.tags["ct.failure"]
    assert resumed.data.tags[run_tags.REPLACES_RUN] == dead_id
    assert resumed.data.tags["ct.status"] == "finished"
    assert tracker.pipeline(pipeline_id).outcome == "promoted"


def _is_train_py(pid: int) -> bool:
    """The Python process running train.py (not the shell MLflow starts it from):
    `python train.py`, or the warm launcher that runs it in itself."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    is_python = Path(argv[0].decode(errors="replace")).name.startswith("python")
    warm = argv[1:3] == [b"-m", b"ct_service.execution.warm_launcher"]
    return is_python and len(argv) > 1 and (argv[1].endswith(b"train.py") or warm)


BROKEN_PROJECT = {
    "MLproject": """name: broken
entry_points:
  main:
    parameters:
      epochs: {type: float, default: 2}
      resume_from: {type: string, default: ""}
    command: python train.py {epochs}
""",
    "train.py": """import sys
import mlflow

with mlflow.start_run():
    mlflow.log_metric("val_accuracy", 0.5, step=1)
    raise RuntimeError("the model code is broken")
""",
}


@pytest.mark.slow
def test_an_exception_in_the_training_code_is_not_resumed(tmp_path: Path) -> None:
    project = tmp_path / "broken"
    project.mkdir()
    for name, text in BROKEN_PROJECT.items():
        (project / name).write_text(text)
    home = tmp_path / "ct"
    env = ct_env(CT_HOME=str(home), **FAST_RECOVERY)
    done = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(project), "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr  # no attempt finished: the pipeline failed
    settings = Settings(home=home)
    tracker = Tracker(settings)
    (pipeline,) = tracker.recent_pipelines()
    (run,) = attempt_runs(tracker, pipeline.id)
    tags = run.data.tags
    assert tags["ct.status"] == "failed"
    assert "RuntimeError: the model code is broken" in tags["ct.failure"]
    assert tags["ct.decision"].startswith("stop")  # the policy got it
    assert run_tags.REPLACES_RUN not in tags and run_tags.REPLACED_BY not in tags
    # And a watchdog finds nothing to resume.
    from ct_service.keystore import MemoryKeys
    from ct_service.recovery.watchdog import Watchdog

    sent: list = []
    report = Watchdog(tracker, MemoryKeys(), sent.append).scan()
    assert report.resumed == [] and sent == []


class RedisServer:
    """A private Redis server that can be restarted with its contents lost."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        subprocess.run(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--dir",
                str(self.folder),
                "--pidfile",
                str(self.folder / "redis.pid"),
            ],
            check=True,
        )
        wait_for(self._answers, 10, "redis to answer")

    def restart(self) -> None:
        """SHUTDOWN NOSAVE, then a new empty server on the same port."""
        import redis

        try:
            redis.Redis(port=self.port).shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it goes
        wait_for(lambda: not self._answers(), 10, "redis to stop")
        self.start()

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        import redis

        try:
            redis.Redis(port=self.port).shutdown(nosave=True)
        except redis.ConnectionError:
            pass


@pytest.mark.slow
def test_redis_restarts_that_lose_everything_lose_no_work_and_duplicate_nothing(
    tmp_path: Path, mnist_dir: Path, services: list[WorkerProcess]
) -> None:
    import redis

    server = RedisServer(tmp_path)
    try:
        home = tmp_path / "ct"
        env = ct_env(CT_HOME=str(home), CT_BROKER_URL=server.url, **FAST_RECOVERY)
        tracker = Tracker(Settings(home=home))
        # 1. A pipeline is enqueued while no worker runs; the restart loses its message.
        pipeline_id = enqueue_pipeline(env, mnist_dir, epochs=3)
        assert redis.Redis(port=server.port).llen("pipeline") == 1
        server.restart()
        assert redis.Redis(port=server.port).dbsize() == 0
        worker = WorkerProcess(env, tmp_path / "worker.log")
        services.append(worker)
        services.append(WorkerProcess(env, tmp_path / "beat.log", "beat"))
        # 2. The watchdog notices the lost start step; then Redis restarts mid-epoch.
        wait_for(
            lambda: checkpointed_attempt(tracker, pipeline_id), 300, "a checkpoint", worker.log_path
        )
        server.restart()
        wait_finished(tracker, pipeline_id, worker.log_path)
    finally:
        for service in services:
            service.stop()
        server.stop()
    pipeline = tracker.pipeline(pipeline_id)
    assert pipeline.outcome == "promoted", pipeline.reason
    all_pipelines = tracker.client.search_runs(
        [pipeline.experiment_id], "tags.`ct.kind` = 'pipeline'"
    )
    assert [r.info.run_id for r in all_pipelines] == [pipeline_id]
    (run,) = attempt_runs(tracker, pipeline_id)  # the lease's MLflow mark kept it alive
    assert run.data.tags["ct.status"] == "finished"
    assert epochs_logged(tracker, run.info.run_id) == [1, 2, 3]
    versions = tracker.client.search_model_versions(f"name = '{pipeline.spec.model_name}'")
    assert len(versions) == 1
    assert "enqueuing it again" in (tmp_path / "worker.log").read_text()


@pytest.mark.slow
def test_an_mlflow_server_restart_mid_attempt_is_ridden_out(
    tmp_path: Path, mnist_dir: Path
) -> None:
    server = MlflowServer(tmp_path)
    home = tmp_path / "ct"
    env = ct_env(CT_HOME=str(home), CT_TRACKING_URI=server.url, **FAST_RECOVERY)
    tracker = Tracker(Settings(home=home, tracking_uri=server.url))
    params = {**SMALL, "epochs": "3", "data": str(mnist_dir)}
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        run = start_embedded_run(env, params, log)
        try:
            pipeline_id = wait_for(lambda: only_pipeline(tracker), 120, "the pipeline", log_path)
            wait_for(lambda: checkpointed_attempt(tracker, pipeline_id), 300, "a checkpoint")
            server.stop()
            time.sleep(3)  # down for a few seconds, during training
            server.start()
            assert run.wait(timeout=600) == 0, log_path.read_text()[-3000:]
        finally:
            if run.poll() is None:
                run.kill()
            server.stop()
    server.start()
    try:
        (attempt,) = attempt_runs(tracker, pipeline_id)
        assert attempt.data.tags["ct.status"] == "finished"
        assert epochs_logged(tracker, attempt.info.run_id) == [1, 2, 3]
        assert tracker.pipeline(pipeline_id).outcome == "promoted"
    finally:
        server.stop()
