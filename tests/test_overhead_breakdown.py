"""The overhead breakdown's arithmetic (benchmarks/overhead_breakdown.py): the phases
it reads off MLflow's clocks cover the whole wall time, once each."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from overhead_breakdown import Clocks, phases  # noqa: E402


@pytest.mark.unit
def test_the_pipelines_phases_add_up_to_its_wall_time():
    clocks = Clocks(
        pipeline_created=3.0,
        run_created=4.5,
        first_epoch=14.5,
        last_epoch=18.5,  # 3 epochs: 2 s each, so training started at 12.5
        run_ended=20.0,
        version_created=22.0,
        pipeline_ended=23.0,
        exited=24.0,
        epochs=3,
    )
    found = phases(clocks)
    assert found == {
        "cli+start": 3.0,
        "attempt": 1.5,
        "launch+load": 8.0,
        "epochs": 6.0,
        "evaluate+log": 1.5,
        "decide+register": 2.0,
        "promote+notify": 1.0,
        "summary+exit": 1.0,
    }
    assert sum(found.values()) == pytest.approx(clocks.exited)


@pytest.mark.unit
def test_a_direct_run_has_no_service_phases():
    clocks = Clocks(
        run_created=2.0, first_epoch=9.0, last_epoch=9.0, run_ended=10.0, exited=10.5, epochs=1
    )
    found = phases(clocks)
    assert set(found) == {"process+run", "launch+load", "epochs", "evaluate+log", "exit"}
    assert sum(found.values()) == pytest.approx(10.5)
