"""When to stop a running attempt, judged from outside on the per-epoch validation
curve it logs: as soon as the curve shows the target met, falls below the median of
the pipeline's earlier attempts at the same epoch (Optuna's MedianPruner: the median
stopping rule), or shows that the target is out of its reach within the most epochs
the search would give it. How far is far enough is sized by statistics
(stop_interval): the validation set's size and the metric's noise, and the
validation-test gap the pipeline's finished attempts measured. Where the validation
set is too small to tell, the curve is stopped where it reaches the target, so that
its test metric is measured (the policy continues it if that falls short), and never
called hopeless or behind on noise.

A pure function of the curve, so it works for any project that logs a validation
metric per epoch; `ct.yaml`'s `stop_early` section tunes or disables it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ct_service.stop_interval import FIT_POINTS, Evidence, Interval, interval, is_proportion
from ct_service.target import Direction, Target

NO_EVIDENCE = Evidence()  # no set sizes logged, no gap measured


@dataclass(frozen=True)
class StopRule:
    enabled: bool = True
    metric: str = ""  # the per-epoch validation metric; "" = val_<target without test_>
    margin: float | None = None  # a fixed margin over the threshold instead of the interval
    confidence: float = 0.8  # how sure a stop must be that the test metric agrees
    min_epochs: int = 3  # epochs seen before a curve may be called hopeless
    optimism: float = 2.0  # the extrapolated gain is taken this many times over
    behind: bool = True  # stop a curve below the earlier attempts' median at its epoch
    behind_after: int = 2  # epochs seen before a curve may be called behind

    @classmethod
    def from_spec(cls, spec: Any) -> StopRule:
        """ct.yaml's `stop_early`: false, true, or a mapping of the fields above."""
        if spec is None or spec is True:
            return cls()
        if spec is False:
            return cls(enabled=False)
        if not isinstance(spec, Mapping):
            raise ValueError("stop_early must be true, false or a mapping")
        known = {
            "enabled",
            "metric",
            "margin",
            "confidence",
            "min_epochs",
            "optimism",
            "behind",
            "behind_after",
        }
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"stop_early: unknown key {sorted(unknown)[0]!r}")
        return cls(
            enabled=_flag(spec.get("enabled", True), "enabled"),
            metric=str(spec.get("metric", "")),
            margin=None if spec.get("margin") is None else _number(spec["margin"], "margin", 0.0),
            confidence=_confidence(spec.get("confidence", cls.confidence)),
            min_epochs=int(_number(spec.get("min_epochs", cls.min_epochs), "min_epochs", 2.0)),
            optimism=_number(spec.get("optimism", cls.optimism), "optimism", 1.0),
            behind=_flag(spec.get("behind", True), "behind"),
            behind_after=int(
                _number(spec.get("behind_after", cls.behind_after), "behind_after", 1.0)
            ),
        )

    @property
    def z(self) -> float:
        """Standard errors of a normal distribution one-sided at the confidence."""
        return statistics.NormalDist().inv_cdf(self.confidence)

    def validation_metric(self, target: Target) -> str:
        if self.metric:
            return self.metric
        name = target.metric.removeprefix("test_")
        return name if name.startswith("val_") else f"val_{name}"


class StopKind(str, Enum):
    TARGET_MET = "target met"
    HOPELESS = "hopeless"
    BEHIND = "behind"  # below the earlier attempts' median at the same epoch

    @classmethod
    def gave_up(cls, stopped_early: str) -> bool:
        """Whether a run's ct.stopped_early says it was stopped as not worth its
        epochs (hopeless or behind), rather than for meeting the target."""
        return stopped_early.startswith((f"{cls.HOPELESS.value}:", f"{cls.BEHIND.value}:"))


@dataclass(frozen=True)
class Stop:
    kind: StopKind
    epoch: int  # the last epoch seen
    reason: str  # one line, for humans
    interval: Interval | None = None  # what it was judged with (None: a fixed margin)


