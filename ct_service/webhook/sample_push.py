"""A correctly signed sample push, in the format of the repository's own git host,
for users wiring up a webhook (`ct-service send-sample`)."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from typing import Any

from ct_service.checkout import ZERO_SHA
from ct_service.repositories import Repository
from ct_service.webhook.push import DELIVERY_HEADER, EVENT_HEADER, PUSH_EVENTS, Provider, sign


def tip_of(repository: Repository, branch: str) -> str:
    """The commit a branch points at now (`git ls-remote`)."""
    result = subprocess.run(
        ["git", "ls-remote", repository.url, f"refs/heads/{branch}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    commit = result.stdout.split()[0] if result.returncode == 0 and result.stdout.strip() else ""
    if not commit:
        raise ValueError(f"cannot find branch {branch} of {repository.name}; pass --commit")
    return commit


def payload(repository: Repository, branch: str, commit: str) -> dict[str, Any]:
    changed = [f"{repository.project}/MLproject" if repository.project != "." else "MLproject"]
    ref = f"refs/heads/{branch}"
    if repository.provider is Provider.GITLAB:
        return {
            "object_kind": "push",
            "ref": ref,
            "before": ZERO_SHA,
            "after": commit,
            "checkout_sha": commit,
            "project": {"path_with_namespace": repository.name},
            "commits": [{"id": commit, "added": [], "modified": changed, "removed": []}],
        }
    if repository.provider is Provider.BITBUCKET:
        new = {"type": "branch", "name": branch, "target": {"hash": commit}}
        return {
            "push": {"changes": [{"new": new, "old": None, "created": True, "closed": False}]},
            "repository": {"full_name": repository.name},
        }
    return {
        "ref": ref,
        "before": ZERO_SHA,
        "after": commit,
        "created": True,
        "deleted": False,
        "repository": {"full_name": repository.name},
        "commits": [{"id": commit, "added": [], "modified": changed, "removed": []}],
    }


def send(
    url: str, repository: Repository, branch: str, commit: str, timeout: float = 30
) -> tuple[int, dict]:
    body = json.dumps(payload(repository, branch, commit)).encode()
    provider = repository.provider
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER[provider]: PUSH_EVENTS[provider],
        DELIVERY_HEADER[provider]: str(uuid.uuid4()),
        **(sign(provider, body, repository.secret) if repository.secret else {}),
    }
    request = urllib.request.Request(
        url.rstrip("/") + "/hooks", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
