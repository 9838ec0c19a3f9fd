"""The policy is a pure function: tables of histories in, decisions out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ct_service.attempt import Attempt, AttemptStatus
from ct_service.curves import Finding, diagnose
from ct_service.policy import Action, decide, decide_several, epochs_trained, warm_start
from ct_service.space import SearchSpace
from ct_service.stop_early import StopRule
from ct_service.target import Budget, Direction, Target

SPACE = SearchSpace.from_spec(
    {
        "conv_blocks": {"role": "depth", "type": "int", "low": 1, "high": 4},
        "filters": {"role": "width", "type": "int", "values": [4, 8, 16]},
        "dropout": {"role": "regularization", "type": "float", "values": [0.0, 0.25, 0.5]},
        "epochs": {"role": "epochs", "type": "int", "low": 1, "high": 8},
        "learning_rate": {"role": "learning_rate", "type": "float", "low": 0.0001, "high": 0.01},
    }
)
BASE = {
    "conv_blocks": 1,
    "filters": 4,
    "dropout": 0.0,
    "epochs": 2,
    "learning_rate": 0.001,
    "data": "/d",
}
TARGET = Target()
BUDGET = Budget(max_attempts=5)

# Learning curves that show one problem each.
HEALTHY_BUT_SHORT = {
    "loss": (0.9, 0.5),
    "val_loss": (0.8, 0.45),
    "accuracy": (0.7, 0.78),
    "val_accuracy": (0.72, 0.77),
}
PLATEAU = {
    "loss": (0.9, 0.6, 0.598),
    "val_loss": (0.85, 0.62, 0.619),
    "accuracy": (0.6, 0.72, 0.72),
    "val_accuracy": (0.6, 0.71, 0.71),
}
OVERFIT = {
    "loss": (0.5, 0.2, 0.05),
    "val_loss": (0.5, 0.45, 0.6),
    "accuracy": (0.8, 0.95, 0.99),
    "val_accuracy": (0.78, 0.77, 0.76),
}
DIVERGING = {"loss": (2.0, 3.5, 9.0), "val_loss": (2.1, 4.0, 10.0)}
NAN_LOSS = {"loss": (2.0, float("nan")), "val_loss": (2.1, float("nan"))}
SLOW = {
    "loss": (2.2919, 2.2766),
    "val_loss": (2.2869, 2.2719),
    "accuracy": (0.10, 0.14),
    "val_accuracy": (0.13, 0.16),
}
ONE_EPOCH = {"loss": (0.9,), "val_loss": (0.8,)}


def attempt(number=1, metric=0.7, curves=None, status=AttemptStatus.FINISHED, failure="", **config):
    return Attempt(
        number=number,
        run_id=f"run{number}",
        config={**BASE, **config},
        status=status,
        metric=metric,
        curves=HEALTHY_BUT_SHORT if curves is None else curves,
        failure=failure,
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("curves", "finding", "evidence"),
    [
        (HEALTHY_BUT_SHORT, Finding.NOT_CONVERGED, "val_loss still falling"),
        (ONE_EPOCH, Finding.NOT_CONVERGED, "only one epoch"),
        (PLATEAU, Finding.UNDERFITTING, "flat"),
        (OVERFIT, Finding.OVERFITTING, "well above validation accuracy"),
        (DIVERGING, Finding.DIVERGING, "rose from 2 to 9"),
        (NAN_LOSS, Finding.DIVERGING, "NaN"),
        (SLOW, Finding.LEARNING_SLOWLY, "only 0.7% an epoch"),
        ({}, Finding.NO_CURVES, "no per-epoch loss"),
    ],
)
def test_diagnosis_reads_the_learning_curves(curves, finding, evidence):
    diagnosis = diagnose(attempt(curves=curves))
    assert diagnosis.finding is finding
    assert evidence in diagnosis.evidence


@pytest.mark.unit
def test_overfitting_is_also_seen_in_a_rising_validation_loss_without_accuracy():
    curves = {"loss": (1.0, 0.5, 0.3, 0.2), "val_loss": (1.0, 0.6, 0.7, 0.8)}
    diagnosis = diagnose(attempt(curves=curves))
    assert diagnosis.finding is Finding.OVERFITTING
    assert "val_loss rose from 0.6 (epoch 2)" in diagnosis.evidence


@pytest.mark.unit
@pytest.mark.parametrize(
    ("curves", "changed", "reason_words"),
    [
        # under-fitting: more capacity and more epochs (the old chain's idea, when the evidence says so)
        (
            PLATEAU,
            {"conv_blocks": 2, "epochs": 4},
            ["under-fitting", "conv_blocks 1 -> 2", "epochs 2 -> 4"],
        ),
        # not converged: more epochs only
        (HEALTHY_BUT_SHORT, {"epochs": 4}, ["not converged", "epochs 2 -> 4"]),
        # over-fitting: regularise
        (OVERFIT, {"dropout": 0.25}, ["over-fitting", "dropout 0 -> 0.25"]),
        # diverging: lower learning rate
        (DIVERGING, {"learning_rate": 0.001 / 3}, ["diverging", "learning_rate 0.001 -> 0.000333"]),
        # learning slowly: raise the learning rate
        (SLOW, {"learning_rate": 0.003}, ["learning slowly", "learning_rate 0.001 -> 0.003"]),
    ],
)
def test_the_evidence_decides_what_changes(curves, changed, reason_words):
    decision = decide([attempt(curves=curves)], SPACE, TARGET, BUDGET)
    assert decision.action is Action.TRAIN
    expected = {**BASE, **changed}
    for key, value in expected.items():
        if isinstance(value, float):
            assert decision.config[key] == pytest.approx(value), key
        else:
            assert decision.config[key] == value, key
    for words in reason_words:
        assert words in decision.reason
    assert "\n" not in decision.reason
    assert decision.derived_from == "run1"


@pytest.mark.unit
def test_target_met_means_promote():
    decision = decide(
        [attempt(metric=0.5), attempt(2, metric=0.85, epochs=4)], SPACE, TARGET, BUDGET
    )
    assert decision.action is Action.PROMOTE
    assert decision.derived_from == "run2"
    assert "0.85" in decision.reason


@pytest.mark.unit
def test_minimising_target():
    target = Target("rmse", 0.8, Direction.MINIMIZE)
    assert decide([attempt(metric=0.79)], SPACE, target, BUDGET).action is Action.PROMOTE
    assert decide([attempt(metric=0.81)], SPACE, target, BUDGET).action is Action.TRAIN


@pytest.mark.unit
def test_never_repeats_a_configuration():
    history = [
        attempt(1, curves=HEALTHY_BUT_SHORT),
        attempt(2, metric=0.6, curves=HEALTHY_BUT_SHORT, epochs=4),
    ]
    # attempt 1 is the best; its first remedy (epochs 2 -> 4) was tried as attempt 2.
    decision = decide(history, SPACE, TARGET, BUDGET)
    assert decision.action is Action.TRAIN
    assert SPACE.key(decision.config) not in {SPACE.key(a.config) for a in history}
    assert decision.config["epochs"] == 6  # the next remedy: three times the epochs


@pytest.mark.unit
def test_stays_inside_the_search_space():
    at_the_top = attempt(curves=PLATEAU, conv_blocks=4, filters=16, epochs=8, learning_rate=0.01)
    decision = decide([at_the_top], SPACE, TARGET, BUDGET)
    assert decision.action is Action.TRAIN
    assert SPACE.outside(decision.config) == []
    assert decision.config["dropout"] == 0.25  # the only room left to move


@pytest.mark.unit
def test_stops_when_nothing_is_left_to_try():
    tiny = SearchSpace.from_spec({"epochs": {"role": "epochs", "type": "int", "low": 2, "high": 2}})
    decision = decide([attempt(curves=PLATEAU)], tiny, TARGET, BUDGET)
    assert decision.action is Action.STOP
    assert not decision.budget_spent
    assert "exhausted" in decision.reason


@pytest.mark.unit
def test_respects_the_attempt_budget():
    history = [attempt(i, metric=0.5 + i / 100, epochs=i) for i in range(1, 4)]
    decision = decide(history, SPACE, TARGET, Budget(max_attempts=3))
    assert decision.action is Action.STOP
    assert decision.budget_spent
    assert decision.reason == (
        "budget spent: 3 of 3 attempts; best test_accuracy 0.53 (attempt 3), target test_accuracy >= 0.8"
    )


@pytest.mark.unit
def test_respects_the_wall_time_budget():
    decision = decide(
        [attempt()], SPACE, TARGET, Budget(5, max_wall_seconds=60), elapsed_seconds=61
    )
    assert decision.action is Action.STOP
    assert decision.budget_spent
    assert "61 s of 60 s" in decision.reason


# The epoch budget (CT_MAX_EPOCHS, --max-epochs): epochs trained over all attempts,
# a continued attempt's inherited epochs counted once.
@pytest.mark.unit
def test_epochs_trained_count_a_continued_attempts_inherited_epochs_once():
    first = resumable(1, checkpoint_epoch=2, curves=HEALTHY_BUT_SHORT)  # 2 epochs logged
    longer = {**HEALTHY_BUT_SHORT, "val_accuracy": (0.72, 0.77, 0.79, 0.8, 0.8)}
    continued = resumable(2, checkpoint_epoch=5, curves=longer, epochs=5)
    continued = Attempt(
        **{**continued.__dict__, "config": {**continued.config, "resume_from": "run1"}}
    )
    fresh = attempt(3, curves=PLATEAU, epochs=3)  # 3 epochs from scratch
    no_curve = attempt(4, curves={}, epochs=6)  # a project that logs no curve: its epochs
    assert epochs_trained([first, continued, fresh, no_curve], SPACE) == 2 + 3 + 3 + 6


@pytest.mark.unit
def test_the_epoch_budget_caps_a_proposal_and_stops_the_pipeline_once_spent():
    history = [attempt(1, curves=PLATEAU, epochs=3)]  # 3 epochs trained, under-fitting
    decision = decide(history, SPACE, TARGET, Budget(5, max_epochs=7), stop_rule=StopRule())
    assert decision.action is Action.TRAIN
    assert decision.config["epochs"] == 4  # 8 asked for, 4 left in the budget
    assert decision.reason.endswith("; epochs 4: what the budget has left")
    unbounded = decide(history, SPACE, TARGET, BUDGET, stop_rule=StopRule())
    assert unbounded.config == {**decision.config, "epochs": 8}
    second = attempt(2, curves={"val_accuracy": (0.5,) * 4}, **decision.config)
    spent = decide([*history, second], SPACE, TARGET, Budget(5, max_epochs=7))
    assert spent.action is Action.STOP and spent.budget_spent
    assert spent.reason.startswith("budget spent: 7 of 7 epochs; best test_accuracy 0.7")


@pytest.mark.unit
def test_a_continuation_under_the_epoch_budget_trains_only_what_is_left_on_its_checkpoint():
    short = resumable(epochs=2)  # 2 epochs, healthy but short: continued to the bound
    decision = decide([short], SPACE, TARGET, Budget(5, max_epochs=5), stop_rule=StopRule())
    assert decision.continues == "run1"
    assert decision.config["epochs"] == 5  # from epoch 2, the 3 the budget has left


@pytest.mark.unit
def test_a_round_shares_the_epochs_left_between_its_attempts():
    history = [attempt(1, 0.7, HEALTHY_BUT_SHORT)]  # 2 epochs trained
    round_ = decide_several(
        history, SPACE, TARGET, Budget(5, max_epochs=8), slots=3, stop_rule=StopRule()
    )
    assert len(round_) == 3
    assert [d.config["epochs"] for d in round_] == [2, 2, 2]  # 6 left, 2 each
    assert round_[0].reason.count("what the budget has left") == 1
    assert round_[0].reason.endswith("; epochs 2: what the budget has left")
    two_left = decide_several(history, SPACE, TARGET, Budget(5, max_epochs=4), slots=3)
    assert len(two_left) == 2 and all(d.config["epochs"] == 1 for d in two_left)


@pytest.mark.unit
def test_a_crash_falls_back_to_the_best_finished_attempt():
    history = [
        attempt(1, metric=0.6, curves=HEALTHY_BUT_SHORT),
        attempt(
            2,
            metric=None,
            status=AttemptStatus.FAILED,
            failure="MemoryError: out of memory",
            epochs=4,
        ),
    ]
    decision = decide(history, SPACE, TARGET, BUDGET)
    assert decision.action is Action.TRAIN
    assert decision.reason.startswith(
        "attempt 2 failed (MemoryError: out of memory); attempt 1 not converged"
    )
    assert decision.derived_from == "run1"
    assert decision.config["epochs"] == 6


@pytest.mark.unit
def test_a_first_attempt_outside_the_space_is_clamped_into_it():
    crashed = attempt(
        1,
        metric=None,
        status=AttemptStatus.FAILED,
        failure="error: conv_blocks must be between 1 and 4",
        conv_blocks=9,
    )
    decision = decide([crashed], SPACE, TARGET, BUDGET)
    assert decision.action is Action.TRAIN
    assert decision.config["conv_blocks"] == 4
    assert "conv_blocks 9 -> 4" in decision.reason


@pytest.mark.unit
def test_a_crash_with_nothing_to_fall_back_on_stops():
    crashed = attempt(
        1,
        metric=None,
        status=AttemptStatus.FAILED,
        failure="ModuleNotFoundError: No module named keras",
    )
    decision = decide([crashed], SPACE, TARGET, BUDGET)
    assert decision.action is Action.STOP
    assert "No module named keras" in decision.reason


@pytest.mark.unit
def test_earlier_pipelines_lend_a_configuration_that_reached_the_target():
    earlier = attempt(3, metric=0.93, conv_blocks=2, epochs=6)
    decision = decide([attempt(1, metric=0.5)], SPACE, TARGET, BUDGET, prior=[earlier])
    assert decision.action is Action.TRAIN
    assert decision.config["conv_blocks"] == 2 and decision.config["epochs"] == 6
    assert decision.config["data"] == "/d"  # this pipeline's own fixed parameters stay
    assert "earlier pipeline" in decision.reason


@pytest.mark.unit
def test_no_history_is_an_error():
    with pytest.raises(ValueError):
        decide([], SPACE, TARGET, BUDGET)


# Continuation: an attempt that only trains an earlier one longer starts from its
# last checkpoint (the project declares resume_from).
def resumable(number=1, checkpoint_epoch=2, curves=None, **config):
    base = attempt(number, curves=curves, resume_from="", **config)
    return Attempt(**{**base.__dict__, "checkpoint_epoch": checkpoint_epoch})


@pytest.mark.unit
@pytest.mark.parametrize(
    ("history", "continues", "why"),
    [
        ([resumable()], "run1", "more epochs only, checkpoint of the last epoch: continue"),
        ([resumable(checkpoint_epoch=0)], "", "no checkpoint: start over"),
        ([resumable(checkpoint_epoch=1)], "", "checkpoint of an earlier epoch only: start over"),
        ([attempt()], "", "the project cannot continue a run (no resume_from)"),
        ([resumable(curves=PLATEAU)], "", "under-fitting: depth and epochs change: start over"),
        ([resumable(curves=DIVERGING)], "", "learning rate changes: start over"),
    ],
)
def test_continuation_only_when_only_the_epochs_grow_from_a_checkpoint(history, continues, why):
    decision = decide(history, SPACE, TARGET, BUDGET)
    assert decision.action is Action.TRAIN, why
    assert decision.continues == continues, why
    assert decision.config.get("resume_from", "") == continues, why  # what the run is given
    if continues:
        assert decision.config["epochs"] > history[-1].config["epochs"]
        assert "continuing attempt 1 from its checkpoint at epoch 2" in decision.reason


@pytest.mark.unit
def test_a_proposal_derived_from_a_continuation_does_not_inherit_its_checkpoint() -> None:
    """Attempt 2 continued attempt 1; a new architecture derived from attempt 2 must
    start from scratch, not load attempt 1's weights."""
    continued = resumable(2, checkpoint_epoch=4, curves=PLATEAU, epochs=4)
    continued = Attempt(**{**continued.__dict__, "metric": 0.75})  # the better one: the base
    continued = Attempt(
        **{**continued.__dict__, "config": {**continued.config, "resume_from": "run1"}}
    )
    decision = decide([resumable(), continued], SPACE, TARGET, BUDGET)
    assert decision.action is Action.TRAIN and decision.continues == ""
    assert decision.config["resume_from"] == ""


