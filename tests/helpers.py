"""Helpers shared by the recovery and Docker tests: waiting for a condition, starting
an embedded `ct-service run`, and reading attempts back from MLflow."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from conftest import LENET, MNIST, ROOT, ct_env, free_port

from ct_service.orchestration import pipeline
from ct_service.settings import Settings
from ct_service.tracking import PipelineStatus, Tracker

T = TypeVar("T")
SMALL = {
    "conv_blocks": "1",
    "filters": "4",
    "dense_units": "16",
    "batch_size": "64",
    "max_train_samples": "12000",
}
FAST_RECOVERY = {
    "CT_HEARTBEAT_SECONDS": "0.5",
    "CT_LEASE_SECONDS": "3",
    "CT_WATCHDOG_INTERVAL_SECONDS": "1",
    "CT_MAX_ATTEMPTS": "1",
    "CT_TARGET_THRESHOLD": "0.5",
}


def created(settings: Settings, pipeline_id: str) -> str:
    """Run the create step of a push the webhook recorded, as a worker does (the
    step's own function: no Celery needed); the id of the run it created."""
    step = pipeline.create_from_push(settings, pipeline_id)
    assert step is not None and step.task is pipeline.Task.START
    return step.args[0]


def wait_for(check: Callable[[], T], timeout: float, what: str, log: Path | None = None) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.2)


