"""Successive halving on rounds of attempts trained at once (ct_service/search/rungs.py):
tables of histories in, rounds out. The real pipeline's round that continues the best
of a rung from its checkpoint is in tests/test_parallel_attempts.py."""

from __future__ import annotations

import pytest
from test_policy import HEALTHY_BUT_SHORT, SPACE, TARGET, attempt

from ct_service.attempt import Attempt
from ct_service.policy import Action, decide_several
from ct_service.search.rungs import rungs
from ct_service.space import SearchSpace
from ct_service.stop_early import StopRule
from ct_service.target import Budget

FILTERS = (4, 8, 16)


def at_rung(number, validation, epochs=None, stopped="", metric=0.7, **config):
    """An attempt that trained `len(validation)` epochs of `epochs` (default: all of
    them) with a checkpoint of its last; distinct configurations by number."""
    trained = len(validation)
    base = attempt(
        number,
        metric=metric,
        curves={"val_accuracy": tuple(validation), "accuracy": tuple(validation)},
        resume_from="",
        epochs=epochs or trained,
        filters=FILTERS[number % 3],
        conv_blocks=1 + (number // 3) % 4,
        **config,
    )
    return Attempt(
        **{
            **base.__dict__,
            "validation": tuple(validation),
            "checkpoint_epoch": trained,
            "stopped_early": stopped,
        }
    )


ROOMY = Budget(max_attempts=30)  # attempts enough for a bracket of all three rungs


def round_of(history, slots=3, budget=ROOMY):
    return decide_several(history, SPACE, TARGET, budget, slots=slots)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"type": "int", "low": 1, "high": 12}, (1, 4, 12)),  # LeNet
        ({"type": "int", "low": 1, "high": 8}, (1, 3, 8)),
        ({"type": "int", "low": 1, "high": 2000, "log": True}, (222, 667, 2000)),  # diabetes
        ({"type": "int", "low": 5, "high": 12}, (5, 12)),  # none below the least
        ({"type": "int", "low": 1, "high": 1}, (1,)),  # one rung: nothing to halve
    ],
)
def test_rungs_divide_the_most_epochs_by_three_twice(spec, expected):
    space = SearchSpace.from_spec({"epochs": {"role": "epochs", **spec}})
    assert rungs(space.dimensions[0]) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("budget", "lowest"),
    [
        (30, 1),  # 29 left: 9 + 3 + 1 fit, all three rungs
        (14, 1),  # 13 left: just
        (13, 3),  # 12 left: 3 + 1 only: rungs 3 and 8
        (5, 3),  # 4 left: just
    ],
)
def test_the_bracket_is_the_most_rungs_the_attempts_left_can_complete(budget, lowest):
    round_ = round_of([at_rung(1, (0.6,))], budget=Budget(max_attempts=budget))
    assert [d.config["epochs"] for d in round_] == [lowest] * 3


@pytest.mark.unit
def test_too_few_attempts_left_for_two_rungs_leave_the_round_unhalved():
    history = [at_rung(n, (0.5 + n / 10,)) for n in (1, 2, 3, 4, 5)]
    plain = decide_several(history, SPACE, TARGET, Budget(8), slots=3, halving=False)
    assert round_of(history, budget=Budget(8)) == plain  # 3 left: 3 + 1 do not fit


@pytest.mark.unit
def test_a_first_round_trains_new_configurations_to_the_lowest_rung_only():
    start = at_rung(1, (0.6,))  # alone at rung 1: fewer than 3 reached it, none goes on
    round_ = round_of([start])
    assert len(round_) == 3
    assert all(d.action is Action.TRAIN for d in round_)
    assert [d.config["epochs"] for d in round_] == [1, 1, 1]
    assert not any(d.continues for d in round_)
    keys = {SPACE.key(d.config) for d in round_} | {SPACE.key(start.config)}
    assert len(keys) == 4  # nothing tried twice


@pytest.mark.unit
def test_the_best_third_of_a_rung_by_validation_goes_on_from_its_checkpoint():
    # test metrics rank attempt 4 first; the validation metric at the rung ranks 2 first
    history = [
        at_rung(1, (0.60,), metric=0.70),
        at_rung(2, (0.80,), metric=0.60),
        at_rung(3, (0.70,), metric=0.65),
        at_rung(4, (0.50,), metric=0.75),
    ]
    first, *new = round_of(history)
    assert first.continues == "run2"
    assert first.config["resume_from"] == "run2"  # from its checkpoint: no epoch twice
    assert first.config["epochs"] == 3  # the next rung
    assert {k: v for k, v in first.config.items() if k not in ("epochs", "resume_from")} == {
        k: v for k, v in history[1].config.items() if k not in ("epochs", "resume_from")
    }
    assert "best 1/3 of the attempts that reached epoch 1" in first.reason
    assert len(new) == 2
    assert all(d.config["epochs"] == 1 and not d.continues for d in new)


