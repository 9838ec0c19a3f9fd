"""The pipeline commands' arguments: `ct-service run`, `status`, `space` and
`rollback`. What they do is in pipeline_commands.py, imported only when one runs
(MLflow and Celery take about 1.5 s to import): `run` first has a spare launcher
(or a spare container) import the first attempt's libraries meanwhile (spares.py,
spare_containers.py), and starts the MLflow server its containers will log to
(tracking_server.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ct_service.cli.arguments import overrides, whole
from ct_service.execution import spare_containers, spares, tracking_server
from ct_service.settings import Settings
from ct_service.target import Direction


def add_commands(commands: argparse._SubParsersAction) -> None:
    _add_run(commands)
    status = commands.add_parser("status", help="show a pipeline, or list recent ones")
    status.add_argument("pipeline_id", nargs="?")
    status.add_argument("--follow", action="store_true", help="keep showing progress until it ends")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    space = commands.add_parser(
        "space",
        help="print the search space the policy uses for a project (declared or inferred)",
        description="Print the project's search space as ct.yaml declares it: from its "
        "ct.yaml, or inferred from its MLproject's parameters when it has none (copy it "
        "into ct.yaml to edit it).",
    )
    space.add_argument("project", help="folder of an MLflow project")
    space.add_argument("--json", action="store_true")
    space.set_defaults(handler=_space)

    rollback = commands.add_parser("rollback", help="give @production back to @previous-production")
    rollback.add_argument("model", help="registered model name, e.g. lenet")
    rollback.add_argument("--json", action="store_true")
    rollback.set_defaults(handler=_rollback)
    cancel = commands.add_parser(
        "cancel",
        help="cancel a queued or running pipeline",
        description="End a queued or running pipeline (outcome cancelled): queued steps do "
        "nothing, running attempts are asked to stop (ct.stop_requested).",
    )
    cancel.add_argument("pipeline_id", help="the id `ct-service run` or the webhook printed")
    cancel.set_defaults(handler=_cancel)


def _add_run(commands: argparse._SubParsersAction) -> None:
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
    _add_target_and_budget(run)
    run.add_argument(
        "--adopt-active-run",
        action="store_true",
        help="use the MLflow run this command runs in (MLFLOW_RUN_ID, set by `mlflow run`) "
        "as the pipeline run",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="train -P values that lie outside the project's search space",
    )
    run.add_argument("--follow", action="store_true", help="with a broker: wait and show progress")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.set_defaults(handler=_run)


def _add_target_and_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target-metric",
        help="metric to reach (default: CT_TARGET_METRIC if set, else ct.yaml's target)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help="value to reach (default: CT_TARGET_THRESHOLD if set, else ct.yaml's)",
    )
    parser.add_argument("--direction", choices=[d.value for d in Direction])
    parser.add_argument(
        "--max-attempts", type=whole, help="attempt budget (default CT_MAX_ATTEMPTS)"
    )
    parser.add_argument(
        "--max-wall-seconds", type=float, help="time budget (default CT_MAX_WALL_SECONDS)"
    )
    parser.add_argument(
        "--max-epochs",
        type=int,
        help="compute budget: epochs trained over all attempts, a continued epoch once "
        "(default CT_MAX_EPOCHS; 0: none)",
    )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    settings = _checked(args, settings)
    if settings.embedded and not args.git and not args.adopt_active_run:
        # its first attempt is trained here: its libraries are imported meanwhile
        spares.warm_up(settings, Path(args.project))
        spare_containers.warm_up(settings, Path(args.project))
    if settings.embedded:
        tracking_server.start_early(settings)  # for its containers to log to
    from ct_service.cli import pipeline_commands

    return pipeline_commands.run(args, settings)


def _checked(args: argparse.Namespace, settings: Settings) -> Settings:
    """The run's inputs checked before anything is created (preflight.py); the
    settings with the -P paths as data roots of a run typed here."""
    from ct_service.cli import preflight
    from ct_service.project import load_project

    given = overrides(args.params)
    preflight.check_home(settings)
    if not args.git:
        preflight.check_parameters(load_project(args.project), given, args.force)
    preflight.check_services(settings)
    if args.git or not settings.embedded:
        return settings  # the workers' own data roots apply
    return preflight.with_given_data(settings, given)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.cli import pipeline_commands

    return pipeline_commands.status(args, settings)


def _space(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.cli import pipeline_commands

    return pipeline_commands.space(args, settings)


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.cli import pipeline_commands

    return pipeline_commands.cancel(args, settings)


def _rollback(args: argparse.Namespace, settings: Settings) -> int:
    from ct_service.cli import pipeline_commands

    return pipeline_commands.rollback(args, settings)
