"""Commit statuses on the git host a push came from (#33 item 3).

The hosts are the one stand-in: GitHub, GitLab, Gitea, Forgejo and Bitbucket Cloud
cannot run here, so tests/status_hosts.py plays each one's documented status API over
HTTPS (a certificate made by the test, trusted through CT_STATUS_CA_FILE) and keeps
what it receives. Everything else is real: the webhook, Redis, MLflow on SQLite, a
git repository over file://, the pipeline's own steps, and a Celery worker process
where retries are the subject."""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import LENET, WorkerProcess, ct_env, git, init_repository
from helpers import created, wait_for
from push_samples import CASES
from status_hosts import BASE_PATHS, StatusHost, serve

from ct_service import run_tags
from ct_service.attempt import Attempt, AttemptStatus
from ct_service.commit_status import CommitState, CommitStatus, request
from ct_service.exceptions import SettingsError
from ct_service.orchestration import pipeline, status_reports
from ct_service.orchestration.queue import make_celery, send_status_report
from ct_service.repositories import Provider, load_repositories
from ct_service.settings import Settings
from ct_service.target import Budget, Target
from ct_service.tracking import Pipeline, PipelineSpec, PipelineStatus, Tracker
from ct_service.webhook.app import create_app
from ct_service.webhook.push import sign

TOKEN = "status-token-7d1f0c"  # what must never show in a log or a tag
SHA = "bffeb74224043ba2feb48d137756c8a9331c449a"
RUNNING = CommitStatus(CommitState.RUNNING, "attempt 2 of 8, best 0.84", "https://ui/#/r")


# -- each host's request (pure) ------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize(
    ("provider", "base", "name", "url", "auth", "body"),
    [
        (Provider.GITHUB, "https://api.github.com", "acme/models",
         f"https://api.github.com/repos/acme/models/statuses/{SHA}",
         ("Authorization", f"Bearer {TOKEN}"),
         {"state": "pending", "context": "ct-service", "target_url": "https://ui/#/r"}),
        (Provider.GITLAB, "https://gitlab.example.com/api/v4/", "acme/ml/models",
         f"https://gitlab.example.com/api/v4/projects/acme%2Fml%2Fmodels/statuses/{SHA}",
         ("PRIVATE-TOKEN", TOKEN),
         {"state": "running", "name": "ct-service", "target_url": "https://ui/#/r", "ref": "main"}),
        (Provider.GITEA, "https://git.example.com/api/v1", "acme/models",
         f"https://git.example.com/api/v1/repos/acme/models/statuses/{SHA}",
         ("Authorization", f"token {TOKEN}"),
         {"state": "pending", "context": "ct-service", "target_url": "https://ui/#/r"}),
        (Provider.FORGEJO, "https://codeberg.org/api/v1", "acme/models",
         f"https://codeberg.org/api/v1/repos/acme/models/statuses/{SHA}",
         ("Authorization", f"token {TOKEN}"),
         {"state": "pending", "context": "ct-service", "target_url": "https://ui/#/r"}),
        (Provider.BITBUCKET, "https://api.bitbucket.org/2.0", "acme/models",
         f"https://api.bitbucket.org/2.0/repositories/acme/models/commit/{SHA}/statuses/build",
         ("Authorization", f"Bearer {TOKEN}"),
         {"state": "INPROGRESS", "key": "ct-service", "url": "https://ui/#/r"}),
    ],
)  # fmt: skip
def test_each_host_gets_its_documented_endpoint_token_header_and_body(
    provider, base, name, url, auth, body
):
    made = request(provider, base, name, SHA, RUNNING, TOKEN, branch="main")
    assert made.url == url
    assert made.headers[auth[0]] == auth[1]
    assert made.headers["Content-Type"] == "application/json"
    sent = json.loads(made.body)
    assert {k: sent[k] for k in body} == body
    assert sent["description"] == "attempt 2 of 8, best 0.84"
    assert TOKEN not in repr(made) and TOKEN not in made.body.decode()


