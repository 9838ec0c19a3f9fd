"""What a worker tells the console when it retries a pipeline's step after an
infrastructure failure: the tag ct.retry on the pipeline's run, "<step>: <the error's
first line>; next try at HH:MM:SS UTC", which the console's Follower prints once per
new value; set back to "" when the retried step has run.

Best effort, never a reason to fail or delay the step: the failure may be the
tracking store itself, so a failure of the store's is not written at all (a write to
a store that does not answer would wait out MLflow's own retries), and any error
while writing is logged at debug level and dropped."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ct_service import run_tags
from ct_service.settings import Settings
from ct_service.tracking import Tracker

log = logging.getLogger(__name__)
# Where the errors of the tracking store come from (MLflow's client, its SQL store,
# its HTTP client). A Docker or Redis error is another's: the store still answers.
TRACKING_STORE_MODULES = ("mlflow", "sqlalchemy", "sqlite3", "requests", "urllib3")
LONGEST_ERROR = 300  # characters of the error kept in the tag


def notice(step: str, error: BaseException, next_try: float) -> str:
    """`run_attempt: <error's first line>; next try at 13:02:41 UTC`."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    if len(text) > LONGEST_ERROR:
        text = text[: LONGEST_ERROR - 3] + "..."
    at = time.strftime("%H:%M:%S", time.gmtime(next_try))
    return f"{step.rsplit('.', 1)[-1]}: {text}; next try at {at} UTC"


def record(
    settings: Settings,
    pipeline_id: str,
    step: str,
    error: BaseException,
    countdown: float,
    clock: Callable[[], float] = time.time,
) -> None:
    """Say on the pipeline that `step` failed with `error` and runs again in
    `countdown` seconds (unless the tracking store is what failed)."""
    if from_tracking_store(error):
        log.debug("%s: not recorded as retried: the tracking store failed", pipeline_id)
        return
    _write(settings, pipeline_id, notice(step, error, clock() + countdown))


def clear(settings: Settings, pipeline_id: str) -> None:
    """The retried step has run: nothing is being retried any more."""
    _write(settings, pipeline_id, "")


def from_tracking_store(error: BaseException) -> bool:
    """`error`, or an error it was raised from, is one of the tracking store's."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__module__.split(".")[0] in TRACKING_STORE_MODULES:
            return True
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return False


def _write(settings: Settings, pipeline_id: str, value: str) -> None:
    try:
        Tracker(settings).set_tags(pipeline_id, {run_tags.RETRY: value})
    except Exception as error:
        log.debug("%s: %s not written: %s", pipeline_id, run_tags.RETRY, error)
