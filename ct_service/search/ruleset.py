"""The rule set, in order: the first verdict that applies ends the search; else the
first rule that proposes decides what trains next, its proposal given the shared
fix-ups (fixups.fix_up); else the search stops, nothing new being left to try."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ct_service.attempt import Attempt
from ct_service.search.capacity import CapacityJump
from ct_service.search.context import Context
from ct_service.search.continuation import ContinueShortStop
from ct_service.search.decision import Action, Decision
from ct_service.search.earlier import KnownGood
from ct_service.search.fixups import fix_up
from ct_service.search.remedies import ClampedRetry, CurveRemedy
from ct_service.search.rules import Rule, Verdict
from ct_service.search.sampling import (
    SampledAfterGivingUp,
    SampledWhenStuck,
    SampledWithoutCurves,
)
from ct_service.search.verdicts import AttemptsSpent, EpochsSpent, Promote, WallTimeSpent
from ct_service.space import SearchSpace
from ct_service.stop_early import StopRule
from ct_service.target import Budget, Target

VERDICTS: tuple[Verdict, ...] = (
    Promote(),  # 1. an attempt met the target
    AttemptsSpent(),  # 2. the budget: CT_MAX_ATTEMPTS,
    EpochsSpent(),  #     CT_MAX_EPOCHS,
    WallTimeSpent(),  #     CT_MAX_WALL_SECONDS
)
RULES: tuple[Rule, ...] = (
    ContinueShortStop(),  # 3. validation met the target, the test metric fell short
    KnownGood(),  # 4. a configuration that met the target in an earlier pipeline
    CapacityJump(),  # 5. the best gave up while under-fitting: a big step up
    SampledAfterGivingUp(),  # 5. the best gave up, no jump left or not under-fitting: TPE
    SampledWithoutCurves(),  # 6. no curves to diagnose (results only): TPE
    CurveRemedy(),  # 6. what the finished attempts' curves point to
    SampledWhenStuck(),  # 6. stops on and nothing untried around the curves: TPE
    ClampedRetry(),  # 7. nothing finished: the crash, clamped into the space
)


def decide(
    history: Sequence[Attempt],
    space: SearchSpace,
    target: Target,
    budget: Budget,
    prior: Sequence[Attempt] = (),
    elapsed_seconds: float = 0.0,
    stop_rule: StopRule | None = None,
) -> Decision:
    """Decide what follows the last attempt of `history` (this pipeline's attempts, in
    order). `prior` holds attempts of earlier pipelines of the same project.
    `stop_rule`: how attempts are stopped early (None: they are not); with it, a new
    configuration is given the most epochs the space allows, since its training
    stops as soon as its curve meets the target or shows it cannot. The steps are
    VERDICTS then RULES, in order."""
    ctx = Context.of(history, space, target, budget, prior, elapsed_seconds, stop_rule)
    return decide_in(ctx)


def decide_in(ctx: Context) -> Decision:
    """decide() on a context already computed. After a failed attempt, every reason
    but a verdict's starts by saying so."""
    for verdict in VERDICTS:
        decision = verdict.judge(ctx)
        if decision is not None:
            return decision
    for rule in RULES:
        proposal = rule.propose(ctx)
        if proposal is not None:
            decision = fix_up(proposal, ctx.history, ctx.space, ctx.budget)
            return replace(decision, reason=ctx.prefix + decision.reason)
    if not ctx.finished:
        return Decision(
            Action.STOP, ctx.prefix + "no finished attempt to derive a new configuration from"
        )
    return Decision(
        Action.STOP,
        f"{ctx.prefix}search space exhausted around every finished attempt; {ctx.best_text()}",
    )
