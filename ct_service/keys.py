"""Every Redis key the service writes, built here and only here, each with its
lifetime beside it (rq builds its keys in one class the same way).

Coordination keys live in the KeyStore (keystore.py: Redis under `ct:`, or an
in-process table when embedded); webhook deliveries live in Redis under `ct:push:`.
None of them is a record (MLflow is), but for two: a push the webhook recorded
(`push_record`) is the push's only copy until a worker has created its pipeline run,
and `push_sequence` with `first_seen` orders a branch's pushes (restarted from 1,
queued older pushes look newer than new ones until it catches up; without
`first_seen`, MLflow's pipeline run of a commit still gives its number to a replay
once a worker sees it); so the webhook's Redis must persist. `DEAD_LETTERS` is the
only record of a message that was not run because it had killed its worker twice
(its pipeline says so too).
Losing the others may delay recovery or repeat an idempotent step, never lose or
duplicate work.
"""

from __future__ import annotations

from collections.abc import Sequence

KEYSTORE_PREFIX = "ct:"  # before every KeyStore key in Redis
DELIVERY_PREFIX = "ct:push:"  # before every delivery key in Redis

RUN_CLAIM_SECONDS = 60.0  # a worker that died while starting an attempt frees it
DECIDE_CLAIM_SECONDS = 600.0  # past a decide step's life; ct.decided_through outlives it
SHORT_STEP_SECONDS = 300.0  # a short step (start, decide, ...) marked running this long is dead
FAILURES_SECONDS = 24 * 3600.0  # how long the watchdog counts a record's failures
DELIVERY_SECONDS = 7 * 24 * 3600.0  # how long a push delivery is remembered
CREATE_CLAIM_SECONDS = 120.0  # a worker that died creating a push's pipeline run frees it
STATUS_CLAIM_SECONDS = 60.0  # a worker that died sending a commit status frees its pipeline
INTAKE_MARK_SECONDS = SHORT_STEP_SECONDS  # an intake marked queued longer was lost: resend
# (`ct:push:`) Sorted set, by time recorded, of the pushes whose run is not created.
WAITING_PUSHES = "waiting"
# List of the messages not run because they killed their worker (JSON, newest first,
# the latest DEAD_LETTERS_KEPT kept; no TTL: an operator reads them).
DEAD_LETTERS = "dead-letters"
DEAD_LETTERS_KEPT = 1000


def decide_claim(pipeline_id: str, round_: str) -> str:
    """The step deciding a round of a pipeline's attempts (TTL DECIDE_CLAIM_SECONDS):
    when several attempts end at once, one of them decides."""
    return f"claim:decide:{pipeline_id}:{round_}"


def run_claim(attempt_id: str) -> str:
    """The worker starting this attempt run (TTL RUN_CLAIM_SECONDS)."""
    return f"claim:run:{attempt_id}"


def resume_claim(run_id: str) -> str:
    """The watchdog or worker resuming this dead run (TTL max(60 s, CT_LEASE_SECONDS))."""
    return f"claim:resume:{run_id}"


def lease(attempt_id: str) -> str:
    """The attempt's liveness mark, renewed every heartbeat (TTL CT_LEASE_SECONDS)."""
    return f"lease:{attempt_id}"


def step(task_name: str, args: Sequence[str]) -> str:
    """A step's message: "queued" while the broker holds it (TTL the broker's
    visibility timeout), "running" while a worker runs it (TTL SHORT_STEP_SECONDS)."""
    return f"step:{task_name}:{':'.join(args)}"


def stalled(pipeline_id: str) -> str:
    """When a watchdog first saw this pipeline without a message for its next step
    (TTL three watchdog intervals)."""
    return f"stalled:{pipeline_id}"


def postponed(record: str) -> str:
    """A record the watchdog could not process waits until this expires (TTL backoff)."""
    return f"postpone:{record}"


def failures(record: str) -> str:
    """How many scans in a row failed on this record (TTL FAILURES_SECONDS)."""
    return f"failures:{record}"


