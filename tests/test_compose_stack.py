"""compose.yaml brought up for real: `docker-compose up` of every service with images
built here (tests/compose/override.yaml swaps in stand-ins for the redis and postgres
images, which no registry serves here, and adds a git server over HTTPS).

Then, as an operator and an attacker would:
- a signed push to the published webhook port is fetched by the worker service from the
  git server, trained in a training container, logged to MLflow on PostgreSQL through
  the server, and promoted; from this host the model loads over the MLflow server;
- a pushed project that probes its surroundings from inside its training container
  reaches the MLflow server and nothing else of the service, and cannot change the
  registry with the account it is given;
- from this host: only the webhook's port is published beyond 127.0.0.1; Redis, MLflow
  and Flower refuse requests without their passwords.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from compose_stack import BASE_IMAGE, CA_BUNDLE, build, build_compose_images, compose
from conftest import LENET, MNIST, ROOT, free_port, git
from helpers import wait_for

from ct_service.repositories import Provider, Repository
from ct_service.webhook import sample_push

pytestmark = [pytest.mark.slow, pytest.mark.docker]

PASSWORDS = (
    "postgres_password",
    "redis_password",
    "mlflow_admin_password",
    "mlflow_training_password",
    "flower_password",
)
PROBE_TARGETS = {  # service: port, as a training container would try them
    "redis": 6379,
    "postgres": 5432,
    "flower": 5555,
    "webhook": 8000,
    "git": 443,
    "mlflow": 5000,
}
LENET_QUICK = {"epochs": 2, "max_train_samples": 6000, "conv_blocks": 1, "filters": 8}


@dataclass
class Stack:
    folder: Path
    env: dict[str, str]
    passwords: dict[str, str]
    webhook_url: str
    mlflow_url: str
    flower_url: str
    repositories: dict[str, Repository]
    commits: dict[str, str]

    def admin(self) -> dict[str, str]:
        return {
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "MLFLOW_TRACKING_USERNAME": "admin",
            "MLFLOW_TRACKING_PASSWORD": self.passwords["mlflow_admin_password"],
        }


def _lenet_for_the_stack(folder: Path, mnist: Path) -> None:
    """projects/lenet, trained quickly on the data the operator mounts."""
    shutil.copytree(LENET, folder, ignore=shutil.ignore_patterns("__pycache__"))
    mlproject = yaml.safe_load((folder / "MLproject").read_text())
    parameters = mlproject["entry_points"]["main"]["parameters"]
    for name, value in {**LENET_QUICK, "data": str(mnist)}.items():
        parameters[name]["default"] = value
    (folder / "MLproject").write_text(yaml.safe_dump(mlproject))
    (folder / "ct.yaml").write_text("stop_early: false\n")


PROBE = '''\
"""Tries what pushed code could try from its training container; records each outcome."""
import json
import os
import socket

from mlflow import MlflowClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request, verify_rest_response


def connect(host, port):
    try:
        address = socket.gethostbyname(host)
    except OSError:
        return "unresolvable"
    try:
        socket.create_connection((address, port), timeout=3).close()
        return "open"
    except OSError as error:
        return type(error).__name__


def attempt(action):
    try:
        action()
        return "allowed"
    except Exception as error:
        return str(getattr(error, "error_code", type(error).__name__))


def make_admin():
    endpoint = "/api/2.0/mlflow/users/update-admin"
    body = {{"username": os.environ["MLFLOW_TRACKING_USERNAME"], "is_admin": True}}
    creds = get_default_host_creds(os.environ["MLFLOW_TRACKING_URI"])
    verify_rest_response(http_request(creds, endpoint, "PATCH", json=body), endpoint)


TARGETS = {targets}
run_id = os.environ["MLFLOW_RUN_ID"]
client = MlflowClient()
outcome = {{f"probe.{{name}}": connect(name, port) for name, port in TARGETS.items()}}
# Knowing the services' addresses (read from MLflow, where the test left them) is no help.
addresses = json.loads(client.get_experiment_by_name("stack").tags["addresses"])
for name, address in addresses.items():
    outcome[f"probe.address.{{name}}"] = connect(address, TARGETS[name])
outcome["probe.user"] = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
outcome["probe.set_alias"] = attempt(
    lambda: client.set_registered_model_alias("lenet", "production", "1"))
outcome["probe.delete_alias"] = attempt(
    lambda: client.delete_registered_model_alias("lenet", "production"))
outcome["probe.new_version"] = attempt(
    lambda: client.create_model_version("lenet", f"runs:/{{run_id}}/model", run_id=run_id))
outcome["probe.make_admin"] = attempt(make_admin)
outcome["probe.environment"] = ",".join(sorted(os.environ))
for key, value in outcome.items():
    client.set_tag(run_id, key, value)
client.log_metric(run_id, "test_accuracy", 0.0)
client.set_tag(run_id, "probe.done", "yes")  # last: the test reads the findings after it
'''


def _probe_project(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "MLproject").write_text(
        "name: probe\n"
        "docker_env:\n  image: ct-train-tensorflow:latest\n"
        "entry_points:\n  main:\n    command: python probe.py\n"
    )
    (folder / "probe.py").write_text(PROBE.format(targets=repr(PROBE_TARGETS)))


def _repository(bare: Path, work: Path, project: str, make: object) -> str:
    """A bare repository under the git server's root holding one project; its commit."""
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    make(work / project)  # type: ignore[operator]
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", project)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return git(work, "rev-parse", "HEAD").strip()


