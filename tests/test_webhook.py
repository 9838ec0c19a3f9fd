"""The push webhook through Flask's test client, on real Redis (idempotency, the push
records and the Celery broker) and MLflow on SQLite. The webhook only records a push
and enqueues its create step; `created` runs that step as a worker would (no Celery
needed to check what it persists); the pipelines it starts run in test_git_source,
and test_webhook_burst sends pushes through real processes with MLflow stopped."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import redis
from conftest import REDIS_URL, free_port
from helpers import created
from push_samples import AFTER, BEFORE, BITBUCKET_PUSH, CASES, GITHUB_PUSH, GITLAB_PUSH

from ct_service import keys as names
from ct_service import run_tags
from ct_service.exceptions import SettingsError
from ct_service.keystore import keystore_for
from ct_service.orchestration import pipeline
from ct_service.orchestration.pushes import PushRecord, PushRecords
from ct_service.settings import Settings
from ct_service.tracking import Tracker
from ct_service.webhook.app import create_app
from ct_service.webhook.push import Provider, sign
from ct_service.webhook.views import NOT_ACCEPTED

SECRETS = {p: f"secret-for-{p.value}" for p in Provider}
API_TOKEN = "status-api-token-0123456789"


@pytest.fixture
def repositories_file(tmp_path, monkeypatch):
    entries = []
    for provider in Provider:
        monkeypatch.setenv(f"HOOK_SECRET_{provider.name}", SECRETS[provider])
        entries.append(
            f"  - {{name: acme/models, provider: {provider.value}, url: 'https://git.example.com/acme/models.git',"
            f" secret_env: HOOK_SECRET_{provider.name}, branches: [main], project: projects/lenet}}"
        )
    path = tmp_path / "repositories.yaml"
    path.write_text("repositories:\n" + "\n".join(entries) + "\n")
    return path


@pytest.fixture
def settings(tmp_path, repositories_file, redis_url):
    return Settings(
        home=tmp_path / "ct", broker_url=redis_url, repositories_file=str(repositories_file)
    )


@pytest.fixture
def client(settings):
    return create_app(settings).test_client()


def queued() -> int:
    return redis.Redis.from_url(REDIS_URL).llen("pipeline")


def deliver(client, provider, headers, payload, secret=None, path="/hooks", raw=None):
    body = raw if raw is not None else json.dumps(payload).encode()
    signed = {**headers, **sign(provider, body, SECRETS[provider] if secret is None else secret)}
    return client.post(path, data=body, headers=signed, content_type="application/json")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("provider", "headers", "payload"), CASES, ids=lambda c: getattr(c, "value", "")
)
def test_a_signed_push_starts_a_pipeline_for_that_commit(
    client, settings, provider, headers, payload
):
    answer = deliver(client, provider, headers, payload)
    assert answer.status_code == 202, answer.json
    pipeline_id = answer.json["pipeline_id"]
    assert Tracker(settings).recent_pipelines() == []  # answered before any MLflow call
    assert queued() == 1  # its create step
    run_id = created(settings, pipeline_id)
    recorded = Tracker(settings).pipeline(pipeline_id)  # the id answered finds the run
    assert recorded.id == run_id and recorded.tags[run_tags.PUSH_ID] == pipeline_id
    assert recorded.spec.commit == AFTER
    assert recorded.spec.source_url == "https://git.example.com/acme/models.git"  # from config
    assert recorded.spec.source_branch == "main"
    assert recorded.status.value == "queued"
    assert pipeline.create_from_push(settings, pipeline_id) is None  # a replayed message
    assert len(Tracker(settings).recent_pipelines()) == 1


@pytest.mark.integration
@pytest.mark.parametrize(
    ("provider", "headers", "payload"), CASES, ids=lambda c: getattr(c, "value", "")
)
def test_a_wrong_or_missing_signature_is_401_and_starts_nothing(
    client, settings, provider, headers, payload
):
    assert deliver(client, provider, headers, payload, secret="wrong").status_code == 401
    body = json.dumps(payload).encode()
    unsigned = client.post("/hooks", data=body, headers=headers, content_type="application/json")
    assert unsigned.status_code == 401
    assert "error" in unsigned.json
    assert queued() == 0 and Tracker(settings).recent_pipelines() == []


def deletion(provider: Provider, payload: dict) -> dict:
    """The same push as a branch deletion, in the provider's own format."""
    if provider is Provider.BITBUCKET:
        change = {"new": None, "old": payload["push"]["changes"][0]["old"], "closed": True}
        return {**payload, "push": {"changes": [change]}}
    if provider is Provider.GITLAB:
        return {**payload, "after": "0" * 40, "checkout_sha": None, "commits": []}
    return {**payload, "after": "0" * 40, "deleted": True, "commits": []}


