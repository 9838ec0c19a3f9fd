"""What every training container of a store is started with, whether it is created
for its attempt (docker.py) or ahead of it (spare_containers.py): its labels,
network, hardening, resource limits and the part of its environment that names no
run. Apart from docker.py so that `ct-service run` can start a spare without
importing MLflow.

Hardened by default: a network of its own (training_network.py; never the host's),
every Linux capability dropped, no privilege gained through setuid files, a
read-only root file system (writable: the working folder, a host folder of the
container's own mounted there, and /tmp, in memory), a user other than root (the
image's USER, else `nobody`, 65534), and limits on processes, memory
and CPUs (CT_DOCKER_PIDS, CT_DOCKER_MEMORY, CT_DOCKER_CPUS; unset: 4,096 processes,
half the host's memory, all its CPUs).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from docker.types import DeviceRequest

from ct_service.execution.training_network import DEFAULT_NETWORK
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


UNPRIVILEGED = "65534:65534"  # nobody: who a container runs as when its image names no user


def training_user(image_user: str) -> str:
    """Who a container of an image runs as: the image's own USER, else nobody (never
    root by default)."""
    return image_user or UNPRIVILEGED


def hand_to(folder: Path, user: str) -> None:
    """Let a container running as `user` write `folder`, a host folder of its own: its
    owner becomes the user's numeric uid (a named user's uid is the image's to know:
    the folder is then opened to all), or to all when this process cannot chown."""
    uid, _, gid = user.partition(":")
    if uid.isdigit() and os.geteuid() == 0:
        os.chown(folder, int(uid), int(gid) if gid.isdigit() else int(uid))
    else:
        folder.chmod(0o777)


def network(settings: Settings) -> str:
    """CT_DOCKER_NETWORK, else ct-service's own internal network."""
    return settings.docker.network or DEFAULT_NETWORK


def default_memory() -> str:
    """Half the host's memory, in bytes: what a container may use when
    CT_DOCKER_MEMORY is not set."""
    return str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)


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
        "network": network(settings),
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": docker_settings.pids,
        "read_only": True,
        "tmpfs": {"/tmp": "rw,exec,nosuid,nodev"},  # exec: libraries that compile there
        "mem_limit": docker_settings.memory or default_memory(),
        "nano_cpus": int(float(docker_settings.cpus or os.cpu_count() or 1) * 1e9),
    }
    if docker_settings.gpus:
        count = -1 if docker_settings.gpus == "all" else int(docker_settings.gpus)
        options["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
    return options
