"""A newcomer's mistakes (#31 item 1): each bad input to `ct-service run` answered in
one line naming the input and the fix, exit 2, before anything is created: no store,
no run, no work folder in CT_HOME, no traceback. The real command, in this process
(its main(), as the console script calls it), on LeNet's real MLproject."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import LENET, free_port

from ct_service.cli.main import main
from ct_service.settings import Settings

CASES = {
    "a float parameter given a word": (
        ["-P", "epochs=abc"],
        {},
        "-P epochs=abc: expected a number",
    ),
    "a learning rate given a word": (
        ["-P", "learning_rate=fast"],
        {},
        "-P learning_rate=fast: expected a number",
    ),
    "a batch size given a word": (["-P", "batch_size=abc"], {}, "-P batch_size=abc: expected"),
    "a whole-number dimension given a fraction": (
        ["-P", "conv_blocks=2.5"],
        {},
        "-P conv_blocks=2.5: expected a whole number",
    ),
    "epochs beyond the search space": (
        ["-P", "epochs=50"],
        {},
        "outside the search space's 1..12 (ct.yaml); give a value within it, or --force",
    ),
    "a data folder that does not exist": (
        ["-P", "data=/nonexistent/mnist"],
        {},
        "-P data=/nonexistent/mnist: no such file or folder",
    ),
    "an unknown parameter": (["-P", "epoch=3"], {}, "unknown parameter(s) epoch"),
    "an accuracy threshold above 1": (
        ["--threshold", "2"],
        {},
        "test_accuracy lies between 0 and 1; give a --threshold within it",
    ),
    "a CT_HOME that cannot be written": (
        [],
        {"CT_HOME": "/proc/ct-service/home"},
        "CT_HOME=/proc/ct-service/home: cannot write there",
    ),
    "Docker execution with no engine": (
        [],
        {"CT_EXECUTION": "docker", "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        "no Docker engine answers at unix:///nonexistent/docker.sock",
    ),
    "a broker that does not answer": (
        [],
        {"CT_BROKER_URL": "redis://127.0.0.1:{port}/0"},
        "CT_BROKER_URL: the broker does not answer",
    ),
    "a tracking server that does not answer": (
        [],
        {"CT_TRACKING_URI": "http://127.0.0.1:{port}"},
        "the tracking server does not answer",
    ),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_input_is_one_line_exit_2_and_creates_nothing(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    arguments, environment, expected = CASES[case]
    home = tmp_path / "ct"
    monkeypatch.setenv("CT_HOME", str(home))
    closed = str(free_port())  # nothing listens there
    for name, value in environment.items():
        monkeypatch.setenv(name, value.format(port=closed))
    code = main(["run", str(LENET), *arguments])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]
    assert "Traceback" not in err
    # Nothing was created: no store, no run, nothing in CT_HOME (made empty at most).
    assert not home.exists() or list(home.iterdir()) == []
    assert not (Path.cwd() / "mlflow.db").exists()


@pytest.mark.unit
def test_paths_typed_with_dash_p_are_data_roots_of_a_docker_run(tmp_path: Path) -> None:
    from ct_service.cli.preflight import with_given_data

    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(home=tmp_path / "ct", execution="docker")
    given = {"data": str(data), "epochs": "3", "name": "relative/not-a-root"}
    assert with_given_data(settings, given).docker.data_dirs == (os.path.realpath(data),)
    local = Settings(home=tmp_path / "ct", execution="local")
    assert with_given_data(local, given).docker.data_dirs == ()  # nothing is mounted locally


def earlier_lenet_run(home: Path, metrics: dict[str, float]) -> None:
    """A finished attempt of LeNet in the store, with these final metrics."""
    from ct_service import run_tags
    from ct_service.tracking import Tracker

    tracker = Tracker(Settings(home=home))
    run = tracker.client.create_run(tracker.experiment_id("lenet"), tags={run_tags.KIND: "attempt"})
    for name, value in metrics.items():
        tracker.client.log_metric(run.info.run_id, name, value)
    tracker.client.set_terminated(run.info.run_id, "FINISHED")


LENET_METRICS = {"test_accuracy": 0.98, "test_loss": 0.05, "accuracy": 0.99, "val_accuracy": 0.98}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("earlier", "metric", "warned"),
    [
        (LENET_METRICS, "test_acc", True),  # LeNet logs test_accuracy
        (LENET_METRICS, "test_accuracy", False),  # logged: nothing to say
        (None, "test_acc", False),  # no earlier run: nothing to go by
    ],
)
def test_a_target_metric_no_earlier_run_logged_is_warned_about_and_the_run_goes_on(
    earlier: dict[str, float] | None,
    metric: str,
    warned: bool,
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    home = tmp_path / "ct"
    if earlier is not None:
        earlier_lenet_run(home, earlier)
    monkeypatch.setenv("CT_HOME", str(home))
    monkeypatch.setenv("CT_BROKER_URL", redis_url)  # queued for workers: nothing trains here
    code = main(["run", str(LENET), "--target-metric", metric, "--threshold", "0.5", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["pipeline_id"]  # the run went on
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    if not warned:
        assert warnings == []
        return
    assert warnings == [
        "warning: the target metric test_acc was never logged by the 1 earlier finished "
        "run(s) of lenet; they logged: test_accuracy, test_loss, val_accuracy, accuracy"
    ]
