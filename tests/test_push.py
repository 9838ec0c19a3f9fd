"""Push events as each git host really sends them: provider detection, signatures,
and the commit, branch and changed paths a push asks to train."""

from __future__ import annotations

import json
import random

import pytest
from push_samples import AFTER, BEFORE, BITBUCKET_PUSH, CASES, GITHUB_PUSH, GITLAB_PUSH, SECRET

from ct_service.checkout import ZERO_SHA
from ct_service.exceptions import BadPayload, BadSignature, PushError, UnknownProvider
from ct_service.webhook.push import (
    EventKind,
    Provider,
    delivery_id,
    event_kind,
    identify,
    parse,
    sign,
    verify,
)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("provider", "headers", "payload"), CASES, ids=lambda c: getattr(c, "value", "")
)
def test_each_provider_is_recognised_verified_and_parsed(provider, headers, payload):
    body = json.dumps(payload).encode()
    signed = {**headers, **sign(provider, body, SECRET)}
    assert identify(signed) is provider
    assert event_kind(provider, signed) is EventKind.PUSH
    verify(provider, signed, body, SECRET)
    push = parse(provider, signed, json.loads(body))
    assert push.provider is provider
    assert push.repository == "acme/models"
    assert push.branch == "main"
    assert push.after == AFTER and push.before == BEFORE
    assert not push.deleted
    assert push.delivery_id == delivery_id(provider, signed) != ""
    if provider is Provider.BITBUCKET:
        assert push.changed_paths is None
    elif provider is Provider.GITLAB:
        assert push.changed_paths == {"projects/lenet/network.py"}
    else:
        assert push.changed_paths == {
            "projects/lenet/ct.yaml",
            "projects/lenet/train.py",
            "old.txt",
        }


@pytest.mark.unit
@pytest.mark.parametrize(
    ("provider", "headers", "payload"), CASES, ids=lambda c: getattr(c, "value", "")
)
def test_a_wrong_or_missing_signature_is_refused(provider, headers, payload):
    body = json.dumps(payload).encode()
    with pytest.raises(BadSignature, match="missing"):
        verify(provider, headers, body, SECRET)
    forged = {**headers, **sign(provider, body, "not-the-secret")}
    with pytest.raises(BadSignature, match="does not match"):
        verify(provider, forged, body, SECRET)
    signed = {**headers, **sign(provider, body, SECRET)}
    if provider is not Provider.GITLAB:  # GitLab's token is not computed over the body
        with pytest.raises(BadSignature, match="does not match"):
            verify(provider, signed, body + b" ", SECRET)
    with pytest.raises(BadSignature, match="no secret"):
        verify(provider, signed, body, "")


@pytest.mark.unit
def test_signature_formats_match_each_providers_documentation():
    body = b'{"ref": "refs/heads/main"}'
    import hashlib
    import hmac

    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(Provider.GITHUB, body, SECRET) == {"X-Hub-Signature-256": f"sha256={digest}"}
    assert sign(Provider.BITBUCKET, body, SECRET) == {"X-Hub-Signature": f"sha256={digest}"}
    assert sign(Provider.GITEA, body, SECRET) == {"X-Gitea-Signature": digest}
    assert sign(Provider.FORGEJO, body, SECRET) == {"X-Forgejo-Signature": digest}
    assert sign(Provider.GITLAB, body, SECRET) == {"X-Gitlab-Token": SECRET}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("provider", "headers", "kind"),
    [
        (Provider.GITHUB, {"X-GitHub-Event": "ping"}, EventKind.PING),
        (Provider.GITEA, {"X-Gitea-Event": "ping"}, EventKind.PING),
        (Provider.BITBUCKET, {"X-Event-Key": "diagnostics:ping"}, EventKind.PING),
        (Provider.GITHUB, {"X-GitHub-Event": "issues"}, EventKind.OTHER),
        (Provider.GITLAB, {"X-Gitlab-Event": "Tag Push Hook"}, EventKind.OTHER),
        (Provider.GITLAB, {"X-Gitlab-Event": "Merge Request Hook"}, EventKind.OTHER),
    ],
)
def test_pings_and_other_events_are_told_apart(provider, headers, kind):
    assert identify(headers) is provider
    assert event_kind(provider, headers) is kind


