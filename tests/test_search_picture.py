"""The search picture: drawn from attempts as the tracker reads them."""

from __future__ import annotations

import io

import pytest

from ct_service.attempt import Attempt, AttemptStatus
from ct_service.search_picture import STOP_MARK_GID, TEST_METRIC_GID, draw, figure_of
from ct_service.target import Direction, Target


def attempt(number: int, validation: tuple[float, ...], **extra) -> Attempt:
    return Attempt(
        number=number,
        run_id=f"run{number}",
        config={"epochs": len(validation), "resume_from": extra.pop("resume_from", "")},
        status=AttemptStatus.FINISHED,
        validation=validation,
        **extra,
    )


@pytest.mark.unit
def test_nothing_is_drawn_without_a_validation_curve_and_a_png_with_one():
    from matplotlib import image

    assert draw([attempt(1, ())], Target(), "val_accuracy", "lenet") is None
    history = [
        attempt(1, (0.7,), checkpoint_epoch=1),
        attempt(2, (0.7, 0.78, 0.8), resume_from="run1", checkpoint_epoch=3),
        attempt(3, (0.6, 0.62, 0.63), stopped_early="hopeless: flat", checkpoint_epoch=3),
        attempt(4, (0.75, 0.82, 0.83), stopped_early="target met: cleared", checkpoint_epoch=3),
        attempt(5, (0.5, 0.55), stopped_early="behind: below the median", checkpoint_epoch=2),
    ]
    picture = draw(history, Target(threshold=0.8), "val_accuracy", "lenet", margin=0.005)
    assert picture is not None and picture.startswith(b"\x89PNG")
    assert image.imread(io.BytesIO(picture), format="png").shape[:2] == (600, 1000)


def held_out_fashion() -> list[Attempt]:
    """The held-out Fashion run of #30, in small: validation ran above the test
    metric on every network, so three curves clear the test target while no test
    metric does; attempt 3 continues attempt 2 asking for a larger margin."""
    return [
        attempt(1, (0.80, 0.84, 0.862), metric=0.841, checkpoint_epoch=3),
        attempt(
            2,
            (0.83, 0.871, 0.882),
            metric=0.850,
            checkpoint_epoch=3,
            stopped_early="target met: val_accuracy 0.882 at epoch 3",
        ),
        attempt(
            3,
            (0.83, 0.871, 0.882, 0.885, 0.889),
            metric=0.8596,
            resume_from="run2",
            checkpoint_epoch=5,
            stop_margin=0.025,
        ),
        attempt(4, (0.62, 0.66), metric=0.655, stopped_early="behind: below the median"),
    ]


@pytest.mark.unit
def test_each_attempts_test_metric_is_marked_at_its_last_epoch_against_the_test_target():
    target = Target("test_accuracy", 0.86)
    figure = figure_of(held_out_fashion(), target, "val_accuracy", "fashion", margin=0.005)
    assert figure is not None
    (axes,) = figure.axes
    diamonds = [line for line in axes.lines if line.get_gid() == TEST_METRIC_GID]
    assert [(list(d.get_xdata()), list(d.get_ydata())) for d in diamonds] == [
        ([3], [0.841]),
        ([3], [0.850]),
        ([5], [0.8596]),  # the continued attempt: measured after epoch 5
        ([2], [0.655]),
    ]
    curves = {line.get_label(): line for line in axes.lines if line.get_label().startswith("att")}
    assert max(curves["attempt 2"].get_ydata()) > 0.86  # its curve clears the line ...
    assert all(d.get_ydata()[0] < 0.86 for d in diamonds)  # ... no test metric does
    assert list(curves["attempt 3 (continues 2)"].get_xdata()) == [3, 4, 5]
    (target_line,) = [line for line in axes.lines if line.get_label().startswith("test target")]
    assert target_line.get_label() == "test target: test_accuracy >= 0.86"
    assert list(target_line.get_ydata()) == [0.86, 0.86]
    marks = {line.get_label(): line for line in axes.lines if line.get_gid() == STOP_MARK_GID}
    assert marks.keys() == {
        "target met when validation >= 0.865 (target + 0.005)",  # the rule's, for all
        "attempt 3: target met when validation >= 0.885 (target + 0.025)",
    }
    assert all(y == pytest.approx(0.885) for y in marks[max(marks, key=len)].get_ydata())
    legend = {text.get_text() for text in figure.legends[0].get_texts()}
    assert {"test target: test_accuracy >= 0.86", "attempt 4", *marks} <= legend
    assert "test_accuracy of an attempt (after its last epoch)" in legend


@pytest.mark.unit
def test_a_minimised_target_puts_the_validation_mark_below_the_line_and_no_rule_no_mark():
    target = Target("test_rmse", 0.7, Direction.MINIMIZE)
    history = [attempt(1, (0.9, 0.75, 0.68), metric=0.72, stop_margin=0.01)]
    figure = figure_of(history, target, "val_rmse", "wine")
    assert figure is not None
    (axes,) = figure.axes
    (mark,) = [line for line in axes.lines if line.get_gid() == STOP_MARK_GID]
    assert mark.get_label() == "attempt 1: target met when validation <= 0.69 (target - 0.01)"
    assert any(line.get_label() == "test target: test_rmse <= 0.7" for line in axes.lines)
