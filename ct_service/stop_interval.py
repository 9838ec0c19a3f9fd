"""How far a validation value may lie from the test metric it stands for, sized by
statistics rather than a constant: the stop rules (stop_early.judge) stop a curve as
"target met" only once its validation value clears the target by this interval, and
call it hopeless or behind only beyond it.

Two things separate a validation value from the test metric the target is set on:
- **noise**: both are measured on finite sets. For a proportion (accuracy) with a
  known count, the binomial standard error sqrt(p (1 - p) / n); otherwise the curve's
  own epoch-to-epoch spread (the residuals of the learning-curve fit);
- **the gap** between the two sets (a validation split harder or easier than the test
  set): measured on the pipeline's finished attempts as their last validation value
  less their test metric. With none measured it is 0, give or take both sets' noise;
  with k measured, their mean, and a new attempt's gap is predicted within
  tau sqrt(1 + 1/k), tau pooling the sets' noise (as one prior observation) with
  the gaps' own spread.

The counts come from the MLflow dataset inputs a run logs (`mlflow.log_input` with
context `validation` and `testing`): the profile's rows.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

PROPORTIONS = ("accuracy", "acc")  # metrics that are a share of examples counted right
VALIDATION_CONTEXTS = ("validation", "val", "valid", "eval", "evaluation")
TEST_CONTEXTS = ("testing", "test")
FIT_POINTS = 4  # epochs the curve's spread is measured over (as the hopeless fit)


@dataclass(frozen=True)
class Evidence:
    """What the interval is sized from, besides the curve itself."""

    validation_count: int | None = None  # examples in the validation set, if logged
    test_count: int | None = None
    gaps: tuple[float, ...] = ()  # finished attempts' last validation - test, better-signed


@dataclass(frozen=True)
class Interval:
    """In the better direction (higher is better): a validation value v predicts the
    test metric as v - gap, give or take `spread` (one standard error)."""

    noise: float  # one standard error of a validation value at the target
    source: str  # how `noise` was measured, for humans
    gap: float
    spread: float
    measured: int  # finished attempts the gap was measured on
    z: float  # standard errors asked for (from the rule's confidence)
    count: int | None = None  # the validation set's size, when the noise is binomial

    def noise_at(self, value: float | None) -> float:
        """The validation noise at `value` rather than at the target (a proportion's
        binomial noise depends on where it lies)."""
        if value is None or not self.count:
            return self.noise
        return binomial_error(value, self.count)

    @property
    def margin(self) -> float:
        """How far validation must clear the target for the test metric to."""
        return self.gap + self.z * self.spread

    def describe(self) -> str:
        if self.measured:
            better = "better" if self.gap >= 0 else "worse"
            gap = (
                f"validation {abs(self.gap):.3g} {better} than test over {self.measured} "
                "finished attempt(s)"
            )
        else:
            gap = "validation-test gap not measured yet"
        return (
            f"margin {self.margin:.3g}: {gap}, give or take {self.z:.2g} x {self.spread:.3g}; "
            f"noise {self.noise:.3g} from the {self.source}"
        )

    def as_tag(self) -> str:
        return json.dumps(
            {
                "margin": round(self.margin, 6),
                "noise": round(self.noise, 6),
                "source": self.source,
                "gap": round(self.gap, 6),
                "spread": round(self.spread, 6),
                "measured": self.measured,
                "z": round(self.z, 4),
            }
        )


def is_proportion(metric: str) -> bool:
    name = metric.lower()
    return name.endswith(PROPORTIONS)


def binomial_error(p: float, count: int) -> float:
    p = min(max(p, 0.0), 1.0)
    return math.sqrt(max(p * (1.0 - p), 0.25 / count) / count)  # never 0 at p = 0 or 1


def curve_spread(values: Sequence[float]) -> float | None:
    """The root-mean-square residual of v(e) = a + s/e over the last FIT_POINTS
    epochs (two parameters fitted: n - 2 degrees of freedom); None with fewer."""
    if len(values) < FIT_POINTS:
        return None
    epochs = range(len(values) - FIT_POINTS + 1, len(values) + 1)
    xs = [1.0 / e for e in epochs]
    ys = [values[e - 1] for e in epochs]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    intercept = mean_y - slope * mean_x
    squares = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return math.sqrt(squares / (len(xs) - 2))


def interval(
    values: Sequence[float],
    metric: str,
    threshold: float,
    evidence: Evidence,
    z: float,
) -> Interval | None:
    """The interval for a curve `values` (better-signed) of `metric` judged against
    `threshold` (in the metric's own units); None while its noise cannot be told
    (no count logged for a proportion, fewer than FIT_POINTS epochs otherwise)."""
    count = None
    if is_proportion(metric) and evidence.validation_count:
        count = evidence.validation_count
        noise = binomial_error(threshold, count)
        test_noise = binomial_error(threshold, evidence.test_count or count)
        source = f"binomial error of {count:,} validation examples"
    else:
        spread = curve_spread(values)
        if spread is None:
            return None
        noise = test_noise = spread
        source = f"curve's spread over its last {FIT_POINTS} epochs"
    prior = noise**2 + test_noise**2  # both sets' sampling noise, as one observation
    gaps = [g for g in evidence.gaps if math.isfinite(g)]
    if not gaps:
        return Interval(noise, source, 0.0, math.sqrt(prior), 0, z, count)
    mean = statistics.fmean(gaps)
    tau = math.sqrt((prior + sum((g - mean) ** 2 for g in gaps)) / len(gaps))
    spread = tau * math.sqrt(1.0 + 1.0 / len(gaps))
    return Interval(noise, source, mean, spread, len(gaps), z, count)


def gaps(finished: Iterable[tuple[float, Sequence[float]]], sign: float) -> tuple[float, ...]:
    """Last validation value less test metric, better-signed, of each finished attempt
    given as (test metric, validation curve)."""
    return tuple(
        sign * (curve[-1] - test)
        for test, curve in finished
        if curve and math.isfinite(test) and math.isfinite(curve[-1])
    )


def count_of(dataset_inputs: Iterable[Any], contexts: Sequence[str]) -> int | None:
    """Rows of the first dataset input logged with one of `contexts` (MLflow's
    DatasetInput: its dataset's profile JSON, its `mlflow.data.context` tag)."""
    for item in dataset_inputs:
        context = next(
            (t.value for t in item.tags if t.key == "mlflow.data.context"),
            "",
        )
        if context.lower() not in contexts:
            continue
        try:
            profile = json.loads(item.dataset.profile or "{}")
        except ValueError:
            continue
        rows = profile.get("num_rows")
        if rows is None:
            shape = profile.get("features_shape") or profile.get("targets_shape") or []
            rows = shape[0] if shape else None
        if isinstance(rows, int) and rows > 0:
            return rows
    return None
