"""A container started before its attempt is known, as spares.py keeps a launcher for
local attempts: the embedded `ct-service run` creates one from the project's cached
environment image first thing, and it imports the libraries the project's code
imports (warm_launcher.py, put into it) while the pipeline's and the attempt's runs
are created. The Docker executor then hands it the attempt: it is renamed
`ct-<run id>`, the project's code is put into it, and its request (the run's ids
and credentials among its environment) goes to its stdin, never to a command line
or the container's configuration.

What a container can reach is fixed when it is created, so a spare gets no more than
an attempt container of the same settings could: the operator's data roots
(CT_DATA_DIRS) read-only at their own paths (any attempt's parameters may name a
path under them), an empty folder of its own read-write (its run's artifact folder
and its experiment's models folder become links into it inside, the run's artifact
folder on the host too until the attempt ends: container_models.py), the same
network, limits and store label. An attempt that continues another run (whose
checkpoint folder would be mounted), names a data path other than by its real path,
or whose command is not a plain `python script.py ...` starts a new container as
before. A spare nobody takes is removed when the process that started it exits; one
left by a process that died exits after CT_WARM_LAUNCHER_SECONDS and the watchdog
removes it.
"""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import docker
from docker.errors import DockerException, NotFound
from docker.models.containers import Container

from ct_service.exceptions import CtError
from ct_service.execution import images, training_network
from ct_service.execution.containers import (
    WORKDIR,
    base_environment,
    base_options,
    hand_to,
    training_user,
)
from ct_service.execution.environment import choose, load_images
from ct_service.execution.spares import modules_to_preload, python_script
from ct_service.project import load_project
from ct_service.settings import Settings

log = logging.getLogger(__name__)

SPARE_PREFIX = "ct-spare-"
LAUNCHER_HOME = "/opt/ct-service"  # the launcher's files, inside a spare
PACKAGE = Path(__file__).resolve().parent.parent
LAUNCHER_FILES = (
    "__init__.py",
    "quick_exit.py",
    "execution/__init__.py",
    "execution/warm_launcher.py",
)


@dataclass(frozen=True)
class Spare:
    container: Container
    image: str  # the environment image's tag
    interpreter: str  # the command's first word, `python` or `python3`, that it runs
    modules: tuple[str, ...]
    options: dict[str, Any]  # base_options() it was created with
    data_dirs: tuple[str, ...]
    # A host folder mounted read-write at the same path: its run's artifacts go to
    # its `artifacts`, the models the run logs to its `models` (container_models.py).
    folder: Path
    volumes: tuple[str, ...]  # "host:container:mode", those two
    user: str  # who it runs as (containers.training_user)
    artifact_root: str  # the store's artifact folder it shadows ("" with a served store)

    def shadows(self, *folders: str) -> bool:
        """Whether each of these host folders ("" for none) lies in the artifact root
        it shadows, so the attempt's links to its own folder can be made there."""
        root = self.artifact_root
        return all(
            not f or (bool(root) and (f == root or f.startswith(root.rstrip("/") + "/")))
            for f in folders
        )

    @property
    def code_folder(self) -> Path:
        """Mounted at the working folder (the root file system is read-only): the
        attempt's code goes there."""
        return self.folder.with_name(self.folder.name + "-code")

    @property
    def artifacts_shadow(self) -> Path:
        """Mounted over the store's artifact root (an empty folder of its own): the
        attempt's links to the spare's folder are made inside it (the root file system
        is read-only), and nothing of other runs is there to see."""
        return self.folder.with_name(self.folder.name + "-artifacts")

    @property
    def launcher_folder(self) -> Path:
        """Mounted read-only at LAUNCHER_HOME: the launcher's files."""
        return self.folder.with_name(self.folder.name + "-launcher")


class SpareContainers:
    """This process's spare container: at most one, started in the background."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: Spare | None = None
        self._starting: threading.Thread | None = None

    def start(self, settings: Settings, project: Path) -> None:
        """Start a spare for `project`'s next attempt without waiting for it."""
        thread = threading.Thread(target=self._start, args=(settings, project), daemon=True)
        with self._lock:
            self._starting = thread
        thread.start()

    def take(self, settings: Settings, image: str, project: Path, command: str) -> Spare | None:
        """The spare, if it was started for this image, these settings, these modules
        and this command's interpreter and still waits; nobody else gets it."""
        with self._lock:
            starting = self._starting
        if starting is not None:
            starting.join()
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is None:
            return None
        words = python_script(command)
        fits = (
            words is not None
            and spare.interpreter == words[0]
            and spare.image == image
            and spare.options == base_options(settings)
            and spare.data_dirs == settings.docker.data_dirs
            and spare.modules == modules_to_preload(project)
        )
        try:
            spare.container.reload()
            waiting = spare.container.status == "running"
        except NotFound:
            waiting = False
        if fits and waiting:
            return spare
        discard(spare)
        return None

    def discard(self) -> None:
        """Remove the spare nobody took (this process is going away)."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            discard(spare)

    def _start(self, settings: Settings, project: Path) -> None:
        try:
            spare = create(settings, project)
        except (CtError, DockerException, OSError, ValueError) as error:
            log.debug("no spare container for %s: %s", project, error)
            return
        if spare is not None:
            with self._lock:
                self._spare = spare


SPARE_CONTAINERS = SpareContainers()  # this process's
atexit.register(SPARE_CONTAINERS.discard)


def local_artifact_root(settings: Settings) -> str:
    """The store's artifact root when it is a folder of this host, else ""."""
    root = settings.artifact_root
    if root.startswith("file:"):
        return unquote(urlsplit(root).path)
    return root if root.startswith("/") else ""