# Projects without curves learn from their results: TPE proposes from them (the curve
# remedies' walk, one dimension at a time, only when it finds nothing untried).
WINE_SPACE = SearchSpace.from_spec(
    {"alpha": {"role": "regularization", "type": "float", "low": 0.005, "high": 50.0}}
)
RMSE = Target(metric="rmse", threshold=0.7, direction=Direction.MINIMIZE)


def final_only(number, alpha, rmse, derived_from=""):
    return Attempt(
        number=number,
        run_id=f"run{number}",
        config={"alpha": alpha, "l1_ratio": 0.1},
        status=AttemptStatus.FINISHED,
        metric=rmse,
        derived_from=derived_from,
    )


@pytest.mark.unit
def test_without_curves_tpe_decides_from_the_results() -> None:
    """MLflow's wine example logs only its final rmse: nothing to diagnose, so TPE
    proposes from the results, a configuration not tried, from the best attempt."""
    history = [final_only(1, 0.5, 0.795), final_only(2, 1.0, 0.823, derived_from="run1")]
    decision = decide(history, WINE_SPACE, RMSE, BUDGET)
    assert decision.action is Action.TRAIN and decision.derived_from == "run1"
    assert decision.reason.startswith(
        "attempt 1 logged no learning curves to diagnose; TPE over 2 finished attempts "
        "proposes alpha 0.5 -> "
    )
    assert decision.config["alpha"] not in (0.5, 1.0)
    assert not WINE_SPACE.outside(decision.config)
    assert decide(history, WINE_SPACE, RMSE, BUDGET) == decision  # a replay decides the same


