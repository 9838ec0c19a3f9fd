"""The search benchmark's tables: per task, every strategy's success rate and median
compute to target over the seeds (a miss counts as infinite), its ratio to the best
baseline and to the oracle; per half of the suite, how ct (and its replay) did.

The best baseline of a task is the baseline (old-rule, random, tpe, tpe-hyperband)
with the lowest median compute to target, the higher success rate breaking ties. The
oracle is the compute of the cheapest configuration any baseline trained on the task
(any seed) whose test metric reaches the target, trained just to the first epoch that
does (digits: just to the first boosting stage that does).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from search_strategies import Outcome, reaches
from search_suite import SuiteTask
from search_training import Trainer

BASELINES = ("old-rule", "random", "tpe", "tpe-hyperband")
SPLIT_COMMIT = "505704d"  # the commit that fixed the suite's design/held-out split
WITHIN_ORACLE = 3.0


@dataclass(frozen=True)
class Row:
    strategy: str
    rate: float  # share of the seeds that reached the target
    compute: float  # median compute to target; inf when most seeds missed
    cpu: float
    attempts: float
    wall: float


def rows(outcomes: Sequence[Outcome], strategies: Sequence[str]) -> list[Row]:
    found = []
    for name in strategies:
        mine = [r for r in outcomes if r.strategy == name]
        if mine:
            found.append(
                Row(
                    name,
                    sum(r.reached for r in mine) / len(mine),
                    _median([r.compute if r.reached else math.inf for r in mine]),
                    _median([r.cpu_seconds if r.reached else math.inf for r in mine]),
                    _median([r.attempts for r in mine]),
                    _median([r.wall_seconds for r in mine]),
                )
            )
    return found


def best_baseline(found: Sequence[Row]) -> Row | None:
    baselines = [r for r in found if r.strategy in BASELINES]
    return min(baselines, key=lambda r: (r.compute, -r.rate)) if baselines else None


def oracle(task: SuiteTask, outcomes: Sequence[Outcome], trainer: Trainer) -> float:
    """The cheapest compute to target among the configurations the baselines trained."""
    cheapest = math.inf
    for outcome in outcomes:
        if outcome.strategy not in BASELINES:
            continue
        for config in outcome.tried:
            curve = trainer.known(config, outcome.seed)
            if curve is None:
                continue
            if curve.stages:  # boosting: the first stage that reaches it
                steps = next((i for i, v in enumerate(curve.stages, 1) if reaches(task, v)), 0)
                cost = float(steps) if steps else math.inf
            else:
                epoch = next((i for i, v in enumerate(curve.test, 1) if reaches(task, v)), 0)
                cost = epoch * trainer.learner.cost(config) if epoch else math.inf
            cheapest = min(cheapest, cost)
    return cheapest


def task_table(
    task: SuiteTask, found: Sequence[Row], oracle_compute: float, seeds: int, unit: str
) -> str:
    sign = ">=" if task.maximize else "<="
    size = f"{task.samples:,} images" if task.samples else "the whole set"
    budget = f"{task.epochs_budget} epochs" if task.epochs_budget else "no compute cap"
    half = f" [{task.half} half]" if task.half else ""
    lines = [
        f"{task.name}{half}: {task.metric} {sign} {task.threshold:g}, {size}, budgets "
        f"{task.attempts} attempts and {budget}, {seeds} seed(s); compute in {unit}",
        f"{'strategy':<14} {'reached':>8} {'compute':>12} {'x best':>7} {'x oracle':>8} "
        f"{'CPU-s':>7} {'attempts':>8} {'wall s':>7}",
    ]
    best = best_baseline(found)
    for row in found:
        lines.append(
            f"{row.strategy:<14} {row.rate:>8.0%} {_figure(row.compute):>12} "
            f"{_ratio(row.compute, best.compute if best else None):>7} "
            f"{_ratio(row.compute, oracle_compute):>8} {_figure(row.cpu):>7} "
            f"{row.attempts:>8.1f} {row.wall:>7.0f}"
        )
    lines.append(f"{'oracle':<14} {'':>8} {_figure(oracle_compute):>12}")
    return "\n".join(lines) + "\n"


def summary(
    tasks: Sequence[SuiteTask],
    found: dict[str, list[Row]],
    oracles: dict[str, float],
    half: str,
    strategy: str,
) -> str:
    """How `strategy` did on one half: where its success rate is at least the best
    baseline's, the median and largest ratio of its median compute to the best
    baseline's (a miss: infinite; the best baseline missing while it reached: 0), and
    on how many tasks it is within WITHIN_ORACLE times the oracle."""
    mine = [t for t in tasks if t.half == half and t.name in found]
    pairs = []
    for task in mine:
        row = next((r for r in found[task.name] if r.strategy == strategy), None)
        best = best_baseline(found[task.name])
        if row is not None and best is not None:
            pairs.append((task, row, best))
    if not pairs:
        return f"{half} half: {strategy} not run\n"
    as_good = [t.name for t, r, _ in pairs if r.rate >= max(
        b.rate for b in found[t.name] if b.strategy in BASELINES)]  # fmt: skip
    ratios = [_ratio_value(r.compute, b.compute) for _, r, b in pairs]
    compared = [v for v in ratios if not math.isnan(v)]
    near = [
        t.name
        for t, r, _ in pairs
        if math.isfinite(r.compute) and r.compute <= WITHIN_ORACLE * oracles[t.name]
    ]
    return (
        f"{half} half, {strategy}: success rate >= the best baseline's on {len(as_good)} of "
        f"{len(pairs)} tasks ({', '.join(as_good) or 'none'}); compute to target x best "
        f"baseline over the {len(compared)} tasks where either reached it: median "
        f"{_figure(_median(compared), 2)}, largest {_figure(max(compared, default=math.nan), 2)}"
        f" (- : infinite, a miss); within {WITHIN_ORACLE:g}x the oracle on {len(near)} of "
        f"{len(pairs)}\n"
    )


def _ratio_value(value: float, best: float) -> float:
    """value / best; inf for a miss, 0 for a reach where the best baseline missed,
    nan where both missed (nothing to compare)."""
    if not (math.isfinite(value) or math.isfinite(best)):
        return math.nan
    if not math.isfinite(value):
        return math.inf
    if not math.isfinite(best):
        return 0.0  # reached where the best baseline did not
    return value / best if best else math.inf


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def _figure(value: float, digits: int = 0) -> str:
    return "-" if not math.isfinite(value) else f"{value:,.{digits}f}"


def _ratio(value: float, reference: float | None) -> str:
    if reference is None or not math.isfinite(value):
        return "-"
    if not math.isfinite(reference):
        return "<1"  # the reference missed: any search that reached it did better
    return f"{value / reference:.2f}" if reference else "-"
