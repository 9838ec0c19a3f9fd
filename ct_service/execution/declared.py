"""What a project declares it needs, read as `mlflow run` reads it: the kind of
environment (the MLproject's python_env / conda_env key, else a python_env.yaml,
else a conda.yaml), and the pip requirements and Python version in it (or in a
requirements.txt).

The files come from a push, so they are read defensively: only files inside the
project (links resolved), UTF-8, at most MAX_FILE_BYTES each (project_files.py
reads them) and at most MAX_REQUIREMENTS requirements. Each
requirement must be a name with an optional version range, extras, markers and
`--hash` options; `-r FILE` includes another file of the project (relative to the
including file, as pip reads it). Anything else (other pip options, URLs, local
paths) is refused: a declaration does not choose where packages come from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from ct_service.exceptions import ProjectError
from ct_service.project_files import MAX_FILE_BYTES, parse_yaml, read_text, read_yaml

PYTHON_ENV_FILE = "python_env.yaml"
CONDA_FILE = "conda.yaml"
REQUIREMENTS_FILE = "requirements.txt"
CONDA_BASICS = ("python", "pip")  # conda packages an image with pip has already
MAX_REQUIREMENTS = 500
INCLUDE = re.compile(r"^(?:-r|--requirement)(?:\s+|=)(\S+)$")
COMMENT = re.compile(r"(^|\s)#.*$")
CONDA_PYTHON = re.compile(r"^python\s*=+\s*([0-9][0-9.]*)\*?$")


@dataclass(frozen=True)
class Declared:
    kind: str  # "python_env", "conda" or "" (nothing declared)
    file: str = ""  # the file that declares it, relative to the project


@dataclass(frozen=True)
class Requirements:
    file: str  # the file that declares them
    lines: tuple[str, ...]  # pip requirements
    python: str = ""  # the Python version asked for ("" = any)
    conda_packages: tuple[str, ...] = ()  # conda packages pip cannot install


def declared_environment(project: Path) -> Declared:
    """The environment the project declares: the MLproject's python_env / conda_env
    key first, then a python_env.yaml, then a conda.yaml."""
    spec = read_mlproject(project)
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


def declared_requirements(project: Path) -> Requirements | None:
    """The requirements of the declared environment (python_env: build_dependencies
    and dependencies; conda: its pip list, and the conda packages apart), else of a
    requirements.txt; None when the project declares none. ProjectError names the
    file and what is wrong in it."""
    declared = declared_environment(project)
    if declared.kind == "python_env":
        spec = _yaml_mapping(project, declared.file)
        lines = _list(spec, "build_dependencies", declared.file)
        lines += _list(spec, "dependencies", declared.file)
        python = str(spec.get("python", "") or "").strip()
        return _checked(project, declared.file, lines, python)
    if declared.kind == "conda":
        spec = _yaml_mapping(project, declared.file)
        items = spec.get("dependencies") or []
        if not isinstance(items, list):
            raise ProjectError(f"{project.name}: {declared.file}: dependencies must be a list")
        conda = [str(item) for item in items if isinstance(item, str | int | float)]
        pip = [
            line
            for item in items
            if isinstance(item, dict)
            for line in _list(item, "pip", declared.file)
        ]
        python = next((m.group(1) for c in conda if (m := CONDA_PYTHON.match(c.strip()))), "")
        others = tuple(c for c in conda if _name(c) not in CONDA_BASICS)
        return _checked(project, declared.file, pip, python, others)
    if (project / REQUIREMENTS_FILE).is_file() or (project / REQUIREMENTS_FILE).is_symlink():
        lines = _read(project, project / REQUIREMENTS_FILE, REQUIREMENTS_FILE).splitlines()
        return _checked(project, REQUIREMENTS_FILE, lines, "")
    return None


def _checked(
    project: Path, file: str, lines: list[str], python: str, conda: tuple[str, ...] = ()
) -> Requirements:
    source = project / file
    found = _expanded(project, source, lines, {source.resolve()})
    return Requirements(file, tuple(found), python, conda)


def _expanded(project: Path, source: Path, lines: list[str], included: set[Path]) -> list[str]:
    """The requirement lines of `lines` (read from `source`), `-r` files included."""
    root = project.resolve()
    real = source.resolve()
    where = real.relative_to(root) if real.is_relative_to(root) else source.name
    found: list[str] = []
    for line in _logical_lines(lines):
        include = INCLUDE.match(line)
        if include:
            path = (source.parent / include.group(1)).resolve()
            if path in included:
                continue  # read already (pip would read it twice, to the same effect)
            included.add(path)
            text = _read(project, path, f"{where}: {line}")
            found += _expanded(project, path, text.splitlines(), included)
        else:
            found.append(_requirement(project, where, line))
        if len(found) > MAX_REQUIREMENTS:
            raise ProjectError(
                f"{project.name}: {where}: more than {MAX_REQUIREMENTS} requirements"
            )
    return found


def _logical_lines(lines: list[str]) -> list[str]:
    """pip's reading: a trailing backslash joins lines, `#` after a space starts a comment."""
    joined, pending = [], ""
    for raw in lines:
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line = " ".join(COMMENT.sub("", pending + raw).split())
        pending = ""
        if line:
            joined.append(line)
    return joined