PINGS = {
    Provider.GITHUB: {"X-GitHub-Event": "ping"},
    Provider.GITEA: {"X-Gitea-Event": "ping"},
    Provider.FORGEJO: {"X-Forgejo-Event": "ping"},
    Provider.BITBUCKET: {"X-Event-Key": "diagnostics:ping"},
}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("provider", "headers", "payload"), CASES, ids=lambda c: getattr(c, "value", "")
)
def test_each_provider_ping_deletion_redelivery_and_allow_list(
    client, settings, provider, headers, payload
):
    if provider in PINGS:
        ping = deliver(client, provider, PINGS[provider], payload)
        assert (ping.status_code, ping.json["status"]) == (200, "pong")
    deleted = deliver(client, provider, headers, deletion(provider, payload))
    assert (deleted.status_code, deleted.json["reason"]) == (200, "the branch was deleted")
    assert queued() == 0
    first = deliver(client, provider, headers, payload)
    again = deliver(client, provider, headers, payload)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["pipeline_id"] == first.json["pipeline_id"]
    if provider is Provider.GITLAB:
        stranger = {**payload, "project": {"path_with_namespace": "evil/repo"}}
    else:
        stranger = {**payload, "repository": {"full_name": "evil/repo"}}
    # signed with acme/models' secret but naming another repository: the same 401
    refused = deliver(client, provider, headers, stranger)
    assert (refused.status_code, refused.json) == (401, {"error": NOT_ACCEPTED})
    assert queued() == 1
    created(settings, first.json["pipeline_id"])
    assert len(Tracker(settings).recent_pipelines()) == 1


@pytest.mark.integration
def test_ping_deletion_tags_and_other_branches_start_nothing(client, settings):
    gh = {"X-GitHub-Delivery": "x"}
    ping = deliver(
        client,
        Provider.GITHUB,
        {**gh, "X-GitHub-Event": "ping"},
        {"zen": "hi", "repository": {"full_name": "acme/models"}},
    )
    assert (ping.status_code, ping.json["status"]) == (200, "pong")
    push = {**gh, "X-GitHub-Event": "push"}
    deleted = deliver(
        client, Provider.GITHUB, push, {**GITHUB_PUSH, "after": "0" * 40, "deleted": True}
    )
    assert (deleted.status_code, deleted.json) == (
        200,
        {"status": "ignored", "reason": "the branch was deleted"},
    )
    tag = deliver(client, Provider.GITHUB, push, {**GITHUB_PUSH, "ref": "refs/tags/v1"})
    assert tag.json == {"status": "ignored", "reason": "refs/tags/v1 is not a branch"}
    other = deliver(client, Provider.GITHUB, push, {**GITHUB_PUSH, "ref": "refs/heads/dev"})
    assert other.json == {"status": "ignored", "reason": "branch dev is not watched"}
    issue = deliver(client, Provider.GITHUB, {**gh, "X-GitHub-Event": "issues"}, GITHUB_PUSH)
    assert issue.json["status"] == "ignored"
    assert queued() == 0 and Tracker(settings).recent_pipelines() == []


@pytest.mark.integration
def test_a_redelivery_or_a_racing_push_of_the_same_commit_gets_the_same_pipeline(client, settings):
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "delivery-1"}
    first = deliver(client, Provider.GITHUB, headers, GITHUB_PUSH)
    again = deliver(client, Provider.GITHUB, headers, GITHUB_PUSH)
    racing = deliver(
        client, Provider.GITHUB, {**headers, "X-GitHub-Delivery": "delivery-2"}, GITHUB_PUSH
    )
    assert first.status_code == 202
    assert again.status_code == racing.status_code == 200
    assert again.json["pipeline_id"] == racing.json["pipeline_id"] == first.json["pipeline_id"]
    assert queued() == 1
    created(settings, first.json["pipeline_id"])
    assert len(Tracker(settings).recent_pipelines()) == 1


