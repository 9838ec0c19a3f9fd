"""The search benchmark's baseline strategies, each a loop of attempts on the shared
Trainer, stopped by the target or by the same two budgets (attempts, sample-epochs):

  old-rule       each retry adds one conv block and one epoch (the Jenkins chain)
  random         Optuna's RandomSampler over the project's ct.yaml space
  tpe            Optuna's TPESampler over it
  tpe-hyperband  TPE with Optuna's HyperbandPruner, epochs as the resource

All start from the same weak configuration (enqueued as the first trial). Optuna is
used as its users use it, through ask-and-tell; nothing here is tuned to the tasks.
The space is ct_service.sampler's reading of ct.yaml, and TPE samples at random for
its first STARTUP_TRIALS trials (Optuna's default, 10, would make it random search
within an 8-attempt budget), exactly as ct's own policy uses TPE.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from search_training import Charge, Trainer

from ct_service.sampler import STARTUP_TRIALS
from ct_service.sampler import distributions as optuna_space
from ct_service.space import Role, SearchSpace


@dataclass(frozen=True)
class Task:
    dataset: str  # "fashion" or "mnist"
    data: str
    samples: int  # training subset (validation split taken from it)
    threshold: float  # test_accuracy to reach

    @property
    def name(self) -> str:
        return f"{self.dataset}>={self.threshold:g}"


@dataclass(frozen=True)
class Budget:
    attempts: int
    sample_epochs: int


@dataclass
class Outcome:
    """One search: whether it reached the target within the budgets, and its cost up
    to the attempt that did (or in all, when none did)."""

    strategy: str
    task: str
    seed: int
    reached: bool = False
    attempts: int = 0
    sample_epochs: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    best: float = 0.0
    trace: list[str] = field(default_factory=list)

    def pay(self, charge: Charge) -> None:
        self.sample_epochs += charge.sample_epochs
        self.cpu_seconds += charge.cpu_seconds
        self.wall_seconds += charge.wall_seconds

    def record(self, config: Mapping[str, Any], epochs: int, test: float, note: str = "") -> None:
        self.best = max(self.best, test)
        shown = " ".join(f"{k}={_short(v)}" for k, v in sorted(config.items()) if k != "epochs")
        self.trace.append(f"{shown} epochs={epochs} -> test {test:.4f}{note}")


class Search:
    """What every strategy shares: the trainer, the task, the budgets, the ledger."""

    def __init__(self, trainer: Trainer, task: Task, seed: int, budget: Budget, strategy: str):
        self.trainer = trainer
        self.task = task
        self.seed = seed
        self.budget = budget
        self.outcome = Outcome(strategy, task.name, seed)

    def epochs_left(self) -> int:
        per_epoch = self.trainer.fitted_samples()
        return (self.budget.sample_epochs - self.outcome.sample_epochs) // per_epoch

    def can_try(self) -> bool:
        return (
            not self.outcome.reached
            and self.outcome.attempts < self.budget.attempts
            and self.epochs_left() >= 1
        )

    def attempt(self, config: Mapping[str, Any], epochs: int) -> Charge:
        """Train one full attempt (its epochs capped by the compute left)."""
        self.outcome.attempts += 1
        charge = self.trainer.charge(config, self.seed, min(epochs, self.epochs_left()))
        self.outcome.pay(charge)
        self.outcome.record(config, charge.epochs, charge.test_accuracy)
        self.outcome.reached = charge.test_accuracy >= self.task.threshold
        return charge


def old_rule(search: Search, weak: Mapping[str, Any], space: SearchSpace) -> Outcome:
    depth = space.with_role(Role.DEPTH)[0]
    config, epochs = dict(weak), int(weak["epochs"])
    while search.can_try():
        search.attempt(config, epochs)
        config["conv_blocks"] = min(int(config["conv_blocks"]) + 1, int(depth.high))
        epochs += 1
    return search.outcome


def random_search(search: Search, weak: Mapping[str, Any], space: SearchSpace) -> Outcome:
    sampler = optuna.samplers.RandomSampler(seed=search.seed)
    return _sampled(search, weak, space, sampler)


def tpe(search: Search, weak: Mapping[str, Any], space: SearchSpace) -> Outcome:
    sampler = optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=STARTUP_TRIALS)
    return _sampled(search, weak, space, sampler)


def _sampled(
    search: Search,
    weak: Mapping[str, Any],
    space: SearchSpace,
    sampler: optuna.samplers.BaseSampler,
) -> Outcome:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    distributions = optuna_space(space)
    study.enqueue_trial({k: weak[k] for k in distributions})
    epochs_name = space.with_role(Role.EPOCHS)[0].name
    while search.can_try():
        trial = study.ask(distributions)
        config = {**weak, **trial.params}
        charge = search.attempt(config, int(config[epochs_name]))
        study.tell(trial, charge.test_accuracy)
    return search.outcome


def tpe_hyperband(search: Search, weak: Mapping[str, Any], space: SearchSpace) -> Outcome:
    """Epochs are Hyperband's resource: each trial trains up to the space's most
    epochs, reporting validation accuracy every epoch, and is pruned when its
    bracket says so. A pruned trial is charged the epochs it trained."""
    epochs = space.with_role(Role.EPOCHS)[0]
    most = int(epochs.high)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=STARTUP_TRIALS),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=most),
    )
    distributions = {k: v for k, v in optuna_space(space).items() if k != epochs.name}
    study.enqueue_trial({k: weak[k] for k in distributions})
    while search.can_try():
        trial = study.ask(distributions)
        config = {**weak, **trial.params}
        search.outcome.attempts += 1
        trained, charge, cut = 0, None, ""
        for epoch in range(1, most + 1):
            if search.epochs_left() < 1:
                cut = " (out of budget)"
                break
            charge = search.trainer.charge(config, search.seed, epoch, start=epoch - 1)
            search.outcome.pay(charge)
            trained = epoch
            trial.report(charge.val_accuracy[-1], epoch)
            if trial.should_prune():
                cut = " (pruned)"
                break
        if charge is None:
            study.tell(trial, state=TrialState.FAIL)
            break
        search.outcome.record(config, trained, charge.test_accuracy, cut)
        # a trial cut short (pruned, or by the budget) reaches the target like any
        # other attempt whose test metric meets it, as ct's early-stopped ones do
        search.outcome.reached = charge.test_accuracy >= search.task.threshold
        if trained < most:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        study.tell(trial, charge.test_accuracy)
    return search.outcome


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) and not math.isnan(value) else str(value)


STRATEGIES: dict[str, Callable[[Search, Mapping[str, Any], SearchSpace], Outcome]] = {
    "old-rule": old_rule,
    "random": random_search,
    "tpe": tpe,
    "tpe-hyperband": tpe_hyperband,
}
