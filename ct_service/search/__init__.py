"""The policy: history in, decision out. A pure function, no I/O.

After each attempt it decides to promote (target met), to stop (budget spent or
nothing new left to try) or to train again with a configuration derived from the
best attempt so far, changing what that attempt's learning curves point to, or,
once the best one gave up (stopped as hopeless or behind), a big step up in capacity
or one that Optuna's TPE proposes.

- `ruleset`: the verdicts and rules in order, and `decide`;
- `rules`: the two interfaces (`Verdict`, `Rule`); `context`: what they read,
  computed once; `fixups`: what every proposal gets (resume_from, epoch budget,
  horizon); `decision`: what comes out;
- one module per family of rules: `verdicts`, `continuation`, `earlier`
  (and the warm start), `capacity`, `remedies`, `sampling`; `moves`: their moves;
- `rounds`: several attempts at once.
"""

from ct_service.search.context import Context
from ct_service.search.decision import Action, Decision, Proposal
from ct_service.search.earlier import warm_start
from ct_service.search.fixups import epochs_trained, within_epoch_budget
from ct_service.search.rounds import decide_several
from ct_service.search.ruleset import RULES, VERDICTS, decide

__all__ = [
    "RULES",
    "VERDICTS",
    "Action",
    "Context",
    "Decision",
    "Proposal",
    "decide",
    "decide_several",
    "epochs_trained",
    "warm_start",
    "within_epoch_budget",
]
