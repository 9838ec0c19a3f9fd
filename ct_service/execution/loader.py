"""The one place that picks where an attempt runs (as MLflow keeps its backend
choice in projects/backend/loader.py, apart from the backends)."""

from __future__ import annotations

import logging

from ct_service.execution import docker
from ct_service.execution.executor import Executor
from ct_service.execution.local import LocalExecutor
from ct_service.settings import Settings

log = logging.getLogger(__name__)


def executor_for(settings: Settings) -> Executor:
    """CT_EXECUTION: local, docker, or auto (Docker when an engine answers)."""
    execution = settings.execution
    if execution == "auto":
        execution = "docker" if docker.engine_answers() else "local"
        log.info("CT_EXECUTION=auto: %s", execution)
    if execution == "local":
        return LocalExecutor(settings)
    return docker.for_settings(settings)
