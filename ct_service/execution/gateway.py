"""The gateway training containers log through: an HTTP proxy in front of the
tracking server, run by the worker, that admits for each attempt only calls on that
attempt's own run (gateway_rules.py) and forwards them with the service's own
credentials.

Each attempt gets a token of its own (its container's MLFLOW_TRACKING_TOKEN, sent as
`Authorization: Bearer`), granted when the attempt is prepared and revoked when it
ends. A container never holds a credential of the tracking server, so it cannot
write another run, its pipeline's tags, an experiment or the registry, whatever
the server's own permissions are. One gateway per listening address and process,
started on first use, on a port of its own; refused calls answer 403 with MLflow's
error body (PERMISSION_DENIED) and are logged with their reason. A search of logged
models is not forwarded as sent: the gateway asks for its run's own models only.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from mlflow.utils.credentials import get_default_host_creds

from ct_service.execution.gateway_rules import (
    MODEL_SEARCH,
    Grant,
    admit,
    artifact_path,
    scoped_model_search,
    visible_models,
)

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 64 * 1024 * 1024  # a REST call's body (log-batch: at most 1,000 values)
CHUNK = 1024 * 1024
MAX_REFUSALS_KEPT = 20
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)
NEW_MODEL = "/api/2.0/mlflow/logged-models"


class Gateway:
    """A listening gateway and the grants it holds."""

    def __init__(
        self, upstream: str, host: str, credentials: dict[str, str] | None = None, port: int = 0
    ):
        """`credentials`: the account to forward with (MLFLOW_TRACKING_USERNAME and
        _PASSWORD); None: this process's own."""
        self.upstream = upstream.rstrip("/")
        self._grants: dict[str, Grant] = {}
        self._lock = threading.Lock()
        self._session = requests.Session()
        creds = get_default_host_creds(self.upstream)
        if credentials:
            self._session.auth = (
                credentials["MLFLOW_TRACKING_USERNAME"],
                credentials["MLFLOW_TRACKING_PASSWORD"],
            )
        elif creds.username and creds.password:
            self._session.auth = (creds.username, creds.password)
        elif creds.token:
            self._session.headers["Authorization"] = f"Bearer {creds.token}"
        self._session.verify = (
            False if creds.ignore_tls_verification else (creds.server_cert_path or True)
        )
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def grant(self, run_id: str, experiment_id: str, readable_runs: set[str]) -> str:
        """A new token for `run_id`'s process; `readable_runs` are the runs it continues."""
        own = self._session.get(
            f"{self.upstream}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=30
        )
        own.raise_for_status()
        grant = Grant(run_id, experiment_id, frozenset({run_id, *readable_runs}))
        mine = artifact_path(own.json()["run"]["info"].get("artifact_uri", ""))
        if mine:
            grant.writable_paths.add(mine)
        for other in readable_runs:
            found = self._session.get(
                f"{self.upstream}/api/2.0/mlflow/runs/get", params={"run_id": other}, timeout=30
            )
            if found.ok:
                path = artifact_path(found.json()["run"]["info"].get("artifact_uri", ""))
                if path:
                    grant.readable_paths.add(path)
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._grants[token] = grant
        return token

    def revoke(self, token: str) -> list[str]:
        """End the token's access; why its calls were refused (the first few)."""
        with self._lock:
            grant = self._grants.pop(token, None)
        return grant.refused if grant else []

    def grant_for(self, token: str) -> Grant | None:
        with self._lock:
            return self._grants.get(token)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.gateway = gateway
    return Handler


