"""Thin tasks: each takes ids, calls one step of ct_service.orchestration.pipeline, enqueues what
that step returns, and decides about retrying. Infrastructure failures (broker,
tracking store) are retried with backoff and jitter; any other error ends the
pipeline as failed, with its reason, and notifies people."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict

from celery import Task as CeleryTask
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from ct_service import keys as names
from ct_service import run_tags
from ct_service.counters import COUNTERS, step_line
from ct_service.exceptions import (
    InfrastructureError,
    StatusHostUnavailable,
    is_infrastructure_failure,
)
from ct_service.keystore import held, keystore_for
from ct_service.orchestration import (
    branch_schedules,
    data_trigger,
    decay_watch,
    pipeline,
    reproduce,
    retry_notice,
    schedules,
    status_reports,
)
from ct_service.orchestration.data_trigger import DataTask
from ct_service.orchestration.decay_watch import DecayTask
from ct_service.orchestration.pipeline import Step, Task
from ct_service.orchestration.queue import (
    CtCelery,
    enqueue,
    send_intake_if_pushes_wait,
    send_status_report,
)
from ct_service.recovery.dead_letters import (
    DEATHS_BEFORE_DEAD_LETTER,
    DeadLetters,
    dead_letters_for,
    reason_for,
)
from ct_service.recovery.resume import resume as resume_attempt
from ct_service.recovery.watchdog import Watchdog
from ct_service.settings import Settings
from ct_service.tracking import Tracker

log = logging.getLogger(__name__)
MAX_RETRIES = 8


class CountedTask(CeleryTask):
    """A step whose deliveries are counted (recovery/dead_letters.py): one that
    finds two earlier deliveries of its message that never ended (each killed its
    worker) is not run; its pipeline fails and it is recorded as a dead letter. The
    count is a guard, never a reason to lose a step: one that cannot be kept (Redis
    away for a moment) lets the step run. Each step ends with one log line: when it
    began, how long it took, and its MLflow, Redis, broker and git round trips
    (ct_service/counters.py)."""

    def __call__(self, *args: str, **kwargs: object) -> object:
        COUNTERS.take()  # what came before this step was another's
        began, clock = time.time(), time.perf_counter()
        try:
            return self._counted(*args, **kwargs)
        finally:
            took = time.perf_counter() - clock
            log.info(step_line(self.name, tuple(map(str, args)), began, took, COUNTERS.take()))

    def _counted(self, *args: str, **kwargs: object) -> object:
        letters = dead_letters_for(self.app.settings)
        task_id = str(self.request.id)
        try:
            deaths = letters.arrived(task_id) if letters is not None else 0
        except Exception as error:
            log.warning("%s[%s]: its delivery was not counted: %s", self.name, task_id, error)
            letters = None
            deaths = 0
        if letters is not None and deaths >= DEATHS_BEFORE_DEAD_LETTER:
            self._dead_letter(letters, task_id, args, reason_for(self.name, deaths))
            return None
        try:
            return super().__call__(*args, **kwargs)
        finally:
            try:
                if letters is not None:
                    letters.ended(task_id)
            except Exception as error:  # the count expires on its own
                log.warning("%s[%s]: its delivery count stays: %s", self.name, task_id, error)

    def _dead_letter(
        self, letters: DeadLetters, task_id: str, args: tuple[str, ...], reason: str
    ) -> None:
        """Fail the pipeline of the step (its first argument), clear the step's mark
        so the watchdog does not send it again, then keep the letter; a broken
        connection on the way is retried (the count stays, so the retry comes here)."""
        log.error("%s[%s] %s: a dead letter now", self.name, task_id, reason)
        settings = self.app.settings
        try:
            next_step = pipeline.fail(settings, args[0], reason) if args else None
        except Exception as error:
            if is_infrastructure_failure(error) and self.request.retries < MAX_RETRIES:
                raise self.retry(exc=error, countdown=_backoff(self.request.retries)) from error
            raise
        if next_step is not None:
            enqueue(self.app, next_step.task, *next_step.args)
        if args:
            send_status_report(self.app, args[0])
        _forget(settings, names.step(self.name, args))
        letters.record(task_id, self.name, args, reason)


def _run_step(
    task: CeleryTask, pipeline_id: str, step: Callable[[], Step | tuple[Step, ...] | None]
) -> None:
    settings = task.app.settings
    marker = _marker(task)
    try:
        next_step = step()
    except SoftTimeLimitExceeded:
        log.error("%s ran past its time limit for pipeline %s", task.name, pipeline_id)
        limit = settings.step_soft_time_limit_seconds
        next_step = pipeline.fail(
            settings, pipeline_id, f"{task.name} ran past its time limit of {limit:g} s"
        )
    except Exception as error:
        if is_infrastructure_failure(error) and task.request.retries < MAX_RETRIES:
            log.warning("%s: infrastructure failure, retrying: %s", task.name, error)
            countdown = _backoff(task.request.retries)
            retry_notice.record(settings, pipeline_id, task.name, error, countdown)
            raise task.retry(exc=error, countdown=countdown) from error
        log.exception("%s failed for pipeline %s", task.name, pipeline_id)
        next_step = pipeline.fail(
            settings, pipeline_id, f"{task.name} failed: {type(error).__name__}: {error}"
        )
    if task.request.retries:  # a retried step has run: the console's notice ends
        retry_notice.clear(settings, pipeline_id)
    for following in (next_step,) if isinstance(next_step, Step) else next_step or ():
        enqueue(task.app, following.task, *following.args)
    send_status_report(task.app, pipeline_id)  # when the step made one due
    _forget(settings, marker)


def _marker(task: CeleryTask) -> str:
    """Mark this step's message as running (the watchdog re-enqueues a step with no
    queued or running message); a worker that dies here lets the mark expire."""
    key = names.step(task.name, tuple(task.request.args or ()))
    try:
        keystore_for(task.app.settings).put(key, "running", names.SHORT_STEP_SECONDS)
    except Exception as error:  # a mark is a hint for the watchdog, never a reason to fail
        log.warning("could not mark %s as running: %s", key, error)
    return key


def _forget(settings: Settings, key: str) -> None:
    try:
        keystore_for(settings).delete(key)
    except Exception as error:
        log.warning("could not clear the mark %s: %s", key, error)


def _started(app: CtCelery, step: Step) -> None:
    """A pushed pipeline's run exists: its start step, and its queued commit status."""
    enqueue(app, step.task, *step.args)
    send_status_report(app, step.args[0])


