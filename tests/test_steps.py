"""The pipeline's steps called directly, as a task (and its retries) calls them,
against a real MLflow store: what a failing step leaves behind for its retry."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LENET, ROOT, ct_env

from ct_service import run_tags
from ct_service.cli import main
from ct_service.exceptions import is_infrastructure_failure
from ct_service.orchestration import pipeline
from ct_service.orchestration.pipeline import Step, Task
from ct_service.settings import Settings
from ct_service.tracking import Tracker


def write_project(folder: Path, mlproject: str, train_py: str = "") -> Path:
    """An MLflow project folder with this MLproject (and train.py, when given)."""
    folder.mkdir()
    (folder / "MLproject").write_text(mlproject)
    if train_py:
        (folder / "train.py").write_text(train_py)
    return folder


def run_embedded(folder: Path, home: Path, **env: str) -> subprocess.CompletedProcess:
    """`ct-service run FOLDER --json`, embedded, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(folder), "--json"],
        env=ct_env(CT_HOME=str(home), **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def queued_attempt(settings: Settings) -> tuple[str, str]:
    pipeline_id = pipeline.create(settings, str(LENET), {"epochs": 1})
    step = pipeline.start(settings, pipeline_id)
    assert step is not None and step.task is Task.RUN_ATTEMPT
    return pipeline_id, step.args[1]


@pytest.mark.integration
def test_a_retried_run_attempt_runs_again_after_an_infrastructure_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Docker engine whose socket file exists but refuses connections: each call of
    the step (the task's retries) tries again, and the attempt stays queued."""
    stale = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(stale))
    listener.close()  # the socket file stays; connecting to it is refused
    monkeypatch.setenv("DOCKER_HOST", f"unix://{stale}")
    settings = Settings(home=tmp_path / "ct", execution="docker")
    pipeline_id, attempt_id = queued_attempt(settings)
    for _ in range(3):
        with pytest.raises(Exception) as raised:
            pipeline.run_attempt(settings, pipeline_id, attempt_id)
        assert is_infrastructure_failure(raised.value), raised.value
        assert f"no Docker engine answers at unix://{stale}" in str(raised.value)
    tags = Tracker(settings).client.get_run(attempt_id).data.tags
    assert tags[run_tags.STATUS] == "queued"


@pytest.mark.integration
def test_a_failed_pipeline_ends_the_attempt_runs_it_left_open(tmp_path: Path) -> None:
    """A step broke before training started (an engine that is gone, an image that
    cannot be pulled): the queued attempt's run ends FAILED with the reason."""
    settings = Settings(home=tmp_path / "ct")
    pipeline_id, attempt_id = queued_attempt(settings)
    reason = "ct.train.run_attempt failed: ProjectError: image not found"
    assert pipeline.fail(settings, pipeline_id, reason) == Step(Task.NOTIFY, (pipeline_id,))
    run = Tracker(settings).client.get_run(attempt_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[run_tags.STATUS] == "failed"
    assert run.data.tags[run_tags.FAILURE] == reason
    (attempt,) = Tracker(settings).attempts(Tracker(settings).pipeline(pipeline_id))
    assert attempt.status.value == "failed"


@pytest.mark.integration
def test_a_project_that_cannot_import_its_dependency_fails_with_that_reason(
    tmp_path: Path,
) -> None:
    """No attempt ever finished: the pipeline failed (exit 1), not "stopped" (exit 3)."""
    folder = write_project(
        tmp_path / "needs-lightgbm",
        "name: needs-lightgbm\nentry_points:\n  main:\n"
        "    parameters: {alpha: {type: float, default: 0.5}}\n"
        "    command: python train.py {alpha}\n",
        "import lightgbm_is_not_installed_here  # noqa\n",
    )
    home = tmp_path / "ct"
    result = run_embedded(folder, home)
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "failed"
    expected = "ModuleNotFoundError: No module named 'lightgbm_is_not_installed_here'"
    assert expected in summary["reason"]
    assert summary["attempts"][0]["failure"] == expected


@pytest.mark.integration
def test_local_execution_refuses_a_docker_env_project_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLflow ignores env_manager for a docker_env project: CT_EXECUTION=local would
    run it in its image after all (and fail on an image it cannot pull)."""
    folder = write_project(
        tmp_path / "boxed",
        "name: boxed\ndocker_env:\n  image: acme/trainer:3\n"
        "entry_points:\n  main:\n    command: python train.py\n",
    )
    monkeypatch.setenv("CT_HOME", str(tmp_path / "ct"))
    monkeypatch.setenv("CT_EXECUTION", "local")
    assert main(["run", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "declares docker_env image acme/trainer:3" in error and "CT_EXECUTION=docker" in error
    assert not (tmp_path / "ct" / "mlflow.db").exists()  # nothing recorded


def quick_project(folder: Path, accuracy: float) -> Path:
    """A project that trains nothing: it logs its test accuracy and ends."""
    return write_project(
        folder,
        "name: quick\nentry_points:\n  main:\n    command: python train.py\n",
        f"import mlflow\nmlflow.log_metric('test_accuracy', {accuracy})\n",
    )


@pytest.mark.integration
def test_an_embedded_run_whose_step_message_was_lost_still_ends(tmp_path: Path) -> None:
    """The embedded worker tends its pipeline as the watchdog does: the start step
    was never enqueued (a message lost), yet the pipeline runs and ends."""
    from dataclasses import replace

    from ct_service.cli.embedded import EmbeddedWorker
    from ct_service.cli.progress import Follower
    from ct_service.target import Budget, Target

    settings = Settings(home=tmp_path / "ct")
    settings = replace(settings, recovery=replace(settings.recovery, watchdog_interval_seconds=0.5))
    project = quick_project(tmp_path / "quick", accuracy=0.5)
    pipeline_id = pipeline.create(
        settings, str(project), target=Target(threshold=0.9), budget=Budget(max_attempts=1)
    )  # ... and its start step is never sent
    deadline = time.monotonic() + 120
    with EmbeddedWorker(settings) as worker:
        ended = Follower(Tracker(settings), pipeline_id, emit=lambda line: None).follow(
            stop=lambda: not worker.tend(pipeline_id) or time.monotonic() > deadline
        )
    assert ended.status.value == "finished", "the pipeline was left waiting for its lost step"
    assert ended.outcome == "budget-exhausted"


@pytest.mark.integration
def test_a_project_that_logs_its_own_float_parameter_is_not_contradicted(
    tmp_path: Path,
) -> None:
    """MLflow's wine example logs float(alpha) itself: the value the service logged
    and passed must be the same text ("1.0", not "1")."""
    folder = write_project(
        tmp_path / "wine",
        "name: wine\nentry_points:\n  main:\n"
        "    parameters: {alpha: {type: float, default: 1.0}}\n"
        "    command: python train.py {alpha}\n",
        (
            "import sys, mlflow\n"
            "mlflow.log_param('alpha', float(sys.argv[1]))\n"
            "mlflow.log_metric('test_accuracy', 0.5)\n"
        ),
    )
    result = run_embedded(folder, tmp_path / "ct", CT_MAX_ATTEMPTS="1")
    summary = json.loads(result.stdout)
    (attempt,) = summary["attempts"]
    assert attempt["status"] == "finished", attempt.get("failure")
    assert result.returncode == 3  # ran, missed the target: the budget of one is spent


@pytest.mark.integration
def test_a_required_parameter_without_a_value_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_project(
        tmp_path / "wine",
        "name: wine\nentry_points:\n  main:\n    parameters:\n      alpha: float\n"
        "    command: python train.py {alpha}\n",
    )
    monkeypatch.setenv("CT_HOME", str(tmp_path / "ct"))
    assert main(["run", str(folder)]) == 2
    assert "required parameter(s) without a value: alpha" in capsys.readouterr().err
    assert not (tmp_path / "ct" / "mlflow.db").exists()


@pytest.mark.integration
def test_a_project_without_ct_yaml_is_searched_in_an_inferred_space(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLflow's wine example has no ct.yaml: `ct-service space` shows what the policy
    infers, and a pipeline searches it, both dimensions (it used to stop after
    attempt 1)."""
    folder = write_project(
        tmp_path / "wine",
        "name: wine\nentry_points:\n  main:\n"
        "    parameters: {alpha: {type: float, default: 0.5}, l1_ratio: {type: float, default: 0.1}}\n"
        "    command: python train.py {alpha}\n",
        (
            "import sys, mlflow\nalpha = float(sys.argv[1])\n"
            "mlflow.log_metric('rmse', 0.7 + abs(alpha - 0.25))\n"  # best at alpha 0.25
        ),
    )
    assert main(["space", str(folder)]) == 0
    shown = capsys.readouterr().out
    assert "inferred from its MLproject" in shown
    assert "alpha: {role: regularization, type: float, low: 0.005, high: 50.0, log: true}" in shown
    assert "l1_ratio: {role: other, type: float, low: 0.0, high: 1.0}" in shown
    result = run_embedded(
        folder,
        tmp_path / "ct",
        CT_MAX_ATTEMPTS="3",
        CT_TARGET_METRIC="rmse",
        CT_TARGET_DIRECTION="minimize",
        CT_TARGET_THRESHOLD="0.65",
    )
    summary = json.loads(result.stdout)
    attempts = summary["attempts"]
    assert len(attempts) == 3, summary["reason"]
    assert "search space inferred from the MLproject" in attempts[1]["reason"]
    configs = [a["config"] for a in attempts]  # as the summary shows them
    assert configs[0] == "alpha=0.5 l1_ratio=0.1"
    assert len(set(configs)) == 3  # never the same configuration twice
    # it logs no curves: TPE proposes from the results, l1_ratio (which no rule
    # moves) included
    for attempt in attempts[1:]:
        assert "logged no learning curves to diagnose; TPE over" in attempt["reason"]
    assert any("l1_ratio=0.1" not in config for config in configs[1:])


@pytest.mark.integration
def test_a_target_declared_in_ct_yaml_is_used_unless_one_is_given(
    tmp_path: Path, settings: Settings
) -> None:
    """ct.yaml's target is the pipeline's, unless the command line (or repositories.yaml)
    or CT_TARGET_* give one; each pipeline records who set its target."""
    from dataclasses import replace

    from ct_service.target import Direction, Target

    folder = quick_project(tmp_path / "quick", accuracy=0.9)
    (folder / "ct.yaml").write_text("target: {metric: test_accuracy, threshold: 0.95}\n")
    configured = replace(settings, target=Target(threshold=0.5), target_set=True)
    created = {
        "ct.yaml": pipeline.create(settings, str(folder)),
        "settings": pipeline.create(configured, str(folder)),
        "given": pipeline.create(configured, str(folder), target=Target("loss", 0.1, "minimize")),
    }
    tracker = Tracker(settings)
    spec = {source: tracker.pipeline(run_id).spec for source, run_id in created.items()}
    assert {source: s.target_from for source, s in spec.items()} == {s: s for s in created}
    assert spec["ct.yaml"].target == Target("test_accuracy", 0.95)
    assert spec["settings"].target == Target("test_accuracy", 0.5)
    assert spec["given"].target == Target("loss", 0.1, Direction.MINIMIZE)
    # end to end: 0.9 misses ct.yaml's 0.95 (the default target, 0.8, it would meet)
    result = run_embedded(folder, tmp_path / "ct-run", CT_MAX_ATTEMPTS="1")
    summary = json.loads(result.stdout)
    assert summary["target"] == "test_accuracy >= 0.95"
    assert result.returncode == 3, summary["reason"]
    # a partial target on the command line completes ct.yaml's
    (folder / "ct.yaml").write_text(
        "search_space: {}\ntarget: {metric: rmse, threshold: 0.5, direction: minimize}\n"
    )
    flagged = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(folder), "--json"]
        + ["--threshold", "0.7"],
        env=ct_env(CT_HOME=str(tmp_path / "ct-flags")),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(flagged.stdout)["target"] == "rmse <= 0.7"


@pytest.mark.integration
def test_a_target_metric_the_run_never_logs_fails_the_attempt_naming_what_it_logged(
    tmp_path: Path,
) -> None:
    folder = quick_project(tmp_path / "quick", accuracy=0.9)  # logs test_accuracy only
    result = run_embedded(folder, tmp_path / "ct", CT_TARGET_METRIC="f1")
    (attempt,) = json.loads(result.stdout)["attempts"]
    assert attempt["failure"] == (
        "the run finished without logging the target metric f1; it logged: test_accuracy"
    )
    assert result.returncode == 1  # no attempt finished


@pytest.mark.integration
def test_a_new_pipeline_warm_starts_from_the_configuration_that_met_the_target(
    tmp_path: Path,
) -> None:
    """Pipeline 1 is asked for width=8 and meets the target; pipeline 2, asked for
    nothing, starts from width=8 (not the MLproject's default of 2) and says why."""
    project = write_project(
        tmp_path / "wide",
        "name: wide\nentry_points:\n  main:\n    parameters:\n"
        "      width: {type: float, default: 2}\n    command: python train.py {width}\n",
        "import sys, mlflow\nwidth = float(sys.argv[1])\n"
        "mlflow.log_metric('test_accuracy', 0.5 + width / 20)\n"
        "class Same(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input):\n        return model_input\n"
        "mlflow.pyfunc.log_model(name='model', python_model=Same())\n",
    )
    (project / "ct.yaml").write_text(
        "search_space:\n  width: {role: width, type: int, values: [2, 4, 8]}\n"
    )
    home = tmp_path / "ct"
    first = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(project), "-P", "width=8"]
        + ["--threshold", "0.9", "--json"],
        env=ct_env(CT_HOME=str(home)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_embedded(project, home)
    assert second.returncode == 0, second.stderr[-2000:]
    tracker = Tracker(Settings(home=home))
    attempts = tracker.attempts(tracker.pipeline(json.loads(second.stdout)["pipeline_id"]))
    assert attempts[0].config["width"] == 8
    assert attempts[0].reason.startswith(
        "warm start: the configuration that reached test_accuracy 0.9 in an earlier pipeline"
    )
    assert len(attempts) == 1  # met at once: no search
