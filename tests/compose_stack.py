"""Helpers of the compose tests: build the images compose.yaml names (with the Docker
SDK, on the host network, through this machine's CA: compose v1 here cannot pass
either), and drive `docker-compose` on compose.yaml plus the test's override file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from conftest import ROOT

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
