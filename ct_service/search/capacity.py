"""The capacity jump: when the best attempt gave up while under-fitting, one big step
up in capacity and learning speed at once, before TPE samples the space."""

from __future__ import annotations

from ct_service.curves import Finding, diagnose
from ct_service.search.context import Context
from ct_service.search.decision import Proposal
from ct_service.search.fixups import longest
from ct_service.search.moves import Move, Moves, apply, changes, directions
from ct_service.space import Role

# One notch at a time would spend an attempt's first epochs on every step. Where the
# space has a learning-rate schedule, the faster rate also falls faster: training fast
# early and annealed late, a network gets within a few thousandths of its ceiling in a
# few epochs (measured on MNIST, 27,000 images: 0.9906 at epoch 4 against 0.9884 at a
# constant rate); a space without one skips to the next jump.
CAPACITY_JUMPS: tuple[Moves, ...] = (
    (
        Move(Role.DEPTH, True),
        Move(Role.WIDTH, True),
        Move(Role.WIDTH, True),
        Move(Role.LEARNING_RATE, True, 3.0),
        Move(Role.SCHEDULE, True),
    ),
    (
        Move(Role.DEPTH, True),
        Move(Role.WIDTH, True),
        Move(Role.WIDTH, True),
        Move(Role.LEARNING_RATE, True, 3.0),
    ),
    (Move(Role.DEPTH, True), Move(Role.WIDTH, True), Move(Role.WIDTH, True)),
)
UNDER_FITTING = (Finding.UNDERFITTING, Finding.NOT_CONVERGED, Finding.LEARNING_SLOWLY)


class CapacityJump:
    """The best attempt gave up (hopeless or behind) on a curve that under-fits (flat
    or slow, no sign of over-fitting or divergence): the first untried of
    CAPACITY_JUMPS from it that moves in no direction that made things worse, trained
    for the most epochs the space allows."""

    name = "capacity jump"

    def propose(self, ctx: Context) -> Proposal | None:
        best = ctx.best
        if best is None or not ctx.gave_up:
            return None
        diagnosis = diagnose(best)
        if diagnosis.finding not in UNDER_FITTING:
            return None
        for moves in CAPACITY_JUMPS:
            proposal = apply(moves, best.config, ctx.space)
            if proposal is None:
                continue
            proposal = longest(proposal, ctx.space)
            if not ctx.is_new(proposal) or directions(best.config, proposal, ctx.space) & ctx.worse:
                continue
            return Proposal(
                proposal,
                f"attempt {best.number} stopped early, {best.stopped_early}, "
                f"{diagnosis.finding.value}; more capacity: "
                f"{changes(best.config, proposal, ctx.space)}",
                best.run_id,
            )
        return None
