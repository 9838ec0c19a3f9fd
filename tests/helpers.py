"""Helpers shared by the recovery and Docker tests: waiting for a condition, starting
an embedded `ct-service run`, and reading attempts back from MLflow."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from conftest import LENET, ROOT

from ct_service.tracking import Tracker

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, log: Path | None = None) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.2)


def start_embedded_run(
    env: dict[str, str], params: dict[str, str], log: IO[bytes]
) -> subprocess.Popen:
    """`ct-service run projects/lenet -P ...` with no broker (embedded), in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "ct_service.cli", "run", str(LENET)]
        + [arg for k, v in params.items() for arg in ("-P", f"{k}={v}")],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def attempt_runs(tracker: Tracker, pipeline_id: str) -> list:
    pipeline = tracker.pipeline(pipeline_id)
    runs = tracker.client.search_runs(
        [pipeline.experiment_id], f"tags.`ct.pipeline_id` = '{pipeline_id}'"
    )
    return sorted(runs, key=lambda r: r.info.start_time)


def checkpointed_attempt(tracker: Tracker, pipeline_id: str) -> str:
    """The id of the pipeline's attempt run once it has logged an epoch's checkpoint."""
    for run in attempt_runs(tracker, pipeline_id):
        if run.data.tags.get("checkpoint.last_epoch", "0") != "0":
            return run.info.run_id
    return ""


def epochs_logged(tracker: Tracker, run_id: str) -> list[int]:
    return sorted(m.step for m in tracker.client.get_metric_history(run_id, "val_accuracy"))


def only_pipeline(tracker: Tracker) -> str:
    try:
        pipelines = tracker.recent_pipelines()
    except Exception:  # the store is being created
        return ""
    return pipelines[0].id if pipelines else ""
