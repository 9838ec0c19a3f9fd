"""What the project's earlier pipelines lend a new one: the first configuration of a
new pipeline (warm start), and a configuration that met the target before."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ct_service.attempt import Attempt
from ct_service.search.context import Context, rank
from ct_service.search.decision import Proposal
from ct_service.search.moves import changes
from ct_service.space import Config, SearchSpace
from ct_service.target import Target


class KnownGood:
    """The best configuration that met the target in an earlier pipeline of the
    project and is untried here, over this pipeline's own fixed parameters."""

    name = "known good"

    def propose(self, ctx: Context) -> Proposal | None:
        met = [a for a in ctx.prior if a.finished and ctx.target.is_met(a.metric)]
        known = next(
            (
                a
                for a in sorted(met, key=rank(ctx.target))
                if ctx.is_new(a.config) and not ctx.space.outside(a.config)
            ),
            None,
        )
        if known is None:
            return None
        space = ctx.space
        taken = {d.name: known.config[d.name] for d in space.dimensions if d.name in known.config}
        return Proposal(
            space.normalise({**ctx.last.config, **taken}),
            f"trying the configuration that reached {ctx.target.metric} "
            f"{known.metric:.4g} in an earlier pipeline (run {known.run_id[:8]})",
            known.run_id,
        )


def warm_start(
    config: Mapping[str, Any],
    given: set[str],
    prior: Sequence[Attempt],
    space: SearchSpace,
    target: Target,
) -> tuple[Config, str] | None:
    """A new pipeline's first configuration from the project's history: the best
    configuration that met the target in an earlier pipeline, else the earlier
    attempt that came closest. Only searched parameters not given explicitly are
    taken from it. None when there is no history or it changes nothing."""
    finished = [
        a for a in prior if a.finished and a.metric is not None and not space.outside(a.config)
    ]
    if not finished:
        return None
    best = min(finished, key=rank(target))
    assert best.metric is not None
    taken = {
        d.name: best.config[d.name]
        for d in space.dimensions
        if d.name in best.config and d.name not in given
    }
    warm = space.normalise({**config, **taken})
    if space.key(warm) == space.key(config):
        return None
    what = (
        "the configuration that reached"
        if target.is_met(best.metric)
        else "the closest earlier attempt, at"
    )
    return warm, (
        f"warm start: {what} {target.metric} {best.metric:.4g} in an earlier pipeline "
        f"(run {best.run_id[:8]}): {changes(config, warm, space)}"
    )
