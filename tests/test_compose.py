"""compose.yaml: valid for Docker Compose (Debian's docker-compose validates it), wired
as the README says, and every image it builds builds, on a real Docker engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from compose_stack import BASE_IMAGE, PASSWORDS, build_compose_images
from conftest import ROOT


@pytest.fixture(scope="module")
def config() -> dict:
    done = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "BASE_IMAGE": BASE_IMAGE},
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


@pytest.mark.slow
@pytest.mark.docker
def test_the_service_is_all_there_and_wired(config: dict) -> None:
    services = config["services"]
    assert set(services) == {
        "redis",
        "postgres",
        "mlflow",
        "webhook",
        "worker",
        "beat",
        "flower",
        "s3",
        "training-image",
    }
    worker = services["worker"]
    assert "/var/run/docker.sock:/var/run/docker.sock:rw" in worker["volumes"]
    environment = worker["environment"]
    assert environment["CT_TRACKING_URI"] == "http://mlflow:5000"
    assert environment["CT_BROKER_URL"] == "redis://redis:6379/0"
    assert environment["CT_EXECUTION"] == "docker"
    # training containers join a network of their own, internal, where only the
    # workers (their gateways) are: the MLflow server neither
    training_network = config["networks"]["training"]
    assert environment["CT_DOCKER_NETWORK"] == training_network["name"]
    assert training_network.get("internal") is True
    assert set(worker["networks"]) == {"ct", "training"}
    assert all(
        "training" not in s.get("networks", {}) for n, s in services.items() if n != "worker"
    )
    assert "--app-name basic-auth" in " ".join(services["mlflow"]["command"])
    mlflow_command = " ".join(services["mlflow"]["command"])
    assert "--allowed-hosts" in mlflow_command and "mlflow:5000" in mlflow_command
    assert services["webhook"]["command"][0] == "gunicorn"
    assert services["beat"]["command"] == ["ct-service", "beat"]


@pytest.mark.slow
@pytest.mark.docker
def test_no_secret_is_written_into_the_compose_file(config: dict) -> None:
    for service in config["services"].values():
        for name in service.get("environment", {}):
            assert not name.endswith(("PASSWORD", "TOKEN", "_URL")) or name in {
                "CT_BROKER_URL",
                "CT_TRACKING_URI",
                "CT_UI_URL",
                "MLFLOW_S3_ENDPOINT_URL",  # the artifact store's address; its keys are secrets
            }, name
    # the passwords the stack test generates, and three an operator fills in or leaves empty
    assert set(config["secrets"]) == {*PASSWORDS, "smtp_password", "chat_webhook_url", "api_token"}
    holding_s3_keys = {
        name
        for name, service in config["services"].items()
        if any("s3_" in str(secret) for secret in service.get("secrets", []))
    }
    assert holding_s3_keys == {"s3", "mlflow"}  # workers and training go through MLflow


@pytest.mark.slow
@pytest.mark.docker
def test_every_image_compose_builds_builds(config: dict, tmp_path: Path) -> None:
    import docker

    client = docker.from_env(timeout=900)
    images = build_compose_images(client, config, tmp_path)
    assert set(images) == {"ct-service:latest", "ct-train-tensorflow:latest"}
    service = images["ct-service:latest"].id
    for command in (["ct-service", "--help"], ["celery", "--version"], ["docker", "--version"]):
        assert client.containers.run(service, command, remove=True)
    probe = "import psycopg2, flower, mlflow.server; print('ok')"
    assert client.containers.run(service, ["python3", "-c", probe], remove=True).strip() == b"ok"
    training = images["ct-train-tensorflow:latest"].id
    probe = "import tensorflow, mlflow; print(tensorflow.__version__)"
    assert client.containers.run(training, ["python", "-c", probe], remove=True).strip()
