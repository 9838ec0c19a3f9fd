"""The Celery app, built from the same Settings as everything else, and the one way
to send a step: by its task name (the tasks themselves live in `workers.tasks`,
which the app imports by name when a worker starts).

Training runs on its own queue with late acknowledgement and a prefetch of one,
and the broker's visibility timeout outlasts the longest allowed attempt, so a
message is redelivered only when its worker died. Every step has a Celery time
limit (CT_STEP_TIME_LIMIT_SECONDS for host-side steps), and a message that killed
its worker twice is not run again (recovery/dead_letters.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery

from ct_service import keys as names
from ct_service.counters import COUNTERS, Kind
from ct_service.exceptions import SettingsError
from ct_service.keystore import keystore_for
from ct_service.orchestration import status_reports
from ct_service.orchestration.data_trigger import DataTask
from ct_service.orchestration.decay_watch import DecayTask
from ct_service.orchestration.pipeline import Task
from ct_service.orchestration.pushes import push_records_for
from ct_service.settings import Settings

log = logging.getLogger(__name__)

QUEUES = ("pipeline", "training", "notify", "status")
ROUTES = {
    Task.INTAKE.value: "pipeline",
    Task.START.value: "pipeline",
    Task.DECIDE.value: "pipeline",
    Task.PROMOTE.value: "pipeline",
    Task.RUN_ATTEMPT.value: "training",
    Task.SCORE_CHAMPION.value: "training",  # it runs the champion's evaluate entry point
    Task.REPRODUCE.value: "training",  # `ct-service reproduce`: a training like an attempt's
    Task.NOTIFY.value: "notify",
    Task.REPORT_STATUS.value: "status",  # commit statuses on git hosts: never behind a step
    Task.RESUME.value: "pipeline",
    Task.WATCHDOG_SCAN.value: "pipeline",
    **{task.value: "pipeline" for task in DataTask},  # data_trigger.py, schedules.py
    DecayTask.CHECK.value: "training",  # decay_watch.py: it runs models, as training does
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
        # A message whose worker process died, or that ran past its hard time limit,
        # goes back to the queue at once; workers.tasks counts its deliveries and makes
        # it a dead letter after two deaths (recovery/dead_letters.py).
        task_reject_on_worker_lost=True,
        task_acks_on_timeout=False,
        task_annotations=_time_limits(settings),
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
            **_data_scan(settings),
            **_decay_watch(settings),
            "ct-watchdog": {
                "task": Task.WATCHDOG_SCAN.value,
                "schedule": settings.recovery.watchdog_interval_seconds,
                # a scan that waited a whole interval for a worker is out of date
                "options": {
                    "queue": "pipeline",
                    "expires": settings.recovery.watchdog_interval_seconds,
                },
            },
        },
    )
    return app


def _data_scan(settings: Settings) -> dict[str, dict[str, object]]:
    """Beat's entry for the data trigger's scan (none with CT_DATA_SCAN_SECONDS=0)."""
    every = settings.data.scan_seconds
    if not every:
        return {}
    options = {"queue": "pipeline", "expires": every}  # a scan that waited an interval is old
    return {"ct-data-scan": {"task": DataTask.SCAN.value, "schedule": every, "options": options}}


def _decay_watch(settings: Settings) -> dict[str, dict[str, object]]:
    """Beat's entry for the decay watch: every CT_DECAY_SCHEDULE seconds, or on its
    crontab (none with 0)."""
    seconds = settings.data.decay_seconds
    if seconds == 0:
        return {}
    if seconds is not None:
        when: object = seconds
        options: dict[str, object] = {"queue": "training", "expires": seconds}
    else:
        from ct_service.schedule import Schedule

        try:
            when = Schedule(settings.data.decay_schedule).crontab()
        except ValueError as error:
            raise SettingsError(f"CT_DECAY_SCHEDULE: {error}") from None
        options = {"queue": "training"}
    return {"ct-decay-watch": {"task": DecayTask.CHECK.value, "schedule": when, "options": options}}


def _time_limits(settings: Settings) -> dict[str, dict[str, float]]:
    """Celery's time limits by task: a host-side step gets a soft limit (its pipeline
    fails with that reason) and a hard one (its process is killed); training gets only
    a hard one, a minute inside the broker's visibility timeout (the executor stops
    training itself at the attempt's time limit)."""
    host = {
        "soft_time_limit": settings.step_soft_time_limit_seconds,
        "time_limit": settings.step_time_limit_seconds,
    }
    models = (
        Task.RUN_ATTEMPT.value,
        Task.REPRODUCE.value,
        Task.SCORE_CHAMPION.value,
        DecayTask.CHECK.value,
    )  # training, scoring
    limits = {name: host for name in ROUTES if name not in models}
    for name in models:
        limits[name] = {"time_limit": settings.training_time_limit_seconds}
    return limits


def _transport_options(settings: Settings) -> dict[str, float]:
    options: dict[str, float] = {"visibility_timeout": settings.visibility_timeout_seconds}
    if settings.embedded:
        # kombu's in-memory transport polls its queues (1 s by default); a step
        # would wait up to that long for the next one.
        options["polling_interval"] = 0.05
    return options


def enqueue(app: CtCelery, task: Task, *args: str) -> None:
    """Send a step; mark it queued first, so the watchdog knows it is on its way."""
    key = names.step(task.value, args)
    try:
        # as long as the broker would hold an unacknowledged message
        keystore_for(app.settings).put(key, "queued", app.settings.visibility_timeout_seconds)
    except Exception as error:  # the mark is a hint; sending the step is what matters
        log.warning("could not mark %s as queued: %s", key, error)
    send(app, task, *args)


def send(app: CtCelery, task: Task, *args: str) -> None:
    """Send a step whose queued mark is set already (the webhook sets the intake's
    with its record, in the same round trip)."""
    with COUNTERS.timed(Kind.PUBLISH):
        app.send_task(task.value, args=list(args), queue=ROUTES[task.value])


def send_status_report(app: CtCelery, pipeline_id: str) -> None:
    """Send the report step of a pipeline whose commit status is due and not yet
    taken by its git host (status_reports.py); never raises: a status is a side
    effect, and the next one due sends it."""
    try:
        if status_reports.waiting(app.settings, pipeline_id):
            send(app, Task.REPORT_STATUS, pipeline_id)
    except Exception as error:
        log.warning("pipeline %s: commit status report not sent: %r", pipeline_id, error)


def send_intake_if_pushes_wait(app: CtCelery, seen: frozenset[str] = frozenset()) -> bool:
    """Send the intake step when pushes other than `seen` wait and no intake is
    marked queued or running (an intake that ends calls this with the pushes it
    looked at, for those recorded while it ran)."""
    records = push_records_for(app.settings)
    if records is None or not set(records.waiting()) - seen:
        return False
    keys = keystore_for(app.settings)
    mark = names.step(Task.INTAKE.value, ())
    if not keys.claim(mark, "queued", names.INTAKE_MARK_SECONDS):
        return False
    send_intake(app, mark, keys.delete)
    return True


def send_intake(app: CtCelery, mark: str, forget_mark: Callable[[str], None]) -> None:
    """Send the intake step whose queued mark was just set; a send that fails
    removes the mark, so the next push (or the watchdog) sends it."""
    try:
        send(app, Task.INTAKE)
    except Exception:
        forget_mark(mark)
        raise