@pytest.mark.integration
def test_a_repository_off_the_allow_list_is_refused_like_a_bad_signature(client, settings):
    """No enumeration: an unknown repository and a bad signature get the same 401,
    and nothing of the request is echoed."""
    payload = {
        **GITHUB_PUSH,
        "repository": {"full_name": "evil/repo", "clone_url": "https://evil.example/x.git"},
    }
    unknown = deliver(client, Provider.GITHUB, {"X-GitHub-Event": "push"}, payload, secret="x")
    forged = deliver(client, Provider.GITHUB, {"X-GitHub-Event": "push"}, GITHUB_PUSH, secret="x")
    assert unknown.status_code == forged.status_code == 401
    assert unknown.json == forged.json == {"error": NOT_ACCEPTED}
    assert queued() == 0 and not (settings.home / "work").exists()


@pytest.mark.integration
def test_a_push_that_changes_no_model_code_is_skipped_and_force_is_not_a_webhook_option(client):
    payload = {
        **GITHUB_PUSH,
        "commits": [{"id": AFTER, "added": [], "modified": ["README.md"], "removed": []}],
    }
    headers = {"X-GitHub-Event": "push"}
    skipped = deliver(client, Provider.GITHUB, headers, payload)
    assert skipped.json == {"status": "skipped", "reason": "skipped: no change to the model code"}
    replayed = deliver(client, Provider.GITHUB, headers, payload, path="/hooks?force=1")
    assert replayed.json == skipped.json  # a captured skipped push cannot be forced
    assert queued() == 0


@pytest.mark.integration
@pytest.mark.parametrize(
    ("headers", "body", "content_type", "status"),
    [
        ({"X-GitHub-Event": "push"}, b"{not json", "application/json", 401),  # unsigned
        ({"X-GitHub-Event": "push"}, b"ref=main", "application/x-www-form-urlencoded", 415),
        ({}, b"{}", "application/json", 400),
        ({"X-GitHub-Event": "push"}, b"[]", "application/json", 401),
    ],
)
def test_bad_requests_get_json_errors(client, headers, body, content_type, status):
    answer = client.post("/hooks", data=body, headers=headers, content_type=content_type)
    assert answer.status_code == status
    assert answer.is_json and answer.json["error"]
    assert queued() == 0


@pytest.mark.integration
def test_a_signed_but_malformed_push_is_422(client):
    payload = {**GITHUB_PUSH, "after": "not-a-commit"}
    answer = deliver(client, Provider.GITHUB, {"X-GitHub-Event": "push"}, payload)
    assert answer.status_code == 422
    assert "after must be a 40-character commit id" in answer.json["error"]


@pytest.mark.integration
def test_a_body_over_the_limit_is_413(settings):
    small = create_app(replace(settings, webhook_max_body_bytes=2048)).test_client()
    payload = {**GITHUB_PUSH, "padding": "x" * 4096}
    assert deliver(small, Provider.GITHUB, {"X-GitHub-Event": "push"}, payload).status_code == 413


@pytest.mark.integration
def test_fuzzed_requests_never_get_a_5xx_or_start_a_pipeline(client, settings):
    rng = random.Random("ct-webhook")
    header_sets = [h for _, h, _ in CASES] + [
        {},
        {"X-GitHub-Event": "ping"},
        {"X-Event-Key": "repo:push"},
    ]
    bodies = [json.dumps(p).encode() for p in (GITHUB_PUSH, GITLAB_PUSH, BITBUCKET_PUSH)]
    for _ in range(300):
        body = bytearray(rng.choice(bodies))
        for _ in range(rng.randint(0, 8)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        headers = dict(rng.choice(header_sets))
        if rng.random() < 0.5:
            headers["X-Hub-Signature-256"] = f"sha256={rng.getrandbits(256):064x}"
        answer = client.post(
            "/hooks",
            data=bytes(body),
            headers=headers,
            content_type=rng.choice(["application/json", "text/plain"]),
        )
        assert answer.status_code < 500, (answer.status_code, answer.json)
    assert queued() == 0 and Tracker(settings).recent_pipelines() == []


@pytest.mark.integration
def test_pipelines_and_health_endpoints(settings):
    client = create_app(replace(settings, api_token=API_TOKEN)).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_TOKEN}"
    started = deliver(client, Provider.GITLAB, {"X-Gitlab-Event": "Push Hook"}, GITLAB_PUSH).json[
        "pipeline_id"
    ]
    waiting = client.get(f"/pipelines/{started}")
    assert (waiting.status_code, waiting.json["status"], waiting.json["commit"]) == (
        200,
        "queued",
        AFTER,
    )
    assert waiting.json["reason"] == "recorded; a worker creates its MLflow run"
    run_id = created(settings, started)
    listed = client.get("/pipelines").json["pipelines"]
    assert [(p["pipeline_id"], p["push_id"]) for p in listed] == [(run_id, started)]
    assert listed[0]["commit"] == AFTER and listed[0]["url"].endswith(f"/runs/{run_id}")
    for shown in (client.get(f"/pipelines/{started}"), client.get(f"/pipelines/{run_id}")):
        assert (
            shown.status_code == 200
            and shown.json["status"] == "queued"
            and shown.json["attempts"] == []
        )
    assert client.get("/pipelines/0123abc").status_code == 404
    assert client.get("/pipelines/" + "\u0661" * 32).status_code == 404  # non-ASCII digits
    assert client.get("/pipelines/../../etc").status_code == 404
    assert client.get("/pipelines?limit=abc").status_code == 200
    assert client.get("/healthz").json == {"status": "ok"}


