"""The decay watch: on a schedule (CT_DECAY_SCHEDULE, Celery beat), `@production` of
each model whose production version records its data is scored on the newest data
version of its source, and a model that has decayed is trained again. One check
(`check`) does, for each watched model, in order:

1. read its source's current version (a listing or the folder's hashes; a source that
   cannot be read is reported and the other models go on);
2. claim (production version, data version): a check already scoring it goes on alone;
3. score production on it (orchestration/scoring.py; a pair scored before gives its
   recorded score and is not logged or announced again);
4. log a first score on the model's monitoring run (`ct.kind` monitor, one per model):
   the metric as a series, one step a score, `<metric>/data/<version>` per data
   version, and the score production was promoted with beside it;
5. judge it (decay.py): below the target, or worse than the promoted score by more
   than CT_DECAY_TOLERANCE, is decay;
6. on decay, unless a pipeline of the model has this data version already (any
   trigger: a data-changed pipeline running for it counts), claim (model, data
   version) as the data trigger does and create the pipeline that trains
   production's code on it, reason "decay: ..." with both numbers;
7. tell people (notify.py) the first time a pair is judged decayed, with both
   numbers and the pipeline."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum

from ct_service import keys as names
from ct_service import notify, run_tags
from ct_service.data_spec import DataSpec
from ct_service.data_version import DataVersion, version_of
from ct_service.decay import judge
from ct_service.exceptions import CtError, InfrastructureError
from ct_service.execution.lease import holder
from ct_service.keystore import keystore_for
from ct_service.orchestration.data_trigger import (
    Watched,
    create_like_production,
    pipeline_with_data,
    watched,
)
from ct_service.orchestration.pipeline import Step, Task
from ct_service.orchestration.scoring import Score, score, scored
from ct_service.report import Notice, run_url
from ct_service.settings import Settings
from ct_service.tracking import Pipeline, Tracker

log = logging.getLogger(__name__)


class DecayTask(str, Enum):
    """The decay watch's Celery task (workers.tasks; on the training queue: it runs
    models, with training's time limit)."""

    CHECK = "ct.decay.check"


@dataclass
class DecayReport:
    started: dict[str, str] = field(default_factory=dict)  # model -> the decay pipeline
    decayed: dict[str, str] = field(default_factory=dict)  # model -> the verdict's reason
    holding: dict[str, str] = field(default_factory=dict)  # model -> why it holds
    known: dict[str, str] = field(default_factory=dict)  # model -> pipeline of this version
    errors: dict[str, str] = field(default_factory=dict)  # model -> why it was not scored
    notified: dict[str, dict[str, str]] = field(default_factory=dict)  # model -> transports


def check(settings: Settings) -> tuple[DecayReport, list[Step]]:
    """One pass (the steps in the module's docstring)."""
    tracker = Tracker(settings)
    report, steps = DecayReport(), []
    for model in watched(tracker):
        try:
            step = _check_one(settings, tracker, model, report)
        except InfrastructureError:
            raise
        except CtError as error:
            log.warning("decay of %s cannot be checked: %s", model.model_name, error)
            report.errors[model.model_name] = str(error)
            continue
        if step is not None:
            steps.append(step)
    return report, steps


def _check_one(
    settings: Settings, tracker: Tracker, model: Watched, report: DecayReport
) -> Step | None:
    name = model.model_name
    current = version_of(settings, DataSpec(model.data.param, model.data.source))
    keys = keystore_for(settings)
    claim = names.decay_claim(name, model.model_version, current.digest)
    if not keys.claim(claim, holder(), settings.training_time_limit_seconds):
        return None  # another check scores this pair right now
    try:
        production = tracker.pipeline(model.pipeline_id)
        metric = production.spec.target.metric
        before = scored(tracker, production.experiment_id, name, model.model_version,
                        current.digest, metric)  # fmt: skip
        found = before or score(settings, tracker, name, model.model_version, current)
        if found.value is None:
            report.errors[name] = found.failure
            return None
        promoted = _promoted_score(tracker, model, metric)
        if before is None:
            log_point(tracker, production, found, promoted)
        subject = f"production {name} v{model.model_version}"
        verdict = judge(production.spec.target, found.value, promoted,
                        settings.data.decay_tolerance, subject, current.short)  # fmt: skip
        tracker.set_tags(found.run_id, {run_tags.DECAY: verdict.reason})
        if not verdict.decayed:
            report.holding[name] = verdict.reason
            return None
        report.decayed[name] = verdict.reason
        pipeline_id, step = _pipeline_for(settings, tracker, model, current, verdict.reason)
        if step is not None:
            report.started[name] = pipeline_id
        else:
            report.known[name] = pipeline_id
        if before is None:  # the first time this pair is judged: tell people once
            started = step is not None
            report.notified[name] = _tell(
                settings, production, found, promoted, verdict.reason, pipeline_id, started
            )
        return step
    finally:
        keys.delete(claim)


