"""The search benchmark's baseline strategies, each a loop of attempts on the shared
Trainer, stopped by the target or by the same two budgets (attempts, and compute in
the learner's unit):

  old-rule       each retry adds one to the depth (conv blocks, layers, tree depth)
                 and one epoch (the Jenkins chain)
  random         Optuna's RandomSampler over the project's ct.yaml space
  tpe            Optuna's TPESampler over it
  tpe-hyperband  TPE with Optuna's HyperbandPruner, epochs as the resource

All start from the task's start configuration (enqueued as the first trial). Optuna is
used as its users use it, through ask-and-tell; nothing here is tuned to the tasks.
The space is ct_service.sampler's reading of ct.yaml, and TPE samples at random for
its first STARTUP_TRIALS trials (Optuna's default, 10, would make it random search
within an 8-attempt budget), exactly as ct's own policy uses TPE.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from search_suite import SuiteTask
from search_training import Charge, Trainer

from ct_service.sampler import STARTUP_TRIALS
from ct_service.sampler import distributions as optuna_space
from ct_service.space import Role, SearchSpace

UNLIMITED = 10**9  # epochs left without a compute budget


@dataclass(frozen=True)
class Budget:
    attempts: int
    compute: int  # in the learner's unit; 0: none (attempts only)


@dataclass
class Outcome:
    """One search: whether it reached the target within the budgets, and its cost up
    to the attempt that did (or in all, when none did)."""

    strategy: str
    task: str
    seed: int
    reached: bool = False
    attempts: int = 0
    compute: int = 0  # in the task's unit (sample-epochs, boosting stages)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    best: float = math.nan
    trace: list[str] = field(default_factory=list)
    tried: list[dict[str, Any]] = field(default_factory=list)  # configurations trained

    def pay(self, charge: Charge) -> None:
        self.compute += charge.compute
        self.cpu_seconds += charge.cpu_seconds
        self.wall_seconds += charge.wall_seconds

    def record(
        self, task: SuiteTask, config: Mapping[str, Any], epochs: int, test: float, note: str = ""
    ) -> None:
        if math.isnan(self.best) or better(task, test, self.best):
            self.best = test
        self.tried.append(dict(config))
        shown = " ".join(f"{k}={_short(v)}" for k, v in sorted(config.items()) if k != "epochs")
        self.trace.append(f"{shown} epochs={epochs} -> test {test:.4f}{note}")


def reaches(task: SuiteTask, value: float) -> bool:
    """Whether a test metric meets the task's target."""
    if not math.isfinite(value):
        return False
    return value >= task.threshold if task.maximize else value <= task.threshold


def better(task: SuiteTask, value: float, than: float) -> bool:
    return value > than if task.maximize else value < than


class Search:
    """What every strategy shares: the trainer, the task, the budgets, the ledger."""

    def __init__(self, trainer: Trainer, task: SuiteTask, seed: int, budget: Budget, strategy: str):
        self.trainer = trainer
        self.task = task
        self.seed = seed
        self.budget = budget
        self.outcome = Outcome(strategy, task.name, seed)

    def epochs_left(self, config: Mapping[str, Any]) -> int:
        """Epochs of `config` the compute budget still pays for."""
        if not self.budget.compute:
            return UNLIMITED
        per_epoch = self.trainer.learner.cost(config)
        return (self.budget.compute - self.outcome.compute) // per_epoch

    def epochs(self, config: Mapping[str, Any]) -> int:
        """The epochs `config` asks for (1 for a project without an epochs parameter)."""
        name = self.trainer.learner.epochs_name
        return int(float(config[name])) if name else 1

    def can_try(self) -> bool:
        return (
            not self.outcome.reached
            and self.outcome.attempts < self.budget.attempts
            and (not self.budget.compute or self.outcome.compute < self.budget.compute)
        )

    def attempt(self, config: Mapping[str, Any]) -> Charge | None:
        """Train one full attempt (its epochs capped by the compute left); None when
        the compute left pays for none of its epochs."""
        epochs = min(self.epochs(config), self.epochs_left(config))
        if epochs < 1:
            self.outcome.trace.append("out of compute for the next attempt")
            self.budget = Budget(self.outcome.attempts, self.budget.compute)
            return None
        self.outcome.attempts += 1
        charge = self.trainer.charge(config, self.seed, epochs)
        self.outcome.pay(charge)
        self.outcome.record(self.task, config, charge.epochs, charge.test)
        self.outcome.reached = reaches(self.task, charge.test)
        return charge


