"""Runs one attempt as an MLflow Project run; the executor starts it as a child
process so that its output can be captured and the whole run killed on timeout.

    python -m ct_service.execution.launcher '<request as JSON>'

A request with a `command` (the local executor's, for env_manager local: MLflow
computed it in the worker) runs it as MLflow's local backend would (`bash -c` in the
project's folder, with MLFLOW_RUN_ID and MLFLOW_EXPERIMENT_ID), without importing
MLflow here, which costs about a second per attempt; any other request is handed to
mlflow.projects.run (environment builds, Docker images).

Exit status: 0 the run finished, 1 it failed, INTERRUPTED (75) it was killed from
outside (by a signal such as the OOM killer's SIGKILL) and may be resumed. The
launcher leads its own process group; if the worker that started it dies, it kills
that group, so a dead worker leaves no training behind to race its resumption.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from ct_service import run_tags
from ct_service.execution.exit_status import OUTSIDE_SIGNALS, Recorder

INTERRUPTED = 75  # EX_TEMPFAIL

__all__ = ["INTERRUPTED", "OUTSIDE_SIGNALS", "EnvironmentBuild", "die_with_parent", "main"]


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    request = json.loads(argv[0])
    die_with_parent(os.getppid())
    # The executor stops a run with SIGTERM; as an interrupt, MLflow cancels the
    # project's command and marks the run failed instead of leaving it running.
    signal.signal(signal.SIGTERM, _interrupt)
    # MLflow raises on failure without the command's exit status: a bash hook
    # records it (the command runs under `bash -c`, locally and as `docker run`).
    recorder = Recorder()
    recorder.install()
    try:
        succeeded = _run_command(request) if "command" in request else _run_project(request)
        if succeeded:
            return 0
        killer = recorder.outside_signal()
        if killer is None:
            print("ct-service: the command's exit status was not recorded", file=sys.stderr)
        elif killer:
            print(f"ct-service: the training command was killed by {killer}", file=sys.stderr)
            return INTERRUPTED
        print(f"ct-service: Run (ID '{request['run_id']}') failed", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ct-service: the run was stopped", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        shutil.rmtree(recorder.folder, ignore_errors=True)


def _run_command(request: dict) -> bool:
    """The project's command, as MLflow's local backend runs it; True if it exited 0."""
    env = {
        **os.environ,
        "MLFLOW_RUN_ID": request["run_id"],
        "MLFLOW_EXPERIMENT_ID": str(request["experiment_id"]),
    }
    print(f"=== Running command '{request['command']}' in run with ID '{request['run_id']}' ===")
    sys.stdout.flush()
    process = subprocess.Popen(
        ["bash", "-c", request["command"]], cwd=request["work_dir"], env=env, close_fds=True
    )
    try:
        return process.wait() == 0
    except KeyboardInterrupt:
        process.wait()  # its group was sent SIGTERM
        raise


def _run_project(request: dict) -> bool:
    """mlflow.projects.run, for the requests that need it; True if the run finished."""
    import mlflow.projects
    from mlflow.exceptions import ExecutionException

    if request.get("env_manager", "local") != "local":
        logging.getLogger("mlflow").addHandler(EnvironmentBuild(request["run_id"]))
    try:
        mlflow.projects.run(
            request["project_uri"],
            entry_point=request["entry_point"],
            parameters=request["parameters"],
            experiment_id=request["experiment_id"],
            run_id=request["run_id"],
            backend="local",
            env_manager=request.get("env_manager", "local"),
            synchronous=True,  # build_image is only honoured by synchronous runs
            build_image=request.get("build_image", False),
            docker_args=request.get("docker_args"),
        )
    except ExecutionException as error:
        print(f"ct-service: {error}", file=sys.stderr)
        return False
    return True


class EnvironmentBuild(logging.Handler):
    """Shows on the attempt's run (tag ct.environment.build) that MLflow is building the
    project's environment, then how long it took, or that it was cached: read off
    the log lines MLflow writes before and after (utils/virtualenv.py, then
    projects/backend/local.py's "=== Running command")."""

    def __init__(self, run_id: str, clock: Callable[[], float] = time.monotonic):
        super().__init__(logging.INFO)
        self.run_id = run_id
        self.clock = clock
        self.started: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Creating a new environment"):
            self.started = self.clock()
            self._tag("building")
        elif message.startswith("Environment ") and message.endswith("already exists"):
            self._tag("cached")
        elif message.startswith("=== Running command") and self.started is not None:
            self._tag(f"built in {self.clock() - self.started:.1f} s")
            self.started = None

    def _tag(self, value: str) -> None:
        from mlflow import MlflowClient

        try:
            MlflowClient().set_tag(self.run_id, run_tags.ENVIRONMENT_BUILD, value)
        except Exception as error:  # progress only: never a reason to fail the attempt
            print(f"ct-service: could not tag the environment build: {error}", file=sys.stderr)


def die_with_parent(parent: int, poll_seconds: float = 1.0) -> None:
    """Kill this process group as soon as the process that started it is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        print(
            "ct-service: the process that started this one died; stopping",
            file=sys.stderr,
            flush=True,
        )
        if os.getpgrp() == os.getpid():  # started as its group's leader, as executors do
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="ct-parent-watch", daemon=True).start()


def _interrupt(signum: int, frame: object) -> None:
    # bash stays between MLflow and the command (its EXIT trap keeps it from exec'ing
    # it), and MLflow's cancel() signals only that shell: stop the whole group.
    if os.getpgrp() == os.getpid():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(os.getpgrp(), signal.SIGTERM)
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
