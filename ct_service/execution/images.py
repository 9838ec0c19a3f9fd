"""Environment images: a project's Dockerfile is built once per content and reused;
a project without one gets an image built from the dependencies it declares, on
CT_DOCKER_BASE_IMAGE, the same way.

The tag is `ct-env/<project>:<hash>`, the hash covering the Dockerfile (the project's
or the one written here), the dependency files beside it (requirements*.txt,
python_env.yaml, conda.yaml, or the declared requirements), the BASE_IMAGE argument
and the build CA: an unchanged environment is never rebuilt. An environment image
holds dependencies only; the project's code is added to it for each run. So its
build context is the Dockerfile and those files, never the code or data around them.
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

from ct_service.exceptions import ProjectError
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
        return _existing(client, environment.image)
    with tempfile.TemporaryDirectory(prefix="ct-build-") as context:
        files = _write_context(environment, Path(context))
        tag = f"ct-env/{_slug(project_name)}:{content_hash(files, settings)}"
        found = _on_engine(client, tag)
        if found:
            return found
        if settings.ca_file:
            shutil.copy(settings.ca_file, Path(context) / "ca.crt")
        try:
            image, _ = client.images.build(
                path=context,
                tag=tag,
                buildargs={"BASE_IMAGE": settings.base_image} if settings.base_image else {},
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


def _existing(client: docker.DockerClient, name: str) -> Image:
    found = _on_engine(client, name)
    if found:
        return found
    try:
        return Image(name, client.images.pull(name).id, built=False)
    except APIError as error:
        raise ProjectError(
            f"image {name} is neither on this Docker engine nor pullable: {error.explanation}"
        ) from None


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.") or "project"
