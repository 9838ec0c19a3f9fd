"""Which execution environment a project needs, read off its code (job 2 of the
old CI chain: "if the code uses a CNN, start the container that has the software").

In order: the image its MLproject declares as `docker_env`; else the `Dockerfile`
in its folder; else an image CT_ENVIRONMENTS_FILE names for the framework it imports
or requires (an operator's override); else an image built from the dependencies it
declares (python_env.yaml, conda.yaml's pip list, requirements.txt) on
CT_DOCKER_BASE_IMAGE; else the built-in image of its framework (TensorFlow). A
project that declares nothing and uses no framework with an image is an error,
raised before anything runs.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from ct_service.exceptions import NoEnvironmentImage, ProjectError
from ct_service.execution.declared import (
    CONDA_FILE,
    PYTHON_ENV_FILE,
    REQUIREMENTS_FILE,
    declared_requirements,
    read_mlproject,
)
from ct_service.project_files import MAX_SOURCE_BYTES, python_files, read_bytes

# Top-level import names and distribution names, by framework; the first framework
# of this order that a project uses decides (Keras code may import sklearn too).
FRAMEWORKS: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tf_keras", "tf-keras", "keras"),
    "pytorch": ("torch", "torchvision", "lightning", "pytorch_lightning", "pytorch-lightning"),
    "jax": ("jax", "flax"),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "sklearn": ("sklearn", "scikit-learn"),
}
DEFAULT_IMAGES = {"tensorflow": "ct-train-tensorflow:latest"}
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class Environment:
    reason: str  # one line, recorded on the attempt's run
    image: str = ""  # an image to run as it is
    image_from_push: bool = False  # that image is named by the pushed MLproject
    dockerfile: Path | None = None  # or a Dockerfile to build (its folder is the context)
    requirements: tuple[str, ...] = ()  # or an image built from these pip requirements
    declared: bool = False  # True: built from `requirements` (there may be none)
    framework: str = ""


def choose(project: Path, configured: Mapping[str, str] | None = None) -> Environment:
    """The environment for `project`; `configured` is CT_ENVIRONMENTS_FILE's table."""
    configured = configured or {}
    declared = _declared_image(project)
    if declared:
        return Environment(
            f"the MLproject declares docker_env image {declared}",
            image=declared,
            image_from_push=True,
        )
    if (project / "Dockerfile").is_file():
        return Environment("the project has a Dockerfile", dockerfile=project / "Dockerfile")
    used = frameworks(project)
    framework, evidence = next(iter(used.items())) if used else ("", "")
    if framework in configured:
        return Environment(
            f"{evidence}: the {framework} image of CT_ENVIRONMENTS_FILE",
            image=configured[framework],
            framework=framework,
        )
    requirements = declared_requirements(project)
    if requirements is not None:
        if requirements.conda_packages:
            raise NoEnvironmentImage(
                f"{project.name}: {requirements.file} asks for conda packages "
                f"({', '.join(requirements.conda_packages)}), which an image is not built "
                f"with: give the project a {PYTHON_ENV_FILE} or a Dockerfile, or name an "
                "image for it in CT_ENVIRONMENTS_FILE"
            )
        return Environment(
            f"no Dockerfile: an image built from its {requirements.file} "
            f"({len(requirements.lines)} requirements)",
            requirements=requirements.lines,
            declared=True,
            framework=framework,
        )
    if not used:
        raise NoEnvironmentImage(
            f"{project.name}: declares no dependencies ({PYTHON_ENV_FILE}, {CONDA_FILE}, "
            f"{REQUIREMENTS_FILE}) and uses no framework with a known image; give it one of "
            "those, a Dockerfile or a docker_env image"
        )
    if framework not in DEFAULT_IMAGES:
        raise NoEnvironmentImage(
            f"{project.name} uses {framework} ({evidence}) and no environment is configured "
            f"for {framework}: declare its dependencies ({PYTHON_ENV_FILE} or "
            f"{REQUIREMENTS_FILE}), add '{framework}: IMAGE' to CT_ENVIRONMENTS_FILE, or give "
            "the project a Dockerfile or a docker_env image"
        )
    image = DEFAULT_IMAGES[framework]
    return Environment(f"{evidence}: the {framework} image", image=image, framework=framework)


def frameworks(project: Path) -> dict[str, str]:
    """Frameworks the project uses, in FRAMEWORKS order, each with its evidence."""
    found: dict[str, str] = {}
    for name, where in _imports(project) + _requirements(project):
        framework = _framework_of(name)
        if framework and framework not in found:
            found[framework] = f"{where} {name}"
    return {f: found[f] for f in FRAMEWORKS if f in found}


def load_images(path: str) -> dict[str, str]:
    """The table of CT_ENVIRONMENTS_FILE: `framework: image` lines, an operator's
    override of the image a project would otherwise get; empty without a file."""
    if not path:
        return {}
    try:
        table = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ProjectError(f"CT_ENVIRONMENTS_FILE: cannot read {path}: {error}") from None
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in table.items()
    ):
        raise ProjectError(f"CT_ENVIRONMENTS_FILE {path}: expected 'framework: image' lines")
    unknown = sorted(set(table) - set(FRAMEWORKS))
    if unknown:
        raise ProjectError(
            f"CT_ENVIRONMENTS_FILE {path}: unknown framework(s) {', '.join(unknown)}; "
            f"known: {', '.join(FRAMEWORKS)}"
        )
    return dict(table)


def declared_image(project: Path) -> str:
    """The image the MLproject declares as docker_env, or ""."""
    return _declared_image(project)


def _declared_image(project: Path) -> str:
    docker_env = read_mlproject(project).get("docker_env")
    return str(docker_env.get("image", "")) if isinstance(docker_env, dict) else ""


def _framework_of(name: str) -> str:
    normal = name.lower()
    for framework, names in FRAMEWORKS.items():
        if normal in names:
            return framework
    return ""


def _imports(project: Path) -> list[tuple[str, str]]:
    found = []
    for path in python_files(project):
        try:
            tree = ast.parse(read_bytes(project, path, MAX_SOURCE_BYTES))
        except (SyntaxError, ValueError):
            continue  # the training run will report it
        where = f"imports in {path.relative_to(project)}:"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(alias.name.split(".")[0], where) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((node.module.split(".")[0], where))
    return found


def _requirements(project: Path) -> list[tuple[str, str]]:
    """(name, evidence) of each requirement the project declares; none when its
    declaration cannot be read (choose() reports that)."""
    try:
        requirements = declared_requirements(project)
    except ProjectError:
        return []
    if requirements is None:
        return []
    found = []
    for line in requirements.lines:
        match = REQUIREMENT_NAME.match(line)
        if match:
            found.append((match.group(1), f"requires in {requirements.file}:"))
    return found
