"""The trust boundary, attacked for real: whoever can push decides what runs inside
the training container and nothing else (README, "Security")."""

from __future__ import annotations

import os
import socket
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ct_service.checkout import fetch_commit, redact, url_problem
from ct_service.exceptions import CheckoutError, ProjectError
from ct_service.execution.docker import data_volumes
from ct_service.execution.executor import AttemptRequest
from ct_service.execution.pushed_files import archive_project, refuse_escaping_links


def request(tmp_path: Path, **parameters: str) -> AttemptRequest:
    return AttemptRequest(str(tmp_path), "main", parameters, "0", "r" * 32, 60, tmp_path / "log")


# -- 1. mounts: only the operator's data roots, read-only ----------------------------


@pytest.mark.unit
def test_only_paths_under_the_data_roots_are_mounted_read_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    link = tmp_path / "data-link"
    link.symlink_to(data / "mnist")
    volumes = data_volumes(
        request(tmp_path, data=str(data / "mnist"), other=str(link), epochs="3"),
        (str(data),),
    )
    assert volumes == [f"{data / 'mnist'}:{link}:ro", f"{data / 'mnist'}:{data / 'mnist'}:ro"]


@pytest.mark.integration
@pytest.mark.parametrize(
    "target",
    ["/", "/etc", "/etc/passwd", "/var/run/docker.sock", "/dev/null", "SOCKET", "ESCAPING-LINK"],
)
def test_a_path_outside_the_data_roots_fails_the_attempt_and_is_not_mounted(
    tmp_path: Path, target: str
) -> None:
    """A pushed MLproject default (or -P) naming the Docker socket, the host's root,
    a device, any socket, or a link out of the data root."""
    data = tmp_path / "data"
    data.mkdir()
    if target == "SOCKET":  # a real socket inside the data root is still refused
        target = str(data / "agent.sock")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(target)
    elif target == "ESCAPING-LINK":
        (data / "escape").symlink_to("/etc")
        target = str(data / "escape")
    elif not os.path.lexists(target):  # (no Docker engine here): a path that is not
        assert data_volumes(request(tmp_path, data=target), (str(data),)) == []  # is not mounted
        return
    with pytest.raises(ProjectError, match="outside the data roots .* it is not mounted"):
        data_volumes(request(tmp_path, data=target), (str(data),))


@pytest.mark.unit
def test_no_data_root_means_no_host_path_is_mounted(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="CT_DATA_DIRS: none configured"):
        data_volumes(request(tmp_path, data=str(tmp_path)), ())


# -- 2. symlinks out of the checkout are refused, never followed ---------------------


@pytest.mark.integration
@pytest.mark.parametrize("target", ["/proc/self/environ", "/etc/passwd", "../../outside.txt"])
def test_a_symlink_out_of_the_project_is_refused_in_a_containers_code(
    tmp_path: Path, target: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "outside.txt").write_text("a secret of the host")
    (project / "MLproject").write_text("name: p\n")
    (project / "data").mkdir()
    (project / "data" / "leak.txt").symlink_to(target)
    with pytest.raises(ProjectError, match="data/leak.txt is a symlink to .*outside the project"):
        archive_project(project, ())


@pytest.mark.integration
def test_links_inside_the_project_stay_links(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "conf").mkdir(parents=True)
    (project / "conf" / "base.yaml").write_text("x: 1\n")
    (project / "current.yaml").symlink_to("conf/base.yaml")
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "stale.pyc").write_bytes(b"")
    with tarfile.open(fileobj=archive_project(project, ["__pycache__"])) as tar:
        members = {member.name: member for member in tar.getmembers()}
    link = members["current.yaml"]
    assert link.issym() and link.linkname == "conf/base.yaml"
    assert members["conf/base.yaml"].isfile()
    assert members["conf"].isdir()
    assert not any("__pycache__" in name for name in members)  # left out
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}