def can_run(command: str, data_volumes: list[str], continued: str) -> bool:
    """Whether a spare can run an attempt: its command is a plain `python script.py
    ...`, it mounts each data path at its real path (a spare has the data roots at
    theirs), and it reads no other run's folder (`continued`: "" when none)."""
    return (
        python_script(command) is not None
        and not continued
        and all(_at_own_path(volume) for volume in data_volumes)
    )


def _at_own_path(volume: str) -> bool:
    """`volume` is "path:path:ro"."""
    body = volume.removesuffix(":ro")
    half = len(body) // 2
    return (
        volume.endswith(":ro") and body[half : half + 1] == ":" and body[:half] == body[half + 1 :]
    )


def warm_up(settings: Settings, project: Path) -> None:
    """Have a container of the project's environment import its libraries while its
    pipeline is created, when its first attempt will run in Docker here."""
    if settings.execution == "docker" and settings.warm_launcher_seconds > 0:
        SPARE_CONTAINERS.start(settings, project)


def create(settings: Settings, project: Path) -> Spare | None:
    """A started spare of the project's environment image; None when that image is
    not on the engine yet (the first attempt builds it)."""
    loaded = load_project(project)
    interpreter = loaded.command.split(maxsplit=1)[0] if loaded.command.strip() else ""
    if not interpreter.startswith("python"):
        return None
    client = docker.from_env(timeout=30)
    environment = choose(project, load_images(settings.docker.environments_file))
    image = images.cached(client, environment, loaded.name, settings.docker)
    if image is None:
        return None
    token = uuid.uuid4().hex[:12]
    folder = settings.home / "work" / "spares" / token
    folder.mkdir(parents=True)
    modules = modules_to_preload(project)
    options = base_options(settings)
    training_network.ensure(client, options["network"])
    volumes = (
        *(f"{root}:{root}:ro" for root in settings.docker.data_dirs),
        f"{folder}:{folder}:rw",
    )
    code, launcher = folder.with_name(token + "-code"), folder.with_name(token + "-launcher")
    code.mkdir()
    write_launcher(launcher)
    user = training_user(client.images.get(image.tag).attrs["Config"].get("User") or "")
    shadow = folder.with_name(token + "-artifacts")
    shadow.mkdir()
    for writable in (folder, code, shadow):
        hand_to(writable, user)
    artifact_root = local_artifact_root(settings)
    shadows = [f"{shadow}:{artifact_root}:rw"] if artifact_root else []
    command = [interpreter, "-m", "ct_service.execution.warm_launcher"]
    container = client.containers.create(
        **{**options, "working_dir": LAUNCHER_HOME},  # the launcher runs from there
        image=image.tag,
        command=[*command, f"{settings.warm_launcher_seconds:g}", *modules],
        name=f"{SPARE_PREFIX}{token}",
        user=user,
        environment=base_environment(settings),
        volumes=[*volumes, *shadows, f"{code}:{WORKDIR}:rw", f"{launcher}:{LAUNCHER_HOME}:ro"],
        stdin_open=True,
    )
    spare = Spare(
        container,
        image.tag,
        interpreter,
        modules,
        options,
        settings.docker.data_dirs,
        folder,
        volumes,
        user,
        artifact_root,
    )
    try:
        container.start()
    except BaseException:
        discard(spare)
        raise
    return spare


def hand_over(spare: Spare, name: str, code: IO[bytes], request: dict[str, object]) -> None:
    """Make the spare the attempt's container: its name, its code at the working
    folder, then its request (which starts the script)."""
    spare.container.rename(name)
    spare.container.put_archive(WORKDIR, code)
    socket = spare.container.attach_socket(params={"stdin": 1, "stream": 1})
    try:
        getattr(socket, "_sock", socket).sendall(json.dumps(request).encode() + b"\n")
    finally:
        socket.close()


def image_environment(spare: Spare) -> dict[str, str]:
    """The environment the spare's process started with (its image's and ours)."""
    spare.container.reload()
    entries = spare.container.attrs.get("Config", {}).get("Env") or []
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def link_artifacts(artifacts: str, spare: Spare) -> None:
    """Make the run's artifact folder on the host a link to the spare's (what is
    there already moves along)."""
    path, linked = Path(artifacts), spare.folder / "artifacts"
    linked.mkdir(exist_ok=True)
    hand_to(linked, spare.user)
    if path.is_dir() and not path.is_symlink():
        for entry in path.iterdir():
            shutil.move(str(entry), linked / entry.name)
        path.rmdir()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(linked, target_is_directory=True)


def release(spare: Spare, artifacts: str, keep: bool = False) -> None:
    """After its attempt: the container removed (nothing writes to the spare's
    folder any more), then the run's artifacts moved back to their own folder
    `artifacts` in place of the link; then the spare's folder removed, unless
    `keep` (what else is in it is the caller's to take)."""
    try:
        spare.container.remove(force=True)
    except NotFound:
        pass
    path = Path(artifacts)
    if artifacts and path.is_symlink():
        path.unlink()
        shutil.move(str(spare.folder / "artifacts"), path)
    shutil.rmtree(spare.code_folder, ignore_errors=True)
    shutil.rmtree(spare.artifacts_shadow, ignore_errors=True)
    shutil.rmtree(spare.launcher_folder, ignore_errors=True)
    if not keep:
        shutil.rmtree(spare.folder, ignore_errors=True)


def discard(spare: Spare) -> None:
    """Remove a spare nobody took."""
    release(spare, "")


def write_launcher(folder: Path) -> None:
    """warm_launcher.py and the little of ct_service it imports, into `folder`
    (mounted read-only at LAUNCHER_HOME; it is run from there with `python -m`)."""
    for name in LAUNCHER_FILES:
        target = folder / "ct_service" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((PACKAGE / name).read_bytes())
