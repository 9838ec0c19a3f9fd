"""Promotion in the MLflow model registry, champion/challenger, approval and rollback.

The production version holds alias `production` and stage "Production"; the one it
replaced holds alias `previous-production`, so a rollback is one call. A project whose
promotion is manual gets its winner the alias `candidate` instead, for a person to
approve or reject (approval.py). Every decision is recorded in the model's production
history (history.py), so `rollback --to` can go back to any version that was in
production.
"""

from __future__ import annotations

import logging
import shlex
import time
import warnings
from dataclasses import dataclass, replace

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from ct_service import history, run_tags
from ct_service.champion import ChampionScore, decision
from ct_service.exceptions import CtError, ModelNotFound, RollbackError
from ct_service.history import Cause, Event, Move, Trigger
from ct_service.target import Target

MODEL_NAME_IN_RUN = "model"  # projects log their model as mlflow.<flavor>.log_model(name="model")
PRODUCTION = "production"
PREVIOUS = "previous-production"
CANDIDATE = "candidate"  # a winner waiting for a person's approval
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Promotion:
    version: str
    promoted: bool
    reason: str
    previous_version: str = ""
    waiting: bool = False  # it awaits a person's approval as @candidate


def register(client: MlflowClient, name: str, run_id: str, tags: dict[str, str]) -> str:
    """The version registered from `run_id`'s model; registers it only once."""
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        return str(existing[0].version)
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source, model_id = _model_source(client, run_id)
    version = client.create_model_version(name, source, run_id=run_id, tags=tags, model_id=model_id)
    return str(version.version)


def _model_source(client: MlflowClient, run_id: str) -> tuple[str, str | None]:
    """MLflow 3 keeps a run's model as a LoggedModel (`models:/<model_id>`), not
    under the run's own artifacts; `runs:/` URIs are resolved the same way."""
    run = client.get_run(run_id)
    models = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME_IN_RUN}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
    )
    if models:
        return f"models:/{models[0].model_id}", models[0].model_id
    if any(
        a.path == f"{MODEL_NAME_IN_RUN}/MLmodel"
        for a in client.list_artifacts(run_id, MODEL_NAME_IN_RUN)
    ):
        return f"{run.info.artifact_uri}/{MODEL_NAME_IN_RUN}", None
    raise CtError(f"run {run_id} logged no model named {MODEL_NAME_IN_RUN!r} to register")


def promote(
    client: MlflowClient,
    name: str,
    run_id: str,
    metric: float | None,
    target: Target,
    tags: dict[str, str],
    cause: Cause | None = None,
    manual: bool = False,
    champion_score: ChampionScore | None = None,
) -> Promotion:
    """Register the run's model and give it @production if it beats the champion (or,
    with `manual`, @candidate for a person to approve); the decision goes into the
    model's history. The champion's number is `champion_score` when it is of the
    version holding @production (re-scored on the candidate's data, or its stored
    metric with the reason), else its stored metric. Replayed, it registers and
    records nothing twice."""
    cause = cause or Cause(Trigger.RUN)
    version = register(client, name, run_id, {**tags, run_tags.TARGET_METRIC: target.metric})
    champion = version_with_alias(client, name, PRODUCTION)
    if champion is not None and str(champion.version) == version:  # a replayed step
        _record_if_missed(client, name, version, target.metric, metric, cause, champion_score)
        return Promotion(version, True, f"version {version} already holds @{PRODUCTION}")
    against = _against(client, champion, target.metric, champion_score)
    held = str(champion.version) if champion is not None else ""
    # the decision about `version`, production staying with `held` unless it moves
    judged = Event(
        Move.KEPT, held, held, version, target.metric, metric,
        against.value if against else None, "", cause,
        data_version=against.data_version if against else "",
        production_basis=against.basis_text() if against else "",
    )  # fmt: skip
    if against is not None:
        client.set_model_version_tag(name, version, run_tags.COMPARISON, against.to_json())
    if against is not None and against.value is not None:
        if not target.is_better(metric, against.value):
            reason = decision("kept", version, target.metric, metric, against)
            history.record(client, name, replace(judged, reason=reason))
            return Promotion(version, False, reason, held)
    if manual:
        return _propose(client, name, judged, against)
    move_production(client, name, version, champion)
    reason = decision("promoted", version, target.metric, metric, against)
    history.record(
        client, name, replace(judged, move=Move.PROMOTED, to_version=version, reason=reason)
    )
    return Promotion(version, True, reason, held)


