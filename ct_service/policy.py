"""The policy: history in, decision out. A pure function, no I/O.

After each attempt it decides to promote (target met), to stop (budget spent or
nothing new left to try) or to train again with a configuration derived from the
best attempt so far, changing what that attempt's learning curves point to, or,
once the best one gave up (stopped as hopeless or behind), a big step up in capacity
or one that Optuna's TPE proposes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from ct_service import sampler
from ct_service.attempt import Attempt
from ct_service.curves import Finding, diagnose
from ct_service.run_tags import RESUME_FROM_PARAM as RESUME_FROM
from ct_service.space import Config, ConfigKey, Role, SearchSpace
from ct_service.stop_early import StopKind, StopRule, projected
from ct_service.target import Budget, Target


class Action(str, Enum):
    PROMOTE = "promote"
    TRAIN = "train"
    STOP = "stop"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str  # one line, for humans
    config: Config = field(default_factory=dict)  # for TRAIN
    derived_from: str = ""  # run id of the attempt the config was derived from, or to promote
    continues: str = ""  # for TRAIN: the run whose last checkpoint it trains on from
    budget_spent: bool = False  # for STOP: the budget ran out (else nothing was left to try)
    stop_margin: float | None = None  # for TRAIN: the validation margin its early stop needs


@dataclass(frozen=True)
class Move:
    """One change to a configuration: raise or lower every dimension of a role."""

    role: Role
    up: bool
    factor: float = 2.0


Moves = tuple[Move, ...]

# What each finding points to, most telling first; each entry is tried as one proposal.
REMEDIES: dict[Finding, tuple[Moves, ...]] = {
    Finding.DIVERGING: (
        (Move(Role.LEARNING_RATE, False, 3.0),),
        (Move(Role.LEARNING_RATE, False, 10.0),),
    ),
    Finding.OVERFITTING: (
        (Move(Role.REGULARIZATION, True),),
        (Move(Role.REGULARIZATION, True), Move(Role.WIDTH, False)),
        (Move(Role.LEARNING_RATE, False, 3.0),),
    ),
    Finding.LEARNING_SLOWLY: (
        (Move(Role.LEARNING_RATE, True, 3.0),),
        (Move(Role.LEARNING_RATE, True, 3.0), Move(Role.EPOCHS, True)),
        (Move(Role.EPOCHS, True),),
    ),
    Finding.NOT_CONVERGED: (
        (Move(Role.EPOCHS, True),),
        (Move(Role.EPOCHS, True, 3.0),),
        (Move(Role.LEARNING_RATE, True, 3.0),),
    ),
    Finding.UNDERFITTING: (
        (Move(Role.DEPTH, True), Move(Role.EPOCHS, True)),
        (Move(Role.WIDTH, True),),
        (Move(Role.DEPTH, True),),
        (Move(Role.EPOCHS, True),),
        (Move(Role.LEARNING_RATE, True, 3.0),),
    ),
}
# After an attempt stopped as hopeless (its curve cannot reach the target in any
# number of epochs the space allows): more capacity or a faster learning rate, never
# more epochs of the same model.
HOPELESS_REMEDIES: tuple[Moves, ...] = (
    (Move(Role.DEPTH, True), Move(Role.WIDTH, True)),
    (Move(Role.WIDTH, True),),
    (Move(Role.DEPTH, True),),
    (Move(Role.LEARNING_RATE, True, 3.0),),
    (Move(Role.SCHEDULE, True),),
    (Move(Role.REGULARIZATION, True),),
    (Move(Role.LEARNING_RATE, False, 3.0),),
)
# When the best attempt gave up (hopeless or behind) while under-fitting: a big step
# up in capacity and learning speed at once, before TPE samples the space; one notch
# at a time would spend an attempt's first epochs on every step. Where the space has a
# learning-rate schedule, the faster rate also falls faster: training fast early and
# annealed late, a network gets within a few thousandths of its ceiling in a few
# epochs (measured on MNIST, 27,000 images: 0.9906 at epoch 4 against 0.9884 at a
# constant rate); a space without one skips to the next jump.
CAPACITY_JUMPS: tuple[Moves, ...] = (
    (
        Move(Role.DEPTH, True),
        Move(Role.WIDTH, True),
        Move(Role.WIDTH, True),
        Move(Role.LEARNING_RATE, True, 3.0),
        Move(Role.SCHEDULE, True),
    ),
    (
        Move(Role.DEPTH, True),
        Move(Role.WIDTH, True),
        Move(Role.WIDTH, True),
        Move(Role.LEARNING_RATE, True, 3.0),
    ),
    (Move(Role.DEPTH, True), Move(Role.WIDTH, True), Move(Role.WIDTH, True)),
)
SAMPLES_PER_DECISION = 20  # TPE samples drawn before giving up on finding an untried one
# Tried after the remedies, so a search never stalls while the space has room.
FALLBACK: tuple[Moves, ...] = (
    (Move(Role.EPOCHS, True),),
    (Move(Role.DEPTH, True),),
    (Move(Role.WIDTH, True),),
    (Move(Role.REGULARIZATION, True),),
    (Move(Role.LEARNING_RATE, False, 3.0),),
    (Move(Role.LEARNING_RATE, True, 3.0),),
    # the other way: a project without curves learns only from its results
    (Move(Role.REGULARIZATION, False),),
    (Move(Role.WIDTH, False),),
    (Move(Role.DEPTH, False),),
)


def decide(
    history: Sequence[Attempt],
    space: SearchSpace,
    target: Target,
    budget: Budget,
    prior: Sequence[Attempt] = (),
    elapsed_seconds: float = 0.0,
    stop_rule: StopRule | None = None,
) -> Decision:
    """Decide what follows the last attempt of `history` (this pipeline's attempts, in
    order). `prior` holds attempts of earlier pipelines of the same project.
    `stop_rule`: how attempts are stopped early (None: they are not); with it, a new
    configuration is given the most epochs the space allows, since its training
    stops as soon as its curve meets the target or shows it cannot.

    1. promote if the last attempt met the target; 2. stop if the budget is spent;
    3. continue an attempt stopped for meeting the target on validation whose test
    metric fell short, with a larger margin; 4. try a configuration that met the
    target in an earlier pipeline; 5. when the best attempt gave up (hopeless or
    behind), a capacity jump if its curves under-fit, else
    a configuration from TPE; 6. change the best finished attempt as its learning
    curves suggest (TPE again when nothing untried is left around them); 7. with no
    finished attempt, retry the crashed one clamped into the search space; else stop."""
    if not history:
        raise ValueError("the policy needs at least one attempt")
    last = history[-1]
    best = _best(history, target)
    verdict = _promote_or_spent(history, space, target, budget, elapsed_seconds, best)
    if verdict is not None:
        return verdict
    tried = _tried(history, space)
    prefix = (
        ""
        if last.finished
        else f"attempt {last.number} failed ({last.failure or 'no reason given'}); "
    )
    finished = sorted((a for a in history if a.finished), key=_rank(target))
    worse = _worsening_changes(history, space, target)
    gave_up = bool(finished) and StopKind.gave_up(finished[0].stopped_early)
    proposal = (
        _continue_short_stop(last, target, space, stop_rule)
        or _known_good_again(last, prior, tried, space, target)
        or (_capacity_jump(finished[0], tried, space, worse) if gave_up else None)
        or (_sampled(history, finished, tried, space, target) if gave_up else None)
        or _curve_remedy(finished, tried, space, worse, stop_rule is not None)
        or (_sampled(history, finished, tried, space, target) if stop_rule else None)
        or (None if finished else _clamped_retry(last, tried, space))
    )
    if proposal is not None:
        config = dict(proposal.config)
        if RESUME_FROM in config:  # only a continuation loads a checkpoint
            config[RESUME_FROM] = proposal.continues
        proposal = within_epoch_budget(replace(proposal, config=config), history, space, budget)
        return replace(proposal, reason=prefix + proposal.reason)
    if not finished:
        return Decision(
            Action.STOP, prefix + "no finished attempt to derive a new configuration from"
        )
    return Decision(
        Action.STOP,
        prefix
        + f"search space exhausted around every finished attempt; {_best_text(best, target)}",
    )


def decide_several(
    history: Sequence[Attempt],
    space: SearchSpace,
    target: Target,
    budget: Budget,
    slots: int,
    prior: Sequence[Attempt] = (),
    elapsed_seconds: float = 0.0,
    stop_rule: StopRule | None = None,
) -> list[Decision]:
    """Up to `slots` attempts to train at once (CT_PARALLEL_ATTEMPTS), every one
    counted against the attempt budget. The first is decide()'s; when it trains, each
    further one is a configuration TPE proposes from the finished attempts (its
    random start when there are few), different from everything tried or proposed,
    with the first one's epochs (the most the space allows under early stops): the
    remedy the curves point to, plus independent samples of the space beside it.
    A promotion or a stop is always alone."""
    free = min(slots, budget.max_attempts - len(history))
    if budget.max_epochs and free > 1:  # the epochs left are shared: at least one each
        trained = epochs_trained(history, space)
        free = max(1, min(free, budget.max_epochs - trained))
        budget = replace(budget, max_epochs=trained + (budget.max_epochs - trained) // free)
    first = decide(history, space, target, budget, prior, elapsed_seconds, stop_rule)
    if first.action is not Action.TRAIN or free <= 1:
        return [first]
    chosen = [first]
    taken = _tried(history, space) | {space.key(first.config)}
    finished = [a for a in history if a.finished and a.metric is not None]
    told = [(a.config, _score(a, space, target)) for a in finished]
    epochs = {
        d.name: first.config[d.name] for d in space.with_role(Role.EPOCHS) if d.name in first.config
    }
    seed = int(hashlib.sha256(history[0].run_id.encode()).hexdigest()[:8], 16) + len(history)
    base = history[-1].config
    for offset in range(SAMPLES_PER_DECISION * free):
        if len(chosen) >= free:
            break
        params = sampler.propose(told, space, target, seed + offset)
        if params is None:
            break
        config = space.normalise({**base, **params, **epochs})
        if RESUME_FROM in config:
            config[RESUME_FROM] = ""
        if space.key(config) in taken:
            continue
        taken.add(space.key(config))
        beside = Decision(
            Action.TRAIN,
            f"trained alongside attempt {history[-1].number + 1}: TPE over {len(told)} "
            f"finished attempts proposes {_changes(base, config, space)}",
            config,
            history[-1].run_id,
        )
        chosen.append(within_epoch_budget(beside, history, space, budget))
    return chosen


def warm_start(
    config: Mapping[str, Any],
    given: set[str],
    prior: Sequence[Attempt],
    space: SearchSpace,
    target: Target,
) -> tuple[Config, str] | None:
    """A new pipeline's first configuration from the project's history: the best
    configuration that met the target in an earlier pipeline, else the earlier
    attempt that came closest. Only searched parameters not given explicitly are
    taken from it. None when there is no history or it changes nothing."""
    finished = [
        a for a in prior if a.finished and a.metric is not None and not space.outside(a.config)
    ]
    if not finished:
        return None
    best = min(finished, key=_rank(target))
    assert best.metric is not None
    taken = {
        d.name: best.config[d.name]
        for d in space.dimensions
        if d.name in best.config and d.name not in given
    }
    warm = space.normalise({**config, **taken})
    if space.key(warm) == space.key(config):
        return None
    what = (
        "the configuration that reached"
        if target.is_met(best.metric)
        else "the closest earlier attempt, at"
    )
    return warm, (
        f"warm start: {what} {target.metric} {best.metric:.4g} in an earlier pipeline "
        f"(run {best.run_id[:8]}): {_changes(config, warm, space)}"
    )


def epochs_trained(history: Sequence[Attempt], space: SearchSpace) -> int:
    """Epochs trained by the attempts of `history`, for the epoch budget: each
    attempt's logged epochs (a resumed epoch once), less those of the attempt it
    continues; an attempt without a per-epoch curve counts its checkpoint epoch, or
    when finished its epochs parameter."""
    by_run = {a.run_id: a for a in history}
    return sum(
        _epochs_logged(a, space)
        - (_epochs_logged(by_run[a.config[RESUME_FROM]], space) if _continued(a, by_run) else 0)
        for a in history
    )


def _continued(attempt: Attempt, by_run: Mapping[str, Attempt]) -> bool:
    return bool(attempt.config.get(RESUME_FROM)) and attempt.config[RESUME_FROM] in by_run


def _epochs_logged(attempt: Attempt, space: SearchSpace) -> int:
    logged = max(
        (len(curve) for curve in (attempt.validation, *attempt.curves.values())), default=0
    )
    if logged or attempt.checkpoint_epoch or not attempt.finished:
        return max(logged, attempt.checkpoint_epoch)
    epochs = space.with_role(Role.EPOCHS)
    if len(epochs) == 1 and epochs[0].name in attempt.config:
        return int(float(attempt.config[epochs[0].name]))
    return 0


def within_epoch_budget(
    decision: Decision, history: Sequence[Attempt], space: SearchSpace, budget: Budget
) -> Decision:
    """A proposal trained for no more epochs than the epoch budget has left (a
    continuation: on top of the epoch it starts from)."""
    epochs = space.with_role(Role.EPOCHS)
    if not budget.max_epochs or len(epochs) != 1 or epochs[0].name not in decision.config:
        return decision
    name = epochs[0].name
    left = budget.max_epochs - epochs_trained(history, space)
    start = next((a.checkpoint_epoch for a in history if a.run_id == decision.continues), 0)
    if float(decision.config[name]) <= start + left:
        return decision
    capped = {**decision.config, name: epochs[0].cast(start + left)}
    return replace(
        decision,
        config=capped,
        reason=f"{decision.reason}; {name} {start + left}: what the budget has left",
    )


def _promote_or_spent(
    history: Sequence[Attempt],
    space: SearchSpace,
    target: Target,
    budget: Budget,
    elapsed_seconds: float,
    best: Attempt | None,
) -> Decision | None:
    """Promote when an attempt met the target (the last one, when attempts train one
    at a time; the best of those that did, when several trained at once); stop when
    the budget is spent."""
    met = sorted((a for a in history if a.finished and target.is_met(a.metric)), key=_rank(target))
    if met:
        winner = met[0]
        return Decision(
            Action.PROMOTE,
            f"attempt {winner.number} reached {target.metric} {winner.metric:.4g} "
            f"(target {target.describe()})",
            derived_from=winner.run_id,
        )
    if len(history) >= budget.max_attempts:
        return Decision(
            Action.STOP,
            f"budget spent: {len(history)} of {budget.max_attempts} attempts; "
            + _best_text(best, target),
            budget_spent=True,
        )
    trained = epochs_trained(history, space)
    if budget.max_epochs and trained >= budget.max_epochs:
        return Decision(
            Action.STOP,
            f"budget spent: {trained} of {budget.max_epochs} epochs; " + _best_text(best, target),
            budget_spent=True,
        )
    if budget.max_wall_seconds and elapsed_seconds >= budget.max_wall_seconds:
        return Decision(
            Action.STOP,
            f"budget spent: {elapsed_seconds:.0f} s of {budget.max_wall_seconds:.0f} s; "
            + _best_text(best, target),
            budget_spent=True,
        )
    return None


def _known_good_again(
    last: Attempt,
    prior: Sequence[Attempt],
    tried: set[ConfigKey],
    space: SearchSpace,
    target: Target,
) -> Decision | None:
    """The configuration that met the target in an earlier pipeline, if untried."""
    known_good = _known_good(prior, tried, space, target)
    if known_good is None:
        return None
    config = {
        **last.config,
        **{
            d.name: known_good.config[d.name]
            for d in space.dimensions
            if d.name in known_good.config
        },
    }
    return Decision(
        Action.TRAIN,
        f"trying the configuration that reached {target.metric} "
        f"{known_good.metric:.4g} in an earlier pipeline (run {known_good.run_id[:8]})",
        space.normalise(config),
        known_good.run_id,
    )


def _continue_short_stop(
    last: Attempt, target: Target, space: SearchSpace, stop_rule: StopRule | None
) -> Decision | None:
    """The last attempt was stopped because its validation curve met the target, yet
    its test metric falls short: train it on from its checkpoint, and stop it only
    once validation clears the target by that shortfall more."""
    if stop_rule is None or not (last.finished and last.stopped_as(StopKind.TARGET_MET.value)):
        return None
    if last.metric is None or not last.validation or RESUME_FROM not in last.config:
        return None
    epochs = space.with_role(Role.EPOCHS)
    if len(epochs) != 1 or last.checkpoint_epoch >= float(last.config[epochs[0].name]):
        return None
    if stop_rule.margin is None:  # the interval: it now counts this attempt's gap
        margin = None
        then = "to stop once validation clears the target by the gap it measured"
    else:  # a fixed margin: that margin more, and the shortfall
        shortfall = abs(last.validation[-1] - last.metric)
        margin = (last.stop_margin or stop_rule.margin) + max(shortfall, stop_rule.margin)
        then = f"to stop with a validation margin of {margin:.3g}"
    return Decision(
        Action.TRAIN,
        f"attempt {last.number} was stopped at epoch {last.checkpoint_epoch} with "
        f"{stop_rule.validation_metric(target)} {last.validation[-1]:.4g}, but "
        f"{target.metric} {last.metric:.4g} misses {target.describe()}: continuing it from "
        f"its checkpoint, {then}",
        dict(last.config),
        last.run_id,
        continues=last.run_id,
        stop_margin=margin,
    )


def _sampled(
    history: Sequence[Attempt],
    finished: Sequence[Attempt],
    tried: set[ConfigKey],
    space: SearchSpace,
    target: Target,
) -> Decision | None:
    """When the best attempt's curve shows its configuration cannot reach the target
    (or the curves point nowhere new), a new one from Optuna's TPE fed with every
    finished attempt, trained for the most epochs the space allows (its early stops
    decide how many). Seeded by the pipeline's first run: a replay decides the same."""
    if not finished:
        return None
    best = finished[0]
    seed = int(hashlib.sha256(history[0].run_id.encode()).hexdigest()[:8], 16)
    told = [(a.config, _score(a, space, target)) for a in finished if a.metric is not None]
    for offset in range(SAMPLES_PER_DECISION):
        params = sampler.propose(told, space, target, seed + offset)
        if params is None:
            return None
        proposal = _longest(space.normalise({**best.config, **params}), space)
        if RESUME_FROM in proposal:
            proposal[RESUME_FROM] = ""
        if space.key(proposal) in tried:
            continue
        why = (
            f"attempt {best.number} stopped early, {best.stopped_early}"
            if best.stopped_early
            else f"no untried change around attempt {best.number}'s curves"
        )
        return Decision(
            Action.TRAIN,
            f"{why}; TPE over {len(told)} finished attempts proposes "
            f"{_changes(best.config, proposal, space)}",
            proposal,
            best.run_id,
        )
    return None


