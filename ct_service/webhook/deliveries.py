"""Which push started which pipeline, in Redis, so that a redelivered webhook or two
racing pushes of one commit start a single pipeline.

A key is claimed atomically (SET NX) before the push is recorded, then set to its
pipeline id with the record (orchestration/pushes.py); a claim that finds the key
answers with the pipeline already there."""

from __future__ import annotations

import time

import redis

from ct_service import keys as redis_keys

PENDING = "pending"


class Deliveries:
    def __init__(self, client: redis.Redis, prefix: str = redis_keys.DELIVERY_PREFIX):
        self.client = client
        self.prefix = prefix

    def claim(self, keys: list[str], wait_seconds: float = 5.0) -> str:
        """ "" when this caller won every key; else the id of the pipeline another
        delivery started for one of them (waiting briefly while it is being created)."""
        names = [self.prefix + key for key in keys]
        won: list[str] = []
        for name in names:
            if self.client.set(name, PENDING, nx=True, ex=int(redis_keys.DELIVERY_CLAIM_SECONDS)):
                won.append(name)
                continue
            if won:
                self.client.delete(*won)
            return self._wait_for(name, wait_seconds)
        return ""

    def next_sequence(self, key: str) -> int:
        """The next number of a counter shared by every webhook process."""
        return int(self.client.incr(self.prefix + key))

    def release(self, keys: list[str]) -> None:
        """Forget a claim whose pipeline could not be created, so a retry can start it."""
        self.client.delete(*(self.prefix + key for key in keys))

    def _wait_for(self, name: str, wait_seconds: float) -> str:
        deadline = time.monotonic() + wait_seconds
        while True:
            value = self.client.get(name)
            text = value.decode() if isinstance(value, bytes) else str(value or "")
            if text != PENDING or time.monotonic() > deadline:
                return text or PENDING
            time.sleep(0.05)
