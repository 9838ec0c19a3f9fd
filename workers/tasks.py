"""Thin tasks: each takes ids, calls one step of ct_service.pipeline, enqueues what
that step returns, and decides about retrying. Infrastructure failures (broker,
tracking store) are retried with backoff and jitter; any other error ends the
pipeline as failed, with its reason, and notifies people."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from celery import Task as CeleryTask
from celery import shared_task

from ct_service import pipeline
from ct_service.exceptions import is_infrastructure_failure
from ct_service.pipeline import Step, Task

log = logging.getLogger(__name__)
MAX_RETRIES = 8


def _run_step(task: CeleryTask, pipeline_id: str, step: Callable[[], Step | None]) -> None:
    from workers.celery_app import enqueue

    settings = task.app.settings
    try:
        next_step = step()
    except Exception as error:
        if is_infrastructure_failure(error) and task.request.retries < MAX_RETRIES:
            log.warning("%s: infrastructure failure, retrying: %s", task.name, error)
            raise task.retry(exc=error, countdown=_backoff(task.request.retries)) from error
        log.exception("%s failed for pipeline %s", task.name, pipeline_id)
        next_step = pipeline.fail(
            settings, pipeline_id, f"{task.name} failed: {type(error).__name__}: {error}"
        )
    if next_step is not None:
        enqueue(task.app, next_step.task, *next_step.args)


def _backoff(retries: int) -> float:
    """Exponential, capped at 5 minutes, with jitter so retries do not stampede."""
    return min(300.0, 2.0**retries) * random.uniform(0.5, 1.5)


@shared_task(bind=True, name=Task.START.value, max_retries=MAX_RETRIES)
def start(self: CeleryTask, pipeline_id: str) -> None:
    _run_step(self, pipeline_id, lambda: pipeline.start(self.app.settings, pipeline_id))


@shared_task(bind=True, name=Task.RUN_ATTEMPT.value, max_retries=MAX_RETRIES)
def run_attempt(self: CeleryTask, pipeline_id: str, attempt_id: str) -> None:
    _run_step(
        self, pipeline_id, lambda: pipeline.run_attempt(self.app.settings, pipeline_id, attempt_id)
    )


@shared_task(bind=True, name=Task.DECIDE.value, max_retries=MAX_RETRIES)
def decide(self: CeleryTask, pipeline_id: str, attempt_id: str) -> None:
    _run_step(
        self, pipeline_id, lambda: pipeline.decide(self.app.settings, pipeline_id, attempt_id)
    )


@shared_task(bind=True, name=Task.PROMOTE.value, max_retries=MAX_RETRIES)
def promote(self: CeleryTask, pipeline_id: str) -> None:
    _run_step(self, pipeline_id, lambda: pipeline.promote(self.app.settings, pipeline_id))


@shared_task(bind=True, name=Task.NOTIFY.value, max_retries=MAX_RETRIES)
def notify(self: CeleryTask, pipeline_id: str) -> None:
    _run_step(self, pipeline_id, lambda: pipeline.notify_people(self.app.settings, pipeline_id))
