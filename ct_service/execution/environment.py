"""Which execution environment a project needs, read off its code (job 2 of the
old CI chain: "if the code uses a CNN, start the container that has the software").

In order: the image its MLproject declares as `docker_env`; else the `Dockerfile`
in its folder; else the framework it imports or requires (Keras/TensorFlow,
PyTorch, scikit-learn, ...) looked up in a table of images (CT_ENVIRONMENTS_FILE).
A framework with no image in the table is an error, raised before anything runs.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Environment:
    reason: str  # one line, recorded on the attempt's run
    image: str = ""  # an image to run as it is
    dockerfile: Path | None = None  # or a Dockerfile to build (its folder is the context)
    framework: str = ""


def choose(project: Path, images: Mapping[str, str] | None = None) -> Environment:
    images = DEFAULT_IMAGES if images is None else images
    declared = _declared_image(project)
    if declared:
        return Environment(f"the MLproject declares docker_env image {declared}", image=declared)
    if (project / "Dockerfile").is_file():
        return Environment("the project has a Dockerfile", dockerfile=project / "Dockerfile")
    used = frameworks(project)
    if not used:
        raise NoEnvironmentImage(
            f"{project.name}: cannot tell which framework it uses (no known import or "
            "requirement); give it a Dockerfile or a docker_env image in its MLproject"
        )
    framework, evidence = next(iter(used.items()))
    if framework not in images:
        raise NoEnvironmentImage(
            f"{project.name} uses {framework} ({evidence}) and no environment is configured "
            f"for {framework}: add '{framework}: IMAGE' to CT_ENVIRONMENTS_FILE, or give the "
            "project a Dockerfile or a docker_env image"
        )
    image = images[framework]
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
    """The table of CT_ENVIRONMENTS_FILE: `framework: image` lines; it extends the
    built-in one (tensorflow: ct-train-tensorflow:latest)."""
    if not path:
        return dict(DEFAULT_IMAGES)
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
    return {**DEFAULT_IMAGES, **table}


def declared_image(project: Path) -> str:
    """The image the MLproject declares as docker_env, or ""."""
    return _declared_image(project)


def _declared_image(project: Path) -> str:
    try:
        spec = yaml.safe_load((project / "MLproject").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ""
    docker_env = spec.get("docker_env") if isinstance(spec, dict) else None
    return str(docker_env.get("image", "")) if isinstance(docker_env, dict) else ""


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
