"""Pushes the webhook took, recorded in Redis until a worker has created their
pipeline run in MLflow.

The webhook answers as soon as a push is recorded here (a few Redis writes, no
MLflow round trip); the first step of its pipeline (`pipeline.create_from_push`)
creates the MLflow run and maps the push's pipeline id to it. Until then this
record is the push's only copy, so Redis must persist (compose runs it with
`appendonly yes`); the watchdog re-sends the create step of a record whose message
was lost. A pipeline id the webhook answered stays valid: `Tracker.pipeline` finds
the run by its `ct.push_id` tag, the status API shows a record still waiting.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field

import redis

from ct_service import keys as names
from ct_service.keystore import redis_client
from ct_service.settings import Settings
from ct_service.target import Target

NEWEST_KEPT = 50  # pushes remembered per branch to tell a newer one


@dataclass(frozen=True)
class PushRecord:
    """Everything a worker needs to create the pipeline of one pushed commit."""

    pipeline_id: str  # the id the webhook answered (the run is tagged with it)
    repository: str  # "<provider>:<name>" on the allow-list
    url: str
    project: str  # the project's path in the repository
    branch: str
    commit: str
    sequence: int  # the push's place among the pushes to its branch
    changed_since: str = ""  # the before-commit, when the push listed no changed paths
    watched: tuple[str, ...] = ()
    target: dict[str, object] | None = None  # the allow-list's target, as declared
    recorded_at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PushRecord:
        fields = json.loads(text)
        fields["watched"] = tuple(fields.get("watched", ()))
        return cls(**fields)

    def chosen_target(self) -> Target | None:
        return None if self.target is None else Target.from_spec(self.target)


def new_pipeline_id() -> str:
    """32 hex digits, like an MLflow run id, so both read the same everywhere."""
    return uuid.uuid4().hex


def describe_target(target: Target | None) -> dict[str, object] | None:
    if target is None:
        return None
    return {
        "metric": target.metric,
        "threshold": target.threshold,
        "direction": target.direction.value,
    }


class PushRecords:
    def __init__(self, client: redis.Redis):
        self.client = client

    def save(self, record: PushRecord, delivery_keys: list[str]) -> None:
        """Record the push and point its delivery keys at it, in one transaction."""
        prefix = names.DELIVERY_PREFIX
        with self.client.pipeline(transaction=True) as batch:
            batch.set(prefix + names.push_record(record.pipeline_id), record.to_json())
            batch.zadd(prefix + names.WAITING_PUSHES, {record.pipeline_id: record.recorded_at})
            newest = prefix + names.newest_pushes(record.repository, record.branch)
            batch.zadd(newest, {record.pipeline_id: record.sequence})
            batch.zremrangebyrank(newest, 0, -NEWEST_KEPT - 1)
            for key in delivery_keys:
                batch.set(prefix + key, record.pipeline_id, ex=int(names.DELIVERY_SECONDS))
            batch.execute()

    def load(self, pipeline_id: str) -> PushRecord | None:
        text = self.client.get(names.DELIVERY_PREFIX + names.push_record(pipeline_id))
        return None if text is None else PushRecord.from_json(_text(text))

    def run_of(self, pipeline_id: str) -> str:
        """The MLflow run created for this push, or "" while it waits."""
        value = self.client.get(names.DELIVERY_PREFIX + names.push_run(pipeline_id))
        return _text(value) if value else ""

    def created(self, pipeline_id: str, run_id: str) -> None:
        """The push's run exists: map it, stop waiting, let the record expire."""
        prefix = names.DELIVERY_PREFIX
        ttl = int(names.DELIVERY_SECONDS)
        with self.client.pipeline(transaction=True) as batch:
            batch.set(prefix + names.push_run(pipeline_id), run_id, ex=ttl)
            batch.expire(prefix + names.push_record(pipeline_id), ttl)
            batch.zrem(prefix + names.WAITING_PUSHES, pipeline_id)
            batch.execute()

    def waiting(self) -> list[str]:
        """Pipeline ids of recorded pushes whose run is not created yet, oldest first."""
        found = self.client.zrange(names.DELIVERY_PREFIX + names.WAITING_PUSHES, 0, -1)
        return [_text(value) for value in found]

    def newer_than(self, repository: str, branch: str, sequence: int) -> str:
        """The pipeline id of the newest push to this branch after `sequence`, or ""."""
        newest = self.client.zrevrange(
            names.DELIVERY_PREFIX + names.newest_pushes(repository, branch), 0, 0, withscores=True
        )
        if not newest or newest[0][1] <= sequence:
            return ""
        return _text(newest[0][0])


def push_records_for(settings: Settings) -> PushRecords | None:
    """The webhook's records on the broker's Redis; None without Redis (embedded)."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    return PushRecords(redis_client(settings.broker_url))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
