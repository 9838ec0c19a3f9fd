"""The local executor: runs an attempt on this machine, in the environment the
project declares or in this Python environment (CT_ENV_MANAGER, env_manager.py), in
a child process (the launcher) that leads its own process group: its output goes to
a log file, the reason for a failure is read from that output, and a run past its
time limit is killed with its children."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from mlflow.exceptions import MlflowException

from ct_service import run_tags
from ct_service.exceptions import ProjectError
from ct_service.execution import env_manager
from ct_service.execution.environment import declared_image
from ct_service.execution.executor import (
    AttemptRequest,
    AttemptResult,
    Heartbeat,
    failure_reason,
)
from ct_service.execution.exit_status import outside_signal
from ct_service.execution.launcher import INTERRUPTED, OUTSIDE_SIGNALS
from ct_service.execution.spares import SPARES, modules_to_preload, script_argv, send, spawn
from ct_service.execution.training_env import child_environment
from ct_service.project import load_project as read_bounded
from ct_service.settings import Settings


class LocalExecutor:
    name = "local"

    def __init__(
        self,
        settings: Settings,
        poll_seconds: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self.poll_seconds = poll_seconds
        self.clock = clock

    def prepare(self, request: AttemptRequest) -> tuple[AttemptRequest, dict[str, str]]:
        project = Path(request.project_uri)
        refuse_docker_only(project)
        choice = env_manager.choose(project, self.settings.env_manager)
        return replace(request, env_manager=choice.manager), {run_tags.ENVIRONMENT: choice.reason}

    def payload(self, request: AttemptRequest) -> dict[str, object]:
        """What the launcher runs: in this Python environment, the project's command,
        computed here as MLflow would (the launcher then need not import MLflow);
        else what it passes to mlflow.projects.run, which builds the environment."""
        payload: dict[str, object] = {
            "project_uri": request.project_uri,
            "entry_point": request.entry_point,
            "parameters": request.parameters,
            "experiment_id": request.experiment_id,
            "run_id": request.run_id,
            "env_manager": request.env_manager,
        }
        if request.env_manager == "local":
            computed = entry_point_command(request)
            if computed is not None:
                payload["command"], payload["work_dir"] = computed
        return payload

    def environment(self) -> dict[str, str]:
        return child_environment(self.settings)

    def _warm(self, request: AttemptRequest, payload: dict[str, object]) -> subprocess.Popen | None:
        """A plain `python script.py ...` runs in a warm launcher (spares.py): the spare
        that has its libraries imported, or a new one (run() readies the next spare
        once the attempt has ended). None for any other command (launcher.py runs it
        under bash)."""
        if "command" not in payload or self.settings.warm_launcher_seconds <= 0:
            return None
        env = self.environment()
        argv = script_argv(str(payload["command"]), env)
        if argv is None:
            return None
        modules = modules_to_preload(Path(str(payload["work_dir"])))
        idle = self.settings.warm_launcher_seconds
        process = SPARES.take(modules, env)
        log.info(
            "attempt %s: %s", request.run_id, "a spare launcher" if process else "a new launcher"
        )
        process = process or spawn(modules, env, idle)
        run_ids = {"MLFLOW_RUN_ID": request.run_id, "MLFLOW_EXPERIMENT_ID": request.experiment_id}
        send(
            process,
            {
                "argv": argv,
                "work_dir": payload["work_dir"],
                "env": {**env, **run_ids},
                "log": str(request.log_path),
                "command": payload["command"],
            },
        )
        return process

    def _ready_the_next(self, payload: dict[str, object]) -> None:
        """After a warm attempt (not during it: it would take CPU from training), a
        spare for the attempt the policy may propose next."""
        env = self.environment()
        if script_argv(str(payload["command"]), env) is not None:
            modules = modules_to_preload(Path(str(payload["work_dir"])))
            SPARES.start(modules, env, self.settings.warm_launcher_seconds)

    def stop(self, request: AttemptRequest) -> None:
        """Stop what the launcher started beyond its own process group."""

    def run(self, request: AttemptRequest, heartbeat: Heartbeat = lambda: None) -> AttemptResult:
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            payload = self.payload(request)
        except (MlflowException, OSError, ValueError) as error:  # MLflow refuses the project
            request.log_path.write_text(f"ct-service: {error}\n")
            return AttemptResult(False, str(error).splitlines()[0][:300])
        result = self._launch(request, payload, heartbeat)
        if "command" in payload:  # what mlflow.projects.run does when the command ends
            _end_run(self.settings, request.run_id, result.succeeded)
            if self.settings.warm_launcher_seconds > 0:
                self._ready_the_next(payload)
        return result

    def _launch(
        self, request: AttemptRequest, payload: dict[str, object], heartbeat: Heartbeat
    ) -> AttemptResult:
        with open(request.log_path, "wb") as output:
            warm = self._warm(request, payload)
            process = warm or subprocess.Popen(
                [sys.executable, "-m", "ct_service.execution.launcher", json.dumps(payload)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,  # its own process group, killed as one
            )
            _running.add(process)
            try:
                deadline = self.clock() + request.timeout_seconds
                while process.poll() is None:
                    if self.clock() > deadline:
                        _kill_group(process)
                        self.stop(request)
                        return AttemptResult(
                            False, f"timed out after {request.timeout_seconds:.0f} s and was killed"
                        )
                    halt = heartbeat()
                    if halt is not None:
                        _kill_group(process)
                        self.stop(request)
                        return AttemptResult(False, halt.reason, interrupted=halt.interrupted)
                    time.sleep(self.poll_seconds)
            finally:
                _running.discard(process)
        self.stop(request)
        returncode = process.returncode
        if warm is not None:
            returncode = _as_launcher_reports(returncode, request.log_path)
        if returncode == 0:
            return AttemptResult(True)
        reason = failure_reason(request.log_path, returncode)
        return AttemptResult(False, reason, interrupted=_interrupted(returncode))


def _as_launcher_reports(returncode: int, log_path: Path) -> int:
    """A warm launcher is the training process itself: when a signal from outside
    (the OOM killer's SIGKILL, say) ended it, say so in its log and report it as
    launcher.py reports a command killed so."""
    killer = outside_signal(returncode) if returncode < 0 else ""
    if not killer:
        return returncode
    with open(log_path, "a") as output:
        output.write(f"ct-service: the training command was killed by {killer}\n")
    return INTERRUPTED


_running: set[subprocess.Popen] = set()
log = logging.getLogger(__name__)


def _end_run(settings: Settings, run_id: str, succeeded: bool) -> None:
    """End the attempt's run if its command left it running: FINISHED, or FAILED
    (killed or interrupted too), as MLflow's local backend does."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "FINISHED" if succeeded else "FAILED")
    except MlflowException as error:  # the step that records the result ends it too
        log.warning("could not end run %s: %s", run_id, error)


def entry_point_command(request: AttemptRequest) -> tuple[str, str] | None:
    """The entry point's shell command and the folder it runs in, from MLflow's own
    reading of the MLproject (parameters checked and quoted, defaults filled in).
    None for an entry point with a `path` parameter: MLflow downloads a URI given
    for it, which belongs in the launcher (training's environment, its time limit)."""
    from mlflow.projects.utils import (
        fetch_and_validate_project,
        get_entry_point_command,
        load_project,
    )

    read_bounded(Path(request.project_uri))  # MLflow's reading has no bounds: ours first
    work_dir = fetch_and_validate_project(
        request.project_uri, None, request.entry_point, request.parameters
    )
    project = load_project(work_dir)
    entry_point = project.get_entry_point(request.entry_point)
    if any(p.type == "path" for p in entry_point.parameters.values()):
        return None
    storage = tempfile.mkdtemp(prefix="ct-storage-")  # MLflow's for path values: unused
    try:
        command = get_entry_point_command(project, request.entry_point, request.parameters, storage)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return " ".join(command), str(work_dir)


def refuse_docker_only(project: Path) -> None:
    """MLflow runs a project that declares docker_env only in that image, whatever
    env_manager says: local execution cannot run it."""
    image = declared_image(project)
    if image:
        raise ProjectError(
            f"{project.name} declares docker_env image {image}: MLflow runs it only in that "
            "image, so it cannot run with CT_EXECUTION=local; use CT_EXECUTION=docker (or "
            "auto with a Docker engine)"
        )


def stop_running_attempts() -> int:
    """Kill every attempt this process is running (its owner is going away)."""
    stopped = 0
    for process in list(_running):
        _kill_group(process)
        stopped += 1
    return stopped


def _interrupted(returncode: int) -> bool:
    """The launcher says its command was killed from outside, or was killed itself
    (by stop_running_attempts, or by a signal such as the OOM killer's)."""
    if returncode == INTERRUPTED or returncode == 128 + signal.SIGTERM:
        return True
    return returncode < 0 and -returncode in {int(s) for s in OUTSIDE_SIGNALS}


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
