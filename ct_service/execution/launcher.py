"""Runs one attempt as an MLflow Project run; the executor starts it as a child
process so that its output can be captured and the whole run killed on timeout.

    python -m ct_service.execution.launcher '<request as JSON>'

Exit status: 0 the run finished, 1 it failed, INTERRUPTED (75) it was killed from
outside (by a signal such as the OOM killer's SIGKILL) and may be resumed. The
launcher leads its own process group; if the worker that started it dies, it kills
that group, so a dead worker leaves no training behind to race its resumption.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

INTERRUPTED = 75  # EX_TEMPFAIL
# Signals that mean "stopped from outside", not "the training code crashed".
OUTSIDE_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def main(argv: list[str]) -> int:
    import mlflow.projects
    import mlflow.projects.backend.local as local_backend
    from mlflow.exceptions import ExecutionException

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    request = json.loads(argv[0])
    die_with_parent(os.getppid())
    # The executor stops a run with SIGTERM; as an interrupt, MLflow cancels the
    # project's command and marks the run failed instead of leaving it running.
    signal.signal(signal.SIGTERM, _interrupt)
    # In synchronous mode MLflow raises on failure without the command's exit
    # status; keep the handle it creates to read that status.
    submitted: list[Any] = []
    run_entry_point = local_backend._run_entry_point

    def recording_run_entry_point(*args: Any, **kwargs: Any) -> Any:
        handle = run_entry_point(*args, **kwargs)
        submitted.append(handle)
        return handle

    local_backend._run_entry_point = recording_run_entry_point
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
        killer = _outside_signal(submitted)
        if killer:
            print(f"ct-service: the training command was killed by {killer}", file=sys.stderr)
            return INTERRUPTED
        print(f"ct-service: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ct-service: the run was stopped", file=sys.stderr)
        return 128 + signal.SIGTERM
    return 0


def _outside_signal(submitted: list[Any]) -> str:
    """The name of the outside signal that ended the command, or ""."""
    if not submitted:
        return ""
    code = submitted[-1].command_proc.returncode
    if code is None:
        return ""
    number = -code if code < 0 else code - 128 if code > 128 else 0
    if number in {int(s) for s in OUTSIDE_SIGNALS}:
        return signal.Signals(number).name
    return ""


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
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