class _Handler(BaseHTTPRequestHandler):
    gateway: Gateway
    protocol_version = "HTTP/1.1"  # MLflow's client keeps its connections

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass  # refusals are logged with their reason; nothing else is worth a line

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        grant = self.gateway.grant_for(token) if token else None
        length = int(self.headers.get("Content-Length") or 0)
        if grant is None:
            self._drain(length)
            return self._refuse(401, "UNAUTHENTICATED", "no valid attempt token")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return self._refuse(411, "INVALID_PARAMETER_VALUE", "send a Content-Length")
        body: Any = None
        raw = b""
        is_transfer = parts.path.startswith("/api/2.0/mlflow-artifacts/")
        if not is_transfer and length:
            if length > MAX_JSON_BYTES:
                self.close_connection = True
                return self._refuse(413, "INVALID_PARAMETER_VALUE", "request body too large")
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                return self._refuse(400, "MALFORMED_REQUEST", "the body is not JSON")
        reason = admit(grant, self.command, parts.path, parse_qs(parts.query), body)
        if reason:
            self._drain(length if is_transfer else 0)
            log.warning("gateway refused run %s: %s", grant.run_id, reason)
            if len(grant.refused) < MAX_REFUSALS_KEPT:
                grant.refused.append(reason)
            return self._refuse(403, "PERMISSION_DENIED", reason)
        if parts.path == MODEL_SEARCH:
            return self._search_models(grant, body)
        data: Any = _Body(self.rfile, length) if is_transfer and length else raw or None
        self._forward(grant, parts, data, body)

    def _forward(self, grant: Grant, parts: Any, data: Any, body: Any) -> None:
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in HOP_BY_HOP and name.lower() != "authorization"
        }
        gateway = self.gateway
        try:
            answer = gateway._session.request(
                self.command,
                gateway.upstream + self.path,
                data=data,
                headers=headers,
                stream=True,
                timeout=(30, 600),
            )
        except requests.RequestException as error:
            return self._refuse(502, "TEMPORARILY_UNAVAILABLE", f"tracking server: {error}")
        with answer:
            size = answer.headers.get("Content-Length")
            if size is None or (parts.path == NEW_MODEL and answer.ok):
                content = answer.content  # decoded, whole
                if parts.path == NEW_MODEL and self.command == "POST" and answer.ok:
                    _record_model(grant, content)
                return self._answer(answer, iter([content]), len(content), decoded=True)
            chunks = answer.raw.stream(CHUNK, decode_content=False)  # as encoded
            self._answer(answer, chunks, int(size), decoded=False)

    def _search_models(self, grant: Grant, body: Any) -> None:
        """Answer a logged-models search with the models of the attempt's own run."""
        scoped = scoped_model_search(grant, body)
        if scoped is None:
            return self._reply(200, {"models": []})
        gateway = self.gateway
        try:
            answer = gateway._session.post(
                gateway.upstream + MODEL_SEARCH, json=scoped, timeout=(30, 600)
            )
        except requests.RequestException as error:
            return self._refuse(502, "TEMPORARILY_UNAVAILABLE", f"tracking server: {error}")
        try:
            found = answer.json()
        except ValueError:
            found = {}
        if not answer.ok:
            message = found.get("message") if isinstance(found, dict) else None
            code = found.get("error_code") if isinstance(found, dict) else None
            return self._refuse(answer.status_code, code or "INTERNAL_ERROR", message or "")
        self._reply(200, visible_models(grant, found))

    def _answer(
        self, answer: requests.Response, chunks: Iterator[bytes], size: int, decoded: bool
    ) -> None:
        left_out = HOP_BY_HOP | {"content-length"} | ({"content-encoding"} if decoded else set())
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in left_out:
                self.send_header(name, value)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(chunk)

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._reply(status, {"error_code": code, "message": message})

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        content = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def _drain(self, length: int) -> None:
        """Read a refused body, so the connection stays usable; a large one closes it."""
        if length > MAX_JSON_BYTES:
            self.close_connection = True
        elif length:
            self.rfile.read(length)


def _record_model(grant: Grant, content: bytes) -> None:
    """Remember a logged model the run created, and where its artifacts go."""
    try:
        info = json.loads(content)["model"]["info"]
    except (ValueError, KeyError, TypeError):
        return
    grant.add_model(str(info.get("model_id", "")), artifact_path(info.get("artifact_uri", "")))


class _Body:
    """A request body read from the client as the tracking server reads it: exactly
    Content-Length bytes (its length lets requests send the same header)."""

    def __init__(self, stream: Any, length: int):
        self._stream = stream
        self._left = length

    def __len__(self) -> int:
        return self._left

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left)
        chunk = self._stream.read(min(size, CHUNK))
        self._left -= len(chunk)
        return chunk


_gateways: dict[tuple[str, str, str], Gateway] = {}
_started = threading.Lock()


def gateway_for(upstream: str, host: str, credentials: dict[str, str] | None = None) -> Gateway:
    """This process's gateway to `upstream` on `host`, started on first use."""
    key = (upstream, host, (credentials or {}).get("MLFLOW_TRACKING_USERNAME", ""))
    with _started:
        found = _gateways.get(key)
        if found is None:
            found = _gateways[key] = Gateway(upstream, host, credentials)
        return found
