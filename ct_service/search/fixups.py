"""What every proposal gets, whichever rule made it: the horizon it trains to, the
checkpoint it loads (`resume_from`: the run it continues, else none) and no more
epochs than the epoch budget has left.

The horizon is applied as a rule shapes each candidate (`longest`), because whether
a candidate is new depends on the epochs it would train; `fix_up` applies the other
two once, to the proposal a rule returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from ct_service.attempt import Attempt
from ct_service.run_tags import RESUME_FROM_PARAM as RESUME_FROM
from ct_service.search.decision import Action, Decision, Proposal
from ct_service.space import Config, Dimension, Role, SearchSpace
from ct_service.target import Budget


def fix_up(
    proposal: Proposal, history: Sequence[Attempt], space: SearchSpace, budget: Budget
) -> Decision:
    """The decision to train `proposal`: `resume_from` set to the run it continues
    (cleared for a configuration trained from scratch: a base's own resume_from is
    not inherited), then capped by the epoch budget."""
    config = dict(proposal.config)
    if RESUME_FROM in config:  # only a continuation loads a checkpoint
        config[RESUME_FROM] = proposal.continues
    decision = Decision(
        Action.TRAIN,
        proposal.reason,
        config,
        proposal.derived_from,
        continues=proposal.continues,
        stop_margin=proposal.stop_margin,
    )
    return within_epoch_budget(decision, history, space, budget)


def longest(config: Mapping[str, object], space: SearchSpace) -> Config:
    """The configuration trained for the most epochs its space allows: a new
    configuration's horizon under early stops, which decide how many it trains."""
    return {**config, **{d.name: d.cast(d.high) for d in space.with_role(Role.EPOCHS)}}


def single_epochs(space: SearchSpace) -> Dimension | None:
    """The space's epochs dimension when it has exactly one, else None: the rules that
    count, continue or cap epochs need one number to work on."""
    epochs = space.with_role(Role.EPOCHS)
    return epochs[0] if len(epochs) == 1 else None


def epochs_trained(history: Sequence[Attempt], space: SearchSpace) -> int:
    """Epochs trained by the attempts of `history`, for the epoch budget: each
    attempt's logged epochs (a resumed epoch once), less those of the attempt it
    continues; an attempt without a per-epoch curve counts its checkpoint epoch, or
    when finished its epochs parameter. The epochs of production's checkpoint a warm
    start trained on from (its start epoch) are production's, not charged."""
    by_run = {a.run_id: a for a in history}
    return sum(
        _epochs_logged(a, space, by_run)
        - (
            _epochs_logged(by_run[a.config[RESUME_FROM]], space, by_run)
            if _continued(a, by_run)
            else 0
        )
        for a in history
    )


def within_epoch_budget(
    decision: Decision,
    history: Sequence[Attempt],
    space: SearchSpace,
    budget: Budget,
    start_epoch: int = 0,
) -> Decision:
    """A proposal trained for no more epochs than the epoch budget has left (a
    continuation: on top of the epoch it starts from, its base's checkpoint, or
    `start_epoch` for a run outside the history: production's, in a warm start)."""
    epochs = single_epochs(space)
    if not budget.max_epochs or epochs is None or epochs.name not in decision.config:
        return decision
    left = budget.max_epochs - epochs_trained(history, space)
    start = next(
        (a.checkpoint_epoch for a in history if a.run_id == decision.continues), start_epoch
    )
    if float(decision.config[epochs.name]) <= start + left:
        return decision
    capped = {**decision.config, epochs.name: epochs.cast(start + left)}
    return replace(
        decision,
        config=capped,
        reason=f"{decision.reason}; {epochs.name} {start + left}: what the budget has left",
    )


def _start_epoch(attempt: Attempt, by_run: Mapping[str, Attempt]) -> int:
    """The epoch its chain of continuations started from: the start epoch of the
    first attempt it goes back to (production's checkpoint, for a warm start)."""
    seen = {attempt.run_id}
    while _continued(attempt, by_run) and attempt.config[RESUME_FROM] not in seen:
        attempt = by_run[attempt.config[RESUME_FROM]]
        seen.add(attempt.run_id)
    return attempt.start_epoch


def _continued(attempt: Attempt, by_run: Mapping[str, Attempt]) -> bool:
    return bool(attempt.config.get(RESUME_FROM)) and attempt.config[RESUME_FROM] in by_run


def _epochs_logged(
    attempt: Attempt, space: SearchSpace, by_run: Mapping[str, Attempt] | None = None
) -> int:
    logged = max(
        (len(curve) for curve in (attempt.validation, *attempt.curves.values())), default=0
    )
    if logged or attempt.checkpoint_epoch or not attempt.finished:
        return max(logged, attempt.checkpoint_epoch - _start_epoch(attempt, by_run or {}))
    epochs = single_epochs(space)
    if epochs is not None and epochs.name in attempt.config:
        return int(float(attempt.config[epochs.name]))
    return 0