@pytest.mark.unit
def test_final_states_as_each_host_names_them():
    def state(provider: Provider, which: CommitState) -> str:
        return json.loads(
            request(provider, "https://h", "a/b", SHA, CommitStatus(which, "", "u"), "t").body
        )["state"]

    finals = (CommitState.SUCCESS, CommitState.FAILURE, CommitState.CANCELLED)
    assert [state(Provider.GITHUB, s) for s in finals] == ["success", "failure", "error"]
    assert [state(Provider.GITEA, s) for s in finals] == ["success", "failure", "error"]
    assert [state(Provider.GITLAB, s) for s in finals] == ["success", "failed", "canceled"]
    assert [state(Provider.BITBUCKET, s) for s in finals] == ["SUCCESSFUL", "FAILED", "STOPPED"]


@pytest.mark.unit
def test_a_description_is_one_line_of_at_most_140_characters_and_the_commit_a_full_id():
    long = CommitStatus(CommitState.FAILURE, "failed:\n" + "x" * 300, "u")
    assert len(long.description) == 140 and "\n" not in long.description
    with pytest.raises(ValueError, match="40-digit"):
        request(Provider.GITHUB, "https://h", "a/b", "../../evil", RUNNING, "t")
    with pytest.raises(ValueError, match="owner/name"):
        request(Provider.GITHUB, "https://h", "a/b/c", SHA, RUNNING, "t")


# -- what the status says (pure) -----------------------------------------------------
def _pipeline(status: PipelineStatus, outcome: str = "", reason: str = "", **tags: str):
    spec = PipelineSpec("p", "lenet", "lenet", {}, Target(threshold=0.9), Budget(8))
    return Pipeline("r1", "7", spec, status, 0, outcome, reason, tags)


def _attempt(number: int, metric: float | None, status=AttemptStatus.FINISHED, run=""):
    return Attempt(number, run or f"a{number}", {}, status, metric)


TWO = [_attempt(1, 0.84), _attempt(2, 0.81)]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("status", "outcome", "reason", "tags", "attempts", "expected"),
    [
        (PipelineStatus.QUEUED, "", "", {}, [],
         (CommitState.PENDING, "queued: target test_accuracy >= 0.9, 8 attempts at most")),
        (PipelineStatus.RUNNING, "", "", {}, [_attempt(1, None, AttemptStatus.QUEUED)],
         (CommitState.RUNNING, "attempt 1 of 8")),
        (PipelineStatus.RUNNING, "", "", {}, [*TWO, _attempt(3, None, AttemptStatus.RUNNING)],
         (CommitState.RUNNING, "attempt 3 of 8, best 0.84")),
        (PipelineStatus.RUNNING, "", "", {}, [_attempt(1, 0.5, AttemptStatus.FAILED), _attempt(2, None, AttemptStatus.QUEUED)],
         (CommitState.RUNNING, "attempt 2 of 8")),  # a failed attempt's number is no result
        (PipelineStatus.NOTIFYING, "promoted", "", {run_tags.CANDIDATE: "a3", run_tags.MODEL_VERSION: "4"},
         [*TWO, _attempt(3, 0.9312, run="a3")],
         (CommitState.SUCCESS, "promoted version 4: test_accuracy 0.9312 (target test_accuracy >= 0.9)")),
        (PipelineStatus.FINISHED, "kept-champion", "", {run_tags.CANDIDATE: "a1"}, [_attempt(1, 0.95)],
         (CommitState.SUCCESS, "champion kept: test_accuracy 0.95 (target test_accuracy >= 0.9); production is as good")),
        (PipelineStatus.FINISHED, "awaiting-approval", "", {run_tags.CANDIDATE: "a1", run_tags.MODEL_VERSION: "5"},
         [_attempt(1, 0.95, run="a1")],
         (CommitState.SUCCESS, "version 5 awaits approval: test_accuracy 0.95 (target test_accuracy >= 0.9)")),
        (PipelineStatus.FINISHED, "budget-exhausted", "", {}, TWO,
         (CommitState.FAILURE, "budget spent after 2 attempts: best test_accuracy 0.84 (target test_accuracy >= 0.9)")),
        (PipelineStatus.FINISHED, "stopped", "", {}, TWO,
         (CommitState.FAILURE, "stopped after 2 attempts: best test_accuracy 0.84 (target test_accuracy >= 0.9)")),
        (PipelineStatus.FINISHED, "failed", "no attempt finished; attempt 1 failed: exit 1", {}, [],
         (CommitState.FAILURE, "failed: no attempt finished; attempt 1 failed: exit 1")),
        (PipelineStatus.FINISHED, "superseded", "superseded by pipeline x for a newer push", {}, [],
         (CommitState.CANCELLED, "superseded by pipeline x for a newer push")),
        (PipelineStatus.FINISHED, "skipped", "skipped: no change to the model code", {}, [],
         (CommitState.SUCCESS, "skipped: no change to the model code")),
        (PipelineStatus.FINISHED, "cancelled", "cancelled by ann", {}, [],
         (CommitState.CANCELLED, "cancelled by ann")),
    ],
)  # fmt: skip
def test_what_the_status_says_at_each_point_of_a_pipeline(
    status, outcome, reason, tags, attempts, expected
):
    assert status_reports.describe(_pipeline(status, outcome, reason, **tags), attempts) == expected


