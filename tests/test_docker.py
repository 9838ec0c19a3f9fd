"""Attempts in Docker containers, on a real Docker engine: the LeNet environment image
built from projects/lenet/Dockerfile (once), MLflow Projects' docker_env with the
project code added per run, MNIST mounted read-only, logging over HTTP to a local
MLflow server that the embedded mode starts.

Needs a Docker engine and a base image: `make docker-base` (what .ci/run does)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import socketserver
import tempfile
import threading
import time
import uuid
from pathlib import Path

import mlflow
import pytest
from helpers import (
    FAST_RECOVERY,
    QUICK_LENET,
    attempt_runs,
    checkpointed_attempt,
    ct_run,
    docker_env,
    enqueue_pipeline,
    epochs_logged,
    only_pipeline,
    start_embedded_run,
    wait_finished,
    wait_for,
)

from ct_service import run_tags
from ct_service.execution.executor import AttemptRequest
from ct_service.settings import Settings
from ct_service.tracking import Tracker

SECRETS = {
    "CT_SMTP_PASSWORD": "hunter2-not-for-logs",
    "CT_NOTIFY_WEBHOOK_URL": "https://hooks.example/t0k3n",
    # MLflow's credentials go into the container, but only through the engine's API
    "MLFLOW_TRACKING_PASSWORD": "mlflow-pass-not-for-logs",
}


def containers(client, run_id: str) -> list:
    return client.containers.list(all=True, filters={"name": f"ct-{run_id}"})


@pytest.mark.slow
@pytest.mark.docker
def test_attempts_train_in_containers_and_an_unchanged_environment_is_not_rebuilt(
    tmp_path: Path, mnist_dir: Path, docker_client
) -> None:
    home = tmp_path / "ct"
    env = docker_env(
        home,
        CT_DOCKER_CPUS="1.5",
        CT_DOCKER_MEMORY="3g",
        MLFLOW_TRACKING_USERNAME="trainer",
        **SECRETS,
    )
    first = ct_run(env, mnist_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    second = ct_run(env, mnist_dir)
    assert second.returncode == 0, second.stderr[-3000:]
    tracker = Tracker(Settings(home=home))
    runs = []
    for result in (first, second):
        pipeline_id = json.loads(result.stdout)["pipeline_id"]
        assert tracker.pipeline(pipeline_id).outcome in ("promoted", "kept-champion")
        (run,) = attempt_runs(tracker, pipeline_id)
        runs.append(run)
    for run in runs:
        tags = run.data.tags
        assert tags["ct.executor"] == "docker"
        assert tags["ct.environment"] == "the project has a Dockerfile"
        assert tags["ct.environment.image"].startswith("ct-env/lenet:")
        assert (
            docker_client.images.get(tags["ct.environment.image"]).id
            == tags["ct.environment.image_id"]
        )
        assert epochs_logged(tracker, run.info.run_id) == [1]
        assert "test_accuracy" in run.data.metrics
        assert containers(docker_client, run.info.run_id) == []  # removed afterwards
    # The second attempt found the image of the first: no build.
    assert runs[1].data.tags["ct.environment.built"] == "false"
    assert (
        runs[1].data.tags["ct.environment.image_id"] == runs[0].data.tags["ct.environment.image_id"]
    )
    # The data went in read-only at the same path, and no secret went anywhere.
    log = next(home.glob(f"logs/attempt-{runs[0].info.run_id}.log")).read_text()
    data = mnist_dir.resolve()  # `-P` values naming a path are made absolute and real
    assert f"{data}:{data}:ro" in log
    assert f"container ct-{runs[0].info.run_id}" in log
    assert "cpus 1.5" in log and "memory 3g" in log  # the resource limits
    # The second found the image cached (the first too, when an earlier test built
    # it): a spare container of it imported the libraries while its pipeline was
    # created, then trained; its artifacts are in the run's own folder, no spare is left.
    second_log = next(home.glob(f"logs/attempt-{runs[1].info.run_id}.log")).read_text()
    assert f"container ct-{runs[1].info.run_id} (a spare, started ahead)" in second_log
    for run in runs:
        folder = Path(run.info.artifact_uri.removeprefix("file://"))
        assert folder.is_dir() and not folder.is_symlink()
        assert (folder / "checkpoints").is_dir()
    assert not docker_client.containers.list(all=True, filters={"name": "ct-spare-"})
    assert not list((home / "work" / "spares").iterdir())
    recorded = json.dumps([(r.data.params, r.data.tags) for r in runs])
    for secret in SECRETS.values():
        assert secret not in log and secret not in recorded
    versions = tracker.client.search_model_versions("name = 'lenet'")
    assert {v.run_id for v in versions} <= {r.info.run_id for r in runs} and versions
    # Each model the containers logged is in the store (MLflow 3 keeps it apart from
    # its run's artifacts), whole: production loads.
    for version in versions:
        model = tracker.client.get_logged_model(version.source.removeprefix("models:/"))
        assert (Path(model.artifact_location.removeprefix("file://")) / "MLmodel").is_file()
    production = tracker.client.get_model_version_by_alias("lenet", "production")
    loaded = mlflow.pyfunc.load_model(
        tracker.client.get_logged_model(
            production.source.removeprefix("models:/")
        ).artifact_location
    )
    assert loaded.metadata.run_id == production.run_id


@pytest.mark.slow
@pytest.mark.docker
def test_a_container_exiting_non_zero_fails_the_attempt_with_its_last_line(
    tmp_path: Path, mnist_dir: Path, docker_client
) -> None:
    home = tmp_path / "ct"
    # train.py refuses it (--force: it lies outside the search space, checked first)
    done = ct_run(docker_env(home), mnist_dir, options=("--force",), dropout="1.5")
    # No attempt ever finished: the pipeline failed (exit 1) with the attempt's reason.
    assert done.returncode == 1, done.stderr[-3000:]
    assert json.loads(done.stdout)["outcome"] == "failed"
    tracker = Tracker(Settings(home=home))
    (run,) = attempt_runs(tracker, json.loads(done.stdout)["pipeline_id"])
    assert run.data.tags["ct.status"] == "failed"
    assert run.data.tags["ct.failure"] == "error: dropout must be in [0, 1), got 1.5"
    assert containers(docker_client, run.info.run_id) == []


@pytest.mark.slow
@pytest.mark.docker
def test_a_killed_training_container_is_resumed_and_a_cancelled_pipeline_stops_its_container(
    tmp_path: Path, mnist_dir: Path, docker_client
) -> None:
    home = tmp_path / "ct"
    env = docker_env(home)
    tracker = Tracker(Settings(home=home))
    values = {**QUICK_LENET, "epochs": "3", "max_train_samples": "12000", "data": str(mnist_dir)}
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        run = start_embedded_run(env, values, log)
        try:
            pipeline_id = wait_for(lambda: only_pipeline(tracker), 120, "the pipeline", log_path)
            dead_id = wait_for(
                lambda: checkpointed_attempt(tracker, pipeline_id), 600, "a checkpoint", log_path
            )
            docker_client.containers.get(f"ct-{dead_id}").kill()  # SIGKILL, as an OOM kill
            resumed = wait_for(
                lambda: _running_container_of_resumed(tracker, docker_client, pipeline_id, dead_id),
                300,
                "the resumed attempt's container",
                log_path,
            )
            run.send_signal(signal.SIGINT)  # cancel the pipeline while that one trains
            run.wait(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
    dead = tracker.client.get_run(dead_id)
    assert dead.data.tags["ct.status"] == "resumed"
    assert "killed by SIGKILL" in dead.data.tags["ct.failure"]
    assert tracker.client.get_run(resumed).data.tags[run_tags.REPLACES_RUN] == dead_id
    wait_for(lambda: containers(docker_client, resumed) == [], 30, "the container's removal")


@pytest.mark.slow
@pytest.mark.docker
def test_a_container_removed_from_outside_is_an_interruption_and_is_resumed(
    tmp_path: Path, mnist_dir: Path, docker_client
) -> None:
    """`docker rm -f` (an operator, a prune, another tool): the attempt is resumed
    from its checkpoint, as after a kill; before, the step failed the pipeline with
    the engine's 404."""
    home = tmp_path / "ct"
    tracker = Tracker(Settings(home=home))
    values = {**QUICK_LENET, "epochs": "2", "max_train_samples": "12000", "data": str(mnist_dir)}
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        run = start_embedded_run(docker_env(home), values, log)
        try:
            pipeline_id = wait_for(lambda: only_pipeline(tracker), 120, "the pipeline", log_path)
            dead_id = wait_for(
                lambda: checkpointed_attempt(tracker, pipeline_id), 600, "a checkpoint", log_path
            )
            docker_client.containers.get(f"ct-{dead_id}").remove(force=True)
            assert run.wait(timeout=600) == 0, log_path.read_text()[-3000:]
        finally:
            if run.poll() is None:
                run.kill()
    dead = tracker.client.get_run(dead_id)
    assert dead.data.tags["ct.status"] == "resumed"
    assert dead.data.tags["ct.failure"] == "the container was removed from outside"
    runs = attempt_runs(tracker, pipeline_id)
    assert runs[-1].data.tags[run_tags.REPLACES_RUN] == dead_id
    assert tracker.pipeline(pipeline_id).outcome == "promoted"


