"""Stopping an attempt early, judged on its validation curve: table cases of the
pure rule, and the watch that applies it to a real MLflow run while it trains."""

from __future__ import annotations

import json

import mlflow
import pytest

from ct_service import run_tags
from ct_service.execution.stop_watch import StopWatch
from ct_service.settings import Settings
from ct_service.stop_early import StopKind, StopRule, judge
from ct_service.stop_interval import Evidence, curve_spread, gaps, interval
from ct_service.target import Direction, Target

TARGET = Target("test_accuracy", 0.90)
RULE = StopRule()
# Measured here: Fashion-MNIST, 1 conv block of 4 filters (flattens near 0.88), and
# 2 blocks of 16 filters at learning rate 0.003, 18,000 training images.
WEAK_CURVE = (0.791, 0.822, 0.846, 0.854, 0.859, 0.865)
STRONG_START = (0.848, 0.873, 0.881, 0.889, 0.892)


# The sets' sizes a LeNet run logs as dataset inputs at 20,000 and 1,000 validation
# images (MNIST's test set is 10,000).
LARGE = Evidence(validation_count=20000, test_count=10000)
SMALL = Evidence(validation_count=1000, test_count=10000)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("curve", "kind", "why"),
    [
        ((0.86, 0.89, 0.906, 0.908), StopKind.TARGET_MET, "two epochs above target + interval"),
        ((0.911,), StopKind.TARGET_MET, "a first epoch above it"),
        ((0.88, 0.913), None, "one lucky epoch: the mean of the last two is short"),
        ((0.88, 0.903), None, "above the target, not by the interval"),
        (WEAK_CURVE[:3], StopKind.HOPELESS, "flattening far below the target"),
        (STRONG_START, None, "still rising towards the target"),
        ((0.5, 0.8), None, "too few epochs to call it hopeless"),
        ((0.85, 0.88, 0.87, 0.89, 0.885), None, "noisy, but on its way: not hopeless"),
        ((0.7, 0.8, float("nan")), None, "a non-finite value: no judgement"),
    ],
)
def test_judge(curve, kind, why):
    stop = judge(curve, TARGET, RULE, horizon=20, evidence=LARGE)
    assert (stop.kind if stop else None) is kind, why
    if stop:
        assert stop.epoch == len(curve) and "val_accuracy" in stop.reason
        assert "binomial error of 20,000 validation examples" in stop.reason
        assert stop.interval is not None and stop.interval.count == 20000


@pytest.mark.unit
def test_a_thousand_image_validation_set_does_not_stop_at_half_a_point_and_twenty_thousand_do():
    """The issue's held-out Fashion run: 1,000 validation images stopped "target met"
    at +0.005 on networks whose test scores fell short."""
    target = Target("test_accuracy", 0.86)
    curve = (0.85, 0.865, 0.865)  # the target + 0.005
    assert judge(curve, target, RULE, horizon=12, evidence=SMALL) is None
    stop = judge(curve, target, RULE, horizon=12, evidence=LARGE)
    assert stop is not None and stop.kind is StopKind.TARGET_MET
    small = interval(curve, "test_accuracy", 0.86, SMALL, RULE.z)
    large = interval(curve, "test_accuracy", 0.86, LARGE, RULE.z)
    assert small is not None and large is not None
    assert small.margin > 0.005 > large.margin  # sqrt(0.86 x 0.14 / n) for both sets
    assert small.noise == pytest.approx((0.86 * 0.14 / 1000) ** 0.5)


@pytest.mark.unit
def test_the_gap_the_finished_attempts_measured_raises_the_mark_with_its_uncertainty():
    """The same run's finished attempts: validation 0.882 and 0.871, test 0.850 both."""
    target = Target("test_accuracy", 0.86)
    measured = Evidence(1000, 10000, gaps([(0.850, (0.882,)), (0.850, (0.871,))], 1.0))
    assert measured.gaps == pytest.approx((0.032, 0.021))
    assert judge((0.87, 0.882, 0.885), target, RULE, 12, evidence=SMALL) is not None
    assert judge((0.87, 0.882, 0.885), target, RULE, 12, evidence=measured) is None
    found = interval((0.88,), "test_accuracy", 0.86, measured, RULE.z)
    assert found is not None and found.gap == pytest.approx(0.0265)
    assert found.margin > found.gap  # the gap, and its spread on top
    stop = judge((0.90, 0.91, 0.912), target, RULE, 12, evidence=measured)
    assert stop is not None and stop.kind is StopKind.TARGET_MET
    assert "validation 0.0265 better than test over 2 finished attempt(s)" in stop.reason


