"""The commands of the distributed mode: `ct-service worker`, `ct-service beat`
(the watchdog's clock) and `ct-service watchdog` (one scan now). Each imports Celery
and MLflow only when it runs: the other commands start without them."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from ct_service.cli.arguments import whole
from ct_service.cli.exit_codes import EXIT_OK
from ct_service.exceptions import CtError
from ct_service.settings import Settings


def add_commands(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser("worker", help="start a Celery worker (needs CT_BROKER_URL)")
    worker.add_argument("--queues", default="pipeline,training,notify")
    worker.add_argument("--concurrency", type=whole, default=1)
    worker.set_defaults(handler=_worker)

    beat = commands.add_parser(
        "beat",
        help="start Celery beat: it sends the watchdog's scan to the workers",
        description="Every CT_WATCHDOG_INTERVAL_SECONDS (30) a worker scans for dead "
        "attempts and lost steps and resumes them. Run one beat per service; a second one "
        "is harmless (claims are atomic) but wasteful. CT_WATCHDOG=off makes scans no-ops.",
    )
    beat.set_defaults(handler=_beat)

    watchdog = commands.add_parser(
        "watchdog",
        help="scan once, here, for dead attempts and lost steps, and print what was done",
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
    from ct_service.orchestration.queue import make_celery

    _require_broker(settings)
    make_celery(settings).start(["beat", "--loglevel", settings.log_level])
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
