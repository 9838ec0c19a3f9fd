"""The webhook's endpoints, as a Blueprint: POST /hooks takes a verified push and
starts a pipeline for exactly the pushed commit; GET /pipelines and
/pipelines/<id> show them; GET /healthz says whether Redis answers.

The objects the views share (settings, allow-list, push records, Celery app) are
the Flask app's `ct` extension, set by create_app()."""

from __future__ import annotations

import hmac
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import redis
from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from ct_service import keys as names
from ct_service import run_tags
from ct_service.exceptions import BadSignature
from ct_service.keystore import keystore_for
from ct_service.orchestration import git_source, pipeline
from ct_service.orchestration.pushes import (
    PushRecord,
    PushRecords,
    describe_target,
    new_pipeline_id,
)
from ct_service.orchestration.queue import CtCelery, send_intake
from ct_service.report import run_url, summarize
from ct_service.repositories import Repository
from ct_service.settings import Settings
from ct_service.tracking import Pipeline, Tracker
from ct_service.webhook import push
from ct_service.webhook.push import EventKind

log = logging.getLogger(__name__)
NO_MODEL_CHANGE = "skipped: no change to the model code"
# One answer for an unknown repository and a bad signature: nothing to enumerate.
NOT_ACCEPTED = "not accepted: unknown repository or bad signature"
PIPELINE_ID = re.compile(r"[0-9a-f]{32}")
hooks = Blueprint("hooks", __name__)
Answer = tuple[dict[str, Any], int]  # a JSON body and its status


@dataclass(frozen=True)
class WebhookContext:
    settings: Settings
    repositories: dict[tuple[push.Provider, str], Repository]
    pushes: PushRecords
    celery: CtCelery


def _context() -> WebhookContext:
    context: WebhookContext = current_app.extensions["ct"]
    return context


@hooks.post("/hooks")
def receive() -> ResponseReturnValue:
    """Verify the signature on the raw bytes (against the secrets of the provider's
    watched repositories) before anything reads the body; then parse it, and start a
    pipeline for a push to a watched branch that changes the model code."""
    ct = _context()
    headers = dict(request.headers)
    provider = push.identify(headers)
    if request.mimetype != "application/json":
        return jsonify(error="send the push as application/json"), 415
    body = request.get_data(cache=False)
    signers = _signed_by(ct, provider, headers, body)
    if not signers:
        return jsonify(error=NOT_ACCEPTED), 401
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep, huge ints
        return jsonify(error="the body is not JSON this service can read"), 400
    kind = push.event_kind(provider, headers)
    if kind is EventKind.PING:
        return jsonify(status="pong"), 200
    repository = signers.get(push.repository_name(provider, payload))
    if repository is None:  # signed with a secret of another repository
        return jsonify(error=NOT_ACCEPTED), 401
    if kind is not EventKind.PUSH:
        return jsonify(status="ignored", reason="not a push event"), 200
    answers = [
        _answer(ct, event, repository) for event in push.parse_all(provider, headers, payload)
    ]
    if len(answers) == 1:
        return jsonify(answers[0][0]), answers[0][1]
    started = any(status == 202 for _, status in answers)  # a Bitbucket push of several refs
    return jsonify(pushes=[body for body, _ in answers]), 202 if started else 200


def _answer(ct: WebhookContext, event: push.Push, repository: Repository) -> Answer:
    not_trained = _not_trained(event, repository)
    if not_trained is not None:
        status, reason = not_trained
        return {"status": status, "reason": reason}, 200
    return _start(ct, event, repository)


def _signed_by(
    ct: WebhookContext, provider: push.Provider, headers: dict[str, str], body: bytes
) -> dict[str, Repository]:
    """The provider's watched repositories whose secret signed this body, by name
    (unsigned ones too with CT_WEBHOOK_INSECURE=1)."""
    found = {}
    for (of, name), repository in ct.repositories.items():
        if of is not provider:
            continue
        if not repository.secret and ct.settings.webhook_insecure:
            found[name] = repository
            continue
        try:
            push.verify(provider, headers, body, repository.secret)
        except BadSignature:
            continue
        found[name] = repository
    return found


