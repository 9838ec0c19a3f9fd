"""Commit statuses on the git host a pipeline's push came from: pending while it is
queued, pending with the attempts as they go ("attempt 2 of 8, best 0.84"), then
success or failure with the metric, the target and a link to the pipeline in the
MLflow UI. Off unless the push's allow-list entry has `status_token_file`.

Persist, then send, off the pipeline's path:
1. a step that changes what the commit should show calls `due()`: it records the
   status in Redis (keys.commit_status) and returns; it never raises and never
   contacts the host, so a slow or absent host cannot delay or fail a step;
2. the task layer sends `ct.status.report` (queue `status`) when `waiting()`;
3. `send()` posts the newest status the host has not taken, one sender per pipeline
   at a time (keys.status_claim), so an older status never lands after a newer one.
   A timeout, a refused connection, 429 or 5xx raise StatusHostUnavailable and Celery
   sends again with backoff; any other answer is final. Each try's result is the
   pipeline's `ct.commit_status` tag and a log line, never with the token.

Trust: where a status goes and with which token come from the allow-list at send
time (the entry's `status_api`, or its `url`'s host), never from a push payload or
the pipeline's tags alone; the token file is read when sending; TLS is verified
(CT_STATUS_CA_FILE adds a CA) and redirects are not followed, so the token reaches
the configured host only.
"""

from __future__ import annotations

import http.client
import logging
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import redis

from ct_service import keys as names
from ct_service import run_tags
from ct_service.attempt import Attempt, AttemptStatus
from ct_service.commit_status import CommitState, CommitStatus, HostRequest, Report, request
from ct_service.exceptions import StatusHostUnavailable
from ct_service.execution.lease import holder
from ct_service.keystore import keystore_for, redis_client
from ct_service.report import run_url
from ct_service.repositories import Provider, Repository, load_repositories
from ct_service.settings import Settings
from ct_service.target import Target
from ct_service.tracking import Outcome, Pipeline, PipelineStatus, Tracker

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10.0
TRIES = 9  # the first send and 8 retries (backoff 1, 2, 4, ... s, at most 5 min apart)
IN_FLIGHT = (AttemptStatus.QUEUED, AttemptStatus.RUNNING, AttemptStatus.INTERRUPTED)
# GitLab refuses a status in the state it already has ("Cannot transition status via
# :run from :running"): the state holds, only its description is not updated.
GITLAB_SAME_STATE = b"Cannot transition status"


def due(tracker: Tracker, pipeline_id: str) -> None:
    """Record the status the pipeline's commit should show now, if its push's
    repository reports statuses. Never raises: a status is a side effect."""
    try:
        _due(tracker, pipeline_id)
    except Exception as error:
        log.warning("pipeline %s: no commit status recorded: %s", pipeline_id, _why(error))


def _due(tracker: Tracker, pipeline_id: str) -> None:
    settings = tracker.settings
    outbox = Outbox.of(settings)
    if outbox is None or not settings.repositories_file:
        return
    pipeline = tracker.pipeline(pipeline_id)
    key = pipeline.tags.get(run_tags.SOURCE_REPOSITORY, "")
    repository = _listed(settings, key) if key and pipeline.spec.commit else None
    if repository is None or not repository.reports_status:
        return
    state, text = describe(pipeline, tracker.attempts(pipeline, curves=False))
    status = CommitStatus(state, text, run_url(settings, pipeline.experiment_id, pipeline.id))
    report = Report(key, pipeline.spec.commit, pipeline.spec.source_branch, status)
    if outbox.want(pipeline.id, report):
        log.info("pipeline %s: commit status due: %s: %s", pipeline.id, state.value, text)