@pytest.mark.unit
def test_the_store_label_names_a_store_without_its_credentials() -> None:
    from ct_service.execution.containers import store_label

    assert store_label("http://ci:s3cret@mlflow:5000") == store_label("http://mlflow:5000")
    assert store_label("sqlite:////a/mlflow.db") != store_label("sqlite:////b/mlflow.db")


@pytest.mark.slow
@pytest.mark.docker
def test_the_watchdog_removes_orphaned_containers_of_its_own_store_only(docker_client) -> None:
    """Two services (or two users' embedded runs) on one engine: each watchdog sees
    the other's containers, whose runs are not in its store; it must leave them be."""
    from ct_service.execution.containers import STORE_LABEL, store_label
    from ct_service.execution.docker import remove_orphaned_containers

    stores = {"mine": store_label("sqlite:////a/mlflow.db"), "theirs": store_label("http://b")}
    names = {}
    for whose, label in stores.items():
        name = f"ct-{uuid.uuid4().hex}"
        docker_client.containers.run(
            "ct-base:bookworm",
            ["sleep", "600"],
            name=name,
            labels={STORE_LABEL: label},
            detach=True,
        )
        names[whose] = name
    try:
        removed = remove_orphaned_containers(lambda run_id: False, stores["mine"])
        assert removed == [names["mine"]]
        assert docker_client.containers.get(names["theirs"]).status == "running"
    finally:
        for name in names.values():
            for container in docker_client.containers.list(all=True, filters={"name": name}):
                container.remove(force=True)