@pytest.mark.unit
def test_a_validation_set_too_small_to_tell_stops_at_the_target_to_measure_the_test_metric():
    tiny = Evidence(validation_count=10, test_count=10)
    stop = judge((0.8, 0.9, 0.9), TARGET, RULE, horizon=12, evidence=tiny)
    assert stop is not None and stop.kind is StopKind.TARGET_MET
    assert "the validation set is too small to tell" in stop.reason
    assert stop.reason.endswith("stopping to measure the test metric")
    flat = (0.5, 0.5, 0.5, 0.5)  # hopeless on 20,000 images; on 10, noise
    assert judge(flat, TARGET, RULE, horizon=12, evidence=tiny) is None
    assert judge(flat, TARGET, RULE, horizon=12, evidence=LARGE).kind is StopKind.HOPELESS


@pytest.mark.unit
def test_without_set_sizes_the_curves_own_spread_sizes_the_interval_once_it_can_be_measured():
    curve = (0.95, 0.96, 0.955, 0.96)
    assert judge(curve[:3], TARGET, RULE, horizon=20) is None  # noise unknown: no stop
    stop = judge(curve, TARGET, RULE, horizon=20)
    assert stop is not None and stop.kind is StopKind.TARGET_MET
    assert "curve's spread over its last 4 epochs" in stop.reason
    assert curve_spread((0.1, 0.2, 0.3)) is None
    assert curve_spread((1.0, 0.5, 1 / 3, 0.25)) == pytest.approx(0.0)  # exactly 1/e


@pytest.mark.unit
def test_a_curve_at_its_horizon_is_not_called_hopeless_and_a_minimised_target_mirrors():
    assert judge(WEAK_CURVE[:3], TARGET, RULE, horizon=3, evidence=LARGE) is None
    rmse = Target("test_rmse", 0.5, Direction.MINIMIZE)
    stop = judge((0.9, 0.6, 0.5, 0.45, 0.44, 0.435), rmse, RULE, horizon=20)
    assert stop is not None and stop.kind is StopKind.TARGET_MET
    assert "val_rmse" in stop.reason
    stop = judge((0.9, 0.85, 0.84, 0.838), rmse, RULE, horizon=20)
    assert stop is not None and stop.kind is StopKind.HOPELESS


@pytest.mark.unit
def test_a_fixed_margin_replaces_the_interval_and_a_disabled_rule_never_stops():
    curve = (0.86, 0.905, 0.907)
    fixed = StopRule.from_spec({"margin": 0.005})
    assert judge(curve, TARGET, fixed, 20) is not None  # no set sizes needed
    assert judge(curve, TARGET, fixed, 20).interval is None
    assert judge(curve, TARGET, fixed, 20, margin=0.02) is None
    assert judge(curve, TARGET, RULE, 20, evidence=LARGE, margin=0.02) is None  # asked for
    assert judge(curve, TARGET, StopRule.from_spec(False), 20, evidence=LARGE) is None


@pytest.mark.unit
def test_a_higher_confidence_asks_for_a_wider_interval():
    sure = StopRule.from_spec({"confidence": 0.99})
    curve = (0.90, 0.906, 0.906)
    assert judge(curve, TARGET, RULE, 20, evidence=LARGE) is not None
    assert judge(curve, TARGET, sure, 20, evidence=LARGE) is None
    assert sure.z == pytest.approx(2.326, abs=1e-3) and RULE.z == pytest.approx(0.8416, abs=1e-4)


# Measured here: MNIST, 2 blocks of 32 filters, dense 128, dropout 0.4, 27,000
# training images (3,000 for validation): validation (from the training set) ends
# near 0.986 while the test metric reaches 0.99 at epoch 11 (0.9897, 0.9886, 0.991).
MNIST_VALIDATION = (0.971, 0.9793, 0.981, 0.9843, 0.9857)
MNIST_TARGET = Target("test_accuracy", 0.99)
MNIST_SETS = Evidence(validation_count=3000, test_count=10000)