def create_claim(pipeline_id: str) -> str:
    """The worker creating the pipeline run of a recorded push (TTL CREATE_CLAIM_SECONDS)."""
    return f"claim:create:{pipeline_id}"


def commit_status(pipeline_id: str) -> str:
    """Hash: the commit status due for a pushed pipeline and what was sent of it
    (`wanted`: JSON, `version`: counts the statuses recorded, `sent`: the version the
    host last took; orchestration/status_reports.py). TTL DELIVERY_SECONDS from its
    last status: a lost one only leaves the host showing an older status."""
    return f"status:{pipeline_id}"


def status_claim(pipeline_id: str) -> str:
    """The worker sending this pipeline's commit status (TTL STATUS_CLAIM_SECONDS): one
    at a time, so an older status never lands after a newer one."""
    return f"claim:status:{pipeline_id}"


def push_record(pipeline_id: str) -> str:
    """(`ct:push:`) A push the webhook took (JSON, orchestration/pushes.py); no TTL until its
    pipeline run exists, then DELIVERY_SECONDS."""
    return f"record:{pipeline_id}"


def push_run(pipeline_id: str) -> str:
    """(`ct:push:`) The MLflow run created for a recorded push (TTL DELIVERY_SECONDS)."""
    return f"run:{pipeline_id}"


def newest_pushes(repository: str, branch: str) -> str:
    """(`ct:push:`) Sorted set of the latest pushes' pipeline ids to a branch, by their sequence
    (the newest few kept): a queued older push sees that a newer one exists."""
    return f"newest:{repository}:{branch}"


def delivery(provider: str, delivery_id: str) -> str:
    """(`ct:push:`) The pipeline a push delivery (`<id>:<branch>`: a Bitbucket delivery may push
    several branches) recorded (TTL DELIVERY_SECONDS; set with the record, at once)."""
    return f"delivery:{provider}:{delivery_id}"


def push_sequence(provider: str, repository: str, branch: str) -> str:
    """(`ct:push:`) A counter of the commits pushed to this branch, in the order the webhook first
    saw them (INCR; no TTL: it orders pushes, which a clock's millisecond cannot)."""
    return f"sequence:{provider}:{repository}:{branch}"


def first_seen(repository: str, branch: str) -> str:
    """(`ct:push:`) Hash: each commit pushed to this branch (`<provider>:<name>`) -> the number its
    first push got from `push_sequence` (no TTL, one field per pushed commit): a commit
    keeps its number however late it is delivered again, so a replay never ranks above
    a push first seen after it."""
    return f"first:{repository}:{branch}"


def pushed_commit(provider: str, repository: str, branch: str, sha: str) -> str:
    """(`ct:push:`) The pipeline a push of this commit to this branch recorded (as `delivery`)."""
    return f"commit:{provider}:{repository}:{branch}:{sha}"


def deliveries(task_id: str) -> str:
    """How many deliveries of a step's message started and did not finish (INCR when
    one starts, deleted when it ends; TTL twice the broker's visibility timeout, the
    longest a redelivery can take)."""
    return f"deliveries:{task_id}"


def data_claim(model_name: str, digest: str) -> str:
    """The worker creating the data-triggered pipeline of this model on this data version
    (TTL CREATE_CLAIM_SECONDS): two checks at once (beat's scan and the data hook's) make
    one pipeline."""
    return f"claim:data:{model_name}:{digest}"


def schedule_claim(model_name: str, tick: str) -> str:
    """One tick (`YYYYmmddTHHMM`, UTC) of a model's schedule, fired (TTL an hour): a
    redelivered message of the same tick starts nothing."""
    return f"claim:schedule:{model_name}:{tick}"


def decay_claim(model_name: str, version: str, digest: str) -> str:
    """The worker scoring this production version on this data version for the decay
    watch (TTL the scoring's time limit): two checks at once score it once."""
    return f"claim:decay:{model_name}:{version}:{digest}"
