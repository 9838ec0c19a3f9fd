"""The search picture: drawn from attempts as the tracker reads them."""

from __future__ import annotations

import io

import pytest

from ct_service.attempt import Attempt, AttemptStatus
from ct_service.search_picture import draw
from ct_service.target import Target


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
    picture = draw(history, Target(threshold=0.8), "val_accuracy", "lenet")
    assert picture is not None and picture.startswith(b"\x89PNG")
    assert image.imread(io.BytesIO(picture), format="png").shape[:2] == (450, 800)