def _certificate(folder: Path) -> None:
    folder.mkdir()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=git", "-addext", "subjectAltName=DNS:git",
            "-keyout", str(folder / "git.key"), "-out", str(folder / "git.crt"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (folder / "git.key").chmod(0o644)  # read by the git server's user in its container
    shutil.copy(CA_BUNDLE if CA_BUNDLE.is_file() else folder / "git.crt", folder / "ca.crt")


def _get(url: str, user: str = "", password: str = "") -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import docker

    client = docker.from_env(timeout=900)
    folder = tmp_path_factory.mktemp("stack")
    config = yaml.safe_load(
        subprocess.run(
            ["docker-compose", "-f", str(ROOT / "compose.yaml"), "config"],
            capture_output=True, text=True, check=True, cwd=ROOT,
            env={"PATH": "/usr/bin:/bin:/usr/local/bin", "BASE_IMAGE": BASE_IMAGE},
        ).stdout
    )  # fmt: skip
    build_compose_images(client, config, folder / "build")
    for name in ("redis", "postgres"):
        build(client, ROOT / "tests" / "compose", f"{name}.Dockerfile",
              f"ct-test-{name}:bookworm", folder / "build")  # fmt: skip

    passwords = {name: secrets.token_hex(16) for name in PASSWORDS}
    (folder / "secrets").mkdir()
    for name, value in passwords.items():
        (folder / "secrets" / name).write_text(value)
    for name in ("smtp_password", "chat_webhook_url", "api_token"):
        (folder / "secrets" / name).write_text("")
    _certificate(folder / "tls")
    mnist = MNIST.resolve()
    commits = {
        "models": _repository(folder / "git" / "ct" / "models.git", folder / "work-models",
                              "projects/lenet", lambda p: _lenet_for_the_stack(p, mnist)),
        "probe": _repository(folder / "git" / "ct" / "probe.git", folder / "work-probe",
                             "probe", _probe_project),
    }  # fmt: skip
    (folder / "hooks").mkdir()
    repositories = {}
    entries = []
    for name, project in (("models", "projects/lenet"), ("probe", "probe")):
        secret = secrets.token_hex(16)
        (folder / "hooks" / name).write_text(secret)
        url = f"https://git/ct/{name}.git"
        entries.append(
            {"name": f"ct/{name}", "provider": "github", "url": url,
             "secret_file": f"/srv/hooks/{name}", "branches": ["main"], "project": project,
             "target": {"metric": "test_accuracy", "threshold": 0.8}}
        )  # fmt: skip
        repositories[name] = Repository(
            name=f"ct/{name}", provider=Provider.GITHUB, url=url, secret=secret,
            branches=("main",), project=project,
        )  # fmt: skip
    (folder / "repositories.yaml").write_text(yaml.safe_dump({"repositories": entries}))
    (folder / "projects" / "lenet").mkdir(parents=True)  # compose checks build contexts exist

    ports = {name: free_port() for name in ("WEBHOOK_PORT", "MLFLOW_PORT", "FLOWER_PORT")}
    env = {
        **{name: str(port) for name, port in ports.items()},
        "BASE_IMAGE": BASE_IMAGE,
        "MLFLOW_PUBLIC_HOST": f"127.0.0.1:{ports['MLFLOW_PORT']}",
        "CT_DATA_DIR": str(mnist),
        "CT_DATA_DIRS": str(mnist),
        "STACK_DIR": str(folder),
        "STACK_TOOLS": str(ROOT / "tests" / "compose"),
    }
    stack = Stack(
        folder=folder,
        env=env,
        passwords=passwords,
        webhook_url=f"http://127.0.0.1:{ports['WEBHOOK_PORT']}",
        mlflow_url=f"http://127.0.0.1:{ports['MLFLOW_PORT']}",
        flower_url=f"http://127.0.0.1:{ports['FLOWER_PORT']}",
        repositories=repositories,
        commits=commits,
    )
    compose(env, folder, "down", "-v", "--remove-orphans")
    try:
        _up(stack)
        yield stack
    finally:
        logs = compose(env, folder, "logs", "--no-color", "--tail", "200").stdout
        (Path(os.environ.get("CT_TEST_LOGS", folder)) / "stack.log").write_text(logs)
        compose(env, folder, "down", "-v", "--remove-orphans")


def _up(stack: Stack) -> None:
    compose(stack.env, stack.folder, "up", "-d", "--no-build")
    wait_for(lambda: _get(stack.webhook_url + "/healthz")[0] == 200, 180, "the webhook")
    wait_for(lambda: _get(stack.mlflow_url + "/health")[0] == 200, 180, "the MLflow server")


def _container(service: str) -> object:
    import docker

    [found] = docker.from_env().containers.list(
        filters={"label": ["com.docker.compose.project=ctstack",
                           f"com.docker.compose.service={service}"]}
    )  # fmt: skip
    return found


def _address(service: str) -> str:
    """The service's address on the service network (`ct-service`)."""
    networks = _container(service).attrs["NetworkSettings"]["Networks"]  # type: ignore[attr-defined]
    return str(networks["ct-service"]["IPAddress"])


def _push(stack: Stack, name: str) -> str:
    status, answer = sample_push.send(
        stack.webhook_url, stack.repositories[name], "main", stack.commits[name]
    )
    assert status == 202, (status, answer)
    return str(answer["pipeline_id"])


def test_only_the_webhook_is_published_beyond_this_host(stack: Stack) -> None:
    published = {}
    for service in ("redis", "postgres", "mlflow", "webhook", "worker", "beat", "flower", "git"):
        ports = _container(service).attrs["NetworkSettings"]["Ports"] or {}  # type: ignore[attr-defined]
        published[service] = sorted(
            {binding["HostIp"] for bindings in ports.values() if bindings for binding in bindings}
        )
    webhook = published.pop("webhook")
    assert webhook and set(webhook) <= {"0.0.0.0", "::"}  # every address of the host
    assert published == {
        "redis": [], "postgres": [], "worker": [], "beat": [], "git": [],
        "mlflow": ["127.0.0.1"], "flower": ["127.0.0.1"],
    }  # fmt: skip


def test_redis_mlflow_and_flower_refuse_requests_without_their_passwords(stack: Stack) -> None:
    redis = _container("redis")
    no_password = redis.exec_run(["redis-cli", "ping"])  # type: ignore[attr-defined]
    assert b"NOAUTH" in no_password.output
    with_password = redis.exec_run(  # type: ignore[attr-defined]
        ["sh", "-c", 'REDISCLI_AUTH="$(cat /run/secrets/redis_password)" redis-cli ping']
    )
    assert with_password.output.strip() == b"PONG"

    search = stack.mlflow_url + "/api/2.0/mlflow/experiments/search?max_results=1"
    assert _get(search)[0] == 401
    assert _get(search, "admin", "password1234")[0] == 401
    assert _get(search, "admin", stack.passwords["mlflow_admin_password"])[0] == 200

    assert _get(stack.flower_url + "/")[0] == 401
    assert _get(stack.flower_url + "/", "admin", stack.passwords["flower_password"])[0] == 200


def test_a_push_is_trained_in_a_container_and_the_model_loads_from_the_server(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import numpy as np
    from mlflow import MlflowClient

    for name, value in stack.admin().items():
        monkeypatch.setenv(name, value)
    _push(stack, "models")
    client = MlflowClient(stack.mlflow_url)

    def promoted() -> object:
        try:
            return client.get_model_version_by_alias("lenet", "production")
        except Exception:
            return None

    version = wait_for(promoted, 1200, "lenet@production")
    run = client.get_run(version.run_id)  # type: ignore[attr-defined]
    assert run.data.tags["ct.executor"] == "docker"
    assert run.data.tags["mlflow.source.git.commit"] == stack.commits["models"]

    import sys

    sys.path.insert(0, str(LENET))
    import mnist

    data = mnist.load(str(MNIST))
    images = data.x_test[:2000].astype("float32")[..., None] / 255.0
    model = mlflow.pyfunc.load_model("models:/lenet@production")
    accuracy = float(
        (np.asarray(model.predict(images)).argmax(axis=1) == data.y_test[:2000]).mean()
    )
    assert accuracy >= 0.8


def test_training_code_reaches_only_mlflow_and_cannot_change_the_registry(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    for name, value in stack.admin().items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(stack.mlflow_url)
    before = client.get_model_version_by_alias("lenet", "production").version
    addresses = {service: _address(service) for service in PROBE_TARGETS if service != "mlflow"}
    client.set_experiment_tag(client.create_experiment("stack"), "addresses", json.dumps(addresses))
    _push(stack, "probe")

    def probed() -> dict[str, str] | None:
        experiment = client.get_experiment_by_name("ct/probe")
        if experiment is None:
            return None
        runs = client.search_runs([experiment.experiment_id], "tags.`probe.done` = 'yes'")
        return runs[0].data.tags if runs else None

    tags = wait_for(probed, 600, "the probe's findings")
    reached = {name: tags[f"probe.{name}"] for name in PROBE_TARGETS}
    assert reached == {
        "redis": "unresolvable", "postgres": "unresolvable", "flower": "unresolvable",
        "webhook": "unresolvable", "git": "unresolvable",
        "mlflow": "open",
    }, reached  # fmt: skip
    by_address = {k.removeprefix("probe.address."): v for k, v in tags.items() if ".address." in k}
    assert set(by_address) == set(PROBE_TARGETS) - {"mlflow"}
    # the networks are kept apart: no answer at all (a refusal would prove a route)
    assert not {"open", "ConnectionRefusedError"} & set(by_address.values()), by_address
    assert tags["probe.user"] == "ct-training"
    for action in ("set_alias", "delete_alias", "new_version", "make_admin"):
        assert tags[f"probe.{action}"] == "PERMISSION_DENIED", (action, tags[f"probe.{action}"])
    environment = set(tags["probe.environment"].split(","))
    assert not {n for n in environment if n.startswith("CT_")}
    assert client.get_model_version_by_alias("lenet", "production").version == before
    assert json.dumps(tags).count(stack.passwords["mlflow_admin_password"]) == 0
