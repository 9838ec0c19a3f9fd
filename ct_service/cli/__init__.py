"""The `ct-service` command line: pipelines (run, status, rollback), the service's
processes (worker, beat, watchdog) and the webhook's (serve, send-sample)."""

from ct_service.cli.main import main

__all__ = ["main"]