def _against(
    client: MlflowClient,
    champion: ModelVersion | None,
    metric: str,
    given: ChampionScore | None,
) -> ChampionScore | None:
    """What the candidate is compared with: `given` when it scores the version holding
    @production, else that version's stored metric (None without a champion)."""
    if champion is None:
        return None
    if given is not None and given.version == str(champion.version) and given.metric == metric:
        return given
    stored = _metric(client, champion.run_id, metric)
    why = "no re-score was made for it" if given is None else "production moved after scoring"
    return ChampionScore.from_stored(str(champion.version), metric, stored, why)


def _record_if_missed(
    client: MlflowClient,
    name: str,
    version: str,
    metric_name: str,
    metric: float | None,
    cause: Cause,
    champion_score: ChampionScore | None = None,
) -> None:
    """A promotion step that died between moving @production and recording it: its
    replay records the move (the version it replaced holds @previous-production),
    compared with the score it was judged against when that was of this version."""
    if not cause.pipeline_id or history.read(client, name).has(Move.PROMOTED, cause.pipeline_id):
        return
    previous = version_with_alias(client, name, PREVIOUS)
    held = str(previous.version) if previous is not None else ""
    against = None
    if held:
        stored = version_score(client, name, held, metric_name)
        against = ChampionScore.from_stored(
            held, metric_name, stored, "no re-score was made for it"
        )
        if champion_score is not None and champion_score.version == held:
            against = champion_score
    reason = decision("promoted", version, metric_name, metric, against)
    event = Event(
        Move.PROMOTED, held, version, version, metric_name, metric,
        against.value if against else None, reason, cause,
        data_version=against.data_version if against else "",
        production_basis=against.basis_text() if against else "",
    )  # fmt: skip
    history.record(client, name, event)


def _propose(
    client: MlflowClient, name: str, judged: Event, against: ChampionScore | None
) -> Promotion:
    """Give the winner @candidate for a person to approve, production unchanged; a
    candidate still waiting makes way for it (recorded as replaced)."""
    version, held = judged.candidate, judged.from_version
    waiting = version_with_alias(client, name, CANDIDATE)
    if waiting is not None and str(waiting.version) != version:
        old = str(waiting.version)
        client.set_model_version_tag(
            name, old, run_tags.APPROVAL, f"replaced by version {version} at {when()}"
        )
        reason = f"version {old} no longer awaits approval: replaced by version {version}"
        score = version_score(client, name, old, judged.metric)
        replaced = replace(
            judged, move=Move.REPLACED, candidate=old, candidate_score=score, reason=reason
        )
        history.record(client, name, replaced)
    if waiting is None or str(waiting.version) != version:
        client.set_registered_model_alias(name, CANDIDATE, version)
        client.set_model_version_tag(name, version, run_tags.APPROVAL, f"waiting since {when()}")
    quoted = shlex.quote(name)
    reason = (
        f"{decision('proposed', version, judged.metric, judged.candidate_score, against)}; "
        f"to promote it: ct-service approve {quoted} {version}; to drop it: "
        f"ct-service reject {quoted} {version} --reason '...'"
    )
    history.record(client, name, replace(judged, move=Move.PROPOSED, reason=reason))
    return Promotion(version, False, reason, held, waiting=True)


def move_production(
    client: MlflowClient, name: str, version: str, champion: ModelVersion | None
) -> None:
    """Give @production (and stage Production) to `version`; the champion it replaces
    gets @previous-production."""
    if champion is not None and str(champion.version) != version:
        client.set_registered_model_alias(name, PREVIOUS, champion.version)
    client.set_registered_model_alias(name, PRODUCTION, version)
    _to_production_stage(client, name, version)


