"""The two kinds of rule the policy is made of, each a small object behind one
interface (as Optuna's pruners sit behind `BasePruner.prune()`):

- a `Verdict` ends the search or not: promote, or stop because the budget is spent;
- a `Rule` proposes the next configuration to train.

Each checks its guard first (returns None when it does not apply) and writes a
one-line reason. The rule set and its order are in `ruleset.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ct_service.search.context import Context
    from ct_service.search.decision import Decision, Proposal


class Verdict(Protocol):
    name: str  # how the rule set and its tests refer to it

    def judge(self, ctx: Context) -> Decision | None:
        """A promotion or a stop, or None when this verdict does not apply."""
        ...


class Rule(Protocol):
    name: str

    def propose(self, ctx: Context) -> Proposal | None:
        """The configuration to train next, or None when the guard does not hold or
        nothing untried is left to this rule."""
        ...
