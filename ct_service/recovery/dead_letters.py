"""Messages that killed their worker: counted, and not run a third time.

A step's message is acknowledged only when the step ends (acks_late), and a message
whose worker process died is handed out again at once (task_reject_on_worker_lost)
or after the broker's visibility timeout. That is what recovers a step from a worker
that crashed for a reason of its own; but a message that is itself the cause (a push
whose reading exhausts memory until the kernel kills the process, a step stuck past
its hard time limit) would kill every worker it reaches, for ever. So each delivery
of a step is counted in Redis when it starts and forgotten when it ends, however it
ends; a delivery that finds DEATHS_BEFORE_DEAD_LETTER earlier ones that never ended
is not run: it becomes a dead letter (kept for the operator, with its task, its
arguments and the reason) and its pipeline fails with that reason.

Celery has no delivery limit of its own on Redis (RabbitMQ's quorum queues do):
`retry_on_worker_lost` counts only deaths its worker's main process saw, against the
same max_retries as infrastructure retries, and a death of the whole worker (its
message redelivered after the visibility timeout) is never counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import redis

from ct_service import keys as names
from ct_service.keystore import redis_client
from ct_service.settings import Settings

DEATHS_BEFORE_DEAD_LETTER = 2


@dataclass(frozen=True)
class DeadLetter:
    task_id: str
    task: str  # the step's task name
    args: tuple[str, ...]
    reason: str  # one line
    at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> DeadLetter:
        fields = json.loads(text)
        fields["args"] = tuple(fields.get("args", ()))
        return cls(**fields)


def reason_for(task: str, deaths: int) -> str:
    return (
        f"the step {task} killed its worker {'twice' if deaths == 2 else f'{deaths} times'} "
        "(its process died, or was killed past its time limit, before the step ended); "
        "not retried"
    )


class DeadLetters:
    def __init__(self, client: redis.Redis, delivery_seconds: float):
        self.client = client
        self.delivery_seconds = delivery_seconds  # how long a delivery count is kept

    def arrived(self, task_id: str) -> int:
        """Count a delivery of this message that starts now; how many earlier ones
        started and never ended."""
        key = names.KEYSTORE_PREFIX + names.deliveries(task_id)
        with self.client.pipeline() as both:
            both.incr(key)
            both.pexpire(key, int(self.delivery_seconds * 1000))
            count, _ = both.execute()
        return int(count) - 1

    def ended(self, task_id: str) -> None:
        """The delivery ended (done, failed, or handed to a retry): forget the count."""
        self.client.delete(names.KEYSTORE_PREFIX + names.deliveries(task_id))

    def record(self, task_id: str, task: str, args: Sequence[str], reason: str) -> DeadLetter:
        letter = DeadLetter(task_id, task, tuple(args), reason)
        key = names.KEYSTORE_PREFIX + names.DEAD_LETTERS
        with self.client.pipeline() as both:
            both.lpush(key, letter.to_json())
            both.ltrim(key, 0, names.DEAD_LETTERS_KEPT - 1)
            both.execute()
        return letter  # its count stays: a duplicate of the message is refused too

    def all(self) -> list[DeadLetter]:
        """The dead letters kept, newest first."""
        key = names.KEYSTORE_PREFIX + names.DEAD_LETTERS
        return [DeadLetter.from_json(text) for text in self.client.lrange(key, 0, -1)]


def dead_letters_for(settings: Settings) -> DeadLetters | None:
    """Counted on the broker's Redis; None without Redis (embedded: one process does
    everything, and nothing is redelivered once it died)."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    return DeadLetters(redis_client(settings.broker_url), 2 * settings.visibility_timeout_seconds)
