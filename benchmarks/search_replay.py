"""ct-service's policy replayed on the benchmark's shared curves: the same
`policy.decide` and `stop_early.judge` a pipeline runs, with attempts trained by the
baselines' Trainer instead of through pipelines. An attempt trains epoch by epoch and
its validation curve is judged after each one (after the 50th, about every 2% of the
epochs: diabetes runs up to 2,000 fast epochs), as the stop watch judges it; a
continuation carries on its base's curve (the Trainer keeps the model) and is charged
only its new epochs.

It is the quick way to see what a policy change does on many seeds (curves the
baselines trained cost nothing more to read); the `ct` strategy, real pipelines,
stays the measure. The policy is given the same budgets as a pipeline (attempts, and
epochs: `--max-epochs`). Differences from a pipeline: a stop ends the attempt at the
epoch it was judged on (a pipeline's training also runs part of the next epoch before
it sees the request), and nothing crashes.
"""

from __future__ import annotations

import math
from typing import Any

from search_strategies import Outcome, Search

from ct_service import policy
from ct_service.attempt import Attempt, AttemptStatus
from ct_service.policy import Action
from ct_service.project import Project
from ct_service.run_tags import RESUME_FROM_PARAM
from ct_service.space import Role
from ct_service.stop_early import judge
from ct_service.stop_interval import Evidence, gaps
from ct_service.target import Budget, Direction, Target


def ct_replay(search: Search, project: Project, slots: int = 1, halving: bool = True) -> Outcome:
    """From the task's start, decide and train until the policy promotes or stops, or
    a budget runs out. With `slots` > 1, the policy decides rounds of that many
    attempts (CT_PARALLEL_ATTEMPTS; successive halving unless `halving` is off),
    trained here one after another but judged as side by side: a round's attempts
    see only the curves that finished before it."""
    space, task = project.space, search.task
    direction = Direction.MAXIMIZE if task.maximize else Direction.MINIMIZE
    target = Target(task.metric, task.threshold, direction)
    per_epoch = search.trainer.learner.cost(task.start)
    budget = Budget(
        max_attempts=search.budget.attempts,
        max_epochs=search.budget.compute // per_epoch if search.budget.compute else 0,
    )
    rule = project.stop_rule
    history: list[Attempt] = []
    config: dict[str, Any] = {**task.start, RESUME_FROM_PARAM: ""}
    decisions = [policy.Decision(Action.TRAIN, "the start", config)]
    while decisions[0].action is Action.TRAIN and search.can_try():
        before = tuple(history)
        for decision in decisions:
            trained = _train(search, project, target, decision, before, history)
            if trained is None:
                return search.outcome  # no compute left for an epoch of it
            history.append(trained)
            if search.outcome.reached or not search.can_try():
                return search.outcome
        decisions = policy.decide_several(
            history,
            space,
            target,
            budget,
            slots=slots,
            stop_rule=rule if rule.enabled else None,
            halving=halving,
        )
    return search.outcome


def _train(
    search: Search,
    project: Project,
    target: Target,
    decision: policy.Decision,
    before: tuple[Attempt, ...],
    history: list[Attempt],
) -> Attempt | None:
    """Train one decided attempt epoch by epoch under the stop rules, judged beside
    the attempts of `before` (those that finished before its round); None when the
    compute budget has no epoch of it left."""
    space, rule, task = project.space, project.stop_rule, search.task
    epochs_dimension = next(iter(space.with_role(Role.EPOCHS)), None)
    base = next((a for a in history if a.run_id == decision.continues), None)
    start = base.checkpoint_epoch if base else 0
    asked = search.epochs(decision.config)
    last = min(asked, start + search.epochs_left(decision.config))
    high = int(epochs_dimension.high) if epochs_dimension else 1
    horizon = decision.horizon or min(high, asked)  # as the pipeline's stop watch
    validation = list(base.validation) if base else []
    carried_on = _carried_on(base, history)
    others = [a.validation for a in before if a.run_id not in carried_on]
    measured = ((a.metric, a.validation) for a in before if a.metric is not None)
    evidence = Evidence(  # the sets' sizes, as the project logs them; the gaps so far
        *getattr(search.trainer.learner, "set_sizes", (None, None)),
        gaps(measured, 1.0 if task.maximize else -1.0),
    )
    trained, stopped = start, ""
    for epoch in range(start + 1, last + 1):
        charge = search.trainer.charge(decision.config, search.seed, epoch, start=epoch - 1)
        search.outcome.pay(charge)
        validation = [v for v in charge.validation if math.isfinite(v)]
        trained = epoch
        if not _judged(epoch):
            continue
        stop = judge(validation, target, rule, horizon, evidence, others, decision.stop_margin)
        if stop is not None:
            stopped = f"{stop.kind.value}: {stop.reason}"
            break
    if trained == start:
        return None
    search.outcome.attempts += 1
    curve = search.trainer.curve(decision.config, search.seed)
    test = curve.test[trained - 1]
    note = f" (stopped: {stopped.split(':')[0]})" if stopped else ""
    note += " (continued)" if base else ""
    shown = {k: decision.config[k] for k in task.start}
    search.outcome.record(task, shown, trained, test, note)
    search.outcome.reached = target.is_met(test)
    curves = {
        name: tuple(values[:trained])
        for name, values in (("loss", curve.loss), ("val_loss", curve.val_loss))
        if all(math.isfinite(v) for v in values[:trained])
    }
    number = len(history) + 1
    return Attempt(
        number=number,
        run_id=f"replay-{task.name}-{search.seed}-{number}",
        config=dict(decision.config),
        status=AttemptStatus.FINISHED,
        metric=test if math.isfinite(test) else None,
        curves=curves,
        reason=decision.reason,
        checkpoint_epoch=trained,
        derived_from=decision.derived_from,
        stopped_early=stopped,
        stop_margin=decision.stop_margin,
        validation=tuple(validation[:trained]),
    )


def _judged(epoch: int) -> bool:
    """Whether the stop rules look at this epoch: every one of the first 50, then
    about every 2% of the epochs trained (a pipeline's watch reads the curve a few
    times a second, so it too sees a long run of fast epochs in steps)."""
    return epoch <= 50 or epoch % max(1, epoch // 50) == 0


def _carried_on(base: Attempt | None, history: list[Attempt]) -> set[str]:
    """The run ids whose epochs a continuation of `base` carries on."""
    found: set[str] = set()
    while base is not None and base.run_id not in found:
        found.add(base.run_id)
        base = next((a for a in history if a.run_id == base.config.get(RESUME_FROM_PARAM)), None)
    return found
