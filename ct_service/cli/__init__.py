"""The `ct-service` command line: pipelines (run, status, cancel), the registry (history,
rollback, approve, reject), the service's processes (worker, beat, watchdog) and the
webhook's (serve, send-sample)."""

from typing import NoReturn

from ct_service.cli.main import main
from ct_service.quick_exit import leave

__all__ = ["entry", "main"]


def entry() -> NoReturn:
    """The `ct-service` command: main(), then exit without freeing MLflow, Celery and
    the rest module by module (about a second; quick_exit.py)."""
    leave(main())
