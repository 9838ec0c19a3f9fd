"""Live progress per attempt (#31 item 3): the Follower prints `epoch n/N`, the
attempt's elapsed time and an estimate of its time left from its epoch times, with a
continued attempt starting at its checkpoint epoch; a bar on a terminal, plain lines
on a pipe. The store is a real SQLite file; the epochs are logged with MlflowClient as
a training run logs them (with chosen timestamps), and the clock is injected."""

from __future__ import annotations

import os
import re
import select
import time

import pytest
from mlflow.entities import Metric

from ct_service import run_tags
from ct_service.cli.displays import Bars, Lines, display_for
from ct_service.cli.epoch_progress import progress_of
from ct_service.cli.progress import Follower
from ct_service.tracking import Pipeline, PipelineSpec, Tracker

START = 1_700_000_000.0  # Unix seconds the worker began the first attempt


def lenet_pipeline(tracker: Tracker) -> Pipeline:
    spec = PipelineSpec(
        project_path="/projects/lenet",
        project_name="lenet",
        model_name="lenet",
        initial_config={"epochs": 12},
    )
    return tracker.pipeline(tracker.create_pipeline(spec))


def log_epochs(tracker: Tracker, run_id: str, at: dict[int, float]) -> None:
    """Epoch `n` logged at Unix seconds `at[n]`, as LeNet's epoch callback logs it."""
    metrics = [
        Metric(name, value, int(seconds * 1000), epoch)
        for epoch, seconds in at.items()
        for name, value in (
            ("loss", 1.0 / epoch),
            ("accuracy", 0.9 + epoch / 1000),
            ("val_loss", 1.2 / epoch),
            ("val_accuracy", 0.89 + epoch / 1000),
        )
    ]
    tracker.client.log_batch(run_id, metrics=metrics)


def running(tracker: Tracker, run_id: str, since: float) -> None:
    tracker.set_tags(run_id, {run_tags.STATUS: "running", run_tags.STARTED: f"{since:.3f}"})


