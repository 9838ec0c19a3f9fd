"""ct-service's policy replayed on the benchmark's shared curves: the same
`policy.decide` and `stop_early.judge` a pipeline runs, with attempts trained by the
baselines' Trainer instead of through pipelines. An attempt trains epoch by epoch and
its validation curve is judged after each one, as the stop watch judges it; a
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

from collections.abc import Mapping
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
from ct_service.target import Budget, Target

MNIST_TEST_IMAGES = 10000  # MNIST's and Fashion-MNIST's test sets


def ct_replay(search: Search, weak: Mapping[str, Any], project: Project) -> Outcome:
    """From the weak start, decide and train until the policy promotes or stops, or a
    budget runs out."""
    space, rule = project.space, project.stop_rule
    target = Target("test_accuracy", search.task.threshold)
    budget = Budget(
        max_attempts=search.budget.attempts,
        max_epochs=search.budget.sample_epochs // search.trainer.fitted_samples(),
    )
    (epochs_dimension,) = space.with_role(Role.EPOCHS)
    history: list[Attempt] = []
    config: dict[str, Any] = {**weak, RESUME_FROM_PARAM: ""}
    decision = policy.Decision(Action.TRAIN, "the weak start", config)
    while decision.action is Action.TRAIN and search.can_try():
        base = next((a for a in history if a.run_id == decision.continues), None)
        start = base.checkpoint_epoch if base else 0
        asked = int(float(decision.config[epochs_dimension.name]))
        last = min(asked, start + search.epochs_left())
        horizon = min(int(epochs_dimension.high), asked)  # as the pipeline's stop watch
        validation = list(base.validation) if base else []
        carried_on = _carried_on(base, history)
        others = [a.validation for a in history if a.run_id not in carried_on]
        evidence = Evidence(  # the sets' sizes, as LeNet logs them; the gaps measured so far
            search.trainer.train_samples - search.trainer.fitted_samples(),
            MNIST_TEST_IMAGES,
            gaps(((a.metric, a.validation) for a in history if a.metric is not None), 1.0),
        )
        trained, stopped = start, ""
        for epoch in range(start + 1, last + 1):
            charge = search.trainer.charge(decision.config, search.seed, epoch, start=epoch - 1)
            search.outcome.pay(charge)
            validation = list(charge.val_accuracy)
            trained = epoch
            stop = judge(validation, target, rule, horizon, evidence, others, decision.stop_margin)
            if stop is not None:
                stopped = f"{stop.kind.value}: {stop.reason}"
                break
        search.outcome.attempts += 1
        curve = search.trainer.curve(decision.config, search.seed)
        test = curve.test_accuracy[trained - 1]
        note = f" (stopped: {stopped.split(':')[0]})" if stopped else ""
        note += " (continued)" if base else ""
        search.outcome.record({k: decision.config[k] for k in weak}, trained, test, note)
        search.outcome.reached = target.is_met(test)
        history.append(
            Attempt(
                number=len(history) + 1,
                run_id=f"replay-{search.task.dataset}-{search.seed}-{len(history) + 1}",
                config=dict(decision.config),
                status=AttemptStatus.FINISHED,
                metric=test,
                curves={
                    "loss": tuple(curve.loss[:trained]),
                    "val_loss": tuple(curve.val_loss[:trained]),
                },
                reason=decision.reason,
                checkpoint_epoch=trained,
                derived_from=decision.derived_from,
                stopped_early=stopped,
                stop_margin=decision.stop_margin,
                validation=tuple(validation[:trained]),
            )
        )
        if search.outcome.reached:
            break
        decision = policy.decide(
            history, space, target, budget, stop_rule=rule if rule.enabled else None
        )
    return search.outcome


def _carried_on(base: Attempt | None, history: list[Attempt]) -> set[str]:
    """The run ids whose epochs a continuation of `base` carries on."""
    found: set[str] = set()
    while base is not None and base.run_id not in found:
        found.add(base.run_id)
        base = next((a for a in history if a.run_id == base.config.get(RESUME_FROM_PARAM)), None)
    return found
