"""The policy's rule objects one by one (ct_service/search): each a table of cases
where its guard holds and it proposes (with the one-line reason it gives), and where
it does not; then the fix-ups every proposal gets. tests/test_policy.py holds the
rule set as a whole (decide)."""

from __future__ import annotations

import pytest
from test_policy import (
    BASE,
    BUDGET,
    HEALTHY_BUT_SHORT,
    OVERFIT,
    PLATEAU,
    RMSE,
    SPACE,
    TARGET,
    WINE_SPACE,
    attempt,
    final_only,
    resumable,
    stopped,
)

from ct_service.attempt import AttemptStatus
from ct_service.search import RULES, VERDICTS, Action, Context, Proposal
from ct_service.search.capacity import CapacityJump
from ct_service.search.continuation import ContinueShortStop
from ct_service.search.earlier import KnownGood
from ct_service.search.fixups import fix_up
from ct_service.search.remedies import ClampedRetry, CurveRemedy
from ct_service.search.sampling import (
    SampledAfterGivingUp,
    SampledWhenStuck,
    SampledWithoutCurves,
)
from ct_service.search.verdicts import AttemptsSpent, EpochsSpent, Promote, WallTimeSpent
from ct_service.stop_early import StopRule
from ct_service.target import Budget

STOPS = StopRule()
SHORT_STOP = stopped("target met", epochs=8, metric=0.795, validation=(0.78, 0.806, 0.808))
GAVE_UP_FLAT = stopped("hopeless", epochs=8, metric=0.72, curves=PLATEAU)
GAVE_UP_OVERFIT = stopped("hopeless", epochs=8, metric=0.72, curves=OVERFIT)
CRASHED = attempt(1, metric=None, status=AttemptStatus.FAILED, failure="boom")
CRASHED_OUTSIDE = attempt(1, metric=None, status=AttemptStatus.FAILED, conv_blocks=9)
EARLIER_MET = attempt(3, metric=0.93, conv_blocks=2, epochs=6)
# both directions from alpha 0.5 made rmse worse: no curve remedy is left
WINE_STUCK = [
    final_only(1, 0.5, 0.795),
    final_only(2, 1.0, 0.823, derived_from="run1"),
    final_only(3, 0.25, 0.80, derived_from="run1"),
]


def context(history, space=SPACE, target=TARGET, budget=BUDGET, **kw):
    return Context.of(history, space, target, budget, **kw)


VERDICT_CASES = [
    (
        Promote(),
        context([attempt(1, metric=0.5), attempt(2, metric=0.85, epochs=4)]),
        "attempt 2 reached test_accuracy 0.85 (target test_accuracy >= 0.8)",
    ),
    (Promote(), context([attempt(1, metric=0.79)]), None),
    (
        AttemptsSpent(),
        context([attempt(1), attempt(2, epochs=4)], budget=Budget(2)),
        "budget spent: 2 of 2 attempts; best test_accuracy 0.7 (attempt 1), "
        "target test_accuracy >= 0.8",
    ),
    (AttemptsSpent(), context([attempt(1)], budget=Budget(2)), None),
    (
        EpochsSpent(),
        context([attempt(1, curves=PLATEAU, epochs=3)], budget=Budget(5, max_epochs=3)),
        "budget spent: 3 of 3 epochs; best test_accuracy 0.7 (attempt 1), "
        "target test_accuracy >= 0.8",
    ),
    (EpochsSpent(), context([attempt(1, curves=PLATEAU)], budget=Budget(5, max_epochs=4)), None),
    (EpochsSpent(), context([attempt(1, curves=PLATEAU)]), None),  # no epoch budget
    (
        WallTimeSpent(),
        context([CRASHED], budget=Budget(5, max_wall_seconds=60), elapsed_seconds=61),
        "budget spent: 61 s of 60 s; no attempt finished",
    ),
    (
        WallTimeSpent(),
        context([attempt(1)], budget=Budget(5, max_wall_seconds=60), elapsed_seconds=59),
        None,
    ),
    (WallTimeSpent(), context([attempt(1)], elapsed_seconds=1e9), None),  # no limit
]


def _ids(cases):
    return [f"{case[0].name}: {'applies' if case[2] else 'not'}" for case in cases]


