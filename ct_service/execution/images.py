"""Environment images: a project's Dockerfile is built once per content and reused;
a project without one gets an image built from the dependencies it declares, on
CT_DOCKER_BASE_IMAGE, the same way.

The tag is `ct-env/<project>:<hash>`, the hash covering the Dockerfile (the project's
or the one written here), the dependency files beside it (requirements*.txt,
python_env.yaml, conda.yaml, or the declared requirements), the BASE_IMAGE argument
and the build CA: an unchanged environment is never rebuilt. An environment image
holds dependencies only; the project's code is added to it for each run. So its
build context is the Dockerfile and those files, never the code or data around them.

The Docker daemon fetches what a Dockerfile names in the host's network, whatever
CT_DOCKER_BUILD_NETWORK says, so nothing a push names is fetched by it from anywhere
but Docker Hub (or the mirror the operator configured for it): a pushed Dockerfile
whose ADD names a URL or git source is refused before the build (dockerfile.py), and
so is a base or COPY --from image, or a docker_env image, that is not on the engine
and names another registry host. A base image's ONBUILD triggers, which run in the
build, are read the same way; one from Docker Hub is pulled first to read them.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, ImageNotFound
from docker.models.images import Image as EngineImage

from ct_service.exceptions import ProjectError
from ct_service.execution.dockerfile import (
    Reference,
    Refusal,
    registry_host,
    review,
    review_triggers,
)
from ct_service.execution.environment import Environment
from ct_service.project_files import read_bytes
from ct_service.settings import DockerSettings

DEPENDENCY_FILES = ("requirements*.txt", "python_env.yaml", "conda.yaml")


@dataclass(frozen=True)
class Image:
    tag: str
    id: str
    built: bool  # False: it was there already


# The image of a project that declares its dependencies and has no Dockerfile; the
# same steps as projects/lenet/Dockerfile.
DECLARED_DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ENV PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PIP_BREAK_SYSTEM_PACKAGES=1
COPY requirements.txt ca.cr[t] /opt/ct/build/
RUN if [ -f /opt/ct/build/ca.crt ]; then export PIP_CERT=/opt/ct/build/ca.crt; fi \\
    && python3 -m pip install -r /opt/ct/build/requirements.txt \\
    && rm -rf /opt/ct/build \\
    && (command -v python >/dev/null || ln -s "$(command -v python3)" /usr/local/bin/python)
WORKDIR /mlflow/projects/code
"""


def ensure(
    client: docker.DockerClient,
    environment: Environment,
    project_name: str,
    settings: DockerSettings,
) -> Image:
    if environment.image:
        return _existing(client, environment.image, environment.image_from_push)
    with tempfile.TemporaryDirectory(prefix="ct-build-") as context:
        files = _write_context(environment, Path(context))
        tag = f"ct-env/{_slug(project_name)}:{content_hash(files, settings)}"
        found = _on_engine(client, tag)
        if found:
            return found
        buildargs = {"BASE_IMAGE": settings.base_image} if settings.base_image else {}
        if environment.dockerfile is not None:
            refuse_daemon_fetches(client, Path(context) / "Dockerfile", buildargs)
        if settings.ca_file:
            shutil.copy(settings.ca_file, Path(context) / "ca.crt")
        try:
            image, _ = client.images.build(
                path=context,
                tag=tag,
                buildargs=buildargs,
                network_mode=settings.build_network or None,
                rm=True,
                forcerm=True,
            )
        except BuildError as error:
            lines = [str(c.get("stream", "")).strip() for c in error.build_log if c.get("stream")]
            tail = " | ".join(lines[-3:])
            raise ProjectError(f"building {tag} failed: {error.msg}; {tail}"[:600]) from None
    return Image(tag, str(image.id), built=True)


def cached(
    client: docker.DockerClient,
    environment: Environment,
    project_name: str,
    settings: DockerSettings,
) -> Image | None:
    """The environment's image when it is on the engine already (nothing is built
    or pulled)."""
    if environment.image:
        return _on_engine(client, environment.image)
    with tempfile.TemporaryDirectory(prefix="ct-build-") as context:
        files = _write_context(environment, Path(context))
        return _on_engine(client, f"ct-env/{_slug(project_name)}:{content_hash(files, settings)}")


