"""Follow a pipeline in MLflow and print what happens as it happens: each attempt
and its configuration, per-epoch metrics as they arrive, and each decision."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ct_service.attempt import Attempt, AttemptStatus
from ct_service.tracking import Pipeline, PipelineStatus, Tracker

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
    seen: dict[str, _Seen] = field(default_factory=dict)

    def poll(self) -> Pipeline:
        """Print what is new since the last poll; return the pipeline as it is now."""
        pipeline = self.tracker.pipeline(self.pipeline_id)
        for attempt in self.tracker.attempts(pipeline):
            self._show(attempt, pipeline)
        return pipeline

    def follow(
        self,
        interval_seconds: float = 0.5,
        stop: Callable[[], bool] = lambda: False,
        wait: Callable[[float], object] = time.sleep,
    ) -> Pipeline:
        """Poll until the pipeline finishes (or `stop` says so); between polls,
        `wait` (the embedded worker's returns early when a step ends)."""
        while True:
            pipeline = self.poll()
            if pipeline.status is PipelineStatus.FINISHED or stop():
                return self.poll()
            wait(interval_seconds)

    def _show(self, attempt: Attempt, pipeline: Pipeline) -> None:
        seen = self.seen.setdefault(attempt.run_id, _Seen())
        if not seen.started and attempt.status is not AttemptStatus.QUEUED:
            seen.started = True
            config = " ".join(f"{k}={v}" for k, v in sorted(attempt.config.items()) if k != "data")
            self.emit(f"attempt {attempt.number}: {config}")
            self.emit(f"  why: {attempt.reason}")
        if attempt.environment_build != seen.environment and seen.started:
            seen.environment = attempt.environment_build
            line = ENVIRONMENT_BUILD_LINES.get(
                seen.environment, f"the project's environment was {seen.environment}"
            )
            self.emit(f"  {line}")
        epochs = len(attempt.curves.get("loss", ()))
        for epoch in range(seen.epochs, epochs):
            values = " ".join(
                f"{name}={attempt.curves[name][epoch]:.4f}"
                for name in EPOCH_METRICS
                if len(attempt.curves.get(name, ())) > epoch
            )
            self.emit(f"  epoch {epoch + 1}: {values}")
        seen.epochs = max(seen.epochs, epochs)
        if not seen.ended and attempt.status in (AttemptStatus.FINISHED, AttemptStatus.FAILED):
            seen.ended = True
            if attempt.status is AttemptStatus.FAILED:
                self.emit(f"  failed: {attempt.failure}")
            else:
                metric = pipeline.spec.target.metric
                value = "n/a" if attempt.metric is None else f"{attempt.metric:.4f}"
                self.emit(f"  {metric} = {value} (target {pipeline.spec.target.describe()})")
        if not seen.decided and attempt.decision:
            seen.decided = True
            self.emit(f"  decision: {attempt.decision}")