@pytest.mark.unit
def test_without_curves_tpe_samples_the_epochs_too() -> None:
    """No early stop can cut a run without curves, so its epochs are not set to the
    space's most, as a sampled configuration's are under early stops: TPE picks them."""
    space = SearchSpace.from_spec(
        {
            "alpha": {"role": "regularization", "type": "float", "low": 0.005, "high": 50.0},
            "max_iter": {"role": "epochs", "type": "int", "low": 10, "high": 1000},
        }
    )
    picked = set()
    for pipeline in range(6):  # each pipeline's first run seeds its sampler
        first = Attempt(
            1, f"pipeline{pipeline}", {"alpha": 0.5, "max_iter": 50}, AttemptStatus.FINISHED, 0.8
        )
        picked.add(decide([first], space, RMSE, BUDGET).config["max_iter"])
    assert len(picked) > 1 and all(10 <= e <= 1000 for e in picked)


@pytest.mark.unit
def test_without_curves_the_search_stops_when_nothing_untried_is_left() -> None:
    space = SearchSpace.from_spec(
        {"alpha": {"role": "regularization", "type": "float", "values": [0.5, 1.0]}}
    )
    history = [final_only(1, 0.5, 0.795), final_only(2, 1.0, 0.823, derived_from="run1")]
    decision = decide(history, space, RMSE, BUDGET)
    assert decision.action is Action.STOP
    assert decision.reason.startswith("search space exhausted")