class _SlowRemovals(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A Unix-socket proxy to the real engine that passes each DELETE request on
    `delay` seconds late: an engine slow to remove containers, as this machine's was
    under load (over 10 s). A boundary the test cannot load the engine into reliably."""

    daemon_threads = True

    def __init__(self, path: str, engine: str, delay: float) -> None:
        self.engine, self.delay = engine, delay
        super().__init__(path, _ProxiedConnection)


class _ProxiedConnection(socketserver.BaseRequestHandler):
    server: _SlowRemovals

    def handle(self) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.server.engine)
        back = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
        back.start()
        while chunk := self.request.recv(65536):
            if chunk.startswith(b"DELETE "):
                time.sleep(self.server.delay)  # the injected latency, not a wait
            upstream.sendall(chunk)
        upstream.shutdown(socket.SHUT_WR)
        back.join()
        upstream.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.mark.slow
@pytest.mark.docker
def test_a_container_is_removed_when_the_engine_takes_longer_than_ten_seconds(
    docker_client, monkeypatch
) -> None:
    """The watchdog and an attempt's end remove its container; an engine that took
    over 10 s made that call give up, leaving the container (and at an attempt's end
    its logged models unmoved)."""
    from ct_service.execution.docker import remove_container

    run_id = uuid.uuid4().hex
    docker_client.containers.run(
        "ct-base:bookworm", ["sleep", "600"], name=f"ct-{run_id}", detach=True
    )
    engine = (os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock").removeprefix(
        "unix://"
    )
    folder = tempfile.mkdtemp(prefix="ct-engine-")  # short: a socket path's limit
    proxy = _SlowRemovals(f"{folder}/docker.sock", engine, delay=12.0)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{folder}/docker.sock")
        started = time.monotonic()
        assert remove_container(run_id)
        assert time.monotonic() - started >= 12.0  # it went through the slow engine
        assert not docker_client.containers.list(all=True, filters={"name": f"ct-{run_id}"})
    finally:
        proxy.shutdown()
        proxy.server_close()
        shutil.rmtree(folder, ignore_errors=True)
        for container in docker_client.containers.list(all=True, filters={"name": run_id}):
            container.remove(force=True)


def _running_container_of_resumed(tracker, client, pipeline_id: str, dead_id: str) -> str:
    """The resumed run, once its container has loaded the checkpoint and trains."""
    for run in attempt_runs(tracker, pipeline_id):
        if run.data.tags.get(run_tags.REPLACES_RUN) == dead_id and run.data.tags.get(
            "checkpoint.loaded_epoch"
        ):
            found = client.containers.list(filters={"name": f"ct-{run.info.run_id}"})
            return run.info.run_id if found else ""
    time.sleep(0.5)
    return ""


@pytest.mark.slow
@pytest.mark.docker
def test_a_dead_workers_container_is_removed_and_its_attempt_resumed(
    tmp_path: Path, mnist_dir: Path, docker_client, redis_url: str
) -> None:
    """SIGKILL a worker's process group: `docker run` dies with it, but its container
    goes on training. The watchdog must stop it before resuming the attempt."""
    from conftest import WorkerProcess

    home = tmp_path / "ct"
    leases = {k: v for k, v in FAST_RECOVERY.items() if k.startswith(("CT_HEART", "CT_LEASE"))}
    env = docker_env(home, CT_BROKER_URL=redis_url, CT_WATCHDOG_INTERVAL_SECONDS="1", **leases)
    tracker = Tracker(Settings(home=home))
    services = [WorkerProcess(env, tmp_path / "worker-1.log")]
    try:
        pipeline_id = enqueue_pipeline(env, mnist_dir, epochs=3)
        dead_id = wait_for(
            lambda: checkpointed_attempt(tracker, pipeline_id),
            600,
            "a checkpoint",
            services[0].log_path,
        )
        # Pause the training so that it cannot end on its own while we look: killing
        # its worker (and so `docker run`) must leave the container behind.
        container = docker_client.containers.get(f"ct-{dead_id}")
        container.pause()
        services[0].kill()
        assert containers(docker_client, dead_id)  # still there: nobody stopped it yet
        container.unpause()
        services.append(WorkerProcess(env, tmp_path / "worker-2.log"))
        services.append(WorkerProcess(env, tmp_path / "beat.log", "beat"))
        wait_finished(tracker, pipeline_id, tmp_path / "worker-2.log")
    finally:
        for service in services:
            service.stop()
    assert containers(docker_client, dead_id) == []
    runs = attempt_runs(tracker, pipeline_id)
    assert [r.data.tags["ct.status"] for r in runs] == ["resumed", "finished"]
    assert runs[1].data.tags[run_tags.REPLACES_RUN] == dead_id
    assert tracker.pipeline(pipeline_id).outcome == "promoted"


@pytest.mark.slow
@pytest.mark.docker
def test_auto_execution_uses_docker_when_an_engine_answers_else_local(
    docker_client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ct_service.execution.loader import executor_for

    settings = Settings(execution="auto", tracking_uri="http://127.0.0.1:9")
    assert executor_for(settings).name == "docker"
    # An engine, but no image for the project's environment: it runs locally, and says why.
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "MLproject").write_text(
        "name: plain\nentry_points:\n  main:\n    command: python t.py\n"
    )
    (plain / "t.py").write_text("print('no framework here')\n")
    executor = executor_for(settings)
    request = AttemptRequest(str(plain), "main", {}, "0", "r" * 32, 60, tmp_path / "log")
    prepared, tags = executor.prepare(request)
    assert executor.name == "local" and prepared == request
    assert tags[run_tags.ENVIRONMENT].startswith("CT_EXECUTION=auto, no image for it (plain: ")
    assert tags[run_tags.ENVIRONMENT].endswith(
        "), so local; it declares no environment: the worker's own"
    )
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # no engine
    assert executor_for(settings).name == "local"