def old_rule(search: Search, space: SearchSpace) -> Outcome:
    """Each retry adds one to the depth parameter and one epoch (when there are epochs)."""
    depth = space.with_role(Role.DEPTH)[0]
    epochs_name = search.trainer.learner.epochs_name
    config = dict(search.task.start)
    while search.can_try() and search.attempt(config) is not None:
        config[depth.name] = min(int(config[depth.name]) + 1, int(depth.high))
        if epochs_name:
            config[epochs_name] = int(config[epochs_name]) + 1
    return search.outcome


def random_search(search: Search, space: SearchSpace) -> Outcome:
    sampler = optuna.samplers.RandomSampler(seed=search.seed)
    return _sampled(search, space, sampler)


def tpe(search: Search, space: SearchSpace) -> Outcome:
    sampler = optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=STARTUP_TRIALS)
    return _sampled(search, space, sampler)


def _direction(search: Search) -> str:
    return "maximize" if search.task.maximize else "minimize"


def _sampled(search: Search, space: SearchSpace, sampler: optuna.samplers.BaseSampler) -> Outcome:
    study = optuna.create_study(direction=_direction(search), sampler=sampler)
    distributions = optuna_space(space)
    start = search.task.start
    study.enqueue_trial({k: start[k] for k in distributions})
    while search.can_try():
        trial = study.ask(distributions)
        charge = search.attempt({**start, **trial.params})
        if charge is None:
            study.tell(trial, state=TrialState.FAIL)
            break
        study.tell(trial, _finite(charge.test, search))
    return search.outcome


def tpe_hyperband(search: Search, space: SearchSpace) -> Outcome:
    """Epochs are Hyperband's resource: each trial trains up to the space's most
    epochs, reporting the validation metric every epoch, and is pruned when its
    bracket says so. A pruned trial is charged the epochs it trained. A project
    without epochs (digits) has no resource to prune on: TPE as above."""
    found = space.with_role(Role.EPOCHS)
    if not found:
        return tpe(search, space)
    epochs = found[0]
    most = int(epochs.high)
    study = optuna.create_study(
        direction=_direction(search),
        sampler=optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=STARTUP_TRIALS),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=most),
    )
    distributions = {k: v for k, v in optuna_space(space).items() if k != epochs.name}
    start = search.task.start
    study.enqueue_trial({k: start[k] for k in distributions})
    while search.can_try():
        trial = study.ask(distributions)
        config = {**start, **trial.params, epochs.name: most}
        search.outcome.attempts += 1
        trained, charge, cut = 0, None, ""
        for epoch in range(1, most + 1):
            if search.epochs_left(config) < 1:
                cut = " (out of budget)"
                break
            charge = search.trainer.charge(config, search.seed, epoch, start=epoch - 1)
            search.outcome.pay(charge)
            trained = epoch
            trial.report(_finite(charge.validation[-1], search), epoch)
            if trial.should_prune():
                cut = " (pruned)"
                break
        if charge is None:
            study.tell(trial, state=TrialState.FAIL)
            break
        search.outcome.record(search.task, config, trained, charge.test, cut)
        # a trial cut short (pruned, or by the budget) reaches the target like any
        # other attempt whose test metric meets it, as ct's early-stopped ones do
        search.outcome.reached = reaches(search.task, charge.test)
        if trained < most:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        study.tell(trial, _finite(charge.test, search))
    return search.outcome


def _finite(value: float, search: Search) -> float:
    """What Optuna is told for a diverged network: the worst float, not inf or nan."""
    if math.isfinite(value):
        return value
    return -sys.float_info.max if search.task.maximize else sys.float_info.max


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) and not math.isnan(value) else str(value)


STRATEGIES: dict[str, Callable[[Search, SearchSpace], Outcome]] = {
    "old-rule": old_rule,
    "random": random_search,
    "tpe": tpe,
    "tpe-hyperband": tpe_hyperband,
}