# Early stops (ct.yaml stop_early, on by default): a new configuration gets the most
# epochs the space allows, since its training stops when its curve meets the target
# or shows it cannot.
def stopped(kind, number=1, metric=0.7, checkpoint_epoch=3, validation=(), **config):
    base = resumable(number, checkpoint_epoch=checkpoint_epoch, **config)
    return Attempt(
        **{
            **base.__dict__,
            "metric": metric,
            "stopped_early": f"{kind}: val_accuracy ... at epoch {checkpoint_epoch}",
            "validation": validation,
        }
    )


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["hopeless", "behind"])
def test_a_stop_that_gave_up_while_under_fitting_jumps_in_capacity_and_learning_rate(kind):
    gave_up = stopped(kind, epochs=8, metric=0.72, curves=PLATEAU)
    decision = decide([gave_up], SPACE, TARGET, BUDGET, stop_rule=StopRule())
    assert decision.action is Action.TRAIN
    assert (decision.config["conv_blocks"], decision.config["filters"]) == (2, 16)
    assert decision.config["learning_rate"] == pytest.approx(0.003)
    assert decision.config["epochs"] == 8  # the space's high: the stops bound it
    assert decision.continues == "" and decision.config["resume_from"] == ""
    assert decision.reason == (
        f"attempt 1 stopped early, {kind}: val_accuracy ... at epoch 3, under-fitting; more "
        "capacity: conv_blocks 1 -> 2, filters 4 -> 16, learning_rate 0.001 -> 0.003"
    )
    # tried already: the same jump without the learning rate
    config = {k: v for k, v in decision.config.items() if k != "resume_from"}
    jumped = stopped("hopeless", 2, metric=0.71, curves=PLATEAU, **config)
    again = decide([gave_up, jumped], SPACE, TARGET, BUDGET, stop_rule=StopRule())
    assert again.config["learning_rate"] == 0.001 and again.config["filters"] == 16


