"""`ct-service reproduce MODEL[@ALIAS|/VERSION]`: train a registered version again from
its record and print its test metric beside the recorded one. The arguments here;
what it does is imported only when it runs (MLflow and Celery are slow to import)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ct_service.cli import exit_codes
from ct_service.cli.arguments import described
from ct_service.settings import Settings

EXIT_CODES = """exit codes:
  0  reproduced: the metric is within the tolerance of the recorded one
  1  the reproduction failed (its commit could not be fetched, or training failed)
  2  bad input, a record that cannot be trained again (no commit, no project), or
     refused: the data changed (--allow-other-data compares anyway)
  3  it trained on the same data and the metric differs by more than the tolerance"""


def add_commands(commands: argparse._SubParsersAction) -> None:
    reproduce = commands.add_parser(
        "reproduce",
        help="train a registered version again from its record; compare its metric",
        **described(
            "Train a registered model version again from what the registry and MLflow "
            "recorded: its commit (fetched from the pipeline's git source, the project "
            "folder's repository, or --from), the configuration and seed its run trained "
            "with, in the environment it trained in (the same Docker image, or the "
            "project's declared environment locally). Prints the new value of the "
            "pipeline's target metric beside the recorded one.\n\n"
            "The reproduction is an MLflow run of its own in the project's experiment, "
            "tagged with the model, version and original run, and listed on the version "
            "(ct.reproductions). It registers nothing and moves no alias. If the data "
            "digests its run records differ from the version's, it is refused.",
            "ct-service reproduce lenet",
            "ct-service reproduce lenet/3 --json",
            "ct-service reproduce lenet@previous-production --from ~/src/models",
            notes=EXIT_CODES,
        ),
    )
    reproduce.add_argument(
        "model",
        metavar="MODEL[@ALIAS|/VERSION]",
        help="a registered model (its @production), a version by alias, or by number",
    )
    reproduce.add_argument(
        "--from",
        dest="repository",
        metavar="PATH",
        help="a local git repository that holds the version's commit, to fetch it from",
    )
    reproduce.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="the largest difference of the metric that still reproduces (default: 0.005, "
        "half a point of an accuracy)",
    )
    reproduce.add_argument(
        "--allow-other-data",
        action="store_true",
        help="compare even when the data digests differ from the recorded ones",
    )
    reproduce.add_argument("--json", action="store_true", help="print the result as JSON")
    reproduce.set_defaults(handler=_reproduce)


def _reproduce(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.cli import preflight
    from ct_service.exceptions import CtError
    from ct_service.orchestration import reproduce
    from ct_service.reproduction import DEFAULT_TOLERANCE, VersionReference
    from ct_service.tracking import missing_store

    reference = VersionReference.parse(args.model)
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not tolerance >= 0:
        raise CtError(f"--tolerance must be 0 or more, got {args.tolerance}")
    missing = missing_store(settings.registry_uri)  # reading it must not create it
    if missing is not None:
        raise CtError(f"no registered model {reference.model!r}: no store at {missing}")
    preflight.check_home(settings)
    preflight.check_services(settings)
    repository = Path(args.repository) if args.repository else None
    plan = reproduce.plan(settings, reference, tolerance, args.allow_other_data, repository)
    run_id = reproduce.create(settings, plan)
    if not args.json:
        print(
            f"reproducing {plan.model} version {plan.version} ({reference.describe()}): run "
            f"{plan.original_run[:8]}"
            + (f" of pipeline {plan.pipeline_id[:8]}" if plan.pipeline_id else "")
            + f", commit {plan.commit[:12]} from {plan.source}"
        )
        print(f"reproduction run {run_id}: training", flush=True)
    try:
        result = _train(settings, run_id, plan.config)
    except KeyboardInterrupt:
        if settings.embedded:
            reproduce.fail(settings, run_id, "interrupted by the user")
            print(f"ct-service: reproduction {run_id} interrupted", file=sys.stderr)
        else:
            print(f"ct-service: reproduction {run_id} goes on on the workers", file=sys.stderr)
        return exit_codes.EXIT_INTERRUPTED
    if result is None:
        print(f"error: the worker stopped before reproduction {run_id} ended", file=sys.stderr)
        return exit_codes.EXIT_FAILED
    print(json.dumps(result.to_json(settings), indent=2) if args.json else result.text(settings))
    return result.exit_code


def _train(settings: Settings, run_id: str, config: Mapping[str, Any]) -> Any:
    """Send the reproduction's step to a worker (here, embedded, without a broker) and
    wait until its run has ended; its Result, or None when the worker stopped first."""
    from ct_service.cli import preflight
    from ct_service.cli.reproduction_report import Result
    from ct_service.orchestration.pipeline import Task
    from ct_service.orchestration.queue import make_celery, send

    def ended(alive: Callable[[], bool], wait: Callable[[float], object]) -> Result | None:
        while True:
            result = Result.read(settings, run_id)
            if result.ended:
                return result
            if not alive():
                return None
            wait(1.0)

    if not settings.embedded:
        send(make_celery(settings), Task.REPRODUCE, run_id)
        return ended(lambda: True, time.sleep)
    from ct_service.cli.embedded import EmbeddedWorker  # starts Celery: only when embedded

    given = {name: str(value) for name, value in config.items()}
    with EmbeddedWorker(preflight.with_given_data(settings, given)) as worker:
        send(worker.app, Task.REPRODUCE, run_id)
        return ended(lambda: worker.alive, worker.wait_for_a_step)
