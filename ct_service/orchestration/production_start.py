"""The start of a pipeline that retrains production on new data (the data trigger, a
schedule, the decay watch): production's run read once (its parameters, its last
checkpoint) for the policy's first attempt (search/production.py), and the one rule
of which runs an attempt's `resume_from` may name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlflow.exceptions import MlflowException

from ct_service import run_tags
from ct_service.exceptions import ProjectError
from ct_service.project import Project
from ct_service.search.production import FirstAttempt, Production, first_attempt
from ct_service.tracking import Pipeline, Tracker


def production_tags(version_number: str, run_id: str) -> dict[str, str]:
    """The tags a pipeline created from production records (read back by `production_of`)."""
    if not run_id:
        return {}
    return {run_tags.WARM_START_RUN: run_id, run_tags.WARM_START_VERSION: version_number}


def production_of(tracker: Tracker, pipeline: Pipeline) -> Production | None:
    """Production as the pipeline recorded it when it was created; None for a pipeline
    not created from production, or whose production run is gone."""
    run_id = pipeline.tags.get(run_tags.WARM_START_RUN, "")
    if not run_id:
        return None
    try:
        run = tracker.client.get_run(run_id)
    except MlflowException:
        return None
    checkpoint = run.data.tags.get(run_tags.CHECKPOINT_LAST_EPOCH, "")
    return Production(
        version=pipeline.tags.get(run_tags.WARM_START_VERSION, "?"),
        run_id=run_id,
        config=dict(run.data.params),
        checkpoint_epoch=int(checkpoint) if checkpoint.isdigit() else 0,
    )


def first_from_production(
    tracker: Tracker,
    pipeline: Pipeline,
    project: Project,
    config: Mapping[str, Any],
) -> FirstAttempt | None:
    """The first attempt of a pipeline created from production (None: not one). The
    declared data's parameter keeps the pipeline's new version."""
    production = production_of(tracker, pipeline)
    if production is None:
        return None
    data_param = pipeline.tags.get(run_tags.DATA_PARAM, "")
    own = {data_param} if data_param else set()
    return first_attempt(config, own, production, project.space, project.start)


def check_checkpoint_run(
    tracker: Tracker, pipeline: Pipeline, parameters: Mapping[str, str]
) -> None:
    """Refuse an attempt whose `resume_from` names a run outside its scope: a run of
    its own pipeline (a resumption, a continuation) or the production run the pipeline
    was created from (a warm start). Only the service sets resume_from; a value from
    anywhere else (a pushed MLproject's default, say) would let training code read
    another run's artifacts."""
    named = parameters.get(run_tags.RESUME_FROM_PARAM, "")
    if not named or named == pipeline.tags.get(run_tags.WARM_START_RUN):
        return
    try:
        owner = tracker.client.get_run(named).data.tags.get(run_tags.PIPELINE_ID, "")
    except MlflowException:
        owner = ""
    if owner != pipeline.id:
        raise ProjectError(
            f"resume_from names run {named}, which is neither an attempt of pipeline "
            f"{pipeline.id} nor the production run it retrains: refused"
        )
