"""Where a training attempt stands: epoch n of the N its configuration trains, the time
since its run began, and an estimate of the time left from its own epoch times. A
continued or resumed attempt starts at its checkpoint epoch: the epochs it carries on
count as done, and only those it trains itself time it."""

from __future__ import annotations

from dataclasses import dataclass

from ct_service.attempt import Attempt
from ct_service.space import Role
from ct_service.space_inference import rule_for


@dataclass(frozen=True)
class EpochProgress:
    epoch: int  # the epochs done, those it carries on included
    total: int | None  # the epochs it trains to (its configuration's), None: unknown
    first: int  # the epoch it started from (0, or a continued attempt's checkpoint)
    elapsed: float  # seconds since its run began
    remaining: float | None  # an estimate of the seconds left; None: not yet known

    @property
    def position(self) -> str:
        """`epoch 3/12`, or `epoch 3` when its number of epochs is unknown."""
        return f"epoch {self.epoch}" + (f"/{self.total}" if self.total else "")

    @property
    def timing(self) -> str:
        """`0:42 elapsed, about 1:30 left` (the estimate once one epoch is timed)."""
        text = f"{clock(self.elapsed)} elapsed"
        return text if self.remaining is None else f"{text}, about {clock(self.remaining)} left"


def progress_of(attempt: Attempt, epochs_done: int, now: float) -> EpochProgress:
    """`attempt` at the Unix time `now`, with `epochs_done` epochs in its curves.

    Its epochs take the mean time between its own consecutive epochs (the first one's
    time from its start when it has trained one only: that one also loaded the data);
    what is left is that times the epochs to go, less the time since its last epoch
    (no estimate once that is spent with epochs to go: it may be stopping early)."""
    total = epochs_of(attempt)
    own = sorted(attempt.epoch_times.items())
    first = own[0][0] - 1 if own else epochs_done
    own = [(epoch, at) for epoch, at in own if epoch <= epochs_done]
    elapsed = max(0.0, now - attempt.started_at) if attempt.started_at else 0.0
    times = [t for _, t in own] if len(own) > 1 else [attempt.started_at, *(t for _, t in own)]
    remaining = None
    if total is not None and own and times[0]:
        per_epoch = (times[-1] - times[0]) / (len(times) - 1)
        to_go = max(0, total - epochs_done)
        remaining = to_go * per_epoch - max(0.0, now - times[-1])
        if to_go == 0:
            remaining = 0.0
        elif remaining <= 0:  # past the estimate (stopping early, or a slow epoch): none
            remaining = None
    return EpochProgress(epochs_done, total, first, elapsed, remaining)


def epochs_of(attempt: Attempt) -> int | None:
    """The epochs its configuration trains: the value of its epochs parameter (epochs,
    n_epochs, num_epochs, max_epochs, max_iter: space_inference's names), else None."""
    for name, value in attempt.config.items():
        rule = rule_for(name)
        if rule is not None and rule.role is Role.EPOCHS:
            try:
                number = int(float(value))
            except (TypeError, ValueError):
                return None
            return number if number > 0 else None
    return None


def clock(seconds: float) -> str:
    """`1:05` (minutes:seconds), `1:02:05` from an hour on."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
