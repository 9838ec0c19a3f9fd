"""Remedies from the learning curves: the change a finished attempt's curves point
to (REMEDIES by finding, HOPELESS_REMEDIES after it gave up, FALLBACK so a search
never stalls while the space has room), and the retry of a crash with nothing
finished, clamped into the search space."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ct_service.attempt import Attempt
from ct_service.curves import Finding, diagnose
from ct_service.search.context import Context, gave_up
from ct_service.search.continuation import continues_from
from ct_service.search.decision import Proposal
from ct_service.search.fixups import longest
from ct_service.search.moves import Move, Moves, apply, changes, directions, only_epochs
from ct_service.space import Role, SearchSpace

# What each finding points to, most telling first; each entry is tried as one proposal.
REMEDIES: dict[Finding, tuple[Moves, ...]] = {
    Finding.DIVERGING: (
        (Move(Role.LEARNING_RATE, False, 3.0),),
        (Move(Role.LEARNING_RATE, False, 10.0),),
    ),
    Finding.OVERFITTING: (
        (Move(Role.REGULARIZATION, True),),
        (Move(Role.REGULARIZATION, True), Move(Role.WIDTH, False)),
        (Move(Role.LEARNING_RATE, False, 3.0),),
    ),
    Finding.LEARNING_SLOWLY: (
        (Move(Role.LEARNING_RATE, True, 3.0),),
        (Move(Role.LEARNING_RATE, True, 3.0), Move(Role.EPOCHS, True)),
        (Move(Role.EPOCHS, True),),
    ),
    Finding.NOT_CONVERGED: (
        (Move(Role.EPOCHS, True),),
        (Move(Role.EPOCHS, True, 3.0),),
        (Move(Role.LEARNING_RATE, True, 3.0),),
    ),
    Finding.UNDERFITTING: (
        (Move(Role.DEPTH, True), Move(Role.EPOCHS, True)),
        (Move(Role.WIDTH, True),),
        (Move(Role.DEPTH, True),),
        (Move(Role.EPOCHS, True),),
        (Move(Role.LEARNING_RATE, True, 3.0),),
    ),
}
# After an attempt stopped as hopeless (its curve cannot reach the target in any
# number of epochs the space allows): more capacity or a faster learning rate, never
# more epochs of the same model.
HOPELESS_REMEDIES: tuple[Moves, ...] = (
    (Move(Role.DEPTH, True), Move(Role.WIDTH, True)),
    (Move(Role.WIDTH, True),),
    (Move(Role.DEPTH, True),),
    (Move(Role.LEARNING_RATE, True, 3.0),),
    (Move(Role.SCHEDULE, True),),
    (Move(Role.REGULARIZATION, True),),
    (Move(Role.LEARNING_RATE, False, 3.0),),
)
# Tried after the remedies, so a search never stalls while the space has room.
FALLBACK: tuple[Moves, ...] = (
    (Move(Role.EPOCHS, True),),
    (Move(Role.DEPTH, True),),
    (Move(Role.WIDTH, True),),
    (Move(Role.REGULARIZATION, True),),
    (Move(Role.LEARNING_RATE, False, 3.0),),
    (Move(Role.LEARNING_RATE, True, 3.0),),
    # the other way: a project without curves learns only from its results
    (Move(Role.REGULARIZATION, False),),
    (Move(Role.WIDTH, False),),
    (Move(Role.DEPTH, False),),
)


class CurveRemedy:
    """The first untried change the curves of a finished attempt point to, best
    attempt first; never a change in a direction that made the metric worse before,
    never only more epochs of one that gave up. When attempts stop early, every
    proposal gets the most epochs the space allows. Only more epochs of an attempt
    with a checkpoint of its last epoch continues it."""

    name = "curve remedy"

    def propose(self, ctx: Context) -> Proposal | None:
        space = ctx.space
        for base in ctx.finished:
            diagnosis = diagnose(base)
            remedies = REMEDIES.get(diagnosis.finding, ())
            evidence = f"attempt {base.number} {diagnosis.finding.value}: {diagnosis.evidence}"
            if gave_up(base):
                remedies = HOPELESS_REMEDIES
                evidence = f"attempt {base.number} stopped early, {base.stopped_early}"
            fallback = FALLBACK
            if diagnosis.finding is Finding.NO_CURVES:  # results only: spread the moves
                fallback = tuple(_least_explored_first(FALLBACK, ctx.finished, space))
            for moves in remedies + fallback:
                proposal = apply(moves, base.config, space)
                if proposal is not None and ctx.stop_rule is not None:
                    proposal = longest(proposal, space)
                if proposal is None or not ctx.is_new(proposal):
                    continue
                if gave_up(base) and only_epochs(base.config, proposal, space):
                    continue
                if directions(base.config, proposal, space) & ctx.worse:
                    continue
                continues = continues_from(base, proposal, ctx)
                how = (
                    f", continuing attempt {base.number} from its checkpoint at epoch "
                    f"{base.checkpoint_epoch}"
                    if continues
                    else ""
                )
                return Proposal(
                    proposal,
                    f"{evidence}; {changes(base.config, proposal, space)}{how}",
                    base.run_id,
                    continues=continues,
                )
        return None


class ClampedRetry:
    """No attempt finished: the crashed one with its parameters brought inside the
    search space, if that is new."""

    name = "clamped retry"

    def propose(self, ctx: Context) -> Proposal | None:
        if ctx.finished:
            return None
        last, space = ctx.last, ctx.space
        inside = {d.name: d.clamp(last.config[d.name]) for d in space.outside(last.config)}
        clamped = space.normalise({**last.config, **inside})
        if not ctx.is_new(clamped):
            return None
        return Proposal(
            clamped,
            f"retrying inside the search space: {changes(last.config, clamped, space)}",
            last.run_id,
        )


def _least_explored_first(
    moves: Sequence[Moves], finished: Sequence[Attempt], space: SearchSpace
) -> list[Moves]:
    """`moves` ordered by how often the pipeline has changed their dimensions already
    (stable otherwise): without curves to point the way, one dimension is not climbed
    step by step while the others were never tried."""
    by_run = {a.run_id: a for a in finished}
    changed: Counter[str] = Counter()
    for attempt in finished:
        base = by_run.get(attempt.derived_from)
        if base is not None:
            changed.update(name for name, _ in directions(base.config, attempt.config, space))

    def times(option: Moves) -> int:
        return sum(changed[d.name] for move in option for d in space.with_role(move.role))

    return sorted(moves, key=times)
