"""Where a pipeline's code comes from when it is a commit of a git repository: the
source a push (or `ct-service run --git`) records, the pipeline created for it, and
the checkout a step works in, fetched from what the operator's allow-list says,
never from the pipeline's tags alone."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ct_service import run_tags
from ct_service.checkout import (
    SHA,
    changed_paths,
    fetch_commit,
    redact,
    remove,
    touches,
    url_problem,
)
from ct_service.exceptions import ProjectError
from ct_service.repositories import load_repositories
from ct_service.settings import Settings
from ct_service.target import Budget, Target, choose_target
from ct_service.tracking import Pipeline, PipelineSpec, Tracker


@dataclass(frozen=True)
class GitSource:
    """Where a pipeline's code comes from when it is a commit of a git repository."""

    url: str
    branch: str = ""  # a push: a newer push to this branch supersedes it
    sequence: int = 0  # the webhook's number of the push among pushes to the branch
    repository: str = ""  # "<provider>:<name>" on the allow-list (a push)
    changed_since: str = ""  # the push's before-commit, when it listed no changed paths
    watched: tuple[str, ...] = ()  # the paths whose change trains


def create_pipeline(
    settings: Settings,
    source: GitSource,
    path_in_repository: str,
    overrides: Mapping[str, Any] | None,
    commit: str | None,
    target: Target | None,
    budget: Budget | None,
    push_id: str = "",
) -> str:
    """A pipeline for one commit of a repository; workers fetch it. Nothing is fetched
    here: the project is read by the start step. `push_id` is the pipeline id the
    webhook answered for the push (orchestration/pushes.py)."""
    commit = check_source(settings, source.url, commit)
    name = PurePosixPath(path_in_repository).name or PurePosixPath(source.url.rstrip("/")).stem
    # The project's ct.yaml is read at its commit by the start step.
    chosen_target, target_from = choose_target(target, settings, declared=None)
    spec = PipelineSpec(
        project_path=path_in_repository,
        project_name=name,
        model_name=settings.model_name or name,
        initial_config=dict(overrides or {}),
        target=chosen_target,
        target_from=target_from,
        budget=budget or settings.budget,
        commit=commit,
        source_url=source.url,
        source_branch=source.branch,
        source_sequence=source.sequence,
    )
    tags = {run_tags.SOURCE_REPOSITORY: source.repository} if source.repository else {}
    if push_id:
        tags[run_tags.PUSH_ID] = push_id
    if source.changed_since:  # the push did not say which paths it changed: git will
        tags[run_tags.SOURCE_CHANGED_SINCE] = source.changed_since
        tags[run_tags.SOURCE_WATCH] = json.dumps(source.watched)
    return Tracker(settings).create_pipeline(spec, extra_tags=tags)


def check_source(settings: Settings, url: str, commit: str | None) -> str:
    """The commit, after refusing a URL this service may not fetch and a commit
    that is not a full id."""
    problem = url_problem(url, settings.git_allow_file)
    if problem:
        raise ProjectError(problem)
    if not commit or not SHA.match(commit):
        raise ProjectError("a git source needs --commit with a full 40-character commit id")
    return commit


def project_folder(settings: Settings, pipeline: Pipeline) -> Path:
    """The project's files on this machine; a git source is fetched at its commit
    into the pipeline's work folder the first time a step here needs it."""
    if not pipeline.spec.source_url:
        return Path(pipeline.spec.project_path)
    url, project_path = trusted_source(settings, pipeline)
    work = settings.home / "work" / pipeline.id
    if not (work / ".git").is_dir():
        remove(work)  # a fetch that died half-way
        fetch_commit(url, pipeline.spec.commit, work)
    folder = (work / project_path).resolve()
    if not folder.is_relative_to(work.resolve()):
        raise ProjectError(f"{project_path} is outside the repository")
    return folder


def trusted_source(settings: Settings, pipeline: Pipeline) -> tuple[str, str]:
    """The URL and project path a git pipeline's code is fetched from. With an
    allow-list (CT_REPOSITORIES_FILE) they come from the list, never from the
    pipeline's tags alone (anyone who reaches MLflow can edit those): the repository
    the push named must still be listed with the recorded URL and project, and a
    pipeline started by hand must name a listed URL; anything else fails here, before
    anything is fetched. Without an allow-list the store is the operator's own."""
    spec = pipeline.spec
    if not settings.repositories_file:
        return spec.source_url, spec.project_path
    listed = load_repositories(
        Path(settings.repositories_file), os.environ, settings.git_allow_file
    )
    named = pipeline.tags.get(run_tags.SOURCE_REPOSITORY, "")
    if named:
        found = {f"{p.value}:{n}": r for (p, n), r in listed.items()}.get(named)
        if found is None:
            raise ProjectError(f"repository {named} is not on the allow-list; nothing was fetched")
        if (found.url, found.project) != (spec.source_url, spec.project_path):
            raise ProjectError(
                f"the pipeline's recorded source ({redact(spec.source_url)}, "
                f"{spec.project_path}) is not what the allow-list says for {named}; "
                "nothing was fetched"
            )
        return found.url, found.project
    if spec.source_url not in {r.url for r in listed.values()}:
        raise ProjectError(
            f"{redact(spec.source_url)} is not on the allow-list "
            f"({settings.repositories_file}); nothing was fetched"
        )
    return spec.source_url, spec.project_path


def model_code_changed(settings: Settings, pipeline: Pipeline) -> bool:
    project_folder(settings, pipeline)  # fetches the commit
    changed = changed_paths(
        settings.home / "work" / pipeline.id,
        trusted_source(settings, pipeline)[0],
        pipeline.tags[run_tags.SOURCE_CHANGED_SINCE],
        pipeline.spec.commit,
    )
    watched = tuple(json.loads(pipeline.tags.get(run_tags.SOURCE_WATCH, "[]")))
    return changed is None or touches(changed, watched)
