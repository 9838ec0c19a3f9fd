"""POST /hooks/data: "these objects changed", from an S3-compatible store's event
notification (`{"Records": [{"s3": {"bucket": {"name": ...}, "object": {"key": ...}}}]}`,
as AWS, MinIO and SeaweedFS send it) or from a user's script (`{"sources":
["s3://bucket/prefix/"]}`). Signed with CT_DATA_HOOK_SECRET, checked on the raw bytes
before anything reads them: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
body>` (push.sign makes it), or `Authorization: Bearer <secret>` (what MinIO's
webhook target sends). The answer comes at once; a worker checks the named sources
(orchestration/data_trigger.py): a new version starts one pipeline, a redelivered
event or the same version again starts nothing."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any
from urllib.parse import unquote_plus

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from ct_service.exceptions import BadSignature
from ct_service.orchestration.data_trigger import DataTask
from ct_service.orchestration.queue import ROUTES
from ct_service.repositories import Provider
from ct_service.webhook import push
from ct_service.webhook.views import NOT_ACCEPTED, _context

log = logging.getLogger(__name__)
CHANGES = ("ObjectCreated", "ObjectRemoved")  # event names that change a version
MAX_OBJECTS = 1000  # objects one request may name
data_hooks = Blueprint("data_hooks", __name__)


@data_hooks.post("/hooks/data")
def receive_data() -> ResponseReturnValue:
    ct = _context()
    secret = ct.settings.data.hook_secret
    if not secret:
        return jsonify(error="the data hook is off: set CT_DATA_HOOK_SECRET"), 404
    body = request.get_data(cache=False)
    if not signed(dict(request.headers), body, secret):
        return jsonify(error=NOT_ACCEPTED), 401
    try:
        changed = changed_objects(json.loads(body))
    except (ValueError, RecursionError) as error:
        return jsonify(error=f"not an S3 event or a list of sources: {error}"[:300]), 400
    if not changed:
        return jsonify(status="ignored", reason="no object was created or removed"), 200
    ct.celery.send_task(DataTask.CHECK.value, args=[changed], queue=ROUTES[DataTask.CHECK.value])
    log.info("data hook: %d changed object(s), a check is queued", len(changed))
    return jsonify(status="queued", objects=len(changed)), 202


def signed(headers: dict[str, str], body: bytes, secret: str) -> bool:
    """Whether the body carries the hook secret's HMAC, or the secret as bearer token."""
    bearer = headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if bearer and "X-Hub-Signature-256" not in headers:
        return hmac.compare_digest(bearer.encode(), secret.encode())
    try:
        push.verify(Provider.GITHUB, headers, body, secret)
    except BadSignature:
        return False
    return True


def changed_objects(payload: Any) -> list[str]:
    """s3://bucket/key of each object the payload names; ValueError when it is neither
    an S3 event notification nor {"sources": [...]}."""
    if not isinstance(payload, dict):
        raise ValueError("the body must be a JSON object")
    if "sources" in payload:
        sources = payload["sources"]
        if not isinstance(sources, list) or not all(
            isinstance(s, str) and s.startswith("s3://") for s in sources
        ):
            raise ValueError("sources must be a list of s3://bucket/prefix URLs")
        found = sources
    else:
        records = payload.get("Records")
        if not isinstance(records, list):
            raise ValueError("expected Records (an S3 event) or sources")
        found = []
        for record in records:
            try:
                event = str(record.get("eventName", ""))
                bucket = record["s3"]["bucket"]["name"]
                key = unquote_plus(record["s3"]["object"]["key"])  # S3 URL-encodes keys
            except (KeyError, TypeError, AttributeError):
                raise ValueError("a record without s3.bucket.name and s3.object.key") from None
            if (
                event.startswith(
                    ("ObjectCreated", "ObjectRemoved", "s3:ObjectCreated", "s3:ObjectRemoved")
                )
                or not event
            ):
                found.append(f"s3://{bucket}/{key}")
    if len(found) > MAX_OBJECTS:
        raise ValueError(f"more than {MAX_OBJECTS} objects in one request")
    return sorted(set(found))
