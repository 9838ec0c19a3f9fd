"""Shared fixtures. Everything here is real: Redis on 127.0.0.1:6379 (database 15,
flushed around each test that uses it), MLflow on a temporary SQLite file, an SMTP
server (aiosmtpd) on loopback, Celery workers as separate processes, and the full
MNIST from ../shared/data/mnist."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "projects" / "lenet"
MNIST = ROOT.parent / "shared" / "data" / "mnist"
REDIS_URL = os.environ.get("CT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The shell's CT_* and MLflow variables never leak into a test, nothing a test
    does lands in the working tree (MLflow's default store is ./mlflow.db), and the
    process-wide MLflow URIs a test sets are put back."""
    for name in list(os.environ):
        if name.startswith(("CT_", "MLFLOW_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    # mlflow.set_tracking_uri/set_registry_uri keep module globals, and the getters
    # return resolved defaults, so save and restore the globals themselves.
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    yield


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"MNIST not found at {MNIST}; tests need ../shared/data/mnist")
    return MNIST


@pytest.fixture(scope="module")
def docker_client():
    """A client of the Docker engine the docker tests need (`make docker-base`)."""
    import docker

    try:
        docker.from_env(timeout=10).ping()
    except Exception as error:
        pytest.fail(f"no Docker engine answers ({error}); start one: make docker-base")
    # A loaded engine takes longer than that to remove an image or a container's layers.
    return docker.from_env(timeout=300)


@pytest.fixture
def settings(tmp_path: Path):
    from ct_service.settings import Settings

    return Settings(home=tmp_path / "ct")


@pytest.fixture
def redis_url() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def init_repository(folder: Path) -> None:
    """`git init` with branch main and a committer, for tests that commit."""
    git(folder, "init", "-q", "-b", "main")
    git(folder, "config", "user.email", "ci@example.com")
    git(folder, "config", "user.name", "CI")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        from email import message_from_bytes
        from email.policy import default

        self.messages.append(message_from_bytes(envelope.content, policy=default))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    """A real SMTP server on loopback that keeps what it receives."""
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, mailbox
    controller.stop()


def ct_env(**values: str) -> dict[str, str]:
    """This process's environment without CT_* and MLflow variables, plus `values`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CT_") and not k.startswith("MLFLOW_")
    }
    env.update(values)
    # MLflow runs a project's command with `python` from PATH: make that this one.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def mlflow_run(project: Path, params: dict[str, object], env: dict[str, str], cwd: Path):
    """`mlflow run PROJECT --env-manager local -P ...`, as a user would type it."""
    dash_p = [arg for name, value in params.items() for arg in ("-P", f"{name}={value}")]
    command = [sys.executable, "-m", "mlflow", "run", str(project), "--env-manager", "local"]
    return subprocess.run(
        command + dash_p, env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )


class WorkerProcess:
    """`ct-service worker` (or another service command, such as `beat`) as a separate
    process in its own process group, as in production."""

    READY = {"worker": b"ready.", "beat": b"beat: Starting"}

    def __init__(self, env: dict[str, str], log_path: Path, command: str = "worker"):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ct_service.cli", command],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready(self.READY[command])

    def wait_ready(self, marker: bytes, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"process exited early:\n{self.log_path.read_text()}")
            if marker in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"not ready after {timeout} s:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL the whole process group: what a machine or container death does."""
        import signal

        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture
def server_with_accounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real `mlflow server --app-name basic-auth`, its admin's password from the
    environment as compose.yaml gives it; this process logged in as that admin."""
    from helpers import wait_for

    port = free_port()
    (tmp_path / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{tmp_path / 'users.db'}\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth.ini"),
        "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-secret-1",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32,
    }
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--artifacts-destination", (tmp_path / "artifacts").as_uri(),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_for(answers, 90, "the MLflow server", tmp_path / "server.log")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "admin-secret-1")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real S3-compatible server (SeaweedFS, tests/seaweed.py) for one test module."""
    from seaweed import start_s3

    server = start_s3(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()


@pytest.fixture
def services() -> Iterator[list[WorkerProcess]]:
    """The service processes (WorkerProcess) a test starts, stopped after it."""
    started: list[WorkerProcess] = []
    yield started
    for service in started:
        service.stop()


TIERS = ("unit", "integration", "slow")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked unit, integration or slow (docker tests are slow too), so
    that the tiered make targets run exactly what they say."""
    untiered = [
        item.nodeid
        for item in items
        if sum(item.get_closest_marker(t) is not None for t in TIERS) != 1
    ]
    if untiered:
        raise pytest.UsageError(f"tests without exactly one tier {TIERS}: {untiered}")
