"""Stopping an attempt early, judged on its validation curve: table cases of the
pure rule, and the watch that applies it to a real MLflow run while it trains."""

from __future__ import annotations

import mlflow
import pytest

from ct_service import run_tags
from ct_service.execution.stop_watch import StopWatch
from ct_service.settings import Settings
from ct_service.stop_early import StopKind, StopRule, judge, lead_over_validation
from ct_service.target import Direction, Target

TARGET = Target("test_accuracy", 0.90)
RULE = StopRule()
# Measured here: Fashion-MNIST, 1 conv block of 4 filters (flattens near 0.88), and
# 2 blocks of 16 filters at learning rate 0.003, 18,000 training images.
WEAK_CURVE = (0.791, 0.822, 0.846, 0.854, 0.859, 0.865)
STRONG_START = (0.848, 0.873, 0.881, 0.889, 0.892)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("curve", "kind", "why"),
    [
        ((0.86, 0.89, 0.906, 0.908), StopKind.TARGET_MET, "two epochs above target + margin"),
        ((0.911,), StopKind.TARGET_MET, "a first epoch twice the margin above"),
        ((0.88, 0.913), None, "one lucky epoch: the mean of the last two is short"),
        ((0.88, 0.903), None, "above the target, not by the margin"),
        (WEAK_CURVE[:3], StopKind.HOPELESS, "flattening far below the target"),
        (STRONG_START, None, "still rising towards the target"),
        ((0.5, 0.8), None, "too few epochs to call it hopeless"),
        ((0.85, 0.88, 0.87, 0.89, 0.885), None, "noisy, but on its way: not hopeless"),
        ((0.7, 0.8, float("nan")), None, "a non-finite value: no judgement"),
    ],
)
def test_judge(curve, kind, why):
    stop = judge(curve, TARGET, RULE, horizon=20)
    assert (stop.kind if stop else None) is kind, why
    if stop:
        assert stop.epoch == len(curve) and "val_accuracy" in stop.reason


@pytest.mark.unit
def test_a_curve_at_its_horizon_is_not_called_hopeless_and_a_minimised_target_mirrors():
    assert judge(WEAK_CURVE[:3], TARGET, RULE, horizon=3) is None  # nothing left to cut
    rmse = Target("test_rmse", 0.5, Direction.MINIMIZE)
    stop = judge((0.9, 0.62, 0.49, 0.488), rmse, RULE, horizon=20)
    assert stop is not None and stop.kind is StopKind.TARGET_MET
    assert "val_rmse" in stop.reason
    stop = judge((0.9, 0.85, 0.84, 0.838), rmse, RULE, horizon=20)
    assert stop is not None and stop.kind is StopKind.HOPELESS


@pytest.mark.unit
def test_a_larger_margin_waits_longer_and_a_disabled_rule_never_stops():
    curve = (0.86, 0.905, 0.907)
    assert judge(curve, TARGET, RULE, 20) is not None
    assert judge(curve, TARGET, RULE, 20, margin=0.02) is None
    assert judge(curve, TARGET, StopRule.from_spec(False), 20) is None


# Measured here: MNIST, 2 blocks of 32 filters, dense 128, dropout 0.4, 27,000
# training images: validation (from the training set) ends near 0.986 while the
# test metric reaches 0.99 at epoch 11 (0.9897, 0.9886, 0.991).
MNIST_VALIDATION = (0.971, 0.9793, 0.981, 0.9843, 0.9857)
MNIST_TARGET = Target("test_accuracy", 0.99)


