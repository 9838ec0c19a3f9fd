"""Several attempts of one pipeline at once (CT_PARALLEL_ATTEMPTS), on real Redis with
two `ct-service worker` processes and a project whose attempts take seconds: a round
of two attempts trains at once, one on each worker; the round is decided once; the
attempt that meets the target is promoted exactly once, at once, while the other is
asked to stop; the budget counts every attempt."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import WorkerProcess, ct_env
from helpers import enqueue, wait_finished, wait_for

from ct_service.attempt import AttemptStatus
from ct_service.settings import Settings
from ct_service.tracking import Tracker

# test_accuracy = width / 20: only width 16 meets the target 0.79; width 2 sleeps long
# enough that width 16, trained beside it, ends first.
# It logs a loss curve, so the rule set reads it (one epoch: not converged, so more
# epochs of width 2) and TPE proposes the attempt beside it (width 16): without
# curves TPE would propose both, and the round would differ from seed to seed.
TRAIN = """\
import sys, time, mlflow
width, epochs = int(float(sys.argv[1])), int(float(sys.argv[2]))
with mlflow.start_run() as run:
    mlflow.set_tag("t.start", f"{time.time():.3f}")
    for epoch in range(epochs):
        time.sleep(6.0 if width == 2 else 0.5)
        mlflow.log_metric("val_accuracy", width / 20 * (epoch + 1) / epochs, step=epoch + 1)
        mlflow.log_metric("loss", 1 - width / 20 * (epoch + 1) / epochs, step=epoch + 1)
    mlflow.log_metric("test_accuracy", width / 20)

    class Same(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    mlflow.pyfunc.log_model(name="model", python_model=Same())
    mlflow.set_tag("t.end", f"{time.time():.3f}")
"""


def _project(folder: Path) -> Path:
    folder.mkdir()
    (folder / "MLproject").write_text(
        "name: rounds\nentry_points:\n  main:\n    parameters:\n"
        "      width: {type: float, default: 2}\n      epochs: {type: float, default: 1}\n"
        "    command: python train.py {width} {epochs}\n"
    )
    (folder / "ct.yaml").write_text(
        "stop_early: false\nsearch_space:\n"
        "  width: {role: width, type: int, values: [2, 16]}\n"
        "  epochs: {role: epochs, type: int, low: 1, high: 2}\n"
    )
    (folder / "train.py").write_text(TRAIN)
    return folder


def _run_on_two_workers(
    tmp_path: Path, redis_url: str, threshold: str, budget: str
) -> tuple[Tracker, str]:
    """The project's pipeline on two worker processes, to its end and its attempts'."""
    home = tmp_path / "ct"
    env = ct_env(
        CT_HOME=str(home),
        CT_BROKER_URL=redis_url,
        CT_PARALLEL_ATTEMPTS="2",
        CT_MAX_ATTEMPTS=budget,
        CT_TARGET_THRESHOLD=threshold,
    )
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    try:
        pipeline_id = enqueue(env, _project(tmp_path / "p"))
        tracker = Tracker(Settings(home=home))
        wait_finished(tracker, pipeline_id, tmp_path / "worker-1.log", timeout=300)
        # the attempt asked to stop ignores it (this project does not poll for it): it
        # ends on its own, and nothing follows from it
        wait_for(
            lambda: all(
                a.status in (AttemptStatus.FINISHED, AttemptStatus.FAILED)
                for a in tracker.attempts(tracker.pipeline(pipeline_id), curves=False)
            ),
            120,
            "every attempt to end",
        )
    finally:
        for worker in workers:
            worker.stop()
    return tracker, pipeline_id


@pytest.mark.integration
def test_a_round_trains_at_once_on_two_workers_and_its_winner_is_promoted_once(
    tmp_path: Path, redis_url: str
) -> None:
    tracker, pipeline_id = _run_on_two_workers(tmp_path, redis_url, threshold="0.79", budget="4")
    pipeline = tracker.pipeline(pipeline_id)
    attempts = tracker.attempts(pipeline)
    runs = {a.number: tracker.client.get_run(a.run_id).data.tags for a in attempts}
    assert [a.config["width"] for a in attempts] == [2, 2, 16]  # 1 alone, then a round of 2
    assert runs[1]["ct.decision"].startswith("train attempts 2 and 3: ")
    assert "trained alongside attempt 2: TPE" in runs[3]["ct.reason"]

    # at once, one on each worker
    assert runs[2]["ct.worker"] != runs[3]["ct.worker"]
    start_2, end_2, start_3, end_3 = (
        float(runs[n][t]) for n in (2, 3) for t in ("t.start", "t.end")
    )
    assert start_3 < end_2 and start_2 < end_3

    # width 16 ended first and was promoted at once; width 2 was asked to stop
    assert pipeline.outcome == "promoted"
    assert runs[3]["ct.decision"].startswith("promote: attempt 3 reached test_accuracy 0.8")
    assert runs[2]["ct.stop_requested"] == "attempt 3 met the target"
    assert "ct.decision" not in runs[2]  # its decide step found the pipeline promoting
    versions = tracker.client.search_model_versions("name = 'rounds'")
    assert [v.run_id for v in versions] == [attempts[2].run_id]  # exactly once
    assert len(attempts) <= 4


@pytest.mark.integration
def test_the_last_attempt_of_a_round_to_end_decides_for_the_round(
    tmp_path: Path, redis_url: str
) -> None:
    """No attempt meets the target: the one that ends first waits for the other,
    which decides once from both (here: the budget of 3 is spent)."""
    tracker, pipeline_id = _run_on_two_workers(tmp_path, redis_url, threshold="0.99", budget="3")
    pipeline = tracker.pipeline(pipeline_id)
    attempts = tracker.attempts(pipeline)
    runs = {a.number: tracker.client.get_run(a.run_id).data.tags for a in attempts}
    assert [a.config["width"] for a in attempts] == [2, 2, 16]
    assert runs[3]["ct.decision"] == "wait: 1 attempt(s) of this round still train"
    assert runs[2]["ct.decision"].startswith("stop: budget spent: 3 of 3 attempts")
    assert pipeline.outcome == "budget-exhausted"
    assert pipeline.tags["ct.decided_through"] == "3"
    assert not tracker.client.search_model_versions("name = 'rounds'")


# Successive halving (ct_service/search/rungs.py): accuracy = 0.5 + (width + epoch) / 100,
# so the widest of a rung is its best, and only width 32 trained 9 epochs meets 0.9;
# each epoch's checkpoint is the tag the service reads, and a continuation starts
# after its base's last epoch.
HALVED_TRAIN = """\
import sys, mlflow
width, epochs, resume_from = int(float(sys.argv[1])), int(float(sys.argv[2])), sys.argv[3]
start = 0
if resume_from:
    tags = mlflow.tracking.MlflowClient().get_run(resume_from).data.tags
    start = int(tags["checkpoint.last_epoch"])
with mlflow.start_run():
    mlflow.set_tag("t.first_epoch", str(start + 1))
    for epoch in range(start + 1, epochs + 1):
        mlflow.log_metric("val_accuracy", 0.5 + (width + epoch) / 100, step=epoch)
        mlflow.set_tag("checkpoint.last_epoch", str(epoch))
    mlflow.log_metric("test_accuracy", 0.5 + (width + epochs) / 100)

    class Same(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    mlflow.pyfunc.log_model(name="model", python_model=Same())
"""


def _halved_project(folder: Path) -> Path:
    folder.mkdir()
    (folder / "MLproject").write_text(
        "name: halved\nentry_points:\n  main:\n    parameters:\n"
        "      width: {type: float, default: 32}\n      epochs: {type: float, default: 3}\n"
        '      resume_from: {type: string, default: ""}\n'
        "    command: python train.py {width} {epochs} '{resume_from}'\n"
    )
    (folder / "ct.yaml").write_text(
        "stop_early: false\nsearch_space:\n"
        "  width: {role: width, type: int, values: [2, 4, 8, 16, 32]}\n"
        "  epochs: {role: epochs, type: int, low: 1, high: 9}\n"
    )
    (folder / "train.py").write_text(HALVED_TRAIN)
    return folder


@pytest.mark.integration
def test_a_rung_of_three_continues_its_best_from_its_checkpoint(
    tmp_path: Path, redis_url: str
) -> None:
    """Rounds of 3 on a project that continues runs, 7 attempts left after the first
    (width 32, 3 epochs): the bracket they allow is rungs 3 and 9 (of 1-9 epochs:
    1, 3, 9; rung 1 would need 13). The first round's 3 new configurations train to
    rung 3; then the best of the 4 there by validation, the first, goes on from its
    checkpoint to rung 9, training epochs 4-9 only, meets the target and is promoted
    at once."""
    home = tmp_path / "ct"
    env = ct_env(
        CT_HOME=str(home),
        CT_BROKER_URL=redis_url,
        CT_PARALLEL_ATTEMPTS="3",
        CT_MAX_ATTEMPTS="8",
        CT_TARGET_THRESHOLD="0.9",
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        pipeline_id = enqueue(env, _halved_project(tmp_path / "p"))
        tracker = Tracker(Settings(home=home))
        wait_finished(tracker, pipeline_id, tmp_path / "worker.log", timeout=300)
    finally:
        worker.stop()
    attempts = tracker.attempts(tracker.pipeline(pipeline_id))
    runs = {a.number: tracker.client.get_run(a.run_id).data for a in attempts}
    first_round = attempts[1:4]
    assert [a.config["epochs"] for a in first_round] == [3, 3, 3]  # the lowest rung
    assert len({a.config["width"] for a in attempts[:4]}) == 4  # four configurations
    assert max(attempts[:4], key=lambda a: a.validation[2]) is attempts[0]

    on = attempts[4]
    assert on.config["resume_from"] == attempts[0].run_id
    assert on.config["epochs"] == 9 and on.config["width"] == 32
    assert "best 1/3 of the attempts that reached epoch 3" in runs[5].tags["ct.reason"]
    assert runs[5].tags["t.first_epoch"] == "4"  # no epoch trained twice
    steps = [m.step for m in tracker.client.get_metric_history(on.run_id, "val_accuracy")]
    assert steps == [4, 5, 6, 7, 8, 9]
    assert runs[5].tags["ct.horizon"] == "9"
    pipeline = tracker.pipeline(pipeline_id)
    assert pipeline.outcome == "promoted"
    versions = tracker.client.search_model_versions("name = 'halved'")
    assert [v.run_id for v in versions] == [on.run_id]