@pytest.mark.integration
def test_a_newer_push_supersedes_a_queued_older_one(client, settings):
    headers = {"X-GitHub-Event": "push"}
    older = deliver(client, Provider.GITHUB, headers, GITHUB_PUSH).json["pipeline_id"]
    newer_payload = {**GITHUB_PUSH, "before": AFTER, "after": BEFORE}
    newer = deliver(client, Provider.GITHUB, headers, newer_payload).json["pipeline_id"]
    assert older != newer
    # the older one's steps run first; the newer one's run does not exist yet
    assert pipeline.start(settings, created(settings, older)) is None
    ended = Tracker(settings).pipeline(older)
    assert (ended.status.value, ended.outcome) == ("finished", "superseded")
    assert newer in ended.reason


@pytest.mark.integration
def test_pushes_are_ordered_by_the_webhooks_counter_not_by_the_clock(settings):
    """Two pushes in one millisecond have the same start time; the webhook numbers
    pushes per branch, and that number decides. Here the pipeline created second
    carries the earlier push, so a start-time rule would get it backwards."""

    def push(number: int) -> str:
        source = pipeline.GitSource("https://git.example/a/m.git", "main", sequence=number)
        return pipeline.create(settings, "projects/lenet", commit=AFTER, source=source)

    later_push = push(2)
    earlier_push = push(1)
    tracker = Tracker(settings)
    assert tracker.newer_pipeline(tracker.pipeline(later_push)) == ""
    assert tracker.newer_pipeline(tracker.pipeline(earlier_push)) == later_push


@pytest.mark.integration
def test_the_webhook_refuses_to_start_without_secrets(tmp_path, redis_url):
    path = tmp_path / "open.yaml"
    path.write_text("repositories:\n  - {name: a/b, provider: github, url: 'https://h/a/b.git'}\n")
    open_settings = Settings(
        home=tmp_path / "ct", broker_url=redis_url, repositories_file=str(path)
    )
    with pytest.raises(SettingsError, match="no secret for github a/b"):
        create_app(open_settings)
    insecure = create_app(replace(open_settings, webhook_insecure=True)).test_client()
    payload = {**GITHUB_PUSH, "repository": {"full_name": "a/b"}}
    answer = insecure.post(
        "/hooks",
        data=json.dumps(payload),
        headers={"X-GitHub-Event": "push"},
        content_type="application/json",
    )
    assert answer.status_code == 202
    with pytest.raises(SettingsError, match="CT_BROKER_URL"):
        create_app(Settings(home=tmp_path / "ct", repositories_file=str(path)))


def intake(settings: Settings) -> list[pipeline.Step]:
    """Run the intake step's function, as a worker does; the start steps it sends."""
    started: list[pipeline.Step] = []
    pipeline.intake(settings, started.append)
    return started