@pytest.mark.unit
def test_the_hopeless_rule_aims_lower_by_the_test_metrics_lead_and_never_higher():
    stop = judge(MNIST_VALIDATION[:4], MNIST_TARGET, RULE, horizon=12)
    assert stop is not None and stop.kind is StopKind.HOPELESS  # would cut the winner
    assert stop.reason.endswith("short of 0.99")
    assert judge(MNIST_VALIDATION[:4], MNIST_TARGET, RULE, horizon=12, test_lead=0.004) is None
    flat = (0.975, 0.976, 0.976, 0.9765)  # out of reach even of the lowered aim
    stop = judge(flat, MNIST_TARGET, RULE, horizon=12, test_lead=0.004)
    assert stop is not None and stop.kind is StopKind.HOPELESS
    assert stop.reason.endswith("short of 0.99 less 0.004 (the test metric's lead over validation)")
    # a negative lead never makes the rule stricter, nor does the lead move the
    # target-met stop, which still needs the validation margin above the threshold
    assert judge(STRONG_START, TARGET, RULE, horizon=20, test_lead=-0.05) is None
    assert judge((0.992, 0.993), MNIST_TARGET, RULE, horizon=12, test_lead=0.004) is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("finished", "target", "lead", "why"),
    [
        ([(0.988, (0.97, 0.983)), (0.99, (0.987,))], MNIST_TARGET, 0.004, "median of two"),
        ([(0.988, (0.983,))], MNIST_TARGET, 0.0, "one attempt is not evidence"),
        ([(0.88, (0.89,)), (0.87, (0.872,))], TARGET, 0.0, "test below validation"),
        (
            [(0.988, (0.983,)), (0.99, ()), (float("nan"), (0.9,)), (0.99, (0.987,))],
            MNIST_TARGET,
            0.004,
            "attempts without a curve or a finite metric are left out",
        ),
        (
            [(0.45, (0.5,)), (0.46, (0.49,)), (0.52, (0.5,))],
            Target("test_rmse", 0.4, Direction.MINIMIZE),
            0.03,
            "a minimised metric's lead is its being lower",
        ),
    ],
)
def test_the_test_metrics_lead_over_validation(finished, target, lead, why):
    assert lead_over_validation(finished, target) == pytest.approx(lead), why


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("often", "stop_early must be true, false or a mapping"),
        ({"margn": 0.01}, "stop_early: unknown key 'margn'"),
        ({"margin": "wide"}, "stop_early.margin must be a number"),
        ({"margin": -0.1}, "stop_early.margin must be at least 0"),
        ({"min_epochs": 1}, "stop_early.min_epochs must be at least 2"),
        ({"enabled": "yes"}, "stop_early.enabled must be true or false"),
        ({"behind": 1}, "stop_early.behind must be true or false"),
        ({"behind_after": 0}, "stop_early.behind_after must be at least 1"),
    ],
)
def test_a_bad_stop_early_section_names_its_key(spec, message):
    with pytest.raises(ValueError, match=message):
        StopRule.from_spec(spec)


# Earlier attempts of a pipeline, measured like the curves above: the weak start and a
# mid-size network (2 blocks of 8 filters at 0.001).
EARLIER = (WEAK_CURVE, (0.812, 0.845, 0.859, 0.868))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("curve", "earlier", "kind", "why"),
    [
        ((0.70, 0.75), EARLIER, StopKind.BEHIND, "below both earlier curves at epoch 2"),
        ((0.70,), EARLIER, None, "one epoch: too early to compare (behind_after 2)"),
        ((0.80, 0.834), EARLIER, None, "at the median at epoch 2: not behind"),
        ((0.84, 0.83), EARLIER, None, "its best so far reaches the median: a dip goes on"),
        ((0.70, 0.75), (), None, "no earlier curve: nothing to compare with"),
        ((0.70, 0.75), ((0.80,),), None, "the earlier curves stop before epoch 2"),
        ((0.70, 0.75), ((0.8, float("nan")),), None, "a non-finite earlier curve is not used"),
        (STRONG_START, EARLIER, None, "ahead of every earlier curve"),
    ],
)
def test_a_curve_behind_the_earlier_attempts_median_at_its_epoch_is_stopped(
    curve, earlier, kind, why
):
    stop = judge(curve, TARGET, RULE, horizon=20, earlier_curves=earlier)
    assert (stop.kind if stop else None) is kind, why
    if stop:
        assert stop.reason == (
            f"val_accuracy {curve[-1]:.4g} at epoch {len(curve)} is behind the median "
            "0.8335 of the earlier attempts at that epoch"
        )


@pytest.mark.unit
def test_the_median_rule_mirrors_for_a_minimised_target_and_can_be_turned_off():
    rmse = Target("test_rmse", 0.1, Direction.MINIMIZE)
    earlier = ((0.9, 0.6, 0.5), (0.8, 0.5, 0.4))
    stop = judge((0.95, 0.8), rmse, RULE, horizon=20, earlier_curves=earlier)
    assert stop is not None and stop.kind is StopKind.BEHIND
    assert judge((0.7, 0.45), rmse, RULE, horizon=20, earlier_curves=earlier) is None
    off = StopRule.from_spec({"behind": False})
    assert judge((0.70, 0.75), TARGET, off, horizon=20, earlier_curves=EARLIER) is None
    later = StopRule.from_spec({"behind_after": 3})
    assert judge((0.70, 0.75), TARGET, later, horizon=20, earlier_curves=EARLIER) is None
    assert StopKind.gave_up("behind: ...") and StopKind.gave_up("hopeless: ...")
    assert not StopKind.gave_up("target met: ...") and not StopKind.gave_up("")