def _capacity_jump(
    best: Attempt, tried: set[ConfigKey], space: SearchSpace, worse: set[tuple[str, bool]]
) -> Decision | None:
    """The best attempt gave up on a curve that under-fits (flat or slow, no sign
    of over-fitting or divergence): CAPACITY_JUMPS from it, trained for the most
    epochs the space allows."""
    diagnosis = diagnose(best)
    if diagnosis.finding not in (
        Finding.UNDERFITTING,
        Finding.NOT_CONVERGED,
        Finding.LEARNING_SLOWLY,
    ):
        return None
    for moves in CAPACITY_JUMPS:
        proposal = _apply(moves, best.config, space)
        if proposal is None:
            continue
        proposal = _longest(proposal, space)
        if RESUME_FROM in proposal:
            proposal[RESUME_FROM] = ""
        if space.key(proposal) in tried or _directions(best.config, proposal, space) & worse:
            continue
        return Decision(
            Action.TRAIN,
            f"attempt {best.number} stopped early, {best.stopped_early}, "
            f"{diagnosis.finding.value}; more capacity: {_changes(best.config, proposal, space)}",
            proposal,
            best.run_id,
        )
    return None


def _score(attempt: Attempt, space: SearchSpace, target: Target) -> float:
    """What an attempt tells the sampler: its metric, or for one that gave up
    where its validation curve was headed by the most epochs the space allows (its
    metric at the stop would compare an early epoch with others' last)."""
    assert attempt.metric is not None
    epochs = space.with_role(Role.EPOCHS)
    if StopKind.gave_up(attempt.stopped_early) and len(epochs) == 1:
        headed = projected(attempt.validation, target, int(epochs[0].high))
        if headed is not None:
            return headed
    return attempt.metric


