"""The policy: history in, decision out; a pure function, no I/O. It lives in the
`ct_service.search` package (one object per rule, the rule set in
`search/ruleset.py`); this module keeps the names its callers use."""

from ct_service.search import (
    Action,
    Decision,
    decide,
    decide_several,
    epochs_trained,
    warm_start,
    within_epoch_budget,
)

__all__ = [
    "Action",
    "Decision",
    "decide",
    "decide_several",
    "epochs_trained",
    "warm_start",
    "within_epoch_budget",
]