@pytest.mark.integration
def test_a_dockerfile_linked_out_of_the_project_is_refused_in_a_build_context(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Dockerfile").write_text("FROM scratch\n")
    (project / "requirements.txt").symlink_to("/etc/passwd")
    with pytest.raises(ProjectError, match="requirements.txt is a symlink to /etc/passwd"):
        refuse_escaping_links(project, [project / "Dockerfile", project / "requirements.txt"])


# -- 6. git: no option in disguise, limited schemes, redaction -----------------------


@pytest.mark.integration
def test_a_url_that_is_an_option_runs_nothing(tmp_path: Path) -> None:
    proof = tmp_path / "PWNED"
    url = f"--upload-pack=touch {proof}"
    assert url_problem(url) != ""
    with pytest.raises(CheckoutError, match="cannot start with '-'"):
        fetch_commit(url, "a" * 40, tmp_path / "work")
    assert not proof.exists()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "allow_file", "problem"),
    [
        ("https://github.com/acme/models.git", False, ""),
        ("ssh://git@github.com/acme/models.git", False, ""),
        ("git@bitbucket.org:team/vision.git", False, ""),
        ("file:///srv/git/models.git", False, "local repositories need CT_GIT_ALLOW_FILE=1"),
        ("/srv/git/models.git", False, "local repositories need CT_GIT_ALLOW_FILE=1"),
        ("file:///srv/git/models.git", True, ""),
        ("http://github.com/acme/models.git", False, "must be https://, ssh:// or git@host:path"),
        ("ext::sh -c touch% /tmp/x", False, "cannot start with '-' or hold spaces"),
        ("-oProxyCommand=x", False, "cannot start with '-'"),
        ("https://ci:t0ken@example.com/a.git", False, "put no credentials in the git URL"),
    ],
)
def test_git_urls_are_limited_to_safe_schemes(url: str, allow_file: bool, problem: str) -> None:
    found = url_problem(url, allow_file)
    assert (problem in found) if problem else found == ""


@pytest.mark.unit
def test_redaction_hides_a_password_holding_an_at_sign() -> None:
    shown = redact("fatal: could not read https://ci:p@ss@w0rd@example.com/a.git")
    assert shown == "fatal: could not read https://***@example.com/a.git"
    assert "ss" not in shown.split("***")[1]


# -- 10. a slow preparation keeps its claim ------------------------------------------


@pytest.mark.integration
def test_an_attempt_being_prepared_keeps_its_claim_past_the_claims_lifetime() -> None:
    """An image build outlasting the claim: a second worker (or a message the
    watchdog enqueued again) must not start the same attempt."""
    from ct_service.keystore import MemoryKeys, held

    keys = MemoryKeys()
    assert keys.claim("claim:run:a", "worker-1", 0.3)
    with held(keys, "claim:run:a", "worker-1", 0.3):
        ends = time.monotonic() + 1.0  # three claim lifetimes
        while time.monotonic() < ends:
            assert not keys.claim("claim:run:a", "worker-2", 0.3)
            time.sleep(0.05)
    # Released by whoever holds it; a dead holder lets it expire: after the block it
    # is no longer renewed.
    expires = time.monotonic() + 2.0
    while keys.get("claim:run:a") is not None and time.monotonic() < expires:
        time.sleep(0.05)
    assert keys.claim("claim:run:a", "worker-2", 0.3)


# -- 7. the webhook: signature first, no 5xx, no enumeration, no replays --------------


@pytest.fixture
def hook(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch):
    """A webhook watching acme/models on GitHub, and a way to send it signed bodies."""
    from ct_service.settings import Settings
    from ct_service.webhook.app import create_app
    from ct_service.webhook.push import Provider, sign

    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    allow_list = tmp_path / "repositories.yaml"
    allow_list.write_text(
        "repositories:\n  - {name: acme/models, provider: github, secret_env: HOOK_SECRET,"
        " url: 'https://git.example.com/acme/models.git', project: projects/lenet}\n"
    )
    settings = Settings(
        home=tmp_path / "ct",
        broker_url=redis_url,
        repositories_file=str(allow_list),
        api_token="t0ken-for-the-status-api",
    )
    client = create_app(settings).test_client()

    def send(body: bytes, event: str = "push", path: str = "/hooks"):
        headers = {"X-GitHub-Event": event, **sign(Provider.GITHUB, body, "s3cret")}
        return client.post(path, data=body, headers=headers, content_type="application/json")

    return client, send, settings