def describe(pipeline: Pipeline, attempts: list[Attempt]) -> tuple[CommitState, str]:
    """The commit's state and description for the pipeline as it stands."""
    spec = pipeline.spec
    target, most = spec.target, spec.budget.max_attempts
    best = _best(attempts, target)
    if pipeline.status is PipelineStatus.QUEUED:
        return CommitState.PENDING, f"queued: target {target.describe()}, {most} attempts at most"
    if pipeline.status in (PipelineStatus.RUNNING, PipelineStatus.PROMOTING):
        numbers = [a.number for a in attempts if a.status in IN_FLIGHT] or [
            a.number for a in attempts
        ]
        text = f"attempt {max(numbers, default=1)} of {most}"
        return CommitState.RUNNING, text + (f", best {best:.4g}" if best is not None else "")
    goal = f"(target {target.describe()})"
    tried = f"{len(attempts)} attempt{'s' if len(attempts) != 1 else ''}"
    best_text = f"best {target.metric} {best:.4g}" if best is not None else "no result"
    outcome = pipeline.outcome
    if outcome in (
        Outcome.PROMOTED.value,
        Outcome.KEPT_CHAMPION.value,
        Outcome.AWAITING_APPROVAL.value,
    ):
        won = next(
            (a.metric for a in attempts if a.run_id == pipeline.tags.get(run_tags.CANDIDATE)),
            best,
        )
        value = f"{target.metric} {won:.4g}" if won is not None else target.metric
        version = pipeline.tags.get(run_tags.MODEL_VERSION, "?")
        if outcome == Outcome.PROMOTED.value:
            return CommitState.SUCCESS, f"promoted version {version}: {value} {goal}"
        if outcome == Outcome.AWAITING_APPROVAL.value:  # the target met: a person decides
            return CommitState.SUCCESS, f"version {version} awaits approval: {value} {goal}"
        return CommitState.SUCCESS, f"champion kept: {value} {goal}; production is as good"
    if outcome == Outcome.BUDGET_EXHAUSTED.value:
        return CommitState.FAILURE, f"budget spent after {tried}: {best_text} {goal}"
    if outcome == Outcome.STOPPED.value:
        return CommitState.FAILURE, f"stopped after {tried}: {best_text} {goal}"
    if outcome == Outcome.SKIPPED.value:
        return CommitState.SUCCESS, pipeline.reason or "skipped: no change to the model code"
    if outcome in (Outcome.SUPERSEDED.value, Outcome.CANCELLED.value):
        return CommitState.CANCELLED, pipeline.reason or outcome
    return CommitState.FAILURE, f"failed: {pipeline.reason or 'no reason given'}"


def _best(attempts: list[Attempt], target: Target) -> float | None:
    best: float | None = None
    for attempt in attempts:
        if attempt.finished and attempt.metric is not None:
            if best is None or target.is_better(attempt.metric, best):
                best = attempt.metric
    return best


def waiting(settings: Settings, pipeline_id: str) -> bool:
    """Whether the pipeline has a status its host has not taken yet."""
    outbox = Outbox.of(settings)
    return outbox is not None and outbox.unsent(pipeline_id)[1] is not None


def send(settings: Settings, pipeline_id: str, last_try: bool = False) -> str:
    """Post the pipeline's newest unsent status; what happened, in a few words.
    Raises StatusHostUnavailable for Celery to send again later (never on the last
    try: then it gives up, logged and recorded)."""
    outbox = Outbox.of(settings)
    if outbox is None:
        return "no Redis: nothing recorded"
    keys = keystore_for(settings)
    claim = names.status_claim(pipeline_id)
    if not keys.claim(claim, holder(), names.STATUS_CLAIM_SECONDS):
        raise StatusHostUnavailable(f"pipeline {pipeline_id}: another worker is sending")
    try:
        return _send_newest(settings, outbox, pipeline_id, last_try)
    finally:
        keys.delete(claim)


def _send_newest(settings: Settings, outbox: Outbox, pipeline_id: str, last_try: bool) -> str:
    version, report = outbox.unsent(pipeline_id)
    if report is None:
        return "nothing new"
    repository = _listed(settings, report.repository)
    if repository is None or not repository.reports_status:
        outbox.sent(pipeline_id, version)
        return _record(settings, pipeline_id, f"not sent: {report.repository} reports none now")
    host = urlsplit(repository.status_api).netloc
    try:
        token = Path(repository.status_token_file).read_text().strip()
    except OSError as error:
        token, why = "", f"cannot read {repository.status_token_file}: {error.strerror}"
    else:
        why = f"{repository.status_token_file} is empty"
    if not token:
        outbox.sent(pipeline_id, version)
        return _failed(settings, pipeline_id, host, why)
    status = report.status
    post = request(
        repository.provider,
        repository.status_api,
        repository.name,
        report.commit,
        status,
        token,
        report.branch,
    )
    try:
        kept = _post(post, settings, repository.provider)
    except StatusHostUnavailable as error:
        if not last_try:
            _record(settings, pipeline_id, f"retrying: {error}")
            log.warning("pipeline %s: commit status to %s, retrying: %s", pipeline_id, host, error)
            raise
        outbox.sent(pipeline_id, version)
        return _failed(settings, pipeline_id, host, f"{error}, gave up after {TRIES} tries")
    except _Refused as error:
        outbox.sent(pipeline_id, version)
        return _failed(settings, pipeline_id, host, f"{error} (permanent)")
    outbox.sent(pipeline_id, version)
    said = f"{status.state.value}: {status.description}"
    log.info("pipeline %s: commit status sent to %s: %s", pipeline_id, host, said)
    return _record(settings, pipeline_id, ("kept " if kept else "sent ") + said)