def _requirement(project: Path, where: object, line: str) -> str:
    """The line, if it is a requirement a declared environment may hold."""
    if line.startswith("-"):
        raise ProjectError(
            f"{project.name}: {where}: pip option {line.split()[0]!r} is not accepted in a "
            "declared environment (only requirements and -r FILE); use a Dockerfile"
        )
    tokens = line.split()
    first = next((i for i, token in enumerate(tokens) if token.startswith("--")), len(tokens))
    text = " ".join(tokens[:first])
    if any(not option.startswith("--hash=") for option in tokens[first:]):
        raise ProjectError(
            f"{project.name}: {where}: only --hash options are accepted on a requirement line"
        )
    try:
        requirement = Requirement(text.strip())
    except InvalidRequirement:
        raise ProjectError(
            f"{project.name}: {where}: {text.strip()[:80]!r} is not a requirement (a package "
            "name with an optional version range); paths and URLs are not installed from a "
            "declared environment: use a Dockerfile"
        ) from None
    if requirement.url:
        raise ProjectError(
            f"{project.name}: {where}: {requirement.name} installs from a URL, which a "
            "declared environment does not (packages come from the configured index); use a "
            "Dockerfile"
        )
    return line


def _read(project: Path, path: Path, what: str) -> str:
    """A file of the project, its links resolved; never one outside it, never more
    than MAX_FILE_BYTES of it (project_files.py reads it)."""
    real = path.resolve()
    if not real.is_relative_to(project.resolve()) or not real.is_file():
        raise ProjectError(f"{project.name}: {what}: names no file of the project")
    return read_text(project, path, MAX_FILE_BYTES)


def _yaml_mapping(project: Path, name: str) -> dict[str, Any]:
    spec = parse_yaml(_read(project, project / name, name), f"{project.name}: {name}") or {}
    if not isinstance(spec, dict):
        raise ProjectError(f"{project.name}: {name} must hold a mapping")
    return spec


def _list(spec: dict[str, Any], key: str, where: str) -> list[str]:
    value = spec.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProjectError(f"{where}: {key} must be a list of requirements (strings)")
    return list(value)


def _name(line: str) -> str:
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return match.group(1).lower() if match else ""


def read_mlproject(project: Path) -> dict[str, Any]:
    """The MLproject as a mapping; empty when it cannot be read (load_project says why)."""
    try:
        spec = read_yaml(project, project / "MLproject") or {}
    except ProjectError:
        return {}
    return spec if isinstance(spec, dict) else {}
