"""Short-lived coordination keys with a time to live: leases, claims and markers of
enqueued steps. Redis when the service has a broker; an in-process table in the
embedded mode, where one process does everything.

Nothing here is a record: MLflow is. Losing every key (a Redis restart) may delay
recovery or repeat an idempotent step, never lose or duplicate work."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

import redis

from ct_service import keys
from ct_service.counters import COUNTERS, Kind
from ct_service.settings import Settings


class KeyStore(Protocol):
    def claim(self, key: str, value: str, ttl_seconds: float) -> bool:
        """Set `key` only if it is absent (atomic); True if this caller set it."""
        ...

    def put(self, key: str, value: str, ttl_seconds: float) -> None: ...

    def get(self, key: str) -> str | None: ...

    def delete(self, key: str) -> None: ...


class RedisKeys:
    def __init__(self, client: redis.Redis, prefix: str = keys.KEYSTORE_PREFIX):
        self.client = client
        self.prefix = prefix

    def claim(self, key: str, value: str, ttl_seconds: float) -> bool:
        won = bool(self.client.set(self.prefix + key, value, nx=True, px=_ms(ttl_seconds)))
        if not won:
            COUNTERS.add(Kind.CLAIM_LOST)
        return won

    def put(self, key: str, value: str, ttl_seconds: float) -> None:
        self.client.set(self.prefix + key, value, px=_ms(ttl_seconds))

    def get(self, key: str) -> str | None:
        value = self.client.get(self.prefix + key)
        return value.decode() if isinstance(value, bytes) else value

    def delete(self, key: str) -> None:
        self.client.delete(self.prefix + key)


class MemoryKeys:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[str, float]] = {}

    def claim(self, key: str, value: str, ttl_seconds: float) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._keys[key] = (value, time.monotonic() + ttl_seconds)
            return True

    def put(self, key: str, value: str, ttl_seconds: float) -> None:
        with self._lock:
            self._keys[key] = (value, time.monotonic() + ttl_seconds)

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key)

    def delete(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)

    def _live(self, key: str) -> str | None:
        found = self._keys.get(key)
        if found is None or found[1] < time.monotonic():
            self._keys.pop(key, None)
            return None
        return found[0]


_memory = MemoryKeys()


@contextlib.contextmanager
def held(keys: KeyStore, key: str, value: str, ttl_seconds: float) -> Iterator[None]:
    """Keep `key` alive (renewed every third of its TTL) while the block runs: a slow
    step (an image build) keeps its claim; a dead one lets it expire."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(ttl_seconds / 3):
            try:
                keys.put(key, value, ttl_seconds)
            except Exception:  # a renewal is retried at the next turn
                pass

    thread = threading.Thread(target=renew, name=f"hold {key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def keystore_for(settings: Settings) -> KeyStore:
    """Redis on the broker's server, or the process-wide table when embedded."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisKeys(redis_client(settings.broker_url))
    return _memory


@functools.cache
def redis_client(url: str) -> redis.Redis:
    """One client (with its connection pool) per Redis URL in this process."""
    return CountedRedis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


class CountedRedis(redis.Redis):
    """A Redis client whose round trips (a command, a script, a pipeline's execute)
    are counted and timed (counters.py)."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        with COUNTERS.timed(Kind.REDIS):
            return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def counted(raise_on_error: bool = True) -> list[Any]:
            with COUNTERS.timed(Kind.REDIS):
                return execute(raise_on_error)

        pipe.execute = counted  # type: ignore[method-assign]  # this one object's
        return pipe


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
