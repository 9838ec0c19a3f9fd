"""The commands of the distributed mode: `ct-service worker`, `ct-service beat`
(the watchdog's clock) and `ct-service watchdog` (one scan now). Each imports Celery
and MLflow only when it runs: the other commands start without them."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from ct_service.cli.arguments import described, whole
from ct_service.cli.exit_codes import EXIT_OK
from ct_service.exceptions import CtError
from ct_service.settings import Settings


def add_commands(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser(
        "worker",
        help="start a Celery worker (needs CT_BROKER_URL)",
        **described(
            "Start a Celery worker that runs the pipelines' steps: the pipeline queue "
            "(short steps), training (one attempt at a time per process), notify and "
            "status (commit statuses on git hosts; a worker of its own, `--queues "
            "status`, sends them while the others train). "
            "Needs CT_BROKER_URL, and a CT_TRACKING_URI every worker reaches; workers see "
            "a project folder at the same path as `ct-service run`.",
            "CT_BROKER_URL=redis://127.0.0.1:6379/0 ct-service worker",
            "ct-service worker --queues training --concurrency 2",
        ),
    )
    worker.add_argument(
        "--queues",
        default="pipeline,training,notify,status",
        help="comma-separated queues to consume (default: %(default)s)",
    )
    worker.add_argument(
        "--concurrency",
        type=whole,
        default=1,
        help="steps run at once, each in its own process (default: %(default)s)",
    )
    worker.set_defaults(handler=_worker)

    beat = commands.add_parser(
        "beat",
        help="start Celery beat: the watchdog's scans, data scans, decay checks, schedules",
        **described(
            "Every CT_WATCHDOG_INTERVAL_SECONDS (30) a worker scans for dead attempts and "
            "lost steps and resumes them; every CT_DATA_SCAN_SECONDS (300) it checks "
            "production's declared data; on CT_DECAY_SCHEDULE (3600 s, or cron fields) it "
            "scores production on the newest data; ct.yaml and repositories.yaml "
            "schedules fire on their crontab (read when beat starts: restart it for a new "
            "one). Run one beat per service; a second one is harmless (claims are atomic) "
            "but wasteful. CT_WATCHDOG=off makes scans no-ops. Needs CT_BROKER_URL.",
            "CT_BROKER_URL=redis://127.0.0.1:6379/0 ct-service beat",
        ),
    )
    beat.set_defaults(handler=_beat)

    watchdog = commands.add_parser(
        "watchdog",
        help="scan once, here, for dead attempts and lost steps, and print what was done",
        **described(
            "Scan once, in this process, as beat has a worker do it: attempts whose "
            "process died are resumed from their last checkpoint, steps whose message was "
            "lost are enqueued again. Prints what it did as JSON. Needs CT_BROKER_URL.",
            "CT_BROKER_URL=redis://127.0.0.1:6379/0 ct-service watchdog",
        ),
    )
    watchdog.set_defaults(handler=_watchdog)


def _require_broker(settings: Settings) -> None:
    if settings.embedded:
        raise CtError(
            "CT_BROKER_URL is not set: `ct-service run` works without a worker, "
            "or set CT_BROKER_URL=redis://... to share work between workers"
        )


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.orchestration.queue import make_celery

    _require_broker(settings)
    make_celery(settings).worker_main(
        [
            "worker",
            "-Q",
            args.queues,
            "--concurrency",
            str(args.concurrency),
            "--loglevel",
            settings.log_level,
            "--hostname",
            "ct@%h",
        ]
    )
    return EXIT_OK


def _beat(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.orchestration import branch_schedules, schedules
    from ct_service.orchestration.queue import make_celery

    _require_broker(settings)
    app = make_celery(settings)
    app.conf.beat_schedule.update(schedules.beat_entries(settings))  # production models'
    app.conf.beat_schedule.update(branch_schedules.beat_entries(settings))  # repositories.yaml
    app.start(["beat", "--loglevel", settings.log_level])
    return EXIT_OK


def _watchdog(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.keystore import keystore_for
    from ct_service.orchestration.queue import enqueue, make_celery
    from ct_service.recovery.watchdog import Watchdog
    from ct_service.tracking import Tracker

    _require_broker(settings)
    app = make_celery(settings)
    dog = Watchdog(
        Tracker(settings), keystore_for(settings), lambda s: enqueue(app, s.task, *s.args)
    )
    print(json.dumps(asdict(dog.scan()), indent=2))
    return EXIT_OK