@pytest.mark.integration
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,  # nested past Python's recursion limit
        b'{"ref": "\xff\xfe refs/heads/main"}',  # not UTF-8
        b'{"after": ' + b"9" * 10000 + b"}",  # an integer too long to convert
        b'{"ref": "refs/heads/main", "after": 1e999999}',
        b"\x00\x01\x02",
    ],
)
def test_a_signed_malformed_body_is_a_4xx_never_a_5xx(hook, body: bytes) -> None:
    _, send, _ = hook
    answer = send(body)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.json)


@pytest.mark.integration
def test_an_unsigned_body_is_refused_before_it_is_parsed(hook) -> None:
    """The deeply nested body that parsed into a 500 before: now never parsed."""
    client, _, _ = hook
    body = b"[" * 5000 + b"]" * 5000
    answer = client.post(
        "/hooks", data=body, headers={"X-GitHub-Event": "push"}, content_type="application/json"
    )
    assert answer.status_code == 401 and "acme" not in answer.get_data(as_text=True)


@pytest.mark.integration
def test_an_old_redelivery_is_recognised_from_mlflow_after_redis_forgot_it(
    hook, redis_url: str
) -> None:
    import json

    import redis
    from helpers import created
    from push_samples import GITHUB_PUSH

    from ct_service.orchestration import pipeline
    from ct_service.orchestration.pushes import PushRecords
    from ct_service.tracking import Tracker

    _, send, settings = hook
    body = json.dumps(GITHUB_PUSH).encode()
    first = send(body)
    assert first.status_code == 202
    first_run = created(settings, first.json["pipeline_id"])
    redis.Redis.from_url(redis_url).flushdb()  # the dedup keys expired (7 days on)
    replayed = send(body)
    assert replayed.status_code == 202  # the webhook asks only Redis
    # its create step finds the commit's pipeline in MLflow and creates nothing
    assert pipeline.create_from_push(settings, replayed.json["pipeline_id"]) is None
    records = PushRecords(redis.Redis.from_url(redis_url))
    assert records.run_of(replayed.json["pipeline_id"]) == first_run
    assert [p.id for p in Tracker(settings).recent_pipelines()] == [first_run]


@pytest.mark.integration
def test_the_status_api_needs_its_bearer_token(hook) -> None:
    client, _, settings = hook
    assert client.get("/pipelines").status_code == 401
    assert client.get("/pipelines", headers={"Authorization": "Bearer wrong"}).status_code == 401
    authorised = {"Authorization": "Bearer t0ken-for-the-status-api"}
    assert client.get("/pipelines", headers=authorised).status_code == 200
    assert client.get("/healthz").json == {"status": "ok"}  # stays open, says no more
    from dataclasses import replace

    from ct_service.webhook.app import create_app

    closed = create_app(replace(settings, api_token="")).test_client()
    assert closed.get("/pipelines", headers=authorised).status_code == 404  # the API is off


@pytest.mark.integration
def test_a_tag_deletion_is_not_called_a_branch_deletion(hook) -> None:
    import json

    from push_samples import GITHUB_PUSH

    _, send, _ = hook
    deleted_tag = {**GITHUB_PUSH, "ref": "refs/tags/v1", "after": "0" * 40, "deleted": True}
    answer = send(json.dumps(deleted_tag).encode())
    assert answer.json == {"status": "ignored", "reason": "refs/tags/v1 is not a branch"}


# -- 4. isolation: the training account edits its runs, never the registry -----------
# (the network half, with the services brought up for real: tests/test_compose_stack.py)


def _as(credentials: dict[str, str], action: Callable[[], object]) -> str:
    """Run `action` logged in with `credentials`: "allowed" or MLflow's error code."""
    from mlflow.exceptions import MlflowException

    saved = {name: os.environ[name] for name in credentials}
    os.environ.update(credentials)
    try:
        action()
        return "allowed"
    except MlflowException as error:
        return error.error_code
    finally:
        os.environ.update(saved)


