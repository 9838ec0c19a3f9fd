"""`ct-service reproduce`: a registered version trained again from its record.

plan() reads the record (the version, the run that trained it, its pipeline) and
refuses what cannot be rebuilt (no commit, no project, no configuration) before
anything is written; create() persists the reproduction as an MLflow run of its own
(status queued) and lists it on the version; train() is the step a worker runs (the
task ct.train.reproduce, on the training queue):

1. fetch the commit into a work folder of its own: from the pipeline's git source
   (the allow-list's URL, as a pipeline's steps fetch it), from the repository the
   project folder was in, or from the local repository `--from` named;
2. the recorded configuration, trained from scratch: `resume_from` emptied, and the
   epochs an attempt stopped early kept (its last checkpoint's epoch), not the ones
   it was allowed;
3. the executor the version trained with (Docker: the same environment image, built
   again if it is gone; local: the project's declared environment), under the same
   rules as an attempt (pushed code only in a container, the gateway for Docker);
4. record the metric beside the recorded one, the data digests (data_check.py) and
   the environment, then and now, on the run, and the last outcome on the version.

A reproduction never registers a version and never moves an alias: it reads the
registry, and writes only tags on the version it reproduces."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Param, Run
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from ct_service import data_check, run_tags
from ct_service import keys as names
from ct_service.attempt import AttemptStatus
from ct_service.checkout import SHA, fetch_commit, remove
from ct_service.exceptions import (
    CtError,
    InfrastructureError,
    PipelineNotFound,
    ProjectError,
    is_infrastructure_failure,
)
from ct_service.execution import docker
from ct_service.execution.executor import AttemptRequest, AttemptResult, Executor
from ct_service.execution.lease import holder
from ct_service.execution.loader import executor_for
from ct_service.execution.local import LocalExecutor
from ct_service.keystore import held, keystore_for
from ct_service.orchestration.reproduction_source import (
    ReproductionError,
    fetch_url,
    project_folder,
    source,
)
from ct_service.project import ENTRY_POINT, Project, load_project
from ct_service.reproduction import (
    Reproduction,
    ReproductionOutcome,
    VersionReference,
    appended,
    environment,
    judge,
)
from ct_service.settings import Settings
from ct_service.space import Role, param_text
from ct_service.target import Target
from ct_service.tracking import Pipeline, Tracker

log = logging.getLogger(__name__)


def plan(
    settings: Settings,
    reference: VersionReference,
    tolerance: float,
    allow_other_data: bool = False,
    repository: Path | None = None,
) -> Reproduction:
    """What reproducing the version `reference` names trains; ReproductionError, naming
    what is missing, for a version whose record cannot be trained again."""
    tracker = Tracker(settings)
    version = _version(tracker, reference)
    number = str(version.version)
    what = f"{reference.model} version {number}"
    try:
        run = tracker.client.get_run(version.run_id or "")
    except MlflowException:
        raise ReproductionError(f"{what}: the run that trained it is gone") from None
    tags, version_tags = run.data.tags, dict(version.tags or {})
    if run_tags.CONFIG not in tags:
        raise ReproductionError(f"{what} was not trained by ct-service: its run has no ct.config")
    pipeline = _pipeline(tracker, version_tags.get(run_tags.PIPELINE_ID, ""))
    commit = version_tags.get(run_tags.COMMIT) or tags.get(MLFLOW_GIT_COMMIT, "")
    project = version_tags.get(run_tags.PROJECT) or tags.get(run_tags.PROJECT, "")
    if not project:
        raise ReproductionError(f"{what} records no project: nothing says what to train")
    if not SHA.match(commit):
        raise ReproductionError(
            f"{what} records no commit (its project {project} was not a git checkout when it "
            "trained): its code cannot be fetched again"
        )
    metric = pipeline.spec.target.metric if pipeline else Target().metric
    recorded = run.data.metrics.get(metric)
    if recorded is None:
        raise ReproductionError(f"{what}: its run recorded no {metric} to compare with")
    return Reproduction(
        model=reference.model,
        version=number,
        original_run=run.info.run_id,
        pipeline_id=pipeline.id if pipeline else "",
        commit=commit,
        project=project,
        source=source(settings, pipeline, project, commit, repository),
        metric=metric,
        recorded=recorded,
        tolerance=tolerance,
        allow_other_data=allow_other_data,
        config=json.loads(tags[run_tags.CONFIG]),
    )


def create(settings: Settings, reproduction: Reproduction) -> str:
    """The reproduction's run (status queued) in the original run's experiment, listed
    on the version (ct.reproductions) at once: a reproduction that fails is linked too."""
    tracker = Tracker(settings)
    original = tracker.client.get_run(reproduction.original_run)
    run = tracker.client.create_run(
        original.info.experiment_id,
        run_name=f"reproduce {reproduction.model} v{reproduction.version}",
        tags={
            **reproduction.to_tags(),
            MLFLOW_GIT_COMMIT: reproduction.commit,
            run_tags.STATUS: AttemptStatus.QUEUED.value,
        },
    )
    run_id = run.info.run_id
    client, model, number = tracker.client, reproduction.model, reproduction.version
    listed = client.get_model_version(model, number).tags.get(run_tags.REPRODUCTIONS, "")
    client.set_model_version_tag(model, number, run_tags.REPRODUCTIONS, appended(listed, run_id))
    return run_id


def train(settings: Settings, run_id: str, last_try: bool = False) -> None:
    """The step: fetch, prepare, train, record (the module's docstring). Does nothing
    for a reproduction that is no longer queued (a replayed message). An
    infrastructure failure before training starts is raised as InfrastructureError for
    the task to retry (the reproduction still queued), unless `last_try`; anything
    else (a commit that cannot be fetched, a project that does not run here, training
    that fails) ends the reproduction failed, with the reason."""
    tracker = Tracker(settings)
    run = tracker.client.get_run(run_id)
    reproduction = Reproduction.from_tags(run.data.tags)
    if run.data.tags.get(run_tags.STATUS) != AttemptStatus.QUEUED.value:
        return
    keys = keystore_for(settings)
    claim = names.run_claim(run_id)
    if not keys.claim(claim, holder(), names.RUN_CLAIM_SECONDS):
        return  # a duplicate message is starting it right now
    work = settings.home / "work" / run_id
    log_path = settings.home / "logs" / f"reproduce-{run_id}.log"
    started = False
    try:
        with held(keys, claim, holder(), names.RUN_CLAIM_SECONDS):
            executor, request, tags = _prepare(settings, tracker, reproduction, run, work, log_path)
        tracker.set_tags(run_id, tags)  # running
        started = True
        result = executor.run(request, lambda: None)  # no stop watch: it trains to the end
    except Exception as error:
        keys.delete(claim)
        if is_infrastructure_failure(error) and not started and not last_try:
            raise InfrastructureError(f"reproduction {run_id}: {error}") from error
        if not isinstance(error, CtError):
            log.exception("reproduction %s failed", run_id)
        reason = (str(error).splitlines() or [type(error).__name__])[0][:300]
        result = AttemptResult(False, reason)
    finally:
        remove(work)
    _record(tracker, reproduction, run_id, result, log_path)


def _prepare(
    settings: Settings,
    tracker: Tracker,
    reproduction: Reproduction,
    run: Run,
    work: Path,
    log_path: Path,
) -> tuple[Executor, AttemptRequest, dict[str, str]]:
    """The code fetched and the environment ready: the executor, the request, and the
    tags that mark the run running."""
    pipeline = _pipeline(tracker, reproduction.pipeline_id)
    remove(work)  # a fetch that died half-way
    fetch_commit(fetch_url(settings, pipeline, reproduction), reproduction.commit, work)
    project = load_project(project_folder(work, reproduction))
    original = tracker.client.get_run(reproduction.original_run)
    config = trained_config(reproduction.config, project, original.data.tags)
    executor = _executor(settings, original.data.tags.get(run_tags.EXECUTOR, ""))
    request, choices = executor.prepare(
        AttemptRequest(
            project_uri=str(project.path),
            entry_point=ENTRY_POINT,
            parameters={name: param_text(value) for name, value in config.items()},
            experiment_id=run.info.experiment_id,
            run_id=run.info.run_id,
            timeout_seconds=settings.attempt_timeout_seconds,
            log_path=log_path,
        )
    )
    pushed = pipeline is not None and pipeline.spec.source_branch
    if pushed and executor.name == "local" and not settings.trust_pushed_code:
        raise ProjectError(
            "pushed code runs only in a container, and this reproduction would run on the "
            "worker itself: use CT_EXECUTION=docker (it trained in a container), or set "
            "CT_TRUST_PUSHED_CODE=1 to accept running it here"
        )
    tracker.client.log_batch(
        run.info.run_id,
        params=[Param(name, param_text(value)) for name, value in sorted(config.items())],
    )
    return (
        executor,
        request,
        {
            **choices,
            run_tags.CONFIG: json.dumps(config, sort_keys=True),
            run_tags.STATUS: AttemptStatus.RUNNING.value,
            run_tags.EXECUTOR: executor.name,
            run_tags.WORKER: holder(),
            run_tags.STARTED: f"{time.time():.3f}",
        },
    )


def trained_config(
    recorded: Mapping[str, Any], project: Project, original_tags: Mapping[str, str]
) -> dict[str, Any]:
    """The parameters that train what the version's run trained, from scratch: its
    recorded configuration, `resume_from` emptied (a resumed or continued run started
    from a checkpoint), and an attempt stopped early trained for the epochs it kept
    (its last checkpoint's), not the ones it was allowed."""
    config = dict(recorded)
    if run_tags.RESUME_FROM_PARAM in config:
        config[run_tags.RESUME_FROM_PARAM] = ""
    epochs = project.space.with_role(Role.EPOCHS)
    kept = original_tags.get(run_tags.CHECKPOINT_LAST_EPOCH, "")
    if original_tags.get(run_tags.STOPPED_EARLY) and len(epochs) == 1 and kept.isdigit():
        config[epochs[0].name] = int(kept)
    return config


def _record(
    tracker: Tracker,
    reproduction: Reproduction,
    run_id: str,
    result: AttemptResult,
    log_path: Path,
) -> None:
    """End the run and record how it compares, on the run and on the version."""
    try:
        if log_path.exists():
            tracker.client.log_artifact(run_id, str(log_path), "logs")
    except Exception as error:  # the log is a convenience; its loss must not cost the result
        log.warning("could not store %s in MLflow: %s", log_path, error)
    run = tracker.client.get_run(run_id)
    if run.info.status == "RUNNING":
        tracker.client.set_terminated(run_id, "FINISHED" if result.succeeded else "FAILED")
    original = tracker.client.get_run(reproduction.original_run)
    data = data_check.compare(data_check.dataset_digests(original), data_check.dataset_digests(run))
    now = run.data.metrics.get(reproduction.metric)
    failure = "" if result.succeeded else (result.failure or "the run failed")
    outcome, reason = judge(reproduction, now, data, failure)
    failed = outcome is ReproductionOutcome.FAILED
    tags = {
        run_tags.STATUS: (AttemptStatus.FAILED if failed else AttemptStatus.FINISHED).value,
        run_tags.REPRODUCTION_OUTCOME: outcome.value,
        run_tags.REASON: reason[:4000],
        run_tags.REPRODUCTION_DATA: data.describe()[:4000],
        run_tags.REPRODUCTION_ENVIRONMENT: environment(original.data.tags, run.data.tags),
    }
    if now is not None:
        tags[run_tags.REPRODUCTION_DELTA] = repr(now - reproduction.recorded)
    if result.refused:
        tags[run_tags.REFUSED] = result.refused
    tracker.set_tags(run_id, tags)
    tracker.client.set_model_version_tag(
        reproduction.model,
        reproduction.version,
        run_tags.REPRODUCTION_LAST,
        f"{run_id}: {reason}"[:4000],
    )


def _version(tracker: Tracker, reference: VersionReference) -> Any:
    """The registered version the reference names; ReproductionError naming what the
    registry holds instead."""
    client = tracker.client
    try:
        client.get_registered_model(reference.model)
    except MlflowException:
        names = [m.name for m in client.search_registered_models(max_results=10)]
        held_ = ", ".join(names) if names else "none is registered yet"
        raise ReproductionError(f"no registered model {reference.model!r} ({held_})") from None
    try:
        if reference.version:
            return client.get_model_version(reference.model, reference.version)
        return client.get_model_version_by_alias(reference.model, reference.alias)
    except MlflowException:
        raise ReproductionError(f"{reference.describe()}: no such version") from None


def _pipeline(tracker: Tracker, pipeline_id: str) -> Pipeline | None:
    if not pipeline_id:
        return None
    try:
        return tracker.pipeline(pipeline_id)
    except (PipelineNotFound, MlflowException):
        return None  # deleted: the version's own tags still say what to train


def _executor(settings: Settings, recorded: str) -> Executor:
    """The executor the version trained with; the settings' when none is recorded."""
    if recorded == "docker":
        return docker.for_settings(settings)
    if recorded == "local":
        return LocalExecutor(settings)
    return executor_for(settings)


def fail(settings: Settings, run_id: str, reason: str) -> None:
    """End a reproduction that has not ended (interrupted here: its training was
    stopped with this process) as failed, with `reason`."""
    tracker = Tracker(settings)
    run = tracker.client.get_run(run_id)
    ended = (AttemptStatus.FINISHED.value, AttemptStatus.FAILED.value)
    if run.data.tags.get(run_tags.STATUS) in ended:
        return
    tracker.set_tags(
        run_id,
        {
            run_tags.STATUS: AttemptStatus.FAILED.value,
            run_tags.REPRODUCTION_OUTCOME: ReproductionOutcome.FAILED.value,
            run_tags.REASON: reason,
        },
    )
    if run.info.status == "RUNNING":
        tracker.client.set_terminated(run_id, "KILLED")