@pytest.mark.unit
def test_the_hopeless_rule_aims_where_validation_must_be_for_the_test_metric():
    """A validation split harder than the test set (the finished attempts' gaps are
    negative) lowers the mark; flat curves below even that are still cut."""
    from dataclasses import replace

    harder = replace(MNIST_SETS, gaps=(-0.005, -0.003))
    fixed = StopRule.from_spec({"margin": 0.005})
    stop = judge(MNIST_VALIDATION[:4], MNIST_TARGET, fixed, horizon=12)
    assert stop is not None and stop.kind is StopKind.HOPELESS  # would cut the winner
    assert judge(MNIST_VALIDATION[:4], MNIST_TARGET, RULE, 12, evidence=harder) is None
    flat = (0.975, 0.976, 0.976, 0.9765)
    stop = judge(flat, MNIST_TARGET, RULE, horizon=12, evidence=harder)
    assert stop is not None and stop.kind is StopKind.HOPELESS
    assert "validation 0.004 worse than test over 2 finished attempt(s)" in stop.reason
    assert judge((0.992, 0.993), MNIST_TARGET, RULE, horizon=12, evidence=harder) is not None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("finished", "sign", "measured", "why"),
    [
        ([(0.988, (0.97, 0.983)), (0.99, (0.987,))], 1.0, (-0.005, -0.003), "last value - test"),
        ([(0.88, (0.89,))], 1.0, (0.01,), "validation above test"),
        (
            [(0.988, (0.983,)), (0.99, ()), (float("nan"), (0.9,))],
            1.0,
            (-0.005,),
            "attempts without a curve or a finite metric are left out",
        ),
        ([(0.45, (0.5,)), (0.52, (0.5,))], -1.0, (-0.05, 0.02), "minimised: better-signed"),
    ],
)
def test_the_gaps_of_the_finished_attempts(finished, sign, measured, why):
    assert gaps(finished, sign) == pytest.approx(measured), why


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
        ({"confidence": 1.0}, "stop_early.confidence must be below 1"),
        ({"confidence": 0.3}, "stop_early.confidence must be at least 0.5"),
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
    stop = judge(curve, TARGET, RULE, horizon=20, evidence=LARGE, earlier_curves=earlier)
    assert (stop.kind if stop else None) is kind, why
    if stop:
        assert stop.reason.startswith(
            f"val_accuracy {curve[-1]:.4g} at epoch {len(curve)} is behind the median "
            "0.8335 of the earlier attempts at that epoch by more than its noise"
        )


@pytest.mark.unit
def test_a_curve_behind_the_median_by_less_than_the_noise_goes_on():
    curve = (0.80, 0.825)  # 0.0085 below the median at epoch 2
    assert judge(curve, TARGET, RULE, 20, evidence=SMALL, earlier_curves=EARLIER) is None
    stop = judge(curve, TARGET, RULE, 20, evidence=LARGE, earlier_curves=EARLIER)
    assert stop is not None and stop.kind is StopKind.BEHIND


@pytest.mark.unit
def test_the_median_rule_mirrors_for_a_minimised_target_and_can_be_turned_off():
    rmse = Target("test_rmse", 0.3, Direction.MINIMIZE)
    earlier = ((0.9, 0.6, 0.5, 0.45), (0.8, 0.5, 0.4, 0.35))
    stop = judge((0.95, 0.8, 0.75, 0.72), rmse, RULE, horizon=20, earlier_curves=earlier)
    assert stop is not None and stop.kind is StopKind.BEHIND
    assert judge((0.7, 0.45, 0.4, 0.38), rmse, RULE, horizon=20, earlier_curves=earlier) is None
    off = StopRule.from_spec({"behind": False})
    assert judge((0.70, 0.75), TARGET, off, 20, evidence=LARGE, earlier_curves=EARLIER) is None
    later = StopRule.from_spec({"behind_after": 3})
    assert judge((0.70, 0.75), TARGET, later, 20, evidence=LARGE, earlier_curves=EARLIER) is None
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


def _log_sets(client: mlflow.MlflowClient, run_id: str, validation: int, test: int) -> None:
    """Log the validation and test sets as dataset inputs, as LeNet's train.py does."""
    import numpy as np
    from mlflow.entities import DatasetInput, InputTag

    inputs = [
        DatasetInput(
            mlflow.data.from_numpy(np.zeros((rows, 2)), name=context)._to_mlflow_entity(),
            [InputTag("mlflow.data.context", context)],
        )
        for context, rows in (("validation", validation), ("testing", test))
    ]
    client.log_inputs(run_id, datasets=inputs)


