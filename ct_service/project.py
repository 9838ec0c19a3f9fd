"""An MLflow project as ct-service sees it: MLproject parameters with their
defaults, the search space from its ct.yaml, and the git commit it is at."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ct_service.exceptions import ProjectError
from ct_service.space import Config, SearchSpace

ENTRY_POINT = "main"


@dataclass(frozen=True)
class Project:
    path: Path
    name: str
    defaults: Mapping[str, Any]
    space: SearchSpace

    def initial_config(self, overrides: Mapping[str, Any] | None = None) -> Config:
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults))
            raise ProjectError(
                f"unknown parameter(s) {', '.join(unknown)}; {self.name} has: {known}"
            )
        return self.space.normalise({**self.defaults, **overrides})

    def commit(self) -> str:
        """The git commit the project folder is at, or "" outside a repository."""
        try:
            result = subprocess.run(
                ["git", "-C", str(self.path), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return result.stdout.strip() if result.returncode == 0 else ""


def load_project(location: str | Path) -> Project:
    path = Path(location).resolve()
    mlproject = path / "MLproject"
    if not mlproject.is_file():
        raise ProjectError(f"{path} is not an MLflow project: it has no MLproject file")
    spec = _read_yaml(mlproject)
    entry = (spec.get("entry_points") or {}).get(ENTRY_POINT)
    if not isinstance(entry, Mapping):
        raise ProjectError(f"{mlproject} has no '{ENTRY_POINT}' entry point")
    defaults = {}
    for name, param in (entry.get("parameters") or {}).items():
        defaults[name] = param.get("default") if isinstance(param, Mapping) else param
    missing = sorted(name for name, value in defaults.items() if value is None)
    if missing:
        raise ProjectError(f"{mlproject}: parameters without a default: {', '.join(missing)}")
    ct_yaml = path / "ct.yaml"
    space_spec = _read_yaml(ct_yaml).get("search_space") if ct_yaml.is_file() else None
    try:
        space = SearchSpace.from_spec(space_spec)
    except (ValueError, TypeError) as error:
        raise ProjectError(f"{ct_yaml}: {error}") from None
    undeclared = sorted(d.name for d in space.dimensions if d.name not in defaults)
    if undeclared:
        raise ProjectError(f"{ct_yaml}: not parameters of the MLproject: {', '.join(undeclared)}")
    return Project(path, str(spec.get("name") or path.name), defaults, space)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ProjectError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise ProjectError(f"{path} must hold a mapping")
    return data
