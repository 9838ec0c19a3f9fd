"""Runs an attempt as an MLflow Project run in a Docker container.

The environment is chosen from the project's code (environment.py) and built or
reused (images.py). The service writes that image as `docker_env` into a work copy
of the project (MLflow ignores env_manager when an MLproject declares docker_env, so
the user's MLproject stays runnable locally), and MLflow builds the image plus the
code and runs it. Each container is named `ct-<run id>`; data folders given as
parameters are mounted read-only at the same path; containers log to MLflow over
HTTP. No secret is put on the `docker run` line (MLflow logs it): MLflow's
credentials pass by name only. Containers and per-run images are removed afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import docker
import yaml
from docker.errors import APIError, NotFound
from mlflow import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path

from ct_service import run_tags
from ct_service.exceptions import ProjectError
from ct_service.execution import images, tracking_server
from ct_service.execution.environment import choose, load_images
from ct_service.execution.executor import AttemptRequest
from ct_service.execution.local import LocalExecutor
from ct_service.execution.pushed_files import copy_project
from ct_service.project import load_project
from ct_service.settings import Settings

RUN_ID = re.compile(r"[0-9a-f]{32}")
# Passed into containers by name (`-e NAME`), so their values stay off the command line.
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


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


def remove_orphaned_containers(is_running: Callable[[str], bool]) -> list[str]:
    """Containers `ct-<run id>` whose run is no longer running: stopped and removed."""
    removed = []
    for container in docker.from_env(timeout=10).containers.list(all=True, filters={"name": "ct-"}):
        run_id = container.name.removeprefix("ct-")
        if RUN_ID.fullmatch(run_id) and not is_running(run_id):
            container.remove(force=True)
            removed.append(container.name)
    return removed


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


class DockerExecutor(LocalExecutor):
    name = "docker"

    def __init__(self, settings: Settings, tracking_uri: str, **kwargs: object):
        super().__init__(settings, **kwargs)  # type: ignore[arg-type]
        self.client = docker.from_env()
        self.tracking_uri = tracking_uri  # as the containers reach it

    def prepare(self, request: AttemptRequest) -> tuple[AttemptRequest, dict[str, str]]:
        project = Path(request.project_uri)
        environment = choose(project, load_images(self.settings.docker.environments_file))
        name = load_project(project).name
        image = images.ensure(self.client, environment, name, self.settings.docker)
        copy = self._work_copy(request.run_id)
        volumes = data_volumes(request, self.settings.docker.data_dirs)
        volumes += self._checkpoint_volumes(request)
        _write_work_copy(project, copy, request.run_id, image.tag, volumes)
        tags = {
            run_tags.ENVIRONMENT: environment.reason,
            run_tags.ENVIRONMENT_IMAGE: image.tag,
            run_tags.ENVIRONMENT_IMAGE_ID: image.id,
            run_tags.ENVIRONMENT_BUILT: "true" if image.built else "false",
            run_tags.CONTAINER: container_name(request.run_id),
        }
        return replace(request, project_uri=str(copy)), tags

    def payload(self, request: AttemptRequest) -> dict[str, object]:
        docker = self.settings.docker
        args = {"name": container_name(request.run_id)}
        args.update(
            {
                k: v
                for k, v in (
                    ("network", docker.network),
                    ("cpus", docker.cpus),
                    ("memory", docker.memory),
                    ("gpus", docker.gpus),
                )
                if v
            }
        )
        return {**super().payload(request), "build_image": True, "docker_args": args}

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["MLFLOW_TRACKING_URI"] = self.tracking_uri
        return env

    def stop(self, request: AttemptRequest) -> None:
        """Remove the attempt's container (stopping it if it runs), its per-run image
        and its work copy; each may be gone already."""
        try:
            self.client.containers.get(container_name(request.run_id)).remove(force=True)
        except NotFound:
            pass
        except APIError as error:
            if error.status_code != 409:  # 409: removal already in progress (--rm)
                raise
        try:
            self.client.images.remove(_run_image(request.run_id), force=True)
        except NotFound:
            pass
        shutil.rmtree(self._work_copy(request.run_id), ignore_errors=True)

    def _checkpoint_volumes(self, request: AttemptRequest) -> list[str]:
        """A resumed run reads the checkpoint of the run it continues. MLflow mounts
        only the new run's own artifact folder; a local artifact store must also
        show the old run's, read-only (a served store is reached over HTTP)."""
        resume_from = request.parameters.get(run_tags.RESUME_FROM_PARAM, "")
        if not resume_from:
            return []
        client = MlflowClient(self.settings.tracking_uri, self.settings.registry_uri)
        artifact_uri = client.get_run(resume_from).info.artifact_uri
        if not artifact_uri.startswith("file:"):
            return []
        folder = local_file_uri_to_path(artifact_uri)
        return [f"{folder}:{folder}:ro"]

    def _work_copy(self, run_id: str) -> Path:
        return self.settings.home / "work" / "containers" / run_id


def _run_image(run_id: str) -> str:
    return f"ct-run-{run_id}"


def _write_work_copy(
    project: Path, copy: Path, run_id: str, image: str, volumes: list[str]
) -> None:
    shutil.rmtree(copy, ignore_errors=True)
    copy_project(project, copy, shutil.ignore_patterns(".git", "mlruns", "__pycache__"))
    spec = yaml.safe_load((copy / "MLproject").read_text()) or {}
    spec["name"] = _run_image(run_id)  # MLflow tags the image it builds with the name
    for other in ("python_env", "conda_env"):  # MLflow allows one environment field
        spec.pop(other, None)
    spec["docker_env"] = {
        "image": image,
        "volumes": volumes,
        "environment": [name for name in CREDENTIALS if os.environ.get(name)],
    }
    (copy / "MLproject").write_text(yaml.safe_dump(spec, sort_keys=False))


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
