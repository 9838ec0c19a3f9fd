"""The git push webhook (Flask). It verifies a push, decides whether it trains,
persists a pipeline for exactly the pushed commit and enqueues its id; the work
happens in workers. Every answer is JSON; bad input never gets a 5xx.

    gunicorn -w 2 -b 0.0.0.0:8000 'ct_service.webhook:create_app()'   (or `ct-service serve`)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import redis
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from ct_service import pipeline, push
from ct_service.deliveries import PENDING, Deliveries
from ct_service.exceptions import CtError, SettingsError, is_infrastructure_failure
from ct_service.push import EventKind
from ct_service.report import run_url, summarize
from ct_service.repositories import Repository, load_repositories
from ct_service.settings import Settings
from ct_service.tracking import Pipeline, Tracker

log = logging.getLogger(__name__)
NO_MODEL_CHANGE = "skipped: no change to the model code"


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    repositories = _allow_list(settings)
    from workers.celery_app import enqueue, make_celery

    celery = make_celery(settings)
    deliveries = Deliveries(redis.Redis.from_url(settings.broker_url))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_body_bytes

    @app.errorhandler(CtError)
    def domain_error(error: CtError):
        return jsonify(error=str(error)), error.status_code

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify(error=error.description), error.code

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("webhook request failed")
        if is_infrastructure_failure(error):
            return jsonify(error="a backing service is unavailable; retry later"), 503
        return jsonify(error="internal error"), 500

    @app.post("/hooks")
    def receive():
        provider = push.identify(request.headers)
        if request.mimetype != "application/json":
            return jsonify(error="send the push as application/json"), 415
        body = request.get_data(cache=False)
        try:
            payload = json.loads(body)
        except ValueError:
            return jsonify(error="the body is not JSON"), 400
        kind = push.event_kind(provider, request.headers)
        name = push.repository_name(provider, payload)
        repository = repositories.get((provider, name))
        if repository is None:
            if kind is EventKind.PING:  # organisation-level pings name no repository
                return jsonify(status="pong"), 200
            return jsonify(error=f"{provider.value} repository {name!r} is not watched"), 403
        if repository.secret or not settings.webhook_insecure:
            push.verify(provider, request.headers, body, repository.secret)
        if kind is EventKind.PING:
            return jsonify(status="pong"), 200
        if kind is not EventKind.PUSH:
            return jsonify(status="ignored", reason="not a push event"), 200
        event = push.parse(provider, request.headers, payload)
        not_trained = _not_trained(event, repository, force=request.args.get("force") == "1")
        if not_trained is not None:
            status, reason = not_trained
            return jsonify(status=status, reason=reason), 200
        return start(event, repository, force=request.args.get("force") == "1")

    def start(event: push.Push, repository: Repository, force: bool):
        where = f"{repository.provider.value}:{repository.name}"
        keys = [f"commit:{where}:{event.branch}:{event.after}"]
        if event.delivery_id:
            keys.insert(0, f"delivery:{repository.provider.value}:{event.delivery_id}")
        existing = deliveries.claim(keys)
        if existing == PENDING:
            return jsonify(error="another delivery of this push is starting it"), 409
        if existing:
            return jsonify(pipeline_id=existing, status="already started"), 200
        try:
            pipeline_id = pipeline.create(
                settings,
                repository.project,
                commit=event.after,
                target=repository.target,
                source_url=repository.url,
                source_branch=event.branch,
                # a provider that lists no changed paths (Bitbucket): the worker compares
                filter_since=event.before if event.changed_paths is None and not force else "",
                watched=repository.watched_paths,
            )
            enqueue(celery, pipeline.Task.START, pipeline_id)
        except Exception:
            deliveries.release(keys)
            raise
        deliveries.remember(keys, pipeline_id)
        log.info("push %s@%s -> pipeline %s", repository.name, event.after[:12], pipeline_id)
        return jsonify(pipeline_id=pipeline_id), 202

    @app.get("/pipelines")
    def list_pipelines():
        limit = min(max(request.args.get("limit", 20, type=int) or 20, 1), 200)
        found = Tracker(settings).recent_pipelines(limit=limit)
        return jsonify(pipelines=[brief(p) for p in found])

    @app.get("/pipelines/<pipeline_id>")
    def show_pipeline(pipeline_id: str):
        if not pipeline_id.isalnum() or len(pipeline_id) > 64:
            return jsonify(error="not a pipeline id"), 404
        tracker = Tracker(settings)
        current = tracker.pipeline(pipeline_id)
        return jsonify(summarize(settings, current, tracker.attempts(current)).to_json())

    @app.get("/healthz")
    def health():
        try:
            deliveries.client.ping()
        except redis.RedisError:
            return jsonify(status="redis unreachable"), 503
        return jsonify(status="ok")

    def brief(p: Pipeline) -> dict[str, str]:
        return {
            "pipeline_id": p.id,
            "project": p.spec.project_name,
            "commit": p.spec.commit,
            "status": p.status.value,
            "outcome": p.outcome,
            "url": run_url(settings, p.experiment_id, p.id),
        }

    return app


def _allow_list(settings: Settings) -> dict:
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        raise SettingsError("CT_BROKER_URL: the webhook hands pipelines to workers over Redis")
    if not settings.repositories_file:
        raise SettingsError("CT_REPOSITORIES_FILE: the webhook needs its allow-list")
    repositories = load_repositories(Path(settings.repositories_file), os.environ)
    unsigned = [f"{p.value} {n}" for (p, n), r in repositories.items() if not r.secret]
    if unsigned and not settings.webhook_insecure:
        raise SettingsError(
            f"{settings.repositories_file}: no secret for {', '.join(unsigned)}; give each "
            "repository secret_env or secret_file (CT_WEBHOOK_INSECURE=1 only for local tests)"
        )
    if unsigned:
        log.warning("INSECURE: accepting unsigned pushes for %s (CT_WEBHOOK_INSECURE=1)", unsigned)
    return repositories


def _not_trained(event: push.Push, repository: Repository, force: bool) -> tuple[str, str] | None:
    """(status, reason) for a push that starts nothing; None when it trains."""
    if event.deleted:
        return "ignored", "the branch was deleted"
    if not event.branch:
        return "ignored", f"{event.ref} is not a branch"
    if event.branch not in repository.branches:
        return "ignored", f"branch {event.branch} is not watched"
    if (
        not force
        and event.changed_paths is not None
        and not repository.watches(event.changed_paths)
    ):
        return "skipped", NO_MODEL_CHANGE
    return None
