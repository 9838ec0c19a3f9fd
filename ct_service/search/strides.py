"""How far a move steps: a direction that improved the metric on the way to an
attempt takes a larger step when it is moved again from that attempt, as direct
search adapts its step (Hooke-Jeeves' expansion, Rprop's growing step): a fixed 3x
step needs many attempts to cross a learning rate 20x off, each of which the
curves had already said was an improvement. A direction that made things worse is
not taken again at all (Context.worse), so a step only grows while it helps.
Only dimensions moved by a factor grow (moves.grows)."""

from __future__ import annotations

from collections.abc import Sequence

from ct_service.attempt import Attempt
from ct_service.search.moves import directions
from ct_service.space import Dimension, SearchSpace
from ct_service.stop_early import StopKind, projected
from ct_service.target import Target

Direction = tuple[str, bool]  # (dimension, raised?)
MAX_STREAK = 2  # a step grows to at most factor ** 3


def strides(
    history: Sequence[Attempt], space: SearchSpace, target: Target, epochs: Dimension | None
) -> dict[str, dict[Direction, int]]:
    """For each attempt of `history` (by run id), each direction's streak: how many
    changes on its line of derivation moved that direction and improved on the
    attempt they came from, since the last one that moved it and did not (each
    dimension keeps its own step, as in Rprop, whatever moved in between)."""
    by_run = {a.run_id: a for a in history}
    found: dict[str, dict[Direction, int]] = {}
    for attempt in history:  # a base comes before the attempts derived from it
        base = by_run.get(attempt.derived_from)
        if base is None:
            found[attempt.run_id] = {}
            continue
        streaks = dict(found.get(base.run_id, {}))
        improved = _improved(attempt, base, target, epochs)
        for direction in directions(base.config, attempt.config, space):
            streaks[direction] = min(streaks.get(direction, 0) + 1, MAX_STREAK) if improved else 0
        found[attempt.run_id] = streaks
    return found


def _improved(attempt: Attempt, base: Attempt, target: Target, epochs: Dimension | None) -> bool:
    """The attempt did better than its base: by the metric when both trained to the
    end; when either was stopped early (their metrics come from other epochs), by
    where their validation curves got or were headed by the longest horizon."""
    if not (attempt.finished and base.finished):
        return False
    if attempt.stopped_early or base.stopped_early:
        mine, theirs = _outlook(attempt, target, epochs), _outlook(base, target, epochs)
    else:
        mine, theirs = attempt.metric, base.metric
    return mine is not None and theirs is not None and target.is_better(mine, theirs)


def _outlook(attempt: Attempt, target: Target, epochs: Dimension | None) -> float | None:
    """Where the attempt's validation curve was headed by the most epochs the space
    allows if it gave up, else its last validation value."""
    if not attempt.validation:
        return None
    if StopKind.gave_up(attempt.stopped_early) and epochs is not None:
        headed = projected(attempt.validation, target, int(epochs.high))
        if headed is not None:
            return headed
    return attempt.validation[-1]