def _curve_remedy(
    finished: Sequence[Attempt],
    tried: set[ConfigKey],
    space: SearchSpace,
    worse: set[tuple[str, bool]],
    stops_early: bool,
) -> Decision | None:
    """The first untried change the curves of a finished attempt point to, best first;
    never a change in a direction that made the metric worse before. When attempts
    stop early, every proposal gets the most epochs the space allows."""
    for base in finished:
        diagnosis = diagnose(base)
        remedies = REMEDIES.get(diagnosis.finding, ())
        evidence = f"attempt {base.number} {diagnosis.finding.value}: {diagnosis.evidence}"
        if StopKind.gave_up(base.stopped_early):
            remedies = HOPELESS_REMEDIES
            evidence = f"attempt {base.number} stopped early, {base.stopped_early}"
        fallback = FALLBACK
        if diagnosis.finding is Finding.NO_CURVES:  # results only: spread the moves
            fallback = tuple(_least_explored_first(FALLBACK, finished, space))
        for moves in remedies + fallback:
            proposal = _apply(moves, base.config, space)
            if proposal is not None and stops_early:
                proposal = _longest(proposal, space)
            if proposal is None or space.key(proposal) in tried:
                continue
            if StopKind.gave_up(base.stopped_early) and _only_epochs(base, proposal, space):
                continue
            if _directions(base.config, proposal, space) & worse:
                continue
            continues = _continuation(base, proposal, space)
            how = (
                f", continuing attempt {base.number} from its checkpoint at epoch "
                f"{base.checkpoint_epoch}"
                if continues
                else ""
            )
            return Decision(
                Action.TRAIN,
                f"{evidence}; {_changes(base.config, proposal, space)}{how}",
                proposal,
                base.run_id,
                continues=continues,
            )
    return None