@pytest.mark.integration
def test_the_watch_asks_a_hopeless_run_to_stop_and_halts_it_after_the_grace(settings: Settings):
    client = mlflow.MlflowClient(settings.tracking_uri)
    run_id = client.create_run(client.create_experiment("watch")).info.run_id
    _log_sets(client, run_id, validation=20000, test=10000)
    for epoch, value in enumerate(WEAK_CURVE[1:3], start=2):
        client.log_metric(run_id, "val_accuracy", value, step=epoch)
    clock = Clock()
    watch = StopWatch(client, run_id, TARGET, RULE, horizon=20, earlier=WEAK_CURVE[:1], clock=clock)
    assert _poll(watch, clock) is None  # asked, not yet halted
    tags = client.get_run(run_id).data.tags
    assert tags[run_tags.STOPPED_EARLY].startswith("hopeless: val_accuracy 0.846 at epoch 3")
    assert tags[run_tags.STOP_REQUESTED] == watch.stop.reason
    recorded = json.loads(tags[run_tags.STOP_INTERVAL])  # read from the run's dataset inputs
    assert recorded["source"] == "binomial error of 20,000 validation examples"
    assert recorded["margin"] == pytest.approx(watch.stop.interval.margin, abs=1e-6)
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
    _log_sets(client, run_id, validation=20000, test=10000)
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
    assert tags[run_tags.STOPPED_EARLY].startswith(
        "behind: val_accuracy 0.75 at epoch 2 is behind the median 0.8335 of the earlier "
        "attempts at that epoch by more than its noise"
    )
    clock.now += watch.grace_seconds + 1
    halt = watch.check()
    assert halt is not None and not halt.interrupted


@pytest.mark.integration
def test_the_watch_never_halts_a_run_stopped_for_meeting_the_target(settings: Settings):
    client = mlflow.MlflowClient(settings.tracking_uri)
    run_id = client.create_run(client.create_experiment("watch")).info.run_id
    _log_sets(client, run_id, validation=20000, test=10000)
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
def test_a_pipelines_watch_gets_the_gaps_its_finished_attempts_measured(settings: Settings):
    """The watch of a pipeline's third attempt gets the gap between the last
    validation value and the test metric of each of the two attempts that finished."""
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
    assert watch.evidence.gaps == pytest.approx((-0.005, -0.003))


class _Curve:
    """An MLflow client holding one run's validation curve (what the watch reads)."""

    def __init__(self, values: list[float]) -> None:
        from mlflow.entities import Metric

        self.points = [Metric("val_accuracy", v, 0, step) for step, v in enumerate(values, 1)]
        self.reads = 0

    def get_metric_history(self, run_id: str, key: str) -> list:
        self.reads += 1
        return self.points

    def get_run(self, run_id: str):
        from types import SimpleNamespace

        return SimpleNamespace(inputs=None)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        pass


@pytest.mark.unit
@pytest.mark.parametrize(
    ("epochs", "elapsed", "interval"),
    [
        (0, 1.0, 0.25),  # just started: the shortest
        (0, 30.0, 3.0),  # no epoch after 30 s: a tenth of the wait
        (0, 600.0, 5.0),  # never longer than MAX_POLL_SECONDS
        (4, 60.0, 1.5),  # 15 s epochs: every 1.5 s
        (2, 2.0, 0.25),  # fast epochs: never shorter than poll_seconds
    ],
)
def test_the_watch_reads_the_curve_a_tenth_of_an_epoch_apart(epochs, elapsed, interval) -> None:
    clock = Clock()
    curve = _Curve([0.5 + 0.01 * n for n in range(epochs)])
    never = StopRule(min_epochs=50)  # reads, never judges: this is about when it reads
    watch = StopWatch(curve, "r1", TARGET, never, horizon=20, clock=clock)  # type: ignore[arg-type]
    clock.now = elapsed
    watch.check()  # the first read, at once
    watch._reader.join()
    assert watch.interval(clock.now) == pytest.approx(interval)
    clock.now += interval * 0.9
    watch.check()
    assert curve.reads == 1  # not yet
    clock.now += interval * 0.6
    watch.check()
    watch._reader.join()
    assert curve.reads == 2