def _start(ct: WebhookContext, event: push.Push, repository: Repository) -> Answer:
    """Record the push in Redis, send the intake step unless one is on its way,
    answer: no MLflow round trip (a worker creates the pipeline's run;
    orchestration/pushes.py). A second delivery of the same push (or commit)
    answers with the first one's pipeline id."""
    provider = repository.provider.value
    git_source.check_source(ct.settings, repository.url, event.after)
    keys = [names.pushed_commit(provider, repository.name, event.branch, event.after)]
    if event.delivery_id:
        keys.insert(0, names.delivery(provider, f"{event.delivery_id}:{event.branch}"))
    record = PushRecord(
        pipeline_id=new_pipeline_id(),
        repository=f"{provider}:{repository.name}",
        url=repository.url,
        project=repository.project,
        branch=event.branch,
        commit=event.after,
        # a provider that lists no changed paths (Bitbucket): the worker compares
        changed_since=event.before if event.changed_paths is None else "",
        watched=repository.watched_paths,
        target=describe_target(repository.target),
    )
    intake_mark = (names.step(pipeline.Task.INTAKE.value, ()), names.INTAKE_MARK_SECONDS)
    recorded = ct.pushes.record(
        record, keys, names.push_sequence(provider, repository.name, event.branch), intake_mark
    )
    if not recorded.is_new:
        return {"pipeline_id": recorded.pipeline_id, "status": "already started"}, 200
    if recorded.send_intake:
        try:
            send_intake(ct.celery, intake_mark[0], keystore_for(ct.settings).delete)
        except Exception as error:  # recorded: the next push or the watchdog sends it
            log.warning("push %s recorded, the intake not sent: %s", record.pipeline_id, error)
    name, commit = repository.name, event.after[:12]
    log.info("push %s@%s #%d -> pipeline %s", name, commit, recorded.sequence, record.pipeline_id)
    return {"pipeline_id": record.pipeline_id, "status": "queued"}, 202


@hooks.before_request
def _status_api_needs_its_token() -> ResponseReturnValue | None:
    """/pipelines* show failure text and training output: only with the bearer token
    CT_API_TOKEN (without one configured, the status API is off)."""
    if not request.path.startswith("/pipelines"):
        return None
    return api_token_refusal()


def api_token_refusal() -> ResponseReturnValue | None:
    """The answer to a status API request without the bearer token CT_API_TOKEN (or
    to any, when none is configured); None when it presents the token."""
    token = _context().settings.api_token
    if not token:
        return jsonify(error="the status API is off: set CT_API_TOKEN"), 404
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(presented.encode(), token.encode()):
        return jsonify(error="a bearer token is required"), 401
    return None


@hooks.get("/pipelines")
def list_pipelines() -> ResponseReturnValue:
    settings = _context().settings
    limit = min(max(request.args.get("limit", 20, type=int) or 20, 1), 200)
    found = Tracker(settings).recent_pipelines(limit=limit)
    return jsonify(pipelines=[_brief(settings, p) for p in found])


@hooks.get("/pipelines/<pipeline_id>")
def show_pipeline(pipeline_id: str) -> ResponseReturnValue:
    ct = _context()
    if not PIPELINE_ID.fullmatch(pipeline_id):
        return jsonify(error="not a pipeline id"), 404
    waiting = ct.pushes.state(pipeline_id)  # a push whose run does not exist (yet)
    if waiting is not None:
        return jsonify(waiting)
    run_id = ct.pushes.run_of(pipeline_id)  # a push's id, once its run exists
    tracker = Tracker(ct.settings)
    current = tracker.pipeline(run_id or pipeline_id)
    return jsonify(summarize(ct.settings, current, tracker.attempts(current)).to_json())


@hooks.get("/healthz")
def health() -> ResponseReturnValue:
    try:
        _context().pushes.client.ping()
    except redis.RedisError:
        return jsonify(status="redis unreachable"), 503
    return jsonify(status="ok")


def _brief(settings: Settings, p: Pipeline) -> dict[str, str]:
    return {
        "pipeline_id": p.id,
        "push_id": p.tags.get(run_tags.PUSH_ID, ""),
        "project": p.spec.project_name,
        "commit": p.spec.commit,
        "status": p.status.value,
        "outcome": p.outcome,
        "url": run_url(settings, p.experiment_id, p.id),
    }


def _not_trained(event: push.Push, repository: Repository) -> tuple[str, str] | None:
    """(status, reason) for a push that starts nothing; None when it trains."""
    if not event.branch:
        return "ignored", f"{event.ref} is not a branch"
    if event.deleted:
        return "ignored", "the branch was deleted"
    if event.branch not in repository.branches:
        return "ignored", f"branch {event.branch} is not watched"
    if event.changed_paths is not None and not repository.watches(event.changed_paths):
        return "skipped", NO_MODEL_CHANGE
    return None
