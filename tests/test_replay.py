"""Replayed pushes (issue 29, finding 5): an old signed delivery sent again after its
delivery keys expired (7 days, or the git host's Redeliver button) must not end a
newer push's pipeline. Real Redis, Flask's test client with signed GitHub bodies,
MLflow on SQLite and a real git repository over file:// (the start step fetches
the pushed commit); the steps are the workers' own functions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import redis
from conftest import LENET, REDIS_URL, git, init_repository
from helpers import created

from ct_service import keys as names
from ct_service.orchestration import pipeline
from ct_service.orchestration.pushes import PushRecords
from ct_service.settings import Settings
from ct_service.tracking import PipelineStatus, Tracker
from ct_service.webhook.app import create_app
from ct_service.webhook.push import Provider, sign

SECRET = "replay-secret"
REPOSITORY = "github:acme/models"


@pytest.fixture
def commits(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository whose commit A holds LeNet and whose commit B changes its model."""
    repo = tmp_path / "repo"
    project = repo / "models" / "lenet"
    shutil.copytree(LENET, project, ignore=shutil.ignore_patterns("__pycache__"))
    init_repository(repo)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "LeNet")
    first = git(repo, "rev-parse", "HEAD")
    (project / "network.py").write_text((project / "network.py").read_text() + "\n# B\n")
    git(repo, "commit", "-q", "-am", "B")
    return repo, first, git(repo, "rev-parse", "HEAD")


@pytest.fixture
def settings(tmp_path: Path, commits, redis_url, monkeypatch) -> Settings:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    allow_list = tmp_path / "repositories.yaml"
    allow_list.write_text(
        "repositories:\n"
        f"  - {{name: acme/models, provider: github, url: '{commits[0].as_uri()}',"
        " secret_env: HOOK_SECRET, project: models/lenet}\n"
    )
    return Settings(
        home=tmp_path / "ct",
        broker_url=redis_url,
        repositories_file=str(allow_list),
        git_allow_file=True,  # the repository is served over file://
    )


def signed_push(before: str, after: str, delivery: str) -> tuple[bytes, dict[str, str]]:
    """A GitHub push of `after` and its headers, signed as GitHub signs it."""
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "before": before,
            "after": after,
            "repository": {"full_name": "acme/models"},
            "commits": [{"id": after, "added": [], "modified": ["models/lenet/network.py"]}],
        }
    ).encode()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery}
    return body, {**headers, **sign(Provider.GITHUB, body, SECRET)}


def send(client, delivery: tuple[bytes, dict[str, str]]):
    body, headers = delivery
    return client.post("/hooks", data=body, headers=headers, content_type="application/json")


def a_week_passes(push_id: str, commit: str, delivery_id: str) -> None:
    """Delete what expires after DELIVERY_SECONDS for this push, as 7 days would."""
    client = redis.Redis.from_url(REDIS_URL)
    for key in (
        names.delivery("github", f"{delivery_id}:main"),
        names.pushed_commit("github", "acme/models", "main", commit),
        names.push_record(push_id),
        names.push_run(push_id),
    ):
        assert client.ttl(names.DELIVERY_PREFIX + key) > 0, key  # it would expire
        client.delete(names.DELIVERY_PREFIX + key)


def intake(settings: Settings) -> list[pipeline.Step]:
    started: list[pipeline.Step] = []
    pipeline.intake(settings, started.append)
    return started


@pytest.mark.integration
@pytest.mark.parametrize("first_seen_kept", [True, False], ids=["first-seen", "mlflow-only"])
def test_a_replayed_old_push_never_supersedes_a_newer_queued_one(
    settings, commits, first_seen_kept
):
    """Push A, then B; A's keys expire and A's signed delivery comes again. B's
    queued pipeline still starts, and A's replay creates nothing. Without the
    `first_seen` entry (a commit first seen before it was kept, or lost), the replay
    gets a new number, and A's pipeline run in MLflow still ranks it."""
    _, a, b = commits
    client = create_app(settings).test_client()
    tracker = Tracker(settings)
    push_a = signed_push("0" * 40, a, "delivery-a")
    first_a = send(client, push_a).json["pipeline_id"]
    run_a = created(settings, first_a)
    assert pipeline.start(settings, run_a) is not None  # A trains
    first_b = send(client, signed_push(a, b, "delivery-b")).json["pipeline_id"]
    run_b = created(settings, first_b)  # B waits for its start step

    a_week_passes(first_a, a, "delivery-a")
    if not first_seen_kept:
        redis.Redis.from_url(REDIS_URL).hdel(
            names.DELIVERY_PREFIX + names.first_seen(REPOSITORY, "main"), a
        )
    replay = send(client, push_a)
    assert replay.status_code in (200, 202), replay.json

    # B's start step runs before the intake has seen the replay: the tightest order
    step = pipeline.start(settings, run_b)
    b_now = tracker.pipeline(run_b)
    assert (b_now.outcome, b_now.reason) == ("", ""), "the replay superseded B"
    assert step is not None and step.task is pipeline.Task.RUN_ATTEMPT
    assert b_now.status is PipelineStatus.RUNNING

    assert intake(settings) == []  # the replay maps to A's pipeline and starts nothing
    assert PushRecords(redis.Redis.from_url(REDIS_URL)).run_of(replay.json["pipeline_id"]) in (
        run_a,
        "",  # answered "already started" with A's own id
    )
    assert {p.id for p in tracker.recent_pipelines()} == {run_a, run_b}
    assert tracker.pipeline(run_a).status is PipelineStatus.RUNNING
    # A keeps the number it got first: a later replay ranks as old again
    first_seen = redis.Redis.from_url(REDIS_URL).hget(
        names.DELIVERY_PREFIX + names.first_seen(REPOSITORY, "main"), a
    )
    assert first_seen == str(tracker.pipeline(run_a).spec.source_sequence).encode() == b"1"


@pytest.mark.integration
def test_a_replay_while_the_newer_pipeline_trains_leaves_it_training(settings, commits):
    """B is running when A's old delivery comes again: nothing ends B, nothing new
    starts, and a push first seen after the replay still supersedes a queued older
    pipeline (the replay did not move the branch's counter backwards or forwards)."""
    repo, a, b = commits
    client = create_app(settings).test_client()
    tracker = Tracker(settings)
    push_a = signed_push("0" * 40, a, "delivery-a")
    first_a = send(client, push_a).json["pipeline_id"]
    run_a = created(settings, first_a)
    run_b = created(settings, send(client, signed_push(a, b, "delivery-b")).json["pipeline_id"])
    assert pipeline.start(settings, run_b) is not None  # B trains
    assert pipeline.start(settings, run_a) is None  # A, older and queued, is superseded
    assert tracker.pipeline(run_a).outcome == "superseded"

    a_week_passes(first_a, a, "delivery-a")
    send(client, push_a)
    assert intake(settings) == []
    b_now = tracker.pipeline(run_b)
    assert (b_now.status, b_now.outcome) == (PipelineStatus.RUNNING, "")

    git(repo, "commit", "-q", "--allow-empty", "-m", "C")
    c = git(repo, "rev-parse", "HEAD")
    run_c = created(settings, send(client, signed_push(b, c, "delivery-c")).json["pipeline_id"])
    assert tracker.pipeline(run_c).spec.source_sequence == 3  # next after B, not after A's replay
