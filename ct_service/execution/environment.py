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
from typing import Any

import yaml

from ct_service.exceptions import NoEnvironmentImage, ProjectError

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


PYTHON_ENV_FILE = "python_env.yaml"
CONDA_FILE = "conda.yaml"
REQUIREMENTS_FILE = "requirements.txt"
CONDA_BASICS = ("python", "pip")  # conda packages an image with pip has already


@dataclass(frozen=True)
class Environment:
    reason: str  # one line, recorded on the attempt's run
    image: str = ""  # an image to run as it is
    dockerfile: Path | None = None  # or a Dockerfile to build (its folder is the context)
    requirements: tuple[str, ...] = ()  # or an image built from these pip requirements
    framework: str = ""


@dataclass(frozen=True)
class Declared:
    kind: str  # "python_env", "conda" or "" (nothing declared)
    file: str = ""  # the file that declares it, relative to the project


def declared_environment(project: Path) -> Declared:
    """The environment the project declares, read as MLflow reads it: the MLproject's
    python_env / conda_env key first, then a python_env.yaml, then a conda.yaml."""
    spec = _mlproject(project)
    if isinstance(spec.get("python_env"), str):
        return Declared("python_env", spec["python_env"])
    if isinstance(spec.get("conda_env"), str):
        return Declared("conda", spec["conda_env"])
    if spec.get("docker_env"):
        return Declared("")  # its image is its environment
    if (project / PYTHON_ENV_FILE).is_file():
        return Declared("python_env", PYTHON_ENV_FILE)
    if (project / CONDA_FILE).is_file():
        return Declared("conda", CONDA_FILE)
    return Declared("")


def choose(project: Path, configured: Mapping[str, str] | None = None) -> Environment:
    """The environment for `project`; `configured` is CT_ENVIRONMENTS_FILE's table."""
    configured = configured or {}
    declared = _declared_image(project)
    if declared:
        return Environment(f"the MLproject declares docker_env image {declared}", image=declared)
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
        file, lines = requirements
        return Environment(
            f"no Dockerfile: an image built from its {file} ({len(lines)} requirements)",
            requirements=lines,
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


def declared_requirements(project: Path) -> tuple[str, tuple[str, ...]] | None:
    """The pip requirements the project declares, with the file that declares them:
    python_env.yaml's build_dependencies and dependencies, conda.yaml's pip list (a
    conda package other than python or pip cannot be installed with pip: an error),
    else requirements.txt; None when it declares none. `-r FILE` lines are read from
    FILE inside the project; other pip options and URLs are refused (a push must not
    point pip at another index or at files outside the project)."""
    declared = declared_environment(project)
    if declared.kind == "python_env":
        spec = _yaml_mapping(project, declared.file)
        lines = _strings(spec.get("build_dependencies")) + _strings(spec.get("dependencies"))
    elif declared.kind == "conda":
        spec = _yaml_mapping(project, declared.file)
        conda_only = [
            item
            for item in _strings(spec.get("dependencies"))
            if _requirement_name(item) not in CONDA_BASICS
        ]
        if conda_only:
            raise NoEnvironmentImage(
                f"{project.name}: {declared.file} asks for conda packages "
                f"({', '.join(conda_only)}), which an image is not built with: give the "
                f"project a {PYTHON_ENV_FILE} or a Dockerfile, or name an image for it in "
                "CT_ENVIRONMENTS_FILE"
            )
        lines = [
            line
            for item in spec.get("dependencies") or []
            if isinstance(item, dict)
            for line in _strings(item.get("pip"))
        ]
    elif (project / REQUIREMENTS_FILE).is_file():
        declared = Declared("requirements", REQUIREMENTS_FILE)
        lines = (project / REQUIREMENTS_FILE).read_text().splitlines()
    else:
        return None
    return declared.file, tuple(_expanded(project, lines, declared.file))


def _requirement_name(line: str) -> str:
    match = REQUIREMENT_NAME.match(line)
    return match.group(1).lower() if match else ""


def _expanded(project: Path, lines: list[str], where: str, depth: int = 0) -> list[str]:
    found: list[str] = []
    for raw in lines:
        line = raw.split(" #")[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")) and depth < 5:
            name = line.split(maxsplit=1)[1].strip()
            path = (project / name).resolve()
            if not path.is_relative_to(project.resolve()) or not path.is_file():
                raise ProjectError(
                    f"{project.name}: {where}: {line!r} names no file of the project"
                )
            found += _expanded(project, path.read_text().splitlines(), name, depth + 1)
        elif line.startswith("-"):
            raise ProjectError(
                f"{project.name}: {where}: pip option {line.split()[0]!r} is not accepted in a "
                "declared environment (only requirements and -r FILE); use a Dockerfile"
            )
        elif "://" in line:
            raise ProjectError(
                f"{project.name}: {where}: {line!r} installs from a URL, which a declared "
                "environment does not (packages come from the configured index); use a "
                "Dockerfile"
            )
        else:
            found.append(line)
    return found


def _strings(value: Any) -> list[str]:
    return [str(item) for item in value or [] if isinstance(item, str | int | float)]


def _yaml_mapping(project: Path, name: str) -> dict[str, Any]:
    path = (project / name).resolve()
    if not path.is_relative_to(project.resolve()):
        raise ProjectError(f"{project.name}: {name} is outside the project")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ProjectError(f"{project.name}: cannot read {name}: {error}") from None
    if not isinstance(spec, dict):
        raise ProjectError(f"{project.name}: {name} must hold a mapping")
    return spec


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
    docker_env = _mlproject(project).get("docker_env")
    return str(docker_env.get("image", "")) if isinstance(docker_env, dict) else ""


def _mlproject(project: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load((project / "MLproject").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _framework_of(name: str) -> str:
    normal = name.lower()
    for framework, names in FRAMEWORKS.items():
        if normal in names:
            return framework
    return ""


def _imports(project: Path) -> list[tuple[str, str]]:
    found = []
    for path in sorted(project.rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except SyntaxError:
            continue  # the training run will report it
        where = f"imports in {path.relative_to(project)}:"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(alias.name.split(".")[0], where) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((node.module.split(".")[0], where))
    return found


def _requirements(project: Path) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    for name in ("requirements.txt",):
        if (project / name).is_file():
            lines += [(line, name) for line in (project / name).read_text().splitlines()]
    for name in ("python_env.yaml", "conda.yaml"):
        if (project / name).is_file():
            try:
                spec = yaml.safe_load((project / name).read_text()) or {}
            except yaml.YAMLError:
                continue
            for item in spec.get("dependencies", []) if isinstance(spec, dict) else []:
                if isinstance(item, str):
                    lines.append((item, name))
                elif isinstance(item, dict):  # conda's {pip: [...]}
                    lines += [(p, name) for p in item.get("pip", []) if isinstance(p, str)]
    found = []
    for line, where in lines:
        match = REQUIREMENT_NAME.match(line.split("#")[0])
        if match:
            found.append((match.group(1), f"requires in {where}:"))
    return found
