"""What the rules read, computed once per decision from the history: the finished
attempts best first, what was tried, the directions that made things worse, whether
the best one gave up, the single epochs dimension. Pure; no rule recomputes these."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ct_service.attempt import Attempt
from ct_service.search.fixups import longest, single_epochs
from ct_service.search.moves import directions
from ct_service.space import ConfigKey, Dimension, Role, SearchSpace
from ct_service.stop_early import StopKind, StopRule
from ct_service.target import Budget, Target


@dataclass(frozen=True)
class Context:
    history: tuple[Attempt, ...]  # this pipeline's attempts, in order (at least one)
    space: SearchSpace
    target: Target
    budget: Budget
    prior: tuple[Attempt, ...]  # attempts of earlier pipelines of the same project
    elapsed_seconds: float
    stop_rule: StopRule | None  # how attempts are stopped early (None: they are not)
    finished: tuple[Attempt, ...]  # the finished attempts, best first (no metric last)
    tried: frozenset[ConfigKey]  # see _tried
    worse: frozenset[tuple[str, bool]]  # (dimension, raised?) not to repeat: see _worse
    epochs: Dimension | None  # the space's one epochs dimension (None: none or several)

    @classmethod
    def of(
        cls,
        history: Sequence[Attempt],
        space: SearchSpace,
        target: Target,
        budget: Budget,
        prior: Sequence[Attempt] = (),
        elapsed_seconds: float = 0.0,
        stop_rule: StopRule | None = None,
    ) -> Context:
        if not history:
            raise ValueError("the policy needs at least one attempt")
        return cls(
            history=tuple(history),
            space=space,
            target=target,
            budget=budget,
            prior=tuple(prior),
            elapsed_seconds=elapsed_seconds,
            stop_rule=stop_rule,
            finished=tuple(sorted((a for a in history if a.finished), key=rank(target))),
            tried=frozenset(_tried(history, space)),
            worse=frozenset(_worse(history, space, target)),
            epochs=single_epochs(space),
        )

    @property
    def last(self) -> Attempt:
        return self.history[-1]

    @property
    def best(self) -> Attempt | None:
        """The best finished attempt (one without a metric only if none has one)."""
        return self.finished[0] if self.finished else None

    @property
    def gave_up(self) -> bool:
        """The best finished attempt was stopped as hopeless or behind."""
        return self.best is not None and gave_up(self.best)

    @property
    def seed(self) -> int:
        """The sampler's seed: the pipeline's first run, so a replay decides the same."""
        return int(hashlib.sha256(self.history[0].run_id.encode()).hexdigest()[:8], 16)

    @property
    def prefix(self) -> str:
        """What a reason after a failed attempt starts with."""
        last = self.last
        if last.finished:
            return ""
        return f"attempt {last.number} failed ({last.failure or 'no reason given'}); "

    def is_new(self, config: Mapping[str, Any]) -> bool:
        return self.space.key(config) not in self.tried

    def best_text(self) -> str:
        best = self.best
        if best is None or best.metric is None:
            return "no attempt finished"
        return (
            f"best {self.target.metric} {best.metric:.4g} (attempt {best.number}), "
            f"target {self.target.describe()}"
        )


def gave_up(attempt: Attempt) -> bool:
    """Stopped early as not worth its epochs (hopeless or behind)."""
    return StopKind.gave_up(attempt.stopped_early)


def rank(target: Target) -> Callable[[Attempt], tuple[int, float]]:
    """Sort key: best metric first (missing metrics last)."""
    sign = -1.0 if target.direction.value == "maximize" else 1.0

    def key(attempt: Attempt) -> tuple[int, float]:
        if attempt.metric is None:
            return (1, 0.0)
        return (0, sign * attempt.metric)

    return key


def _tried(history: Sequence[Attempt], space: SearchSpace) -> set[ConfigKey]:
    """The configurations tried: each attempt's, and for one that gave up (hopeless
    or behind) the same trained for the most epochs the space allows, since that is
    how a new configuration is proposed under early stops (an epoch budget may have
    given the attempt fewer): a configuration that gave up is not tried again."""
    keys = {space.key(a.config) for a in history}
    keys |= {space.key(longest(a.config, space)) for a in history if gave_up(a)}
    return keys


def _worse(history: Sequence[Attempt], space: SearchSpace, target: Target) -> set[tuple[str, bool]]:
    """(dimension, raised?) for each change that made a finished attempt worse than
    the finished attempt it was derived from: not to be repeated in that direction.
    Where either was stopped early their metrics come from other epochs; then only an
    attempt that never learned counts, and against its raised learning rate."""
    by_run = {a.run_id: a for a in history}
    worse: set[tuple[str, bool]] = set()
    for attempt in history:
        base = by_run.get(attempt.derived_from)
        if base is None or not (attempt.finished and base.finished):
            continue
        if attempt.stopped_early or base.stopped_early:  # compared at other epochs
            if _never_learned(attempt, base, target):
                rates = {d.name for d in space.with_role(Role.LEARNING_RATE)}
                worse |= {
                    (n, up)
                    for n, up in directions(base.config, attempt.config, space)
                    if up and n in rates
                }
            continue
        if attempt.metric is None or base.metric is None:
            continue
        if attempt.metric == base.metric or target.is_better(attempt.metric, base.metric):
            continue
        worse |= directions(base.config, attempt.config, space)
    return worse


def _never_learned(attempt: Attempt, base: Attempt, target: Target) -> bool:
    """At every epoch it trained, the attempt's validation metric was worse than its
    base's after one epoch: it diverged or got stuck (a learning rate raised too far,
    as a bigger network at 3x the rate did on MNIST: chance level, 0.11, twice)."""
    if not attempt.validation or not base.validation:
        return False
    first = base.validation[0]
    return all(target.is_better(first, value) for value in attempt.validation)
