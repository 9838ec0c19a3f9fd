"""The champion's score before a promotion: `@production` re-scored on the winner's
data version, so that both numbers are measured on the same test data (the same data
version, the same metric, the project's evaluate code path; orchestration/scoring.py).

A step of its own on the training queue (scoring runs a project, possibly in Docker,
as long as a training may take). `score_champion` does, in order:

1. nothing unless the pipeline is promoting;
2. find the version holding @production (none: nothing to compare with);
3. decide whether it can be re-scored: the winner must record a data version, the
   champion must have trained on declared data, and a folder source must still hold
   the winner's version (it is read in place); else its stored metric, with why;
4. score it on the winner's data version (a finished scoring run of the same version,
   data and metric is reused, so a replayed or recovered step scores nothing twice);
   a champion that cannot be scored (its flavour does not load, its project or
   environment is gone, any error but a broken connection, which retries the step)
   falls back to its stored metric, saying why;
5. record the result on the pipeline (ct.champion_score) and hand on to PROMOTE,
   which compares with it (registry.promote; a champion that moved meanwhile is
   scored again)."""

from __future__ import annotations

import logging

from mlflow.entities.model_registry import ModelVersion

from ct_service import run_tags
from ct_service.champion import ChampionScore
from ct_service.data_spec import DataSpec, SourceKind
from ct_service.data_version import DataVersion, version_of
from ct_service.exceptions import CtError, is_infrastructure_failure
from ct_service.orchestration import scoring
from ct_service.registry import PRODUCTION, version_with_alias
from ct_service.settings import Settings
from ct_service.tracking import Pipeline, PipelineStatus, Tracker

log = logging.getLogger(__name__)
NONE = "none"  # ct.champion_score when no version held @production


def score_champion(settings: Settings, pipeline_id: str) -> bool:
    """Score production for the pipeline's winner (the steps above); whether the
    pipeline is promoting (then PROMOTE follows)."""
    tracker = Tracker(settings)
    pipeline = tracker.pipeline(pipeline_id)
    if pipeline.status is not PipelineStatus.PROMOTING:
        return False
    found = champion_score(settings, tracker, pipeline)
    tracker.set_tags(pipeline_id, {run_tags.CHAMPION_SCORE: found.to_json() if found else NONE})
    if found is not None:
        log.info("pipeline %s: %s", pipeline_id, found.basis_text())
    return True


def recorded(pipeline: Pipeline) -> ChampionScore | None:
    """The champion score the scoring step recorded on the pipeline (None: none)."""
    return ChampionScore.from_json(pipeline.tags.get(run_tags.CHAMPION_SCORE, ""))


def is_recorded(pipeline: Pipeline) -> bool:
    """Whether the scoring step ran for the pipeline (NONE is recorded: no champion)."""
    return run_tags.CHAMPION_SCORE in pipeline.tags


def current_champion(tracker: Tracker, pipeline: Pipeline) -> str:
    """The version holding @production now ("" for none)."""
    held = version_with_alias(tracker.client, pipeline.spec.model_name, PRODUCTION)
    return str(held.version) if held is not None else ""


def champion_score(
    settings: Settings, tracker: Tracker, pipeline: Pipeline
) -> ChampionScore | None:
    """What the pipeline's winner is compared with; None without a champion."""
    name, metric = pipeline.spec.model_name, pipeline.spec.target.metric
    champion = version_with_alias(tracker.client, name, PRODUCTION)
    if champion is None:
        return None
    version = str(champion.version)
    stored = _stored(tracker, champion, metric)
    winner = tracker.client.get_run(pipeline.tags[run_tags.CANDIDATE])
    data = DataVersion.from_tags(winner.data.tags)
    if data is None:
        why = "the candidate records no data version"
        return ChampionScore.from_stored(version, metric, stored, why)
    if not champion.tags.get(run_tags.DATA_VERSION):
        why = f"production v{version} trained on no declared data"
        return ChampionScore.from_stored(version, metric, stored, why)
    try:
        moved = _folder_moved_on(settings, data)
        if moved:
            return ChampionScore.from_stored(version, metric, stored, moved, data.digest)
        found = scoring.score(settings, tracker, name, version, data)
    except Exception as error:  # its pipeline, project or model is gone: said, not raised
        if is_infrastructure_failure(error):
            raise  # the step is retried
        failure = _one_line(error)
        log.warning("pipeline %s: production v%s not scored: %s", pipeline.id, version, failure)
        return ChampionScore.from_stored(version, metric, stored, failure, data.digest)
    if found.value is None:
        return ChampionScore.from_stored(
            version, metric, stored, found.failure, data.digest, found.run_id
        )
    if found.metric != metric:
        why = f"it was scored by its own target metric {found.metric}, not {metric}"
        return ChampionScore.from_stored(version, metric, stored, why, data.digest, found.run_id)
    return ChampionScore.rescored(
        version, metric, found.value, stored, data.digest, found.method, found.run_id
    )


def _folder_moved_on(settings: Settings, data: DataVersion) -> str:
    """Why a folder source cannot give the winner's data version any more (it is read
    in place, and holds another version now); "" when it still holds it or is S3 (a
    changed S3 prefix is refused by the fetch itself)."""
    spec = DataSpec(data.param, data.source)
    if spec.kind is not SourceKind.FOLDER:
        return ""
    now = version_of(settings, spec)
    if now.digest == data.digest:
        return ""
    return f"{data.source} holds version {now.short} now, no longer the candidate's"


def _one_line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    if isinstance(error, CtError):
        return text[:300] or type(error).__name__
    return f"{type(error).__name__}: {text}"[:300]


def _stored(tracker: Tracker, champion: ModelVersion, metric: str) -> float | None:
    """The metric the champion's run logged when it was trained."""
    if not champion.run_id:
        return None
    return tracker.client.get_run(champion.run_id).data.metrics.get(metric)
