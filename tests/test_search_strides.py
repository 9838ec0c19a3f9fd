"""A direction that kept improving takes a larger step (ct_service/search/strides.py):
the streak table first, then the steps the rule set proposes with it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_policy import BASE, BUDGET, SLOW, SPACE, TARGET, attempt, stopped

from ct_service.attempt import Attempt
from ct_service.policy import Action, decide
from ct_service.search.fixups import single_epochs
from ct_service.search.moves import Move, apply
from ct_service.search.strides import MAX_STREAK, strides
from ct_service.space import Role, SearchSpace

RATE_UP = ("learning_rate", True)
DEPTH_UP = ("conv_blocks", True)


def derived(number: int, metric: float, base: Attempt, **config: object) -> Attempt:
    """An attempt with its base's curves and configuration but `config`, derived from it."""
    made = attempt(number, metric=metric, curves=base.curves, **{**base.config, **config})
    return replace(made, derived_from=base.run_id)


def streaks_of(history: list[Attempt], space: SearchSpace = SPACE) -> dict[str, dict]:
    return strides(history, space, TARGET, single_epochs(space))


@pytest.mark.unit
def test_each_improving_move_of_a_direction_lengthens_its_streak_up_to_the_cap() -> None:
    first = attempt(1, metric=0.5, learning_rate=0.0001)
    second = derived(2, 0.6, first, learning_rate=0.0003)
    third = derived(3, 0.7, second, learning_rate=0.0009)
    fourth = derived(4, 0.8, third, learning_rate=0.0027)
    found = streaks_of([first, second, third, fourth])
    assert found["run1"] == {}
    assert found["run2"][RATE_UP] == 1
    assert found["run3"][RATE_UP] == 2
    assert found["run4"][RATE_UP] == MAX_STREAK == 2


@pytest.mark.unit
def test_a_move_that_did_not_improve_ends_its_streak() -> None:
    first = attempt(1, metric=0.5, learning_rate=0.0001)
    second = derived(2, 0.6, first, learning_rate=0.0003)
    third = derived(3, 0.55, second, learning_rate=0.0009)  # worse than its base
    found = streaks_of([first, second, third])
    assert found["run2"][RATE_UP] == 1 and found["run3"][RATE_UP] == 0


@pytest.mark.unit
def test_a_streak_carries_over_moves_of_other_dimensions() -> None:
    """Each dimension keeps its own step (as Rprop does), whatever moved in between:
    a search without curves moves the least explored dimension next."""
    first = attempt(1, metric=0.5, learning_rate=0.0001)
    second = derived(2, 0.6, first, learning_rate=0.0003)
    third = derived(3, 0.7, second, conv_blocks=2)
    found = streaks_of([first, second, third])
    assert found["run3"] == {RATE_UP: 1, DEPTH_UP: 1}


@pytest.mark.unit
def test_attempts_stopped_early_compare_where_their_curves_were_headed() -> None:
    """Their metrics come from other epochs: the one whose validation curve was headed
    higher by the longest horizon improved, whatever its metric at the stop."""
    first = stopped("hopeless", 1, metric=0.40, validation=(0.20, 0.21, 0.22), learning_rate=1e-4)
    rising = stopped("hopeless", 2, metric=0.35, validation=(0.30, 0.50, 0.60), learning_rate=3e-4)
    second = replace(rising, derived_from="run1")
    assert streaks_of([first, second])["run2"][RATE_UP] == 1


@pytest.mark.unit
def test_a_learning_rate_raise_that_helped_is_raised_again_three_times_as_far() -> None:
    """Both attempts learn slowly; raising the rate 3x helped (0.30 -> 0.45), so the
    next raise from the better attempt is 9x (0.0003 -> 0.0027), not 3x."""
    first = attempt(1, metric=0.30, curves=SLOW, learning_rate=0.0001)
    second = derived(2, 0.45, first, learning_rate=0.0003)
    decision = decide([first, second], SPACE, TARGET, BUDGET)
    assert decision.action is Action.TRAIN and decision.derived_from == "run2"
    assert decision.config["learning_rate"] == pytest.approx(0.0027)


@pytest.mark.unit
def test_without_a_streak_the_step_stays_the_rules_own() -> None:
    """The same history where the raise made things worse: from the better first
    attempt no raise is repeated, and nothing steps further than 3x."""
    first = attempt(1, metric=0.30, curves=SLOW, learning_rate=0.0003)
    second = derived(2, 0.25, first, learning_rate=0.0009)
    decision = decide([first, second], SPACE, TARGET, BUDGET)
    assert decision.derived_from == "run1"
    assert decision.config["learning_rate"] <= 0.0003 + 1e-12


@pytest.mark.unit
@pytest.mark.parametrize(
    ("move", "streak", "expected"),
    [
        (Move(Role.LEARNING_RATE, True, 3.0), 0, {"learning_rate": 0.0003}),
        (Move(Role.LEARNING_RATE, True, 3.0), 1, {"learning_rate": 0.0009}),
        (Move(Role.LEARNING_RATE, True, 3.0), 2, {"learning_rate": 0.0027}),
        (Move(Role.WIDTH, True), 2, {"filters": 8}),  # the next listed value, none skipped
        (Move(Role.DEPTH, True), 2, {"conv_blocks": 2}),  # one layer more
    ],
)
def test_only_a_dimension_moved_by_a_factor_steps_further_on_a_streak(
    move: Move, streak: int, expected: dict
) -> None:
    """Depth steps by a layer and listed values by the next one in the project's grid
    whatever the streak; a learning rate's factor is raised to 1 + streak."""
    config = {**BASE, "learning_rate": 0.0001}
    streaks = {(d.name, move.up): streak for d in SPACE.with_role(move.role)}
    moved = apply((move,), config, SPACE, streaks)
    assert moved is not None
    for name, value in expected.items():
        assert moved[name] == pytest.approx(value)
