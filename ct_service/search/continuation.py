"""Training an attempt on from its last checkpoint instead of from scratch: the rule
that continues a target-met stop whose test metric fell short, and the test of
whether a proposal that only adds epochs can continue its base."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ct_service.attempt import Attempt
from ct_service.run_tags import RESUME_FROM_PARAM as RESUME_FROM
from ct_service.search.context import Context
from ct_service.search.decision import Proposal
from ct_service.stop_early import StopKind


class ContinueShortStop:
    """The latest attempt not continued yet was stopped because its validation curve
    met the target, yet its test metric falls short: train it on from its checkpoint,
    and stop it only once validation clears the target by that shortfall more. (One
    attempt at a time, that is the last one; in a round of several, any of them.)"""

    name = "continue a short stop"

    def propose(self, ctx: Context) -> Proposal | None:
        rule = ctx.stop_rule
        continued = {a.config.get(RESUME_FROM) for a in ctx.history}
        short = [
            a
            for a in ctx.history
            if a.finished and a.stopped_as(StopKind.TARGET_MET.value) and a.run_id not in continued
        ]
        if rule is None or not short:
            return None
        last = short[-1]
        if last.metric is None or not last.validation or RESUME_FROM not in last.config:
            return None
        if ctx.epochs is None or last.checkpoint_epoch >= float(last.config[ctx.epochs.name]):
            return None
        if rule.margin is None:  # the interval: it now counts this attempt's gap
            margin = None
            then = "to stop once validation clears the target by the gap it measured"
        else:  # a fixed margin: that margin more, and the shortfall
            shortfall = abs(last.validation[-1] - last.metric)
            margin = (last.stop_margin or rule.margin) + max(shortfall, rule.margin)
            then = f"to stop with a validation margin of {margin:.3g}"
        target = ctx.target
        return Proposal(
            dict(last.config),
            f"attempt {last.number} was stopped at epoch {last.checkpoint_epoch} with "
            f"{rule.validation_metric(target)} {last.validation[-1]:.4g}, but "
            f"{target.metric} {last.metric:.4g} misses {target.describe()}: continuing it "
            f"from its checkpoint, {then}",
            last.run_id,
            continues=last.run_id,
            stop_margin=margin,
        )


def continues_from(base: Attempt, proposal: Mapping[str, Any], ctx: Context) -> str:
    """base's run id when the proposal only trains base longer, so it can start from
    base's last checkpoint instead of from scratch: nothing but the epochs grows,
    base finished with a checkpoint of its last epoch, and the project can continue
    a run (it declares the resume_from parameter). Else ""."""
    if RESUME_FROM not in base.config or ctx.epochs is None:
        return ""
    name = ctx.epochs.name
    changed = {k for k in proposal if proposal[k] != base.config.get(k)} - {RESUME_FROM}
    if changed - {name} or float(proposal[name]) <= base.checkpoint_epoch:
        return ""
    if base.stopped_early:  # stopped on purpose: more of the same is not the remedy
        return ""
    if base.checkpoint_epoch != int(float(base.config[name])):
        return ""
    return base.run_id
