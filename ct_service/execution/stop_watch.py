"""Stops a running attempt early from outside: reads the validation curve the run
logs to MLflow while it trains, judges it (stop_early.judge) and, when it should
stop, asks the project to (tag ct.stop_requested) and records why
(ct.stopped_early). A project that honours the request ends by itself with its test
metrics logged; a run stopped as hopeless or behind that ignores it is killed after
a grace period. The interval it judges with (stop_interval: the validation and test
sets' sizes the run logged as dataset inputs, the gaps the pipeline measured) is
recorded on the run (ct.stop_interval)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from mlflow import MlflowClient

from ct_service import run_tags
from ct_service.execution.executor import Halt
from ct_service.stop_early import Stop, StopKind, StopRule, interval_for, judge
from ct_service.stop_interval import (
    TEST_CONTEXTS,
    VALIDATION_CONTEXTS,
    Evidence,
    Interval,
    count_of,
)
from ct_service.target import Target

log = logging.getLogger(__name__)
MAX_POLL_SECONDS = 5.0  # the longest wait between two reads of a curve


class StopWatch:
    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        target: Target,
        rule: StopRule,
        horizon: int,
        earlier: Sequence[float] = (),
        margin: float | None = None,
        earlier_curves: Sequence[Sequence[float]] = (),
        gaps: Sequence[float] = (),
        poll_seconds: float = 0.25,
        grace_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.client = client
        self.run_id = run_id
        self.target = target
        self.rule = rule
        self.horizon = horizon
        self.earlier = tuple(earlier)  # the curve of the runs this one continues
        self.margin = margin
        self.earlier_curves = tuple(tuple(c) for c in earlier_curves)  # other attempts'
        self.evidence = Evidence(gaps=tuple(gaps))  # set sizes added once the run logs them
        self.recorded: Interval | None = None  # the interval last written on the run
        self._sizes_read_at = len(self.earlier)  # epochs seen when the sizes were last read
        self.poll_seconds = poll_seconds
        self.grace_seconds = grace_seconds
        self.clock = clock
        self.stop: Stop | None = None
        self._asked_at = 0.0
        self._last = float("-inf")
        self._reader: threading.Thread | None = None
        self._began = clock()
        self._epochs_seen = 0  # this run's own points at the last read

    def check(self) -> Halt | None:
        """Called while the attempt runs: a Halt once a run stopped as hopeless or
        behind has ignored the
        request to stop for the grace period; else None (reads happen beside it)."""
        if not self.rule.enabled:
            return None
        now = self.clock()
        if self.stop is not None:
            ignored = now - self._asked_at > self.grace_seconds
            if self.stop.kind is not StopKind.TARGET_MET and ignored:
                return Halt(f"stopped early: {self.stop.reason}", interrupted=False)
            return None
        if now - self._last >= self.interval(now) and not self._reading():
            self._last = now
            self._reader = threading.Thread(target=self._read, name="ct-stop-watch", daemon=True)
            self._reader.start()
        return None

    def interval(self, now: float) -> float:
        """Seconds between two reads of the curve: a tenth of the time an epoch has
        taken so far (the curve changes only when an epoch ends, so a stop is asked at
        most a tenth of an epoch late), from poll_seconds to MAX_POLL_SECONDS. Before
        the first epoch, a tenth of the time waited for it. Every worker reads every
        0.25 s otherwise: 32 reads a second to the store from 8 workers training."""
        per_epoch = (now - self._began) / max(1, self._epochs_seen)
        return min(MAX_POLL_SECONDS, max(self.poll_seconds, per_epoch / 10))

    def _reading(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def _read(self) -> None:
        metric = self.rule.validation_metric(self.target)
        try:
            points = self.client.get_metric_history(self.run_id, metric)
            self._epochs_seen = len(points)
            values = self.earlier + tuple(
                m.value for m in sorted(points, key=lambda m: (m.step, m.timestamp))
            )
            if self.evidence.validation_count is None and len(values) > self._sizes_read_at:
                self._read_set_sizes()  # once per new epoch until found (logged at start)
                self._sizes_read_at = len(values)
            self._record(interval_for(values, self.target, self.rule, self.evidence))
            stop = judge(
                values,
                self.target,
                self.rule,
                self.horizon,
                self.evidence,
                self.earlier_curves,
                self.margin,
            )
            if stop is None:
                return
            self.client.set_tag(
                self.run_id, run_tags.STOPPED_EARLY, f"{stop.kind.value}: {stop.reason}"
            )
            self.client.set_tag(self.run_id, run_tags.STOP_REQUESTED, stop.reason)
        except Exception as error:  # MLflow away for a moment: read again next poll
            log.warning("stop watch of %s: %s", self.run_id, error)
            return
        log.info("attempt run %s: stopping early: %s", self.run_id, stop.reason)
        self._asked_at = self.clock()
        self.stop = stop

    def _read_set_sizes(self) -> None:
        """The validation and test sets' sizes, from the dataset inputs the run logged."""
        inputs = self.client.get_run(self.run_id).inputs
        found = inputs.dataset_inputs if inputs is not None else []
        self.evidence = Evidence(
            count_of(found, VALIDATION_CONTEXTS),
            count_of(found, TEST_CONTEXTS),
            self.evidence.gaps,
        )

    def _record(self, found: Interval | None) -> None:
        """Write the interval on the run when it changed (a fixed margin: nothing)."""
        if found is None or self.margin is not None or self.rule.margin is not None:
            return
        if self.recorded is not None and self.recorded.as_tag() == found.as_tag():
            return
        self.client.set_tag(self.run_id, run_tags.STOP_INTERVAL, found.as_tag())
        self.recorded = found
