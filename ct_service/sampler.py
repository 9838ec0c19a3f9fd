"""A configuration sampled by Optuna's TPE from what a pipeline has tried so far: the
search space as Optuna distributions, the finished attempts as its trials. Pure
(an in-memory study, no storage), and deterministic for a given history and seed,
so a replayed decision proposes the same configuration."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ct_service.space import Config, Role, SearchSpace
from ct_service.target import Direction, Target

STARTUP_TRIALS = 3  # random samples before TPE models the history (Optuna's default: 10)


def distributions(space: SearchSpace, without: Sequence[Role] = ()) -> dict[str, Any]:
    """The space as Optuna distributions: listed values are categorical, learning
    rates and dimensions declared `log` log-uniform, the rest uniform."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    found: dict[str, Any] = {}
    for d in space.dimensions:
        if d.role in without:
            continue
        if d.values:
            found[d.name] = CategoricalDistribution([d.cast(v) for v in d.values])
        elif d.kind == "int":
            found[d.name] = IntDistribution(int(d.low), int(d.high), log=d.log)
        else:
            log = d.log or d.role is Role.LEARNING_RATE
            found[d.name] = FloatDistribution(d.low, d.high, log=log)
    return found


def propose(
    told: Sequence[tuple[Mapping[str, Any], float]],
    space: SearchSpace,
    target: Target,
    seed: int,
    with_epochs: bool = False,
) -> Config | None:
    """TPE's next configuration for the searched dimensions but the epochs (the
    caller sets those; `with_epochs`: those too), given (configuration, score) pairs
    of what was tried; None when the space has nothing else to search."""
    import optuna
    from optuna.study import StudyDirection

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searched = distributions(space, without=() if with_epochs else (Role.EPOCHS,))
    if not searched:
        return None
    maximize = target.direction is Direction.MAXIMIZE
    study = optuna.create_study(
        direction=StudyDirection.MAXIMIZE if maximize else StudyDirection.MINIMIZE,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS),
    )
    for config, score in told:
        params = _params(config, space, list(searched))
        if params is not None and math.isfinite(score):
            study.add_trial(
                optuna.trial.create_trial(params=params, distributions=searched, value=score)
            )
    trial = study.ask(searched)
    return dict(trial.params)


def _params(config: Mapping[str, Any], space: SearchSpace, names: Sequence[str]) -> Config | None:
    """The attempt's values of the searched dimensions, each as its distribution
    holds it; None if one is missing or outside the space (it cannot be told)."""
    params: Config = {}
    for d in space.dimensions:
        if d.name not in names:
            continue
        if d.name not in config or not d.contains(config[d.name]):
            return None
        params[d.name] = d.clamp(config[d.name])  # a listed value exactly as listed
    return params