def _least_explored_first(
    moves: Sequence[Moves], finished: Sequence[Attempt], space: SearchSpace
) -> list[Moves]:
    """`moves` ordered by how often the pipeline has changed their dimensions already
    (stable otherwise): without curves to point the way, one dimension is not climbed
    step by step while the others were never tried."""
    by_run = {a.run_id: a for a in finished}
    changed: Counter[str] = Counter()
    for attempt in finished:
        base = by_run.get(attempt.derived_from)
        if base is not None:
            changed.update(name for name, _ in _directions(base.config, attempt.config, space))

    def times(option: Moves) -> int:
        return sum(changed[d.name] for move in option for d in space.with_role(move.role))

    return sorted(moves, key=times)


def _tried(history: Sequence[Attempt], space: SearchSpace) -> set[ConfigKey]:
    """The configurations tried: each attempt's, and for one that gave up (hopeless
    or behind) the same trained for the most epochs the space allows, since that is
    how a new configuration is proposed under early stops (an epoch budget may have
    given the attempt fewer): a configuration that gave up is not tried again."""
    keys = {space.key(a.config) for a in history}
    keys |= {
        space.key(_longest(dict(a.config), space))
        for a in history
        if StopKind.gave_up(a.stopped_early)
    }
    return keys


def _longest(config: Config, space: SearchSpace) -> Config:
    """The configuration trained for the most epochs its space allows."""
    return {**config, **{d.name: d.cast(d.high) for d in space.with_role(Role.EPOCHS)}}