def _failed(settings: Settings, pipeline_id: str, host: str, why: str) -> str:
    log.warning("pipeline %s: commit status to %s failed: %s", pipeline_id, host, why)
    return _record(settings, pipeline_id, f"failed: {why}")


def _record(settings: Settings, pipeline_id: str, text: str) -> str:
    """The pipeline's ct.commit_status tag; best effort (the store may be the trouble)."""
    try:
        Tracker(settings).set_tags(pipeline_id, {run_tags.COMMIT_STATUS: text})
    except Exception as error:
        log.warning("pipeline %s: %s not recorded: %s", pipeline_id, text, _why(error))
    return text


class _Refused(Exception):
    """The host answered for good (a 4xx, a redirect, an untrusted certificate)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is the answer, never followed: the token goes to the configured
    host only (urllib would resend the Authorization header to the new place)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _post(post: HostRequest, settings: Settings, provider: Provider) -> bool:
    """POST it; True when GitLab kept the state it had (same state again)."""
    context = ssl.create_default_context()  # the system's CAs, always verified
    if settings.status_ca_file:
        context.load_verify_locations(cafile=settings.status_ca_file)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect)
    sent = urllib.request.Request(post.url, data=post.body, headers=post.headers, method="POST")
    try:
        with opener.open(sent, timeout=TIMEOUT_SECONDS) as answer:
            answer.read(65536)
        return False
    except urllib.error.HTTPError as error:
        body = error.read(65536)
        if error.code == 429 or error.code >= 500:
            raise StatusHostUnavailable(f"HTTP {error.code}") from None
        if provider is Provider.GITLAB and error.code == 400 and GITLAB_SAME_STATE in body:
            return True
        followed = " (redirects are not followed)" if 300 <= error.code < 400 else ""
        raise _Refused(f"HTTP {error.code}{followed}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, ssl.SSLCertVerificationError):
            raise _Refused("TLS: the host's certificate is not trusted") from None
        raise StatusHostUnavailable(_why(error)) from None
    except (TimeoutError, ConnectionError, ssl.SSLError, http.client.HTTPException) as error:
        raise StatusHostUnavailable(_why(error)) from None


def _why(error: BaseException) -> str:
    """An error's kind and code, never its whole text (it could quote a request)."""
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        text = getattr(reason, "strerror", "") or (
            "timed out" if isinstance(reason, TimeoutError) else "unreachable"
        )
        return f"{type(reason).__name__}: {text}"
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {error.strerror or 'connection failed'}"
    if isinstance(error, StatusHostUnavailable):
        return str(error)
    return type(error).__name__


def _listed(settings: Settings, key: str) -> Repository | None:
    """The allow-list entry `<provider>:<name>` names, read now."""
    if not settings.repositories_file:
        return None
    listed = load_repositories(
        Path(settings.repositories_file), os.environ, settings.git_allow_file
    )
    return next((r for r in listed.values() if r.key == key), None)


class Outbox:
    """The statuses due, per pipeline, in Redis (keys.commit_status)."""

    def __init__(self, client: redis.Redis):
        self.client = client

    @classmethod
    def of(cls, settings: Settings) -> Outbox | None:
        """On the broker's Redis; None without one (embedded: pushes need Redis)."""
        if not settings.broker_url.startswith(("redis://", "rediss://")):
            return None
        return cls(redis_client(settings.broker_url))

    @staticmethod
    def _key(pipeline_id: str) -> str:
        return names.KEYSTORE_PREFIX + names.commit_status(pipeline_id)

    def want(self, pipeline_id: str, report: Report) -> bool:
        """Record `report` as due; False when it is due already (a replayed step)."""
        key, text = self._key(pipeline_id), report.to_json()
        if self.client.hget(key, "wanted") == text.encode():
            return False
        with self.client.pipeline(transaction=True) as batch:
            batch.hset(key, "wanted", text)
            batch.hincrby(key, "version", 1)
            batch.expire(key, int(names.DELIVERY_SECONDS))
            batch.execute()
        return True

    def unsent(self, pipeline_id: str) -> tuple[int, Report | None]:
        """The version of the status due, and the status unless the host took it."""
        wanted, version, sent = self.client.hmget(
            self._key(pipeline_id), ["wanted", "version", "sent"]
        )
        number = int(version or 0)
        if not wanted or number <= int(sent or 0):
            return number, None
        text = wanted.decode() if isinstance(wanted, bytes) else str(wanted)
        return number, Report.from_json(text)

    def sent(self, pipeline_id: str, version: int) -> None:
        """The host took (or refused for good) the status of `version`."""
        self.client.hset(self._key(pipeline_id), "sent", version)
