"""Moves on a configuration: raise or lower every dimension of a role, and the words
a reason uses for what changed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ct_service.space import Config, Role, SearchSpace


@dataclass(frozen=True)
class Move:
    """One change to a configuration: raise or lower every dimension of a role."""

    role: Role
    up: bool
    factor: float = 2.0


Moves = tuple[Move, ...]


def apply(moves: Moves, config: Mapping[str, Any], space: SearchSpace) -> Config | None:
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


def directions(
    before: Mapping[str, Any], after: Mapping[str, Any], space: SearchSpace
) -> set[tuple[str, bool]]:
    """(dimension, raised?) for each searched dimension that changed."""
    found = set()
    for d in space.dimensions:
        if d.name in before and d.name in after and float(after[d.name]) != float(before[d.name]):
            found.add((d.name, float(after[d.name]) > float(before[d.name])))
    return found


def only_epochs(before: Mapping[str, Any], after: Mapping[str, Any], space: SearchSpace) -> bool:
    """Whether nothing but the epochs changed (or nothing at all)."""
    return {name for name, _ in directions(before, after, space)} <= {
        d.name for d in space.with_role(Role.EPOCHS)
    }


def changes(before: Mapping[str, Any], after: Mapping[str, Any], space: SearchSpace) -> str:
    """What changed, for a reason: `name old -> new, ...` (or `no change`)."""
    parts = [
        f"{d.name} {_fmt(before.get(d.name))} -> {_fmt(after[d.name])}"
        for d in space.dimensions
        if d.name in after
        and (d.name not in before or float(before[d.name]) != float(after[d.name]))
    ]
    return ", ".join(parts) or "no change"


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