def rollback(client: MlflowClient, name: str, to: str = "", person: str = "") -> Promotion:
    """Give @production back to `to`, any version that was in production (default:
    @previous-production's). The version it replaces becomes @previous-production, so
    a second rollback without `to` undoes the first."""
    require_model(client, name)
    current = version_with_alias(client, name, PRODUCTION)
    if not to:
        previous = version_with_alias(client, name, PREVIOUS)
        if previous is None:
            raise RollbackError(f"model {name!r} has no @{PREVIOUS} version to roll back to")
        to = str(previous.version)
    else:
        _require_was_in_production(client, name, to, current)
    held = str(current.version) if current is not None else ""
    if to == held:
        raise RollbackError(f"version {to} of {name!r} holds @{PRODUCTION} already")
    move_production(client, name, to, current)
    reason = f"rolled back {name} to version {to} (was {held or 'none'})"
    metric = judged_metric(client, name, to)
    history.record(
        client,
        name,
        Event(
            Move.ROLLED_BACK,
            held,
            to,
            to,
            metric,
            version_score(client, name, to, metric),
            version_score(client, name, held, metric),
            reason,
            Cause(Trigger.PERSON, person=person),
        ),
    )
    return Promotion(to, True, reason, held or "none")


def _require_was_in_production(
    client: MlflowClient, name: str, version: str, current: ModelVersion | None
) -> None:
    """Refuse a version that never held @production, naming the ones that did."""
    were = history.read(client, name).were_in_production()
    for alias in (PRODUCTION, PREVIOUS):
        holder = current if alias == PRODUCTION else version_with_alias(client, name, alias)
        if holder is not None and str(holder.version) not in were:
            were.append(str(holder.version))
    if version not in were:
        listed = ", ".join(sorted(were, key=_version_order)) or "none yet"
        raise RollbackError(
            f"version {version} of {name!r} was never in production; versions that were: {listed}"
        )


def judged_metric(client: MlflowClient, name: str, version: str) -> str:
    """The metric the version was judged by when it was registered ("" if unknown)."""
    tags = client.get_model_version(name, version).tags
    return tags.get(run_tags.TARGET_METRIC, "")


def version_score(client: MlflowClient, name: str, version: str, metric: str) -> float | None:
    """The version's run's value of `metric` (None without a version or a value)."""
    if not version or not metric:
        return None
    return _metric(client, client.get_model_version(name, version).run_id, metric)


def when() -> str:
    """Now, for the texts of the approval tag."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


def require_model(client: MlflowClient, name: str) -> None:
    """Refuse a model the registry does not hold, naming the ones it holds."""
    try:
        client.get_registered_model(name)
        return
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    raise ModelNotFound(f"no registered model {name!r}; {_registered_names(client)}")


def _registered_names(client: MlflowClient, limit: int = 10) -> str:
    """The registered models' names, for an error message."""
    names = [model.name for model in client.search_registered_models(max_results=limit)]
    if not names:
        return "none is registered yet"
    return "registered: " + ", ".join(names) + (", ..." if len(names) == limit else "")


def _to_production_stage(client: MlflowClient, name: str, version: str) -> None:
    """Stages are deprecated in MLflow 3 but still served (`models:/name/Production`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(
            name, version, "Production", archive_existing_versions=True
        )


def version_with_alias(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None  # no such model or alias yet
        raise


def _metric(client: MlflowClient, run_id: str | None, metric: str) -> float | None:
    if not run_id:
        return None
    return client.get_run(run_id).data.metrics.get(metric)


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """The model's service aliases and the versions holding them ("" for none)."""
    require_model(client, name)
    held = {}
    for alias in (PRODUCTION, PREVIOUS, CANDIDATE):
        version = version_with_alias(client, name, alias)
        held[alias] = str(version.version) if version is not None else ""
    return held


def history_json(client: MlflowClient, name: str) -> dict[str, object]:
    """The model's aliases and production history, newest first, for scripts (`history
    --json`, the status API's GET /models/<name>/history)."""
    held = aliases(client, name)
    found = history.read(client, name)
    return {
        "model": name,
        "aliases": held,
        "events": [event.to_json() for event in found.events],
        "unreadable": found.unreadable,
    }