@pytest.mark.unit
@pytest.mark.parametrize(("verdict", "ctx", "reason"), VERDICT_CASES, ids=_ids(VERDICT_CASES))
def test_each_verdict_ends_the_search_only_when_its_guard_holds(verdict, ctx, reason):
    decision = verdict.judge(ctx)
    if reason is None:
        assert decision is None
        return
    assert decision is not None
    assert decision.action is (Action.PROMOTE if isinstance(verdict, Promote) else Action.STOP)
    assert decision.budget_spent is (not isinstance(verdict, Promote))
    assert decision.reason == reason


RULE_CASES = [
    (
        ContinueShortStop(),
        context([SHORT_STOP], stop_rule=STOPS),
        "attempt 1 was stopped at epoch 3 with val_accuracy 0.808, but test_accuracy "
        "0.795 misses test_accuracy >= 0.8: continuing it from its checkpoint, to stop "
        "once validation clears the target by the gap it measured",
    ),
    (ContinueShortStop(), context([SHORT_STOP]), None),  # attempts are not stopped early
    (ContinueShortStop(), context([GAVE_UP_FLAT], stop_rule=STOPS), None),  # not target met
    (  # already at its epoch bound: nothing to continue
        ContinueShortStop(),
        context([stopped("target met", epochs=3, validation=(0.8,))], stop_rule=STOPS),
        None,
    ),
    (
        KnownGood(),
        context([attempt(1, metric=0.5)], prior=[EARLIER_MET]),
        "trying the configuration that reached test_accuracy 0.93 in an earlier "
        "pipeline (run run3)",
    ),
    (KnownGood(), context([attempt(1, metric=0.5)]), None),  # no earlier pipeline
    (  # tried here already
        KnownGood(),
        context([attempt(1, metric=0.5, conv_blocks=2, epochs=6)], prior=[EARLIER_MET]),
        None,
    ),
    (
        CapacityJump(),
        context([GAVE_UP_FLAT], stop_rule=STOPS),
        "attempt 1 stopped early, hopeless: val_accuracy ... at epoch 3, under-fitting; "
        "more capacity: conv_blocks 1 -> 2, filters 4 -> 16, learning_rate 0.001 -> 0.003",
    ),
    (CapacityJump(), context([GAVE_UP_OVERFIT], stop_rule=STOPS), None),  # not under-fitting
    (CapacityJump(), context([attempt(1, curves=PLATEAU)], stop_rule=STOPS), None),  # no give-up
    (
        SampledAfterGivingUp(),
        context([GAVE_UP_OVERFIT], stop_rule=STOPS),
        "attempt 1 stopped early, hopeless: val_accuracy ... at epoch 3; TPE over 1 "
        "finished attempts proposes ",
    ),
    (SampledAfterGivingUp(), context([attempt(1, curves=OVERFIT)], stop_rule=STOPS), None),
    (
        SampledWithoutCurves(),
        context(WINE_STUCK, WINE_SPACE, RMSE),
        "attempt 1 logged no learning curves to diagnose; TPE over 3 finished attempts "
        "proposes alpha 0.5 -> ",
    ),
    (SampledWithoutCurves(), context([attempt(1, curves=PLATEAU)]), None),  # curves to read
    (SampledWithoutCurves(), context([CRASHED]), None),  # nothing finished
    (
        CurveRemedy(),
        context([attempt(1, curves=OVERFIT)]),
        "attempt 1 over-fitting: train accuracy 0.990 is well above validation accuracy "
        "0.760; dropout 0 -> 0.25",
    ),
    (
        CurveRemedy(),
        context([resumable()]),
        "attempt 1 not converged: val_loss still falling (44% in the last epoch); "
        "epochs 2 -> 4, continuing attempt 1 from its checkpoint at epoch 2",
    ),
    (CurveRemedy(), context([CRASHED]), None),  # nothing finished
    (CurveRemedy(), context(WINE_STUCK, WINE_SPACE, RMSE), None),  # every move made it worse
    (
        SampledWhenStuck(),
        context(WINE_STUCK, WINE_SPACE, RMSE, stop_rule=STOPS),
        "no untried change around attempt 1's curves; TPE over 3 finished attempts "
        "proposes alpha 0.5 -> ",
    ),
    (SampledWhenStuck(), context(WINE_STUCK, WINE_SPACE, RMSE), None),  # no early stops
    (SampledWhenStuck(), context([GAVE_UP_OVERFIT], stop_rule=STOPS), None),  # gave up
    (
        ClampedRetry(),
        context([CRASHED_OUTSIDE]),
        "retrying inside the search space: conv_blocks 9 -> 4",
    ),
    (ClampedRetry(), context([CRASHED]), None),  # already inside: the same again
    (ClampedRetry(), context([attempt(1), CRASHED_OUTSIDE]), None),  # something finished
]


