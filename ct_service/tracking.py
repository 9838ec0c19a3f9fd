"""MLflow as the system of record: a pipeline is a parent run, each attempt a
nested run, and their state lives in `ct.*` tags that every step re-reads."""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Param, Run, RunTag, SourceType
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_COMMIT,
    MLFLOW_GIT_REPO_URL,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_PROJECT_ENTRY_POINT,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    MLFLOW_USER,
)

from ct_service import run_tags
from ct_service.attempt import Attempt, AttemptStatus
from ct_service.counters import COUNTERS, CountedClient, Kind
from ct_service.exceptions import AmbiguousPipelineId, PipelineNotFound
from ct_service.settings import Settings
from ct_service.space import Config, param_text
from ct_service.stop_early import StopRule
from ct_service.target import Budget, Direction, Target

CURVES = ("loss", "val_loss", "accuracy", "val_accuracy")
EPOCH_CLOCK = "loss"  # the per-epoch metric whose log times time an attempt's epochs
SHORT_ID_LENGTH = 8  # the fewest characters of a run id taken as its short id


class PipelineStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PROMOTING = "promoting"
    NOTIFYING = "notifying"
    FINISHED = "finished"


class Outcome(str, Enum):
    PROMOTED = "promoted"
    KEPT_CHAMPION = "kept-champion"  # target met, but production is better
    AWAITING_APPROVAL = "awaiting-approval"  # target met; manual promotion: @candidate
    BUDGET_EXHAUSTED = "budget-exhausted"
    STOPPED = "stopped"  # nothing left to try
    SUPERSEDED = "superseded"  # a newer push to the same branch arrived before it started
    SKIPPED = "skipped"  # the push changed no model code
    FAILED = "failed"
    CANCELLED = "cancelled"  # ended by a person (Ctrl-C, `ct-service cancel`)


@dataclass(frozen=True)
class PipelineSpec:
    project_path: str
    project_name: str
    model_name: str
    initial_config: Config
    target: Target = Target()
    budget: Budget = Budget()
    commit: str = ""
    # Who set the target: "given" (command line, repositories.yaml), "settings"
    # (CT_TARGET_*), "ct.yaml", or "default" (the project's ct.yaml may still set it
    # when the start step reads the project at its commit).
    target_from: str = "default"
    # With a git source, project_path is the project's folder inside the repository
    # at `commit`, and workers fetch that commit; initial_config then holds only the
    # overrides until the project is read.
    source_url: str = ""
    source_branch: str = ""  # for a push: a newer push to this branch supersedes it
    source_sequence: int = 0  # the webhook's order of pushes to the branch (0: by start time)


@dataclass(frozen=True)
class Pipeline:
    id: str
    experiment_id: str
    spec: PipelineSpec
    status: PipelineStatus
    started_ms: int
    outcome: str = ""
    reason: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def elapsed_seconds(self) -> float:
        return max(0.0, time.time() - self.started_ms / 1000)