# -- where statuses go: the allow-list, never the payload ----------------------------
def _entry(tmp_path: Path, **keys: str) -> dict:
    text = "repositories:\n  - " + json.dumps(
        {"name": "acme/models", "provider": "github", "url": "https://github.com/acme/models.git",
         "secret_env": "S", **keys}
    )  # fmt: skip
    (tmp_path / "r.yaml").write_text(text)
    return load_repositories(tmp_path / "r.yaml", {"S": "s"}, allow_file=True)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("keys", "api"),
    [
        ({}, "https://api.github.com"),
        ({"url": "git@github.com:acme/models.git"}, "https://api.github.com"),
        ({"url": "https://ghe.example.com/acme/models.git"}, "https://ghe.example.com/api/v3"),
        ({"provider": "gitlab", "url": "https://gitlab.example.com/acme/models.git"}, "https://gitlab.example.com/api/v4"),
        ({"provider": "gitea", "url": "ssh://git@git.example.com/acme/models.git"}, "https://git.example.com/api/v1"),
        ({"provider": "forgejo", "url": "https://codeberg.org/acme/models.git"}, "https://codeberg.org/api/v1"),
        ({"provider": "bitbucket", "url": "https://bitbucket.org/acme/models.git"}, "https://api.bitbucket.org/2.0"),
        ({"provider": "gitlab", "status_api": "https://gl.internal:8443/api/v4/"}, "https://gl.internal:8443/api/v4"),
    ],
)  # fmt: skip
def test_the_status_api_is_the_allow_lists_or_its_urls_host(tmp_path, keys, api):
    [repository] = _entry(tmp_path, status_token_file="/run/secrets/t", **keys).values()
    assert repository.reports_status and repository.status_api == api
    assert repository.status_token_file == "/run/secrets/t"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ({"status_api": "https://h/api"}, "status_api needs status_token_file"),
        ({"status_token_file": "t", "status_api": "http://h/api"}, "must be an https:// URL"),
        ({"status_token_file": "t", "status_api": "https://u:p@h/api"}, "without credentials"),
        ({"status_token_file": "t", "url": "file:///srv/models"}, "cannot tell the host's API"),
        ({"status_token_file": "t", "provider": "bitbucket", "url": "https://bb.example.com/a/b.git"}, "only Bitbucket Cloud"),
        ({"status_token_file": "t", "name": "acme/../models"}, "not a owner/name"),
        ({"status_token_file": "t", "name": "acme/models/x"}, "not a owner/name"),
    ],
)  # fmt: skip
def test_a_status_setting_that_would_send_the_token_astray_is_refused_naming_it(
    tmp_path, keys, error
):
    with pytest.raises(SettingsError, match=error) as raised:
        _entry(tmp_path, **keys)
    assert "repositories[0]" in str(raised.value)


@pytest.mark.unit
def test_without_status_token_file_nothing_is_reported(tmp_path):
    [repository] = _entry(tmp_path).values()
    assert not repository.reports_status and repository.status_api == ""


# -- against each host ---------------------------------------------------------------
@pytest.fixture
def repo(tmp_path: Path, mnist_dir: Path) -> tuple[Path, list[str]]:
    """models/lenet (one quick epoch); commit 2 changes the model."""
    repo = tmp_path / "repo"
    project = repo / "models" / "lenet"
    shutil.copytree(LENET, project, ignore=shutil.ignore_patterns("__pycache__"))
    mlproject = project / "MLproject"
    text = mlproject.read_text()
    for old, new in {
        "max_train_samples: {type: float, default: 0}": "max_train_samples: {type: float, default: 1000}",
        "epochs: {type: float, default: 3}": "epochs: {type: float, default: 1}",
        "data: {type: string, default: keras}": f"data: {{type: string, default: '{mnist_dir}'}}",
    }.items():
        assert old in text
        text = text.replace(old, new)
    mlproject.write_text(text)
    init_repository(repo)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "LeNet")
    first = git(repo, "rev-parse", "HEAD")
    mlproject.write_text(text.replace("default: 84}", "default: 32}"))
    git(repo, "commit", "-q", "-am", "Smaller dense layer")
    return repo, [first, git(repo, "rev-parse", "HEAD")]


