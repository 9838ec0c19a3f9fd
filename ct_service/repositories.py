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
        status_token_file: /run/secrets/acme-status   # optional: report commit statuses
        status_api: https://git.example.com/api/v1    # optional: the host's API base
        promotion: manual          # optional: winners wait for approval (or {main: manual})
        schedule: {cron: "0 3 * * *", if_changed: true, branches: [main]}  # optional

With `schedule` (a mapping, or a list of them for several), Celery beat trains the
head commit of each branch it names (default: every one of `branches`) on its crontab,
as a push of that commit would be trained (orchestration/branch_schedules.py);
`if_changed` skips a tick when a pipeline already trained that commit on the data
version its project declares now.

With `status_token_file`, each pipeline of a push sets a status on the pushed commit
through the host's status API (orchestration/status_reports.py) with the token that
file holds (read at each send, never kept or logged). The API base is the operator's:
`status_api`, else derived from `url`'s host (github.com -> https://api.github.com,
another GitHub host -> /api/v3, GitLab /api/v4, Gitea and Forgejo /api/v1,
bitbucket.org -> https://api.bitbucket.org/2.0); never a URL from a push.

Every entry is validated at start; an error names the file, the entry and the key.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ct_service.checkout import touches, url_problem
from ct_service.exceptions import SettingsError
from ct_service.promotion_mode import PromotionMode, parse_branch_modes
from ct_service.schedule import Schedule
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
    status_token_file: str = ""  # "": no commit statuses; read at each send, never kept
    status_api: str = ""  # the host's API base the statuses go to (https)
    schedules: tuple[tuple[str, Schedule], ...] = ()  # (branch, schedule): beat trains its head

    @property
    def reports_status(self) -> bool:
        return bool(self.status_token_file)

    @property
    def key(self) -> str:
        """`<provider>:<name>`, as push records and pipeline tags name the entry."""
        return f"{self.provider.value}:{self.name}"

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
            "status_token_file",
            "status_api",
            "schedule",
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
        schedules=_schedules(entry.get("schedule"), tuple(branches), where),
        **_status(entry, provider, name, url, where),
    )


def _schedules(
    spec: Any, branches: tuple[str, ...], where: str
) -> tuple[tuple[str, Schedule], ...]:
    """Each (branch, schedule) the entry's `schedule` declares."""
    if spec is None:
        return ()
    found = []
    for index, one in enumerate(spec if isinstance(spec, list) else [spec]):
        here = f"{where}.schedule" + (f"[{index}]" if isinstance(spec, list) else "")
        if not isinstance(one, dict):
            raise SettingsError(f"{here} must be a mapping of cron, if_changed, branches")
        named = one.get("branches", list(branches))
        named = [named] if isinstance(named, str) else named
        if not isinstance(named, list) or not named or not all(isinstance(b, str) for b in named):
            raise SettingsError(f"{here}.branches must be a list of branch names")
        unwatched = sorted(set(named) - set(branches))
        if unwatched:
            raise SettingsError(
                f"{here}.branches: {', '.join(unwatched)} not among the entry's branches"
            )
        try:
            schedule = Schedule.from_spec({k: v for k, v in one.items() if k != "branches"})
        except ValueError as error:
            raise SettingsError(f"{here}: {error}") from None
        found += [(branch.strip(), schedule) for branch in named]
    return tuple(found)


# A path segment of a repository's name on a host: no "/", "..", spaces or escapes.
NAME_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# The API of the public hosts by the host a repository is fetched from.
PUBLIC_APIS = {
    (Provider.GITHUB, "github.com"): "https://api.github.com",
    (Provider.BITBUCKET, "bitbucket.org"): "https://api.bitbucket.org/2.0",
}
API_PATHS = {
    Provider.GITHUB: "/api/v3",  # GitHub Enterprise Server
    Provider.GITLAB: "/api/v4",
    Provider.GITEA: "/api/v1",
    Provider.FORGEJO: "/api/v1",
}


def _status(entry: dict, provider: Provider, name: str, url: str, where: str) -> dict[str, str]:
    """status_token_file and the API base statuses go to; {} when none is configured."""
    if "status_token_file" not in entry:
        if "status_api" in entry:
            raise SettingsError(f"{where}.status_api needs status_token_file (the token)")
        return {}
    token_file = _text(entry, "status_token_file", where)
    segments = name.split("/")
    most = None if provider is Provider.GITLAB else 2  # GitLab nests groups
    if (
        len(segments) < 2
        or (most and len(segments) > most)
        or not all(NAME_SEGMENT.fullmatch(s) for s in segments)
    ):
        shape = "group/.../project" if provider is Provider.GITLAB else "owner/name"
        raise SettingsError(f"{where}.name: {name!r} is not a {shape} this host's API takes")
    if "status_api" in entry:
        api = _text(entry, "status_api", where).rstrip("/")
        parts = urlsplit(api)
        if parts.scheme != "https" or not parts.hostname or parts.username or parts.query:
            raise SettingsError(
                f"{where}.status_api must be an https:// URL without credentials or query; "
                f"got {api!r}"
            )
    else:
        api = _derived_api(provider, url, f"{where}.status_api")
    return {"status_token_file": token_file, "status_api": api}


def _derived_api(provider: Provider, url: str, where: str) -> str:
    """The API base of the host `url` is fetched from (https only)."""
    host = _host(url)
    if not host:
        raise SettingsError(f"{where}: cannot tell the host's API from url {url!r}; give it")
    public = PUBLIC_APIS.get((provider, host))
    if public:
        return public
    if provider is Provider.BITBUCKET:
        raise SettingsError(f"{where}: only Bitbucket Cloud (bitbucket.org) is supported")
    return f"https://{host}{API_PATHS[provider]}"


def _host(url: str) -> str:
    """The host of an https://, ssh:// or git@host:path URL; "" for anything else."""
    if url.startswith(("https://", "ssh://")):
        return (urlsplit(url).hostname or "").lower()
    scp = re.fullmatch(r"[\w.-]+@([\w.-]+):.*", url)
    return scp.group(1).lower() if scp else ""


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
