"""What the policy knows of one training attempt: its configuration and outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class AttemptStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"  # the run completed; its metric may or may not meet the target
    FAILED = "failed"  # the training code crashed or was stopped
    INTERRUPTED = "interrupted"  # its process was killed from outside; to be resumed
    RESUMED = "resumed"  # continued by another run (tag ct.replaced_by); not an outcome


@dataclass(frozen=True)
class Attempt:
    number: int
    run_id: str
    config: Mapping[str, Any]
    status: AttemptStatus
    metric: float | None = None  # the target metric's final value
    curves: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # per-epoch histories
    failure: str = ""
    reason: str = ""  # why the policy proposed it
    decision: str = ""  # what the pipeline decided after it
    resumes: int = 0  # how many times a dead run of it was resumed
    checkpoint_epoch: int = 0  # the last epoch with a logged checkpoint (0: none)
    start_epoch: int = 0  # the epoch of production's checkpoint it started from (a warm start)
    derived_from: str = ""  # the run of the attempt whose configuration it changed
    stopped_early: str = ""  # "<target met|hopeless>: <reason>" when stopped from outside
    stop_margin: float | None = None  # the validation margin its target-met stop used
    validation: tuple[float, ...] = ()  # the per-epoch validation metric (its curve)
    environment_build: str = ""  # local env manager: "building", "built in N s", "cached"
    started_at: float = 0.0  # Unix seconds its worker began running this run (0: unknown)
    # epoch -> Unix seconds this run logged it, for the epochs it trained itself (not
    # those of the runs it resumed or the attempt it continues): its epoch times
    epoch_times: Mapping[int, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status is AttemptStatus.FINISHED

    def stopped_as(self, kind: str) -> bool:
        """Stopped early for this reason ("target met" or "hopeless")."""
        return self.stopped_early.startswith(f"{kind}:")