@pytest.mark.unit
def test_the_validation_metric_follows_the_target_unless_named():
    assert StopRule().validation_metric(TARGET) == "val_accuracy"
    assert StopRule().validation_metric(Target("rmse", 1.0, Direction.MINIMIZE)) == "val_rmse"
    assert StopRule(metric="holdout_f1").validation_metric(TARGET) == "holdout_f1"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _poll(watch: StopWatch, clock: Clock, rounds: int = 400):
    """Check like an executor does, until the background read asked for a stop."""
    import threading

    done = threading.Event()
    for _ in range(rounds):
        clock.now += 1.0
        halt = watch.check()
        if watch.stop is not None or halt is not None:
            return halt
        done.wait(0.01)  # let the reader thread run; the condition is polled above
    raise AssertionError("the watch never asked the run to stop")


@pytest.mark.integration
def test_the_watch_asks_a_hopeless_run_to_stop_and_halts_it_after_the_grace(settings: Settings):
    client = mlflow.MlflowClient(settings.tracking_uri)
    run_id = client.create_run(client.create_experiment("watch")).info.run_id
    for epoch, value in enumerate(WEAK_CURVE[1:3], start=2):
        client.log_metric(run_id, "val_accuracy", value, step=epoch)
    clock = Clock()
    watch = StopWatch(client, run_id, TARGET, RULE, horizon=20, earlier=WEAK_CURVE[:1], clock=clock)
    assert _poll(watch, clock) is None  # asked, not yet halted
    tags = client.get_run(run_id).data.tags
    assert tags[run_tags.STOPPED_EARLY].startswith("hopeless: val_accuracy 0.846 at epoch 3")
    assert tags[run_tags.STOP_REQUESTED] == watch.stop.reason
    clock.now += watch.grace_seconds - 5
    assert watch.check() is None  # the project may still be finishing its epoch
    clock.now += 10
    halt = watch.check()
    assert halt is not None and not halt.interrupted
    assert halt.reason.startswith("stopped early: val_accuracy 0.846")


@pytest.mark.integration
def test_the_watch_stops_a_run_behind_the_earlier_attempts_and_halts_it_after_the_grace(
    settings: Settings,
):
    client = mlflow.MlflowClient(settings.tracking_uri)
    run_id = client.create_run(client.create_experiment("watch")).info.run_id
    client.log_metric(run_id, "val_accuracy", 0.70, step=1)
    clock = Clock()
    watch = StopWatch(client, run_id, TARGET, RULE, horizon=20, earlier_curves=EARLIER, clock=clock)
    for _ in range(20):  # one epoch only: never behind yet (behind_after 2)
        clock.now += 1.0
        assert watch.check() is None
        if watch._reader is not None:
            watch._reader.join()
    assert watch.stop is None
    client.log_metric(run_id, "val_accuracy", 0.75, step=2)
    assert _poll(watch, clock) is None  # asked, not yet halted
    tags = client.get_run(run_id).data.tags
    assert tags[run_tags.STOPPED_EARLY] == (
        "behind: val_accuracy 0.75 at epoch 2 is behind the median 0.8335 of the earlier "
        "attempts at that epoch"
    )
    clock.now += watch.grace_seconds + 1
    halt = watch.check()
    assert halt is not None and not halt.interrupted


@pytest.mark.integration
def test_the_watch_never_halts_a_run_stopped_for_meeting_the_target(settings: Settings):
    client = mlflow.MlflowClient(settings.tracking_uri)
    run_id = client.create_run(client.create_experiment("watch")).info.run_id
    for epoch, value in enumerate((0.88, 0.906, 0.909), start=1):
        client.log_metric(run_id, "val_accuracy", value, step=epoch)
    clock = Clock()
    watch = StopWatch(client, run_id, TARGET, RULE, horizon=20, clock=clock)
    _poll(watch, clock)
    assert watch.stop is not None and watch.stop.kind is StopKind.TARGET_MET
    clock.now += 10 * watch.grace_seconds
    assert watch.check() is None  # it finishes its evaluation however long that takes


FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.slow
def test_a_real_hopeless_attempt_is_stopped_early_and_the_policy_moves_on(tmp_path):
    """LeNet's weakest network on a Fashion-MNIST subset against a target it cannot
    reach, under an epoch budget of 14: the 20 epochs asked for are cut to 14, the
    worker stops it a few epochs in (LeNet honours the request: test metric and
    model logged), and attempt 2 is a new configuration from TPE given the epochs
    the budget has left. The copy's space is small, so attempt 2 is cheap too; its
    epochs are long enough (12,000 images) that a stop asked for at epoch 3 lands
    well before the last."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from conftest import LENET, ROOT, ct_env
    from helpers import epochs_logged, only_pipeline

    from ct_service.tracking import Tracker

    if not Path(FASHION, "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST not found at {FASHION}; `make fashion-mnist` installs it")
    project = tmp_path / "lenet"
    shutil.copytree(LENET, project, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "ct.yaml").write_text(
        "search_space:\n"
        "  conv_blocks: {role: depth, type: int, low: 1, high: 2}\n"
        "  filters: {role: width, type: int, values: [2, 4]}\n"
        "  learning_rate: {role: learning_rate, type: float, low: 0.0003, high: 0.003}\n"
        "  epochs: {role: epochs, type: int, low: 1, high: 20}\n"
    )
    home = tmp_path / "ct"
    weak = {
        "conv_blocks": 1,
        "filters": 4,
        "dense_units": 16,
        "epochs": 20,
        "max_train_samples": 12000,
        "data": FASHION,
    }
    params = [arg for k, v in weak.items() for arg in ("-P", f"{k}={v}")]
    done = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(project), *params]
        + ["--threshold", "0.97", "--max-attempts", "2", "--max-epochs", "14", "--json"],
        env=ct_env(CT_HOME=str(home)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode != 0, done.stdout  # the target is out of reach: not promoted
    tracker = Tracker(Settings.from_env({"CT_HOME": str(home)}))
    first, second = tracker.attempts(tracker.pipeline(only_pipeline(tracker)))
    assert first.stopped_as("hopeless"), (first.stopped_early, done.stderr[-2000:])
    assert first.config["epochs"] == 14
    assert first.reason == "initial configuration; epochs 14: what the budget has left"
    trained = epochs_logged(tracker, first.run_id)
    assert trained == list(range(1, first.checkpoint_epoch + 1)) and len(trained) < 14
    assert first.finished and first.metric is not None  # evaluated, as a finished run
    run = tracker.client.get_run(first.run_id)
    assert 10800 * len(trained) <= run.data.metrics["train_samples_seen"]
    assert run.data.metrics["train_samples_seen"] <= 10800 * (len(trained) + 1)  # + a partial
    assert "ct.stop_requested" in run.data.tags
    assert second.reason.startswith("attempt 1 stopped early, hopeless:")
    assert "TPE over 1 finished attempts proposes" in second.reason
    searched = ("conv_blocks", "filters", "learning_rate")
    assert any(second.config[k] != first.config[k] for k in searched)  # not just longer
    assert second.config["epochs"] == 14 - len(trained)  # the space's most, capped
    assert second.reason.endswith(f"; epochs {14 - len(trained)}: what the budget has left")
    assert json.loads(done.stdout)["outcome"] == "budget-exhausted"


@pytest.mark.integration
def test_a_pipelines_watch_aims_lower_by_its_finished_attempts_lead(settings: Settings):
    """The watch of a pipeline's third attempt gets the median lead of the test
    metric over the last validation value of the two attempts that finished."""
    from conftest import LENET

    from ct_service.attempt import AttemptStatus
    from ct_service.orchestration import pipeline
    from ct_service.project import load_project
    from ct_service.tracking import Tracker

    tracker = Tracker(settings)
    pipeline_id = pipeline.create(settings, str(LENET), target=MNIST_TARGET)
    run = tracker.pipeline(pipeline_id)
    config = load_project(LENET).initial_config({})
    for number, (test, validation) in enumerate([(0.988, 0.983), (0.99, 0.987)], start=1):
        attempt_id = tracker.create_attempt(run, number, config, "measured")
        tracker.client.log_metric(attempt_id, "val_accuracy", validation, step=1)
        tracker.client.log_metric(attempt_id, "test_accuracy", test)
        tracker.set_tags(attempt_id, {run_tags.STATUS: AttemptStatus.FINISHED.value})
    third = tracker.create_attempt(run, 3, config, "next")
    tags = tracker.client.get_run(third).data.tags
    watch = pipeline._stop_watch(settings, tracker, run, third, tags)
    assert watch.test_lead == pytest.approx(0.004)
