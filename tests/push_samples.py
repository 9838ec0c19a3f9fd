"""Push payloads and headers as each git host documents them (shared by the push
and webhook tests)."""

from __future__ import annotations

from ct_service.webhook.push import Provider

BEFORE, AFTER = (
    "28e1879d029cb852e4844d9c718537df08844e03",
    "bffeb74224043ba2feb48d137756c8a9331c449a",
)
SECRET = "3gEsCfjlV2ugRwgpU#w1*WaW*wa4NXgGmpCfkbG3"

GITHUB_PUSH = {
    "ref": "refs/heads/main",
    "before": BEFORE,
    "after": AFTER,
    "created": False,
    "deleted": False,
    "forced": False,
    "repository": {"full_name": "acme/models", "clone_url": "https://github.com/acme/models.git"},
    "head_commit": {"id": AFTER, "message": "More epochs"},
    "commits": [
        {"id": BEFORE, "added": ["projects/lenet/ct.yaml"], "modified": [], "removed": []},
        {"id": AFTER, "added": [], "modified": ["projects/lenet/train.py"], "removed": ["old.txt"]},
    ],
}
GITLAB_PUSH = {
    "object_kind": "push",
    "event_name": "push",
    "before": BEFORE,
    "after": AFTER,
    "ref": "refs/heads/main",
    "checkout_sha": AFTER,
    "project": {
        "path_with_namespace": "acme/models",
        "git_http_url": "https://gitlab.example.com/acme/models.git",
    },
    "commits": [
        {"id": AFTER, "added": [], "modified": ["projects/lenet/network.py"], "removed": []}
    ],
    "total_commits_count": 1,
}
BITBUCKET_PUSH = {
    "push": {
        "changes": [
            {
                "new": {"type": "branch", "name": "main", "target": {"hash": AFTER}},
                "old": {"type": "branch", "name": "main", "target": {"hash": BEFORE}},
                "created": False,
                "closed": False,
                "forced": False,
            }
        ]
    },
    "repository": {"full_name": "acme/models"},
}

CASES = [
    (Provider.GITHUB, {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-gh"}, GITHUB_PUSH),
    (
        Provider.GITEA,
        {"X-GitHub-Event": "push", "X-Gitea-Event": "push", "X-Gitea-Delivery": "d-gt"},
        GITHUB_PUSH,
    ),
    (
        Provider.FORGEJO,
        {"X-Gitea-Event": "push", "X-Forgejo-Event": "push", "X-Forgejo-Delivery": "d-fj"},
        GITHUB_PUSH,
    ),
    (Provider.GITLAB, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "d-gl"}, GITLAB_PUSH),
    (Provider.BITBUCKET, {"X-Event-Key": "repo:push", "X-Request-UUID": "d-bb"}, BITBUCKET_PUSH),
]