@pytest.mark.unit
def test_headers_are_matched_without_regard_to_case():
    assert identify({"x-github-event": "push"}) is Provider.GITHUB


@pytest.mark.unit
def test_a_request_from_no_known_host_is_refused():
    with pytest.raises(UnknownProvider):
        identify({"Content-Type": "application/json"})


@pytest.mark.unit
def test_branch_deletions_and_tags_are_recognised():
    deleted = parse(
        Provider.GITHUB, {}, {**GITHUB_PUSH, "after": ZERO_SHA, "deleted": True, "commits": []}
    )
    assert deleted.deleted
    tag = parse(Provider.GITHUB, {}, {**GITHUB_PUSH, "ref": "refs/tags/v1.0"})
    assert tag.branch == "" and not tag.deleted
    gitlab_deleted = parse(
        Provider.GITLAB, {}, {**GITLAB_PUSH, "after": ZERO_SHA, "checkout_sha": None, "commits": []}
    )
    assert gitlab_deleted.deleted
    change = {
        "new": None,
        "old": {"type": "branch", "name": "main", "target": {"hash": BEFORE}},
        "closed": True,
    }
    bitbucket_deleted = parse(
        Provider.BITBUCKET, {}, {**BITBUCKET_PUSH, "push": {"changes": [change]}}
    )
    assert bitbucket_deleted.deleted and bitbucket_deleted.branch == "main"
    bb_tag = {"new": {"type": "tag", "name": "v1", "target": {"hash": AFTER}}, "old": None}
    assert (
        parse(Provider.BITBUCKET, {}, {**BITBUCKET_PUSH, "push": {"changes": [bb_tag]}}).branch
        == ""
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    "payload",
    [
        [],
        "push",
        {},
        {**GITHUB_PUSH, "after": "not-a-sha"},
        {**GITHUB_PUSH, "after": 12},
        {**GITHUB_PUSH, "repository": None},
        {**GITHUB_PUSH, "ref": ""},
        {**GITHUB_PUSH, "commits": [{"added": [None]}]},
        {**GITHUB_PUSH, "commits": "all"},
    ],
)
def test_malformed_github_payloads_are_refused_clearly(payload):
    with pytest.raises(BadPayload):
        parse(Provider.GITHUB, {}, payload)


def _mutations(value, rng: random.Random, depth: int = 0):
    """A payload with one value somewhere replaced by something of the wrong kind."""
    junk = [None, 0, -1, 1.5, "", "x" * 3, [], {}, [None], {"a": None}, True, ZERO_SHA]
    if isinstance(value, dict) and value and depth < 6:
        key = rng.choice(sorted(value))
        copy = dict(value)
        copy[key] = (
            _mutations(value[key], rng, depth + 1) if rng.random() < 0.7 else rng.choice(junk)
        )
        if rng.random() < 0.1:
            del copy[key]
        return copy
    if isinstance(value, list) and value and depth < 6:
        copy = list(value)
        index = rng.randrange(len(copy))
        copy[index] = _mutations(copy[index], rng, depth + 1)
        return copy
    return rng.choice(junk)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("provider", "headers", "payload"), CASES, ids=lambda c: getattr(c, "value", "")
)
def test_mutated_payloads_raise_only_push_errors(provider, headers, payload):
    rng = random.Random(f"ct-{provider.value}")
    for _ in range(500):
        mutated = _mutations(payload, rng)
        try:
            push = parse(provider, headers, mutated)
        except PushError:
            continue
        assert len(push.after) == 40 and push.repository and push.ref


@pytest.mark.unit
@pytest.mark.parametrize(
    ("provider", "payload"),
    [
        (Provider.GITHUB, {**GITHUB_PUSH, "commits": []}),  # a force-push back
        (Provider.GITEA, {**GITHUB_PUSH, "total_commits": 120}),  # Gitea trims its list
        (Provider.GITLAB, {**GITLAB_PUSH, "total_commits_count": 25}),  # GitLab lists 20
    ],
)
def test_an_empty_or_truncated_commit_list_means_changes_unknown(provider, payload):
    """Not "no change to the model code": the worker compares the two commits."""
    assert parse(provider, {}, payload).changed_paths is None