def _backoff(retries: int) -> float:
    """Exponential, capped at 5 minutes, with jitter so retries do not stampede."""
    return min(300.0, 2.0**retries) * random.uniform(0.5, 1.5)


@shared_task(bind=True, base=CountedTask, name=Task.INTAKE.value, max_retries=MAX_RETRIES)
def intake(self: CeleryTask) -> None:
    """The runs of the recorded pushes, each started as soon as it exists; then, its
    mark cleared, another intake if pushes were recorded while this one ran (the
    webhook saw the mark and sent none)."""
    settings = self.app.settings
    marker = _marker(self)
    try:
        with held(keystore_for(settings), marker, "running", names.SHORT_STEP_SECONDS):
            seen = pipeline.intake(settings, lambda step: _started(self.app, step))
    except Exception as error:
        if is_infrastructure_failure(error) and self.request.retries < MAX_RETRIES:
            log.warning("%s: infrastructure failure, retrying: %s", self.name, error)
            raise self.retry(exc=error, countdown=_backoff(self.request.retries)) from error
        log.exception("%s failed; the pushes wait for the next intake", self.name)
        _forget(settings, marker)  # the watchdog sends the next one
        raise
    _forget(settings, marker)
    send_intake_if_pushes_wait(self.app, seen)


@shared_task(bind=True, base=CountedTask, name=Task.START.value, max_retries=MAX_RETRIES)
def start(self: CeleryTask, pipeline_id: str) -> None:
    _run_step(self, pipeline_id, lambda: pipeline.start(self.app.settings, pipeline_id))


@shared_task(bind=True, base=CountedTask, name=Task.RUN_ATTEMPT.value, max_retries=MAX_RETRIES)
def run_attempt(self: CeleryTask, pipeline_id: str, attempt_id: str) -> None:
    _run_step(
        self, pipeline_id, lambda: pipeline.run_attempt(self.app.settings, pipeline_id, attempt_id)
    )


@shared_task(bind=True, base=CountedTask, name=Task.DECIDE.value, max_retries=MAX_RETRIES)
def decide(self: CeleryTask, pipeline_id: str, attempt_id: str) -> None:
    _run_step(
        self, pipeline_id, lambda: pipeline.decide(self.app.settings, pipeline_id, attempt_id)
    )


@shared_task(bind=True, base=CountedTask, name=Task.SCORE_CHAMPION.value, max_retries=MAX_RETRIES)
def score_champion(self: CeleryTask, pipeline_id: str) -> None:
    """Production scored on the winner's data; its running mark is kept alive while it
    scores (a project run outlasts a short step's mark, and the watchdog would send it
    again)."""
    settings = self.app.settings

    def step() -> Step | None:
        marker = names.step(self.name, (pipeline_id,))
        with held(keystore_for(settings), marker, "running", names.SHORT_STEP_SECONDS):
            return pipeline.score_champion(settings, pipeline_id)

    _run_step(self, pipeline_id, step)


@shared_task(bind=True, base=CountedTask, name=Task.PROMOTE.value, max_retries=MAX_RETRIES)
def promote(self: CeleryTask, pipeline_id: str) -> None:
    _run_step(self, pipeline_id, lambda: pipeline.promote(self.app.settings, pipeline_id))


@shared_task(bind=True, base=CountedTask, name=Task.NOTIFY.value, max_retries=MAX_RETRIES)
def notify(self: CeleryTask, pipeline_id: str) -> None:
    _run_step(self, pipeline_id, lambda: pipeline.notify_people(self.app.settings, pipeline_id))