@pytest.mark.integration
def test_the_training_account_edits_its_experiments_runs_and_nothing_else(
    server_with_accounts: str,
) -> None:
    from mlflow import MlflowClient
    from mlflow.server.auth.client import AuthServiceClient

    from ct_service.execution.training_account import TrainingAccount

    url = server_with_accounts
    client = MlflowClient(url, registry_uri=url)  # not a registry an earlier test set
    trained, other = client.create_experiment("trained"), client.create_experiment("other")
    own_run = client.create_run(trained).info.run_id
    other_run = client.create_run(other).info.run_id
    client.create_registered_model("lenet")
    version = client.create_model_version("lenet", f"runs:/{own_run}/model", run_id=own_run)
    client.set_registered_model_alias("lenet", "production", version.version)

    account = TrainingAccount(url, "ct-training", "training-secret-1")
    account.allow(trained)
    training = account.credentials()
    assert training == {
        "MLFLOW_TRACKING_USERNAME": "ct-training",
        "MLFLOW_TRACKING_PASSWORD": "training-secret-1",
    }
    assert _as(training, lambda: client.log_metric(own_run, "val_accuracy", 0.9)) == "allowed"
    assert _as(training, lambda: client.set_tag(own_run, "ct.note", "x")) == "allowed"
    assert _as(training, lambda: client.get_run(other_run)) == "allowed"  # READ, by default
    denied = {
        "log to another experiment": lambda: client.log_metric(other_run, "val_accuracy", 1.0),
        "delete its run": lambda: client.delete_run(own_run),
        "move the alias": lambda: client.set_registered_model_alias("lenet", "production", "1"),
        "drop the alias": lambda: client.delete_registered_model_alias("lenet", "production"),
        "add a version": lambda: client.create_model_version(
            "lenet", f"runs:/{own_run}/model", run_id=own_run
        ),
        "make itself admin": lambda: AuthServiceClient(url).update_user_admin("ct-training", True),
    }
    outcomes = {what: _as(training, action) for what, action in denied.items()}
    assert outcomes == dict.fromkeys(denied, "PERMISSION_DENIED")
    assert client.get_model_version_by_alias("lenet", "production").version == version.version

    # Someone lowered the grant; the next worker (its secret rotated) restores both.
    AuthServiceClient(url).revoke_user_permission("ct-training", "experiment", trained)
    AuthServiceClient(url).grant_user_permission("ct-training", "experiment", trained, "READ")
    TrainingAccount(url, "ct-training", "training-secret-2").allow(trained)
    rotated = {**training, "MLFLOW_TRACKING_PASSWORD": "training-secret-2"}
    assert _as(rotated, lambda: client.log_metric(own_run, "val_accuracy", 0.95)) == "allowed"
    assert _as(training, lambda: client.log_metric(own_run, "val_accuracy", 0.1)) != "allowed"


@pytest.mark.unit
def test_containers_get_the_training_account_not_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ct_service.execution import docker as docker_execution
    from ct_service.execution.training_account import TrainingAccount
    from ct_service.settings import Settings

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "admin-secret")
    settings = Settings.from_env(
        {
            "CT_TRACKING_URI": "http://mlflow:5000",
            "CT_TRAINING_TRACKING_USERNAME": "ct-training",
            "CT_TRAINING_TRACKING_PASSWORD": "training-secret",
        }
    )
    account = docker_execution._training_account(settings)
    assert isinstance(account, TrainingAccount)
    assert account.credentials()["MLFLOW_TRACKING_PASSWORD"] == "training-secret"
    assert "training-secret" not in repr(settings)
    from ct_service.exceptions import SettingsError

    with pytest.raises(SettingsError, match="needs a tracking server"):
        docker_execution._training_account(
            Settings.from_env(
                {"CT_TRAINING_TRACKING_USERNAME": "t", "CT_TRAINING_TRACKING_PASSWORD": "p"}
            )
        )


