"""A local HTTPS server that plays a git host's commit status API, as each host
documents it, and keeps every request it gets. The one stand-in of the commit
status tests: GitHub, GitLab, Gitea, Forgejo and Bitbucket Cloud cannot run here.

- GitHub, Gitea, Forgejo: POST {base}/repos/{owner}/{repo}/statuses/{sha}, body
  state/target_url/description/context; GitHub wants `Authorization: Bearer <token>`,
  Gitea and Forgejo `Authorization: token <token>`; GitHub refuses a description
  over 140 characters (422).
- GitLab: POST {base}/projects/{url-encoded path}/statuses/{sha} with `PRIVATE-TOKEN`,
  body state/name/target_url/description/ref; like GitLab, it refuses (400 "Cannot
  transition status via ...") a status in the state the commit has already.
- Bitbucket Cloud: POST {base}/repositories/{workspace}/{slug}/commit/{sha}/statuses/build
  with `Authorization: Bearer <token>`, body key/state/url/name/description.

201 with the status as JSON when the request is right; 401 without the right token,
404 for another path, 422 for a bad body. `script` answers the next requests with the
given codes first (500, or 302 with `redirect_to`).
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from ct_service.repositories import Provider

STATES = {
    Provider.GITHUB: {"pending", "success", "failure", "error"},
    Provider.GITEA: {"pending", "success", "failure", "error", "warning"},
    Provider.FORGEJO: {"pending", "success", "failure", "error", "warning"},
    Provider.GITLAB: {"pending", "running", "success", "failed", "canceled", "skipped"},
    Provider.BITBUCKET: {"INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"},
}
# The API base path each host's API lives under, as the allow-list would name it.
BASE_PATHS = {
    Provider.GITHUB: "/github",  # api.github.com has none; a prefix tells hosts apart here
    Provider.GITLAB: "/gitlab/api/v4",
    Provider.GITEA: "/gitea/api/v1",
    Provider.FORGEJO: "/forgejo/api/v1",
    Provider.BITBUCKET: "/bitbucket/2.0",
}
SHA = r"(?P<sha>[0-9a-f]{40})"
ROUTES = {
    Provider.GITHUB: re.compile(rf"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/statuses/{SHA}"),
    Provider.GITEA: re.compile(rf"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/statuses/{SHA}"),
    Provider.FORGEJO: re.compile(rf"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/statuses/{SHA}"),
    Provider.GITLAB: re.compile(rf"/projects/(?P<project>[^/]+)/statuses/{SHA}"),
    Provider.BITBUCKET: re.compile(
        rf"/repositories/(?P<owner>[^/]+)/(?P<repo>[^/]+)/commit/{SHA}/statuses/build"
    ),
}


@dataclass
class Received:
    provider: Provider | None
    path: str
    headers: dict[str, str]
    body: dict
    answer: int

    @property
    def state(self) -> str:
        return str(self.body.get("state", ""))

    @property
    def description(self) -> str:
        return str(self.body.get("description", ""))

    @property
    def link(self) -> str:
        return str(self.body.get("url") or self.body.get("target_url", ""))


@dataclass
class StatusHost:
    """The server, its address, and what it received (in order)."""

    token: str
    cert_file: Path
    received: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    redirect_to: str = ""
    states: dict[str, str] = field(default_factory=dict)  # commit -> state (GitLab's rule)
    port: int = 0

    def base(self, provider: Provider) -> str:
        return f"https://127.0.0.1:{self.port}{BASE_PATHS[provider]}"

    def taken(self) -> list[Received]:
        return [r for r in self.received if r.answer == 201]


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made now with openssl."""
    cert, key = folder / "host.crt", folder / "host.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def serve(folder: Path, token: str) -> tuple[StatusHost, ThreadingHTTPServer]:
    """Start a host on a free port of 127.0.0.1 (stop it with server.shutdown())."""
    cert, key = self_signed(folder)
    host = StatusHost(token=token, cert_file=cert)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(host))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    host.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return host, server


def _handler(host: StatusHost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            provider, match = _route(self.path)
            code, answer = _answer(host, provider, match, dict(self.headers), body)
            host.received.append(Received(provider, self.path, dict(self.headers), body, code))
            self.send_response(code)
            if code in (301, 302, 307, 308):
                self.send_header("Location", host.redirect_to)
            payload = json.dumps(answer).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def _route(path: str) -> tuple[Provider | None, re.Match | None]:
    for provider, base in BASE_PATHS.items():
        if path.startswith(base + "/"):
            return provider, ROUTES[provider].fullmatch(path[len(base) :])
    return None, None


def _answer(
    host: StatusHost,
    provider: Provider | None,
    match: re.Match | None,
    headers: dict[str, str],
    body: dict,
) -> tuple[int, dict]:
    if host.script:
        return host.script.pop(0), {"message": "scripted"}
    if provider is None or match is None:
        return 404, {"message": "Not Found"}
    expected = {
        Provider.GITHUB: ("Authorization", f"Bearer {host.token}"),
        Provider.GITEA: ("Authorization", f"token {host.token}"),
        Provider.FORGEJO: ("Authorization", f"token {host.token}"),
        Provider.GITLAB: ("PRIVATE-TOKEN", host.token),
        Provider.BITBUCKET: ("Authorization", f"Bearer {host.token}"),
    }[provider]
    sent = {name.lower(): value for name, value in headers.items()}  # names are case-blind
    if sent.get(expected[0].lower()) != expected[1]:
        return 401, {"message": "Bad credentials"}
    state = body.get("state")
    if state not in STATES[provider]:
        return 422, {"message": f"state {state!r} is not one of {sorted(STATES[provider])}"}
    if provider is Provider.BITBUCKET and not (body.get("key") and body.get("url")):
        return 400, {"error": {"message": "key and url are required"}}
    if provider is Provider.GITHUB and len(body.get("description", "")) > 140:
        return 422, {"message": "description is too long (maximum is 140 characters)"}
    if provider is Provider.GITLAB:
        project = unquote(match["project"])
        commit = f"{project}@{match['sha']}"
        if host.states.get(commit) == state:
            verb = {"pending": "enqueue", "running": "run"}.get(state, state)
            return 400, {"message": f"Cannot transition status via :{verb} from :{state}"}
        host.states[commit] = state
    return 201, {"state": state, "description": body.get("description", "")}