def _only_epochs(base: Attempt, proposal: Mapping[str, Any], space: SearchSpace) -> bool:
    return {name for name, _ in _directions(base.config, proposal, space)} <= {
        d.name for d in space.with_role(Role.EPOCHS)
    }


def _worsening_changes(
    history: Sequence[Attempt], space: SearchSpace, target: Target
) -> set[tuple[str, bool]]:
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
                    for n, up in _directions(base.config, attempt.config, space)
                    if up and n in rates
                }
            continue
        if attempt.metric is None or base.metric is None:
            continue
        if attempt.metric == base.metric or target.is_better(attempt.metric, base.metric):
            continue
        worse |= _directions(base.config, attempt.config, space)
    return worse


def _never_learned(attempt: Attempt, base: Attempt, target: Target) -> bool:
    """At every epoch it trained, the attempt's validation metric was worse than its
    base's after one epoch: it diverged or got stuck (a learning rate raised too far,
    as a bigger network at 3x the rate did on MNIST: chance level, 0.11, twice)."""
    if not attempt.validation or not base.validation:
        return False
    first = base.validation[0]
    return all(target.is_better(first, value) for value in attempt.validation)


def _directions(
    before: Mapping[str, Any], after: Mapping[str, Any], space: SearchSpace
) -> set[tuple[str, bool]]:
    """(dimension, raised?) for each searched dimension that changed."""
    found = set()
    for d in space.dimensions:
        if d.name in before and d.name in after and float(after[d.name]) != float(before[d.name]):
            found.add((d.name, float(after[d.name]) > float(before[d.name])))
    return found


