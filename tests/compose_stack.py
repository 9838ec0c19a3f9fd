"""The compose tests' stack: build the images compose.yaml names (with the Docker
SDK, on the host network, through this machine's CA: compose v1 here cannot pass
either), drive `docker-compose` on compose.yaml plus tests/compose/override.yaml
(stand-ins for the redis, postgres and seaweedfs images, which no registry serves
here, and a git server over HTTPS), and bring the whole stack up with three watched
repositories: two LeNet projects and a probe that tries what pushed code could try."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import LENET, MNIST, ROOT, free_port, git
from helpers import wait_for

from ct_service.repositories import Provider, Repository
from ct_service.webhook import sample_push

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BASE_IMAGE = "ct-base:bookworm"  # built offline by `make docker-base`
COMPOSE_FILE = ROOT / "compose.yaml"
OVERRIDE = ROOT / "tests" / "compose" / "override.yaml"
PATH = "/usr/bin:/bin:/usr/local/bin"


def build(client: Any, context: Path, dockerfile: str, tag: str, workdir: Path) -> Any:
    """Build `tag` from a copy of `context` (with this machine's CA as ca.crt)."""
    copy = workdir / tag.replace(":", "-").replace("/", "-")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(
        context,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", "tests", "benchmarks", "build", "*.egg-info", "mlruns", "__pycache__"
        ),
    )
    if CA_BUNDLE.is_file():  # this machine reaches the package index through its CA
        shutil.copy(CA_BUNDLE, copy / "ca.crt")
    image, _ = client.images.build(
        path=str(copy),
        dockerfile=dockerfile,
        tag=tag,
        buildargs={"BASE_IMAGE": BASE_IMAGE},
        network_mode="host",
        rm=True,
        forcerm=True,
    )
    return image


def build_compose_images(client: Any, config: dict, workdir: Path) -> dict[str, Any]:
    """Every image compose.yaml builds, by tag."""
    builds = {s["image"]: s["build"] for s in config["services"].values() if "build" in s}
    return {
        tag: build(
            client, Path(spec["context"]), spec.get("dockerfile", "Dockerfile"), tag, workdir
        )
        for tag, spec in builds.items()
    }


def compose(
    env: dict[str, str], project_directory: Path, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`docker-compose` on compose.yaml and the override, in the test's project folder
    (where ./secrets and ./repositories.yaml are); raises with its output on failure."""
    command = [
        "docker-compose",
        "--project-directory",
        str(project_directory),
        "-p",
        "ctstack",
        "-f",
        str(COMPOSE_FILE),
        "-f",
        str(OVERRIDE),
        *args,
    ]
    environment = {"PATH": PATH, **env}
    if os.environ.get("DOCKER_HOST"):
        environment["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {done.stderr[-3000:]}")
    return done


PASSWORDS = (
    "postgres_password",
    "redis_password",
    "mlflow_admin_password",
    "mlflow_training_password",
    "flower_password",
    "s3_access_key",
    "s3_secret_key",
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

    def client(self) -> Any:
        """A client of the stack's MLflow server, for tracking and registry alike; this
        process's MLflow URIs point there too (an earlier test may have set others)."""
        import mlflow

        mlflow.set_tracking_uri(self.mlflow_url)
        mlflow.set_registry_uri(self.mlflow_url)
        return mlflow.MlflowClient(self.mlflow_url, registry_uri=self.mlflow_url)

    def admin(self) -> dict[str, str]:
        """What a client on this host sets to use the stack's MLflow server as admin
        (the S3 store is not published: artifacts come through the server)."""
        return {
            "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "MLFLOW_TRACKING_USERNAME": "admin",
            "MLFLOW_TRACKING_PASSWORD": self.passwords["mlflow_admin_password"],
        }


def _lenet_for_the_stack(folder: Path, mnist: Path, name: str = "lenet", **defaults: int) -> None:
    """projects/lenet, trained quickly on the data the operator mounts."""
    shutil.copytree(LENET, folder, ignore=shutil.ignore_patterns("__pycache__"))
    _set_defaults(folder, name, {**LENET_QUICK, "data": str(mnist), **defaults})
    (folder / "ct.yaml").write_text("stop_early: false\nsearch_space: {}\n")


def _set_defaults(folder: Path, name: str, defaults: dict[str, object]) -> None:
    mlproject = yaml.safe_load((folder / "MLproject").read_text())
    mlproject["name"] = name
    for parameter, value in defaults.items():
        mlproject["entry_points"]["main"]["parameters"][parameter]["default"] = value
    (folder / "MLproject").write_text(yaml.safe_dump(mlproject))


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
    body = {{"username": "ct-training", "is_admin": True}}
    creds = get_default_host_creds(os.environ["MLFLOW_TRACKING_URI"])
    verify_rest_response(http_request(creds, endpoint, "PATCH", json=body), endpoint)


TARGETS = {targets}
run_id = os.environ["MLFLOW_RUN_ID"]
client = MlflowClient()
outcome = {{f"probe.{{name}}": connect(name, port) for name, port in TARGETS.items()}}
# Knowing the services' addresses (read from MLflow, where the test left them) is no help.
own_experiment = client.get_experiment(os.environ["MLFLOW_EXPERIMENT_ID"])
addresses = json.loads(own_experiment.tags["addresses"])
for name, address in addresses.items():
    outcome[f"probe.address.{{name}}"] = connect(address, TARGETS[name])
outcome["probe.user"] = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
outcome["probe.tracking"] = os.environ.get("MLFLOW_TRACKING_URI", "")
outcome["probe.pipeline_tag"] = attempt(lambda: client.set_tag(
    client.get_run(run_id).data.tags["ct.pipeline_id"], "ct.model_name", "other"))
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


def get(url: str, user: str = "", password: str = "") -> tuple[int, bytes]:
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


def stack_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack, up (for a module-scoped fixture: the stack's watchdog removes training
    containers it does not know, so it must be down before other Docker tests run)."""
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
    for name in ("redis", "postgres", "seaweedfs"):
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
        "digits": _repository(folder / "git" / "ct" / "digits.git", folder / "work-digits",
                              "projects/lenet", lambda p: _lenet_for_the_stack(p, mnist, "digits")),
    }  # fmt: skip
    (folder / "hooks").mkdir()
    repositories = {}
    entries = []
    for name, project in (
        ("models", "projects/lenet"),
        ("probe", "probe"),
        ("digits", "projects/lenet"),
    ):
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
        up(stack)
        yield stack
    finally:
        logs = compose(env, folder, "logs", "--no-color", "--tail", "200").stdout
        (Path(os.environ.get("CT_TEST_LOGS", folder)) / "stack.log").write_text(logs)
        compose(env, folder, "down", "-v", "--remove-orphans")


def up(stack: Stack) -> None:
    compose(stack.env, stack.folder, "up", "-d", "--no-build")
    wait_for(lambda: get(stack.webhook_url + "/healthz")[0] == 200, 180, "the webhook")
    wait_for(lambda: get(stack.mlflow_url + "/health")[0] == 200, 180, "the MLflow server")


def container(service: str) -> object:
    import docker

    [found] = docker.from_env().containers.list(
        filters={"label": ["com.docker.compose.project=ctstack",
                           f"com.docker.compose.service={service}"]}
    )  # fmt: skip
    return found


def address(service: str) -> str:
    """The service's address on the service network (`ct-service`)."""
    networks = container(service).attrs["NetworkSettings"]["Networks"]  # type: ignore[attr-defined]
    return str(networks["ct-service"]["IPAddress"])


def new_commit(stack: Stack, name: str, **defaults: object) -> str:
    """Commit a change to the repository's project (new defaults, or a touched train.py)
    and push it to the git server; the new commit becomes the one pushes name."""
    work = stack.folder / f"work-{name}"
    project = work / stack.repositories[name].project
    if defaults:
        _set_defaults(
            project, yaml.safe_load((project / "MLproject").read_text())["name"], defaults
        )
    else:
        with open(project / "train.py", "a") as code:
            code.write("# changed\n")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "change")
    bare = stack.folder / "git" / "ct" / f"{name}.git"
    subprocess.run(["git", "-C", str(work), "push", "-q", str(bare), "main"], check=True)
    stack.commits[name] = git(work, "rev-parse", "HEAD").strip()
    return stack.commits[name]


