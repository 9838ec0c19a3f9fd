"""The Celery app, built from the same Settings as everything else.

    celery -A workers.celery_app worker -Q pipeline,training,notify   (or `ct-service worker`)

Training runs on its own queue with late acknowledgement and a prefetch of one,
and the broker's visibility timeout outlasts the longest allowed attempt, so a
message is redelivered only when its worker died.
"""

from __future__ import annotations

from celery import Celery

from ct_service.pipeline import Task
from ct_service.settings import Settings

QUEUES = ("pipeline", "training", "notify")
ROUTES = {
    Task.START.value: "pipeline",
    Task.DECIDE.value: "pipeline",
    Task.PROMOTE.value: "pipeline",
    Task.RUN_ATTEMPT.value: "training",
    Task.NOTIFY.value: "notify",
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
        imports=["workers.tasks"],
    )
    return app


def _transport_options(settings: Settings) -> dict[str, float]:
    options: dict[str, float] = {"visibility_timeout": settings.visibility_timeout_seconds}
    if settings.embedded:
        # kombu's in-memory transport polls its queues (1 s by default); a step
        # would wait up to that long for the next one.
        options["polling_interval"] = 0.05
    return options


def enqueue(app: Celery, task: Task, *args: str) -> None:
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
