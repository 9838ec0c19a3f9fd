"""The first attempt of a pipeline that retrains production on new data (the data
trigger, a schedule, the decay watch): production's configuration, the parameters its
registered version was trained with, instead of the project's defaults; with ct.yaml
`data_trigger: {start: weights}`, production's run continued from its checkpoint on
the new data, when the project can continue a run and the architecture is
production's. After it, the policy and its budget go on as for a push."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

from ct_service.run_tags import RESUME_FROM_PARAM as RESUME_FROM
from ct_service.search.fixups import single_epochs
from ct_service.space import Config, Role, SearchSpace
from ct_service.start_mode import StartMode

# The roles whose values a checkpoint's weights are shaped by: a change to one of them
# makes production's checkpoint unloadable for the new configuration.
ARCHITECTURE = (Role.DEPTH, Role.WIDTH)


@dataclass(frozen=True)
class Production:
    """What a pipeline retraining production reads of it."""

    version: str  # its registered version's number
    run_id: str  # the run that trained it
    config: Mapping[str, Any]  # that run's parameters (logged by the service)
    checkpoint_epoch: int  # the last epoch it logged a checkpoint for (0: none)


@dataclass(frozen=True)
class FirstAttempt:
    config: Config
    reason: str  # one line: "warm start: production v3's configuration; ..."
    continues: str = ""  # production's run when it trains on from its checkpoint
    start_epoch: int = 0  # the epoch it starts from (production's checkpoint), else 0


def first_attempt(
    config: Mapping[str, Any],
    own: Set[str],
    production: Production,
    space: SearchSpace,
    start: StartMode,
) -> FirstAttempt:
    """The first attempt from `config` (the project's defaults and the pipeline's
    parameters) with production's parameters over it, except `own` (the parameters
    this pipeline sets itself: the new data's folder) and `resume_from` (only the
    service names a checkpoint). With `start` weights and a project that can, it
    continues production's checkpoint for as many epochs as production's configuration
    trains (its epochs parameter), so `epochs` is the checkpoint's epoch plus those;
    else it says why it trains from scratch."""
    taken = {
        name: value
        for name, value in production.config.items()
        if name in config and name not in own and name != RESUME_FROM
    }
    label = f"production v{production.version}"
    if not taken:
        return FirstAttempt(
            _from_scratch(space.normalise(config)),
            f"{label}'s run recorded no parameters: the project's defaults",
        )
    warm = _from_scratch(space.normalise({**config, **taken}))
    reason = f"warm start: {label}'s configuration"
    if start is not StartMode.WEIGHTS:
        return FirstAttempt(warm, reason)
    why_not = _cannot_continue(warm, production, space)
    if why_not:
        return FirstAttempt(warm, f"{reason}, from scratch: {why_not}")
    epochs = single_epochs(space)
    assert epochs is not None  # _cannot_continue checked it
    more = int(float(warm[epochs.name]))
    total = production.checkpoint_epoch + more
    return FirstAttempt(
        {**warm, RESUME_FROM: production.run_id, epochs.name: epochs.cast(total)},
        f"{reason} and weights: run {production.run_id[:8]} continued from its checkpoint "
        f"at epoch {production.checkpoint_epoch} on the new data, {more} epoch(s) more "
        f"({epochs.name} {total})",
        continues=production.run_id,
        start_epoch=production.checkpoint_epoch,
    )


def _from_scratch(config: Config) -> Config:
    return {**config, RESUME_FROM: ""} if RESUME_FROM in config else config


def _cannot_continue(config: Mapping[str, Any], production: Production, space: SearchSpace) -> str:
    """Why the configuration cannot continue production's checkpoint ("" when it can)."""
    if RESUME_FROM not in config:
        return "the project declares no resume_from parameter"
    if single_epochs(space) is None:
        return "its search space has no single epochs dimension to continue along"
    if production.checkpoint_epoch <= 0:
        return f"production's run {production.run_id[:8]} logged no checkpoint"
    changed = [
        d.name
        for d in space.dimensions
        if d.role in ARCHITECTURE
        and d.name in config
        and (d.name not in production.config or d.cast(production.config[d.name]) != config[d.name])
    ]
    if changed:
        return f"the architecture changed ({', '.join(changed)} differ from production's)"
    return ""
