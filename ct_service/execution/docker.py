"""Runs an attempt in a Docker container, started through the Docker SDK.

The environment is chosen from the project's code (environment.py) and built or
reused (images.py); a per-run image adds the project's code to it (a work copy in
which no symlink leaves the project). The container is started with the engine's
API, not a shell command line: no operator or project value is interpreted by a
shell, and credentials reach it as environment entries of the API call, never on a
logged line. Each container is named `ct-<run id>`; only parameters naming paths
under the operator's data roots are mounted, read-only, at the same path; containers
log to MLflow over HTTP. Its exit status decides: 128+n for an outside signal (an OOM
kill, `docker kill`) is an interruption, anything else non-zero a failure of the code.
Containers, per-run images and work copies are removed afterwards.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import docker
from docker.errors import APIError, BuildError, DockerException, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest
from mlflow import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path

from ct_service import run_tags
from ct_service.exceptions import InfrastructureError, ProjectError, SettingsError
from ct_service.execution import images, tracking_server
from ct_service.execution.environment import choose, load_images
from ct_service.execution.executor import (
    AttemptRequest,
    AttemptResult,
    Heartbeat,
    failure_reason,
)
from ct_service.execution.exit_status import outside_signal
from ct_service.execution.pushed_files import copy_project
from ct_service.execution.training_account import TrainingAccount
from ct_service.project import load_project
from ct_service.settings import Settings

RUN_ID = re.compile(r"[0-9a-f]{32}")
# Which tracking store a container's run is recorded in: the watchdog of another
# store (another deployment, someone's embedded runs on the same engine) leaves it be.
STORE_LABEL = "ct-service.store"
# MLflow's credentials, handed to containers through the API when the worker has them.
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
WORKDIR = "/mlflow/projects/code"  # where the code sits in the container, as with MLflow
RUN_DOCKERFILE = ".ct-run.Dockerfile"


def container_name(run_id: str) -> str:
    return f"ct-{run_id}"


def remove_container(run_id: str) -> bool:
    """Stop and remove a run's container on this machine's engine, if it is there.
    A worker that dies leaves its container running (killing `docker run` does not
    stop it): the watchdog removes it before resuming the run elsewhere."""
    try:
        docker.from_env(timeout=10).containers.get(container_name(run_id)).remove(force=True)
    except NotFound:
        return False
    return True


def store_label(tracking_uri: str) -> str:
    """The STORE_LABEL value of a store: a digest of its URI without credentials."""
    parts = urlsplit(tracking_uri)
    netloc = parts.netloc.rpartition("@")[2]
    plain = urlunsplit(parts._replace(netloc=netloc))
    return hashlib.sha256(plain.encode()).hexdigest()[:16]


def remove_orphaned_containers(is_running: Callable[[str], bool], store: str) -> list[str]:
    """Containers `ct-<run id>` of this store (STORE_LABEL `store`) whose run is no
    longer running: stopped and removed."""
    removed = []
    found = docker.from_env(timeout=10).containers.list(
        all=True, filters={"name": "ct-", "label": f"{STORE_LABEL}={store}"}
    )
    for container in found:
        run_id = container.name.removeprefix("ct-")
        if RUN_ID.fullmatch(run_id) and not is_running(run_id):
            container.remove(force=True)
            removed.append(container.name)
    return removed


def engine() -> docker.DockerClient:
    """A client of the Docker engine that answers; else an infrastructure error (it
    is retried: an engine may be restarting) that says where it looked."""
    address = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env()
        client.ping()
    except DockerException:
        raise InfrastructureError(
            f"no Docker engine answers at {address}: start one, point DOCKER_HOST at it, "
            "or set CT_EXECUTION=local or auto"
        ) from None
    return client


def engine_answers() -> bool:
    try:
        return bool(docker.from_env(timeout=5).ping())
    except Exception:
        return False


def for_settings(settings: Settings) -> DockerExecutor:
    """Containers log to CT_CONTAINER_TRACKING_URI, else to the tracking server, else to
    a local server this process starts on the store (over the host network)."""
    tracking_uri = settings.docker.tracking_uri
    if not tracking_uri and settings.tracking_uri.startswith(("http://", "https://")):
        tracking_uri = settings.tracking_uri
    if not tracking_uri:
        tracking_uri = tracking_server.url_for(settings)
        if not settings.docker.network:
            settings = replace(settings, docker=replace(settings.docker, network="host"))
    return DockerExecutor(settings, tracking_uri)


def _training_account(settings: Settings) -> TrainingAccount | None:
    """The account containers log with, on a tracking server that checks accounts."""
    docker_settings = settings.docker
    if not docker_settings.training_account:
        return None
    if not settings.tracking_uri.startswith(("http://", "https://")):
        raise SettingsError(
            "CT_TRAINING_TRACKING_USERNAME: a training account needs a tracking server "
            "(CT_TRACKING_URI=http://...) that checks accounts"
        )
    return TrainingAccount(
        settings.tracking_uri, docker_settings.training_username, docker_settings.training_password
    )


@dataclass(frozen=True)
class Prepared:
    """What prepare() readied for run(): the per-run image and how to start it."""

    image: str
    command: str
    volumes: tuple[str, ...]  # "host:container:mode"


class DockerExecutor:
    name = "docker"

    def __init__(
        self,
        settings: Settings,
        tracking_uri: str,
        poll_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self.client = engine()
        self.tracking_uri = tracking_uri  # as the containers reach it
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._prepared: dict[str, Prepared] = {}
        self.training_account = _training_account(settings)

    def prepare(self, request: AttemptRequest) -> tuple[AttemptRequest, dict[str, str]]:
        folder = Path(request.project_uri)
        environment = choose(folder, load_images(self.settings.docker.environments_file))
        project = load_project(folder)
        if self.training_account:
            self.training_account.allow(request.experiment_id)
        image = images.ensure(self.client, environment, project.name, self.settings.docker)
        volumes = data_volumes(request, self.settings.docker.data_dirs)
        volumes += self._artifact_volumes(request)
        copy = self._work_copy(request.run_id)
        shutil.rmtree(copy, ignore_errors=True)
        copy_project(folder, copy, shutil.ignore_patterns(".git", "mlruns", "__pycache__"))
        self._build_run_image(copy, image.tag, request.run_id)
        self._prepared[request.run_id] = Prepared(
            _run_image(request.run_id), project.command_line(request.parameters), tuple(volumes)
        )
        tags = {
            run_tags.ENVIRONMENT: environment.reason,
            run_tags.ENVIRONMENT_IMAGE: image.tag,
            run_tags.ENVIRONMENT_IMAGE_ID: image.id,
            run_tags.ENVIRONMENT_BUILT: "true" if image.built else "false",
            run_tags.CONTAINER: container_name(request.run_id),
        }
        return replace(request, project_uri=str(copy)), tags

    def run(self, request: AttemptRequest, heartbeat: Heartbeat = lambda: None) -> AttemptResult:
        prepared = self._prepared[request.run_id]
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(request.log_path, "ab") as log:
            log.write(self._describe(request, prepared).encode() + b"\n")
            log.flush()
            container = self.client.containers.run(
                detach=True, **self.container_options(request, prepared)
            )
            _running[container.id] = self
            copier = threading.Thread(target=_copy_logs, args=(container, log), daemon=True)
            copier.start()
            try:
                ended = self._wait(container, request, heartbeat)
                if ended is None:
                    code = int(container.wait(timeout=60).get("StatusCode", 1))
                    oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
            except NotFound:  # removed from outside, as a killed one: resumed
                ended = AttemptResult(False, "the container was removed from outside", True)
            finally:
                _running.pop(container.id, None)
            if ended is not None:  # stopped from here (timed out, taken over, hopeless)
                self.stop(request)
                copier.join(timeout=10)
                return ended
            copier.join(timeout=30)
        self.stop(request)
        if code == 0:
            return AttemptResult(True)
        killer = "SIGKILL" if oom else outside_signal(code)
        if killer:
            why = " (out of memory)" if oom else ""
            return AttemptResult(
                False, f"the container was killed by {killer}{why}", interrupted=True
            )
        return AttemptResult(False, failure_reason(request.log_path, 0))

    def container_options(self, request: AttemptRequest, prepared: Prepared) -> dict[str, Any]:
        """docker.containers.run() arguments: nothing here goes through a shell."""
        settings = self.settings.docker
        environment = {
            "MLFLOW_RUN_ID": request.run_id,
            "MLFLOW_EXPERIMENT_ID": request.experiment_id,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            # artifacts through the tracking server, never presigned URLs of its store
            "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
            "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
            "PYTHONUNBUFFERED": "1",
            **self._credentials(),
            **{n: os.environ[n] for n in self.settings.training_env if n in os.environ},
        }
        options: dict[str, Any] = {
            "image": prepared.image,
            "command": ["sh", "-c", prepared.command],  # the project's own command, inside
            "name": container_name(request.run_id),
            "environment": environment,
            "volumes": [volume for volume in prepared.volumes],
            "working_dir": WORKDIR,
            "labels": {STORE_LABEL: store_label(self.settings.tracking_uri)},
        }
        if settings.network == "host":
            options["network_mode"] = "host"
        elif settings.network:
            options["network"] = settings.network
        if settings.cpus:
            options["nano_cpus"] = int(float(settings.cpus) * 1e9)
        if settings.memory:
            options["mem_limit"] = settings.memory
        if settings.gpus:
            count = -1 if settings.gpus == "all" else int(settings.gpus)
            options["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
        return options

    def _credentials(self) -> dict[str, str]:
        """The training account's, when one is set; else the worker's own."""
        if self.training_account:
            return self.training_account.credentials()
        return {name: os.environ[name] for name in CREDENTIALS if os.environ.get(name)}

    def stop(self, request: AttemptRequest) -> None:
        """Remove the attempt's container (stopping it if it runs), its per-run image
        and its work copy; each may be gone already."""
        remove_container(request.run_id)
        try:
            self.client.images.remove(_run_image(request.run_id), force=True)
        except NotFound:
            pass
        except APIError as error:
            if error.status_code != 409:  # 409: still in use by a container being removed
                raise
        shutil.rmtree(self._work_copy(request.run_id), ignore_errors=True)

    def _wait(
        self, container: Container, request: AttemptRequest, heartbeat: Heartbeat
    ) -> AttemptResult | None:
        """Until the container exits (None); or the result of stopping it here."""
        deadline = self.clock() + request.timeout_seconds
        while True:
            container.reload()
            if container.status in ("exited", "dead"):
                return None
            if self.clock() > deadline:
                return AttemptResult(
                    False, f"timed out after {request.timeout_seconds:.0f} s and was killed"
                )
            halt = heartbeat()
            if halt is not None:
                return AttemptResult(False, halt.reason, interrupted=halt.interrupted)
            time.sleep(self.poll_seconds)

    def _build_run_image(self, copy: Path, base: str, run_id: str) -> None:
        """The environment image plus the project's code (as MLflow's build_image)."""
        (copy / RUN_DOCKERFILE).write_text(f"FROM {base}\nCOPY . {WORKDIR}/\nWORKDIR {WORKDIR}\n")
        try:
            self.client.images.build(
                path=str(copy), dockerfile=RUN_DOCKERFILE, tag=_run_image(run_id), rm=True
            )
        except BuildError as error:
            raise ProjectError(f"adding the code to {base} failed: {error.msg}"[:600]) from None

    def _artifact_volumes(self, request: AttemptRequest) -> list[str]:
        """With a local artifact store the container writes the run's artifacts into
        its folder (mounted read-write at the same path), and a resumed run reads the
        checkpoint of the run it continues (read-only); a served store is reached
        over HTTP and needs no mount."""
        client = MlflowClient(self.settings.tracking_uri, self.settings.registry_uri)
        volumes = []
        own = client.get_run(request.run_id).info.artifact_uri
        if own.startswith("file:"):
            folder = local_file_uri_to_path(own)
            os.makedirs(folder, exist_ok=True)
            volumes.append(f"{folder}:{folder}:rw")
        resume_from = request.parameters.get(run_tags.RESUME_FROM_PARAM, "")
        if resume_from:
            earlier = client.get_run(resume_from).info.artifact_uri
            if earlier.startswith("file:"):
                folder = local_file_uri_to_path(earlier)
                volumes.append(f"{folder}:{folder}:ro")
        return volumes

    def _describe(self, request: AttemptRequest, prepared: Prepared) -> str:
        """One line for the attempt's log: what runs where (no environment values)."""
        settings = self.settings.docker
        limits = [
            f"{what} {value}"
            for what, value in (
                ("cpus", settings.cpus),
                ("memory", settings.memory),
                ("gpus", settings.gpus),
                ("network", settings.network),
            )
            if value
        ]
        mounts = ", ".join(prepared.volumes) or "none"
        return (
            f"ct-service: container {container_name(request.run_id)} from {prepared.image}"
            f" ({', '.join(limits) or 'no limits'}); mounts: {mounts}; command: "
            f"{prepared.command}"
        )

    def _work_copy(self, run_id: str) -> Path:
        return self.settings.home / "work" / "containers" / run_id