@pytest.mark.integration
def test_a_burst_sends_one_intake_that_creates_every_run_in_order_and_fails_only_a_bad_one(
    client, settings
):
    headers = {"X-GitHub-Event": "push"}
    pushed = [
        deliver(client, Provider.GITHUB, headers, {**GITHUB_PUSH, "after": f"{n:040x}"})
        for n in range(1, 6)
    ]
    assert [answer.status_code for answer in pushed] == [202] * 5
    assert queued() == 1  # one intake message for the whole burst
    records = PushRecords(redis.Redis.from_url(REDIS_URL))
    bad = PushRecord(
        pipeline_id="ef" * 16,
        repository="github:acme/models",
        url="https://git.example.com/acme/models.git",
        project="projects/lenet",
        branch="main",
        commit="not-a-commit",  # the webhook refuses it; a record altered in Redis
    )
    records.record(bad, ["commit:bad"], "sequence:github:acme/models:main", ("step:x", 1))
    steps = intake(settings)
    tracker = Tracker(settings)
    assert [tracker.pipeline(s.args[0]).tags[run_tags.PUSH_ID] for s in steps] == [
        answer.json["pipeline_id"] for answer in pushed
    ]
    assert {s.task for s in steps} == {pipeline.Task.START}
    assert records.waiting() == []
    # the bad one failed with its reason, freed its key and supersedes nothing
    assert "40-character commit id" in records.failure_of(bad.pipeline_id)
    assert redis.Redis.from_url(REDIS_URL).get("ct:push:commit:bad") is None
    assert records.numbered_after("github:acme/models", "main", 5) == []
    assert intake(settings) == []  # nothing waits: nothing created twice
    assert len(tracker.recent_pipelines()) == 5


@pytest.mark.integration
def test_an_intake_during_an_outage_leaves_every_push_waiting(client, settings):
    """MLflow not answering is no reason to give up a push: the intake fails (its
    task retries), the push still waits and has no failure."""
    answer = deliver(client, Provider.GITHUB, {"X-GitHub-Event": "push"}, GITHUB_PUSH)
    down = replace(settings, tracking_uri=f"http://127.0.0.1:{free_port()}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once, not in minutes
        with pytest.raises(Exception, match="Connection refused|ConnectionError|Max retries"):
            intake(down)
    records = PushRecords(redis.Redis.from_url(REDIS_URL))
    assert records.waiting() == [answer.json["pipeline_id"]]
    assert records.failure_of(answer.json["pipeline_id"]) == ""
    assert [s.task for s in intake(settings)] == [pipeline.Task.START]  # back: created


@pytest.mark.integration
def test_an_intake_that_ends_sends_another_for_pushes_recorded_while_it_ran(client, settings):
    from ct_service.orchestration.queue import make_celery, send_intake_if_pushes_wait

    headers = {"X-GitHub-Event": "push"}
    deliver(client, Provider.GITHUB, headers, GITHUB_PUSH)
    assert queued() == 1
    celery = make_celery(settings)
    started: list[pipeline.Step] = []
    seen = pipeline.intake(settings, started.append)  # the intake runs; its mark is set
    assert len(started) == 1
    late = {**GITHUB_PUSH, "before": AFTER, "after": BEFORE}
    late_id = deliver(client, Provider.GITHUB, headers, late).json["pipeline_id"]
    assert queued() == 1  # the webhook saw the mark and sent nothing
    keystore_for(settings).delete(names.step(pipeline.Task.INTAKE.value, ()))  # it ends
    assert send_intake_if_pushes_wait(celery, seen) is True and queued() == 2
    assert send_intake_if_pushes_wait(celery) is False  # marked queued again
    keystore_for(settings).delete(names.step(pipeline.Task.INTAKE.value, ()))
    # a push another intake is creating right now (its claim held) is left to it:
    # no intake is sent for what this one has seen already, not in a loop
    keystore_for(settings).put(names.create_claim(late_id), "other-worker", 60)
    seen = pipeline.intake(settings, started.append)
    assert late_id in seen and len(started) == 1
    assert send_intake_if_pushes_wait(celery, seen) is False and queued() == 2


@pytest.mark.integration
def test_ct_service_status_takes_the_id_the_webhook_answered(client, settings, monkeypatch, capsys):
    from ct_service.cli.main import main

    monkeypatch.setenv("CT_HOME", str(settings.home))
    monkeypatch.setenv("CT_BROKER_URL", settings.broker_url)
    answered = deliver(client, Provider.GITHUB, {"X-GitHub-Event": "push"}, GITHUB_PUSH).json[
        "pipeline_id"
    ]
    assert main(["status", answered, "--json"]) == 0
    waiting = json.loads(capsys.readouterr().out)
    assert (waiting["pipeline_id"], waiting["status"], waiting["commit"]) == (
        answered,
        "queued",
        AFTER,
    )
    run_id = created(settings, answered)
    assert main(["status", answered, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["pipeline_id"], shown["status"]) == (run_id, "queued")  # its run now
