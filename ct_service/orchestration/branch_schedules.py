"""Schedules of repositories.yaml: an allow-listed repository whose entry declares
`schedule:` has the head commit of each branch it names trained on Celery beat's
crontab, as a push of that commit would be (fetched from the allow-list's URL, in a
container unless pushed code is trusted).

`beat_entries` gives beat one crontab entry per (repository, branch, schedule), read
when `ct-service beat` starts. `fire`, in order:

1. find the schedule in the allow-list as it is now (gone: nothing);
2. claim this tick (a redelivered message starts nothing);
3. read the branch's head commit (`git ls-remote`; nothing fetched);
4. with `if_changed`, start nothing when a pipeline already trained that commit and,
   when it recorded declared data, that data's current version;
5. create the pipeline of that commit, reason "schedule <cron> of <repository>
   <branch>: commit ...", and hand back its start step."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from ct_service import keys as names
from ct_service import run_tags
from ct_service.checkout import branch_head
from ct_service.data_spec import DataSpec
from ct_service.data_version import DataVersion, version_of
from ct_service.exceptions import CtError
from ct_service.execution.lease import holder
from ct_service.keystore import keystore_for
from ct_service.orchestration.data_trigger import DataTask
from ct_service.orchestration.git_source import GitSource, create_pipeline
from ct_service.orchestration.pipeline import Step, Task
from ct_service.orchestration.schedules import TICK_CLAIM_SECONDS
from ct_service.repositories import Repository, load_repositories
from ct_service.schedule import Schedule
from ct_service.settings import Settings
from ct_service.tracking import Tracker

log = logging.getLogger(__name__)


def scheduled(settings: Settings) -> list[tuple[Repository, str, Schedule]]:
    """Each (repository, branch, schedule) the allow-list declares."""
    if not settings.repositories_file:
        return []
    listed = load_repositories(
        Path(settings.repositories_file), os.environ, settings.git_allow_file
    )
    return [
        (repository, branch, schedule)
        for repository in listed.values()
        for branch, schedule in repository.schedules
    ]


def beat_entries(settings: Settings) -> dict[str, dict[str, object]]:
    """Celery beat's entries: one crontab per repository, branch and schedule."""
    return {
        f"ct-schedule-{repository.key}-{branch}-{schedule.cron}": {
            "task": DataTask.BRANCH_SCHEDULE.value,
            "schedule": schedule.crontab(),
            "args": (repository.key, branch, schedule.cron),
            "options": {"queue": "pipeline", "expires": 3600},
        }
        for repository, branch, schedule in scheduled(settings)
    }


def fire(
    settings: Settings, repository_key: str, branch: str, cron: str, now: datetime | None = None
) -> Step | None:
    """One tick of a branch's schedule (the steps in the module's docstring)."""
    found = [
        (repository, schedule)
        for repository, named, schedule in scheduled(settings)
        if (repository.key, named, schedule.cron) == (repository_key, branch, cron)
    ]
    if not found:
        log.info("schedule %s of %s %s: not declared any more", cron, repository_key, branch)
        return None
    repository, schedule = found[0]
    tick = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M")
    claim = names.schedule_claim(f"{repository_key}:{branch}:{cron}", tick)
    if not keystore_for(settings).claim(claim, holder(), TICK_CLAIM_SECONDS):
        return None
    commit = branch_head(repository.url, branch)
    tracker = Tracker(settings)
    if schedule.if_changed and _trained_already(settings, tracker, repository.url, commit):
        log.info("schedule %s of %s %s: commit %s and its data trained already; nothing started",
                 cron, repository_key, branch, commit[:12])  # fmt: skip
        return None
    pipeline_id = create_pipeline(
        settings,
        GitSource(url=repository.url, repository=repository.key),
        repository.project,
        None,
        commit,
        repository.target,
        None,
    )
    reason = f"schedule {cron} of {repository_key} {branch}: commit {commit[:12]}"
    tracker.set_tags(
        pipeline_id,
        {
            run_tags.TRIGGER: "schedule",
            run_tags.TRIGGER_REASON: reason,
            run_tags.SCHEDULED_BRANCH: branch,
        },
    )
    log.info("%s -> pipeline %s", reason, pipeline_id)
    return Step(Task.START, (pipeline_id,))


def _trained_already(settings: Settings, tracker: Tracker, url: str, commit: str) -> bool:
    """A pipeline trained this commit of this repository, on its declared data's current
    version when it recorded one."""
    experiments = [e.experiment_id for e in tracker.client.search_experiments()]
    runs = tracker.client.search_runs(
        experiments,
        f"tags.`{run_tags.KIND}` = 'pipeline' and tags.`{run_tags.SOURCE_URL}` = "
        f"'{_quoted(url)}' and tags.`{run_tags.COMMIT}` = '{commit}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    ) if experiments else []  # fmt: skip
    if not runs:
        return False
    data = DataVersion.from_tags(runs[0].data.tags)
    if data is None or not data.source:
        return True
    try:
        return version_of(settings, DataSpec(data.param, data.source)).digest == data.digest
    except CtError as error:  # its data cannot be read now: train, and let the run say why
        log.warning("schedule: the data of commit %s cannot be read: %s", commit[:12], error)
        return False


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