@pytest.mark.unit
def test_with_a_schedule_in_the_space_the_capacity_jump_also_anneals_the_faster_rate():
    space = SearchSpace.from_spec(
        {
            **SPACE.to_spec(),
            "lr_decay": {"role": "schedule", "type": "float", "values": [0.0, 0.2, 0.4]},
        }
    )
    gave_up = stopped("hopeless", epochs=8, metric=0.72, curves=PLATEAU, lr_decay=0.0)
    decision = decide([gave_up], space, TARGET, BUDGET, stop_rule=StopRule())
    assert decision.action is Action.TRAIN
    assert (decision.config["conv_blocks"], decision.config["filters"]) == (2, 16)
    assert decision.config["learning_rate"] == pytest.approx(0.003)
    assert decision.config["lr_decay"] == 0.2
    assert decision.reason.endswith("learning_rate 0.001 -> 0.003, lr_decay 0 -> 0.2")
    # tried already: the jump of a space without a schedule
    config = {k: v for k, v in decision.config.items() if k != "resume_from"}
    jumped = stopped("hopeless", 2, metric=0.71, curves=PLATEAU, **config)
    again = decide([gave_up, jumped], space, TARGET, BUDGET, stop_rule=StopRule())
    assert again.config["learning_rate"] == pytest.approx(0.003)
    assert again.config["lr_decay"] == 0.0


