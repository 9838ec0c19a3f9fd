"""Follow a pipeline in MLflow and print what happens as it happens: each attempt
and its configuration, per-epoch metrics as they arrive (epoch n/N, elapsed, time
left: epoch_progress.py), each decision, and each retry of a step after an
infrastructure failure (the ct.retry tag a worker writes). displays.py shows it as
plain lines or, on a terminal, lines above a progress bar."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ct_service import run_tags
from ct_service.attempt import Attempt, AttemptStatus
from ct_service.cli.displays import Display, Lines
from ct_service.cli.epoch_progress import progress_of
from ct_service.tracking import EPOCH_CLOCK, Pipeline, PipelineStatus, Tracker

EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
ENVIRONMENT_BUILD_LINES = {
    "building": "building the project's environment (once; later attempts reuse it)",
    "cached": "the project's environment is built already: reused",
}


@dataclass
class _Seen:
    started: bool = False
    environment: str = ""  # the environment build state last shown
    epochs: int = 0
    ended: bool = False
    decided: bool = False


@dataclass
class Follower:
    tracker: Tracker
    pipeline_id: str
    emit: Callable[[str], None] = print
    display: Display | None = None  # default: plain lines through `emit`
    clock: Callable[[], float] = time.time  # Unix seconds now (elapsed, time left)
    seen: dict[str, _Seen] = field(default_factory=dict)
    retry: str = ""  # the pipeline's last ct.retry shown

    def __post_init__(self) -> None:
        if self.display is None:
            self.display = Lines(self.emit)

    def poll(self) -> Pipeline:
        """Print what is new since the last poll; return the pipeline as it is now."""
        pipeline = self.tracker.pipeline(self.pipeline_id)
        for attempt in self.tracker.attempts(pipeline):
            self._show(attempt, pipeline)
        retry = pipeline.tags.get(run_tags.RETRY, "")
        if retry and retry != self.retry:
            self._line(f"  retrying {retry}")
        self.retry = retry
        return pipeline

    def follow(
        self,
        interval_seconds: float = 0.5,
        stop: Callable[[], bool] = lambda: False,
        wait: Callable[[float], object] = time.sleep,
    ) -> Pipeline:
        """Poll until the pipeline finishes (or `stop` says so); between polls,
        `wait` (the embedded worker's returns early when a step ends)."""
        try:
            while True:
                pipeline = self.poll()
                if pipeline.status is PipelineStatus.FINISHED or stop():
                    return self.poll()
                wait(interval_seconds)
        finally:
            self.close()

    def close(self) -> None:
        """Take any progress bar off the screen (follow() does it when it returns)."""
        assert self.display is not None
        self.display.close()

    def _line(self, text: str) -> None:
        assert self.display is not None
        self.display.line(text)

    def _show(self, attempt: Attempt, pipeline: Pipeline) -> None:
        display = self.display
        assert display is not None
        seen = self.seen.setdefault(attempt.run_id, _Seen())
        epochs = len(attempt.curves.get(EPOCH_CLOCK, ()))
        if not seen.started and attempt.status is not AttemptStatus.QUEUED:
            seen.started = True
            seen.epochs = progress_of(attempt, epochs, self.clock()).first  # a continued one's
            config = " ".join(f"{k}={v}" for k, v in sorted(attempt.config.items()) if k != "data")
            display.line(f"attempt {attempt.number}: {config}")
            display.line(f"  why: {attempt.reason}")
        if attempt.environment_build != seen.environment and seen.started:
            seen.environment = attempt.environment_build
            line = ENVIRONMENT_BUILD_LINES.get(
                seen.environment, f"the project's environment was {seen.environment}"
            )
            display.line(f"  {line}")
        for epoch in range(seen.epochs + 1, epochs + 1):
            values = " ".join(
                f"{name}={attempt.curves[name][epoch - 1]:.4f}"
                for name in EPOCH_METRICS
                if len(attempt.curves.get(name, ())) >= epoch
            )
            # an epoch caught up on is shown as it stood when logged; the latest, now
            at = self.clock() if epoch == epochs else attempt.epoch_times.get(epoch, self.clock())
            display.epoch(attempt.run_id, progress_of(attempt, epoch, at), values)
        seen.epochs = max(seen.epochs, epochs)
        if attempt.status is AttemptStatus.RUNNING:
            now = progress_of(attempt, epochs, self.clock())
            display.tick(attempt.run_id, f"attempt {attempt.number}", now)
        else:
            display.end(attempt.run_id)
        if not seen.ended and attempt.status in (AttemptStatus.FINISHED, AttemptStatus.FAILED):
            seen.ended = True
            if attempt.status is AttemptStatus.FAILED:
                display.line(f"  failed: {attempt.failure}")
            else:
                metric = pipeline.spec.target.metric
                value = "n/a" if attempt.metric is None else f"{attempt.metric:.4f}"
                display.line(f"  {metric} = {value} (target {pipeline.spec.target.describe()})")
        if not seen.decided and attempt.decision:
            seen.decided = True
            display.line(f"  decision: {attempt.decision}")