def ended(client: object, pipeline_id: str) -> dict[str, str] | None:
    tags = client.get_run(pipeline_id).data.tags  # type: ignore[attr-defined]
    return tags if tags.get("ct.outcome") else None


def attempts(client: object, pipeline_id: str) -> list:
    experiment = client.get_run(pipeline_id).info.experiment_id  # type: ignore[attr-defined]
    return list(
        client.search_runs(  # type: ignore[attr-defined]
            [experiment], f"tags.`mlflow.parentRunId` = '{pipeline_id}'"
        )
    )


def s3_keys() -> list[str]:
    """Every key of the bucket, listed from the MLflow server's container (the only
    one besides the store that has its keys)."""
    listing = (
        "import boto3\n"
        "import os\n"
        "s3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'],\n"
        "    aws_access_key_id=open('/run/secrets/s3_access_key').read(),\n"
        "    aws_secret_access_key=open('/run/secrets/s3_secret_key').read())\n"
        "for page in s3.get_paginator('list_objects_v2').paginate(Bucket='mlflow'):\n"
        "    for item in page.get('Contents', []):\n"
        "        print(item['Key'])\n"
    )
    done = container("mlflow").exec_run(["python3", "-c", listing])  # type: ignore[attr-defined]
    assert done.exit_code == 0, done.output
    return done.output.decode().split()


def holds_no_s3_keys(service: str) -> None:
    attrs = container(service).attrs  # type: ignore[attr-defined]
    assert not [e for e in attrs["Config"]["Env"] if e.startswith("AWS_")], service
    assert not [m for m in attrs["Mounts"] if "s3_" in m["Destination"]], service


def push(stack: Stack, name: str) -> str:
    status, answer = sample_push.send(
        stack.webhook_url, stack.repositories[name], "main", stack.commits[name]
    )
    assert status == 202, (status, answer)
    push_id = str(answer["pipeline_id"])
    client = stack.client()

    def run_of_push() -> str:  # a worker creates the pipeline's run
        experiments = [e.experiment_id for e in client.search_experiments()]
        found = client.search_runs(experiments, f"tags.`ct.push_id` = '{push_id}'")
        return str(found[0].info.run_id) if found else ""

    return wait_for(run_of_push, 300, f"the run of push {push_id}")
