"""Rounds of attempts trained at once (CT_PARALLEL_ATTEMPTS): the rule set's
proposal plus TPE's samples beside it, sharing the attempt and epoch budgets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ct_service.attempt import Attempt
from ct_service.search import rungs
from ct_service.search.context import Context
from ct_service.search.decision import Action, Decision
from ct_service.search.fixups import epochs_trained, fix_up
from ct_service.search.ruleset import decide_in
from ct_service.search.sampling import alongside
from ct_service.space import SearchSpace
from ct_service.stop_early import StopRule
from ct_service.target import Budget, Target


def decide_several(
    history: Sequence[Attempt],
    space: SearchSpace,
    target: Target,
    budget: Budget,
    slots: int,
    prior: Sequence[Attempt] = (),
    elapsed_seconds: float = 0.0,
    stop_rule: StopRule | None = None,
    halving: bool = True,
) -> list[Decision]:
    """Up to `slots` attempts to train at once (CT_PARALLEL_ATTEMPTS), every one
    counted against the attempt budget. The first is decide()'s; when it trains, each
    further one is a configuration TPE proposes from the finished attempts (its
    random start when there are few), different from everything tried or proposed,
    with the first one's epochs (the most the space allows under early stops): the
    remedy the curves point to, plus independent samples of the space beside it.
    A promotion or a stop is always alone. With `halving` (and a project that
    continues runs along one epochs dimension) the round is successive halving's
    instead (search.rungs): the best of each rung continued, new ones to the lowest."""
    free = min(slots, budget.max_attempts - len(history))
    whole = budget
    if budget.max_epochs and free > 1:  # the epochs left are shared: at least one each
        trained = epochs_trained(history, space)
        free = max(1, min(free, budget.max_epochs - trained))
        budget = replace(budget, max_epochs=trained + (budget.max_epochs - trained) // free)
    ctx = Context.of(history, space, target, budget, prior, elapsed_seconds, stop_rule)
    first = decide_in(ctx)
    if first.action is not Action.TRAIN:
        return [first]
    if halving and rungs.applies(ctx, slots):  # the last slots of a budget too
        return rungs.round_of(first, ctx, free, whole)
    if free <= 1:
        return [first]
    others = alongside(first.config, ctx, free - 1)
    return [first, *(fix_up(p, ctx.history, ctx.space, ctx.budget) for p in others)]