def refuse_daemon_fetches(
    client: docker.DockerClient, dockerfile: Path, buildargs: dict[str, str]
) -> None:
    """Raise ProjectError, naming the line and why, when building this pushed Dockerfile
    would make the Docker daemon fetch something from the host's network: a remote ADD
    source, or an image (FROM, COPY --from, RUN --mount from=, # syntax, a base image's
    ONBUILD trigger) that is not on the engine and names a registry host."""
    try:
        text = dockerfile.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ProjectError("Dockerfile: not UTF-8 text, so it cannot be checked") from None
    found = review(text, buildargs)
    if found.refusals:
        raise ProjectError(_refused("Dockerfile", found.refusals))
    for reference in found.images:
        _check_image(client, reference, f"Dockerfile line {reference.line}")


def _check_image(client: docker.DockerClient, reference: Reference, where: str) -> None:
    named = f"{where}: {reference.instruction} {reference.name}"
    image = _engine_image(client, reference.name, named)
    if image is None:
        host = registry_host(reference.name)
        if host:
            raise ProjectError(
                f"{named}: not on this Docker engine, and the Docker daemon would pull it from "
                f"{host} in the host's network; a pushed Dockerfile may name images on the "
                "engine or on Docker Hub (an operator can put this one on the engine first)"
            )
        if not reference.base:
            return  # the daemon pulls it from Docker Hub
        try:  # now, to read its ONBUILD triggers before they run in the build
            image = client.images.pull(reference.name)
        except APIError as error:
            raise ProjectError(
                f"{named}: neither on this Docker engine nor pullable: {error.explanation}"
            ) from None
    if reference.base:
        triggers = (image.attrs.get("Config") or {}).get("OnBuild") or []
        found = review_triggers(triggers)
        if found.refusals:
            first = found.refusals[0]
            raise ProjectError(
                f"{named}: its ONBUILD trigger {triggers[first.line - 1]!r} runs in this "
                f"build: {first.reason}"
            )
        for inner in found.images:
            _check_image(client, inner, f"{named}: its ONBUILD trigger")


def _refused(file: str, refusals: tuple[Refusal, ...]) -> str:
    first = refusals[0]
    more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
    return f"{file} line {first.line}: {first.reason}{more}"


def _engine_image(client: docker.DockerClient, name: str, named: str) -> EngineImage | None:
    try:
        return client.images.get(name)
    except ImageNotFound:
        return None
    except APIError as error:
        raise ProjectError(f"{named}: {error.explanation}") from None


def _on_engine(client: docker.DockerClient, tag: str) -> Image | None:
    try:
        return Image(tag, client.images.get(tag).id, built=False)
    except ImageNotFound:
        return None


def _write_context(environment: Environment, context: Path) -> list[Path]:
    """The build context's files (the CA aside): the project's Dockerfile and the
    dependency files beside it, or a Dockerfile and requirements.txt written from
    what the project declares."""
    if environment.dockerfile is None:
        (context / "Dockerfile").write_text(DECLARED_DOCKERFILE)
        (context / "requirements.txt").write_text("\n".join(environment.requirements) + "\n")
        return [context / "Dockerfile", context / "requirements.txt"]
    files = _context_files(environment.dockerfile)
    project = environment.dockerfile.parent
    for path in files:  # each checked and bounded before a byte is read
        (context / path.name).write_bytes(read_bytes(project, path))
    return sorted((context / path.name for path in files), key=lambda p: p.name)


def content_hash(files: list[Path], settings: DockerSettings) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(b"BASE_IMAGE=" + settings.base_image.encode())
    if settings.ca_file:
        digest.update(Path(settings.ca_file).read_bytes())
    return digest.hexdigest()[:12]


def _context_files(dockerfile: Path) -> list[Path]:
    folder = dockerfile.parent
    found = {dockerfile}
    for pattern in DEPENDENCY_FILES:
        found.update(p for p in folder.glob(pattern) if p.is_file())
    return sorted(found, key=lambda p: p.name)


def _existing(client: docker.DockerClient, name: str, from_push: bool) -> Image:
    found = _on_engine(client, name)
    if found:
        return found
    host = registry_host(name)
    if from_push and host:
        raise ProjectError(
            f"the MLproject's docker_env image {name} is not on this Docker engine, and the "
            f"Docker daemon would pull it from {host} in the host's network; a pushed project "
            "may name images on the engine or on Docker Hub (an operator can put this one on "
            "the engine first)"
        )
    try:
        return Image(name, client.images.pull(name).id, built=False)
    except APIError as error:
        raise ProjectError(
            f"image {name} is neither on this Docker engine nor pullable: {error.explanation}"
        ) from None


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.") or "project"
