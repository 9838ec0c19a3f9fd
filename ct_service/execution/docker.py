"""Runs an attempt in a Docker container, started through the Docker SDK.

The environment is chosen from the project's code (environment.py) and built or
reused (images.py); the container is created from it, the project's code is put
into it (an archive in which no symlink leaves the project), then it starts: no
per-run image is built. Or a spare container of that image, started before the
attempt was known, takes it (spare_containers.py). The container is started with
the engine's API, not a shell command line: no operator or project value is
interpreted by a shell, and credentials reach it as environment entries of the API
call (a spare's: through its stdin), never on a logged line. Each container is named
`ct-<run id>`; only parameters naming paths under the operator's data roots are
mounted, read-only, at the same path; containers log to MLflow over HTTP. Its exit
status decides: 128+n for an outside signal (an OOM kill, `docker kill`) is an
interruption, anything else non-zero a failure of the code. Containers are removed
afterwards, and the models they logged to a local artifact store moved into it
(container_models.py).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import docker
from docker.errors import DockerException, NotFound
from docker.models.containers import Container
from mlflow import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path

from ct_service import run_tags
from ct_service.exceptions import InfrastructureError, ProjectError, SettingsError
from ct_service.execution import images, tracking_server, training_network
from ct_service.execution.container_models import collect, models_folder
from ct_service.execution.containers import (
    STORE_LABEL,
    WORKDIR,
    base_environment,
    base_options,
    hand_to,
    network,
    training_user,
)
from ct_service.execution.environment import choose, load_images
from ct_service.execution.executor import (
    AttemptRequest,
    AttemptResult,
    Heartbeat,
    failure_reason,
)
from ct_service.execution.exit_status import outside_signal
from ct_service.execution.gateway import Gateway, gateway_for
from ct_service.execution.pushed_files import archive_project
from ct_service.execution.spare_containers import (
    SPARE_CONTAINERS,
    SPARE_PREFIX,
    Spare,
    can_run,
    hand_over,
    image_environment,
    link_artifacts,
    release,
)
from ct_service.execution.spares import python_script
from ct_service.execution.training_account import TrainingAccount
from ct_service.project import load_project
from ct_service.settings import Settings

log = logging.getLogger(__name__)

RUN_ID = re.compile(r"[0-9a-f]{32}")
LEFT_OUT = (".git", "mlruns", "__pycache__")  # of the project's code, in a container


def container_name(run_id: str) -> str:
    return f"ct-{run_id}"


# How long a call that stops or removes a container may take: force-removing a running
# container took over 10 s on this 2-core machine under load, and a call that gives up
# leaves the container behind (and, at an attempt's end, the models it logged unmoved).
REMOVE_SECONDS = 300


def _remover() -> docker.DockerClient:
    return docker.from_env(timeout=REMOVE_SECONDS)


def remove_container(run_id: str) -> bool:
    """Stop and remove a run's container on this machine's engine, if it is there.
    A worker that dies leaves its container running (killing `docker run` does not
    stop it): the watchdog removes it before resuming the run elsewhere."""
    try:
        _remover().containers.get(container_name(run_id)).remove(force=True)
    except NotFound:
        return False
    return True


def remove_orphaned_containers(is_running: Callable[[str], bool], store: str) -> list[str]:
    """Containers `ct-<run id>` of this store (STORE_LABEL `store`) whose run is no
    longer running, and spare containers of it that exited unused: stopped and
    removed."""
    removed = []
    found = _remover().containers.list(
        all=True, filters={"name": "ct-", "label": f"{STORE_LABEL}={store}"}
    )
    for container in found:
        if container.name.startswith(SPARE_PREFIX):  # idle too long, its owner gone
            if container.status == "exited":
                container.remove(force=True)
                removed.append(container.name)
            continue
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
    """Containers log through the worker's gateway, which forwards to the tracking
    server, else to a local server this process starts on the store."""
    return DockerExecutor(settings, upstream_tracking_uri(settings))


def upstream_tracking_uri(settings: Settings) -> str:
    """Where the gateway forwards training's calls: the tracking server, else a local
    server on the store (started on first use, on 127.0.0.1)."""
    if tracking_server.needed(settings):
        return tracking_server.url_for(settings)
    return settings.tracking_uri


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
    """What prepare() readied for run(): the environment image, the project's code
    and how to start it."""

    image: str
    code: IO[bytes]  # an archive that unpacks at WORKDIR
    command: str
    volumes: tuple[str, ...]  # "host:container:mode"
    project: Path
    artifacts: str  # the run's artifact folder on this host ("" with a served store)
    models: str  # where its experiment's logged models go on this host (likewise)
    user: str  # who the container runs as (containers.training_user)
    # a spare container can run it: a plain `python script.py ...`, every data path
    # mounted at its real path and under the data roots, no other run's folder mounted
    spare_can_run_it: bool


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
        self.network = network(settings)
        training_network.ensure(self.client, self.network)
        self.tracking_uri = tracking_uri  # where the gateway forwards to
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._prepared: dict[str, Prepared] = {}
        self._spares: dict[str, Spare] = {}  # the attempts spare containers took
        self.training_account = _training_account(settings)
        self._gateway: Gateway | None = None
        self._tokens: dict[str, str] = {}  # run id -> its gateway token, while it runs
        self._refused: dict[str, list[str]] = {}  # run id -> its refused calls, once ended

    def prepare(self, request: AttemptRequest) -> tuple[AttemptRequest, dict[str, str]]:
        folder = Path(request.project_uri)
        environment = choose(folder, load_images(self.settings.docker.environments_file))
        project = load_project(folder)
        if self.training_account:
            self.training_account.allow(request.experiment_id)
        image = images.ensure(self.client, environment, project.name, self.settings.docker)
        data = data_volumes(request, (*self.settings.docker.data_dirs, *request.data_roots))
        own, continued = self._artifact_folders(request)
        continued_run = request.parameters.get(run_tags.RESUME_FROM_PARAM, "")
        models = models_folder(self._mlflow(), request.experiment_id) if own else ""
        staging = self._staging(request.run_id)
        if models:
            staging.mkdir(parents=True, exist_ok=True)
        code = self._code_folder(request.run_id)
        code.mkdir(parents=True, exist_ok=True)
        user = training_user(self.client.images.get(image.tag).attrs["Config"].get("User") or "")
        for writable in (own, str(staging) if models else "", str(code)):
            if writable:
                hand_to(Path(writable), user)
        volumes = (
            data
            + [f"{code}:{WORKDIR}:rw"]
            + [f"{own}:{own}:rw"] * bool(own)
            + [f"{continued}:{continued}:ro"] * bool(continued)
            + [f"{staging}:{models}:rw"] * bool(models)
        )
        command = project.command_line(request.parameters, request.entry_point)
        self._tokens[request.run_id] = self._gateway_for().grant(
            request.run_id, request.experiment_id, {continued_run} - {""}
        )
        self._prepared[request.run_id] = Prepared(
            image.tag,
            archive_project(folder, LEFT_OUT),
            command,
            tuple(volumes),
            folder,
            own,
            models,
            user,
            # a spare mounts the data roots (CT_DATA_DIRS), not a pinned data version's folder
            spare_can_run_it=can_run(command, data, continued) and not request.data_roots,
        )
        tags = {
            run_tags.ENVIRONMENT: environment.reason,
            run_tags.ENVIRONMENT_IMAGE: image.tag,
            run_tags.ENVIRONMENT_IMAGE_ID: image.id,
            run_tags.ENVIRONMENT_BUILT: "true" if image.built else "false",
            run_tags.CONTAINER: container_name(request.run_id),
        }
        return request, tags

    def run(self, request: AttemptRequest, heartbeat: Heartbeat = lambda: None) -> AttemptResult:
        result = self._run(request, heartbeat)
        refused = self._refused.pop(request.run_id, [])
        if not refused:
            return result
        first = refused[0]
        more = f"{len(refused)} calls" if len(refused) > 1 else "1 call"
        return replace(result, refused=f"{more} outside its own run refused; first: {first}")

    def _run(self, request: AttemptRequest, heartbeat: Heartbeat) -> AttemptResult:
        prepared = self._prepared[request.run_id]
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(request.log_path, "ab") as log:
            spare = self._spare_for(prepared)
            log.write(self._describe(request, prepared, spare).encode() + b"\n")
            log.flush()
            container = self._hand_over(spare, request, prepared) if spare else None
            container = container or self._start(request, prepared)
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

    def _spare_for(self, prepared: Prepared) -> Spare | None:
        if not prepared.spare_can_run_it:
            return None
        spare = SPARE_CONTAINERS.take(
            self.settings, prepared.image, prepared.project, prepared.command
        )
        if spare is not None and not spare.shadows(prepared.artifacts, prepared.models):
            release(spare, "")  # the run's folders lie outside the root it shadows
            return None
        return spare

    def _hand_over(
        self, spare: Spare, request: AttemptRequest, prepared: Prepared
    ) -> Container | None:
        """The spare, running the attempt; None (and the spare removed) when it could
        not take it, for a new container to run it instead."""
        words = python_script(prepared.command) or []
        links = {}
        if prepared.artifacts:
            links[prepared.artifacts] = str(spare.folder / "artifacts")
        if prepared.models:
            links[prepared.models] = str(spare.folder / "models")
        self._spares[request.run_id] = spare
        _running[spare.container.id] = self
        try:
            (spare.folder / "models").mkdir(exist_ok=True)
            hand_to(spare.folder / "models", spare.user)
            if prepared.artifacts:
                link_artifacts(prepared.artifacts, spare)
            env = image_environment(spare) | self.run_environment(request)
            hand_over(
                spare,
                container_name(request.run_id),
                prepared.code,
                {
                    "argv": words[1:],
                    "work_dir": WORKDIR,
                    "env": env,
                    "links": links,
                    "command": prepared.command,
                },
            )
        except (DockerException, OSError) as error:
            log.warning("the spare container could not take %s: %s", request.run_id, error)
            _running.pop(spare.container.id, None)
            self._spares.pop(request.run_id, None)
            release(spare, prepared.artifacts)
            prepared.code.seek(0)
            return None
        return spare.container

    def _start(self, request: AttemptRequest, prepared: Prepared) -> Container:
        """Create the container, put the project's code in, start it; a step that
        fails leaves nothing of it behind."""
        container = self.client.containers.create(**self.container_options(request, prepared))
        _running[container.id] = self
        try:
            container.put_archive(WORKDIR, prepared.code)
            container.start()
        except BaseException:
            _running.pop(container.id, None)
            self.stop(request)
            raise
        return container

    def container_options(self, request: AttemptRequest, prepared: Prepared) -> dict[str, Any]:
        """docker.containers.create() arguments: nothing here goes through a shell."""
        return {
            **base_options(self.settings),
            "image": prepared.image,
            "command": ["sh", "-c", prepared.command],  # the project's own command, inside
            "name": container_name(request.run_id),
            "user": prepared.user,
            "environment": {
                **base_environment(self.settings),
                **self.run_environment(request),
            },
            "volumes": list(prepared.volumes),
        }

    def run_environment(self, request: AttemptRequest) -> dict[str, str]:
        """What a container's environment says of its run: where it logs (the
        gateway), its ids and its token there; never a tracking server credential."""
        return {
            "MLFLOW_TRACKING_URI": self._gateway_for().url,
            "MLFLOW_TRACKING_TOKEN": self._tokens[request.run_id],
            "MLFLOW_RUN_ID": request.run_id,
            "MLFLOW_EXPERIMENT_ID": request.experiment_id,
        }

    def _gateway_for(self) -> Gateway:
        """The gateway containers of this network log through (started on first use),
        forwarding with the training account when one is set, else the worker's own."""
        if self._gateway is None:
            address = training_network.gateway_address(self.client, self.network)
            credentials = self.training_account.credentials() if self.training_account else {}
            self._gateway = gateway_for(self.tracking_uri, address, credentials)
        return self._gateway

    def stop(self, request: AttemptRequest) -> None:
        """Remove the attempt's container (stopping it if it runs; it may be gone
        already), then move the models it logged into the store."""
        remove_container(request.run_id)
        token = self._tokens.pop(request.run_id, None)
        if token:
            self._refused[request.run_id] = self._gateway_for().revoke(token)
        prepared = self._prepared.pop(request.run_id, None)
        spare = self._spares.pop(request.run_id, None)
        if prepared is None:
            return
        prepared.code.close()
        shutil.rmtree(self._code_folder(request.run_id), ignore_errors=True)
        if spare:
            release(spare, prepared.artifacts, keep=True)  # its artifacts back in place
        staging = spare.folder / "models" if spare else self._staging(request.run_id)
        if prepared.models:
            collect(self._mlflow(), staging, prepared.models, request.run_id)
        shutil.rmtree(spare.folder if spare else staging, ignore_errors=True)

    def _staging(self, run_id: str) -> Path:
        """The folder a new container's logged models are written to (container_models.py)."""
        return self.settings.home / "work" / "models" / run_id

    def _code_folder(self, run_id: str) -> Path:
        """Mounted at the working folder of a new container (its root file system is
        read-only): the project's code goes there, and what training writes beside it."""
        return self.settings.home / "work" / "code" / run_id

    def _mlflow(self) -> MlflowClient:
        return MlflowClient(self.settings.tracking_uri, self.settings.registry_uri)

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

    def _artifact_folders(self, request: AttemptRequest) -> tuple[str, str]:
        """With a local artifact store the container writes the run's artifacts into
        its folder (mounted read-write at the same path), and a resumed run reads the
        checkpoint of the run it continues (read-only): those two folders, "" where
        the store is served (reached over HTTP, no mount)."""
        client = self._mlflow()
        own = client.get_run(request.run_id).info.artifact_uri
        folder = ""
        if own.startswith("file:"):
            folder = local_file_uri_to_path(own)
            os.makedirs(folder, exist_ok=True)
        continued = ""
        resume_from = request.parameters.get(run_tags.RESUME_FROM_PARAM, "")
        if resume_from:
            earlier = client.get_run(resume_from).info.artifact_uri
            if earlier.startswith("file:"):
                continued = local_file_uri_to_path(earlier)
        return folder, continued

    def _describe(self, request: AttemptRequest, prepared: Prepared, spare: Spare | None) -> str:
        """One line for the attempt's log: what runs where (no environment values)."""
        settings = self.settings.docker
        limits = [
            f"{what} {value}"
            for what, value in (
                ("cpus", settings.cpus),
                ("memory", settings.memory),
                ("gpus", settings.gpus),
                ("network", self.network),
            )
            if value
        ]
        volumes = spare.volumes if spare else prepared.volumes
        mounts = ", ".join(volumes) or "none"
        ahead = " (a spare, started ahead)" if spare else ""
        return (
            f"ct-service: container {container_name(request.run_id)}{ahead} from {prepared.image}"
            f" ({', '.join(limits) or 'no limits'}); mounts: {mounts}; command: "
            f"{prepared.command}"
        )


_running: dict[str, DockerExecutor] = {}


def stop_running_containers() -> int:
    """Remove every container this process started (its owner is going away)."""
    stopped = 0
    for container_id in list(_running):
        try:
            _remover().containers.get(container_id).remove(force=True)
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
