"""What a step spent outside its own code: calls and seconds per kind of round trip
(MLflow reads and writes, Redis commands, Celery publishes, git), and the claims it
lost, counted in this process and written as one log line when the step ends.

Each worker process runs one step at a time, so what is counted between two steps
is that step's (a heartbeat thread's calls during training included). The counting
is a clock read and a dict update under a lock per call; nothing is sent anywhere.
`step_line()` writes the line and `parse_step_line()` reads it back
(benchmarks/scale.py sums them over every worker's log).
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


class Kind:
    """The kinds counted (the names in the log line)."""

    MLFLOW_READ = "mlflow.read"  # a get_*/search_* call of the service's MLflow client
    MLFLOW_WRITE = "mlflow.write"  # any other call of it (create, set tag, log, ...)
    REDIS = "redis"  # a command (or pipeline) of the service's own Redis client
    PUBLISH = "publish"  # a step sent to the broker (Celery's publish)
    GIT = "git"  # a git command (fetch, checkout, diff)
    CLAIM_LOST = "claim.lost"  # a claim another holder had: the step did nothing there
    STORE_LOCK = "lock.store"  # waiting for the lock a new SQLite store is opened under


READS = ("get_", "search_", "list_")


@dataclass(frozen=True)
class Count:
    calls: int
    seconds: float


class Counters:
    """Calls and seconds per kind, in this process, safe across threads."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, list[float]] = {}

    def add(self, kind: str, seconds: float = 0.0) -> None:
        with self._lock:
            count = self._counts.setdefault(kind, [0, 0.0])
            count[0] += 1
            count[1] += seconds

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        started = self._clock()
        try:
            yield
        finally:
            self.add(kind, self._clock() - started)

    def take(self) -> dict[str, Count]:
        """What was counted since the last take, and start again from nothing."""
        with self._lock:
            counts, self._counts = self._counts, {}
        return {kind: Count(int(c[0]), c[1]) for kind, c in sorted(counts.items())}


COUNTERS = Counters()  # this process's


class CountedClient:
    """An MlflowClient whose public method calls are counted and timed (reads and
    writes apart); everything else is the client's own."""

    def __init__(self, client: Any, counters: Counters = COUNTERS):
        self._client = client
        self._counters = counters

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name.startswith("_") or not callable(attribute):
            return attribute
        kind = Kind.MLFLOW_READ if name.startswith(READS) else Kind.MLFLOW_WRITE
        counters = self._counters

        @functools.wraps(attribute)
        def counted(*args: Any, **kwargs: Any) -> Any:
            with counters.timed(kind):
                return attribute(*args, **kwargs)

        return counted


# "step ct.pipeline.start a1b2 at=1733.123 took=0.412 mlflow.read=5/0.0123 redis=4/0.0011"
STEP_LINE = re.compile(
    r"^step (?P<task>\S+) (?P<args>.*?) ?at=(?P<at>[\d.]+) took=(?P<took>[\d.]+)"
)
COUNT = re.compile(r" (?P<kind>[a-z.]+)=(?P<calls>\d+)/(?P<seconds>[\d.]+)")


@dataclass(frozen=True)
class StepRecord:
    """One step as its log line tells it."""

    task: str
    args: tuple[str, ...]
    at: float  # Unix time it began
    took: float  # seconds
    counts: dict[str, Count]


def step_line(
    task: str, args: tuple[str, ...], at: float, took: float, counts: dict[str, Count]
) -> str:
    """The line a worker logs when a step ends (parse_step_line reads it)."""
    spent = "".join(f" {kind}={c.calls}/{c.seconds:.4f}" for kind, c in counts.items())
    ids = " ".join(args)
    return f"step {task} {ids}{' ' if ids else ''}at={at:.3f} took={took:.3f}{spent}"


def parse_step_line(line: str) -> StepRecord | None:
    """The step a log line records, or None when it records none."""
    start = line.find("step ct.")
    found = STEP_LINE.match(line[start:]) if start >= 0 else None
    if found is None:
        return None
    rest = line[start + found.end() :]
    counts = {m["kind"]: Count(int(m["calls"]), float(m["seconds"])) for m in COUNT.finditer(rest)}
    args = tuple(found["args"].split()) if found["args"] else ()
    return StepRecord(found["task"], args, float(found["at"]), float(found["took"]), counts)