@pytest.mark.unit
def test_the_broker_password_comes_from_its_secret_file(tmp_path: Path) -> None:
    from ct_service.exceptions import SettingsError
    from ct_service.settings import Settings

    (tmp_path / "redis_password").write_text("s3cr/t@x\n")
    settings = Settings.from_env(
        {
            "CT_BROKER_URL": "redis://redis:6379/0",
            "CT_BROKER_PASSWORD_FILE": str(tmp_path / "redis_password"),
        }
    )
    assert settings.broker_url == "redis://:s3cr%2Ft%40x@redis:6379/0"
    assert "s3cr" not in repr(settings)
    with pytest.raises(SettingsError, match="CT_BROKER_PASSWORD needs"):
        Settings.from_env(
            {"CT_BROKER_URL": "redis://:other@redis:6379/0", "CT_BROKER_PASSWORD": "p"}
        )


# -- 5. what runs is never taken from MLflow tags ------------------------------------


@pytest.mark.integration
def test_an_edited_source_url_tag_fetches_nothing(hook, tmp_path: Path) -> None:
    """Anyone who reaches MLflow can edit a queued pipeline's tags; the worker re-reads
    the repository's URL and project from the allow-list and refuses the edit."""
    import json

    from push_samples import GITHUB_PUSH

    from ct_service import run_tags
    from ct_service.orchestration import pipeline
    from ct_service.tracking import Tracker

    _, send, settings = hook
    from helpers import created

    pipeline_id = created(settings, send(json.dumps(GITHUB_PUSH).encode()).json["pipeline_id"])
    evil = tmp_path / "evil-repo"
    Tracker(settings).set_tags(pipeline_id, {run_tags.SOURCE_URL: evil.as_uri()})
    with pytest.raises(ProjectError, match="not what the allow-list says .* nothing was fetched"):
        pipeline.start(settings, pipeline_id)
    assert not (settings.home / "work" / pipeline_id).exists()


@pytest.mark.integration
def test_a_git_pipeline_naming_an_unlisted_url_fetches_nothing(hook) -> None:
    from dataclasses import replace

    from ct_service.orchestration import pipeline

    _, _, settings = hook
    settings = replace(settings, git_allow_file=True)
    source = pipeline.GitSource("https://git.example.com/other/repo.git")
    pipeline_id = pipeline.create(settings, "projects/lenet", commit="a" * 40, source=source)
    with pytest.raises(ProjectError, match="is not on the allow-list .* nothing was fetched"):
        pipeline.start(settings, pipeline_id)
    assert not (settings.home / "work" / pipeline_id).exists()


# -- 9. pushed code never runs outside a container by default ------------------------


