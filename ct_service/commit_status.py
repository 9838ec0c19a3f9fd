"""What a pushed commit's status on its git host says, and the request each host's
status API takes for it. Pure: no I/O (orchestration/status_reports.py sends).

Each host's endpoint (after the API base), the header that carries the token, and
the states used:
- GitHub: POST /repos/{owner}/{repo}/statuses/{sha}, `Authorization: Bearer`;
  pending, success, failure, error.
- GitLab: POST /projects/{url-encoded path}/statuses/{sha}, `PRIVATE-TOKEN`;
  pending, running, success, failed, canceled.
- Gitea, Forgejo: POST /repos/{owner}/{repo}/statuses/{sha}, `Authorization: token`;
  pending, success, failure, error.
- Bitbucket Cloud: POST /repositories/{workspace}/{slug}/commit/{sha}/statuses/build,
  `Authorization: Bearer`; INPROGRESS, SUCCESSFUL, FAILED, STOPPED.

Every status carries the same context (GitHub, Gitea, Forgejo `context`, GitLab
`name`, Bitbucket `key`), so each new one replaces the last on the host's page. The
owner and repository in the path are the allow-list entry's `name`, quoted; the
commit is a 40-digit id; nothing of a push payload goes into the request.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from urllib.parse import quote

from ct_service.repositories import Provider

CONTEXT = "ct-service"  # the status's name on the host: one per commit, updated in place
# GitHub refuses a longer description (422); the others take at least this much.
LONGEST_DESCRIPTION = 140


class CommitState(str, Enum):
    """A pipeline's state as a commit status, before each host names it."""

    PENDING = "pending"  # queued
    RUNNING = "running"  # an attempt trains
    SUCCESS = "success"  # promoted, champion kept, nothing to train
    FAILURE = "failure"  # budget spent, stopped, failed
    CANCELLED = "cancelled"  # superseded by a newer push, or cancelled by a person


GITHUB_STATES = {
    CommitState.PENDING: "pending",
    CommitState.RUNNING: "pending",
    CommitState.SUCCESS: "success",
    CommitState.FAILURE: "failure",
    CommitState.CANCELLED: "error",
}
HOST_STATES: dict[Provider, dict[CommitState, str]] = {
    Provider.GITHUB: GITHUB_STATES,
    Provider.GITEA: GITHUB_STATES,
    Provider.FORGEJO: GITHUB_STATES,
    Provider.GITLAB: {
        CommitState.PENDING: "pending",
        CommitState.RUNNING: "running",
        CommitState.SUCCESS: "success",
        CommitState.FAILURE: "failed",
        CommitState.CANCELLED: "canceled",
    },
    Provider.BITBUCKET: {
        CommitState.PENDING: "INPROGRESS",
        CommitState.RUNNING: "INPROGRESS",
        CommitState.SUCCESS: "SUCCESSFUL",
        CommitState.FAILURE: "FAILED",
        CommitState.CANCELLED: "STOPPED",
    },
}


@dataclass(frozen=True)
class CommitStatus:
    """One status to show on a commit: the pipeline at one moment."""

    state: CommitState
    description: str
    target_url: str  # the pipeline's run in the MLflow UI

    def __post_init__(self) -> None:
        text = " ".join(self.description.split())  # one line
        if len(text) > LONGEST_DESCRIPTION:
            text = text[: LONGEST_DESCRIPTION - 3] + "..."
        object.__setattr__(self, "description", text)


@dataclass(frozen=True)
class Report:
    """A status due for one pipeline's commit, as kept in Redis until it is sent:
    which allow-list entry it goes to (looked up again when sending), the commit and
    branch, and the status."""

    repository: str  # "<provider>:<name>" of the allow-list entry
    commit: str
    branch: str
    status: CommitStatus

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Report:
        fields = json.loads(text)
        status = fields.pop("status")
        status["state"] = CommitState(status["state"])
        return cls(**fields, status=CommitStatus(**status))


@dataclass(frozen=True)
class HostRequest:
    url: str
    headers: dict[str, str] = field(repr=False)  # holds the token
    body: bytes


def request(
    provider: Provider,
    api_base: str,
    name: str,
    commit: str,
    status: CommitStatus,
    token: str,
    branch: str = "",
) -> HostRequest:
    """The POST that sets `status` on `commit` of repository `name` (its allow-list
    name) through the host's API at `api_base` (the allow-list's, never a payload's)."""
    if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit):
        raise ValueError(f"not a 40-digit commit id: {commit!r}")
    base = api_base.rstrip("/")
    state = HOST_STATES[provider][status.state]
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    headers["User-Agent"] = "ct-service"
    body: dict[str, str]
    if provider is Provider.GITLAB:
        url = f"{base}/projects/{quote(name, safe='')}/statuses/{commit}"
        headers["PRIVATE-TOKEN"] = token
        body = {"state": state, "name": CONTEXT, "description": status.description}
        body["target_url"] = status.target_url
        if branch:
            body["ref"] = branch
    elif provider is Provider.BITBUCKET:
        workspace, slug = _owner_and_name(name)
        url = f"{base}/repositories/{workspace}/{slug}/commit/{commit}/statuses/build"
        headers["Authorization"] = f"Bearer {token}"
        body = {"key": CONTEXT, "name": CONTEXT, "state": state, "url": status.target_url}
        body["description"] = status.description
    else:
        owner, repo = _owner_and_name(name)
        url = f"{base}/repos/{owner}/{repo}/statuses/{commit}"
        if provider is Provider.GITHUB:
            headers["Authorization"] = f"Bearer {token}"
            headers["Accept"] = "application/vnd.github+json"
            headers["X-GitHub-Api-Version"] = "2022-11-28"
        else:  # Gitea and Forgejo
            headers["Authorization"] = f"token {token}"
        body = {"state": state, "context": CONTEXT, "description": status.description}
        body["target_url"] = status.target_url
    return HostRequest(url, headers, json.dumps(body).encode())


def _owner_and_name(name: str) -> tuple[str, str]:
    owner, _, repo = name.partition("/")
    if not owner or not repo or "/" in repo:
        raise ValueError(f"expected owner/name, got {name!r}")
    return quote(owner, safe=""), quote(repo, safe="")
