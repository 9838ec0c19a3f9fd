"""Which MLflow environment manager runs a project in local execution (CT_ENV_MANAGER).

`auto` honours what the project declares, as `mlflow run` does, without building
what is there already: a project that declares no environment, or one whose every
declared requirement (and Python version) the worker's own environment satisfies,
runs in that environment (`local`); otherwise a python_env (the MLproject's
`python_env`, or a python_env.yaml beside it) runs in an environment built from it
by uv when uv is installed, else by virtualenv (which needs pyenv), and a conda
environment (`conda_env`, or a conda.yaml) by conda. MLflow caches what it builds
(under MLFLOW_ENV_ROOT, keyed by the declaration), so only a project's first attempt
after a change of its declaration pays for the build.

The other values force one manager; a manager that is not installed, or that cannot
build what the project declares, is an error that says what to do, raised before
anything runs.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from ct_service.exceptions import ProjectError
from ct_service.execution.declared import (
    Declared,
    declared_environment,
    declared_requirements,
)


@dataclass(frozen=True)
class EnvChoice:
    manager: str  # MLflow's env_manager: local, uv, virtualenv or conda
    reason: str  # one line, tagged on the attempt (ct.environment)


def choose(
    project: Path, setting: str, which: Callable[[str], str | None] | None = None
) -> EnvChoice:
    """The manager for `setting` (CT_ENV_MANAGER) and this project, with its reason."""
    which = which or _on_training_path
    declared = declared_environment(project)
    if setting == "local":
        return EnvChoice("local", "CT_ENV_MANAGER=local: the worker's own Python environment")
    if setting == "auto":
        if declared.kind == "":
            return EnvChoice("local", "it declares no environment: the worker's own")
        if satisfied_here(project):
            return EnvChoice(
                "local",
                f"the worker's environment satisfies its {declared.file}: run in it, "
                "nothing to build",
            )
        manager = _auto_manager(project, declared, which)
        return EnvChoice(
            manager, f"it declares {declared.file}: an environment built from it by {manager}"
        )
    if declared.kind:
        declared_requirements(project)  # what MLflow would install: refused if unreadable
    if declared.kind == "python_env" and setting == "conda":
        raise ProjectError(
            f"{project.name} declares {declared.file}, which conda cannot build (MLflow "
            "refuses it): set CT_ENV_MANAGER=auto, uv or virtualenv"
        )
    _require(project, setting, which)
    what = declared.file or "no environment (MLflow's default for its Python)"
    return EnvChoice(setting, f"CT_ENV_MANAGER={setting}; it declares {what}")


def satisfied_here(project: Path) -> bool:
    """Every requirement the project declares is installed in this Python environment
    at a version it accepts (markers evaluated here), and the Python version it asks
    for is this one; a conda package beyond python and pip is never satisfied here.
    A declaration that cannot be read raises ProjectError."""
    declared = declared_requirements(project)
    if declared is None or declared.conda_packages:
        return False
    here = platform.python_version_tuple()
    asked = declared.python.split(".") if declared.python else []
    if asked and asked != list(here[: len(asked)]):
        return False
    return all(_installed(line) for line in declared.lines)


def _installed(line: str) -> bool:
    requirement = Requirement(line.split(" --")[0])  # checked by declared.py, --hash aside
    if requirement.marker is not None and not requirement.marker.evaluate():
        return True  # not asked for on this platform
    try:
        version = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(version, prereleases=True)


def _auto_manager(project: Path, declared: Declared, which: Callable[[str], str | None]) -> str:
    if declared.kind == "conda":
        _require(project, "conda", which)
        return "conda"
    if which("uv"):
        return "uv"
    if which("pyenv"):
        return "virtualenv"
    raise ProjectError(
        f"{project.name} declares {declared.file} and neither uv nor pyenv is installed to "
        "build it: install uv in the worker's environment (pip install uv), or set "
        "CT_ENV_MANAGER=local to run it in the worker's own environment, or use "
        "CT_EXECUTION=docker"
    )


def _require(project: Path, manager: str, which: Callable[[str], str | None]) -> None:
    needs = {"uv": ("uv",), "virtualenv": ("pyenv",), "conda": ("conda",)}[manager]
    missing = [tool for tool in needs if not which(tool)]
    if manager == "conda" and os.environ.get("MLFLOW_CONDA_HOME"):
        missing = []  # MLflow finds it there
    if missing:
        advice = {
            "uv": "pip install uv in the worker's environment",
            "virtualenv": "install pyenv (MLflow's virtualenv manager builds Python with it)",
            "conda": "install conda (or set MLFLOW_CONDA_HOME), or run it with CT_EXECUTION=docker",
        }[manager]
        raise ProjectError(
            f"{project.name} needs MLflow's {manager} environment manager and "
            f"{', '.join(missing)} is not installed: {advice}; or set CT_ENV_MANAGER=local "
            "to run it in the worker's own environment"
        )


def _on_training_path(tool: str) -> str | None:
    """Find a tool as the training process will: this interpreter's folder first."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return shutil.which(tool, path=path)
