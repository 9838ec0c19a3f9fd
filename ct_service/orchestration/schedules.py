"""The schedule trigger: a production model whose project declares `schedule:` in its
ct.yaml (recorded on its pipeline when it started) is trained again on Celery beat's
crontab, with production's code on its declared data's current version.

`beat_entries` gives beat one crontab entry per such model, read when `ct-service
beat` starts (restart beat to pick up a new schedule). `fire`, in order:

1. read the model's production version and the schedule its pipeline recorded
   (none any more: nothing);
2. claim this tick (a redelivered message starts nothing);
3. read the declared data's current version (a listing, nothing fetched);
4. with `if_changed`, start nothing when the model's latest pipeline trained the
   same commit on the same data version;
5. create the pipeline like the data trigger does, reason "schedule <cron>: ...", and
   hand back its start step."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from mlflow.exceptions import MlflowException

from ct_service import keys as names
from ct_service import run_tags
from ct_service.data_spec import DataSpec
from ct_service.data_version import DataVersion, version_of
from ct_service.execution.lease import holder
from ct_service.keystore import keystore_for
from ct_service.orchestration.data_trigger import DataTask, Watched, create_like_production
from ct_service.orchestration.pipeline import Step, Task
from ct_service.orchestration.production_start import production_tags
from ct_service.registry import PRODUCTION
from ct_service.schedule import Schedule
from ct_service.settings import Settings
from ct_service.tracking import Pipeline, Tracker

log = logging.getLogger(__name__)
TICK_CLAIM_SECONDS = 3600.0  # a tick's claim outlives any redelivery of its message


def scheduled(tracker: Tracker) -> dict[str, tuple[Schedule, Watched]]:
    """Each registered model whose production pipeline recorded a schedule."""
    found = {}
    for model in tracker.client.search_registered_models(max_results=1000):
        try:
            version = tracker.client.get_model_version_by_alias(model.name, PRODUCTION)
            production = tracker.pipeline(version.tags.get(run_tags.PIPELINE_ID, ""))
        except Exception:  # nothing in production, or its pipeline is gone
            continue
        declared = production.tags.get(run_tags.SCHEDULE, "")
        if not declared:
            continue
        try:
            schedule = Schedule.from_spec(json.loads(declared))
        except ValueError as error:
            log.warning("model %s: its schedule %s is unusable: %s", model.name, declared, error)
            continue
        data = DataVersion.from_tags(version.tags) or DataVersion("", "", "")
        found[model.name] = (
            schedule,
            Watched(model.name, str(version.version), production.id, data, version.run_id or ""),
        )
    return found


def beat_entries(settings: Settings) -> dict[str, dict[str, object]]:
    """Celery beat's entries: one crontab per scheduled model."""
    return {
        f"ct-schedule-{name}": {
            "task": DataTask.SCHEDULE.value,
            "schedule": schedule.crontab(),
            "args": (name, schedule.cron),
            "options": {"queue": "pipeline", "expires": 3600},
        }
        for name, (schedule, _) in scheduled(Tracker(settings)).items()
    }


def fire(settings: Settings, model_name: str, now: datetime | None = None) -> Step | None:
    """One tick of a model's schedule (the steps in the module's docstring)."""
    tracker = Tracker(settings)
    entry = scheduled(tracker).get(model_name)
    if entry is None:
        log.info("schedule of %s: nothing scheduled any more", model_name)
        return None
    schedule, model = entry
    tick = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M")
    if not keystore_for(settings).claim(
        names.schedule_claim(model_name, tick), holder(), TICK_CLAIM_SECONDS
    ):
        return None
    data = model.data
    if data.source:
        data = version_of(settings, DataSpec(data.param, data.source))
    production = tracker.pipeline(model.pipeline_id)
    latest = latest_pipeline(tracker, production, model_name)
    same = latest is not None and _trained(latest) == (production.spec.commit, data.digest)
    if schedule.if_changed and same:
        log.info(
            "schedule %s of %s: code and data unchanged; nothing started", schedule.cron, model_name
        )
        return None
    shown = f"data {data.short}" if data.source else "no declared data"
    reason = (
        f"schedule {schedule.cron}: production {model_name} v{model.model_version}'s code, {shown}"
    )
    if data.source:
        pipeline_id = create_like_production(settings, tracker, model, data, "schedule", reason)
    else:
        pipeline_id = _without_data(tracker, settings, production, model, reason)
    log.info("%s -> pipeline %s", reason, pipeline_id)
    return Step(Task.START, (pipeline_id,))


def latest_pipeline(tracker: Tracker, production: Pipeline, model_name: str) -> Pipeline | None:
    runs = tracker.client.search_runs(
        [production.experiment_id],
        f"tags.`{run_tags.KIND}` = 'pipeline' and tags.`{run_tags.MODEL_NAME}` = '{model_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    try:
        return tracker.pipeline(runs[0].info.run_id) if runs else None
    except MlflowException:
        return None


def _trained(pipeline: Pipeline) -> tuple[str, str]:
    return pipeline.spec.commit, pipeline.tags.get(run_tags.DATA_VERSION, "")


def _without_data(
    tracker: Tracker, settings: Settings, production: Pipeline, model: Watched, reason: str
) -> str:
    from dataclasses import replace

    spec = replace(production.spec, budget=settings.budget, source_branch="", source_sequence=0)
    tags = {
        **production_tags(model.model_version, model.run_id),
        run_tags.TRIGGER: "schedule",
        run_tags.TRIGGER_REASON: reason,
    }
    if production.tags.get(run_tags.SOURCE_REPOSITORY):
        tags[run_tags.SOURCE_REPOSITORY] = production.tags[run_tags.SOURCE_REPOSITORY]
    return tracker.create_pipeline(spec, extra_tags=tags)