@pytest.mark.unit
@pytest.mark.parametrize(
    ("jump_validation", "next_rate", "why"),
    [
        ((0.1135, 0.1135), 0.001, "stuck at chance: the next jump keeps the base's rate"),
        ((0.11, float("nan")), 0.001, "diverged to NaN: the same"),
        ((0.95, 0.9, 0.91), 0.003, "learned, then gave up: the faster rate is not blamed"),
        ((0.5, 0.95), 0.003, "slow first epoch, then past the base's first: not blamed"),
    ],
)
def test_a_capacity_jump_that_never_learned_is_not_followed_by_another_at_that_rate(
    jump_validation, next_rate, why
):
    """A jump at 3x the rate that never got as far as its base after one epoch
    blames the raised rate: the next jump keeps the base's rate instead of trying the
    same rate without the schedule (MNIST, 30,000 images, seed 3: 0.1135 twice)."""
    mnist_99 = Target(threshold=0.99)
    space = SearchSpace.from_spec(
        {
            **SPACE.to_spec(),
            "lr_decay": {"role": "schedule", "type": "float", "values": [0.0, 0.2, 0.4]},
        }
    )
    base = stopped(
        "hopeless",
        epochs=8,
        metric=0.96,
        curves=PLATEAU,
        lr_decay=0.0,
        validation=(0.94, 0.955, 0.96),
    )
    first = decide([base], space, mnist_99, BUDGET, stop_rule=StopRule())
    config = {k: v for k, v in first.config.items() if k != "resume_from"}
    jumped = replace(
        stopped(
            "hopeless",
            2,
            metric=jump_validation[-1],
            curves=PLATEAU,
            validation=jump_validation,
            **config,
        ),
        derived_from=base.run_id,
    )
    again = decide([base, jumped], space, mnist_99, BUDGET, stop_rule=StopRule())
    assert again.action is Action.TRAIN, why
    assert (again.config["conv_blocks"], again.config["filters"]) == (2, 16), why
    assert again.config["learning_rate"] == pytest.approx(next_rate), why
    assert again.config["lr_decay"] == 0.0, why


@pytest.mark.unit
def test_a_configuration_that_gave_up_with_the_epochs_a_budget_left_is_not_tried_again():
    """Under an epoch budget a proposal gets fewer epochs than the space's most; once
    it gave up, the same network at the most epochs counts as tried."""
    gave_up = stopped("hopeless", epochs=8, metric=0.72, curves=PLATEAU)  # 3 epochs
    budget = Budget(5, max_epochs=12)
    jump = decide([gave_up], SPACE, TARGET, budget, stop_rule=StopRule())
    assert jump.config["epochs"] == 8 and jump.config["learning_rate"] == pytest.approx(0.003)
    capped = {k: v for k, v in jump.config.items() if k != "resume_from"} | {"epochs": 6}
    behind = stopped("behind", 2, metric=0.70, curves=PLATEAU, **capped)  # 3 more epochs
    again = decide([gave_up, behind], SPACE, TARGET, budget, stop_rule=StopRule())
    assert again.action is Action.TRAIN
    assert again.config["learning_rate"] == 0.001  # the next jump, not the same one again
    assert again.config["epochs"] == 6  # what the budget has left


