"""The git push webhook (Flask): the app factory. The endpoints are in views.py;
the work happens in workers. Every answer is JSON; bad input never gets a 5xx.

    gunicorn -c python:ct_service.webhook.gunicorn_conf   (production; or `ct-service serve`)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import redis
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from ct_service.exceptions import CtError, SettingsError, is_infrastructure_failure
from ct_service.keystore import redis_client
from ct_service.orchestration.pushes import PushRecords
from ct_service.orchestration.queue import make_celery
from ct_service.repositories import Repository, load_repositories
from ct_service.settings import Settings
from ct_service.webhook.body_deadline import BodyDeadline
from ct_service.webhook.data_hook import data_hooks
from ct_service.webhook.models import models
from ct_service.webhook.push import Provider
from ct_service.webhook.views import WebhookContext, hooks

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_body_bytes
    app.wsgi_app = BodyDeadline(  # type: ignore[method-assign]
        app.wsgi_app, settings.webhook_body_seconds, settings.webhook_max_body_bytes
    )
    app.extensions["ct"] = WebhookContext(
        settings=settings,
        repositories=_allow_list(settings),
        pushes=PushRecords(redis_client(settings.broker_url)),
        celery=make_celery(settings),
    )
    _warn_without_persistence(app.extensions["ct"].pushes.client)
    app.register_blueprint(hooks)
    app.register_blueprint(data_hooks)
    app.register_blueprint(models)
    app.register_error_handler(CtError, _domain_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app


def _domain_error(error: CtError) -> ResponseReturnValue:
    return jsonify(error=str(error)), error.status_code


def _http_error(error: HTTPException) -> ResponseReturnValue:
    return jsonify(error=error.description), error.code or 500


def _unexpected(error: Exception) -> ResponseReturnValue:
    log.exception("webhook request failed")
    if is_infrastructure_failure(error):
        return jsonify(error="a backing service is unavailable; retry later"), 503
    return jsonify(error="internal error"), 500


def _warn_without_persistence(client: redis.Redis) -> None:
    """A recorded push lives only in Redis until a worker creates its run: say so
    when this Redis does not log every write (a restart would lose pushes answered
    since its last snapshot, or all of them without one)."""
    try:
        config = client.config_get("appendonly")
    except redis.RedisError:  # CONFIG renamed or refused, or Redis not up yet
        return
    if config.get("appendonly") != "yes":
        log.warning(
            "Redis runs without appendonly: pushes answered but not yet taken by a worker "
            "would be lost if it restarts; turn on appendonly"
        )


def _allow_list(settings: Settings) -> dict[tuple[Provider, str], Repository]:
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        raise SettingsError("CT_BROKER_URL: the webhook hands pipelines to workers over Redis")
    if not settings.repositories_file:
        raise SettingsError("CT_REPOSITORIES_FILE: the webhook needs its allow-list")
    repositories = load_repositories(
        Path(settings.repositories_file), os.environ, settings.git_allow_file
    )
    unsigned = [f"{p.value} {n}" for (p, n), r in repositories.items() if not r.secret]
    if unsigned and not settings.webhook_insecure:
        raise SettingsError(
            f"{settings.repositories_file}: no secret for {', '.join(unsigned)}; give each "
            "repository secret_env or secret_file (CT_WEBHOOK_INSECURE=1 only for local tests)"
        )
    if unsigned:
        log.warning("INSECURE: accepting unsigned pushes for %s (CT_WEBHOOK_INSECURE=1)", unsigned)
    return repositories
