"""Pushes the webhook took, recorded in Redis until a worker has created their
pipeline run in MLflow.

The webhook answers as soon as a push is recorded here (one Redis round trip, no
MLflow); the intake step (`pipeline.intake`) creates the MLflow runs of the waiting
pushes and maps each push's pipeline id to its run. One intake message serves a
whole burst: the webhook sends one only when none is marked queued or running, and
an intake that ends sends another if pushes were recorded while it ran. Until its
run exists this record is the push's only copy, so Redis must persist (compose runs
it with `appendonly yes`); the watchdog sends the intake when pushes wait and no
intake is marked (a queued mark lasts INTAKE_MARK_SECONDS). A pipeline id the
webhook answered finds its pipeline: `Tracker.pipeline` by the run's `ct.push_id`
tag, the status API also a record still waiting or failed (records and their
mapping are kept 7 days once the run exists).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field, replace

import redis

from ct_service import keys as names
from ct_service.keystore import redis_client
from ct_service.settings import Settings
from ct_service.target import Target

NEWEST_KEPT = 50  # pushes remembered per branch to tell a newer one
WAITING_REASON = "recorded; a worker creates its MLflow run"


@dataclass(frozen=True)
class PushRecord:
    """Everything a worker needs to create the pipeline of one pushed commit."""

    pipeline_id: str  # the id the webhook answered (the run is tagged with it)
    repository: str  # "<provider>:<name>" on the allow-list
    url: str
    project: str  # the project's path in the repository
    branch: str
    commit: str
    sequence: int = 0  # when its branch first saw the commit, among its pushes (set by Redis)
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


# One round trip records a push: claim its delivery keys (or answer with the pipeline
# an earlier delivery of it recorded), number it among its branch's pushes (the number
# its commit got when first seen, else the next one), store it, list it as waiting and
# as its branch's newest, and mark the intake step queued unless it is queued or
# running already (then the caller sends it: one message for a whole burst).
_RECORD = """
local claims = tonumber(ARGV[1])
for i = 1, claims do
  local earlier = redis.call('GET', KEYS[i])
  if earlier then return {earlier, 0, 0} end
end
local sequence = tonumber(redis.call('HGET', KEYS[claims + 6], ARGV[9]) or '')
if not sequence then
  sequence = redis.call('INCR', KEYS[claims + 1])
  redis.call('HSET', KEYS[claims + 6], ARGV[9], sequence)