def _user() -> str:
    """This process's account name, as MLflow's own runs record it."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no name for this uid (a container's user)
        return "unknown"


def use_account(settings: Settings) -> None:
    """Log in to the tracking server with the service's account (CT_TRACKING_USERNAME,
    CT_TRACKING_PASSWORD[_FILE]): MLflow's client reads it from this process's
    environment, never from a command line."""
    if settings.tracking_username and settings.tracking_password:
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.tracking_username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.tracking_password


class Tracker:
    def __init__(self, settings: Settings):
        self.settings = settings
        with _first_open(settings.tracking_uri):  # creates a new SQLite store's tables
            client = MlflowClient(settings.tracking_uri, settings.registry_uri)
        # every call counted and timed (counters.py): the worker's step log says them
        self.client: MlflowClient = CountedClient(client)  # type: ignore[assignment]
        # Some of MLflow's own internals (resolving `models:/<id>` sources when a version
        # is registered) read the process-wide URIs, not the client's: keep them equal.
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.registry_uri)
        use_account(settings)

    # -- experiments and pipelines -------------------------------------------------
    def experiment_id(self, project_name: str) -> str:
        name = f"ct/{project_name}"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if self.settings.artifact_root:
            location = f"{self.settings.artifact_root.rstrip('/')}/{_slug(project_name)}"
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by another process
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def create_pipeline(
        self, spec: PipelineSpec, adopt_run_id: str = "", extra_tags: dict[str, str] | None = None
    ) -> str:
        """The pipeline's run, created with every tag at once (status queued)."""
        tags = {
            MLFLOW_USER: _user(),  # who started it (the production history's cause)
            **(extra_tags or {}),
            run_tags.KIND: "pipeline",
            run_tags.PROJECT: spec.project_path,
            run_tags.PROJECT_NAME: spec.project_name,
            run_tags.MODEL_NAME: spec.model_name,
            run_tags.COMMIT: spec.commit,
            **_target_tags(spec.target, spec.target_from),
            run_tags.BUDGET: spec.budget.describe(),
            run_tags.BUDGET_MAX_ATTEMPTS: str(spec.budget.max_attempts),
            run_tags.BUDGET_MAX_WALL_SECONDS: repr(spec.budget.max_wall_seconds),
            run_tags.BUDGET_MAX_EPOCHS: str(spec.budget.max_epochs),
            run_tags.INITIAL_CONFIG: json.dumps(spec.initial_config, sort_keys=True),
            run_tags.SOURCE_URL: spec.source_url,
            run_tags.SOURCE_BRANCH: spec.source_branch,
            run_tags.SOURCE_SEQUENCE: str(spec.source_sequence),
            run_tags.STATUS: PipelineStatus.QUEUED.value,
        }
        if adopt_run_id:
            self.set_tags(adopt_run_id, tags)
            return adopt_run_id
        run = self.client.create_run(
            self.experiment_id(spec.project_name),
            run_name=f"pipeline {spec.project_name}"
            + (f" @{spec.commit[:8]}" if spec.commit else ""),
            tags=tags,
        )
        return run.info.run_id

    def retarget(self, pipeline_id: str, target: Target, source: str) -> None:
        """Set a queued pipeline's target (its project's ct.yaml, read at start)."""
        self.set_tags(pipeline_id, _target_tags(target, source))

    def pipeline(self, pipeline_id: str) -> Pipeline:
        """A pipeline by its run id, or by the id the webhook answered for its push."""
        try:
            run = self.client.get_run(pipeline_id)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            run_id = self.pipeline_for_push(pipeline_id)
            if not run_id:
                raise PipelineNotFound(f"no pipeline {pipeline_id}") from None
            run = self.client.get_run(run_id)
        pipeline_id = run.info.run_id
        tags = run.data.tags
        if tags.get(run_tags.KIND) != "pipeline":
            raise PipelineNotFound(f"run {pipeline_id} is not a ct-service pipeline")
        spec = PipelineSpec(
            project_path=tags[run_tags.PROJECT],
            project_name=tags[run_tags.PROJECT_NAME],
            model_name=tags[run_tags.MODEL_NAME],
            initial_config=json.loads(tags[run_tags.INITIAL_CONFIG]),
            target=Target(
                tags[run_tags.TARGET_METRIC],
                float(tags[run_tags.TARGET_THRESHOLD]),
                Direction(tags[run_tags.TARGET_DIRECTION]),
            ),
            budget=Budget(
                int(tags[run_tags.BUDGET_MAX_ATTEMPTS]),
                float(tags[run_tags.BUDGET_MAX_WALL_SECONDS]),
                int(tags.get(run_tags.BUDGET_MAX_EPOCHS, "0")),  # older pipelines: none
            ),
            commit=tags.get(run_tags.COMMIT, ""),
            target_from=tags.get(run_tags.TARGET_FROM, "default"),
            source_url=tags.get(run_tags.SOURCE_URL, ""),
            source_branch=tags.get(run_tags.SOURCE_BRANCH, ""),
            source_sequence=_whole(tags.get(run_tags.SOURCE_SEQUENCE, "")),
        )
        return Pipeline(
            id=pipeline_id,
            experiment_id=run.info.experiment_id,
            spec=spec,
            status=PipelineStatus(tags[run_tags.STATUS]),
            started_ms=run.info.start_time,
            outcome=tags.get(run_tags.OUTCOME, ""),
            reason=tags.get(run_tags.REASON, ""),
            tags=dict(tags),
        )

    def resolve_pipeline_id(self, given: str, min_prefix: int = SHORT_ID_LENGTH) -> str:
        """The run id of the pipeline `given` names: its run id, the id the webhook
        answered for its push, or a unique prefix of its run id at least `min_prefix`
        characters long (the short id `ct-service run` and `status` print)."""
        try:
            return self.client.get_run(given).info.run_id
        except MlflowException as error:
            if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
        pushed = self.pipeline_for_push(given)
        if pushed:
            return pushed
        matches = self._pipelines_starting(given) if len(given) >= min_prefix else []
        if len(matches) > 1:
            raise AmbiguousPipelineId(
                f"pipeline id {given} is ambiguous: it starts {', '.join(matches)}; give more of it"
            )
        if not matches:
            raise PipelineNotFound(f"no pipeline {given}")
        return matches[0]

    def _pipelines_starting(self, prefix: str) -> list[str]:
        """The run ids of the pipelines whose id starts with `prefix` (hex digits)."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        if not experiments or not re.fullmatch(r"[0-9a-f]+", prefix):
            return []
        runs = self.client.search_runs(
            experiments,
            f"{_tag(run_tags.KIND, 'pipeline')} and attributes.run_id LIKE '{prefix}%'",
            max_results=20,
            order_by=["attributes.start_time DESC"],
        )
        return [run.info.run_id for run in runs]

    def newer_pipeline(self, pipeline: Pipeline) -> str:
        """The id of a later pipeline for the same repository and branch, or "".
        Pushes the webhook numbered are ordered by that number (two may start in
        the same millisecond); others by start time."""
        spec = pipeline.spec
        same_branch = (
            f"{_tag(run_tags.KIND, 'pipeline')}"
            f" and {_tag(run_tags.SOURCE_URL, spec.source_url)}"
            f" and {_tag(run_tags.SOURCE_BRANCH, spec.source_branch)}"
        )
        if not spec.source_sequence:
            runs = self.client.search_runs(
                [pipeline.experiment_id],
                f"{same_branch} and attributes.start_time > {pipeline.started_ms}",
                max_results=1,
            )
            return runs[0].info.run_id if runs else ""
        runs = self.client.search_runs(
            [pipeline.experiment_id],
            same_branch,
            max_results=200,
            order_by=["attributes.start_time DESC"],
        )
        later = [
            run
            for run in runs
            if _whole(run.data.tags.get(run_tags.SOURCE_SEQUENCE, "")) > spec.source_sequence
        ]
        return later[0].info.run_id if later else ""

    def pipeline_for_push(self, push_id: str) -> str:
        """The run id of the pipeline created for the push the webhook answered with
        this id, or ""."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        if not experiments:
            return ""
        runs = self.client.search_runs(
            experiments,
            f"{_tag(run_tags.KIND, 'pipeline')} and {_tag(run_tags.PUSH_ID, push_id)}",
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        return runs[0].info.run_id if runs else ""

    def pipeline_for_commit(self, url: str, branch: str, commit: str) -> str:
        """The id of a pipeline already started for this commit of this repository and
        branch, however long ago (a redelivered push starts nothing new), or ""."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        if not experiments:
            return ""
        runs = self.client.search_runs(
            experiments,
            f"{_tag(run_tags.KIND, 'pipeline')} and {_tag(run_tags.SOURCE_URL, url)}"
            f" and {_tag(run_tags.SOURCE_BRANCH, branch)} and {_tag(run_tags.COMMIT, commit)}",
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        return runs[0].info.run_id if runs else ""

    def recent_pipelines(self, limit: int = 20) -> list[Pipeline]:
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        if not experiments:
            return []
        runs = self.client.search_runs(
            experiments,
            _tag(run_tags.KIND, "pipeline"),
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        )
        return [self.pipeline(run.info.run_id) for run in runs]

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    # -- attempts -------------------------------------------------------------------
    def create_attempt(
        self,
        pipeline: Pipeline,
        number: int,
        config: Config,
        reason: str,
        derived_from: str = "",
        continues: str = "",
        stop_margin: float | None = None,
        horizon: int = 0,
        start_epoch: int = 0,
    ) -> str:
        """Create attempt `number`, or return the one a replayed step created already.
        `start_epoch`: the epoch of production's checkpoint it continues (a warm start)."""
        existing = self.attempt_runs(pipeline, f"and {_tag(run_tags.ATTEMPT, str(number))}")
        first = [run for run in existing if not run.data.tags.get(run_tags.REPLACES_RUN)]
        if first:
            return first[0].info.run_id
        run = self.client.create_run(
            pipeline.experiment_id,
            run_name=f"attempt-{number}",
            tags={
                **_source_tags(pipeline),
                MLFLOW_PARENT_RUN_ID: pipeline.id,
                run_tags.KIND: "attempt",
                run_tags.PIPELINE_ID: pipeline.id,
                run_tags.PROJECT: pipeline.spec.project_path,
                run_tags.ATTEMPT: str(number),
                run_tags.CONFIG: json.dumps(config, sort_keys=True),
                run_tags.REASON: reason,
                run_tags.DERIVED_FROM: derived_from,
                run_tags.STATUS: AttemptStatus.QUEUED.value,
                # a continuation loads the earlier attempt's last checkpoint
                **(
                    {run_tags.CONTINUES: continues, run_tags.CHECKPOINT_RUN: continues}
                    if continues
                    else {}
                ),
                **({run_tags.STOP_MARGIN: f"{stop_margin:g}"} if stop_margin is not None else {}),
                **({run_tags.HORIZON: str(horizon)} if horizon else {}),
                **({run_tags.START_EPOCH: str(start_epoch)} if start_epoch else {}),
            },
        )
        self.client.log_batch(
            run.info.run_id, params=[Param(k, param_text(v)) for k, v in sorted(config.items())]
        )
        return run.info.run_id

    def resume_attempt(self, pipeline: Pipeline, dead: Run, checkpoint_run: str) -> str:
        """The run that continues the dead run `dead` of an attempt (created once: a
        replay returns the same one). It has the same attempt number and config."""
        existing = self.resumption_of(pipeline, dead.info.run_id)
        if existing:
            return existing
        tags = dead.data.tags
        resumes = int(tags.get(run_tags.RESUMES, "0")) + 1
        config = json.loads(tags[run_tags.CONFIG])
        if run_tags.RESUME_FROM_PARAM in config:  # the project can continue from a checkpoint
            config[run_tags.RESUME_FROM_PARAM] = checkpoint_run
        run = self.client.create_run(
            pipeline.experiment_id,
            run_name=f"attempt-{tags['ct.attempt']}-resume-{resumes}",
            tags={
                **{k: v for k, v in tags.items() if k in run_tags.INHERITED_BY_RESUMPTION},
                **_source_tags(pipeline),
                MLFLOW_PARENT_RUN_ID: pipeline.id,
                run_tags.REPLACES_RUN: dead.info.run_id,
                run_tags.RESUMES: str(resumes),
                # the run whose last checkpoint it loads ("" = none yet: it restarts)
                run_tags.CHECKPOINT_RUN: checkpoint_run,
                run_tags.STATUS: AttemptStatus.QUEUED.value,
            },
        )
        self.client.log_batch(
            run.info.run_id, params=[Param(k, param_text(v)) for k, v in sorted(config.items())]
        )
        return run.info.run_id

    @staticmethod
    def run_parameters(tags: dict[str, str]) -> dict[str, str]:
        """The project parameters an attempt's run is started with."""
        config = json.loads(tags[run_tags.CONFIG])
        if run_tags.RESUME_FROM_PARAM in config:
            config[run_tags.RESUME_FROM_PARAM] = tags.get(run_tags.CHECKPOINT_RUN, "")
        return {k: param_text(v) for k, v in config.items()}

    def resumption_of(self, pipeline: Pipeline, run_id: str) -> str:
        runs = self.attempt_runs(pipeline, f"and {_tag(run_tags.REPLACES_RUN, run_id)}")
        return min(runs, key=lambda r: r.info.start_time).info.run_id if runs else ""

    def attempts_in(self, statuses: tuple[AttemptStatus, ...]) -> list[Run]:
        """Attempt runs of every pipeline whose ct.status is one of `statuses`."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        found: list[Run] = []
        for status in statuses if experiments else ():
            found += self.client.search_runs(
                experiments,
                f"{_tag(run_tags.KIND, 'attempt')} and {_tag(run_tags.STATUS, status.value)}",
                max_results=1000,
            )
        return found

    def unfinished_pipelines(self) -> list[Pipeline]:
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        if not experiments:
            return []
        runs = self.client.search_runs(
            experiments,
            f"{_tag(run_tags.KIND, 'pipeline')}"
            f" and {_tag(run_tags.STATUS, PipelineStatus.FINISHED.value, '!=')}",
            max_results=1000,
        )
        return [self.pipeline(run.info.run_id) for run in runs]

    def attempts(
        self, pipeline: Pipeline, curves: bool = True, validation_metric: str = ""
    ) -> list[Attempt]:
        """One Attempt per attempt number: its latest run, with the metric history of
        the runs it resumed from. `validation_metric`: the per-epoch metric read as
        each attempt's validation curve (default: val_<target metric without test_>)."""
        validation = validation_metric or StopRule().validation_metric(pipeline.spec.target)
        runs = self.attempt_runs(pipeline)
        current = [
            r for r in runs if r.data.tags.get(run_tags.STATUS) != AttemptStatus.RESUMED.value
        ]
        by_id = {run.info.run_id: run for run in runs}
        found = [
            self._to_attempt(run, pipeline.spec.target, curves, by_id, validation)
            for run in current
        ]
        return sorted(found, key=lambda a: a.number)

    def prior_attempts(
        self, pipeline: Pipeline, limit: int = 200, declared: str = ""
    ) -> list[Attempt]:
        """Attempts of earlier pipelines of the same project (same experiment); with
        `declared`, only those of pipelines whose project declared the same
        parameters and space (tag ct.declared)."""
        runs = list(
            self.client.search_runs(
                [pipeline.experiment_id],
                f"{_tag(run_tags.KIND, 'attempt')} and "
                f"{_tag(run_tags.PIPELINE_ID, pipeline.id, '!=')}",
                order_by=["attributes.start_time DESC"],
                max_results=limit,
            )
        )
        if declared:
            alike = {
                run.info.run_id
                for run in self.client.search_runs(
                    [pipeline.experiment_id],
                    f"{_tag(run_tags.KIND, 'pipeline')} and {_tag(run_tags.DECLARED, declared)}",
                    max_results=1000,
                )
            }
            runs = [run for run in runs if run.data.tags.get(run_tags.PIPELINE_ID) in alike]
        return [self._to_attempt(run, pipeline.spec.target, curves=False) for run in runs]

    def attempt_runs(self, pipeline: Pipeline, extra: str = "") -> list:
        return list(
            self.client.search_runs(
                [pipeline.experiment_id],
                f"{_tag(run_tags.PIPELINE_ID, pipeline.id)} {extra}".strip(),
                max_results=1000,
            )
        )

    def _to_attempt(
        self,
        run: Run,
        target: Target,
        curves: bool,
        chain_runs: dict[str, Run] | None = None,
        validation_metric: str = "",
    ) -> Attempt:
        tags = run.data.tags
        histories: dict[str, tuple[float, ...]] = {}
        epoch_times: dict[int, float] = {}  # its own epochs' (of EPOCH_CLOCK) log times
        if curves:
            chain = _chain(run, chain_runs or {})
            for key in dict.fromkeys((*CURVES, validation_metric) if validation_metric else CURVES):
                by_step: dict[int, float] = {}
                for link in chain:  # oldest first: a resumed epoch's later value wins
                    points = self.client.get_metric_history(link, key)
                    for m in sorted(points, key=lambda m: (m.step, m.timestamp)):
                        by_step[m.step] = m.value
                        if key == EPOCH_CLOCK and link == run.info.run_id:
                            epoch_times[m.step] = m.timestamp / 1000
                if by_step:
                    histories[key] = tuple(by_step[step] for step in sorted(by_step))
        return Attempt(
            number=int(tags.get(run_tags.ATTEMPT, "0")),
            run_id=run.info.run_id,
            config=json.loads(tags.get(run_tags.CONFIG, "{}")),
            status=AttemptStatus(tags.get(run_tags.STATUS, AttemptStatus.QUEUED.value)),
            metric=run.data.metrics.get(target.metric),
            curves=histories,
            failure=tags.get(run_tags.FAILURE, ""),
            reason=tags.get(run_tags.REASON, ""),
            decision=tags.get(run_tags.DECISION, ""),
            resumes=int(tags.get(run_tags.RESUMES, "0")),
            checkpoint_epoch=_whole(tags.get(run_tags.CHECKPOINT_LAST_EPOCH, "")),
            start_epoch=_whole(tags.get(run_tags.START_EPOCH, "")),
            derived_from=tags.get(run_tags.DERIVED_FROM, ""),
            stopped_early=tags.get(run_tags.STOPPED_EARLY, ""),
            stop_margin=_stop_margin(tags),
            validation=histories.get(validation_metric, ()),
            environment_build=tags.get(run_tags.ENVIRONMENT_BUILD, ""),
            started_at=_number(tags.get(run_tags.STARTED, "")) or run.info.start_time / 1000,
            epoch_times=epoch_times,
        )

    def carried_on(self, run_id: str) -> list[str]:
        """The ids of the runs the attempt run `run_id` carries on (the runs it
        resumed, the attempt it continues), newest first."""
        found: list[str] = []
        current = self.client.get_run(run_id)
        while True:
            tags = current.data.tags
            previous = tags.get(run_tags.REPLACES_RUN) or tags.get(run_tags.CONTINUES, "")
            if not previous or previous in found or previous == run_id:
                return found
            found.append(previous)
            current = self.client.get_run(previous)

    def earlier_values(self, run_id: str, metric: str) -> tuple[float, ...]:
        """The per-epoch values of `metric` in the runs the attempt run `run_id`
        carries on (the runs it resumed, the attempt it continues), oldest first."""
        by_step: dict[int, float] = {}
        for link in reversed(self.carried_on(run_id)):  # oldest first: a later value wins
            for m in sorted(
                self.client.get_metric_history(link, metric), key=lambda m: (m.step, m.timestamp)
            ):
                by_step[m.step] = m.value
        return tuple(by_step[step] for step in sorted(by_step))


def missing_store(uri: str) -> Path | None:
    """The database file a `sqlite:///` store URI names when it does not exist yet
    (opening it would create it), else None (it exists, or the store is a server's)."""
    database = sqlite_file(uri)
    return database if database is not None and not database.exists() else None


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` store URI; None for any other store."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


_OPENED: set[str] = set()  # SQLite stores this process has opened


@contextmanager
def _first_open(uri: str) -> Iterator[None]:
    """MLflow creates a new SQLite store's tables when a client first opens it, in
    every process that finds them missing; two processes doing so at once (a worker's
    first intake and the webhook, say) fail in alembic ("expected to match one row").
    Each process opens a SQLite store the first time under a lock file beside the
    database, so one creates the tables and the others find them. The first open
    that succeeds writes "created <the database's inode>" into the lock file: from
    then on processes open that database without the lock (eight workers starting at
    once waited up to 12 s for each other, one after the other, before they did)."""
    database = sqlite_file(uri)
    if uri in _OPENED or database is None:
        yield
        return
    lock_path = database.with_name(database.name + ".lock")
    if _created(database, lock_path):
        yield
        _OPENED.add(uri)
        return
    try:
        database.parent.mkdir(parents=True, exist_ok=True)  # as MLflow would make it
        lock = open(lock_path, "a")
    except OSError:  # no folder to lock in: MLflow reports the store's own error
        lock = None
    if lock is None:
        yield
        return
    with lock:
        with COUNTERS.timed(Kind.STORE_LOCK):
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield
        if not _created(database, lock_path):
            lock.truncate(0)  # what it said of an earlier database
            lock.write(f"{CREATED} {database.stat().st_ino}\n")
    _OPENED.add(uri)


CREATED = "created"  # the lock file's word for "the tables exist", then the inode


def _created(database: Path, lock_path: Path) -> bool:
    """Whether a process has opened this database (not one made since) under the lock."""
    try:
        said = lock_path.read_text().split()
        return said[:1] == [CREATED] and said[1:2] == [str(database.stat().st_ino)]
    except OSError:
        return False


def _chain(run: Run, runs: dict[str, Run]) -> list[str]:
    """The ids of the runs whose epochs an attempt's latest run carries on, oldest
    first: the dead runs it replaced, and the earlier attempt it continues."""
    chain = [run.info.run_id]
    current = run
    while True:
        tags = current.data.tags
        previous = tags.get(run_tags.REPLACES_RUN) or tags.get(run_tags.CONTINUES, "")
        if not previous or previous not in runs or previous in chain:
            return chain
        chain.insert(0, previous)
        current = runs[previous]


def _source_tags(pipeline: Pipeline) -> dict[str, str]:
    """The source tags MLflow sets on the runs of projects it starts itself."""
    spec = pipeline.spec
    tags = {
        MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.PROJECT),
        MLFLOW_SOURCE_NAME: spec.source_url or spec.project_path,
        MLFLOW_PROJECT_ENTRY_POINT: "main",
    }
    if spec.commit:
        tags[MLFLOW_GIT_COMMIT] = spec.commit
    if spec.source_url:
        tags[MLFLOW_GIT_REPO_URL] = spec.source_url
    return tags


def _whole(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _stop_margin(tags: dict[str, str]) -> float | None:
    """The margin the attempt's target-met stop asked for: a fixed one, else the
    interval's its watch judged with last."""
    fixed = _number(tags.get(run_tags.STOP_MARGIN, ""))
    if fixed is not None:
        return fixed
    try:
        return float(json.loads(tags.get(run_tags.STOP_INTERVAL, "{}"))["margin"])
    except (ValueError, KeyError, TypeError):
        return None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _tag(name: str, value: str, comparison: str = "=") -> str:
    """A search-filter clause on a tag."""
    return f"tags.`{name}` {comparison} '{_quoted(value)}'"


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "project"


def _target_tags(target: Target, source: str) -> dict[str, str]:
    return {
        run_tags.TARGET: target.describe(),
        run_tags.TARGET_METRIC: target.metric,
        run_tags.TARGET_THRESHOLD: repr(target.threshold),
        run_tags.TARGET_DIRECTION: target.direction.value,
        run_tags.TARGET_FROM: source,
    }