def judge(
    values: Sequence[float],
    target: Target,
    rule: StopRule,
    horizon: int,
    evidence: Evidence = NO_EVIDENCE,
    earlier_curves: Sequence[Sequence[float]] = (),
    margin: float | None = None,
) -> Stop | None:
    """Stop after the last of `values` (the validation metric, one per epoch from the
    first), or None to go on. `horizon`: the most epochs this configuration would be
    trained. `evidence`: the validation and test sets' sizes and the validation-test
    gaps the pipeline's finished attempts measured, which size the interval
    (stop_interval); `margin` (or ct.yaml's `margin`) fixes the target-met margin
    instead. `earlier_curves`: the same metric of the pipeline's other finished
    attempts (not the one this run continues), for the median rule."""
    if not rule.enabled or not values or not all(math.isfinite(v) for v in values):
        return None
    fixed = margin if margin is not None else rule.margin
    if fixed is not None:
        return _judge_fixed(values, target, rule, horizon, fixed, earlier_curves)
    found = interval_for(values, target, rule, evidence)
    if found is None:  # the noise cannot be told yet: no stop on what may be noise
        return None
    sign = 1.0 if target.direction is Direction.MAXIMIZE else -1.0
    gains = [sign * v for v in values]  # higher is better from here on
    goal = sign * target.threshold
    name = rule.validation_metric(target)
    epoch = len(values)
    smoothed = sum(gains[-2:]) / len(gains[-2:])  # one lucky epoch does not stop a run
    if too_small(found, target):
        if smoothed < goal + found.gap:
            return None  # nor can it tell a hopeless or a behind curve from noise
        return Stop(
            StopKind.TARGET_MET,
            epoch,
            f"{name} {values[-1]:.4g} at epoch {epoch} reaches the target, but the "
            f"validation set is too small to tell ({found.describe()}): stopping to "
            "measure the test metric",
            found,
        )
    if smoothed >= goal + found.margin:
        return Stop(
            StopKind.TARGET_MET,
            epoch,
            f"{name} {values[-1]:.4g} at epoch {epoch} meets the target: {found.describe()}",
            found,
        )
    if epoch >= horizon:
        return None
    if rule.behind and epoch >= rule.behind_after:
        median = _median_ahead(values, earlier_curves, target)
        if median is not None:
            # two values on the same set: their difference has up to sqrt(2) times the noise
            band = found.z * math.sqrt(2.0) * found.noise_at(median)
            if sign * median - max(gains) > band:
                return Stop(
                    StopKind.BEHIND,
                    epoch,
                    f"{name} {values[-1]:.4g} at epoch {epoch} is behind the median "
                    f"{median:.4g} of the earlier attempts at that epoch by more than "
                    f"its noise ({band:.3g})",
                    found,
                )
    if epoch < rule.min_epochs:
        return None
    reach = _optimistic_reach(gains, horizon, rule.optimism)
    aim = goal + found.gap - found.z * found.spread
    if reach < aim:
        return Stop(
            StopKind.HOPELESS,
            epoch,
            f"{name} {values[-1]:.4g} at epoch {epoch} extrapolates to at best "
            f"{sign * reach:.4g} by epoch {horizon}, short of the {sign * aim:.4g} "
            f"validation needs for {target.threshold:g} ({found.describe()})",
            found,
        )
    return None


def interval_for(
    values: Sequence[float], target: Target, rule: StopRule, evidence: Evidence
) -> Interval | None:
    """The interval the rules judge `values` with (None: noise not yet measurable)."""
    sign = 1.0 if target.direction is Direction.MAXIMIZE else -1.0
    return interval([sign * v for v in values], target.metric, target.threshold, evidence, rule.z)


def too_small(found: Interval, target: Target) -> bool:
    """Whether no validation value of a proportion could clear the target by the
    interval: the validation set is too small to tell."""
    if not is_proportion(target.metric) or target.direction is not Direction.MAXIMIZE:
        return False
    return target.threshold + found.margin > 1.0


def _judge_fixed(
    values: Sequence[float],
    target: Target,
    rule: StopRule,
    horizon: int,
    needed: float,
    earlier_curves: Sequence[Sequence[float]],
) -> Stop | None:
    """The rules with a fixed margin (ct.yaml's `margin`, or one a decision asked
    for): no interval; the hopeless rule aims at the target itself."""
    sign = 1.0 if target.direction is Direction.MAXIMIZE else -1.0
    gains = [sign * v for v in values]
    goal = sign * target.threshold
    name = rule.validation_metric(target)
    epoch = len(values)
    # the last two epochs' mean beats the threshold by the margin (a lone first
    # epoch by twice the margin), so one lucky epoch does not stop a run
    smoothed = sum(gains[-2:]) / len(gains[-2:])
    if smoothed >= goal + (needed if epoch >= 2 else 2 * needed):
        return Stop(
            StopKind.TARGET_MET,
            epoch,
            f"{name} {values[-1]:.4g} at epoch {epoch} meets the target with a margin of "
            f"{needed:g}",
        )
    if epoch >= horizon:
        return None
    if rule.behind and epoch >= rule.behind_after:
        median = _median_ahead(values, earlier_curves, target)
        if median is not None:
            return Stop(
                StopKind.BEHIND,
                epoch,
                f"{name} {values[-1]:.4g} at epoch {epoch} is behind the median "
                f"{median:.4g} of the earlier attempts at that epoch",
            )
    if epoch < rule.min_epochs:
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


def _median_ahead(
    values: Sequence[float], earlier_curves: Sequence[Sequence[float]], target: Target
) -> float | None:
    """The earlier attempts' median at this epoch when Optuna's MedianPruner prunes
    the curve (its best value so far is worse than that median), else None. The
    earlier curves are the study's completed trials, one report per epoch."""
    import optuna
    from optuna.trial import create_trial

    epoch = len(values)
    at_epoch = [
        c[epoch - 1] for c in earlier_curves if len(c) >= epoch and all(math.isfinite(v) for v in c)
    ]
    if not at_epoch:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if target.direction is Direction.MAXIMIZE else "minimize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )
    for curve in earlier_curves:
        if curve and all(math.isfinite(v) for v in curve):
            study.add_trial(
                create_trial(
                    value=curve[-1],
                    intermediate_values={e: v for e, v in enumerate(curve, start=1)},
                )
            )
    trial = study.ask()
    for e, value in enumerate(values, start=1):
        trial.report(value, e)
    return statistics.median(at_epoch) if trial.should_prune() else None


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


def _confidence(value: Any) -> float:
    number = _number(value, "confidence", 0.5)
    if number >= 1.0:
        raise ValueError(f"stop_early.confidence must be below 1, got {value!r}")
    return number


def _number(value: Any, key: str, low: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"stop_early.{key} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < low:
        raise ValueError(f"stop_early.{key} must be at least {low:g}, got {value!r}")
    return number