end
redis.call('HSET', KEYS[claims + 2], 'json', ARGV[3], 'sequence', sequence, 'keys', ARGV[8])
redis.call('ZADD', KEYS[claims + 3], ARGV[4], ARGV[2])
redis.call('ZADD', KEYS[claims + 4], sequence, ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[claims + 4], 0, -tonumber(ARGV[5]) - 1)
for i = 1, claims do redis.call('SET', KEYS[i], ARGV[2], 'EX', ARGV[6]) end
local send = redis.call('SET', KEYS[claims + 5], 'queued', 'PX', ARGV[7], 'NX')
return {ARGV[2], sequence, send and 1 or 0}
"""


@dataclass(frozen=True)
class Recorded:
    pipeline_id: str  # this push's, or the one an earlier delivery of it recorded
    sequence: int  # 0 for an earlier delivery's
    send_intake: bool  # the intake step was not queued: the caller sends it

    @property
    def is_new(self) -> bool:
        return self.sequence > 0


class PushRecords:
    def __init__(self, client: redis.Redis):
        self.client = client
        self._record = client.register_script(_RECORD)

    def record(
        self,
        record: PushRecord,
        delivery_keys: list[str],
        sequence_key: str,
        intake_mark: tuple[str, float],
    ) -> Recorded:
        """Record the push atomically, unless one of its delivery keys is taken (an
        earlier delivery recorded it). Its sequence is the one its commit got when
        this branch first saw it (a delivery again after its keys expired, or a
        replay, ranks as old as the commit), else the branch's next. `intake_mark`
        is the KeyStore key that marks the intake step queued, and how long that
        mark lasts."""
        prefix = names.DELIVERY_PREFIX
        mark, mark_seconds = intake_mark
        keys = [
            *(prefix + key for key in delivery_keys),
            prefix + sequence_key,
            prefix + names.push_record(record.pipeline_id),
            prefix + names.WAITING_PUSHES,
            prefix + names.newest_pushes(record.repository, record.branch),
            names.KEYSTORE_PREFIX + mark,
            prefix + names.first_seen(record.repository, record.branch),
        ]
        pipeline_id, sequence, send = self._record(
            keys=keys,
            args=[
                len(delivery_keys),
                record.pipeline_id,
                record.to_json(),
                repr(record.recorded_at),
                NEWEST_KEPT,
                int(names.DELIVERY_SECONDS),
                max(1, int(mark_seconds * 1000)),
                json.dumps(keys[: len(delivery_keys)]),  # released if it fails
                record.commit,
            ],
        )
        return Recorded(_text(pipeline_id), int(sequence), bool(send))

    def load(self, pipeline_id: str) -> PushRecord | None:
        fields = self._fields(pipeline_id)
        if not fields:
            return None
        return replace(PushRecord.from_json(fields["json"]), sequence=int(fields["sequence"]))

    def state(self, pipeline_id: str) -> dict[str, str] | None:
        """What the status API and `ct-service status` show for a push without its
        run: queued, or failed with the reason; None once the run exists (or for an
        id that is not a push's)."""
        if self.run_of(pipeline_id):
            return None
        fields = self._fields(pipeline_id)
        if not fields:
            return None
        record = PushRecord.from_json(fields["json"])
        failure = fields.get("failure", "")
        return {
            "pipeline_id": pipeline_id,
            "status": "failed" if failure else "queued",
            "commit": record.commit,
            "branch": record.branch,
            "reason": failure or WAITING_REASON,
        }

    def _fields(self, pipeline_id: str) -> dict[str, str]:
        stored = self.client.hgetall(names.DELIVERY_PREFIX + names.push_record(pipeline_id))
        return {_text(k): _text(v) for k, v in stored.items()}

    def run_of(self, pipeline_id: str) -> str:
        """The MLflow run created for this push, or "" while it waits."""
        value = self.client.get(names.DELIVERY_PREFIX + names.push_run(pipeline_id))
        return _text(value) if value else ""

    def created(self, pipeline_id: str, run_id: str) -> None:
        """The push's run exists: map it, stop waiting, let the record expire."""
        with self.client.pipeline(transaction=True) as batch:
            self._map(batch, pipeline_id, run_id)
            batch.execute()

    def same_commit_as(self, record: PushRecord, run_id: str, first_sequence: int) -> None:
        """The push's commit already has a pipeline (`run_id`, numbered
        `first_sequence` when its branch first saw the commit): map the push to it
        and let it rank as that pipeline, not as a newer push; the commit keeps that
        number for its next delivery (it lost it if it was first seen before
        `first_seen` was kept)."""
        prefix = names.DELIVERY_PREFIX
        with self.client.pipeline(transaction=True) as batch:
            self._map(batch, record.pipeline_id, run_id)
            newest = prefix + names.newest_pushes(record.repository, record.branch)
            batch.zrem(newest, record.pipeline_id)
            if first_sequence > 0:
                first_seen = prefix + names.first_seen(record.repository, record.branch)
                batch.hset(first_seen, record.commit, first_sequence)
            batch.execute()

    @staticmethod
    def _map(batch: redis.client.Pipeline, pipeline_id: str, run_id: str) -> None:
        prefix = names.DELIVERY_PREFIX
        ttl = int(names.DELIVERY_SECONDS)
        batch.set(prefix + names.push_run(pipeline_id), run_id, ex=ttl)
        batch.expire(prefix + names.push_record(pipeline_id), ttl)
        batch.zrem(prefix + names.WAITING_PUSHES, pipeline_id)

    def failed(self, pipeline_id: str, reason: str) -> None:
        """The push's run could not be created, for a reason retrying cannot fix: it
        stops waiting, keeps the reason for the status API, frees its delivery keys
        (a redelivery records it again) and supersedes nothing."""
        prefix = names.DELIVERY_PREFIX
        record = prefix + names.push_record(pipeline_id)
        found = self.load(pipeline_id)
        claimed = json.loads(_text(self.client.hget(record, "keys") or b"[]"))
        with self.client.pipeline(transaction=True) as batch:
            batch.hset(record, "failure", reason)
            batch.expire(record, int(names.DELIVERY_SECONDS))
            batch.zrem(prefix + names.WAITING_PUSHES, pipeline_id)
            if found is not None:
                newest = prefix + names.newest_pushes(found.repository, found.branch)
                batch.zrem(newest, pipeline_id)
            for key in claimed:
                batch.delete(key)
            batch.execute()

    def forget(self, pipeline_id: str) -> None:
        """A waiting entry without its record (deleted or evicted): nothing to create."""
        self.client.zrem(names.DELIVERY_PREFIX + names.WAITING_PUSHES, pipeline_id)

    def failure_of(self, pipeline_id: str) -> str:
        return self._fields(pipeline_id).get("failure", "")

    def waiting(self) -> list[str]:
        """Pipeline ids of recorded pushes whose run is not created yet, oldest first."""
        found = self.client.zrange(names.DELIVERY_PREFIX + names.WAITING_PUSHES, 0, -1)
        return [_text(value) for value in found]

    def numbered_after(self, repository: str, branch: str, sequence: int) -> list[str]:
        """The pipeline ids of the latest pushes to this branch numbered after
        `sequence`, newest first."""
        newest = self.client.zrevrangebyscore(
            names.DELIVERY_PREFIX + names.newest_pushes(repository, branch), "+inf", f"({sequence}"
        )
        return [_text(value) for value in newest]


def push_records_for(settings: Settings) -> PushRecords | None:
    """The webhook's records on the broker's Redis; None without Redis (embedded)."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    return PushRecords(redis_client(settings.broker_url))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
