"""A local `mlflow server` on the service's own store, for containers to log to.

mlflow-skinny (in training images) cannot open a SQLite store, so when attempts run
in Docker and no tracking server is configured, this process starts one on the same
store, bound to 127.0.0.1 (containers reach it over the host network), once, and
stops it when the process exits. An embedded `ct-service run` starts it first thing
(start()), so that it comes up while the pipeline is created rather than after. Its
store URIs reach it through its environment, never its command line.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from ct_service.exceptions import InfrastructureError
from ct_service.settings import Settings

_lock = threading.Lock()
_servers: dict[str, tuple[subprocess.Popen, str]] = {}


def needed(settings: Settings) -> bool:
    """Whether containers of these settings log (through the gateway) to a server
    started here: the store is not one."""
    return not settings.tracking_uri.startswith(("http://", "https://"))


def start(settings: Settings) -> None:
    """Start the server on `settings.tracking_uri` if it is not running; url_for()
    waits for it to answer."""
    with _lock:
        _start(settings)


def start_early(settings: Settings) -> None:
    """Start the server for containers ahead of the first attempt, where they will
    need one (CT_EXECUTION=docker) and its store exists already: a new SQLite store's
    tables are created by the pipeline first, as two processes creating them at once
    would collide."""
    store = settings.tracking_uri.removeprefix("sqlite:///")
    if (
        settings.execution == "docker"
        and needed(settings)
        and settings.tracking_uri.startswith("sqlite:///")
        and os.path.isfile(store)
    ):
        start(settings)


def url_for(settings: Settings, timeout: float = 90.0) -> str:
    """The URL of the server on `settings.tracking_uri`, started on first use."""
    with _lock:
        process, url, log_path = _start(settings)
        _wait_until_healthy(process, url, timeout, log_path)
        return url


def _start(settings: Settings) -> tuple[subprocess.Popen, str, Path]:
    log_path = settings.home / "logs" / "mlflow-server.log"
    found = _servers.get(settings.tracking_uri)
    if found and found[0].poll() is None:
        return found[0], found[1], log_path
    port = _free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = ["server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if settings.artifact_root:
        command.append("--no-serve-artifacts")
    # The stores go through the environment (MLflow's server reads its options from
    # MLFLOW_*), never the command line: a PostgreSQL URI holds its password, and any
    # user of the machine may read a process's command line (`ps`, /proc/<pid>/cmdline).
    stores = {
        "MLFLOW_BACKEND_STORE_URI": settings.tracking_uri,
        "MLFLOW_REGISTRY_STORE_URI": settings.registry_uri,
    }
    if settings.artifact_root:
        stores["MLFLOW_DEFAULT_ARTIFACT_ROOT"] = settings.artifact_root
    # Without MLflow 3's job runners: eight more processes, each importing MLflow
    # (about 20 CPU-seconds at start, beside the attempt), for GenAI jobs that
    # containers logging their runs never ask for.
    env = {**os.environ, **stores, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "ab") as log:
        # Its own process group, stopped as one; it also stops when this process dies.
        process = subprocess.Popen(
            [sys.executable, "-m", "ct_service.execution.tracking_server", *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    _servers[settings.tracking_uri] = (process, url)
    return process, url, log_path


def stop_all() -> None:
    with _lock:
        for process, _ in _servers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        _servers.clear()


atexit.register(stop_all)


def _wait_until_healthy(
    process: subprocess.Popen, url: str, timeout: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise InfrastructureError(f"the local MLflow server exited; see {log_path}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise InfrastructureError(f"the local MLflow server did not answer in {timeout:.0f} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str]) -> int:
    """`python -m ct_service.execution.tracking_server server ...`: `mlflow server ...` that
    stops when the process that started it is gone."""
    from ct_service.execution.launcher import die_with_parent

    die_with_parent(os.getppid())
    return subprocess.call([sys.executable, "-m", "mlflow", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
