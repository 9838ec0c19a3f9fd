"""The allow-list of watched repositories, read from a YAML file (CT_REPOSITORIES_FILE):

    repositories:
      - name: acme/models          # as the provider names it (full_name, path_with_namespace)
        provider: github           # github, gitlab, gitea, forgejo or bitbucket
        url: https://github.com/acme/models.git   # fetched by workers; never taken from a payload
        secret_env: CT_SECRET_ACME # or secret_file: /run/secrets/acme (never the secret inline)
        branches: [main]           # pushes to other branches are ignored
        project: projects/lenet    # the MLflow project inside the repository
        watch: [requirements.txt]  # more paths whose change retrains (the project always does)
        target: {metric: test_accuracy, threshold: 0.8, direction: maximize}   # optional
        promotion: manual          # optional: winners wait for approval (or {main: manual})

Every entry is validated at start; an error names the file, the entry and the key.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from ct_service.checkout import touches, url_problem
from ct_service.exceptions import SettingsError
from ct_service.promotion_mode import PromotionMode, parse_branch_modes
from ct_service.target import Target


class Provider(str, Enum):
    """The git hosts whose pushes the webhook understands."""

    FORGEJO = "forgejo"
    GITEA = "gitea"
    GITHUB = "github"
    GITLAB = "gitlab"
    BITBUCKET = "bitbucket"


@dataclass(frozen=True)
class Repository:
    name: str
    provider: Provider
    url: str
    secret: str = field(repr=False)
    branches: tuple[str, ...]
    project: str
    watch: tuple[str, ...] = ()
    target: Target | None = None
    # (branch, mode) pairs of its `promotion:`; "*" stands for any other branch
    promotion: tuple[tuple[str, PromotionMode], ...] = ()

    @property
    def watched_paths(self) -> tuple[str, ...]:
        return (self.project, *self.watch)

    def watches(self, changed_paths: frozenset[str]) -> bool:
        """Whether a push touching these paths changes the model code."""
        return touches(changed_paths, self.watched_paths)


def load_repositories(
    path: Path, environ: Mapping[str, str], allow_file: bool = False
) -> dict[tuple[Provider, str], Repository]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SettingsError(f"CT_REPOSITORIES_FILE: cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"{path}: not valid YAML: {error}") from None
    entries = data.get("repositories") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SettingsError(f"{path}: expected a non-empty list under 'repositories'")
    found: dict[tuple[Provider, str], Repository] = {}
    for index, entry in enumerate(entries):
        where = f"{path}: repositories[{index}]"
        repository = _repository(entry, where, environ, allow_file)
        key = (repository.provider, repository.name)
        if key in found:
            raise SettingsError(
                f"{where}: {repository.provider.value} {repository.name} is listed twice"
            )
        found[key] = repository
    return found


def _repository(entry: Any, where: str, environ: Mapping[str, str], allow_file: bool) -> Repository:
    if not isinstance(entry, dict):
        raise SettingsError(f"{where}: must be a mapping")
    unknown = sorted(
        set(entry)
        - {
            "name",
            "provider",
            "url",
            "secret_env",
            "secret_file",
            "branches",
            "project",
            "watch",
            "target",
            "promotion",
        }
    )
    if unknown:
        hint = " (put secrets in secret_env or secret_file)" if "secret" in unknown else ""
        raise SettingsError(f"{where}: unknown key(s) {', '.join(unknown)}{hint}")
    name = _text(entry, "name", where)
    try:
        provider = Provider(_text(entry, "provider", where))
    except ValueError:
        choices = ", ".join(p.value for p in Provider)
        raise SettingsError(f"{where}.provider must be one of {choices}") from None
    url = _text(entry, "url", where)
    problem = url_problem(url, allow_file)
    if problem:
        raise SettingsError(f"{where}.url: {problem}")
    branches = _texts(entry, "branches", where, default=["main"])
    project = _relative(_text(entry, "project", where, default="."), f"{where}.project")
    watch = tuple(_relative(p, f"{where}.watch") for p in _texts(entry, "watch", where, default=[]))
    return Repository(
        name=name,
        provider=provider,
        url=url,
        secret=_secret(entry, where, environ),
        branches=tuple(branches),
        project=project,
        watch=watch,
        target=_target(entry.get("target"), where),
        promotion=_promotion(entry.get("promotion"), where),
    )


def _secret(entry: dict, where: str, environ: Mapping[str, str]) -> str:
    if "secret_env" in entry:
        variable = _text(entry, "secret_env", where)
        secret = environ.get(variable, "")
        if not secret:
            raise SettingsError(f"{where}.secret_env: {variable} is not set")
        return secret
    if "secret_file" in entry:
        file = Path(_text(entry, "secret_file", where))
        try:
            secret = file.read_text().strip()
        except OSError as error:
            raise SettingsError(
                f"{where}.secret_file: cannot read {file}: {error.strerror}"
            ) from None
        if not secret:
            raise SettingsError(f"{where}.secret_file: {file} is empty")
        return secret
    return ""  # allowed only with the insecure development flag (checked by the web app)


def _target(spec: Any, where: str) -> Target | None:
    if spec is None:
        return None
    try:
        return Target.from_spec(spec)
    except ValueError as error:
        raise SettingsError(f"{where}.{error}") from None


def _promotion(spec: Any, where: str) -> tuple[tuple[str, PromotionMode], ...]:
    if spec is None:
        return ()
    try:
        return tuple(parse_branch_modes(spec, f"{where}.promotion").items())
    except ValueError as error:
        raise SettingsError(str(error)) from None


def _text(entry: dict, key: str, where: str, default: str | None = None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(f"{where}.{key} must be a non-empty string")
    return value.strip()


def _texts(entry: dict, key: str, where: str, default: list[str]) -> list[str]:
    value = entry.get(key, default)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SettingsError(f"{where}.{key} must be a list of non-empty strings")
    return [v.strip() for v in value]


def _relative(path: str, where: str) -> str:
    normal = posixpath.normpath(path)
    if posixpath.isabs(normal) or normal == ".." or normal.startswith("../"):
        raise SettingsError(f"{where}: {path!r} must stay inside the repository")
    return normal