def _continuation(base: Attempt, proposal: Mapping[str, Any], space: SearchSpace) -> str:
    """base's run id when the proposal only trains base longer, so it can start from
    base's last checkpoint instead of from scratch: nothing but the epochs grows,
    base finished with a checkpoint of its last epoch, and the project can continue
    a run (it declares the resume_from parameter). Else ""."""
    epochs = space.with_role(Role.EPOCHS)
    if RESUME_FROM not in base.config or len(epochs) != 1:
        return ""
    name = epochs[0].name
    changed = {k for k in proposal if proposal[k] != base.config.get(k)} - {RESUME_FROM}
    if changed - {name} or float(proposal[name]) <= base.checkpoint_epoch:
        return ""
    if base.stopped_early:  # stopped on purpose: more of the same is not the remedy
        return ""
    if base.checkpoint_epoch != int(float(base.config[name])):
        return ""
    return base.run_id


def _clamped_retry(last: Attempt, tried: set[ConfigKey], space: SearchSpace) -> Decision | None:
    """With nothing finished: the crashed attempt with its parameters brought inside
    the search space, if that is new."""
    clamped = space.normalise(
        {
            **last.config,
            **{d.name: d.clamp(last.config[d.name]) for d in space.outside(last.config)},
        }
    )
    if space.key(clamped) in tried:
        return None
    return Decision(
        Action.TRAIN,
        f"retrying inside the search space: {_changes(last.config, clamped, space)}",
        clamped,
        last.run_id,
    )