@pytest.fixture
def hosts(tmp_path: Path):
    """The git host, and a second one that plays an attacker's (same token check)."""
    (tmp_path / "h").mkdir()
    (tmp_path / "e").mkdir()
    host, server = serve(tmp_path / "h", TOKEN)
    evil, evil_server = serve(tmp_path / "e", TOKEN)
    yield host, evil
    server.shutdown()
    evil_server.shutdown()


NAMES = {Provider.GITLAB: "acme/ml/models"}  # GitLab nests groups


def allow_list(tmp_path: Path, repo: Path, host: StatusHost, *providers: Provider, **extra) -> Path:
    (tmp_path / "status-token").write_text(TOKEN + "\n")
    entries = [
        {"name": NAMES.get(p, "acme/models"), "provider": p.value, "url": repo.as_uri(),
         "secret_env": "HOOK_SECRET", "project": "models/lenet",
         "target": {"threshold": 0.99},
         "status_token_file": str(tmp_path / "status-token"), "status_api": host.base(p),
         **extra}
        for p in providers
    ]  # fmt: skip
    path = tmp_path / "repositories.yaml"
    path.write_text("repositories:\n" + "".join(f"  - {json.dumps(e)}\n" for e in entries))
    return path


def push(client, provider: Provider, before: str, after: str, **payload_extra) -> str:
    """A signed push of `after` as `provider` sends it; the pipeline id answered."""
    [(_, headers, sample)] = [(p, h, s) for p, h, s in CASES if p is provider]
    payload = copy.deepcopy(sample)
    if provider is Provider.BITBUCKET:
        change = payload["push"]["changes"][0]
        change["new"]["target"]["hash"], change["old"]["target"]["hash"] = after, before
    else:
        payload.update(before=before, after=after)
        payload["commits"] = [{"id": after, "added": [], "modified": ["models/lenet/MLproject"], "removed": []}]  # fmt: skip
        if provider is Provider.GITLAB:
            payload["checkout_sha"] = after
            payload["project"]["path_with_namespace"] = NAMES[provider]
    payload.update(payload_extra)
    body = json.dumps(payload).encode()
    headers = {**headers, **sign(provider, body, "s3cret")}
    answer = client.post("/hooks", data=body, headers=headers, content_type="application/json")
    assert answer.status_code == 202, answer.json
    return answer.json["pipeline_id"]


def settings_for(tmp_path: Path, redis_url: str, path: Path, host: StatusHost, **more) -> Settings:
    values = {
        "home": tmp_path / "ct",
        "broker_url": redis_url,
        "repositories_file": str(path),
        "git_allow_file": True,  # the repository is served over file://
        "trust_pushed_code": True,
        "budget": Budget(2),
        "ui_url": "https://mlflow.example.com",
        "status_ca_file": str(host.cert_file),  # the test's certificate, trusted
    }
    return Settings(**{**values, **more})


def end_attempt(tracker: Tracker, attempt_id: str, value: float) -> None:
    """What a run of LeNet leaves behind (its training is not this test's subject):
    one epoch's validation accuracy, the test accuracy, the run finished."""
    tracker.client.log_metric(attempt_id, "val_accuracy", value, step=1)
    tracker.client.log_metric(attempt_id, "test_accuracy", value)
    tracker.set_tags(attempt_id, {run_tags.STATUS: "finished", run_tags.FAILURE: ""})
    tracker.client.set_terminated(attempt_id, "FINISHED")


