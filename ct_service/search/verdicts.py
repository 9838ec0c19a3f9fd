"""The verdicts that end a search: promote an attempt that met the target, or stop
because a budget (attempts, epochs, wall time) is spent."""

from __future__ import annotations

from ct_service.search.context import Context
from ct_service.search.decision import Action, Decision
from ct_service.search.fixups import epochs_trained


class Promote:
    """An attempt met the target: the last one, when attempts train one at a time;
    the best of those that did, when several trained at once."""

    name = "promote"

    def judge(self, ctx: Context) -> Decision | None:
        met = [a for a in ctx.finished if ctx.target.is_met(a.metric)]
        if not met:
            return None
        winner = met[0]
        return Decision(
            Action.PROMOTE,
            f"attempt {winner.number} reached {ctx.target.metric} {winner.metric:.4g} "
            f"(target {ctx.target.describe()})",
            derived_from=winner.run_id,
        )


class AttemptsSpent:
    """As many attempts as CT_MAX_ATTEMPTS allows."""

    name = "attempts spent"

    def judge(self, ctx: Context) -> Decision | None:
        if len(ctx.history) < ctx.budget.max_attempts:
            return None
        return _spent(ctx, f"{len(ctx.history)} of {ctx.budget.max_attempts} attempts")


class EpochsSpent:
    """As many epochs trained, over all attempts, as CT_MAX_EPOCHS allows."""

    name = "epochs spent"

    def judge(self, ctx: Context) -> Decision | None:
        if not ctx.budget.max_epochs:
            return None
        trained = epochs_trained(ctx.history, ctx.space)
        if trained < ctx.budget.max_epochs:
            return None
        return _spent(ctx, f"{trained} of {ctx.budget.max_epochs} epochs")


class WallTimeSpent:
    """The pipeline has run as long as CT_MAX_WALL_SECONDS allows."""

    name = "wall time spent"

    def judge(self, ctx: Context) -> Decision | None:
        limit = ctx.budget.max_wall_seconds
        if not limit or ctx.elapsed_seconds < limit:
            return None
        return _spent(ctx, f"{ctx.elapsed_seconds:.0f} s of {limit:.0f} s")


def _spent(ctx: Context, what: str) -> Decision:
    return Decision(Action.STOP, f"budget spent: {what}; {ctx.best_text()}", budget_spent=True)
