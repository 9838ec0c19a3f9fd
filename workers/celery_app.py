"""The Celery app for `celery -A workers.celery_app worker|beat`, built from the
environment's settings on first use (ct_service.orchestration.queue makes it; its
tasks live in workers.tasks, which the app imports by name)."""

from __future__ import annotations

from ct_service.orchestration.queue import CtCelery, make_celery
from ct_service.settings import Settings


def __getattr__(name: str) -> CtCelery:
    """`app` for `celery -A workers.celery_app`, built from the environment on first
    use, so that importing this module reads no settings."""
    if name not in ("app", "celery"):
        raise AttributeError(name)
    global _app
    if _app is None:
        _app = make_celery(Settings.from_env())
    return _app


_app: CtCelery | None = None
