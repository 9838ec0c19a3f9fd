"""Which MLflow environment manager runs a project locally (CT_ENV_MANAGER): what the
project declares, honoured, and built only when the worker's own environment does
not already satisfy it. The installed tools are injected (`which`); the installed
packages are this test environment's own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import LENET

from ct_service.exceptions import ProjectError
from ct_service.execution.env_manager import choose, satisfied_here

MLPROJECT = "name: p\nentry_points:\n  main:\n    command: python train.py\n"
NOT_HERE = "pyyaml<1"  # PyYAML is installed here, at 6 or later
HERE = "pyyaml>=6"


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "MLproject").write_text(MLPROJECT)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def tools(*installed: str):
    return lambda tool: f"/usr/bin/{tool}" if tool in installed else None


PYTHON_ENV = {"python_env.yaml": f"dependencies: ['{NOT_HERE}']\n"}
CONDA_ENV = {"conda.yaml": "dependencies:\n  - python=3.11\n  - cudatoolkit=11.8\n"}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("files", "setting", "installed", "manager", "reason"),
    [
        ({}, "auto", ("uv",), "local", "it declares no environment: the worker's own"),
        (
            PYTHON_ENV,
            "auto",
            ("uv", "pyenv"),
            "uv",
            "it declares python_env.yaml: an environment built from it by uv",
        ),
        (PYTHON_ENV, "auto", ("pyenv",), "virtualenv", "built from it by virtualenv"),
        (CONDA_ENV, "auto", ("conda", "uv"), "conda", "it declares conda.yaml"),
        (PYTHON_ENV, "local", (), "local", "CT_ENV_MANAGER=local: the worker's own"),
        (PYTHON_ENV, "virtualenv", ("pyenv",), "virtualenv", "CT_ENV_MANAGER=virtualenv"),
        ({}, "uv", ("uv",), "uv", "CT_ENV_MANAGER=uv; it declares no environment"),
        (
            {"python_env.yaml": f"dependencies: ['{HERE}']\n"},
            "auto",
            ("uv",),
            "local",
            "the worker's environment satisfies its python_env.yaml: run in it, nothing to build",
        ),
    ],
)
def test_the_manager_follows_what_the_project_declares(
    tmp_path: Path,
    files: dict[str, str],
    setting: str,
    installed: tuple[str, ...],
    manager: str,
    reason: str,
) -> None:
    choice = choose(project(tmp_path, files), setting, which=tools(*installed))
    assert choice.manager == manager
    assert reason in choice.reason


@pytest.mark.unit
@pytest.mark.parametrize(
    ("files", "setting", "installed", "message"),
    [
        (
            CONDA_ENV,
            "auto",
            ("uv",),
            "needs MLflow's conda environment manager and conda is "
            "not installed: install conda (or set MLFLOW_CONDA_HOME), or run it with "
            "CT_EXECUTION=docker; or set CT_ENV_MANAGER=local",
        ),
        (PYTHON_ENV, "auto", (), "neither uv nor pyenv is installed to build it: install uv"),
        (PYTHON_ENV, "conda", ("conda",), "declares python_env.yaml, which conda cannot build"),
        (
            PYTHON_ENV,
            "uv",
            ("pyenv",),
            "needs MLflow's uv environment manager and uv is not installed: pip install uv",
        ),
    ],
)
def test_a_manager_that_is_missing_or_cannot_build_it_is_a_clear_error(
    tmp_path: Path,
    files: dict[str, str],
    setting: str,
    installed: tuple[str, ...],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLFLOW_CONDA_HOME", raising=False)
    with pytest.raises(ProjectError, match=re.escape(message)):
        choose(project(tmp_path, files), setting, which=tools(*installed))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("python_env", "satisfied"),
    [
        (f"dependencies: ['{HERE}', 'pytest']\n", True),
        (f"dependencies: ['{NOT_HERE}']\n", False),
        ("dependencies: ['no-such-package-here']\n", False),
        (f"python: '2.7'\ndependencies: ['{HERE}']\n", False),
        (
            f"python: '{'.'.join(map(str, __import__('sys').version_info[:2]))}'\n"
            f"dependencies: ['{HERE}']\n",
            True,
        ),
        ("dependencies: [\"pywin32; sys_platform == 'win32'\"]\n", True),  # not for here
    ],
)
def test_a_declaration_is_satisfied_only_by_what_is_installed_here(
    tmp_path: Path, python_env: str, satisfied: bool
) -> None:
    assert satisfied_here(project(tmp_path, {"python_env.yaml": python_env})) is satisfied


@pytest.mark.unit
def test_lenet_runs_in_the_environment_the_makefile_built_for_it() -> None:
    """LeNet's python_env.yaml (mlflow, TensorFlow) is what `make venv` installs."""
    assert choose(LENET, "auto").manager == "local"
