"""The step counters (ct_service/counters.py): the log line a worker writes when a
step ends reads back as written; MLflow calls are split into reads and writes; the
service's Redis client counts each round trip (a command, a script, a pipeline) and
each lost claim, against the real Redis."""

from __future__ import annotations

import pytest

from ct_service.counters import (
    COUNTERS,
    Count,
    CountedClient,
    Counters,
    Kind,
    parse_step_line,
    step_line,
)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("task", "args", "counts"),
    [
        ("ct.pipeline.start", ("a1b2",), {"mlflow.read": Count(5, 0.0123)}),
        ("ct.train.run_attempt", ("p1", "r2"), {"git": Count(3, 0.5), "redis": Count(9, 0.002)}),
        ("ct.watchdog.scan", (), {}),
        ("ct.pipeline.intake", (), {"claim.lost": Count(2, 0.0)}),
    ],
)
def test_a_step_line_reads_back_as_it_was_written(task, args, counts) -> None:
    line = step_line(task, args, 1733000000.125, 0.4123, counts)
    # as Celery's log format prefixes it
    record = parse_step_line(f"[2026-12-08 10:00:00,000: INFO/ForkPoolWorker-1] {line}")
    assert record is not None
    assert (record.task, record.args, record.at, record.took) == (task, args, 1733000000.125, 0.412)
    assert record.counts == {k: Count(c.calls, round(c.seconds, 4)) for k, c in counts.items()}


@pytest.mark.unit
def test_a_line_that_records_no_step_reads_as_none() -> None:
    assert parse_step_line("[...] Task ct.pipeline.start[abc] succeeded in 0.4s: None") is None
    assert parse_step_line("worker: ready.") is None


@pytest.mark.unit
def test_the_clients_calls_are_counted_as_reads_and_writes_and_taking_starts_again() -> None:
    ticks = iter(range(100))
    counters = Counters(clock=lambda: float(next(ticks)))

    class Client:
        tracking_uri = "sqlite:///x.db"

        def get_run(self, run_id: str) -> str:
            return f"run {run_id}"

        def search_runs(self) -> list[str]:
            return []

        def set_tag(self, run_id: str, key: str, value: str) -> None:
            pass

    client = CountedClient(Client(), counters)
    assert client.get_run("r1") == "run r1"
    client.search_runs()
    client.set_tag("r1", "k", "v")
    assert client.tracking_uri == "sqlite:///x.db"  # not a call: not counted
    assert counters.take() == {Kind.MLFLOW_READ: Count(2, 2.0), Kind.MLFLOW_WRITE: Count(1, 1.0)}
    assert counters.take() == {}


@pytest.mark.integration
def test_the_services_redis_client_counts_commands_scripts_pipelines_and_lost_claims(
    redis_url: str,
) -> None:
    from ct_service.keystore import RedisKeys, redis_client

    client = redis_client(redis_url)
    keys = RedisKeys(client)
    COUNTERS.take()
    assert keys.claim("k", "me", 10)
    assert not keys.claim("k", "you", 10)
    client.register_script("return 1")()
    with client.pipeline() as both:
        both.get("a")
        both.get("b")
        both.execute()
    counts = COUNTERS.take()
    # two SETs, the script (EVALSHA; SCRIPT LOAD and EVALSHA again the first time
    # this server sees it), one pipeline
    assert counts[Kind.REDIS].calls in (4, 6)
    assert counts[Kind.CLAIM_LOST].calls == 1