@pytest.mark.unit
def test_after_a_hopeless_stop_tpe_proposes_a_new_configuration_given_the_most_epochs():
    hopeless = stopped("hopeless", epochs=8, metric=0.72, curves=OVERFIT)  # no capacity jump
    decision = decide([hopeless], SPACE, TARGET, BUDGET, stop_rule=StopRule())
    assert decision.action is Action.TRAIN
    assert decision.config["epochs"] == 8  # the space's high: the stops bound it
    changed = {k for k in decision.config if decision.config[k] != hopeless.config[k]}
    assert changed - {"epochs"}, "a hopeless configuration is never just trained longer"
    assert all(not d.outside(decision.config) for d in [SPACE])  # inside the space
    assert decision.continues == "" and decision.config["resume_from"] == ""
    assert decision.reason.startswith("attempt 1 stopped early, hopeless:")
    assert "TPE over 1 finished attempts proposes" in decision.reason
    # a replayed decision step proposes the same configuration
    assert decide([hopeless], SPACE, TARGET, BUDGET, stop_rule=StopRule()) == decision


@pytest.mark.unit
def test_a_sampled_configuration_already_tried_is_not_proposed_again():
    hopeless = stopped("hopeless", epochs=8, metric=0.72, curves=OVERFIT)
    first = decide([hopeless], SPACE, TARGET, BUDGET, stop_rule=StopRule())
    config = {k: v for k, v in first.config.items() if k != "resume_from"}
    again = stopped("hopeless", 2, metric=0.71, **config)
    second = decide([hopeless, again], SPACE, TARGET, BUDGET, stop_rule=StopRule())
    assert second.action is Action.TRAIN
    assert SPACE.key(second.config) not in {SPACE.key(hopeless.config), SPACE.key(first.config)}


@pytest.mark.unit
def test_without_stops_the_epochs_grow_as_before_and_with_them_go_to_the_bound():
    short = resumable(epochs=2)  # healthy but short: more epochs, continued
    assert decide([short], SPACE, TARGET, BUDGET).config["epochs"] == 4
    with_stops = decide([short], SPACE, TARGET, BUDGET, stop_rule=StopRule())
    assert with_stops.config["epochs"] == 8 and with_stops.continues == "run1"


@pytest.mark.unit
def test_a_target_met_stop_whose_test_metric_falls_short_is_continued_to_a_wider_mark():
    short = stopped("target met", epochs=8, metric=0.795, validation=(0.78, 0.806, 0.808))
    decision = decide([short], SPACE, TARGET, BUDGET, stop_rule=StopRule())
    assert decision.action is Action.TRAIN and decision.continues == "run1"
    assert decision.config == {**short.config, "resume_from": "run1"}  # same, trained on
    # the interval: the continuation's watch measures this attempt's gap itself
    assert decision.stop_margin is None
    assert decision.reason.endswith("by the gap it measured")
    assert "misses test_accuracy >= 0.8" in decision.reason
    # a fixed margin (ct.yaml): that margin more, and the val/test gap
    fixed = decide([short], SPACE, TARGET, BUDGET, stop_rule=StopRule(margin=0.005))
    assert fixed.stop_margin == pytest.approx(0.005 + 0.013)
    # one already at its epoch bound cannot be continued: the search moves on
    at_bound = stopped("target met", epochs=3, metric=0.795, validation=(0.78, 0.806, 0.808))
    moved_on = decide([at_bound], SPACE, TARGET, BUDGET, stop_rule=StopRule())
    assert moved_on.continues == "" or moved_on.config["epochs"] > 3


@pytest.mark.unit
def test_attempts_stopped_at_other_epochs_do_not_count_as_changes_that_made_it_worse():
    """Attempt 2 (bigger) was stopped earlier than attempt 1 and scored lower there:
    no evidence against growing, so an under-fitting base may still grow."""
    first = resumable(metric=0.76, curves=PLATEAU, epochs=3, checkpoint_epoch=3)
    first = Attempt(**{**first.__dict__, "metric": 0.76})
    second = stopped("hopeless", 2, metric=0.74, epochs=8, conv_blocks=2, filters=8)
    second = Attempt(**{**second.__dict__, "derived_from": "run1"})
    decision = decide([first, second], SPACE, TARGET, BUDGET, stop_rule=StopRule())
    assert decision.action is Action.TRAIN
    assert decision.config["conv_blocks"] == 2 and decision.config["filters"] == 4
    assert decision.reason.startswith("attempt 1 under-fitting")


