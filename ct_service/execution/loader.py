"""The one place that picks where an attempt runs (as MLflow keeps its backend
choice in projects/backend/loader.py, apart from the backends)."""

from __future__ import annotations

import logging

from ct_service import run_tags
from ct_service.exceptions import NoEnvironmentImage
from ct_service.execution import docker
from ct_service.execution.executor import (
    AttemptRequest,
    AttemptResult,
    Executor,
    Heartbeat,
)
from ct_service.execution.local import LocalExecutor
from ct_service.execution.local import stop_running_attempts as local_stop_running_attempts
from ct_service.settings import Settings

log = logging.getLogger(__name__)


def executor_for(settings: Settings) -> Executor:
    """CT_EXECUTION: local, docker, or auto (Docker when an engine answers and an
    image is known for the project, else local)."""
    execution = settings.execution
    if execution == "auto":
        if not docker.engine_answers():
            log.info("CT_EXECUTION=auto: no Docker engine answers; local")
            return LocalExecutor(settings)
        return AutoExecutor(docker.for_settings(settings), LocalExecutor(settings))
    if execution == "local":
        return LocalExecutor(settings)
    return docker.for_settings(settings)


def stop_running_attempts() -> int:
    """Stop every attempt this process runs, local or in a container (its owner is
    going away)."""
    return local_stop_running_attempts() + docker.stop_running_containers()


class AutoExecutor:
    """Docker when an image is known for the project's environment; else local, with
    the reason tagged on the attempt."""

    def __init__(self, in_docker: Executor, in_place: Executor):
        self.in_docker = in_docker
        self.in_place = in_place
        self.chosen: Executor = in_docker

    @property
    def name(self) -> str:
        return self.chosen.name

    def prepare(self, request: AttemptRequest) -> tuple[AttemptRequest, dict[str, str]]:
        try:
            self.chosen = self.in_docker
            return self.in_docker.prepare(request)
        except NoEnvironmentImage as error:
            log.info("CT_EXECUTION=auto: %s; running it locally", error)
            self.chosen = self.in_place
            prepared, tags = self.in_place.prepare(request)
            reason = f"CT_EXECUTION=auto, no image for it ({error}), so local"
            if tags.get(run_tags.ENVIRONMENT):
                reason += f"; {tags[run_tags.ENVIRONMENT]}"
            return prepared, {**tags, run_tags.ENVIRONMENT: reason[:500]}

    def run(self, request: AttemptRequest, heartbeat: Heartbeat) -> AttemptResult:
        return self.chosen.run(request, heartbeat)
