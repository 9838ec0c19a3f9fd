"""Resuming an attempt whose process died (worker killed, container gone, training
process OOM-killed) as a new run of the same attempt.

The new run is tagged `ct.resumed_from=<dead run>` and `resumed_from=<run whose
last checkpoint it loads>`; a project that declares a `resume_from` parameter gets
that run id and continues at the next epoch (the contract: a run that logged
checkpoints names the last one in the tag `checkpoint.last_epoch`). A project
without it, or a run that died before its first checkpoint, starts over.

Only one caller resumes a given run: the claim is atomic (Redis SET NX), and the
steps after it are idempotent, so a replay after a crash finds the same new run.
"""

from __future__ import annotations

import logging

from mlflow.entities import Run

from ct_service import keys as names
from ct_service import run_tags
from ct_service.attempt import AttemptStatus
from ct_service.exceptions import PipelineNotFound
from ct_service.execution.lease import holder
from ct_service.keystore import KeyStore
from ct_service.orchestration.pipeline import Step, Task
from ct_service.tracking import PipelineStatus, Tracker

log = logging.getLogger(__name__)
LIVE = (AttemptStatus.RUNNING.value, AttemptStatus.INTERRUPTED.value)


def resume(
    tracker: Tracker, keys: KeyStore, pipeline_id: str, attempt_id: str, reason: str
) -> Step | None:
    """Resume the dead run `attempt_id`, or fail it once it has been resumed
    CT_MAX_RESUMES times; returns the step to enqueue, or None when another caller
    owns it or there is nothing to do."""
    recovery = tracker.settings.recovery
    if not keys.claim(names.resume_claim(attempt_id), holder(), max(60.0, recovery.lease_seconds)):
        log.info("run %s is being resumed by someone else", attempt_id)
        return None
    pipeline = tracker.pipeline(pipeline_id)
    dead = tracker.client.get_run(attempt_id)
    tags = dead.data.tags
    if tags.get(run_tags.PIPELINE_ID) != pipeline_id:
        raise PipelineNotFound(f"run {attempt_id} is not an attempt of pipeline {pipeline_id}")
    if pipeline.status is not PipelineStatus.RUNNING or tags.get(run_tags.STATUS) not in LIVE:
        return None
    resumes = int(tags.get(run_tags.RESUMES, "0"))
    if resumes >= recovery.max_resumes and not tracker.resumption_of(pipeline, attempt_id):
        failure = (
            f"{reason}; not resumed again: resumed {resumes} time(s) already "
            f"(CT_MAX_RESUMES={recovery.max_resumes})"
        )
        tracker.set_tags(
            attempt_id, {run_tags.STATUS: AttemptStatus.FAILED.value, run_tags.FAILURE: failure}
        )
        _end_run(tracker, dead, "FAILED")
        log.warning("attempt run %s failed: %s", attempt_id, failure)
        return Step(Task.DECIDE, (pipeline_id, attempt_id))
    if tags.get(run_tags.CONTAINER):  # its worker died; the container may still train
        _stop_container(attempt_id)
    source = checkpoint_run(tracker, dead)
    new_id = tracker.resume_attempt(pipeline, dead, source)
    tracker.set_tags(
        attempt_id,
        {
            run_tags.STATUS: AttemptStatus.RESUMED.value,
            run_tags.REPLACED_BY: new_id,
            run_tags.FAILURE: reason,
        },
    )
    _end_run(tracker, dead, "KILLED")
    where = f"from the checkpoint of run {source}" if source else "from the start (no checkpoint)"
    log.warning("attempt run %s died (%s); resumed as run %s %s", attempt_id, reason, new_id, where)
    return Step(Task.RUN_ATTEMPT, (pipeline_id, new_id))


def checkpoint_run(tracker: Tracker, dead: Run) -> str:
    """The latest run of the dead run's chain that logged a checkpoint; else the run
    the attempt continued (a continuation that died before its first checkpoint
    starts again from the same place), or ""."""
    run: Run | None = dead
    seen: set[str] = set()
    continued = ""
    while run is not None and run.info.run_id not in seen:
        seen.add(run.info.run_id)
        if run.data.tags.get(run_tags.CHECKPOINT_LAST_EPOCH, "").isdigit():
            return run.info.run_id
        continued = run.data.tags.get(run_tags.CONTINUES, "") or continued
        previous = run.data.tags.get(run_tags.REPLACES_RUN, "")
        run = tracker.client.get_run(previous) if previous else None
    return continued


def _stop_container(run_id: str) -> None:
    from ct_service.execution.docker import remove_container

    try:
        if remove_container(run_id):
            log.warning("removed the container of dead run %s", run_id)
    except Exception as error:  # another machine's engine, or none: the scan retries there
        log.warning("could not remove the container of %s here: %s", run_id, error)


def _end_run(tracker: Tracker, run: Run, status: str) -> None:
    """A run its dead process left RUNNING is ended in MLflow, so the UI shows it."""
    if run.info.status == "RUNNING":
        tracker.client.set_terminated(run.info.run_id, status)
