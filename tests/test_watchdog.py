"""The watchdog's decisions, on a real MLflow store (SQLite) and real Redis keys.
Nothing trains here: attempts are put in the states a dead worker leaves behind
(status running, heartbeat old), as tags, exactly as a worker writes them."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LENET, free_port

from ct_service import keys as names
from ct_service import run_tags
from ct_service.attempt import AttemptStatus
from ct_service.execution.lease import Lease
from ct_service.keystore import keystore_for
from ct_service.orchestration import pipeline
from ct_service.orchestration.pipeline import Step, Task
from ct_service.recovery.watchdog import ScanReport, Watchdog
from ct_service.settings import RecoverySettings, Settings
from ct_service.tracking import Tracker

RECOVERY = RecoverySettings(
    watchdog_interval_seconds=1, heartbeat_seconds=1, lease_seconds=3, max_resumes=2
)


@pytest.fixture
def distributed(tmp_path: Path, redis_url: str) -> Settings:
    return Settings(home=tmp_path / "ct", broker_url=redis_url, recovery=RECOVERY)


def started_attempt(settings: Settings) -> tuple[str, str]:
    """A pipeline whose first attempt is queued, as the start step leaves it."""
    pipeline_id = pipeline.create(settings, str(LENET), {"epochs": 3})
    step = pipeline.start(settings, pipeline_id)
    assert step is not None and step.task is Task.RUN_ATTEMPT
    return pipeline_id, step.args[1]


def mark_running(tracker: Tracker, attempt_id: str, heartbeat_age: float, **tags: str) -> None:
    beat = time.time() - heartbeat_age
    tracker.set_tags(
        attempt_id,
        {"ct.status": "running", run_tags.HEARTBEAT: f"{beat:.0f}", "ct.worker": "w1:42", **tags},
    )


def marking_enqueue(settings: Settings, sent: list[Step]) -> Callable[[Step], None]:
    """Records what is sent and marks it queued, as orchestration.queue.enqueue does
    (the broker itself is left out: these tests look at the watchdog's decisions)."""

    def enqueue(step: Step) -> None:
        keystore_for(settings).put(names.step(step.task.value, step.args), "queued", 60)
        sent.append(step)

    return enqueue


def scan(
    settings: Settings, clock: Callable[[], float] = time.time
) -> tuple[list[Step], ScanReport]:
    sent: list[Step] = []
    dog = Watchdog(
        Tracker(settings), keystore_for(settings), marking_enqueue(settings, sent), clock=clock
    )
    return sent, dog.scan()


@pytest.mark.integration
def test_an_attempt_with_a_fresh_heartbeat_tag_is_alive_though_redis_lost_its_lease(
    distributed: Settings,
) -> None:
    pipeline_id, attempt_id = started_attempt(distributed)
    mark_running(Tracker(distributed), attempt_id, heartbeat_age=1)  # no Redis key at all
    sent, report = scan(distributed)
    assert sent == [] and report.resumed == []


@pytest.mark.integration
def test_an_attempt_with_a_live_redis_lease_is_alive_though_its_tag_is_old(
    distributed: Settings,
) -> None:
    """What an MLflow server that is down for a while looks like."""
    pipeline_id, attempt_id = started_attempt(distributed)
    mark_running(Tracker(distributed), attempt_id, heartbeat_age=60)
    keystore_for(distributed).put(names.lease(attempt_id), "w1:42", 30)
    sent, report = scan(distributed)
    assert sent == [] and report.resumed == []


@pytest.mark.integration
def test_a_dead_attempt_is_resumed_from_its_last_checkpoint_as_a_new_run(
    distributed: Settings,
) -> None:
    tracker = Tracker(distributed)
    pipeline_id, attempt_id = started_attempt(distributed)
    mark_running(tracker, attempt_id, heartbeat_age=60, **{"checkpoint.last_epoch": "2"})
    sent, report = scan(distributed)
    assert report.resumed == [attempt_id]
    assert len(sent) == 1 and sent[0].task is Task.RUN_ATTEMPT
    new_id = sent[0].args[1]
    new = tracker.client.get_run(new_id)
    old = tracker.client.get_run(attempt_id)
    assert new.data.tags[run_tags.REPLACES_RUN] == attempt_id
    assert new.data.tags[run_tags.CHECKPOINT_RUN] == attempt_id  # the run whose checkpoint it loads
    assert new.data.tags["ct.attempt"] == "1" and new.data.tags["ct.status"] == "queued"
    assert new.data.params["resume_from"] == attempt_id
    assert Tracker.run_parameters(new.data.tags)["resume_from"] == attempt_id
    assert old.data.tags["ct.status"] == "resumed" and old.data.tags[run_tags.REPLACED_BY] == new_id
    assert "stopped renewing the lease" in old.data.tags["ct.failure"]
    assert old.info.status == "KILLED"
    # The pipeline sees one attempt, its latest run.
    attempts = tracker.attempts(tracker.pipeline(pipeline_id))
    assert [(a.number, a.run_id, a.resumes) for a in attempts] == [(1, new_id, 1)]
    # A second scan finds nothing more to do.
    assert scan(distributed)[0] == []


@pytest.mark.integration
def test_a_run_that_died_before_its_first_checkpoint_resumes_from_its_predecessor(
    distributed: Settings,
) -> None:
    tracker = Tracker(distributed)
    pipeline_id, first = started_attempt(distributed)
    mark_running(tracker, first, heartbeat_age=60, **{"checkpoint.last_epoch": "1"})
    second = scan(distributed)[0][0].args[1]
    mark_running(tracker, second, heartbeat_age=60)  # died again, before a checkpoint
    third = scan(distributed)[0][0].args[1]
    tags = tracker.client.get_run(third).data.tags
    assert tags[run_tags.REPLACES_RUN] == second and tags[run_tags.CHECKPOINT_RUN] == first
    assert tags["ct.resumes"] == "2"


@pytest.mark.integration
def test_an_attempt_that_died_too_often_fails_and_goes_to_the_policy(
    distributed: Settings,
) -> None:
    tracker = Tracker(distributed)
    pipeline_id, run_id = started_attempt(distributed)
    for _ in range(RECOVERY.max_resumes):
        mark_running(tracker, run_id, heartbeat_age=60)
        run_id = scan(distributed)[0][0].args[1]
    mark_running(tracker, run_id, heartbeat_age=60)
    sent, report = scan(distributed)
    assert sent == [Step(Task.DECIDE, (pipeline_id, run_id))]
    tags = tracker.client.get_run(run_id).data.tags
    assert tags["ct.status"] == "failed"
    assert "not resumed again: resumed 2 time(s) already (CT_MAX_RESUMES=2)" in tags["ct.failure"]


@pytest.mark.integration
def test_concurrent_scans_resume_each_dead_attempt_exactly_once(distributed: Settings) -> None:
    tracker = Tracker(distributed)
    dead = []
    for _ in range(3):
        _, attempt_id = started_attempt(distributed)
        mark_running(tracker, attempt_id, heartbeat_age=60)
        dead.append(attempt_id)
    sent: list[Step] = []
    barrier = threading.Barrier(6)

    def one_watchdog() -> None:
        dog = Watchdog(
            Tracker(distributed), keystore_for(distributed), marking_enqueue(distributed, sent)
        )
        barrier.wait()
        dog.scan()

    threads = [threading.Thread(target=one_watchdog) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(
        tracker.client.get_run(s.args[1]).data.tags[run_tags.REPLACES_RUN] for s in sent
    ) == sorted(dead)
    for attempt_id in dead:
        pipeline = tracker.pipeline(tracker.client.get_run(attempt_id).data.tags["ct.pipeline_id"])
        assert tracker.resumption_of(pipeline, attempt_id)
        assert len(tracker.attempts(pipeline)) == 1


@pytest.mark.integration
def test_a_record_that_breaks_the_scan_is_postponed_and_the_others_go_on(
    distributed: Settings,
) -> None:
    tracker = Tracker(distributed)
    _, broken = started_attempt(distributed)
    mark_running(tracker, broken, heartbeat_age=60)
    tracker.client.delete_tag(broken, "ct.pipeline_id")  # a record the watchdog cannot read
    _, healthy = started_attempt(distributed)
    mark_running(tracker, healthy, heartbeat_age=60)
    sent, report = scan(distributed)
    assert report.postponed == [broken]
    assert report.resumed == [healthy]
    keys = keystore_for(distributed)
    assert keys.get(f"postpone:{broken}") == "KeyError"
    sent, report = scan(distributed)  # within the postponement: not even tried
    assert report.postponed == [] and sent == []


@pytest.mark.integration
def test_the_kill_switch_turns_scans_into_no_ops(distributed: Settings) -> None:
    from dataclasses import replace

    off = replace(distributed, recovery=replace(RECOVERY, watchdog_enabled=False))
    _, attempt_id = started_attempt(off)
    mark_running(Tracker(off), attempt_id, heartbeat_age=60)
    sent, report = scan(off)
    assert report.enabled is False and sent == []
    assert Tracker(off).client.get_run(attempt_id).data.tags["ct.status"] == "running"


@pytest.mark.integration
def test_a_step_whose_message_was_lost_is_enqueued_again_after_a_scan_interval(
    distributed: Settings,
) -> None:
    pipeline_id = pipeline.create(distributed, str(LENET))  # queued, and no message sent
    expected = Step(Task.START, (pipeline_id,))
    now = 1_000_000.0
    assert scan(distributed, lambda: now)[0] == []  # first sighting: it may be on its way
    later = now + RECOVERY.watchdog_interval_seconds * 0.9
    assert scan(distributed, lambda: later)[0] == []  # not yet a whole interval (another dog)
    interval_later = now + RECOVERY.watchdog_interval_seconds
    assert scan(distributed, lambda: interval_later)[0] == [expected]
    # A step marked as queued (enqueue() marks it) is left alone.
    keystore_for(distributed).put(names.step(expected.task.value, expected.args), "queued", 60)
    assert scan(distributed)[0] == [] and scan(distributed)[0] == []


@pytest.mark.integration
def test_recorded_pushes_whose_intake_message_was_lost_get_their_runs_after_a_scan_interval(
    distributed: Settings,
) -> None:
    """The webhook answered after recording the push; the intake message it sent
    never came (a broker that lost it): the watchdog sends the intake again; once
    the push's run exists, it watches the pipeline's next step instead."""
    import redis

    from ct_service.orchestration.pushes import PushRecord, PushRecords

    record = PushRecord(
        pipeline_id="ab" * 16,
        repository="github:acme/models",
        url="https://git.example.com/acme/models.git",
        project="projects/lenet",
        branch="main",
        commit="c" * 40,
    )
    records = PushRecords(redis.Redis.from_url(distributed.broker_url))
    intake = Step(Task.INTAKE, ())
    lost = (names.step(intake.task.value, intake.args), 0.001)  # its mark gone at once
    assert records.record(record, [], "sequence:github:acme/models:main", lost).send_intake
    now = 1_000_000.0
    assert scan(distributed, lambda: now)[0] == []  # first sighting
    interval_later = now + RECOVERY.watchdog_interval_seconds
    assert scan(distributed, lambda: interval_later)[0] == [intake]
    keystore_for(distributed).delete(names.step(intake.task.value, intake.args))
    started: list[Step] = []
    pipeline.intake(distributed, started.append)  # what the worker's intake does
    [step] = started
    assert step.task is Task.START and records.waiting() == []
    # created (its START not sent here): the watchdog now looks after the pipeline
    assert scan(distributed, lambda: now)[0] == []
    assert scan(distributed, lambda: interval_later)[0] == [step]
    assert Tracker(distributed).pipeline(record.pipeline_id).id == step.args[0]


@pytest.mark.integration
def test_stale_work_folders_of_finished_or_unknown_pipelines_are_removed(
    distributed: Settings,
) -> None:
    from dataclasses import replace

    settings = replace(distributed, recovery=replace(RECOVERY, work_retention_seconds=60))
    work = settings.home / "work"
    active_id = pipeline.create(settings, str(LENET))
    for name in (active_id, "0123456789abcdef", "fresh-one"):
        (work / name / "src").mkdir(parents=True)
    old = time.time() - 3600
    for name in (active_id, "0123456789abcdef"):
        os.utime(work / name, (old, old))
    _, report = scan(settings)
    assert report.removed == ["0123456789abcdef"]
    assert sorted(p.name for p in work.iterdir()) == sorted([active_id, "fresh-one"])


@pytest.mark.integration
def test_a_lease_stops_its_holder_once_the_attempt_was_taken_over(
    distributed: Settings,
) -> None:
    tracker = Tracker(distributed)
    _, attempt_id = started_attempt(distributed)
    now = [1000.0]
    lease = Lease(tracker.client, keystore_for(distributed), attempt_id, RECOVERY, lambda: now[0])
    assert lease.refresh() is True
    assert keystore_for(distributed).get(names.lease(attempt_id)) is not None
    lease.settle()  # the MLflow mark is written beside the caller
    assert tracker.client.get_run(attempt_id).data.tags[run_tags.HEARTBEAT] == "1000"
    tracker.set_tags(attempt_id, {"ct.status": AttemptStatus.RESUMED.value})
    assert lease.refresh() is True  # no heartbeat due yet: nothing was read
    now[0] += RECOVERY.heartbeat_seconds
    lease.refresh()  # due: the MLflow beat reads the status...
    lease.settle()
    assert lease.refresh() is False  # ... and the holder learns it at once
    lease.release()
    assert keystore_for(distributed).get(names.lease(attempt_id)) is None


@pytest.mark.integration
def test_a_lease_goes_on_renewing_its_key_while_mlflow_does_not_answer(
    distributed: Settings,
) -> None:
    """An MLflow server that is down makes its client retry for minutes: the key must
    still be renewed meanwhile, or the watchdog resumes an attempt that is alive."""
    from mlflow import MlflowClient

    _, attempt_id = started_attempt(distributed)
    unreachable = MlflowClient(f"http://127.0.0.1:{free_port()}")  # nothing listens
    now = [1000.0]
    lease = Lease(unreachable, keystore_for(distributed), attempt_id, RECOVERY, lambda: now[0])
    keys = keystore_for(distributed)
    for _ in range(3):
        started = time.monotonic()
        assert lease.refresh() is True
        # MLflow's client retries a refused connection for minutes: the caller is not held
        assert time.monotonic() - started < 10.0
        assert keys.get(names.lease(attempt_id)) is not None
        now[0] += RECOVERY.heartbeat_seconds
