"""Whether production has decayed: a pure rule, its score on new data and the score it
was promoted with in, a verdict with its one-line reason out (no I/O).

Production has decayed when its score on the newest data version misses the target,
or is worse than the score it was promoted with by more than the tolerance
(CT_DECAY_TOLERANCE, in the metric's own units: 0.02 is two points of accuracy). Both
numbers are in the reason, which becomes the decay pipeline's trigger reason and the
notification's subject."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ct_service.target import Direction, Target

PREFIX = "decay: "  # a decay pipeline's reason starts so


@dataclass(frozen=True)
class Verdict:
    decayed: bool
    reason: str  # one line, with both numbers


def judge(
    target: Target,
    scored: float,
    promoted: float | None,
    tolerance: float,
    subject: str,
    data: str,
) -> Verdict:
    """`subject` ("production lenet v3") scored `scored` on data version `data`;
    `promoted`: the score it was promoted with (None: not recorded)."""
    metric = target.metric
    then = f"promoted with {promoted:.4f}" if promoted is not None else "promoted score unknown"
    said = f"{subject} scores {metric} {scored:.4f} on data {data} ({then})"
    if not math.isfinite(scored) or not target.is_met(scored):
        return Verdict(True, f"{PREFIX}{said}: misses the target {target.describe()}")
    if promoted is not None and math.isfinite(promoted):
        worse = promoted - scored if target.direction is Direction.MAXIMIZE else scored - promoted
        if worse > tolerance:
            return Verdict(
                True,
                f"{PREFIX}{said}: {worse:.4f} worse than it was promoted with, more than the "
                f"tolerance {tolerance:g}",
            )
    return Verdict(False, f"holds: {said}; target {target.describe()}, tolerance {tolerance:g}")