@shared_task(
    bind=True,
    name=Task.REPORT_STATUS.value,
    autoretry_for=(StatusHostUnavailable,),
    retry_backoff=True,  # 1 s, 2 s, 4 s, ... with full jitter, at most 5 minutes apart
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=status_reports.TRIES - 1,
)
def report_status(self: CeleryTask, pipeline_id: str) -> str:
    """Post the pipeline's newest commit status to its git host; a host that does
    not take it now is tried again with backoff, then given up (logged, recorded)."""
    last_try = self.request.retries >= status_reports.TRIES - 1
    return status_reports.send(self.app.settings, pipeline_id, last_try=last_try)


@shared_task(
    bind=True,
    name=Task.REPRODUCE.value,
    autoretry_for=(InfrastructureError,),
    retry_backoff=True,  # 1 s, 2 s, 4 s, ... with full jitter, at most 5 minutes apart
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def reproduce_version(self: CeleryTask, run_id: str) -> None:
    """Train a registered version again (`ct-service reproduce`); an infrastructure
    failure before training starts is retried with backoff, the last try records it."""
    reproduce.train(self.app.settings, run_id, last_try=self.request.retries >= MAX_RETRIES)


@shared_task(bind=True, base=CountedTask, name=Task.RESUME.value, max_retries=MAX_RETRIES)
def resume(self: CeleryTask, pipeline_id: str, attempt_id: str) -> None:
    def step() -> Step | None:
        tracker = Tracker(self.app.settings)
        reason = tracker.client.get_run(attempt_id).data.tags.get(run_tags.FAILURE) or "interrupted"
        keys = keystore_for(self.app.settings)
        return resume_attempt(tracker, keys, pipeline_id, attempt_id, reason)

    _run_step(self, pipeline_id, step)


@shared_task(bind=True, base=CountedTask, name=Task.WATCHDOG_SCAN.value)
def watchdog_scan(self: CeleryTask) -> dict[str, object]:
    """One scan (Celery beat sends it); infrastructure failures wait for the next."""
    settings = self.app.settings
    dog = Watchdog(
        Tracker(settings),
        keystore_for(settings),
        lambda step: enqueue(self.app, step.task, *step.args),
    )
    report = dog.scan()
    if report.resumed or report.requeued or report.postponed or report.removed:
        log.warning("watchdog: %s", report)
    return asdict(report)


@shared_task(bind=True, base=CountedTask, name=DataTask.SCAN.value)
def data_scan(self: CeleryTask) -> dict[str, object]:
    """Check every watched data source (Celery beat sends it); a store that does not
    answer waits for the next scan."""
    return _data_check(self, None)


@shared_task(bind=True, base=CountedTask, name=DataTask.CHECK.value, max_retries=MAX_RETRIES)
def data_check(self: CeleryTask, changed: list[str]) -> dict[str, object]:
    """Check the sources of the objects the data hook named, at once."""
    try:
        return _data_check(self, changed)
    except Exception as error:
        if is_infrastructure_failure(error) and self.request.retries < MAX_RETRIES:
            raise self.retry(exc=error, countdown=_backoff(self.request.retries)) from error
        raise


def _data_check(task: CeleryTask, changed: list[str] | None) -> dict[str, object]:
    report, steps = data_trigger.check(task.app.settings, changed)
    for step in steps:
        enqueue(task.app, step.task, *step.args)
    if report.started or report.errors:
        log.warning("data check: %s", report)
    return asdict(report)


@shared_task(bind=True, base=CountedTask, name=DataTask.SCHEDULE.value)
def schedule_fire(self: CeleryTask, model_name: str, cron: str) -> str:
    """A model's schedule is due (Celery beat's crontab sends it)."""
    step = schedules.fire(self.app.settings, model_name)
    if step is not None:
        enqueue(self.app, step.task, *step.args)
    return step.args[0] if step is not None else ""


@shared_task(bind=True, base=CountedTask, name=DecayTask.CHECK.value)
def decay_check(self: CeleryTask) -> dict[str, object]:
    """Score each watched production model on its newest data (Celery beat sends it);
    a store or tracking server that does not answer waits for the next check."""
    report, steps = decay_watch.check(self.app.settings)
    for step in steps:
        enqueue(self.app, step.task, *step.args)
    if report.started or report.decayed or report.errors:
        log.warning("decay check: %s", report)
    return asdict(report)


@shared_task(bind=True, base=CountedTask, name=DataTask.BRANCH_SCHEDULE.value)
def branch_schedule_fire(self: CeleryTask, repository: str, branch: str, cron: str) -> str:
    """A repositories.yaml schedule is due: train the branch's head (beat sends it)."""
    step = branch_schedules.fire(self.app.settings, repository, branch, cron)
    if step is not None:
        enqueue(self.app, step.task, *step.args)
    return step.args[0] if step is not None else ""
