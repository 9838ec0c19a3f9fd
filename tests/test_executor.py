"""The local executor runs a real MLflow Project run in a child process: it reads a
failure's reason from the run's output and kills a run that overstays its limit."""

from __future__ import annotations

import json
import os
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest

from ct_service.execution.executor import AttemptRequest, Halt, Heartbeat
from ct_service.execution.local import LocalExecutor
from ct_service.settings import Settings


@pytest.fixture(params=["warm", "cold"])
def either(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """An outcome must read the same whether a warm launcher ran the script in itself
    (spares.py) or launcher.py ran the command under bash."""
    return replace(settings, warm_launcher_seconds=600.0 if request.param == "warm" else 0.0)


def make_project(folder: Path, script: str) -> Path:
    folder.mkdir()
    (folder / "job.py").write_text(textwrap.dedent(script))
    (folder / "MLproject").write_text(
        "name: job\nentry_points:\n  main:\n    parameters:\n      x: {type: float, default: 1}\n"
        "    command: python job.py {x}\n"
    )
    return folder


def run(
    settings: Settings,
    project: Path,
    timeout: float = 120.0,
    heartbeat: Heartbeat = lambda: None,
):
    client = mlflow.MlflowClient(settings.tracking_uri, settings.registry_uri)
    experiment = client.create_experiment("executor")
    run_id = client.create_run(experiment).info.run_id
    log_path = settings.home / "logs" / "job.log"
    result = LocalExecutor(settings, poll_seconds=0.1).run(
        AttemptRequest(str(project), "main", {"x": "2"}, experiment, run_id, timeout, log_path),
        heartbeat,
    )
    return result, client.get_run(run_id), log_path


@pytest.mark.integration
def test_a_successful_run_logs_into_the_given_run(settings: Settings, tmp_path: Path):
    project = make_project(
        tmp_path / "ok",
        """
        import sys, mlflow
        with mlflow.start_run():
            mlflow.log_metric("x_seen", float(sys.argv[1]))
        print("done")
    """,
    )
    result, recorded, log_path = run(settings, project)
    assert result.succeeded and result.failure == ""
    assert recorded.data.metrics["x_seen"] == 2.0
    assert recorded.info.status == "FINISHED"
    assert "done" in log_path.read_text()


@pytest.mark.integration
def test_a_crash_is_reported_by_its_error_line(either: Settings, tmp_path: Path):
    project = make_project(
        tmp_path / "crash",
        """
        print("loading data")
        raise ValueError("the data has 3 classes, expected 10")
    """,
    )
    result, recorded, _ = run(either, project)
    assert not result.succeeded and not result.interrupted  # the code's fault: no resuming
    assert result.failure == "ValueError: the data has 3 classes, expected 10"
    assert recorded.info.status == "FAILED"


@pytest.mark.integration
def test_a_script_ends_as_the_interpreter_ends_it(either: Settings, tmp_path: Path):
    """Its threads finish, its exit handlers run, a file it left open is flushed, and
    its exit status is its own (a warm launcher leaves without the interpreter's
    teardown: none of this may be lost)."""
    results = tmp_path / "results"
    results.mkdir()
    project = make_project(
        tmp_path / "ending",
        f"""
        import atexit, sys, threading, time
        left_open = open({str(results / "open.txt")!r}, "w")
        left_open.write("flushed")
        def late():
            time.sleep(0.5)
            open({str(results / "thread.txt")!r}, "w").write("joined")
        threading.Thread(target=late).start()
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(2)  # never shut down: its idle workers must not hold the exit
        pool.submit(print, "pooled").result()
        atexit.register(lambda: open({str(results / "atexit.txt")!r}, "w").write("ran"))
        sys.exit("exiting: status 1")
    """,
    )
    result, _, _ = run(either, project, timeout=60)
    assert not result.succeeded and not result.interrupted
    assert result.failure == "exiting: status 1"
    assert (results / "open.txt").read_text() == "flushed"
    assert (results / "thread.txt").read_text() == "joined"
    assert (results / "atexit.txt").read_text() == "ran"


@pytest.mark.integration
def test_a_command_killed_from_outside_is_an_interruption(either: Settings, tmp_path: Path):
    """What the OOM killer does; the attempt is then resumed, not judged."""
    project = make_project(
        tmp_path / "victim",
        """
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    """,
    )
    result, _, _ = run(either, project)
    assert not result.succeeded and result.interrupted
    assert result.failure == "ct-service: the training command was killed by SIGKILL"


@pytest.mark.integration
def test_a_segfault_is_a_failure_of_the_code(either: Settings, tmp_path: Path):
    project = make_project(
        tmp_path / "segv",
        """
        import os, signal
        os.kill(os.getpid(), signal.SIGSEGV)
    """,
    )
    result, _, _ = run(either, project)
    assert not result.succeeded and not result.interrupted


@pytest.mark.integration
def test_a_run_whose_lease_was_taken_over_is_stopped(either: Settings, tmp_path: Path):
    pid_file = tmp_path / "pid"
    project = make_project(
        tmp_path / "sleeper",
        f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(120)
    """,
    )
    taken_over = Halt("stopped: another run took the attempt over", interrupted=True)
    result, _, _ = run(either, project, heartbeat=lambda: taken_over if pid_file.exists() else None)
    assert result.interrupted
    assert result.failure == "stopped: another run took the attempt over"
    assert not running(int(pid_file.read_text()))


@pytest.mark.integration
def test_a_run_past_its_time_limit_is_killed_with_its_children(settings: Settings, tmp_path: Path):
    limit = 20.0  # long enough for MLflow to start the command
    pid_file = tmp_path / "pid"
    project = make_project(
        tmp_path / "slow",
        f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(120)
    """,
    )
    started = time.monotonic()
    result, _, _ = run(settings, project, timeout=limit)
    assert time.monotonic() - started < 60
    assert not result.succeeded
    assert result.failure == f"timed out after {limit:.0f} s and was killed"
    assert not running(int(pid_file.read_text()))  # the training process is gone too


def running(pid: int) -> bool:
    """Alive and not a zombie (a container's PID 1 may never reap orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.integration
def test_the_command_runs_as_mlflow_runs_it_quoted_in_the_project_with_its_run(
    settings: Settings, tmp_path: Path
):
    """The worker computes the command (MLflow's reading of the MLproject) and the
    launcher runs it without MLflow Projects: parameters quoted as MLflow quotes them,
    defaults filled in, the project's folder as working directory, the run's ids in
    the environment; a command that ends without ending its run leaves it ended."""
    project = tmp_path / "quoting"
    project.mkdir()
    (project / "job.py").write_text(
        "import json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(),\n"
        "    'run': os.environ['MLFLOW_RUN_ID'], 'experiment': os.environ['MLFLOW_EXPERIMENT_ID'],\n"
        "    'store': os.environ['MLFLOW_TRACKING_URI']}))\n"
    )
    (project / "MLproject").write_text(
        "name: quoting\nentry_points:\n  main:\n    parameters:\n"
        "      text: {type: string, default: plain}\n      n: {type: float, default: 3}\n"
        "    command: python job.py {text} {n}\n"
    )
    client = mlflow.MlflowClient(settings.tracking_uri, settings.registry_uri)
    experiment = client.create_experiment("quoting")
    run_id = client.create_run(experiment).info.run_id
    log_path = settings.home / "logs" / "quoting.log"
    tricky = "it's $HOME; `rm -rf /`"
    result = LocalExecutor(settings, poll_seconds=0.1).run(
        AttemptRequest(str(project), "main", {"text": tricky}, experiment, run_id, 60, log_path)
    )
    assert result.succeeded, log_path.read_text()
    seen = json.loads(
        next(line for line in log_path.read_text().splitlines() if line.startswith("{"))
    )
    assert seen == {
        "argv": [tricky, "3"],
        "cwd": str(project),
        "run": run_id,
        "experiment": experiment,
        "store": settings.tracking_uri,
    }
    assert client.get_run(run_id).info.status == "FINISHED"  # the script did not end it
