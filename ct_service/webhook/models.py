"""The status API's registry endpoints, as a Blueprint beside views.py's and behind
the same bearer token (CT_API_TOKEN): a model's production history, and the approval
of the winner a manual project left as @candidate.

    GET  /models/<name>/history
    POST /models/<name>/versions/<version>/approve   {"by": "alice"}
    POST /models/<name>/versions/<version>/reject    {"by": "alice", "reason": "..."}

`by` names the person for the history (default: "the status API"). Refusals answer
JSON with the status of their error: 404 for a model the registry does not hold, 409
for a version that is not the candidate, 400 for a rejection without a reason."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from mlflow import MlflowClient

from ct_service import approval, registry
from ct_service.report import one_line
from ct_service.tracking import Tracker
from ct_service.webhook.views import WebhookContext, api_token_refusal

models = Blueprint("models", __name__)
VERSION = re.compile(r"[1-9][0-9]{0,9}")
BY_LIMIT = 100  # characters of `by` kept
API = "the status API"


@models.before_request
def _needs_the_token() -> ResponseReturnValue | None:
    return api_token_refusal()


@models.get("/models/<name>/history")
def show_history(name: str) -> ResponseReturnValue:
    return jsonify(registry.history_json(_client(), name))


@models.post("/models/<name>/versions/<version>/approve")
def approve(name: str, version: str) -> ResponseReturnValue:
    if not VERSION.fullmatch(version):
        return jsonify(error="not a version number"), 404
    return jsonify(approval.approve(_client(), name, version, _person(_body())).to_json())


@models.post("/models/<name>/versions/<version>/reject")
def reject(name: str, version: str) -> ResponseReturnValue:
    if not VERSION.fullmatch(version):
        return jsonify(error="not a version number"), 404
    body = _body()
    why = body.get("reason")
    if not isinstance(why, str) or not why.strip():
        return jsonify(error='a rejection needs a reason: {"reason": "..."}'), 400
    return jsonify(approval.reject(_client(), name, version, _person(body), why).to_json())


def _client() -> MlflowClient:
    context: WebhookContext = current_app.extensions["ct"]
    return Tracker(context.settings).client


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _person(body: dict[str, Any]) -> str:
    """Who acted, as the request says, marked as coming through the API."""
    by = body.get("by")
    if not isinstance(by, str) or not by.strip():
        return API
    return f"{one_line(by).strip()[:BY_LIMIT]} (via {API})"
