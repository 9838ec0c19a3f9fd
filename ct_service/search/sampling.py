"""Configurations from Optuna's TPE (ct_service.sampler), fed with the pipeline's
finished attempts and, as a warm start, the project's earlier ones: the rule that
samples once the best attempt gave up, the one that samples when the curves point
nowhere new, and the attempts trained alongside."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ct_service import sampler
from ct_service.attempt import Attempt
from ct_service.curves import Finding, diagnose
from ct_service.search.context import Context, gave_up
from ct_service.search.decision import Proposal
from ct_service.search.fixups import longest
from ct_service.search.moves import changes
from ct_service.space import Role
from ct_service.stop_early import projected

SAMPLES_PER_DECISION = 20  # TPE samples drawn before giving up on finding an untried one
EARLIER_TOLD = 50  # at most this many attempts of earlier pipelines warm-start TPE


class _Sampled:
    """A new configuration from TPE over every finished attempt, trained for the most
    epochs the space allows (its early stops decide how many) unless the subclass
    samples the epochs too; the first of SAMPLES_PER_DECISION samples not tried yet.
    Seeded by the pipeline's first run: a replay decides the same. Subclasses say
    when it applies and why."""

    name = "sampled"
    samples_epochs = False  # True: TPE picks the epochs too, no early stop cuts them

    def applies(self, ctx: Context) -> bool:
        raise NotImplementedError

    def why(self, best: Attempt) -> str:
        if best.stopped_early:
            return f"attempt {best.number} stopped early, {best.stopped_early}"
        return f"no untried change around attempt {best.number}'s curves"

    def propose(self, ctx: Context) -> Proposal | None:
        best = ctx.best
        if best is None or not self.applies(ctx):
            return None
        told, earlier = _told(ctx.finished, ctx), _earlier(ctx)
        for offset in range(SAMPLES_PER_DECISION):
            params = sampler.propose(
                told + earlier,
                ctx.space,
                ctx.target,
                ctx.seed + offset,
                with_epochs=self.samples_epochs,
            )
            if params is None:
                return None
            proposal = ctx.space.normalise({**best.config, **params})
            if not self.samples_epochs:
                proposal = longest(proposal, ctx.space)
            if not ctx.is_new(proposal):
                continue
            return Proposal(
                proposal,
                f"{self.why(best)}; TPE over {_count(told, earlier)} proposes "
                f"{changes(best.config, proposal, ctx.space)}",
                best.run_id,
            )
        return None


class SampledAfterGivingUp(_Sampled):
    """The best attempt gave up (hopeless or behind): its configuration cannot reach
    the target, so TPE, not its curves, picks the next."""

    name = "sampled after giving up"

    def applies(self, ctx: Context) -> bool:
        return ctx.gave_up


class SampledWhenStuck(_Sampled):
    """Attempts stop early and no untried change is left around the curves (the best
    did not give up: that case is SampledAfterGivingUp's, which already sampled)."""

    name = "sampled when stuck"

    def applies(self, ctx: Context) -> bool:
        return ctx.stop_rule is not None and not ctx.gave_up


class SampledWithoutCurves(_Sampled):
    """The best attempt logged no per-epoch curves: there is no diagnosis to read, and
    the remedies' fallback would be a blind walk, one dimension and one 2x step at a
    time; a model-based sampler is the tool for a search that learns from results
    only. It picks the epochs too: without a curve no early stop can cut them."""

    name = "sampled without curves"
    samples_epochs = True

    def applies(self, ctx: Context) -> bool:
        return ctx.best is not None and diagnose(ctx.best).finding is Finding.NO_CURVES

    def why(self, best: Attempt) -> str:
        return f"attempt {best.number} logged no learning curves to diagnose"


def alongside(first: Mapping[str, Any], ctx: Context, count: int) -> list[Proposal]:
    """Up to `count` configurations TPE proposes (its random start when there are few
    finished attempts) to train beside `first`, the rule set's proposal: each untried
    and different from the others, with `first`'s epochs."""
    space, last = ctx.space, ctx.last
    taken = set(ctx.tried) | {space.key(first)}
    finished = [a for a in ctx.history if a.finished and a.metric is not None]
    told, earlier = _told(finished, ctx), _earlier(ctx)
    epochs = {d.name: first[d.name] for d in space.with_role(Role.EPOCHS) if d.name in first}
    chosen: list[Proposal] = []
    for offset in range(SAMPLES_PER_DECISION * (count + 1)):
        if len(chosen) >= count:
            break
        seed = ctx.seed + len(ctx.history) + offset
        params = sampler.propose(told + earlier, space, ctx.target, seed)
        if params is None:
            break
        config = space.normalise({**last.config, **params, **epochs})
        if space.key(config) in taken:
            continue
        taken.add(space.key(config))
        chosen.append(
            Proposal(
                config,
                f"trained alongside attempt {last.number + 1}: TPE over "
                f"{_count(told, earlier)} proposes {changes(last.config, config, space)}",
                last.run_id,
            )
        )
    return chosen


Told = list[tuple[Mapping[str, Any], float]]  # (configuration, score) pairs for TPE


def _told(finished: Sequence[Attempt], ctx: Context) -> Told:
    return [(a.config, _score(a, ctx)) for a in finished if a.metric is not None]


def _earlier(ctx: Context) -> Told:
    """TPE's warm start: the finished attempts of the project's earlier pipelines
    (the most recent EARLIER_TOLD) that lie in the space and are configurations this
    pipeline has not tried, told after its own: TPE models where the metric was
    good with both, and where they overlap this pipeline's own results count."""
    return [
        (a.config, _score(a, ctx))
        for a in ctx.prior[:EARLIER_TOLD]
        if a.finished
        and a.metric is not None
        and not ctx.space.outside(a.config)
        and ctx.is_new(a.config)
    ]


def _count(told: Told, earlier: Told) -> str:
    """'3 finished attempts', or with a warm start '3 finished attempts and 5 of
    earlier pipelines'."""
    own = f"{len(told)} finished attempts"
    return f"{own} and {len(earlier)} of earlier pipelines" if earlier else own


def _score(attempt: Attempt, ctx: Context) -> float:
    """What an attempt tells the sampler: its metric, or for one that gave up
    where its validation curve was headed by the most epochs the space allows (its
    metric at the stop would compare an early epoch with others' last)."""
    assert attempt.metric is not None
    if gave_up(attempt) and ctx.epochs is not None:
        headed = projected(attempt.validation, ctx.target, int(ctx.epochs.high))
        if headed is not None:
            return headed
    return attempt.metric
