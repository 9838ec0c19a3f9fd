"""The watchdog: Celery beat runs `scan` every CT_WATCHDOG_INTERVAL_SECONDS.

Each scan
- resumes attempts whose lease expired (their worker, container or machine died) or
  that were interrupted from outside (see resume.py);
- re-enqueues the next step of a pipeline whose message was lost (a broker restart
  that lost its contents, a worker that died during a short step), and the intake
  step while pushes the webhook recorded wait for their runs: a step is
  re-enqueued when no message for it has been marked queued or running for a whole
  scan interval, and every step is idempotent, so a duplicate is harmless;
- removes work folders of pipelines that ended long ago, and containers of runs
  that no longer run (a dead worker's container goes on training otherwise).

A record it cannot process postpones itself (exponential backoff) instead of
failing every scan; CT_WATCHDOG=off turns the whole scan into a no-op.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from mlflow.entities import Run

from ct_service import keys as names
from ct_service import run_tags
from ct_service.attempt import AttemptStatus
from ct_service.checkout import remove
from ct_service.exceptions import is_infrastructure_failure
from ct_service.execution import lease
from ct_service.keystore import KeyStore
from ct_service.orchestration import champion_scoring
from ct_service.orchestration.pipeline import IN_FLIGHT, Step, Task
from ct_service.orchestration.pushes import push_records_for
from ct_service.recovery.resume import resume
from ct_service.tracking import Pipeline, PipelineStatus, Tracker

log = logging.getLogger(__name__)
MAX_POSTPONE_SECONDS = 3600.0


@dataclass
class ScanReport:
    enabled: bool = True
    resumed: list[str] = field(default_factory=list)  # dead attempt runs handed on
    requeued: list[str] = field(default_factory=list)  # steps whose message was lost
    postponed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # stale work folders
    containers: list[str] = field(default_factory=list)  # of runs no longer running


class Watchdog:
    def __init__(
        self,
        tracker: Tracker,
        keys: KeyStore,
        enqueue: Callable[[Step], None],
        clock: Callable[[], float] = time.time,
    ):
        self.tracker = tracker
        self.settings = tracker.settings
        self.recovery = tracker.settings.recovery
        self.keys = keys
        self.enqueue = enqueue
        self.clock = clock
        self.pushes = push_records_for(tracker.settings)

    def scan(self, pipeline_id: str = "") -> ScanReport:
        """One scan of the whole store; with `pipeline_id` (the embedded mode), of
        that pipeline's attempts and steps only, and no cleaning up."""
        if not self.recovery.watchdog_enabled:
            log.info("the watchdog is off (CT_WATCHDOG=off)")
            return ScanReport(enabled=False)
        report = ScanReport()
        live = (AttemptStatus.RUNNING, AttemptStatus.INTERRUPTED)
        for run in self.tracker.attempts_in(live):
            if pipeline_id and run.data.tags.get(run_tags.PIPELINE_ID) != pipeline_id:
                continue
            self._guarded(run.info.run_id, report, partial(self._check_attempt, run, report))
        for pipeline in self.tracker.unfinished_pipelines():
            if pipeline_id and pipeline.id != pipeline_id:
                continue
            self._guarded(pipeline.id, report, partial(self._check_steps, pipeline, report))
        if pipeline_id:
            return report
        if self.pushes is not None and self.pushes.waiting():  # recorded, no run yet
            intake = Step(Task.INTAKE, ())
            self._guarded("intake", report, partial(self._check_step, "intake", intake, report))
        report.removed = self._remove_stale_work()
        if self.settings.execution != "local":
            report.containers = self._remove_orphaned_containers()
        return report

    def _remove_orphaned_containers(self) -> list[str]:
        from ct_service.execution.containers import store_label
        from ct_service.execution.docker import remove_orphaned_containers

        def running(run_id: str) -> bool:
            try:
                tags = self.tracker.client.get_run(run_id).data.tags
            except Exception as error:
                if is_infrastructure_failure(error):
                    raise
                return False  # not a run of this store
            return tags.get(run_tags.STATUS) == AttemptStatus.RUNNING.value

        try:
            return remove_orphaned_containers(running, store_label(self.settings.tracking_uri))
        except Exception as error:  # no engine here: nothing to clean on this machine
            log.info("watchdog: no containers checked: %s", error)
            return []

    def _check_attempt(self, run: Run, report: ScanReport) -> None:
        tags = run.data.tags
        attempt_id = run.info.run_id
        if tags.get(run_tags.STATUS) == AttemptStatus.INTERRUPTED.value:
            reason = tags.get(run_tags.FAILURE) or "interrupted"
        elif lease.expired(attempt_id, tags, self.keys, self.recovery, self.clock()):
            worker = tags.get(run_tags.WORKER, "its worker")
            reason = f"{worker} stopped renewing the lease for {self.recovery.lease_seconds:g} s"
        else:
            return
        step = resume(self.tracker, self.keys, tags[run_tags.PIPELINE_ID], attempt_id, reason)
        if step is not None:
            self.enqueue(step)
            report.resumed.append(attempt_id)

    def _check_steps(self, pipeline: Pipeline, report: ScanReport) -> None:
        """Re-enqueue the step an unfinished pipeline waits for when its message is lost.

        1. Work out the step the pipeline's state waits for (none while an attempt
           trains: its lease speaks for it).
        2. A message for it marked queued or running (orchestration/queue.py and
           workers/tasks.py mark them): all is well; forget any earlier sighting.
        3. First sighting without a message: remember it with the time; the message
           may still be on its way.
        4. Seen again less than a whole scan interval later: wait (another watchdog's
           sighting, or the same one's a moment ago).
        5. Still without a message a whole interval later: enqueue the step again.
           Steps are idempotent, so a duplicate that raced it is harmless.
        """
        self._check_step(pipeline.id, self._expected_step(pipeline), report)

    def _check_step(self, pipeline_id: str, step: Step | None, report: ScanReport) -> None:
        if step is None or self.keys.get(names.step(step.task.value, step.args)) is not None:
            self.keys.delete(names.stalled(pipeline_id))
            return
        fingerprint = names.step(step.task.value, step.args)
        interval = self.recovery.watchdog_interval_seconds
        seen, _, since = (self.keys.get(names.stalled(pipeline_id)) or "").rpartition("@")
        if seen != fingerprint:  # first sighting: its message may be on its way
            self.keys.put(names.stalled(pipeline_id), f"{fingerprint}@{self.clock()}", 3 * interval)
            return
        if self.clock() - float(since) < interval:  # another watchdog's sighting, just now
            return
        self.keys.delete(names.stalled(pipeline_id))
        log.warning("pipeline %s: no message for %s; enqueuing it again", pipeline_id, fingerprint)
        self.enqueue(step)
        report.requeued.append(fingerprint)

    def _expected_step(self, pipeline: Pipeline) -> Step | None:
        """The step the pipeline's state waits for; None while an attempt trains
        (its lease speaks for it)."""
        if pipeline.status is PipelineStatus.QUEUED:
            return Step(Task.START, (pipeline.id,))
        if pipeline.status is PipelineStatus.PROMOTING:
            scored = champion_scoring.is_recorded(pipeline)  # production on the winner's data
            return Step(Task.PROMOTE if scored else Task.SCORE_CHAMPION, (pipeline.id,))
        if pipeline.status is PipelineStatus.NOTIFYING:
            return Step(Task.NOTIFY, (pipeline.id,))
        if pipeline.status is not PipelineStatus.RUNNING:
            return None
        attempts = self.tracker.attempts(pipeline, curves=False)
        if not attempts:
            return None
        queued = [a for a in attempts if a.status is AttemptStatus.QUEUED]
        if queued:
            return Step(Task.RUN_ATTEMPT, (pipeline.id, queued[0].run_id))
        if any(a.status in IN_FLIGHT for a in attempts):
            return None
        # Nothing trains, yet the pipeline runs: its round waits to be decided (an
        # attempt that ended while others trained waited for them; see decide()).
        undecided = [
            a
            for a in attempts
            if a.status in (AttemptStatus.FINISHED, AttemptStatus.FAILED)
            and (not a.decision or a.decision.startswith(run_tags.WAITING))
        ]
        return Step(Task.DECIDE, (pipeline.id, undecided[-1].run_id)) if undecided else None

    def _guarded(self, record: str, report: ScanReport, check: Callable[[], None]) -> None:
        """Run one record's check; a record that breaks it waits, doubling each time."""
        if self.keys.get(names.postponed(record)) is not None:
            return
        try:
            check()
        except Exception as error:
            if is_infrastructure_failure(error):
                raise  # the whole scan is retried at the next beat
            failures = int(self.keys.get(names.failures(record)) or 0) + 1
            delay = min(MAX_POSTPONE_SECONDS, self.recovery.watchdog_interval_seconds * 2**failures)
            self.keys.put(names.failures(record), str(failures), names.FAILURES_SECONDS)
            self.keys.put(names.postponed(record), type(error).__name__, delay)
            log.exception("watchdog: %s could not be processed; next try in %.0f s", record, delay)
            report.postponed.append(record)

    def _remove_stale_work(self) -> list[str]:
        """Work folders (git checkouts) on this machine of pipelines that are over,
        or unknown, and untouched for CT_WORK_RETENTION_SECONDS."""
        work = self.settings.home / "work"
        removed: list[str] = []
        if not work.is_dir():
            return removed
        horizon = self.clock() - self.recovery.work_retention_seconds
        for folder in work.iterdir():
            if not folder.is_dir() or _modified(folder) > horizon:
                continue
            if self._pipeline_active(folder.name):
                continue
            remove(folder)
            removed.append(folder.name)
        return removed

    def _pipeline_active(self, pipeline_id: str) -> bool:
        try:
            return self.tracker.pipeline(pipeline_id).status is not PipelineStatus.FINISHED
        except Exception as error:
            if is_infrastructure_failure(error):
                raise
            return False


def _modified(folder: Path) -> float:
    try:
        return folder.stat().st_mtime
    except OSError:
        return 0.0