def _rank(target: Target) -> Callable[[Attempt], tuple[int, float]]:
    """Sort key: best metric first (missing metrics last)."""
    sign = -1.0 if target.direction.value == "maximize" else 1.0

    def key(attempt: Attempt) -> tuple[int, float]:
        if attempt.metric is None:
            return (1, 0.0)
        return (0, sign * attempt.metric)

    return key


def _best(history: Sequence[Attempt], target: Target) -> Attempt | None:
    finished = [a for a in history if a.finished and a.metric is not None]
    return min(finished, key=_rank(target)) if finished else None


def _best_text(best: Attempt | None, target: Target) -> str:
    if best is None or best.metric is None:
        return "no attempt finished"
    return (
        f"best {target.metric} {best.metric:.4g} (attempt {best.number}), "
        f"target {target.describe()}"
    )


def _known_good(
    prior: Sequence[Attempt], tried: set, space: SearchSpace, target: Target
) -> Attempt | None:
    met = [a for a in prior if a.finished and target.is_met(a.metric)]
    for attempt in sorted(met, key=_rank(target)):
        if space.key(attempt.config) not in tried and not space.outside(attempt.config):
            return attempt
    return None


def _apply(moves: Moves, config: Mapping[str, Any], space: SearchSpace) -> Config | None:
    """The config with every dimension of each move's role changed; None if a move
    has no dimension of its role or all of them are at their bound."""
    result = space.normalise(config)
    for move in moves:
        changed = False
        for dim in space.with_role(move.role):
            if dim.name not in result:
                continue
            new = (
                dim.up(result[dim.name], move.factor)
                if move.up
                else dim.down(result[dim.name], move.factor)
            )
            if new is not None and new != result[dim.name]:
                result[dim.name] = new
                changed = True
        if not changed:
            return None
    return result


def _changes(before: Mapping[str, Any], after: Mapping[str, Any], space: SearchSpace) -> str:
    parts = [
        f"{d.name} {_fmt(before.get(d.name))} -> {_fmt(after[d.name])}"
        for d in space.dimensions
        if d.name in after
        and (d.name not in before or float(before[d.name]) != float(after[d.name]))
    ]
    return ", ".join(parts) or "no change"


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
