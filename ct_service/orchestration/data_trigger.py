"""The data trigger: a production model whose declared data has a new version is
trained again on it, with production's code. One check (`check`), run by Celery
beat's scan every CT_DATA_SCAN_SECONDS and at once by the signed data hook, does, in
order:

1. find the watched models: each registered model whose `@production` version
   records the data it trained on (`ct.data_source`, `ct.data_version`);
2. keep those whose source holds one of the changed objects the hook names (the scan
   keeps all);
3. read each source's current version (a listing, nothing fetched); a source that
   cannot be read is reported and the others go on;
4. start nothing when it is production's version, or when a pipeline of the model has
   this version already (any trigger: the same version twice starts nothing);
5. claim (model, version), create the pipeline from production's (its project,
   commit and source, target; the budget of the settings) pinned to the version,
   with the reason "data changed: version ...", recording production's run (its
   first attempt takes production's configuration, or weights: docs/data.md), and
   hand back its start step."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum

from mlflow.exceptions import MlflowException

from ct_service import keys as names
from ct_service import run_tags
from ct_service.data_spec import DataSpec, split_s3
from ct_service.data_version import DataVersion, version_of
from ct_service.exceptions import CtError
from ct_service.execution.lease import holder
from ct_service.keystore import keystore_for
from ct_service.orchestration.data_inputs import pinned_config
from ct_service.orchestration.pipeline import Step, Task
from ct_service.orchestration.production_start import production_tags
from ct_service.registry import PRODUCTION
from ct_service.settings import Settings
from ct_service.tracking import Tracker

log = logging.getLogger(__name__)


class DataTask(str, Enum):
    """Celery task names of the data and schedule triggers (workers.tasks runs them on
    the pipeline queue)."""

    SCAN = "ct.data.scan"  # Celery beat: check every watched source
    CHECK = "ct.data.check"  # the data hook: check the sources of the objects it names
    SCHEDULE = "ct.schedule.fire"  # Celery beat's crontab: a model's schedule is due
    BRANCH_SCHEDULE = "ct.schedule.branch"  # beat's crontab: a repositories.yaml schedule


@dataclass(frozen=True)
class Watched:
    model_name: str
    model_version: str  # production's version number
    pipeline_id: str  # the pipeline that trained it
    data: DataVersion  # the data it trained on
    run_id: str = ""  # the run that trained it (its configuration and checkpoint)


@dataclass
class CheckReport:
    started: dict[str, str] = field(default_factory=dict)  # model -> pipeline id
    unchanged: list[str] = field(default_factory=list)  # models whose data is production's
    known: dict[str, str] = field(default_factory=dict)  # model -> pipeline of this version
    errors: dict[str, str] = field(default_factory=dict)  # model -> why its source is unread


def watched(tracker: Tracker) -> list[Watched]:
    """The registered models whose production version records its data."""
    found = []
    for model in tracker.client.search_registered_models(max_results=1000):
        try:
            version = tracker.client.get_model_version_by_alias(model.name, PRODUCTION)
        except MlflowException:
            continue  # nothing in production
        data = DataVersion.from_tags(version.tags)
        pipeline_id = version.tags.get(run_tags.PIPELINE_ID, "")
        if data is not None and data.source and pipeline_id:
            found.append(
                Watched(model.name, str(version.version), pipeline_id, data, version.run_id or "")
            )
    return found


def concerns(source: str, changed: Iterable[str]) -> bool:
    """Whether any changed object (s3://bucket/key, or a source URL itself) is under
    the source."""
    if not source.startswith("s3://"):
        return any(c.rstrip("/") == source.rstrip("/") for c in changed)
    bucket, prefix = split_s3(source)
    for url in changed:
        try:
            other_bucket, key = split_s3(url)
        except ValueError:
            continue
        if other_bucket == bucket and (key.startswith(prefix) or prefix.startswith(key)):
            return True
    return False


def check(
    settings: Settings, changed: Iterable[str] | None = None
) -> tuple[CheckReport, list[Step]]:
    """One pass (the steps in the module's docstring); `changed`: the objects a data
    hook named (None: every watched source)."""
    tracker = Tracker(settings)
    changed = None if changed is None else list(changed)
    report, steps = CheckReport(), []
    for model in watched(tracker):
        if changed is not None and not concerns(model.data.source, changed):
            continue
        try:
            step = _check_one(settings, tracker, model, report)
        except CtError as error:
            log.warning("data of %s cannot be checked: %s", model.model_name, error)
            report.errors[model.model_name] = str(error)
            continue
        if step is not None:
            steps.append(step)
    return report, steps


def _check_one(
    settings: Settings, tracker: Tracker, model: Watched, report: CheckReport
) -> Step | None:
    spec = DataSpec(model.data.param, model.data.source)
    current = version_of(settings, spec)
    if current.digest == model.data.digest:
        report.unchanged.append(model.model_name)
        return None
    earlier = pipeline_with_data(tracker, model.model_name, current.digest)
    if earlier:
        report.known[model.model_name] = earlier
        return None
    keys = keystore_for(settings)
    claim = names.data_claim(model.model_name, current.digest)
    if not keys.claim(claim, holder(), names.CREATE_CLAIM_SECONDS):
        return None  # another check is creating it right now
    try:
        if pipeline_with_data(tracker, model.model_name, current.digest):
            return None  # created between the search and the claim
        reason = (
            f"data changed: version {current.short} of {current.source} "
            f"({current.objects} objects; production {model.model_name} "
            f"v{model.model_version} trained on {model.data.short})"
        )
        pipeline_id = create_like_production(settings, tracker, model, current, "data", reason)
    finally:
        keys.delete(claim)
    report.started[model.model_name] = pipeline_id
    log.info("%s -> pipeline %s", reason, pipeline_id)
    return Step(Task.START, (pipeline_id,))


def create_like_production(
    settings: Settings,
    tracker: Tracker,
    model: Watched,
    data: DataVersion,
    trigger: str,
    reason: str,
) -> str:
    """A queued pipeline that trains production's code (its project, commit, source
    and parameters asked for) on `data`, recording what triggered it and why, and
    production's run, whose configuration its first attempt takes (production_start)."""
    production = tracker.pipeline(model.pipeline_id)
    given = {k: v for k, v in production.spec.initial_config.items() if k != data.param}
    spec = replace(
        production.spec,
        initial_config=pinned_config(settings, data, given),
        budget=settings.budget,
        source_branch="",  # not a push: a newer push to the branch does not supersede it
        source_sequence=0,
    )
    tags = {
        **data.to_tags(),
        **production_tags(model.model_version, model.run_id),
        run_tags.TRIGGER: trigger,
        run_tags.TRIGGER_REASON: reason,
    }
    repository = production.tags.get(run_tags.SOURCE_REPOSITORY, "")
    if repository:  # its code is a push's: fetched from the allow-list, run in a container
        tags[run_tags.SOURCE_REPOSITORY] = repository
    return tracker.create_pipeline(spec, extra_tags=tags)


def pipeline_with_data(tracker: Tracker, model_name: str, digest: str) -> str:
    """A pipeline of this model pinned to this data version, or ""."""
    experiments = [e.experiment_id for e in tracker.client.search_experiments()]
    if not experiments:
        return ""
    runs = tracker.client.search_runs(
        experiments,
        f"tags.`{run_tags.KIND}` = 'pipeline'"
        f" and tags.`{run_tags.MODEL_NAME}` = '{_quoted(model_name)}'"
        f" and tags.`{run_tags.DATA_VERSION}` = '{digest}'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else ""


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
