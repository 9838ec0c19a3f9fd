"""The Celery app, built from the same Settings as everything else.

    celery -A workers.celery_app worker -Q pipeline,training,notify   (or `ct-service worker`)

Training runs on its own queue with late acknowledgement and a prefetch of one,
and the broker's visibility timeout outlasts the longest allowed attempt, so a
message is redelivered only when its worker died.
"""

from __future__ import annotations

import logging

from celery import Celery

from ct_service.keystore import keystore_for
from ct_service.pipeline import Step, Task
from ct_service.settings import Settings
from ct_service.watchdog import step_key

log = logging.getLogger(__name__)
WATCHDOG_TASK = "ct.watchdog.scan"

QUEUES = ("pipeline", "training", "notify")
ROUTES = {
    Task.START.value: "pipeline",
    Task.DECIDE.value: "pipeline",
    Task.PROMOTE.value: "pipeline",
    Task.RUN_ATTEMPT.value: "training",
    Task.NOTIFY.value: "notify",
    Task.RESUME.value: "pipeline",
    WATCHDOG_TASK: "pipeline",
}


class CtCelery(Celery):
    """A Celery app that carries the service's settings to its tasks."""

    settings: Settings


def make_celery(settings: Settings) -> CtCelery:
    app = CtCelery("ct_service", broker=settings.broker_url or "memory://", set_as_current=False)
    app.settings = settings
    app.conf.update(
        task_routes={name: {"queue": queue} for name, queue in ROUTES.items()},
        task_default_queue="pipeline",
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings),
        # a message published while Redis restarts waits for it instead of failing
        task_publish_retry_policy={
            "max_retries": 20,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 3,
        },
        imports=["workers.tasks"],
        beat_scheduler="celery.beat:Scheduler",  # nothing to persist: one interval
        beat_schedule={
            "ct-watchdog": {
                "task": WATCHDOG_TASK,
                "schedule": settings.recovery.watchdog_interval_seconds,
                # a scan that waited a whole interval for a worker is out of date
                "options": {
                    "queue": "pipeline",
                    "expires": settings.recovery.watchdog_interval_seconds,
                },
            }
        },
    )
    return app


def _transport_options(settings: Settings) -> dict[str, float]:
    options: dict[str, float] = {"visibility_timeout": settings.visibility_timeout_seconds}
    if settings.embedded:
        # kombu's in-memory transport polls its queues (1 s by default); a step
        # would wait up to that long for the next one.
        options["polling_interval"] = 0.05
    return options


def enqueue(app: CtCelery, task: Task, *args: str) -> None:
    """Send a step; mark it queued first, so the watchdog knows it is on its way
    (the mark lasts as long as the broker would hold an unacknowledged message)."""
    key = step_key(Step(task, args))
    try:
        keystore_for(app.settings).put(key, "queued", app.settings.visibility_timeout_seconds)
    except Exception as error:  # the mark is a hint; sending the step is what matters
        log.warning("could not mark %s as queued: %s", key, error)
    app.send_task(task.value, args=list(args), queue=ROUTES[task.value])


def __getattr__(name: str) -> CtCelery:
    """`app` for `celery -A workers.celery_app`, built from the environment on first
    use, so that importing make_celery() reads no settings."""
    if name not in ("app", "celery"):
        raise AttributeError(name)
    global _app
    if _app is None:
        _app = make_celery(Settings.from_env())
    return _app


_app: CtCelery | None = None
