"""The embedded mode: a real Celery worker in a thread of this process, on kombu's
in-memory broker. Messages are serialized and consumed exactly as with Redis; only
the transport differs, so nothing but Python is needed. While a pipeline is
followed, the watchdog scans here as Celery beat has it scan with workers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from celery.signals import task_postrun
from celery.worker import state as worker_state

from ct_service.execution.loader import stop_running_attempts
from ct_service.keystore import keystore_for
from ct_service.orchestration.queue import QUEUES, CtCelery, enqueue, make_celery
from ct_service.recovery.watchdog import Watchdog
from ct_service.settings import Settings
from ct_service.tracking import Tracker

log = logging.getLogger(__name__)
HOSTNAME = "embedded@localhost"


class EmbeddedWorker:
    def __init__(
        self,
        settings: Settings,
        log_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not settings.embedded:
            raise ValueError("the embedded worker runs only without CT_BROKER_URL")
        self.app: CtCelery = make_celery(settings)
        self.log_file = log_file or settings.home / "logs" / "worker.log"
        self._thread: threading.Thread | None = None
        self.watchdog = Watchdog(
            Tracker(settings),
            keystore_for(settings),
            lambda step: enqueue(self.app, step.task, *step.args),
        )
        self.clock = clock
        self._last_scan = clock()
        self._step_ended = threading.Event()

    def __enter__(self) -> EmbeddedWorker:
        self._log_to_file()
        self.app.finalize()
        self.app.set_current()
        self.app.set_default()  # as Celery's own worker does: threads fall back to it
        worker = self.app.WorkController(
            app=self.app,
            pool="solo",
            concurrency=1,
            queues=list(QUEUES),
            hostname=HOSTNAME,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        worker_state.should_terminate = None
        task_postrun.connect(self._on_step_ended, weak=False)
        self._thread = threading.Thread(target=worker.start, name="ct-embedded-worker", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        worker_state.should_terminate = 0  # the consumer loop exits at its next turn,
        try:  # and Celery's shutdown broadcast wakes it now (not after its 2 s poll)
            self.app.control.shutdown(destination=[HOSTNAME])
        except Exception as error:  # then it exits at its next turn anyway
            log.warning("could not broadcast the shutdown: %s", error)
        if exc_type is not None:  # interrupted: leave no training process behind
            stop_running_attempts()
        if self._thread is not None:
            self._thread.join(timeout=30)
        task_postrun.disconnect(self._on_step_ended)

    def wait_for_a_step(self, seconds: float) -> None:
        """Wait until one of this worker's steps ends, at most `seconds` (a follower
        sees a finished pipeline at once, not at its next poll)."""
        self._step_ended.wait(seconds)
        self._step_ended.clear()

    def _on_step_ended(self, **_: object) -> None:
        self._step_ended.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def tend(self, pipeline_id: str) -> bool:
        """Called while the pipeline is followed; True while the worker runs. Every
        CT_WATCHDOG_INTERVAL_SECONDS it scans that pipeline once: a step whose message
        was lost is enqueued again, a dead attempt resumed, so it never waits for ever."""
        now = self.clock()
        if now - self._last_scan >= self.app.settings.recovery.watchdog_interval_seconds:
            self._last_scan = now
            try:
                report = self.watchdog.scan(pipeline_id)
                if report.resumed or report.requeued:
                    log.warning("watchdog: %s", report)
            except Exception as error:  # the next scan tries again
                log.warning("watchdog scan failed: %s", error)
        return self.alive

    def _log_to_file(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for name in ("celery", "ct_service", "workers"):
            logger = logging.getLogger(name)
            logger.addHandler(handler)
            logger.setLevel(self.app.settings.log_level)
            logger.propagate = False
