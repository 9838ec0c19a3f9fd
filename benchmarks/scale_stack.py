"""The processes `benchmarks/scale.py` measures, as a deployment runs them on one
machine: a private Redis (the broker; its own counters reset per run), one tracking
store (a SQLite file every process opens, or PostgreSQL behind an `mlflow server`),
N `ct-service worker` processes that share nothing but those two (each its own
CT_HOME), and one `ct-service beat`. Also what the workers' logs say: every step's
line (ct_service/counters.py) and the broker's command counts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ct_service.counters import StepRecord, parse_step_line  # noqa: E402  (a pure module)

POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(check, timeout: float, what: str, log: Path | None = None, every: float = 0.1):
    """Poll `check` every `every` seconds until it gives something true; its value."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise SystemExit(f"timed out waiting for {what}\n{tail}")
        time.sleep(every)
    return value


def service_env(**values: str) -> dict[str, str]:
    """This environment without CT_*/MLflow variables, the venv's bin first, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "MLFLOW_"))}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(values)
    return env


class Redis:
    """A private redis-server on a free port: its INFO counts only this benchmark."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        subprocess.run(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--daemonize", "yes", "--dir", str(folder)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wait(self._answers, 10, "redis-server")

    def _answers(self) -> bool:
        done = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True)
        return done.stdout.strip() == b"PONG"

    def reset(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "flushall"], capture_output=True)
        subprocess.run(["redis-cli", "-p", str(self.port), "config", "resetstat"], check=True,
                       capture_output=True)  # fmt: skip

    def commands(self) -> tuple[int, float]:
        """Commands the server ran since the last reset, and their seconds (server side)."""
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "info", "commandstats"],  # its own counters
            capture_output=True,
            text=True,
            check=True,
        )
        calls, usec = 0, 0.0
        for line in done.stdout.splitlines():
            if line.startswith("cmdstat_") and not line.startswith(
                ("cmdstat_info", "cmdstat_config")
            ):
                fields = dict(f.split("=") for f in line.split(":", 1)[1].split(","))
                calls += int(fields["calls"])
                usec += float(fields["usec"])
        return calls, usec / 1e6

    def stop(self) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True
        )


@dataclass
class Store:
    """One tracking store for every process: "sqlite" (a file they all open) or
    "postgres" (a new database behind an `mlflow server` with proxied artifacts)."""

    kind: str
    folder: Path
    uri: str = ""
    server: subprocess.Popen | None = None
    database: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> Store:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.kind == "sqlite":
            self.uri = f"sqlite:///{self.folder / 'mlflow.db'}"
            self.env = {"CT_TRACKING_URI": self.uri, "CT_ARTIFACT_ROOT": str(self.folder / "art")}
            return self
        import psycopg2

        self.database = f"ct_scale_{uuid.uuid4().hex[:10]}"
        admin = psycopg2.connect(**POSTGRES)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {self.database}")
        admin.close()
        try:
            return self._serve()
        except BaseException:  # the database goes with a server that did not start
            self.stop()
            raise

    def _serve(self) -> Store:
        port = free_port()
        log = (self.folder / "mlflow-server.log").open("ab")
        env = service_env(
            MLFLOW_BACKEND_STORE_URI=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.database}",
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # as the service's own server runs
        )
        self.server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--artifacts-destination", (self.folder / "art").as_uri()],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.uri = f"http://127.0.0.1:{port}"
        wait(self._answers, 120, "the MLflow server", self.folder / "mlflow-server.log")
        self.env = {"CT_TRACKING_URI": self.uri}
        return self

    def _answers(self) -> bool:
        if self.server is not None and self.server.poll() is not None:
            log = (self.folder / "mlflow-server.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"the MLflow server exited:\n{log}")
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)
            self.server.wait(timeout=30)
        if self.database:
            import psycopg2

            admin = psycopg2.connect(**POSTGRES)
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            admin.close()


class Service:
    """`ct-service worker` or `beat` in its own process group, its output in a log."""

    READY = {"worker": b"ready.", "beat": b"beat: Starting"}

    def __init__(self, command: str, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ct_service.cli", command],
            env=env,
            cwd=ROOT,
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ready = self.READY[command]

    def wait_ready(self) -> None:
        def started() -> bool:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"{self.log_path.name} exited:\n{self.log_path.read_text()[-2000:]}"
                )
            return self.ready in self.log_path.read_bytes()

        wait(started, 120, self.log_path.name)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def steps(self) -> list[StepRecord]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [record for line in lines if (record := parse_step_line(line))]


def start_workers(
    count: int, env: dict[str, str], folder: Path, beat: bool = True
) -> list[Service]:
    """`count` workers (each its own CT_HOME) and a beat, started at once, then waited for."""
    services = [
        Service(
            "worker", env | {"CT_HOME": str(folder / f"worker-{n}")}, folder / f"worker-{n}.log"
        )
        for n in range(1, count + 1)
    ]
    if beat:
        services.append(
            Service("beat", env | {"CT_HOME": str(folder / "beat")}, folder / "beat.log")
        )
    for service in services:
        service.wait_ready()
    return services


def stop_all(services: list[Service]) -> None:
    for service in services:
        service.stop()