def _pipeline_for(
    settings: Settings, tracker: Tracker, model: Watched, data: DataVersion, reason: str
) -> tuple[str, Step | None]:
    """(the pipeline that trains on `data`, its start step when created here)."""
    earlier = pipeline_with_data(tracker, model.model_name, data.digest)
    if earlier:
        return earlier, None
    keys = keystore_for(settings)
    claim = names.data_claim(model.model_name, data.digest)  # the data trigger's claim too
    if not keys.claim(claim, holder(), names.CREATE_CLAIM_SECONDS):
        return "", None  # the data trigger is creating it right now
    try:
        earlier = pipeline_with_data(tracker, model.model_name, data.digest)
        if earlier:
            return earlier, None
        pipeline_id = create_like_production(settings, tracker, model, data, "decay", reason)
    finally:
        keys.delete(claim)
    log.info("%s -> pipeline %s", reason, pipeline_id)
    return pipeline_id, Step(Task.START, (pipeline_id,))


def _promoted_score(tracker: Tracker, model: Watched, metric: str) -> float | None:
    """The metric production's version was promoted with (its ct.metric.* tag)."""
    version = tracker.client.get_model_version(model.model_name, model.model_version)
    try:
        return float(version.tags[run_tags.METRIC_PREFIX + metric])
    except (KeyError, ValueError):
        return None


def monitoring_run(tracker: Tracker, production: Pipeline) -> str:
    """The model's monitoring run in its experiment (created the first time)."""
    model_name = production.spec.model_name
    quoted = model_name.replace("\\", "\\\\").replace("'", "\\'")
    runs = tracker.client.search_runs(
        [production.experiment_id],
        f"tags.`{run_tags.KIND}` = 'monitor' and tags.`{run_tags.MODEL_NAME}` = '{quoted}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if runs:
        return runs[0].info.run_id
    run = tracker.client.create_run(
        production.experiment_id,
        run_name=f"monitor {model_name}",
        tags={run_tags.KIND: "monitor", run_tags.MODEL_NAME: model_name},
    )
    return run.info.run_id


def log_point(tracker: Tracker, production: Pipeline, found: Score, promoted: float | None) -> int:
    """One score on the monitoring run; its step."""
    run_id = monitoring_run(tracker, production)
    step = len(tracker.client.get_metric_history(run_id, found.metric)) + 1
    assert found.value is not None
    values = {found.metric: found.value, f"{found.metric}/data/{found.data.short}": found.value}
    if promoted is not None:
        values[f"{found.metric}/promoted"] = promoted
    for metric, value in values.items():
        tracker.client.log_metric(run_id, metric, value, step=step)
    tracker.set_tags(
        run_id,
        {
            run_tags.MONITOR_STEP_PREFIX + str(step): (
                f"v{found.model_version} on {found.data.short} ({found.run_id})"
            )
        },
    )
    return step


def _tell(
    settings: Settings,
    production: Pipeline,
    found: Score,
    promoted: float | None,
    reason: str,
    pipeline_id: str,
    started: bool,
) -> dict[str, str]:
    """Notify people; never raises (a notification is a side effect)."""
    then = f"{promoted:.4f}" if promoted is not None else "not recorded"
    what = "started" if started else "already trains on this data"
    lines = (
        reason,
        f"scored: {found.metric} {found.value:.4f} on data {found.data.describe()}",
        f"promoted with: {found.metric} {then}",
        f"pipeline {pipeline_id or '(being created by the data trigger)'}: {what}",
        f"scoring run: {run_url(settings, production.experiment_id, found.run_id)}",
    )
    notice = Notice(
        subject=f"{found.model_name} v{found.model_version} decayed on data {found.data.short}",
        lines=lines,
        details={
            "model": found.model_name,
            "version": found.model_version,
            "metric": found.metric,
            "scored": found.value,
            "promoted": promoted,
            "data_version": found.data.digest,
            "pipeline": pipeline_id,
            "reason": reason,
        },
        pipeline_id=pipeline_id,
    )
    try:
        return notify.send_all(notice, notify.transports(settings))
    except Exception as error:  # never the watch's failure
        log.warning("decay notice for %s not sent: %r", found.model_name, error)
        return {"notice": f"failed: {type(error).__name__}"}
