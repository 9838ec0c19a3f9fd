"""compose.yaml deployed for real (tests/compose_stack.py brings it up with
docker-compose): a signed push to the published webhook port is fetched by the worker
service from a git server, trained in a training container, logged to MLflow on
PostgreSQL with its artifacts in the S3 store, promoted, and loads from this host over
the MLflow server; `down` and `up` keep the registry, the runs and the artifacts, and
a second push reuses the environment image; with two workers that share nothing, two
pipelines train at once, and a worker killed mid-attempt is resumed by the other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from compose_stack import (
    LENET,
    MNIST,
    Stack,
    attempts,
    compose,
    ended,
    holds_no_s3_keys,
    new_commit,
    push,
    s3_keys,
    stack_up,
    up,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.docker]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_up(tmp_path_factory)


def test_a_push_is_trained_in_a_container_and_the_model_loads_from_the_server(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import numpy as np

    for name, value in stack.admin().items():
        monkeypatch.setenv(name, value)
    push(stack, "models")
    client = stack.client()

    def promoted() -> object:
        try:
            return client.get_model_version_by_alias("lenet", "production")
        except Exception:
            return None

    version = wait_for(promoted, 1200, "lenet@production")
    run = client.get_run(version.run_id)  # type: ignore[attr-defined]
    assert run.data.tags["ct.executor"] == "docker"
    assert run.data.tags["mlflow.source.git.commit"] == stack.commits["models"]

    # the artifacts are in the S3 store, and only the MLflow server holds its keys
    stored = s3_keys()
    assert any(version.run_id in key for key in stored)  # type: ignore[attr-defined]
    assert any(key.endswith("/MLmodel") for key in stored)
    for service in ("worker", "webhook", "beat"):
        holds_no_s3_keys(service)

    import sys

    sys.path.insert(0, str(LENET))
    import mnist

    data = mnist.load(str(MNIST))
    images = data.x_test[:2000].astype("float32")[..., None] / 255.0
    model = mlflow.pyfunc.load_model("models:/lenet@production")
    accuracy = float(
        (np.asarray(model.predict(images)).argmax(axis=1) == data.y_test[:2000]).mean()
    )
    assert accuracy >= 0.8


def test_down_and_up_keeps_registry_history_and_artifacts_and_the_image_is_reused(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    for name, value in stack.admin().items():
        monkeypatch.setenv(name, value)
    client = stack.client()

    def runs() -> set[str]:
        experiments = [e.experiment_id for e in client.search_experiments()]
        return {r.info.run_id for r in client.search_runs(experiments, max_results=1000)}

    before, production, stored = (
        runs(),
        client.get_model_version_by_alias("lenet", "production"),
        set(s3_keys()),
    )
    compose(stack.env, stack.folder, "down")  # volumes kept
    up(stack)
    assert runs() >= before
    assert client.get_model_version_by_alias("lenet", "production").version == production.version
    assert set(s3_keys()) >= stored
    assert mlflow.pyfunc.load_model("models:/lenet@production") is not None

    new_commit(stack, "models")  # new model code, same environment
    pipeline_id = push(stack, "models")
    wait_for(lambda: ended(client, pipeline_id), 900, "the second pipeline")
    trained = attempts(client, pipeline_id)
    assert trained
    assert {a.data.tags.get("ct.environment.built") for a in trained} == {"false"}


def test_two_workers_share_nothing_train_two_pipelines_at_once_and_resume_each_other(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker its own container and CT_HOME; a worker killed mid-attempt: the
    other removes its orphaned training container and resumes the attempt from its
    last checkpoint in MLflow."""
    import docker

    for name, value in stack.admin().items():
        monkeypatch.setenv(name, value)
    client = stack.client()
    compose(stack.env, stack.folder, "up", "-d", "--no-build", "--scale", "worker=2")
    workers = docker.from_env().containers.list(
        filters={"label": ["com.docker.compose.project=ctstack",
                           "com.docker.compose.service=worker"]}
    )  # fmt: skip
    assert len(workers) == 2
    homes = {
        next(m["Name"] for m in w.attrs["Mounts"] if m["Destination"] == "/var/lib/ct-service")
        for w in workers
    }
    assert len(homes) == 2  # no shared CT_HOME
    for worker in workers:
        wait_for(lambda w=worker: b" ready." in w.logs(), 120, f"worker {worker.name}")

    longer = {"epochs": 10, "max_train_samples": 30000}  # still training when a kill lands
    new_commit(stack, "models", **longer)
    new_commit(stack, "digits", **longer)
    pipelines = {name: push(stack, name) for name in ("models", "digits")}

    def both_training() -> list | None:
        running = [
            a for p in pipelines.values() for a in attempts(client, p)
            if client.get_metric_history(a.info.run_id, "val_accuracy")
        ]  # fmt: skip
        return running if len(running) == 2 else None

    first, second = wait_for(both_training, 900, "both pipelines training")
    hosts = {a.data.tags["ct.worker"].split(":")[0] for a in (first, second)}
    assert len(hosts) == 2  # at once, one on each worker

    victim_host = first.data.tags["ct.worker"].split(":")[0]
    [victim] = [w for w in workers if w.attrs["Config"]["Hostname"] == victim_host]
    victim.kill()
    survivor = next(h for h in hosts if h != victim_host)
    pipeline_of_first = first.data.tags["mlflow.parentRunId"]

    def resumed() -> object:
        for attempt in attempts(client, pipeline_of_first):
            tags = attempt.data.tags
            if tags.get("ct.resumes") and tags.get("ct.worker", "").startswith(survivor):
                return attempt
        return None

    taken_over = wait_for(resumed, 600, "the killed worker's attempt resumed on the other")
    assert taken_over.data.params.get("resume_from")  # from the dead run's last checkpoint
    for pipeline_id in pipelines.values():
        tags = wait_for(lambda p=pipeline_id: ended(client, p), 900, "both pipelines")
        assert tags["ct.outcome"] in ("promoted", "kept-champion"), tags  # the target met
