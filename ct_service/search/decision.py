"""What the policy answers: a decision (promote, train or stop, with a one-line
reason), and the proposal a rule makes before the shared fix-ups turn it into one."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ct_service.space import Config


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
    # for TRAIN: the most epochs its stops judge it by, when it may be continued past its
    # own (a rung of search.rungs); 0: its stop watch's default
    horizon: int = 0


@dataclass(frozen=True)
class Proposal:
    """A configuration to train, as a rule proposes it: its epochs already at the
    horizon it is judged new at; `resume_from` and the epoch budget not yet applied
    (fixups.fix_up does that, once, for whichever rule proposed)."""

    config: Config
    reason: str  # one line, for humans: the evidence and the change
    derived_from: str  # the run id of the attempt it changes
    continues: str = ""  # the run whose last checkpoint it trains on from ("": from scratch)
    stop_margin: float | None = None  # the validation margin its early stop needs
