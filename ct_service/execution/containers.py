"""What every training container of a store is started with, whether it is created
for its attempt (docker.py) or ahead of it (spare_containers.py): its labels,
network, resource limits and the part of its environment that names no run. Apart
from docker.py so that `ct-service run` can start a spare without importing MLflow.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from docker.types import DeviceRequest

from ct_service.execution import tracking_server
from ct_service.settings import Settings

# Which tracking store a container's run is recorded in: the watchdog of another
# store (another deployment, someone's embedded runs on the same engine) leaves it be.
STORE_LABEL = "ct-service.store"
WORKDIR = "/mlflow/projects/code"  # where the code sits in the container, as with MLflow


def store_label(tracking_uri: str) -> str:
    """The STORE_LABEL value of a store: a digest of its URI without credentials."""
    parts = urlsplit(tracking_uri)
    netloc = parts.netloc.rpartition("@")[2]
    plain = urlunsplit(parts._replace(netloc=netloc))
    return hashlib.sha256(plain.encode()).hexdigest()[:16]


def network(settings: Settings) -> str:
    """CT_DOCKER_NETWORK; the host's when containers log to a server started here
    (it listens on 127.0.0.1) and none is set."""
    if not settings.docker.network and tracking_server.needed(settings):
        return "host"
    return settings.docker.network


def base_environment(settings: Settings) -> dict[str, str]:
    """The environment of a training container, less where it logs and its run's
    ids and credentials."""
    return {
        # artifacts through the tracking server, never presigned URLs of its store
        "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
        "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
        "PYTHONUNBUFFERED": "1",
        **{n: os.environ[n] for n in settings.training_env if n in os.environ},
    }


def base_options(settings: Settings) -> dict[str, Any]:
    """docker.containers.create() arguments every training container gets: the
    store's label, the working folder, the network and the limits."""
    docker_settings = settings.docker
    options: dict[str, Any] = {
        "working_dir": WORKDIR,
        "labels": {STORE_LABEL: store_label(settings.tracking_uri)},
    }
    chosen = network(settings)
    if chosen == "host":
        options["network_mode"] = "host"
    elif chosen:
        options["network"] = chosen
    if docker_settings.cpus:
        options["nano_cpus"] = int(float(docker_settings.cpus) * 1e9)
    if docker_settings.memory:
        options["mem_limit"] = docker_settings.memory
    if docker_settings.gpus:
        count = -1 if docker_settings.gpus == "all" else int(docker_settings.gpus)
        options["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
    return options
