"""The `ct-service` command.

Exit codes: 0 the target was reached (promoted, or production kept because it is
better); 1 the pipeline failed; 2 bad input (settings, project, arguments);
3 the target was not reached within the budget; 4 no such pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from ct_service import pipeline, registry, webhook_cli, worker_cli
from ct_service.exceptions import CtError, PipelineNotFound
from ct_service.progress import Follower
from ct_service.report import summarize
from ct_service.settings import Settings
from ct_service.target import Budget, Direction, Target
from ct_service.tracking import Outcome, PipelineStatus, Tracker

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSED, EXIT_NOT_FOUND = 0, 1, 2, 3, 4


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings))
    except PipelineNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except CtError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ct-service",
        description="Continuous training for MLflow projects.",
        epilog="Settings come from CT_* environment variables; see README.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="train a project until it reaches its target, then promote it",
        description="Run a continuous-training pipeline on an MLflow project. Without "
        "CT_BROKER_URL it runs here with an in-process worker and prints progress; with "
        "it, it enqueues the pipeline for the workers and prints its id.",
    )
    run.add_argument(
        "project",
        help="folder of an MLflow project (with an MLproject file); with --git, its path "
        "inside the repository",
    )
    run.add_argument(
        "-P",
        dest="params",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="initial value of a project parameter (repeatable); values naming an "
        "existing file or folder are made absolute",
    )
    run.add_argument(
        "--commit",
        default=None,
        help="commit to record (default: git HEAD of the project); with --git, the commit to train",
    )
    run.add_argument(
        "--git",
        metavar="URL",
        default="",
        help="train PROJECT (a path inside this repository) at --commit: workers fetch "
        "exactly that commit into a work folder and remove it at the end",
    )
    run.add_argument("--target-metric", help="metric to reach (default CT_TARGET_METRIC)")
    run.add_argument("--threshold", type=float, help="value to reach (default CT_TARGET_THRESHOLD)")
    run.add_argument("--direction", choices=[d.value for d in Direction])
    run.add_argument("--max-attempts", type=_whole, help="attempt budget (default CT_MAX_ATTEMPTS)")
    run.add_argument(
        "--max-wall-seconds", type=float, help="time budget (default CT_MAX_WALL_SECONDS)"
    )
    run.add_argument(
        "--adopt-active-run",
        action="store_true",
        help="use the MLflow run this command runs in (MLFLOW_RUN_ID, set by `mlflow run`) "
        "as the pipeline run",
    )
    run.add_argument("--follow", action="store_true", help="with a broker: wait and show progress")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.set_defaults(handler=_run)

    status = commands.add_parser("status", help="show a pipeline, or list recent ones")
    status.add_argument("pipeline_id", nargs="?")
    status.add_argument("--follow", action="store_true", help="keep showing progress until it ends")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    worker_cli.add_commands(commands, _whole)
    webhook_cli.add_commands(commands)

    rollback = commands.add_parser("rollback", help="give @production back to @previous-production")
    rollback.add_argument("model", help="registered model name, e.g. lenet")
    rollback.add_argument("--json", action="store_true")
    rollback.set_defaults(handler=_rollback)
    return parser


def _run(args: argparse.Namespace, settings: Settings) -> int:
    adopt = ""
    if args.adopt_active_run:
        adopt = os.environ.get("MLFLOW_RUN_ID", "")
        if not adopt:
            raise CtError("--adopt-active-run needs MLFLOW_RUN_ID (run it with `mlflow run`)")
        if not os.environ.get("CT_TRACKING_URI") and os.environ.get("MLFLOW_TRACKING_URI"):
            uri = os.environ["MLFLOW_TRACKING_URI"]
            settings = replace(
                settings, tracking_uri=uri, registry_uri=os.environ.get("MLFLOW_REGISTRY_URI", uri)
            )
    try:
        target = Target(
            args.target_metric or settings.target.metric,
            settings.target.threshold if args.threshold is None else args.threshold,
            Direction(args.direction or settings.target.direction),
        )
        budget = Budget(
            args.max_attempts or settings.budget.max_attempts,
            settings.budget.max_wall_seconds
            if args.max_wall_seconds is None
            else args.max_wall_seconds,
        )
    except ValueError as error:
        raise CtError(str(error)) from None
    pipeline_id = pipeline.create(
        settings,
        args.project,
        _overrides(args.params),
        commit=args.commit,
        target=target,
        budget=budget,
        adopt_run_id=adopt,
        source_url=args.git,
    )
    if not settings.embedded:
        from workers.celery_app import enqueue, make_celery

        enqueue(make_celery(settings), pipeline.Task.START, pipeline_id)
        if not args.follow:
            print(json.dumps({"pipeline_id": pipeline_id}) if args.json else pipeline_id)
            return EXIT_OK
        return _finish(settings, pipeline_id, args.json, follow=True)

    from ct_service.embedded import EmbeddedWorker
    from workers.celery_app import enqueue

    if not args.json:
        print(f"pipeline {pipeline_id}: {target.describe()}, budget {budget.describe()}")
    with EmbeddedWorker(settings) as worker:
        enqueue(worker.app, pipeline.Task.START, pipeline_id)
        return _finish(settings, pipeline_id, args.json, follow=True, alive=lambda: worker.alive)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    if args.pipeline_id:
        return _finish(settings, args.pipeline_id, args.json, follow=args.follow)
    pipelines = Tracker(settings).recent_pipelines()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "pipeline_id": p.id,
                        "project": p.spec.project_name,
                        "status": p.status.value,
                        "outcome": p.outcome,
                    }
                    for p in pipelines
                ],
                indent=2,
            )
        )
        return EXIT_OK
    for p in pipelines:
        print(f"{p.id}  {p.spec.project_name:12}  {p.status.value:10}  {p.outcome}")
    return EXIT_OK


def _finish(
    settings: Settings,
    pipeline_id: str,
    as_json: bool,
    follow: bool,
    alive: Callable[[], bool] = lambda: True,
) -> int:
    tracker = Tracker(settings)
    quiet = (lambda line: None) if as_json else print
    follower = Follower(tracker, pipeline_id, emit=quiet)
    current = follower.follow(stop=lambda: not alive()) if follow else follower.poll()
    if follow and current.status is not PipelineStatus.FINISHED:
        print(f"error: the worker stopped before pipeline {pipeline_id} finished", file=sys.stderr)
        return EXIT_FAILED
    summary = summarize(settings, current, tracker.attempts(current))
    if as_json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print()
        print(summary.text())
        print(f"Open the MLflow UI on this store:\n  {settings.ui_command()}")
    if current.status is not PipelineStatus.FINISHED:
        return EXIT_OK
    return _exit_code(current.outcome)


def _exit_code(outcome: str) -> int:
    if outcome in (Outcome.PROMOTED.value, Outcome.KEPT_CHAMPION.value):
        return EXIT_OK
    if outcome == Outcome.FAILED.value:
        return EXIT_FAILED
    return EXIT_MISSED


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    result = registry.rollback(Tracker(settings).client, args.model)
    print(
        json.dumps({"version": result.version, "replaced": result.previous_version})
        if args.json
        else result.reason
    )
    return EXIT_OK


def _overrides(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CtError(f"-P expects NAME=VALUE, got {pair!r}")
        values[name] = str(Path(value).resolve()) if value and Path(value).exists() else value
    return values


def _whole(text: str) -> int:
    number = float(text)  # `mlflow run` may pass 5 as "5.0"
    if not number.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text}")
    value = int(number)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