@pytest.mark.unit
def test_six_at_a_rung_send_two_on_but_not_one_that_is_past_it():
    history = [
        at_rung(1, (0.60,)),
        at_rung(2, (0.80, 0.85, 0.87)),  # trained to rung 3: alone there, so it waits
        at_rung(3, (0.70,)),
        at_rung(4, (0.50,)),
        at_rung(5, (0.75,)),
        at_rung(6, (0.72,)),
        at_rung(7, (0.65,)),
    ]
    round_ = round_of(history, slots=4)
    continued = [d.continues for d in round_ if d.continues]
    # 7 reached rung 1: the best 2 are attempt 2 (past it already) and 5
    assert continued == ["run5"]
    assert [d.config["epochs"] for d in round_] == [3, 1, 1, 1]


@pytest.mark.unit
def test_an_attempt_that_gave_up_counts_at_its_rung_but_never_goes_on():
    history = [
        at_rung(1, (0.90,), epochs=8, stopped="behind: val_accuracy ... at epoch 1"),
        at_rung(2, (0.60,)),
        at_rung(3, (0.70,)),
    ]
    round_ = round_of(history)
    assert not any(d.continues for d in round_)  # the best of 3 gave up: nobody goes on


@pytest.mark.unit
def test_a_continued_attempt_is_not_continued_twice():
    base = at_rung(1, (0.9,))
    on = at_rung(4, (0.9, 0.91, 0.92))
    on = Attempt(**{**on.__dict__, "config": {**base.config, "epochs": 3, "resume_from": "run1"}})
    history = [base, at_rung(2, (0.5,)), at_rung(3, (0.6,)), on]
    assert not any(d.continues == "run1" for d in round_of(history))


@pytest.mark.unit
def test_a_rung_records_the_horizon_its_stops_judge_it_by():
    history = [at_rung(n, (0.5 + n / 10,)) for n in (1, 2, 3)]  # 3 epochs trained
    round_ = round_of(history, budget=Budget(30, max_epochs=9))
    assert [d.config["epochs"] for d in round_] == [3, 1, 1]  # 6 left, 2 a slot
    # it may be continued past its rung: judged by all the epochs the budget has left
    assert [d.horizon for d in round_] == [1 + 6, 0 + 6, 0 + 6]
    assert all(d.horizon == 8 for d in round_of(history))  # no epoch budget: the space's most


@pytest.mark.unit
def test_a_project_that_cannot_continue_runs_is_not_halved():
    history = [attempt(1, 0.7, HEALTHY_BUT_SHORT)]  # no resume_from parameter
    round_ = round_of(history)
    assert [d.config["epochs"] for d in round_] == [round_[0].config["epochs"]] * 3
    assert round_[0].config["epochs"] > 1


@pytest.mark.unit
def test_without_halving_a_round_is_the_rule_set_and_tpe_beside_it():
    history = [at_rung(n, (0.5 + n / 10,)) for n in (1, 2, 3)]
    plain = decide_several(history, SPACE, TARGET, Budget(12), slots=3, halving=False)
    halved = round_of(history)
    assert plain != halved
    assert any(d.continues for d in halved)
    assert not any(d.config["epochs"] == 3 and d.continues for d in plain)


@pytest.mark.unit
def test_a_short_stop_of_a_round_is_continued_though_it_did_not_end_last():
    short = at_rung(2, (0.7, 0.81), epochs=8, stopped="target met: val_accuracy ... at epoch 2")
    short = Attempt(**{**short.__dict__, "metric": 0.78})  # test falls short of 0.8
    history = [at_rung(1, (0.6,)), short, at_rung(3, (0.5,)), at_rung(4, (0.55,))]
    round_ = decide_several(history, SPACE, TARGET, ROOMY, slots=3, stop_rule=StopRule())
    assert round_[0].continues == "run2"
    assert round_[0].reason.startswith("attempt 2 was stopped at epoch 2")
