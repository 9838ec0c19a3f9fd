"""What the pipeline commands do (`ct-service run`, `status`, `space`, `cancel`);
pipelines.py defines their arguments and imports this only when one runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import yaml

from ct_service.cli import preflight
from ct_service.cli.arguments import overrides
from ct_service.cli.displays import Display, Lines, display_for
from ct_service.cli.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_MISSED, EXIT_OK
from ct_service.cli.pipeline_table import pipeline_table
from ct_service.cli.progress import Follower
from ct_service.exceptions import CtError, PipelineNotFound
from ct_service.orchestration import pipeline
from ct_service.orchestration.pushes import push_records_for
from ct_service.orchestration.queue import enqueue, make_celery, send_status_report
from ct_service.project import load_project
from ct_service.report import summarize
from ct_service.settings import Settings
from ct_service.target import Budget, Direction, Target, choose_target
from ct_service.tracking import Outcome, PipelineStatus, Tracker, missing_store, sqlite_file

INTERRUPTED = "interrupted by the user"


def run(args: argparse.Namespace, settings: Settings) -> int:
    settings, adopt = _adopted_run(args, settings)
    target, budget = _target_and_budget(args, settings)
    project = None if args.git else load_project(args.project)
    chosen = target or choose_target(None, settings, project.target if project else None)[0]
    preflight.check_target(chosen)
    if project is not None:  # a pipeline from git: its project is read by a worker
        warning = preflight.unlogged_metric(settings, project.name, chosen.metric)
        if warning:
            print(warning, file=sys.stderr)
    pipeline_id = pipeline.create(
        settings,
        args.project,
        overrides(args.params),
        commit=args.commit,
        target=target,
        budget=budget,
        adopt_run_id=adopt,
        source=pipeline.GitSource(args.git) if args.git else None,
    )
    if not settings.embedded:
        enqueue(make_celery(settings), pipeline.Task.START, pipeline_id)
        if not args.follow:
            print(json.dumps({"pipeline_id": pipeline_id}) if args.json else pipeline_id)
            return EXIT_OK
        return _finish(settings, pipeline_id, args.json, follow=True, quiet=args.quiet)

    from ct_service.cli.embedded import EmbeddedWorker  # starts Celery: only when embedded

    if not args.json:
        spec = Tracker(settings).pipeline(pipeline_id).spec
        print(f"pipeline {pipeline_id}: {spec.target.describe()}, budget {budget.describe()}")
    try:
        with EmbeddedWorker(settings) as worker:  # its training stops if interrupted
            enqueue(worker.app, pipeline.Task.START, pipeline_id)
            return _finish(
                settings,
                pipeline_id,
                args.json,
                follow=True,
                alive=lambda: worker.tend(pipeline_id),
                wait=worker.wait_for_a_step,
                quiet=args.quiet,
            )
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (main.py)
        pipeline.cancel(settings, pipeline_id, INTERRUPTED)
        print(f"ct-service: pipeline {pipeline_id} cancelled ({INTERRUPTED})", file=sys.stderr)
        return EXIT_INTERRUPTED


def _adopted_run(args: argparse.Namespace, settings: Settings) -> tuple[Settings, str]:
    """With --adopt-active-run: the run `mlflow run` started, and its tracking store."""
    if not args.adopt_active_run:
        return settings, ""
    adopt = os.environ.get("MLFLOW_RUN_ID", "")
    if not adopt:
        raise CtError("--adopt-active-run needs MLFLOW_RUN_ID (run it with `mlflow run`)")
    if not os.environ.get("CT_TRACKING_URI") and os.environ.get("MLFLOW_TRACKING_URI"):
        uri = os.environ["MLFLOW_TRACKING_URI"]
        settings = replace(
            settings, tracking_uri=uri, registry_uri=os.environ.get("MLFLOW_REGISTRY_URI", uri)
        )
    return settings, adopt


def _target_and_budget(
    args: argparse.Namespace, settings: Settings
) -> tuple[Target | None, Budget]:
    """The command line's budget over the settings'; its target, if it gives any part
    of one, over the target the pipeline would have without it (None: that one)."""
    try:
        target = None
        if args.target_metric or args.threshold is not None or args.direction:
            declared = None if args.git else load_project(args.project).target
            base, _ = choose_target(None, settings, declared)
            target = Target(
                args.target_metric or base.metric,
                base.threshold if args.threshold is None else args.threshold,
                Direction(args.direction or base.direction),
            )
        budget = Budget(
            args.max_attempts or settings.budget.max_attempts,
            settings.budget.max_wall_seconds
            if args.max_wall_seconds is None
            else args.max_wall_seconds,
            settings.budget.max_epochs if args.max_epochs is None else args.max_epochs,
        )
    except ValueError as error:
        raise CtError(str(error)) from None
    return target, budget


def status(args: argparse.Namespace, settings: Settings) -> int:
    if args.pipeline_id:
        pipeline_id, waiting = _run_of_push(settings, args.pipeline_id, args.follow)
        if waiting is not None:
            shown = f"{pipeline_id}  {waiting['status']}: {waiting['reason']}"
            print(json.dumps(waiting, indent=2) if args.json else shown)
            return EXIT_FAILED if waiting["status"] == "failed" else EXIT_OK
        pipeline_id = _full_pipeline_id(settings, pipeline_id)
        return _finish(settings, pipeline_id, args.json, follow=args.follow, quiet=args.quiet)
    missing = missing_store(settings.tracking_uri)  # reading it must not create it
    tracker = None if missing is not None else Tracker(settings)
    pipelines = tracker.recent_pipelines() if tracker is not None else []
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
    if tracker is None or not pipelines:
        print(_no_pipelines_yet(settings))
        return EXIT_OK
    print(pipeline_table(tracker, pipelines))
    return EXIT_OK


def _no_pipelines_yet(settings: Settings) -> str:
    """What `status` says before any pipeline, naming where it looked."""
    missing = missing_store(settings.tracking_uri)
    if missing is not None:
        return f"no pipelines yet: no store at {missing} (`ct-service run PROJECT` creates it)"
    where = sqlite_file(settings.tracking_uri) or "the tracking store (CT_TRACKING_URI)"
    return f"no pipelines yet in {where} (`ct-service run PROJECT` starts one)"


def _full_pipeline_id(settings: Settings, given: str) -> str:
    """The run id of the pipeline `given` names (a short id too), without creating a
    store that is not there."""
    missing = missing_store(settings.tracking_uri)
    if missing is not None:
        raise PipelineNotFound(f"no pipeline {given} (no store at {missing})")
    return Tracker(settings).resolve_pipeline_id(given)


def _run_of_push(
    settings: Settings, pipeline_id: str, follow: bool
) -> tuple[str, dict[str, str] | None]:
    """For the id the webhook answered for a push: its pipeline run's id (with
    `follow`, once a worker created it), or the push's state while it has none. Any
    other id is returned as it is."""
    records = push_records_for(settings)
    while records is not None:
        waiting = records.state(pipeline_id)
        if waiting is None:
            return records.run_of(pipeline_id) or pipeline_id, None
        if not follow or waiting["status"] == "failed":
            return pipeline_id, waiting
        time.sleep(0.5)  # a worker's intake creates the run
    return pipeline_id, None


def _finish(
    settings: Settings,
    pipeline_id: str,
    as_json: bool,
    follow: bool,
    alive: Callable[[], bool] = lambda: True,
    wait: Callable[[float], object] = time.sleep,
    quiet: bool = False,
) -> int:
    tracker = Tracker(settings)
    if as_json or quiet:
        display: Display = Lines(lambda line: None)
    else:  # a bar on a terminal while following, else plain lines
        display = display_for(sys.stdout) if follow else Lines(print)
    follower = Follower(tracker, pipeline_id, display=display)
    current = follower.follow(stop=lambda: not alive(), wait=wait) if follow else follower.poll()
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
    if outcome in (
        Outcome.PROMOTED.value,
        Outcome.KEPT_CHAMPION.value,
        Outcome.AWAITING_APPROVAL.value,
    ):
        return EXIT_OK
    if outcome == Outcome.FAILED.value:
        return EXIT_FAILED
    if outcome == Outcome.CANCELLED.value:
        return EXIT_INTERRUPTED
    return EXIT_MISSED


def space(args: argparse.Namespace, settings: Settings) -> int:
    project = load_project(args.project)
    spec = {"search_space": project.space.to_spec()}
    if args.json:
        print(json.dumps({**spec, "inferred": project.space_inferred}, indent=2))
        return EXIT_OK
    where = (
        "inferred from its MLproject (no search_space in a ct.yaml)"
        if project.space_inferred
        else "its ct.yaml"
    )
    print(f"# search space of {project.name}: {where}")
    print(yaml.safe_dump(spec, sort_keys=False, default_flow_style=None).rstrip())
    return EXIT_OK


def cancel(args: argparse.Namespace, settings: Settings) -> int:
    """End a queued or running pipeline: its attempts stop through their stop request."""
    pipeline_id = _full_pipeline_id(settings, args.pipeline_id)
    reason = f"cancelled by {os.environ.get('USER') or 'a user'} with ct-service cancel"
    if not pipeline.cancel(settings, pipeline_id, reason):
        print(f"pipeline {pipeline_id} had ended already; nothing to cancel")
        return EXIT_OK
    if not settings.embedded:  # a pushed commit's status says so on its git host
        send_status_report(make_celery(settings), pipeline_id)
    print(f"pipeline {pipeline_id} cancelled")
    return EXIT_OK