def start_embedded_run(
    env: dict[str, str], params: dict[str, str], log: IO[bytes]
) -> subprocess.Popen:
    """`ct-service run` of LeNet (trained to its last epoch) `-P ...` with no broker
    (embedded), in the background."""
    project = lenet_trained_to_the_end(Path(env["CT_HOME"]).parent)
    return subprocess.Popen(
        [sys.executable, "-m", "ct_service.cli", "run", str(project)]
        + [arg for k, v in params.items() for arg in ("-P", f"{k}={v}")],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def attempt_runs(tracker: Tracker, pipeline_id: str) -> list:
    pipeline = tracker.pipeline(pipeline_id)
    runs = tracker.client.search_runs(
        [pipeline.experiment_id], f"tags.`ct.pipeline_id` = '{pipeline_id}'"
    )
    return sorted(runs, key=lambda r: r.info.start_time)


def checkpointed_attempt(tracker: Tracker, pipeline_id: str) -> str:
    """The id of the pipeline's attempt run once it has logged an epoch's checkpoint."""
    for run in attempt_runs(tracker, pipeline_id):
        if run.data.tags.get("checkpoint.last_epoch", "0") != "0":
            return run.info.run_id
    return ""


def epochs_logged(tracker: Tracker, run_id: str) -> list[int]:
    return sorted(m.step for m in tracker.client.get_metric_history(run_id, "val_accuracy"))


def only_pipeline(tracker: Tracker) -> str:
    try:
        pipelines = tracker.recent_pipelines()
    except Exception:  # the store is being created
        return ""
    return pipelines[0].id if pipelines else ""


def lenet_declaring(folder: Path, source: str, *lines: str) -> Path:
    """A copy of LeNet at `folder`/lenet whose ct.yaml declares `source` as its data
    (the parameter `data`), then `lines` (more ct.yaml keys)."""
    project = folder / "lenet"
    shutil.copytree(LENET, project, ignore=shutil.ignore_patterns("__pycache__"))
    with open(project / "ct.yaml", "a") as declared:
        declared.write(f"data: {{param: data, source: '{source}'}}\n")
        declared.writelines(f"{line}\n" for line in lines)
    return project


def run_to_production(env: dict[str, str], project: Path, params: dict[str, str]) -> None:
    """`ct-service run PROJECT -P ... --json`, embedded, which must succeed: its model
    is then production (a target the test's env makes reachable)."""
    dash_p = [arg for k, v in params.items() for arg in ("-P", f"{k}={v}")]
    done = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(project), *dash_p, "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def lenet_trained_to_the_end(folder: Path) -> Path:
    """A copy of LeNet that trains every epoch asked for (ct.yaml `stop_early:
    false`): for tests that count epochs across a crash, not early stops."""
    copy = Path(tempfile.mkdtemp(prefix="lenet-", dir=folder))
    shutil.copytree(LENET, copy, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "ct.yaml", "a") as declared:
        declared.write("stop_early: false\n")
    return copy


def enqueue_pipeline(env: dict[str, str], mnist: Path, epochs: int) -> str:
    """A LeNet pipeline (trained to its last epoch) queued for the workers."""
    params = {**SMALL, "epochs": str(epochs), "data": str(mnist)}
    dash_p = [arg for k, v in params.items() for arg in ("-P", f"{k}={v}")]
    return enqueue(env, lenet_trained_to_the_end(Path(env["CT_HOME"]).parent), *dash_p)


def enqueue(env: dict[str, str], project: Path, *arguments: str) -> str:
    """`ct-service run PROJECT ARGUMENTS --json` with a broker: the pipeline's id."""
    done = subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(project), *arguments, "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["pipeline_id"])


def processes_with(text: str) -> list[int]:
    """Processes whose command line, environment, working directory or open files
    mention `text` (a warm launcher got its attempt after it started: its run's log
    and project show it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            blob += os.fsencode(os.readlink(entry / "cwd"))
            for descriptor in (entry / "fd").iterdir():
                blob += os.fsencode(os.readlink(descriptor))
        except OSError:
            continue
        if text.encode() in blob:
            found.append(int(entry.name))
    return found


def wait_finished(tracker: Tracker, pipeline_id: str, log: Path, timeout: float = 600) -> None:
    wait_for(
        lambda: tracker.pipeline(pipeline_id).status is PipelineStatus.FINISHED,
        timeout,
        f"pipeline {pipeline_id} to finish",
        log,
    )


class MlflowServer:
    """`mlflow server` on SQLite with proxied artifacts, in its own process group;
    stop() and start() again on the same store."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.folder = folder
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = (self.folder / "mlflow-server.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.folder / 'mlflow.db'}",
                "--artifacts-destination",
                (self.folder / "artifacts").as_uri(),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._answers, 60, "the MLflow server", self.folder / "mlflow-server.log")

    def _answers(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


QUICK_LENET = {  # one small epoch: a Docker run that only has to finish
    "conv_blocks": "1",
    "filters": "4",
    "dense_units": "16",
    "epochs": "1",
    "max_train_samples": "3000",
}


def docker_env(home: Path, **extra: str) -> dict[str, str]:
    """What a `ct-service run` in Docker gets on this machine: one attempt, the
    offline base image, builds on the host network, MNIST the only data root."""
    base = "ct-base:bookworm"
    return ct_env(
        CT_HOME=str(home),
        CT_EXECUTION="docker",
        CT_DOCKER_BASE_IMAGE=base,
        CT_DOCKER_BUILD_NETWORK="host",  # this machine's engine runs without NAT
        CT_DOCKER_CA_FILE="/etc/ssl/certs/ca-certificates.crt",
        CT_MAX_ATTEMPTS="1",
        CT_TARGET_THRESHOLD="0.3",
        CT_DATA_DIRS=os.path.realpath(MNIST),  # the only host path containers may read
        **extra,
    )


def ct_run(
    env: dict[str, str],
    mnist: Path,
    project: Path = LENET,
    options: tuple[str, ...] = (),
    **params: str,
) -> subprocess.CompletedProcess:
    """`ct-service run PROJECT --json [OPTIONS]` with a small LeNet configuration on
    `mnist`."""
    values = {**QUICK_LENET, "data": str(mnist), **params}
    return subprocess.run(
        [sys.executable, "-m", "ct_service.cli", "run", str(project), "--json", *options]
        + [arg for k, v in values.items() for arg in ("-P", f"{k}={v}")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
