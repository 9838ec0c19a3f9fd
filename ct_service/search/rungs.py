"""Successive halving on rounds of attempts trained at once (CT_PARALLEL_ATTEMPTS).

Attempts of one round train side by side, so none of them can be stopped as behind
the others: the sequential "behind" stop compares a curve only with curves that
finished before it. Successive halving is that comparison for a round: a new
configuration trains to the lowest rung (the most epochs the space allows divided by
ETA twice, or once when the attempt budget left cannot carry a configuration from
there to the top), and only the best 1/ETA of the attempts that reached a rung, by their
validation metric at that epoch, are continued from their checkpoints to the next
rung; the other slots take new configurations (asynchronous successive halving,
ASHA: Li et al., "A System for Massively Parallel Hyperparameter Tuning", 2020).
No epoch is trained twice: a continuation starts from its base's checkpoint.

It applies when a round has two slots or more, the project can continue a run (it
declares `resume_from`) along one epochs dimension, and the attempts left allow a
bracket of two rungs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from ct_service.attempt import Attempt
from ct_service.run_tags import RESUME_FROM_PARAM as RESUME_FROM
from ct_service.search.context import Context
from ct_service.search.decision import Decision, Proposal
from ct_service.search.fixups import epochs_trained, fix_up, longest, within_epoch_budget
from ct_service.search.sampling import alongside
from ct_service.space import Dimension
from ct_service.target import Budget, Direction

ETA = 3  # the best 1/ETA of a rung go on, to ETA times its epochs (Hyperband's default)
LEVELS = 3  # rungs: high / ETA**2, high / ETA, high


def rungs(epochs: Dimension) -> tuple[int, ...]:
    """The epochs at which attempts are compared: the space's most epochs divided by
    ETA**k for k < LEVELS, none below its least; for LeNet's 1-12 epochs: 1, 4, 12.
    Which of them a decision uses depends on the attempts left (bracket)."""
    high, low = int(epochs.high), max(1, int(math.ceil(epochs.low)))
    return tuple(sorted({max(low, round(high / ETA**k)) for k in range(LEVELS)}))


def bracket(ctx: Context) -> tuple[int, ...]:
    """The rungs this decision halves on: the most of them (from the top) whose
    bracket the attempts left can complete, ETA**(n-1) + ... + ETA + 1 attempts for n
    rungs, so that one configuration can reach the top (Hyperband sizes its brackets
    by the budget the same way). LeNet's 1, 4, 12 with 13 attempts left or more;
    4, 12 with 4 to 12 left; below that 12 alone: no halving."""
    assert ctx.epochs is not None
    found = rungs(ctx.epochs)
    left = ctx.budget.max_attempts - len(ctx.history)
    while len(found) > 1 and sum(ETA**k for k in range(len(found))) > left:
        found = found[1:]
    return found


def applies(ctx: Context, slots: int) -> bool:
    """Whether rounds of `slots` attempts are halved: several slots, a project that
    continues runs along one epochs dimension, and attempts enough left for a
    bracket of two rungs or more."""
    return (
        slots >= 2
        and ctx.epochs is not None
        and RESUME_FROM in ctx.last.config
        and len(bracket(ctx)) > 1
    )


def round_of(first: Decision, ctx: Context, free: int, whole: Budget) -> list[Decision]:
    """Up to `free` attempts for the next round: the attempts paused at a rung that
    are among its best 1/ETA, each continued to the next rung (highest rung first);
    then the rule set's proposal `first`, trained to the next rung above where it
    starts (dropped when it would continue an attempt that ended on a rung: which
    of those go on is for the rung to say);
    then configurations TPE proposes, trained to the lowest rung. `whole`: the
    pipeline's budget (ctx.budget holds the round's share of its epochs)."""
    assert ctx.epochs is not None
    epochs, levels = ctx.epochs, bracket(ctx)
    chosen = [_continued(a, ctx, levels) for a in promotable(ctx, levels)][:free]
    on_rungs = {a.run_id for a in _ended_on_rung(ctx.history, ctx, levels)}
    if len(chosen) < free and first.continues not in on_rungs:
        chosen.append(_to_next_rung(first, ctx, levels))
    if len(chosen) < free:
        lowest = {**ctx.last.config, epochs.name: levels[0]}
        configs = [a.config for a in ctx.history] + [d.config for d in chosen]
        taken = {ctx.space.key(longest(config, ctx.space)) for config in configs}
        for proposal in alongside(lowest, ctx, 2 * (free - len(chosen))):
            if len(chosen) >= free:
                break
            if ctx.space.key(longest(proposal.config, ctx.space)) in taken:
                continue  # tried at a rung already: its rung decides whether it goes on
            taken.add(ctx.space.key(longest(proposal.config, ctx.space)))
            chosen.append(fix_up(proposal, ctx.history, ctx.space, ctx.budget))
    return [replace(d, horizon=_horizon(d, ctx, whole)) for d in chosen]


def _horizon(decision: Decision, ctx: Context, whole: Budget) -> int:
    """The most epochs the decision's configuration may reach in this pipeline, for
    its stops to judge it by: the space's most, or under an epoch budget its start
    plus all the budget has left (a rung's attempt may be continued past its own)."""
    assert ctx.epochs is not None
    high = int(ctx.epochs.high)
    if not whole.max_epochs:
        return high
    start = next((a.checkpoint_epoch for a in ctx.history if a.run_id == decision.continues), 0)
    return min(high, start + whole.max_epochs - epochs_trained(ctx.history, ctx.space))


def promotable(ctx: Context, levels: Sequence[int]) -> list[Attempt]:
    """The paused attempts among the best 1/ETA (rounded down: none before ETA
    attempts reached it) of all the attempts that reached their rung, compared by
    the validation metric at that epoch; highest rung first, best first."""
    found: list[Attempt] = []
    continued = {a.config.get(RESUME_FROM) for a in ctx.history}
    paused = [a for a in _ended_on_rung(ctx.history, ctx, levels) if a.run_id not in continued]
    for level in sorted(levels[:-1], reverse=True):
        reached = [
            (score, a) for a in ctx.finished if (score := _score_at(a, level, ctx)) is not None
        ]
        reached.sort(key=lambda pair: -pair[0])
        best = {a.run_id for _, a in reached[: len(reached) // ETA]}
        here = [a for a in paused if a.checkpoint_epoch == level]
        found += [a for _, a in reached if a.run_id in best and a in here]
    return found


def _ended_on_rung(
    history: Sequence[Attempt], ctx: Context, levels: Sequence[int]
) -> list[Attempt]:
    """Finished attempts that trained all their epochs, ending on a rung below the
    top, and were not stopped early."""
    assert ctx.epochs is not None
    name = ctx.epochs.name
    return [
        a
        for a in history
        if a.finished
        and not a.stopped_early
        and a.checkpoint_epoch in levels[:-1]
        and a.checkpoint_epoch == int(float(a.config.get(name, 0)))
    ]


def _score_at(attempt: Attempt, epoch: int, ctx: Context) -> float | None:
    """The attempt's validation metric at `epoch`, signed so that higher is better
    (its test metric when it logs no validation curve and ended there); None when it
    never got there."""
    sign = 1.0 if ctx.target.direction is Direction.MAXIMIZE else -1.0
    if len(attempt.validation) >= epoch:
        return sign * attempt.validation[epoch - 1]
    if not attempt.validation and attempt.checkpoint_epoch == epoch and attempt.metric is not None:
        return sign * attempt.metric
    return None


def _to_next_rung(decision: Decision, ctx: Context, levels: Sequence[int]) -> Decision:
    """The rule set's decision trained to the first rung above where it starts (0
    from scratch, else the checkpoint it continues), so that it is compared there;
    no further than the epoch budget allows."""
    assert ctx.epochs is not None
    name = ctx.epochs.name
    start = next((a.checkpoint_epoch for a in ctx.history if a.run_id == decision.continues), 0)
    to = next((level for level in levels if level > start), levels[-1])
    if float(decision.config[name]) == to:
        return decision
    on_rung = replace(
        decision,
        config={**decision.config, name: ctx.epochs.cast(to)},
        reason=f"{decision.reason}; {name} {to}: the next rung",
    )
    return within_epoch_budget(on_rung, ctx.history, ctx.space, ctx.budget)


def _continued(base: Attempt, ctx: Context, levels: Sequence[int]) -> Decision:
    assert ctx.epochs is not None
    name, at = ctx.epochs.name, base.checkpoint_epoch
    to = next(level for level in levels if level > at)
    proposal = Proposal(
        {**base.config, name: ctx.epochs.cast(to)},
        f"attempt {base.number} is among the best 1/{ETA} of the attempts that reached "
        f"epoch {at}: continuing it from its checkpoint to epoch {to}",
        base.run_id,
        continues=base.run_id,
    )
    return fix_up(proposal, ctx.history, ctx.space, ctx.budget)