@pytest.mark.unit
@pytest.mark.parametrize(("rule", "ctx", "reason"), RULE_CASES, ids=_ids(RULE_CASES))
def test_each_rule_proposes_only_when_its_guard_holds(rule, ctx, reason):
    proposal = rule.propose(ctx)
    if reason is None:
        assert proposal is None
        return
    assert proposal is not None
    assert proposal.reason.startswith(reason)
    assert "\n" not in proposal.reason
    assert not ctx.space.outside(proposal.config)
    if not proposal.continues:  # only a continuation trains a configuration again
        assert ctx.is_new(proposal.config)


@pytest.mark.unit
def test_the_rule_set_holds_every_rule_once_with_a_distinct_name():
    names = [r.name for r in (*VERDICTS, *RULES)]
    assert len(names) == len(set(names)) == 12


@pytest.mark.unit
@pytest.mark.parametrize(
    ("proposed", "continues", "resume_from"),
    [
        ({**BASE, "resume_from": "run0"}, "", ""),  # from scratch: the base's is not inherited
        ({**BASE, "resume_from": ""}, "run1", "run1"),  # a continuation loads its checkpoint
        (BASE, "", None),  # the project cannot continue a run: no resume_from given
    ],
)
def test_fix_up_gives_resume_from_only_to_a_continuation(proposed, continues, resume_from):
    ctx = context([resumable(curves=HEALTHY_BUT_SHORT)])
    decision = fix_up(
        Proposal(proposed, "why", "run1", continues=continues), ctx.history, ctx.space, ctx.budget
    )
    assert decision.action is Action.TRAIN and decision.continues == continues
    assert decision.config.get("resume_from") == resume_from
    assert decision.reason == "why"


@pytest.mark.unit
def test_fix_up_caps_the_epochs_by_what_the_budget_has_left_once():
    ctx = context([attempt(1, curves=PLATEAU, epochs=3)], budget=Budget(5, max_epochs=7))
    decision = fix_up(
        Proposal({**BASE, "epochs": 8}, "why", "run1"), ctx.history, ctx.space, ctx.budget
    )
    assert decision.config["epochs"] == 4  # 3 trained of 7
    assert decision.reason == "why; epochs 4: what the budget has left"


# -- TPE warm-started with the project's earlier pipelines ---------------------------


def _earlier_pipeline() -> list:
    """Twelve attempts of an earlier pipeline: learning rates from 0.003 up reached
    0.9 whatever the rest, those below 0.0005 0.5."""
    found = []
    for n in range(12):
        good = n % 2 == 0
        rate = (0.003, 0.005, 0.008)[n % 3] if good else (0.0001, 0.0002, 0.0004)[n % 3]
        found.append(
            attempt(
                100 + n,
                metric=0.9 if good else 0.5,
                learning_rate=rate,
                filters=(4, 8, 16)[n % 3],
                conv_blocks=1 + n % 4,
                epochs=8,
            )  # fmt: skip
        )
    return found


@pytest.mark.unit
def test_tpe_is_warm_started_with_the_project_s_earlier_attempts():
    rates: dict[bool, list[float]] = {True: [], False: []}
    for pipeline in range(8):  # 8 pipelines: 8 sampler seeds (from the first run id)
        gave_up = stopped("hopeless", epochs=8, metric=0.72, curves=OVERFIT)
        gave_up = type(gave_up)(**{**gave_up.__dict__, "run_id": f"p{pipeline}-run1"})
        for warm in (True, False):
            prior = _earlier_pipeline() if warm else []
            ctx = context([gave_up], stop_rule=STOPS, prior=prior)
            proposal = SampledAfterGivingUp().propose(ctx)
            assert proposal is not None
            rates[warm].append(proposal.config["learning_rate"])
            told = "TPE over 1 finished attempts and 12 of earlier pipelines proposes"
            assert (told in proposal.reason) is warm
    # told where the rate was good before, TPE proposes good rates; without, it samples
    assert sum(rate >= 0.002 for rate in rates[True]) >= 7
    assert sum(rate >= 0.002 for rate in rates[True]) > sum(rate >= 0.002 for rate in rates[False])
