"""A message that killed its worker twice is not run a third time (issue 29,
finding 4): a real `ct-service worker`, its pool process killed with SIGKILL while it
runs a step, as the kernel's OOM killer kills a worker that reads a push without
bounds; Celery hands the message out again at once (acks_late and
task_reject_on_worker_lost), and the third delivery becomes a dead letter that fails
its pipeline with the reason."""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path

import pytest
import redis
from conftest import LENET, WorkerProcess, ct_env
from helpers import wait_for

from ct_service import keys as names
from ct_service.exceptions import SettingsError
from ct_service.orchestration import pipeline
from ct_service.orchestration.pipeline import Task
from ct_service.orchestration.queue import enqueue, make_celery
from ct_service.recovery.dead_letters import DeadLetters, dead_letters_for
from ct_service.settings import Settings
from ct_service.tracking import PipelineStatus, Tracker


def pool_children(worker: WorkerProcess) -> list[int]:
    """The worker's pool processes (the ones that run its tasks)."""
    children = Path(f"/proc/{worker.process.pid}/task/{worker.process.pid}/children")
    return [int(pid) for pid in children.read_text().split()]


def waiting_on(lock_file: Path) -> list[int]:
    """The processes blocked on the flock of `lock_file` (from /proc/locks)."""
    inode = str(lock_file.stat().st_ino)
    waiting = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and fields[fields.index("->") + 1] == "FLOCK":
            pid, device = fields[-4], fields[-3]
            if device.rsplit(":", 1)[-1] == inode:
                waiting.append(int(pid))
    return waiting


@pytest.mark.integration
def test_a_step_that_killed_its_worker_twice_becomes_a_dead_letter_and_fails_its_pipeline(
    tmp_path: Path, redis_url: str, services: list[WorkerProcess]
) -> None:
    home = tmp_path / "ct"
    settings = Settings(home=home, broker_url=redis_url)
    pipeline_id = pipeline.create(settings, str(LENET), {"epochs": 2})
    # Each new pool process opens the SQLite store under this lock first
    # (tracking._first_open): holding it keeps the step running, so that it is
    # killed mid-step, never after it ended. Emptied, the lock file no longer says
    # the store was created, so the pool processes do take the lock.
    lock_file = home / "mlflow.db.lock"
    with open(lock_file, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        worker = WorkerProcess(
            ct_env(CT_HOME=str(home), CT_BROKER_URL=redis_url, CT_WATCHDOG="off"),
            tmp_path / "worker.log",
        )
        services.append(worker)
        enqueue(make_celery(settings), Task.START, pipeline_id)
        for death in (1, 2):
            (running,) = wait_for(
                lambda: [p for p in pool_children(worker) if p in waiting_on(lock_file)],
                60,
                f"delivery {death} of the start step to run",
                worker.log_path,
            )
            os.kill(running, signal.SIGKILL)
            wait_for(
                lambda gone=running: gone not in pool_children(worker), 30, "the pool to lose it"
            )
    # The store is free again: a third delivery that ran the step would start the
    # pipeline's first attempt.
    tracker = Tracker(settings)
    wait_for(
        lambda: tracker.pipeline(pipeline_id).status is not PipelineStatus.QUEUED,
        60,
        "the third delivery",
        worker.log_path,
    )
    wait_for(
        lambda: tracker.pipeline(pipeline_id).status is not PipelineStatus.NOTIFYING,
        60,
        "the pipeline to be notified about",
        worker.log_path,
    )
    reason = (
        "the step ct.pipeline.start killed its worker twice (its process died, or was "
        "killed past its time limit, before the step ended); not retried"
    )
    ended = tracker.pipeline(pipeline_id)
    assert (ended.outcome, ended.reason) == ("failed", reason)
    assert tracker.attempts(ended) == []  # the step never ran to its end
    (letter,) = dead_letters_for(settings).all()  # type: ignore[union-attr]
    assert (letter.task, letter.args, letter.reason) == (
        "ct.pipeline.start",
        (pipeline_id,),
        reason,
    )
    assert worker.process.poll() is None  # the worker lives on


@pytest.mark.integration
def test_deliveries_that_end_are_never_counted_as_deaths(redis_url: str) -> None:
    letters = DeadLetters(redis.Redis.from_url(redis_url), delivery_seconds=60)
    for _ in range(5):  # done, failed or retried: each ends
        assert letters.arrived("task-1") == 0
        letters.ended("task-1")
    assert [letters.arrived("task-2") for _ in range(3)] == [0, 1, 2]  # two never ended
    letters.record("task-2", "ct.pipeline.decide", ("p", "a"), "why")
    assert letters.arrived("task-2") == 3  # a duplicate is refused too
    (letter,) = letters.all()
    assert (letter.task_id, letter.args, letter.reason) == ("task-2", ("p", "a"), "why")
    ttl = redis.Redis.from_url(redis_url).pttl(names.KEYSTORE_PREFIX + names.deliveries("task-2"))
    assert 0 < ttl <= 60_000


@pytest.mark.unit
def test_host_side_steps_have_soft_and_hard_time_limits_and_training_a_hard_one() -> None:
    settings = Settings.from_env(
        {"CT_STEP_TIME_LIMIT_SECONDS": "100", "CT_ATTEMPT_TIMEOUT_SECONDS": "1000"}
    )
    limits = make_celery(settings).conf.task_annotations
    assert limits[Task.START.value] == {"soft_time_limit": 90.0, "time_limit": 100.0}
    assert limits[Task.NOTIFY.value] == limits[Task.START.value]
    training = limits[Task.RUN_ATTEMPT.value]
    assert training == {"time_limit": settings.visibility_timeout_seconds - 60.0}
    assert training["time_limit"] > settings.attempt_timeout_seconds


@pytest.mark.unit
@pytest.mark.parametrize("value", ["5", "soon", "100000"])
def test_a_bad_step_time_limit_names_its_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="^CT_STEP_TIME_LIMIT_SECONDS must be"):
        Settings.from_env({"CT_STEP_TIME_LIMIT_SECONDS": value})
