"""A person's approval of the winner a manual project left as `@candidate`: approve
gives it @production, reject drops it with a reason; both are recorded in the model's
production history (history.py) and on the version (`ct.approval`).

Either is safe to repeat: approving the version that was approved and still holds
@production, or rejecting one that was rejected, changes nothing and says so. Acting on
any other version than the waiting candidate is refused with the candidate's number."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ct_service import history, registry, run_tags
from ct_service.champion import ChampionScore, score_text
from ct_service.exceptions import ApprovalError
from ct_service.history import Cause, Event, Move, Trigger
from ct_service.registry import CANDIDATE, PRODUCTION, version_with_alias

APPROVED, REJECTED = "approved", "rejected"  # how a version's ct.approval tag starts


@dataclass(frozen=True)
class Verdict:
    """What approve or reject did: the version, production's version after it, the
    line for people, and whether this call changed anything (False on a repeat)."""

    version: str
    production: str
    reason: str
    changed: bool = True

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "production": self.production,
            "reason": self.reason,
            "changed": self.changed,
        }


def approve(client: MlflowClient, name: str, version: str, person: str) -> Verdict:
    """Give the waiting candidate @production (the version it replaces becomes
    @previous-production) and drop its @candidate alias."""
    current = _production(client, name)
    waiting = _candidate(client, name)
    if waiting != version:
        if current == version and _approval(client, name, version).startswith(APPROVED):
            return Verdict(version, current, f"version {version} was approved already", False)
        raise ApprovalError(_not_the_candidate(name, version, waiting))
    champion = version_with_alias(client, name, PRODUCTION)
    registry.move_production(client, name, version, champion)
    client.delete_registered_model_alias(name, CANDIDATE)
    client.set_model_version_tag(
        name, version, run_tags.APPROVAL, f"{APPROVED} by {person} at {registry.when()}"
    )
    event = _event(client, name, Move.APPROVED, current, version, version, person)
    replacing = f"; version {current} is @previous-production" if current != version else ""
    reason = f"version {version} approved by {person}: {_comparison(event)}{replacing}"
    history.record(client, name, replace(event, reason=reason))
    return Verdict(version, version, reason)


def reject(client: MlflowClient, name: str, version: str, person: str, why: str) -> Verdict:
    """Drop the waiting candidate's @candidate alias, with the reason; production stays."""
    why = " ".join(why.split())
    if not why:
        raise ApprovalError("a rejection needs a reason (--reason TEXT)")
    current = _production(client, name)
    waiting = _candidate(client, name)
    if waiting != version:
        if _approval(client, name, version).startswith(REJECTED):
            return Verdict(version, current, f"version {version} was rejected already", False)
        raise ApprovalError(_not_the_candidate(name, version, waiting))
    client.delete_registered_model_alias(name, CANDIDATE)
    client.set_model_version_tag(
        name, version, run_tags.APPROVAL, f"{REJECTED} by {person} at {registry.when()}: {why}"
    )
    event = _event(client, name, Move.REJECTED, current, current, version, person)
    reason = f"version {version} rejected by {person}: {why}; {_comparison(event)}"
    history.record(client, name, replace(event, reason=reason))
    return Verdict(version, current, reason)


def _event(
    client: MlflowClient,
    name: str,
    move: Move,
    from_version: str,
    to_version: str,
    candidate: str,
    person: str,
) -> Event:
    """The decision as a history event, scored by the metric the candidate was judged
    by; production's score is the one the candidate was judged against when production
    has not moved since (re-scored on the candidate's data, ct.comparison), else its
    stored metric."""
    metric = registry.judged_metric(client, name, candidate)
    tags = client.get_model_version(name, candidate).tags
    judged = ChampionScore.from_json(tags.get(run_tags.COMPARISON, ""))
    if judged is not None and (judged.version != from_version or judged.metric != metric):
        judged = None  # production moved since: its own stored metric
    return Event(
        move,
        from_version,
        to_version,
        candidate,
        metric,
        registry.version_score(client, name, candidate, metric),
        judged.value if judged else registry.version_score(client, name, from_version, metric),
        "",
        Cause(Trigger.PERSON, person=person),
        data_version=judged.data_version if judged else "",
        production_basis=judged.basis_text() if judged else "",
    )


def _comparison(event: Event) -> str:
    """The scores for people: `test_accuracy 0.95 against production's 0.9 (version 4)`,
    and how production's number was obtained when the promotion step recorded it."""
    score = score_text(event.candidate_score)
    if not event.from_version:
        return f"{event.metric} {score}, no version was in production"
    held = score_text(event.production_score)
    basis = f"; {event.production_basis}" if event.production_basis else ""
    return (
        f"{event.metric} {score} against production's {held} (version {event.from_version}){basis}"
    )


def _production(client: MlflowClient, name: str) -> str:
    registry.require_model(client, name)
    held = version_with_alias(client, name, PRODUCTION)
    return str(held.version) if held is not None else ""


def _candidate(client: MlflowClient, name: str) -> str:
    waiting = version_with_alias(client, name, CANDIDATE)
    return str(waiting.version) if waiting is not None else ""


def _approval(client: MlflowClient, name: str, version: str) -> str:
    """The version's ct.approval tag ("" for a version the registry does not hold)."""
    try:
        return client.get_model_version(name, version).tags.get(run_tags.APPROVAL, "")
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return ""
        raise


def _not_the_candidate(name: str, version: str, waiting: str) -> str:
    if not waiting:
        return f"version {version} of {name!r} is not awaiting approval: no version of it is"
    return (
        f"version {version} of {name!r} is not awaiting approval: "
        f"the candidate is version {waiting}"
    )