# Warm start: a new pipeline (a new push) starts from the project's history.
@pytest.mark.unit
def test_warm_start_takes_the_configuration_that_met_the_target_before():
    met = attempt(1, metric=0.85, conv_blocks=3, filters=16, learning_rate=0.003)
    close = attempt(2, metric=0.79, conv_blocks=2)
    warm = warm_start(BASE, set(), [close, met], SPACE, TARGET)
    assert warm is not None
    config, reason = warm
    assert (config["conv_blocks"], config["filters"], config["learning_rate"]) == (3, 16, 0.003)
    assert reason.startswith("warm start: the configuration that reached test_accuracy 0.85")


@pytest.mark.unit
def test_warm_start_falls_back_to_the_closest_miss_and_keeps_what_was_asked_for():
    close = attempt(1, metric=0.79, conv_blocks=2, filters=8)
    config, reason = warm_start(BASE, {"filters"}, [close], SPACE, TARGET) or ({}, "")
    assert config["conv_blocks"] == 2 and config["filters"] == BASE["filters"]  # given: kept
    assert reason.startswith("warm start: the closest earlier attempt, at test_accuracy 0.79")


@pytest.mark.unit
def test_no_warm_start_without_history_or_when_it_changes_nothing():
    assert warm_start(BASE, set(), [], SPACE, TARGET) is None
    assert warm_start(BASE, set(), [attempt(1, metric=0.9)], SPACE, TARGET) is None
    crashed = attempt(1, metric=None, status=AttemptStatus.FAILED, conv_blocks=4)
    assert warm_start(BASE, set(), [crashed], SPACE, TARGET) is None


# -- several attempts at once (CT_PARALLEL_ATTEMPTS) ---------------------------------


@pytest.mark.unit
def test_one_slot_decides_exactly_as_one_attempt_at_a_time():
    history = [attempt(1, 0.7, HEALTHY_BUT_SHORT)]
    assert decide_several(history, SPACE, TARGET, BUDGET, slots=1) == [
        decide(history, SPACE, TARGET, BUDGET)
    ]


@pytest.mark.unit
def test_several_slots_add_distinct_tpe_samples_beside_the_policys_own_proposal():
    history = [attempt(1, 0.7, HEALTHY_BUT_SHORT)]
    first, *beside = decide_several(history, SPACE, TARGET, BUDGET, slots=3)
    assert first == decide(history, SPACE, TARGET, BUDGET)
    assert len(beside) == 2
    keys = {SPACE.key(d.config) for d in (first, *beside)} | {SPACE.key(BASE)}
    assert len(keys) == 4  # nothing tried or proposed twice
    for decision in beside:
        assert decision.action is Action.TRAIN
        assert decision.config["epochs"] == first.config["epochs"]
        assert not SPACE.outside(decision.config)
        assert decision.config["data"] == "/d"  # parameters outside the space kept
        assert decision.reason.startswith("trained alongside attempt 2: TPE over 1 finished")
    # pure: the same history proposes the same round
    assert decide_several(history, SPACE, TARGET, BUDGET, slots=3)[1:] == beside


@pytest.mark.unit
def test_a_round_never_exceeds_the_attempt_budget():
    history = [attempt(n, 0.6 + n / 100, HEALTHY_BUT_SHORT, epochs=n) for n in (1, 2, 3)]
    assert len(decide_several(history, SPACE, TARGET, Budget(max_attempts=5), slots=4)) == 2
    spent = [*history, attempt(4, 0.65, HEALTHY_BUT_SHORT, epochs=4)]
    [stop] = decide_several(spent, SPACE, TARGET, Budget(max_attempts=4), slots=4)
    assert stop.action is Action.STOP and stop.budget_spent


@pytest.mark.unit
def test_the_best_attempt_of_a_round_that_met_the_target_is_promoted_alone():
    """Attempts of one round end in any order: the one that met the target is promoted
    even when a later-numbered one ended after it and missed."""
    round_ = [
        attempt(1, 0.7, HEALTHY_BUT_SHORT),
        attempt(2, 0.83, HEALTHY_BUT_SHORT, epochs=4),
        attempt(3, 0.91, HEALTHY_BUT_SHORT, epochs=8),
        attempt(4, 0.75, HEALTHY_BUT_SHORT, filters=8),
    ]
    [promote] = decide_several(round_, SPACE, TARGET, BUDGET, slots=3)
    assert promote.action is Action.PROMOTE
    assert promote.derived_from == "run3"
