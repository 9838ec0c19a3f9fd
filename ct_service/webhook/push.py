"""Push events from git hosts: which provider sent a request, whether its signature
holds, and what the push asks for. Pure functions over headers and bodies; the web
layer decides what to answer.

| provider | event header | delivery id | authenticity (hmac = hex HMAC-SHA256 of the body) |
| --- | --- | --- | --- |
| GitHub | X-GitHub-Event | X-GitHub-Delivery | X-Hub-Signature-256: sha256=<hmac> |
| GitLab | X-Gitlab-Event | X-Gitlab-Event-UUID | X-Gitlab-Token: the secret itself |
| Gitea | X-Gitea-Event | X-Gitea-Delivery | X-Gitea-Signature: <hmac> |
| Forgejo | X-Forgejo-Event | X-Forgejo-Delivery | X-Forgejo-Signature: <hmac> |
| Bitbucket Cloud | X-Event-Key | X-Request-UUID | X-Hub-Signature: sha256=<hmac> |

Gitea and Forgejo also send GitHub's headers; their own headers are checked first.
Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ct_service.checkout import ZERO_SHA
from ct_service.exceptions import BadPayload, BadSignature, UnknownProvider
from ct_service.repositories import Provider

__all__ = ["Provider", "Push", "identify", "event_kind", "parse", "sign", "verify"]


EVENT_HEADER = {
    Provider.FORGEJO: "X-Forgejo-Event",
    Provider.GITEA: "X-Gitea-Event",
    Provider.GITHUB: "X-GitHub-Event",
    Provider.GITLAB: "X-Gitlab-Event",
    Provider.BITBUCKET: "X-Event-Key",
}
DELIVERY_HEADER = {
    Provider.FORGEJO: "X-Forgejo-Delivery",
    Provider.GITEA: "X-Gitea-Delivery",
    Provider.GITHUB: "X-GitHub-Delivery",
    Provider.GITLAB: "X-Gitlab-Event-UUID",
    Provider.BITBUCKET: "X-Request-UUID",
}
SIGNATURE_HEADER = {
    Provider.FORGEJO: "X-Forgejo-Signature",
    Provider.GITEA: "X-Gitea-Signature",
    Provider.GITHUB: "X-Hub-Signature-256",
    Provider.GITLAB: "X-Gitlab-Token",
    Provider.BITBUCKET: "X-Hub-Signature",
}
PUSH_EVENTS = {
    Provider.FORGEJO: "push",
    Provider.GITEA: "push",
    Provider.GITHUB: "push",
    Provider.GITLAB: "Push Hook",
    Provider.BITBUCKET: "repo:push",
}
PING_EVENTS = {
    Provider.FORGEJO: "ping",
    Provider.GITEA: "ping",
    Provider.GITHUB: "ping",
    Provider.GITLAB: "",  # GitLab's "Test" button sends a real-looking push
    Provider.BITBUCKET: "diagnostics:ping",
}


class EventKind(str, Enum):
    PUSH = "push"
    PING = "ping"
    OTHER = "other"


@dataclass(frozen=True)
class Push:
    provider: Provider
    repository: str  # "owner/name" as the provider names it
    ref: str  # refs/heads/main, refs/tags/v1
    before: str
    after: str  # the commit to train
    deleted: bool
    changed_paths: frozenset[str] | None  # None: the provider does not list them (Bitbucket)
    delivery_id: str

    @property
    def branch(self) -> str:
        """The branch name, or "" when a tag (or anything else) was pushed."""
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else ""


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return ""


def identify(headers: Mapping[str, str]) -> Provider:
    """The provider, by the event header it sends (Forgejo and Gitea before GitHub)."""
    for provider, header in EVENT_HEADER.items():
        if _header(headers, header):
            return provider
    raise UnknownProvider("not a push from a known git host: no event header")


def event_kind(provider: Provider, headers: Mapping[str, str]) -> EventKind:
    event = _header(headers, EVENT_HEADER[provider])
    if event == PUSH_EVENTS[provider]:
        return EventKind.PUSH
    if event and event == PING_EVENTS[provider]:
        return EventKind.PING
    return EventKind.OTHER


def delivery_id(provider: Provider, headers: Mapping[str, str]) -> str:
    return _header(headers, DELIVERY_HEADER[provider]).strip()


def sign(provider: Provider, body: bytes, secret: str) -> dict[str, str]:
    """The authenticity header a provider would send (for tests and the CLI helper)."""
    if provider is Provider.GITLAB:
        return {SIGNATURE_HEADER[provider]: secret}
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if provider in (Provider.GITHUB, Provider.BITBUCKET):
        digest = "sha256=" + digest
    return {SIGNATURE_HEADER[provider]: digest}


def verify(provider: Provider, headers: Mapping[str, str], body: bytes, secret: str) -> None:
    """Raise BadSignature unless the request carries this secret's signature."""
    if not secret:
        raise BadSignature("no secret is configured for this repository")
    presented = _header(headers, SIGNATURE_HEADER[provider]).strip()
    if not presented:
        raise BadSignature(f"missing {SIGNATURE_HEADER[provider]} header")
    expected = sign(provider, body, secret)[SIGNATURE_HEADER[provider]]
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise BadSignature(f"{SIGNATURE_HEADER[provider]} does not match")