EXPECTED_STATES = {
    Provider.GITHUB: ["pending", "pending", "pending", "failure"],
    Provider.GITEA: ["pending", "pending", "pending", "failure"],
    Provider.FORGEJO: ["pending", "pending", "pending", "failure"],
    Provider.GITLAB: ["pending", "running", "running", "failed"],
    Provider.BITBUCKET: ["INPROGRESS", "INPROGRESS", "INPROGRESS", "FAILED"],
}
EXPECTED_PATHS = {
    Provider.GITHUB: "/repos/acme/models/statuses/{sha}",
    Provider.GITEA: "/repos/acme/models/statuses/{sha}",
    Provider.FORGEJO: "/repos/acme/models/statuses/{sha}",
    Provider.GITLAB: "/projects/acme%2Fml%2Fmodels/statuses/{sha}",
    Provider.BITBUCKET: "/repositories/acme/models/commit/{sha}/statuses/build",
}


@pytest.mark.integration
@pytest.mark.parametrize("provider", list(Provider))
def test_each_host_sees_pending_then_the_attempts_then_the_end_with_its_token_header(
    tmp_path, repo, hosts, redis_url, monkeypatch, caplog, provider
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    host, _ = hosts
    settings = settings_for(
        tmp_path, redis_url, allow_list(tmp_path, repo[0], host, provider), host
    )
    client = create_app(settings).test_client()
    tracker = Tracker(settings)
    first, model = repo[1]

    run_id = created(settings, push(client, provider, first, model))  # the intake: queued
    said = [status_reports.send(settings, run_id)]
    step = pipeline.start(settings, run_id)  # attempt 1 of 2
    said.append(status_reports.send(settings, run_id))
    assert step is not None
    end_attempt(tracker, step.args[1], 0.84)
    step = pipeline.decide(settings, run_id, step.args[1])  # attempt 2 of 2, best 0.84
    said.append(status_reports.send(settings, run_id))
    assert isinstance(step, pipeline.Step) and step.task is pipeline.Task.RUN_ATTEMPT, step
    end_attempt(tracker, step.args[1], 0.86)
    assert pipeline.decide(settings, run_id, step.args[1]) is not None  # budget spent
    said.append(status_reports.send(settings, run_id))
    assert status_reports.send(settings, run_id) == "nothing new"  # each status once

    finished = tracker.pipeline(run_id)
    assert finished.outcome == "budget-exhausted", finished.reason
    assert [r.state for r in host.received] == EXPECTED_STATES[provider]
    assert [r.description for r in host.received] == [
        "queued: target test_accuracy >= 0.99, 2 attempts at most",
        "attempt 1 of 2",
        "attempt 2 of 2, best 0.84",
        "budget spent after 2 attempts: best test_accuracy 0.86 (target test_accuracy >= 0.99)",
    ]
    link = f"https://mlflow.example.com/#/experiments/{finished.experiment_id}/runs/{run_id}"
    assert {r.link for r in host.received} == {link}
    path = BASE_PATHS[provider] + EXPECTED_PATHS[provider].format(sha=model)
    assert {r.path for r in host.received} == {path}
    if provider is Provider.GITLAB:  # GitLab keeps a state's first description
        assert [r.answer for r in host.received] == [201, 201, 400, 201]
        assert said[2] == "kept running: attempt 2 of 2, best 0.84"
    else:
        assert [r.answer for r in host.received] == [201] * 4  # the token header it expects
    assert said[-1] == finished.tags[run_tags.COMMIT_STATUS]
    assert said[-1].startswith("sent failure: budget spent after 2 attempts")
    assert TOKEN not in caplog.text
    run = tracker.client.get_run(run_id)
    assert TOKEN not in json.dumps([run.data.tags, run.data.params])


@pytest.mark.integration
def test_the_token_goes_to_the_allow_lists_host_only_never_where_a_payload_or_redirect_points(
    tmp_path, repo, hosts, redis_url, monkeypatch, caplog
):
    """A push names URLs of its own (GitHub sends `statuses_url`); a host may answer
    with a redirect: the status, and its token, go to the configured host only."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    host, evil = hosts
    settings = settings_for(
        tmp_path, redis_url, allow_list(tmp_path, repo[0], host, Provider.GITHUB), host
    )
    client = create_app(settings).test_client()
    first, model = repo[1]
    evil_api = evil.base(Provider.GITHUB)
    payload_urls = {
        "statuses_url": f"{evil_api}/repos/acme/models/statuses/{{sha}}",
        "url": evil_api,
        "clone_url": f"{evil_api}/acme/models.git",
        "html_url": evil_api,
    }
    pushed = push(
        client,
        Provider.GITHUB,
        first,
        model,
        repository={"full_name": "acme/models", **payload_urls},
    )
    run_id = created(settings, pushed)
    assert status_reports.send(settings, run_id).startswith("sent pending: queued")
    assert [r.path for r in host.taken()] == [f"/github/repos/acme/models/statuses/{model}"]

    host.script, host.redirect_to = [302], f"{evil_api}/repos/acme/models/statuses/{model}"
    assert pipeline.start(settings, run_id) is not None
    said = status_reports.send(settings, run_id)
    assert said == "failed: HTTP 302 (redirects are not followed) (permanent)"
    assert evil.received == []  # neither the payload's URLs nor the redirect reached it
    assert Tracker(settings).pipeline(run_id).tags[run_tags.COMMIT_STATUS] == said
    assert TOKEN not in caplog.text


@pytest.mark.integration
def test_a_host_certificate_not_trusted_is_refused_verification_is_never_off(
    tmp_path, repo, hosts, redis_url, monkeypatch
):
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    host, _ = hosts
    path = allow_list(tmp_path, repo[0], host, Provider.GITEA)
    settings = settings_for(tmp_path, redis_url, path, host, status_ca_file="")
    run_id = created(settings, push(create_app(settings).test_client(), Provider.GITEA, *repo[1]))
    said = status_reports.send(settings, run_id)
    assert said == "failed: TLS: the host's certificate is not trusted (permanent)"
    assert host.received == []


@pytest.mark.integration
def test_a_repository_without_status_token_file_reports_nothing(
    tmp_path, repo, hosts, redis_url, monkeypatch
):
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    host, _ = hosts
    path = tmp_path / "repositories.yaml"
    path.write_text(
        "repositories:\n"
        f"  - {{name: acme/models, provider: github, url: '{repo[0].as_uri()}', "
        "secret_env: HOOK_SECRET, project: models/lenet}\n"
    )
    settings = settings_for(tmp_path, redis_url, path, host)
    run_id = created(settings, push(create_app(settings).test_client(), Provider.GITHUB, *repo[1]))
    assert pipeline.start(settings, run_id) is not None
    assert not status_reports.waiting(settings, run_id)
    assert status_reports.send(settings, run_id) == "nothing new"
    assert host.received == []
    assert run_tags.COMMIT_STATUS not in Tracker(settings).pipeline(run_id).tags


@pytest.mark.integration
def test_a_host_answering_500_then_201_gets_the_status_again_from_the_celery_worker(
    tmp_path, repo, hosts, redis_url, services, monkeypatch
):
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    host, _ = hosts
    path = allow_list(tmp_path, repo[0], host, Provider.BITBUCKET)
    env = ct_env(
        CT_HOME=str(tmp_path / "ct"),
        CT_BROKER_URL=redis_url,
        CT_REPOSITORIES_FILE=str(path),
        CT_GIT_ALLOW_FILE="1",
        CT_STATUS_CA_FILE=str(host.cert_file),
        CT_UI_URL="https://mlflow.example.com",
        CT_LOG_LEVEL="DEBUG",
        HOOK_SECRET="s3cret",
    )
    worker = WorkerProcess({**env}, tmp_path / "status-worker.log")
    services.append(worker)
    settings = Settings.from_env(env)
    host.script = [500]
    run_id = created(
        settings, push(create_app(settings).test_client(), Provider.BITBUCKET, *repo[1])
    )
    send_status_report(make_celery(settings), run_id)  # what a worker does after a step

    wait_for(lambda: host.taken(), 60, "the status after a retry", worker.log_path)
    assert [r.answer for r in host.received] == [500, 201]
    assert host.received[0].body == host.received[1].body  # the same status, sent again
    tracker = Tracker(settings)
    wait_for(
        lambda: tracker.pipeline(run_id).tags.get(run_tags.COMMIT_STATUS, "").startswith("sent"),
        30,
        "the sent status recorded",
        worker.log_path,
    )
    log = worker.log_path.read_text()
    assert "retry" in log.lower() and "HTTP 500" in log
    assert TOKEN not in log


# -- the whole loop: a pushed pipeline trains while its statuses go out --------------
class StatusWorker(WorkerProcess):
    """`ct-service worker --queues status`: the worker of its own the docs advise, so
    that statuses go out while the other worker trains."""

    def __init__(self, env: dict[str, str], log_path: Path):
        import subprocess
        import sys

        from conftest import ROOT

        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ct_service.cli", "worker", "--queues", "status"],
            env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.wait_ready(self.READY["worker"])


@pytest.mark.slow
def test_a_pushed_pipeline_shows_pending_attempts_and_success_and_one_whose_host_is_down_still_promotes(
    tmp_path, repo, hosts, redis_url, services, monkeypatch
):
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    host, _ = hosts
    from conftest import free_port

    down = f"https://127.0.0.1:{free_port()}/github"  # nothing listens there
    (tmp_path / "status-token").write_text(TOKEN)
    entries = [
        {"name": "acme/models", "branches": ["main"], "status_api": host.base(Provider.GITHUB)},
        {"name": "acme/down", "branches": ["dev"], "status_api": down},
    ]
    path = tmp_path / "repositories.yaml"
    path.write_text(
        "repositories:\n"
        + "".join(
            "  - " + json.dumps({
                **entry, "provider": "github", "url": repo[0].as_uri(),
                "secret_env": "HOOK_SECRET", "project": "models/lenet",
                "target": {"threshold": 0.0}, "status_token_file": str(tmp_path / "status-token"),
            }) + "\n"
            for entry in entries
        )
    )  # fmt: skip
    env = ct_env(
        CT_HOME=str(tmp_path / "ct"),
        CT_BROKER_URL=redis_url,
        CT_REPOSITORIES_FILE=str(path),
        CT_GIT_ALLOW_FILE="1",  # the repository is served over file://
        CT_TRUST_PUSHED_CODE="1",  # its pushes train on this machine, not in a container
        CT_STATUS_CA_FILE=str(host.cert_file),
        CT_UI_URL="https://mlflow.example.com",
        CT_MAX_ATTEMPTS="3",
        HOOK_SECRET="s3cret",
    )
    services.append(StatusWorker(env, tmp_path / "status-worker.log"))
    services.append(WorkerProcess(env, tmp_path / "worker.log"))  # the other queues, too
    settings = Settings.from_env(env)
    client = create_app(settings).test_client()
    first, model = repo[1]
    zero = "0" * 40
    # acme/down's push (branch dev) first: it is promoted while its host cannot be reached
    pushed_down = push(
        client, Provider.GITHUB, zero, first, ref="refs/heads/dev",
        repository={"full_name": "acme/down"},
    )  # fmt: skip
    pushed = push(client, Provider.GITHUB, first, model)
    tracker = Tracker(settings)
    worker_log = tmp_path / "worker.log"
    ids = [
        wait_for(lambda p=p: tracker.pipeline_for_push(p), 120, "the pushed run", worker_log)
        for p in (pushed_down, pushed)
    ]
    for run_id in ids:
        wait_for(
            lambda r=run_id: tracker.pipeline(r).status is PipelineStatus.FINISHED,
            600,
            f"pipeline {run_id} to finish",
            worker_log,
        )
    downed, finished = (tracker.pipeline(run_id) for run_id in ids)
    assert downed.outcome == "promoted", downed.reason  # its host down all along
    assert downed.tags[run_tags.COMMIT_STATUS].startswith("retrying: ConnectionRefusedError")
    assert finished.outcome in ("promoted", "kept-champion"), finished.reason
    wait_for(lambda: len(host.taken()) >= 3, 60, "the final status", tmp_path / "status-worker.log")

    [winner] = tracker.attempts(finished)
    link = f"https://mlflow.example.com/#/experiments/{finished.experiment_id}/runs/{ids[1]}"
    verdict = (
        f"promoted version {finished.tags[run_tags.MODEL_VERSION]}"
        if finished.outcome == "promoted"
        else "champion kept"
    )
    assert [(r.state, r.description, r.link) for r in host.received] == [
        ("pending", "queued: target test_accuracy >= 0, 3 attempts at most", link),
        ("pending", "attempt 1 of 3", link),
        ("success", f"{verdict}: test_accuracy {winner.metric:.4g} (target test_accuracy >= 0)"
         + ("; production is as good" if verdict == "champion kept" else ""), link),
    ]  # fmt: skip
    assert {r.path for r in host.received} == {f"/github/repos/acme/models/statuses/{model}"}
    for log in (worker_log, tmp_path / "status-worker.log"):
        assert TOKEN not in log.read_text()
