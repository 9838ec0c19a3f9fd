"""What a pipeline's promotion step needs beyond the winner's metric: whether a person
must approve the winner (the project's ct.yaml at the pipeline's commit, and the
operator's repositories.yaml for the pushed repository and branch), and the cause the
production history records (the pipeline, its trigger, its commit and data)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from mlflow.utils.mlflow_tags import MLFLOW_USER

from ct_service import run_tags
from ct_service.history import Cause, Trigger
from ct_service.orchestration import git_source
from ct_service.project import load_project
from ct_service.promotion_mode import PromotionMode, required
from ct_service.repositories import Repository, load_repositories
from ct_service.settings import Settings
from ct_service.tracking import Pipeline


def manual(settings: Settings, pipeline: Pipeline) -> bool:
    """Whether the pipeline's winner waits for a person's approval."""
    project = load_project(git_source.project_folder(settings, pipeline))
    mode = required(
        project.promotion, repository_modes(settings, pipeline), pipeline.spec.source_branch
    )
    return mode is PromotionMode.MANUAL


def repository_modes(settings: Settings, pipeline: Pipeline) -> dict[str, PromotionMode]:
    """The `promotion:` of the allow-list's entry the pipeline's code came from, by
    branch ({} when it has none, or the pipeline no such entry)."""
    repository = _repository(settings, pipeline)
    return dict(repository.promotion) if repository is not None else {}


def cause(pipeline: Pipeline, version_tags: Mapping[str, str]) -> Cause:
    """The pipeline as the cause of a decision: its trigger (ct.trigger: a push with its
    repository, branch and commit; a data change; a schedule; else `ct-service run` and
    who ran it), with the data version it trained on (ct.data_version) and the digest
    of each dataset the winner logged (its version's ct.data.* tags)."""
    spec = pipeline.spec
    data = (
        [f"version {digest[:12]}"] if (digest := pipeline.tags.get(run_tags.DATA_VERSION)) else []
    )
    data += [
        f"{name.removeprefix(run_tags.DATA_PREFIX)}={digest[:12]}"
        for name, digest in sorted(version_tags.items())
        if name.startswith(run_tags.DATA_PREFIX)
    ]
    trigger = _trigger(pipeline)
    return Cause(
        trigger,
        pipeline_id=pipeline.id,
        commit=spec.commit,
        branch=spec.source_branch,
        repository=pipeline.tags.get(run_tags.SOURCE_REPOSITORY, ""),
        data=", ".join(data),
        person=pipeline.tags.get(MLFLOW_USER, "") if trigger is Trigger.RUN else "",
    )


def _trigger(pipeline: Pipeline) -> Trigger:
    """What started the pipeline: its ct.trigger tag, else a push (it has a push id)
    or `ct-service run`."""
    try:
        return Trigger(pipeline.tags.get(run_tags.TRIGGER, ""))
    except ValueError:
        return Trigger.PUSH if pipeline.tags.get(run_tags.PUSH_ID) else Trigger.RUN


def _repository(settings: Settings, pipeline: Pipeline) -> Repository | None:
    """The allow-list's entry the pipeline's code came from: the pushed repository,
    or the one whose URL `ct-service run --git` named; None without either."""
    if not settings.repositories_file or not pipeline.spec.source_url:
        return None
    listed = load_repositories(
        Path(settings.repositories_file), os.environ, settings.git_allow_file
    )
    named = pipeline.tags.get(run_tags.SOURCE_REPOSITORY, "")
    for (provider, name), repository in listed.items():
        if named == f"{provider.value}:{name}" or (
            not named and repository.url == pipeline.spec.source_url
        ):
            return repository
    return None
