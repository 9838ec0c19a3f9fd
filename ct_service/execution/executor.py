"""What an executor is: the protocol every backend implements, the request it
gets and the result it gives back, and how a failed run's output is read for its
reason. The backends are local.py and docker.py; loader.py picks one."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# A line that states an error: "error: ...", "docker: ...", or a Python exception,
# its class dotted or not ("ValueError: ...", "mlflow.exceptions.MlflowException: ...").
ERROR_LINE = re.compile(
    r"^(error:|docker: |(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*"
    r"(?:Error|Exception|Interrupt|Exit|Iteration)(?::|$))",
    re.IGNORECASE,
)
TRACEBACK = "Traceback (most recent call last):"
LOG_TAIL_BYTES = 1_000_000  # of a failed run's output, read for its reason
MLFLOW_NOISE = ("=== Run (ID", "ct-service: Run (ID", "View run ", "View experiment at:")


@dataclass(frozen=True)
class AttemptRequest:
    project_uri: str
    entry_point: str
    parameters: dict[str, str]
    experiment_id: str
    run_id: str
    timeout_seconds: float
    log_path: Path
    env_manager: str = "local"  # local execution: MLflow's env manager (env_manager.py)
    # Folders of declared data the worker fetched for this attempt (data_cache.py):
    # mountable read-only like the data roots (CT_DATA_DIRS), for this attempt only.
    data_roots: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttemptResult:
    succeeded: bool
    failure: str = ""  # one line: why the run failed
    # Killed from outside (OOM killer, a stopping worker, a vanished container), not
    # by its own code: the attempt is resumed instead of going to the policy.
    interrupted: bool = False
    # One line: calls its training code made outside its own run, refused (Docker).
    refused: str = ""


@dataclass(frozen=True)
class Halt:
    """Why a running attempt is stopped from here."""

    reason: str
    interrupted: bool  # taken over by another run (resumed elsewhere), not an outcome


Heartbeat = Callable[[], "Halt | None"]  # called while the run goes on; a Halt stops it


class Executor(Protocol):
    @property
    def name(self) -> str:
        """local or docker: where the attempt runs (tagged on its run)."""
        ...

    def prepare(self, request: AttemptRequest) -> tuple[AttemptRequest, dict[str, str]]:
        """Ready the attempt's environment before it is marked running; returns the
        request to run and tags that record the choices made. Raises ProjectError
        when the project cannot run here (nothing has started then)."""
        ...

    def run(self, request: AttemptRequest, heartbeat: Heartbeat) -> AttemptResult: ...


def failure_reason(log_path: Path, returncode: int) -> str:
    """The most telling line of a failed run's output. MLflow reports any failure of
    the project's command as its own exit code 1, so only a signal that killed the
    launcher itself is worth adding."""
    try:
        with open(log_path, "rb") as log:  # training wrote it: only its tail is read
            log.seek(max(0, log.seek(0, 2) - LOG_TAIL_BYTES))
            lines = log.read(LOG_TAIL_BYTES).decode(errors="replace").splitlines()
    except OSError:
        lines = []
    meaningful = [
        line.strip() for line in lines if line.strip() and not any(n in line for n in MLFLOW_NOISE)
    ]
    errors = [line.strip() for line in _exception_lines(lines)]
    errors += [line for line in meaningful if ERROR_LINE.match(line)]
    last = max(errors, key=lambda e: _last_index(meaningful, e)) if errors else ""
    line = (last or (meaningful or ["the run failed without output"])[-1])[:300]
    return f"killed by signal {-returncode}: {line}" if returncode < 0 else line


def _exception_lines(lines: list[str]) -> list[str]:
    """The line that ends each Python traceback: the exception, whatever its name."""
    found = []
    in_traceback = False
    for line in lines:
        if line.startswith(TRACEBACK):
            in_traceback = True
        elif in_traceback and line.strip() and not line.startswith((" ", "\t")):
            found.append(line)
            in_traceback = False
    return found


def _last_index(lines: list[str], line: str) -> int:
    return len(lines) - 1 - lines[::-1].index(line) if line in lines else -1