_running: dict[str, DockerExecutor] = {}


def stop_running_containers() -> int:
    """Remove every container this process started (its owner is going away)."""
    stopped = 0
    for container_id in list(_running):
        try:
            docker.from_env(timeout=10).containers.get(container_id).remove(force=True)
            stopped += 1
        except NotFound:
            pass
    return stopped


def _copy_logs(container: Container, log: Any) -> None:
    try:
        for chunk in container.logs(stream=True, follow=True):
            log.write(chunk)
            log.flush()
    except Exception:  # the container went away; what was copied stays
        pass


def _run_image(run_id: str) -> str:
    return f"ct-run-{run_id}"


def data_volumes(request: AttemptRequest, data_dirs: tuple[str, ...]) -> list[str]:
    """Parameters naming an existing absolute path under the operator's data roots
    (CT_DATA_DIRS), after following symlinks: that file or folder is mounted read-only
    at the path the parameter names, so it means the same inside the container. A
    parameter naming any other existing host path (a default of the pushed MLproject,
    or -P: `/`, the Docker socket, /etc, a device) fails the attempt; nothing of it is
    mounted."""
    volumes = []
    for name, value in sorted(request.parameters.items()):
        if not os.path.isabs(value) or not os.path.lexists(value):
            continue
        real = os.path.realpath(value)
        inside = any(real == root or real.startswith(root + os.sep) for root in data_dirs)
        kind = os.stat(real).st_mode if os.path.exists(real) else 0
        if not inside or not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
            roots = ", ".join(data_dirs) or "none configured"
            raise ProjectError(
                f"parameter {name}={value} names a host path outside the data roots "
                f"(CT_DATA_DIRS: {roots}) or not a plain file or folder; it is not mounted"
            )
        volumes.append(f"{real}:{value}:ro")
    return sorted(set(volumes))