def parse(provider: Provider, headers: Mapping[str, str], payload: Any) -> Push:
    """The push a verified body describes (for Bitbucket, its last change)."""
    return parse_all(provider, headers, payload)[-1]


def parse_all(provider: Provider, headers: Mapping[str, str], payload: Any) -> list[Push]:
    """Every push a verified body describes: one, or one per change of a Bitbucket
    push (a push to main and dev at once is two); BadPayload when it is none."""
    if not isinstance(payload, dict):
        raise BadPayload("the body must be a JSON object")
    try:
        if provider is Provider.BITBUCKET:
            return _bitbucket(payload, delivery_id(provider, headers))
        if provider is Provider.GITLAB:
            return [_gitlab(payload, delivery_id(provider, headers))]
        return [_github_like(provider, payload, delivery_id(provider, headers))]
    except (KeyError, TypeError, AttributeError) as error:
        raise BadPayload(
            f"not a {provider.value} push payload: missing or malformed {error}"
        ) from None


def repository_name(provider: Provider, payload: Any) -> str:
    """The repository a verified body names; "" when it names none."""
    try:
        if provider is Provider.GITLAB:
            name = payload["project"]["path_with_namespace"]
        else:
            name = payload["repository"]["full_name"]
    except (KeyError, TypeError):
        return ""
    return name if isinstance(name, str) else ""


def _listed_paths(commits: Any, total: Any) -> frozenset[str] | None:
    """The paths a push's commit list changed; None ("changes unknown": the worker
    compares the two commits with git) when the list is empty (a force-push back)
    or cut short (more commits than listed)."""
    if commits is not None and not isinstance(commits, list):
        raise BadPayload("commits must be a list")
    if not commits:
        return None
    if isinstance(total, int) and not isinstance(total, bool) and total > len(commits):
        return None
    return _paths(commits)


def _github_like(provider: Provider, payload: dict, delivery: str) -> Push:
    """GitHub, Gitea and Forgejo share GitHub's push format (Gitea and Forgejo give
    `total_commits` when they trim the list)."""
    after = _sha(payload["after"], "after")
    return Push(
        provider=provider,
        repository=_text(payload["repository"]["full_name"], "repository.full_name"),
        ref=_text(payload["ref"], "ref"),
        before=_sha(payload.get("before") or ZERO_SHA, "before"),
        after=after,
        deleted=bool(payload.get("deleted")) or after == ZERO_SHA,
        changed_paths=_listed_paths(payload.get("commits"), payload.get("total_commits")),
        delivery_id=delivery,
    )


def _gitlab(payload: dict, delivery: str) -> Push:
    after = _sha(payload["after"], "after")
    return Push(
        provider=Provider.GITLAB,
        repository=_text(payload["project"]["path_with_namespace"], "project.path_with_namespace"),
        ref=_text(payload["ref"], "ref"),
        before=_sha(payload.get("before") or ZERO_SHA, "before"),
        after=_sha(payload.get("checkout_sha") or after, "checkout_sha"),
        deleted=after == ZERO_SHA,
        # GitLab lists at most 20 commits and gives the whole count
        changed_paths=_listed_paths(payload.get("commits"), payload.get("total_commits_count")),
        delivery_id=delivery,
    )


def _bitbucket(payload: dict, delivery: str) -> list[Push]:
    changes = payload["push"]["changes"]
    if not isinstance(changes, list) or not changes:
        raise BadPayload("not a bitbucket push payload: push.changes is empty")
    repository = _text(payload["repository"]["full_name"], "repository.full_name")
    return [_bitbucket_change(change, repository, delivery) for change in changes]


def _bitbucket_change(change: Any, repository: str, delivery: str) -> Push:
    if not isinstance(change, dict):
        raise BadPayload("not a bitbucket push payload: a change is not an object")
    new, old = change.get("new"), change.get("old")
    ref_of = new or old
    if not isinstance(ref_of, dict):
        raise BadPayload("not a bitbucket push payload: a change has neither new nor old")
    prefix = "refs/heads/" if ref_of["type"] == "branch" else "refs/tags/"
    return Push(
        provider=Provider.BITBUCKET,
        repository=repository,
        ref=prefix + _text(ref_of["name"], "name"),
        before=_sha(old["target"]["hash"], "old.target.hash") if old else ZERO_SHA,
        after=_sha(new["target"]["hash"], "new.target.hash") if new else ZERO_SHA,
        deleted=new is None or bool(change.get("closed")),
        changed_paths=None,  # Bitbucket lists no files: the worker compares the commits
        delivery_id=delivery,
    )


def _paths(commits: list) -> frozenset[str]:
    paths: set[str] = set()
    for commit in commits:
        for key in ("added", "modified", "removed"):
            paths.update(_text(p, f"commits[].{key}") for p in commit.get(key) or [])
    return frozenset(paths)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadPayload(f"{name} must be a non-empty string")
    return value


def _sha(value: Any, name: str) -> str:
    text = _text(value, name).lower()
    if len(text) != 40 or any(c not in "0123456789abcdef" for c in text):
        raise BadPayload(f"{name} must be a 40-character commit id")
    return text
