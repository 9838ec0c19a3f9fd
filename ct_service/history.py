"""The production history of a registered model: every move of `@production` (and
every decision that left it where it was) as an event, kept in the registry itself.

Each event is one tag on the registered model, `ct.history.<UTC time>-<nonce>`, whose
value is the event as JSON: when, which move, production's version before and after,
the version the move was about and both scores, the reason line, and the cause (the
pipeline and its trigger, or the person). The keys sort in time order, so the MLflow
UI's model page lists them in order, and a copy or a restart of the MLflow store keeps
them with the model. Each version a decision was about also carries `ct.decision`
(that reason) and, for approvals, `ct.approval`.

Only the service writes these tags: training code reaches MLflow through its run's
gateway, which never lets it touch the registry.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

from mlflow import MlflowClient

from ct_service import run_tags

log = logging.getLogger(__name__)
REASON_LIMIT = 1000  # characters of a reason kept in an event (a tag value holds 5000)


class Move(str, Enum):
    """What a history event records."""

    PROMOTED = "promoted"  # a pipeline's winner took @production
    KEPT = "kept"  # a pipeline's winner did not beat production: production stayed
    ROLLED_BACK = "rolled-back"  # a person gave @production to an earlier version
    PROPOSED = "proposed"  # a winner awaits approval as @candidate (production unchanged)
    REPLACED = "replaced"  # a waiting candidate made way for a newer one
    APPROVED = "approved"  # a person approved the candidate: it took @production
    REJECTED = "rejected"  # a person rejected the candidate: production unchanged

    @property
    def moves_production(self) -> bool:
        return self in (Move.PROMOTED, Move.ROLLED_BACK, Move.APPROVED)


class Trigger(str, Enum):
    """What started the decision: a pipeline's trigger, or a person."""

    PUSH = "push"  # a git push the webhook received
    RUN = "run"  # `ct-service run` (a person or a script)
    DATA = "data"  # a new version of the data (ct.trigger "data")
    SCHEDULE = "schedule"  # a scheduled retraining (ct.trigger "schedule")
    DECAY = "decay"  # production's metric fell (no pipeline is started for it yet)
    PERSON = "person"  # a command or an API call: rollback, approve, reject


@dataclass(frozen=True)
class Cause:
    trigger: Trigger
    pipeline_id: str = ""
    commit: str = ""
    branch: str = ""
    repository: str = ""  # "<provider>:<name>" of a push
    data: str = ""  # "version <digest>, name=digest, ..." the candidate trained on
    person: str = ""  # who ran the command (or the API call's `by`)

    def describe(self) -> str:
        """One line: "push github:acme/models main@1a2b3c4d, data mnist=1f2e..., pipeline
        5e6f7a8b" or "person alice"."""
        parts = [self.trigger.value]
        if self.repository:
            parts.append(self.repository)
        where = f"{self.branch}@" if self.branch else ""
        if self.commit:
            parts.append(f"{where}{self.commit[:8]}")
        if self.person:
            parts.append(self.person if self.trigger is Trigger.PERSON else f"by {self.person}")
        text = " ".join(parts)
        if self.data:
            text += f", data {self.data}"
        if self.pipeline_id:
            text += f", pipeline {self.pipeline_id[:8]}"
        return text


@dataclass(frozen=True)
class Event:
    """One decision about @production; `candidate` is the version it was about (the
    pipeline's winner, the version rolled back to, the one approved or rejected)."""

    move: Move
    from_version: str  # @production before ("" when there was none)
    to_version: str  # @production after
    candidate: str
    metric: str  # the metric the scores are of
    candidate_score: float | None
    production_score: float | None  # from_version's score
    reason: str
    cause: Cause
    time: float = field(default_factory=time.time)  # Unix seconds
    # Production's score was measured on this data version (the candidate's) when it
    # was re-scored; "" when the stored metric was used or for events from before.
    data_version: str = ""
    production_basis: str = ""  # how production_score was obtained (champion.py), one line

    def to_tag(self) -> tuple[str, str]:
        """The tag that stores it: a key in time order and the event as JSON."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.time))
        fraction = f"{self.time % 1:.6f}"[2:]
        key = f"{run_tags.HISTORY_PREFIX}{stamp}.{fraction}Z-{secrets.token_hex(2)}"
        found = asdict(self)
        found["reason"] = self.reason[:REASON_LIMIT]
        return key, json.dumps(found, sort_keys=True)

    @classmethod
    def from_tag(cls, value: str) -> Event:
        """The event a tag holds; ValueError when it is not one (edited by hand)."""
        try:
            data = json.loads(value)
            cause = data.pop("cause")
            return cls(
                **{**data, "move": Move(data["move"])},
                cause=Cause(**{**cause, "trigger": Trigger(cause["trigger"])}),
            )
        except (TypeError, KeyError, AttributeError, ValueError) as error:
            raise ValueError(f"not a history event: {error}") from None

    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.time))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "when": self.when()}


@dataclass(frozen=True)
class Read:
    """A model's events, newest first, and the keys of tags that held no event."""

    events: list[Event]
    unreadable: list[str]

    def were_in_production(self) -> list[str]:
        """The versions that held @production at some time, newest move first."""
        seen: list[str] = []
        for event in self.events:
            for version in (event.to_version, event.from_version):
                if version and version not in seen:
                    seen.append(version)
        return seen

    def has(self, move: Move, pipeline_id: str) -> bool:
        """Whether the pipeline's decision of this kind is recorded already."""
        return any(e.move is move and e.cause.pipeline_id == pipeline_id for e in self.events)


def read(client: MlflowClient, name: str) -> Read:
    """The registered model's history (its ct.history.* tags), newest first."""
    tags = client.get_registered_model(name).tags
    events, unreadable = [], []
    for key in sorted((k for k in tags if k.startswith(run_tags.HISTORY_PREFIX)), reverse=True):
        try:
            events.append(Event.from_tag(tags[key]))
        except ValueError:
            unreadable.append(key)
    return Read(events, unreadable)


def record(client: MlflowClient, name: str, event: Event) -> None:
    """Add the event, stamped with the time now, to the model's history, and its reason
    to the version it was about. A pipeline's event is recorded once: a replayed step
    finds it and adds nothing."""
    if event.cause.pipeline_id and read(client, name).has(event.move, event.cause.pipeline_id):
        return
    key, value = replace(event, time=time.time()).to_tag()
    client.set_registered_model_tag(name, key, value)
    if event.candidate:
        client.set_model_version_tag(name, event.candidate, run_tags.DECISION, event.reason)
    log.info("%s: %s", name, event.reason)
