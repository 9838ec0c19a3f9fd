"""When to stop a running attempt, judged from outside on the per-epoch validation
curve it logs: as soon as the curve shows the target met (with a margin), or shows
that the target is out of its reach within the most epochs the search would give it.

A pure function of the curve, so it works for any project that logs a validation
metric per epoch; `ct.yaml`'s `stop_early` section tunes or disables it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ct_service.target import Direction, Target

FIT_POINTS = 4  # the last epochs the hopeless extrapolation fits


@dataclass(frozen=True)
class StopRule:
    enabled: bool = True
    metric: str = ""  # the per-epoch validation metric; "" = val_<target without test_>
    margin: float = 0.005  # validation must beat the threshold by this much
    min_epochs: int = 3  # epochs seen before a curve may be called hopeless
    optimism: float = 2.0  # the extrapolated gain is taken this many times over

    @classmethod
    def from_spec(cls, spec: Any) -> StopRule:
        """ct.yaml's `stop_early`: false, true, or a mapping of the fields above."""
        if spec is None or spec is True:
            return cls()
        if spec is False:
            return cls(enabled=False)
        if not isinstance(spec, Mapping):
            raise ValueError("stop_early must be true, false or a mapping")
        unknown = set(spec) - {"enabled", "metric", "margin", "min_epochs", "optimism"}
        if unknown:
            raise ValueError(f"stop_early: unknown key {sorted(unknown)[0]!r}")
        return cls(
            enabled=_flag(spec.get("enabled", True), "enabled"),
            metric=str(spec.get("metric", "")),
            margin=_number(spec.get("margin", cls.margin), "margin", 0.0),
            min_epochs=int(_number(spec.get("min_epochs", cls.min_epochs), "min_epochs", 2.0)),
            optimism=_number(spec.get("optimism", cls.optimism), "optimism", 1.0),
        )

    def validation_metric(self, target: Target) -> str:
        if self.metric:
            return self.metric
        name = target.metric.removeprefix("test_")
        return name if name.startswith("val_") else f"val_{name}"


class StopKind(str, Enum):
    TARGET_MET = "target met"
    HOPELESS = "hopeless"


@dataclass(frozen=True)
class Stop:
    kind: StopKind
    epoch: int  # the last epoch seen
    reason: str  # one line, for humans


def judge(
    values: Sequence[float],
    target: Target,
    rule: StopRule,
    horizon: int,
    margin: float | None = None,
) -> Stop | None:
    """Stop after the last of `values` (the validation metric, one per epoch from the
    first), or None to go on. `horizon`: the most epochs this configuration would be
    trained. `margin` overrides the rule's (after a stop whose test metric fell short)."""
    if not rule.enabled or not values or not all(math.isfinite(v) for v in values):
        return None
    sign = 1.0 if target.direction is Direction.MAXIMIZE else -1.0
    gains = [sign * v for v in values]  # higher is better from here on
    goal = sign * target.threshold
    name = rule.validation_metric(target)
    epoch = len(values)
    needed = rule.margin if margin is None else margin
    # Target met: the last two epochs' mean beats the threshold by the margin (a lone
    # first epoch by twice the margin), so one lucky epoch does not stop a run.
    smoothed = sum(gains[-2:]) / len(gains[-2:])
    if smoothed >= goal + (needed if epoch >= 2 else 2 * needed):
        return Stop(
            StopKind.TARGET_MET,
            epoch,
            f"{name} {values[-1]:.4g} at epoch {epoch} meets the target with a margin of "
            f"{needed:g}",
        )
    if epoch < rule.min_epochs or epoch >= horizon:
        return None
    reach = _optimistic_reach(gains, horizon, rule.optimism)
    if reach < goal:
        return Stop(
            StopKind.HOPELESS,
            epoch,
            f"{name} {values[-1]:.4g} at epoch {epoch} extrapolates to at best "
            f"{sign * reach:.4g} by epoch {horizon}, short of {target.threshold:g}",
        )
    return None


def projected(values: Sequence[float], target: Target, horizon: int) -> float | None:
    """Where the curve is headed by `horizon` (the fit below, taken at face value),
    in the metric's own units; None with fewer than two finite values."""
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return None
    sign = 1.0 if target.direction is Direction.MAXIMIZE else -1.0
    intercept, slope, _ = _fit([sign * v for v in values])
    return sign * max(sign * values[-1], intercept + slope / max(horizon, len(values)))


def _optimistic_reach(gains: Sequence[float], horizon: int, optimism: float) -> float:
    """The best the curve may reach by `horizon`: a fit of v(e) = a - b/e (learning
    curves flatten like a power law) over its last epochs, its projected gain taken
    `optimism` times over, plus the fit's largest residual for noise."""
    intercept, slope, residual = _fit(gains)
    now = max(gains[-1], intercept + slope / len(gains))
    projected = intercept + slope / horizon
    return now + optimism * max(0.0, projected - now) + residual


def _fit(gains: Sequence[float]) -> tuple[float, float, float]:
    """Least squares of v(e) = a + s/e over the last FIT_POINTS epochs: (a, s, the
    largest residual)."""
    epochs = [e for e in range(len(gains) - FIT_POINTS + 1, len(gains) + 1) if e >= 1]
    xs = [1.0 / e for e in epochs]
    ys = [gains[e - 1] for e in epochs]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    intercept = mean_y - slope * mean_x
    residual = max(abs(y - (intercept + slope * x)) for x, y in zip(xs, ys, strict=True))
    return intercept, slope, residual


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"stop_early.{key} must be true or false, got {value!r}")
    return value


def _number(value: Any, key: str, low: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"stop_early.{key} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < low:
        raise ValueError(f"stop_early.{key} must be at least {low:g}, got {value!r}")
    return number