def written_until(controller: int, pattern: str, timeout: float = 10.0) -> str:
    """What was written to the terminal, read until `pattern` shows in it (a terminal
    hands output over in pieces, a moment after it is written) or `timeout` passes."""
    shown = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, shown.decode(errors="replace")):
        ready, _, _ = select.select([controller], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        shown += os.read(controller, 65536)
    return shown.decode(errors="replace")


def epoch_lines(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if line.strip().startswith("epoch ")]


@pytest.mark.integration
def test_each_epoch_shows_n_of_n_elapsed_and_time_left_from_its_epoch_times(settings):
    tracker = Tracker(settings)
    pipeline = lenet_pipeline(tracker)
    attempt = tracker.create_attempt(pipeline, 1, {"epochs": 12}, "the project's defaults")
    running(tracker, attempt, START)
    log_epochs(tracker, attempt, {1: START + 10, 2: START + 20, 3: START + 30})
    now = [START + 35]
    lines: list[str] = []
    follower = Follower(tracker, pipeline.id, emit=lines.append, clock=lambda: now[0])

    follower.poll()
    # Epochs caught up on stand as they were when logged (10 s each); the latest one
    # as it stands now, 5 s after it: 9 epochs of 10 s to go, less those 5 s.
    assert epoch_lines(lines) == [
        "epoch 1/12: loss=1.0000 accuracy=0.9010 val_loss=1.2000 val_accuracy=0.8910  (0:10 elapsed, about 1:50 left)",
        "epoch 2/12: loss=0.5000 accuracy=0.9020 val_loss=0.6000 val_accuracy=0.8920  (0:20 elapsed, about 1:40 left)",
        "epoch 3/12: loss=0.3333 accuracy=0.9030 val_loss=0.4000 val_accuracy=0.8930  (0:35 elapsed, about 1:25 left)",
    ]

    lines.clear()
    follower.poll()
    assert lines == []  # nothing new: nothing printed again

    log_epochs(tracker, attempt, {4: START + 46})  # a slower epoch
    now[0] = START + 47
    follower.poll()
    # (46 - 10) / 3 = 12 s an epoch over its own epochs: 8 to go, 1 s spent on the next
    assert epoch_lines(lines) == [
        "epoch 4/12: loss=0.2500 accuracy=0.9040 val_loss=0.3000 val_accuracy=0.8940  (0:47 elapsed, about 1:35 left)"
    ]


@pytest.mark.integration
def test_a_continued_attempt_starts_at_its_checkpoint_epoch(settings):
    tracker = Tracker(settings)
    pipeline = lenet_pipeline(tracker)
    earlier = tracker.create_attempt(pipeline, 1, {"epochs": 4}, "the project's defaults")
    log_epochs(tracker, earlier, {n: START + 10 * n for n in range(1, 5)})
    tracker.set_tags(earlier, {run_tags.STATUS: "finished", run_tags.CHECKPOINT_LAST_EPOCH: "4"})
    later = tracker.create_attempt(
        pipeline, 2, {"epochs": 10}, "train it longer", derived_from=earlier, continues=earlier
    )
    started = START + 100
    running(tracker, later, started)
    now = [started + 3]
    lines: list[str] = []
    follower = Follower(tracker, pipeline.id, emit=lines.append, clock=lambda: now[0])
    follower.poll()
    assert "attempt 2: epochs=10" in lines
    lines.clear()

    log_epochs(tracker, later, {5: started + 30, 6: started + 50})
    now[0] = started + 52
    follower.poll()
    # its own epochs only, from 5 on: 20 s each, 4 to go, 2 s spent on the next
    assert [line.split(":")[0] for line in epoch_lines(lines)] == ["epoch 5/10", "epoch 6/10"]
    assert epoch_lines(lines)[-1].endswith("(0:52 elapsed, about 1:18 left)")


@pytest.mark.integration
def test_a_terminal_gets_a_bar_and_a_pipe_plain_lines(settings):
    tracker = Tracker(settings)
    pipeline = lenet_pipeline(tracker)
    attempt = tracker.create_attempt(pipeline, 1, {"epochs": 12}, "the project's defaults")
    running(tracker, attempt, START)
    log_epochs(tracker, attempt, {1: START + 10, 2: START + 20, 3: START + 30})

    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as pipe:
        assert isinstance(display_for(pipe), Lines)
    os.close(read_end)

    controller, terminal_fd = os.openpty()  # a real terminal device
    with os.fdopen(terminal_fd, "w") as terminal:
        display = display_for(terminal)
        assert isinstance(display, Bars)
        Follower(tracker, pipeline.id, display=display, clock=lambda: START + 35).poll()
        terminal.flush()
        bar = r"attempt 1 \|.*?\| 3/12 epochs, 0:35 elapsed, about 1:25 left"
        shown = written_until(controller, bar)
        display.close()
    os.close(controller)
    assert "attempt 1: epochs=12" in shown and "epoch 3/12: loss=0.3333" in shown
    assert re.search(bar, shown), repr(shown)


@pytest.mark.integration
def test_past_its_estimate_an_attempt_shows_no_time_left_and_done_shows_none_to_go(settings):
    """Spent estimates say nothing rather than `0:00 left` for minutes (an attempt
    stopping early, a slow epoch); all epochs done: nothing left of them."""
    tracker = Tracker(settings)
    pipeline = lenet_pipeline(tracker)
    run_id = tracker.create_attempt(pipeline, 1, {"epochs": 3}, "the project's defaults")
    running(tracker, run_id, START)
    log_epochs(tracker, run_id, {1: START + 10, 2: START + 20})
    (attempt,) = tracker.attempts(tracker.pipeline(pipeline.id))
    assert progress_of(attempt, 2, START + 25).timing == "0:25 elapsed, about 0:05 left"
    assert progress_of(attempt, 2, START + 45).timing == "0:45 elapsed"
    log_epochs(tracker, run_id, {3: START + 30})
    (attempt,) = tracker.attempts(tracker.pipeline(pipeline.id))
    assert progress_of(attempt, 3, START + 45).timing == "0:45 elapsed, about 0:00 left"