@pytest.mark.integration
def test_a_pushed_commit_does_not_run_on_the_worker_itself(tmp_path: Path, monkeypatch) -> None:
    from conftest import git

    from ct_service.orchestration import pipeline
    from ct_service.orchestration.pipeline import Task
    from ct_service.settings import Settings
    from ct_service.tracking import Tracker

    repo = tmp_path / "repo"
    (repo / "quick").mkdir(parents=True)
    proof = tmp_path / "RAN-ON-THE-WORKER"
    (repo / "quick" / "MLproject").write_text(
        "name: quick\nentry_points:\n  main:\n    command: python train.py\n"
    )
    (repo / "quick" / "train.py").write_text(f"open({str(proof)!r}, 'w').close()\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "quick")
    commit = git(repo, "rev-parse", "HEAD").strip()
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    allow_list = tmp_path / "repositories.yaml"
    allow_list.write_text(
        f"repositories:\n  - {{name: acme/quick, provider: github, secret_env: HOOK_SECRET,"
        f" url: '{repo.as_uri()}', project: quick}}\n"
    )
    settings = Settings(
        home=tmp_path / "ct", repositories_file=str(allow_list), git_allow_file=True
    )  # CT_EXECUTION=local, and CT_TRUST_PUSHED_CODE not set
    source = pipeline.GitSource(repo.as_uri(), "main", repository="github:acme/quick")
    pipeline_id = pipeline.create(settings, "quick", commit=commit, source=source)
    step = pipeline.start(settings, pipeline_id)
    assert step is not None and step.task is Task.RUN_ATTEMPT
    with pytest.raises(ProjectError, match="pushed code runs only in a container"):
        pipeline.run_attempt(settings, pipeline_id, step.args[1])
    assert not proof.exists()
    pipeline.fail(settings, pipeline_id, "refused")  # what the task does with that error
    assert Tracker(settings).pipeline(pipeline_id).outcome == "failed"


# -- 10. smaller holes: what training inherits, SMTP logins --------------------------


@pytest.mark.integration
def test_training_inherits_only_the_allowed_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    import mlflow

    from ct_service.execution.local import LocalExecutor
    from ct_service.settings import Settings

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret-of-the-worker")
    monkeypatch.setenv("GITHUB_TOKEN", "repository-secret-under-another-name")
    monkeypatch.setenv("DATA_BUCKET", "s3://granted-by-the-operator")
    settings = replace(Settings(home=tmp_path / "ct"), training_env=("DATA_BUCKET",))
    project = tmp_path / "envdump"
    project.mkdir()
    (project / "MLproject").write_text(
        "name: envdump\nentry_points:\n  main:\n    command: python dump.py\n"
    )
    (project / "dump.py").write_text("import os\nprint(sorted(os.environ.items()))\n")
    client = mlflow.MlflowClient(settings.tracking_uri, settings.registry_uri)
    experiment = client.create_experiment("envdump")
    run_id = client.create_run(experiment).info.run_id
    log = settings.home / "logs" / "envdump.log"
    result = LocalExecutor(settings, poll_seconds=0.1).run(
        AttemptRequest(str(project), "main", {}, experiment, run_id, 120, log)
    )
    output = log.read_text()
    assert result.succeeded, output
    assert "s3://granted-by-the-operator" in output
    assert "cloud-secret-of-the-worker" not in output
    assert "repository-secret-under-another-name" not in output


@pytest.mark.unit
def test_an_smtp_login_without_tls_is_a_settings_error() -> None:
    from ct_service.exceptions import SettingsError
    from ct_service.settings import Settings

    with pytest.raises(SettingsError, match="CT_SMTP_USER: .* set CT_SMTP_SECURITY"):
        Settings.from_env({"CT_SMTP_HOST": "mail", "CT_SMTP_USER": "ct", "CT_MAIL_TO": "a@b"})
    secure = {"CT_SMTP_HOST": "mail", "CT_SMTP_USER": "ct", "CT_SMTP_SECURITY": "starttls"}
    assert Settings.from_env(secure).smtp.user == "ct"


@pytest.mark.integration
def test_every_change_of_a_bitbucket_push_is_read(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Bitbucket push to main and dev: two pipelines, not only the last change."""
    import copy
    import json

    from push_samples import AFTER, BEFORE, BITBUCKET_PUSH

    from ct_service.settings import Settings
    from ct_service.tracking import Tracker
    from ct_service.webhook.app import create_app
    from ct_service.webhook.push import Provider, sign

    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    allow_list = tmp_path / "repositories.yaml"
    allow_list.write_text(
        "repositories:\n  - {name: acme/models, provider: bitbucket, secret_env: HOOK_SECRET,"
        " url: 'https://bitbucket.org/acme/models.git', branches: [main, dev]}\n"
    )
    settings = Settings(
        home=tmp_path / "ct", broker_url=redis_url, repositories_file=str(allow_list)
    )
    payload = copy.deepcopy(BITBUCKET_PUSH)
    dev = copy.deepcopy(payload["push"]["changes"][0])
    dev["new"]["name"] = dev["old"]["name"] = "dev"
    dev["new"]["target"]["hash"], dev["old"]["target"]["hash"] = BEFORE, AFTER
    payload["push"]["changes"].append(dev)
    body = json.dumps(payload).encode()
    headers = {
        "X-Event-Key": "repo:push",
        "X-Request-UUID": "d-1",
        **sign(Provider.BITBUCKET, body, "s3cret"),
    }
    answer = (
        create_app(settings)
        .test_client()
        .post("/hooks", data=body, headers=headers, content_type="application/json")
    )
    assert answer.status_code == 202, answer.json
    from helpers import created

    started = [created(settings, p["pipeline_id"]) for p in answer.json["pushes"]]
    branches = {Tracker(settings).pipeline(p).spec.source_branch for p in started}
    assert len(set(started)) == 2 and branches == {"main", "dev"}
