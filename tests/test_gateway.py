"""The gateway training containers log through (#29, findings 1-3): each attempt's
token reaches its own run and nothing else, whatever the tracking server would let
its account do; containers run on a network of their own, where the host's loopback
services are out of reach. Everything real: an `mlflow server --app-name basic-auth`,
the Docker engine, LeNet's environment image, a pipeline run by `ct-service run`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from conftest import LENET
from helpers import attempt_runs, ct_run, docker_env

from ct_service.execution.gateway import Gateway
from ct_service.execution.gateway_rules import (
    Grant,
    admit,
    scoped_model_search,
    visible_models,
)

OWN, OTHER, CONTINUED = "a" * 32, "b" * 32, "c" * 32


def _grant() -> Grant:
    grant = Grant(OWN, "1", frozenset({OWN, CONTINUED}))
    grant.writable_paths.add(f"1/{OWN}/artifacts")
    grant.readable_paths.add(f"1/{CONTINUED}/artifacts")
    grant.add_model("m-own", "1/models/m-own/artifacts")
    return grant


API = "/api/2.0/mlflow/"
ART = "/api/2.0/mlflow-artifacts/artifacts/"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("method", "path", "query", "body", "admitted"),
    [
        ("POST", API + "runs/log-metric", {}, {"run_id": OWN, "key": "loss"}, True),
        ("POST", API + "runs/log-metric", {}, {"run_id": OTHER, "key": "loss"}, False),
        ("POST", API + "runs/log-batch", {}, {"run_id": OWN, "tags": [{"key": "x"}]}, True),
        (
            "POST",
            API + "runs/log-batch",
            {},
            {"run_id": OWN, "tags": [{"key": "ct.status"}]},
            False,
        ),
        ("POST", API + "runs/set-tag", {}, {"run_id": OWN, "key": "checkpoint.last_epoch"}, True),
        ("POST", API + "runs/set-tag", {}, {"run_id": OWN, "key": "ct.model_name"}, False),
        ("POST", API + "runs/set-tag", {}, {"run_id": OWN, "key": "mlflow.parentRunId"}, False),
        ("POST", API + "runs/delete-tag", {}, {"run_id": OWN, "key": "ct.stop_requested"}, False),
        ("POST", API + "runs/update", {}, {"run_id": OWN, "status": "FINISHED"}, True),
        ("POST", API + "runs/update", {}, {"run_id": OTHER, "status": "FINISHED"}, False),
        ("POST", API + "runs/delete", {}, {"run_id": OWN}, False),
        ("POST", API + "runs/create", {}, {"experiment_id": "1"}, False),
        ("GET", API + "runs/get", {"run_id": [OWN]}, None, True),
        ("GET", API + "runs/get", {"run_id": [CONTINUED]}, None, True),
        ("GET", API + "runs/get", {"run_id": [OTHER]}, None, False),
        ("POST", API + "runs/search", {}, {"experiment_ids": ["1"]}, False),
        ("GET", API + "experiments/get", {"experiment_id": ["1"]}, None, True),
        ("GET", API + "experiments/get", {"experiment_id": ["2"]}, None, False),
        ("POST", API + "experiments/update", {}, {"experiment_id": "1"}, False),
        ("POST", API + "experiments/create", {}, {"name": "x"}, False),
        ("POST", API + "registered-models/create", {}, {"name": "x"}, False),
        ("POST", API + "registered-models/alias", {}, {"name": "x"}, False),
        ("POST", API + "model-versions/create", {}, {"name": "x"}, False),
        ("POST", API + "logged-models", {}, {"experiment_id": "1", "source_run_id": OWN}, True),
        ("POST", API + "logged-models", {}, {"experiment_id": "2", "source_run_id": OWN}, False),
        ("POST", API + "logged-models", {}, {"experiment_id": "1", "source_run_id": OTHER}, False),
        ("PATCH", API + "logged-models/m-own", {}, {"status": "READY"}, True),
        ("PATCH", API + "logged-models/m-other", {}, {"status": "READY"}, False),
        ("DELETE", API + "logged-models/m-own", {}, None, False),
        ("POST", API + "logged-models/search", {}, {"experiment_ids": ["2"]}, True),  # scoped
        ("GET", API + "logged-models/search", {}, None, False),
        ("PUT", ART + f"1/{OWN}/artifacts/checkpoints/1.keras", {}, None, True),
        ("PUT", ART + "1/models/m-own/artifacts/MLmodel", {}, None, True),
        ("PUT", ART + "1/models/m-victim/artifacts/python_model.pkl", {}, None, False),
        ("PUT", ART + f"1/{OTHER}/artifacts/x", {}, None, False),
        ("PUT", ART + f"1/{CONTINUED}/artifacts/x", {}, None, False),
        ("GET", ART + f"1/{CONTINUED}/artifacts/checkpoints/1.keras", {}, None, True),
        ("PUT", ART + f"1/{OWN}/artifacts/../../{OTHER}/artifacts/x", {}, None, False),
        ("GET", "/api/2.0/mlflow/users/get", {"username": ["admin"]}, None, False),
        ("GET", "/health", {}, None, True),
        ("GET", "/api/3.0/mlflow/server-info", {}, None, True),
        ("POST", "/api/3.0/mlflow/server-info", {}, {}, False),
        ("GET", "/api/3.0/mlflow/server-features", {}, None, False),
    ],
)
def test_a_token_reaches_its_own_run_only(method, path, query, body, admitted: bool) -> None:
    reason = admit(_grant(), method, path, query, body)
    assert (reason is None) is admitted, reason


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "asked"),
    [
        (  # MLflow's own search beside a download: its name, in the continued run's experiment
            {"experiment_ids": ["1"], "filter": "name = 'checkpoints'"},
            {
                "experiment_ids": ["1"],
                "filter": f"name = 'checkpoints' AND source_run_id = '{OWN}'",
            },
        ),
        (  # other experiments are dropped from the scope, never added
            {"experiment_ids": ["2", "1"], "max_results": 5, "page_token": "t"},
            {
                "experiment_ids": ["1"],
                "filter": f"source_run_id = '{OWN}'",
                "max_results": 5,
                "page_token": "t",
            },
        ),
        ({"experiment_ids": ["2"]}, None),  # only another experiment's: answered empty
        ({"experiment_ids": "1"}, None),  # malformed: answered empty
        ({}, None),
        ("not a dict", None),
    ],
)
def test_a_logged_models_search_asks_for_its_own_runs_models_only(body, asked) -> None:
    assert scoped_model_search(_grant(), body) == asked


@pytest.mark.unit
def test_a_run_without_logged_models_is_answered_empty_without_asking() -> None:
    grant = Grant(OWN, "1", frozenset({OWN, CONTINUED}))
    assert scoped_model_search(grant, {"experiment_ids": ["1"], "filter": "name = 'x'"}) is None


@pytest.mark.unit
def test_a_search_answer_keeps_only_the_models_its_run_created() -> None:
    answer = {
        "models": [
            {"info": {"model_id": "m-own", "source_run_id": OWN}},
            {"info": {"model_id": "m-other", "source_run_id": OTHER}},
            {"info": "malformed"},
        ],
        "next_page_token": "next",
    }
    assert visible_models(_grant(), answer) == {
        "models": [{"info": {"model_id": "m-own", "source_run_id": OWN}}],
        "next_page_token": "next",
    }
    assert visible_models(_grant(), "not json") == {"models": []}


# -- against a real tracking server that checks accounts ----------------------------


def _as_training(gateway: Gateway, token: str, action: Callable[[], object]) -> str:
    """Run `action` as a training container would: through the gateway, holding only
    its token. "allowed" or MLflow's error code."""
    from mlflow.exceptions import MlflowException

    saved = {name: os.environ.pop(name, None) for name in ("MLFLOW_TRACKING_USERNAME",)}
    saved["MLFLOW_TRACKING_PASSWORD"] = os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    try:
        action()
        return "allowed"
    except MlflowException as error:
        return error.error_code
    finally:
        del os.environ["MLFLOW_TRACKING_TOKEN"]
        os.environ.update({k: v for k, v in saved.items() if v is not None})


@pytest.mark.integration
def test_training_reaches_its_own_run_and_no_other_projects_objects(
    server_with_accounts: str, tmp_path: Path
) -> None:
    """Finding 2: as project A's training, every call on project B's objects (its
    model's artifacts, its pipeline's status, its champion run, its experiment, its
    registered model), and every registry or experiment change, is refused; its own
    run is written."""
    from mlflow import MlflowClient

    url = server_with_accounts
    admin = MlflowClient(url, registry_uri=url)
    project_a, project_b = admin.create_experiment("ct/a"), admin.create_experiment("ct/b")
    a_pipeline = admin.create_run(project_a, tags={"ct.kind": "pipeline"}).info.run_id
    a_attempt = admin.create_run(
        project_a, tags={"mlflow.parentRunId": a_pipeline, "ct.status": "running"}
    ).info.run_id
    b_pipeline = admin.create_run(project_b, tags={"ct.status": "running"}).info.run_id
    b_champion = admin.create_run(project_b).info.run_id
    admin.create_registered_model("b")
    version = admin.create_model_version("b", f"runs:/{b_champion}/model", run_id=b_champion)
    admin.set_registered_model_alias("b", "production", version.version)

    gateway = Gateway(url, "127.0.0.1")
    try:
        token = gateway.grant(a_attempt, project_a, set())
        training = MlflowClient(gateway.url, registry_uri=gateway.url)
        as_a = lambda action: _as_training(gateway, token, action)  # noqa: E731
        assert as_a(lambda: training.log_metric(a_attempt, "val_accuracy", 0.9)) == "allowed"
        assert as_a(lambda: training.set_tag(a_attempt, "note", "mine")) == "allowed"
        assert as_a(lambda: training.get_run(a_attempt)) == "allowed"
        checkpoint = tmp_path / "1.keras"
        checkpoint.write_bytes(b"weights")
        assert as_a(lambda: training.log_artifact(a_attempt, str(checkpoint), "ckpt")) == "allowed"
        denied = {
            "retarget its own pipeline": lambda: training.set_tag(a_pipeline, "ct.model_name", "b"),
            "a ct.* tag on its own run": lambda: training.set_tag(a_attempt, "ct.status", "x"),
            "set B's pipeline status": lambda: training.set_tag(
                b_pipeline, "ct.status", "promoting"
            ),
            "log on B's champion": lambda: training.log_metric(b_champion, "test_accuracy", 1),
            "rename B's experiment": lambda: training.rename_experiment(project_b, "pwned"),
            "end B's run": lambda: training.set_terminated(b_pipeline, "FAILED"),
            "read B's run": lambda: training.get_run(b_champion),
            "create an experiment": lambda: training.create_experiment("new"),
            "create a run": lambda: training.create_run(project_a),
            "register a model": lambda: training.create_registered_model("future"),
            "move B's alias": lambda: training.set_registered_model_alias(
                "b", "production", version.version
            ),
            "add a version of B": lambda: training.create_model_version(
                "b", f"runs:/{a_attempt}/model", run_id=a_attempt
            ),
            "delete its own run": lambda: training.delete_run(a_attempt),
        }
        outcomes = {what: as_a(action) for what, action in denied.items()}
        assert outcomes == dict.fromkeys(denied, "PERMISSION_DENIED")
        # B's model artifact, overwritten by a plain PUT: refused too.
        b_artifacts = admin.get_run(b_champion).info.artifact_uri.removeprefix("mlflow-artifacts:/")
        put = requests.put(
            f"{gateway.url}/api/2.0/mlflow-artifacts/artifacts/{b_artifacts}/model/python_model.pkl",
            data=b"poison",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert put.status_code == 403
        # Without a token, or after the attempt ended, nothing at all.
        assert (
            requests.get(f"{gateway.url}/api/2.0/mlflow/runs/get?run_id={a_attempt}").status_code
            == 401
        )
        refused = gateway.revoke(token)
        assert as_a(lambda: training.get_run(a_attempt)) == "UNAUTHENTICATED"
    finally:
        gateway.close()
    assert f"run {a_pipeline} is not the attempt's own run" in refused
    assert "tag 'ct.status' is the service's (ct.*): training code may not set it" in refused
    # Nothing of B changed; A's run holds what it logged.
    assert admin.get_run(b_pipeline).data.tags["ct.status"] == "running"
    assert "test_accuracy" not in admin.get_run(b_champion).data.metrics
    assert admin.get_experiment(project_b).name == "ct/b"
    assert admin.get_model_version_by_alias("b", "production").version == version.version
    assert len(admin.search_model_versions("name = 'b'")) == 1
    assert "ct.model_name" not in admin.get_run(a_pipeline).data.tags
    assert admin.get_run(a_attempt).data.metrics["val_accuracy"] == 0.9
    assert [a.path for a in admin.list_artifacts(a_attempt, "ckpt")] == ["ckpt/1.keras"]


@pytest.mark.integration
def test_a_continuation_downloads_its_checkpoint_and_sees_only_its_own_logged_models(
    server_with_accounts: str, tmp_path: Path
) -> None:
    """MLflow's download_artifacts searches logged models beside each run artifact it
    downloads; through the gateway that search is answered, nothing is refused, and it
    lists only models the attempt's own run created: not project B's, not those of
    another run of its own experiment (the run it continues among them)."""
    from mlflow import MlflowClient

    url = server_with_accounts
    admin = MlflowClient(url, registry_uri=url)
    project_a, project_b = admin.create_experiment("ct/a"), admin.create_experiment("ct/b")
    earlier = admin.create_run(project_a).info.run_id
    checkpoint = tmp_path / "1.keras"
    checkpoint.write_bytes(b"weights of epoch 1")
    admin.log_artifact(earlier, str(checkpoint), "checkpoints")
    admin.create_logged_model(project_a, name="checkpoints", source_run_id=earlier)
    b_run = admin.create_run(project_b).info.run_id
    b_model = admin.create_logged_model(project_b, name="checkpoints", source_run_id=b_run)
    attempt = admin.create_run(project_a).info.run_id

    gateway = Gateway(url, "127.0.0.1")
    try:
        token = gateway.grant(attempt, project_a, {earlier})
        training = MlflowClient(gateway.url, registry_uri=gateway.url)
        as_a = lambda action: _as_training(gateway, token, action)  # noqa: E731
        seen: dict[str, object] = {}

        def download() -> None:
            into = tmp_path / "into"
            into.mkdir()
            seen["file"] = training.download_artifacts(earlier, "checkpoints/1.keras", str(into))

        def search(name: str, experiments: list[str], filter_string: str | None = None) -> None:
            found = training.search_logged_models(experiments, filter_string=filter_string)
            seen[name] = sorted(model.model_id for model in found)

        assert as_a(download) == "allowed"
        assert Path(str(seen["file"])).read_bytes() == b"weights of epoch 1"
        assert as_a(lambda: search("before", [project_a, project_b])) == "allowed"
        own = as_a(
            lambda: seen.update(
                own=training.create_logged_model(project_a, "checkpoints", attempt).model_id
            )
        )
        assert own == "allowed"
        assert as_a(lambda: search("both", [project_a, project_b])) == "allowed"
        assert as_a(lambda: search("named", [project_a], "name = 'checkpoints'")) == "allowed"
        assert as_a(lambda: search("b only", [project_b])) == "allowed"
        b_id = f"model_id = '{b_model.model_id}'"
        assert as_a(lambda: search("b's id", [project_a], b_id)) == "allowed"
        refused = gateway.revoke(token)
    finally:
        gateway.close()
    assert refused == []  # nothing recorded: no ct.refused for the attempt
    assert seen["before"] == []
    assert seen["both"] == seen["named"] == [seen["own"]]
    assert seen["b only"] == seen["b's id"] == []
    # the search hid them, it did not lose them
    assert len(admin.search_logged_models([project_a], filter_string="name = 'checkpoints'")) == 2


# -- in containers: the network, and a pipeline whose code retargets its promotion ---


PROBE = """
import json, socket, sys
import mlflow
from mlflow import MlflowClient

ports = [int(p) for p in sys.argv[1].split(",")]
hosts = sys.argv[2].split(",")
reached = {}
for host in hosts:
    for port in ports:
        try:
            socket.create_connection((host, port), timeout=3).close()
            reached[f"{host}:{port}"] = "open"
        except OSError as error:
            reached[f"{host}:{port}"] = type(error).__name__
client = MlflowClient()
registry = {}
for what, action in {
    "register": lambda: client.create_registered_model("victim"),
    "alias": lambda: client.set_registered_model_alias("victim", "production", "1"),
    "version": lambda: client.create_model_version("victim", "runs:/x/model"),
}.items():
    try:
        action()
        registry[what] = "allowed"
    except Exception as error:
        registry[what] = getattr(error, "error_code", type(error).__name__)
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
              if line.startswith(("CapEff", "NoNewPrivs", "Uid")))
for limit in ("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"):
    try:
        status["pids.max"] = open(limit).read().strip()
    except OSError:
        pass
with mlflow.start_run():
    mlflow.set_tag("probe.process", json.dumps(status))
    mlflow.set_tag("probe.network", json.dumps(reached))
    mlflow.set_tag("probe.registry", json.dumps(registry))
    mlflow.log_metric("test_accuracy", 1.0)
"""


def _lenet_environment(folder: Path) -> None:
    """LeNet's Dockerfile and requirements: the cached environment image."""
    for name in ("Dockerfile", "requirements.txt"):
        shutil.copy(LENET / name, folder / name)


@pytest.fixture
def loopback_listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP listener on 127.0.0.1 that records who connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    seen: list[str] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                connection, peer = server.accept()
            except TimeoutError:
                continue
            seen.append(peer[0])
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    done.set()
    thread.join()
    server.close()


@pytest.mark.slow
@pytest.mark.docker
def test_a_container_reaches_the_gateway_and_nothing_on_the_hosts_loopback(
    tmp_path: Path, docker_client, loopback_listener
) -> None:
    """Finding 3: from its container, training code finds the host's Redis, the local
    MLflow server and a loopback listener closed, at the host's addresses and at its
    network's gateway; the registry refuses it; its own run's logging works."""
    from mlflow import MlflowClient

    from ct_service.execution import tracking_server
    from ct_service.execution.docker import DockerExecutor, upstream_tracking_uri
    from ct_service.execution.executor import AttemptRequest
    from ct_service.settings import Settings
    from ct_service.tracking import Tracker

    port, seen = loopback_listener
    project = tmp_path / "probe"
    project.mkdir()
    _lenet_environment(project)
    (project / "probe.py").write_text(PROBE)
    (project / "MLproject").write_text(
        "name: probe\nentry_points:\n  main:\n    parameters:\n"
        "      ports: {type: string, default: '0'}\n      hosts: {type: string, default: ''}\n"
        "    command: python probe.py {ports} {hosts}\n"
    )
    settings = Settings.from_env(docker_env(tmp_path / "ct"))
    tracker = Tracker(settings)
    experiment = tracker.client.create_experiment("probe")
    run_id = tracker.client.create_run(experiment).info.run_id
    mlflow_port = int(upstream_tracking_uri(settings).rsplit(":", 1)[1])
    executor = DockerExecutor(settings, upstream_tracking_uri(settings))
    gateway_ip = executor._gateway_for().url.split("//")[1].split(":")[0]
    host_ip = socket.gethostbyname(socket.gethostname())
    ports = [6379, mlflow_port, port]
    request = AttemptRequest(
        project_uri=str(project),
        entry_point="main",
        parameters={
            "ports": ",".join(map(str, ports)),
            "hosts": ",".join(sorted({"127.0.0.1", gateway_ip, host_ip})),
        },
        experiment_id=experiment,
        run_id=run_id,
        timeout_seconds=600,
        log_path=tmp_path / "attempt.log",
    )
    try:
        request, _ = executor.prepare(request)
        result = executor.run(request)
    finally:
        tracking_server.stop_all()
    assert result.succeeded, (tmp_path / "attempt.log").read_text()[-3000:]
    tags = MlflowClient(settings.tracking_uri).get_run(run_id).data.tags
    reached = json.loads(tags["probe.network"])
    assert reached and all(outcome != "open" for outcome in reached.values()), reached
    assert seen == []  # the listener never saw a connection
    process = json.loads(tags["probe.process"])  # hardened: not root, no capability, no escalation
    assert process["CapEff"].strip() == "0000000000000000", process
    assert process["NoNewPrivs"].strip() == "1" and process["pids.max"] == "4096", process
    assert process["Uid"].split()[0] == "65534", process  # nobody: the image names no user
    registry = json.loads(tags["probe.registry"])
    assert registry == dict.fromkeys(registry, "PERMISSION_DENIED"), registry
    assert "registered-models" in result.refused or "alias" in result.refused
    assert MlflowClient(settings.tracking_uri).search_registered_models() == []
    assert not docker_client.containers.list(all=True, filters={"name": f"ct-{run_id}"})


ATTACK = '''
"""A pushed project's training that tries to steer its promotion (finding 1)."""
import os, sys
from mlflow import MlflowClient

client = MlflowClient()
own = client.get_run(os.environ["MLFLOW_RUN_ID"])
pipeline = own.data.tags.get("ct.pipeline_id", "")
for run_id in (pipeline, own.info.run_id):
    for key, value in {"ct.model_name": "victim-model", "ct.target.metric": "pwn",
                       "ct.status": "promoting"}.items():
        try:
            client.set_tag(run_id, key, value)
        except Exception as error:
            print("refused:", key, getattr(error, "error_code", error), flush=True)
sys.argv = ["train.py", *sys.argv[1:]]
import train
client.log_metric(own.info.run_id, "pwn", 1.0)
sys.exit(train.main())
'''


@pytest.mark.slow
@pytest.mark.docker
def test_training_code_cannot_retarget_its_promotion(
    tmp_path: Path, mnist_dir: Path, docker_client
) -> None:
    """Finding 1, end to end: a project whose train.py names another registered model
    and its own metric on its pipeline run trains and is promoted under its own name;
    the victim's production version is unchanged, and the pipeline's reason says what
    its code tried."""
    from mlflow import MlflowClient

    from ct_service.settings import Settings
    from ct_service.tracking import Tracker

    project = tmp_path / "lenet-attack"
    shutil.copytree(LENET, project)
    (project / "attack.py").write_text(ATTACK)
    mlproject = (project / "MLproject").read_text().replace("python train.py", "python attack.py")
    (project / "MLproject").write_text(mlproject)
    home = tmp_path / "ct"
    tracker = Tracker(Settings(home=home))
    victim_run = tracker.client.create_run(tracker.client.create_experiment("victim")).info.run_id
    tracker.client.create_registered_model("victim-model")
    victim = tracker.client.create_model_version(
        "victim-model", f"runs:/{victim_run}/model", run_id=victim_run
    )
    tracker.client.set_registered_model_alias("victim-model", "production", victim.version)
    result = ct_run(docker_env(home), mnist_dir, project)
    assert result.returncode == 0, result.stderr[-3000:]
    pipeline = tracker.pipeline(json.loads(result.stdout)["pipeline_id"])
    assert pipeline.outcome == "promoted", pipeline.reason
    assert pipeline.spec.model_name == "lenet"
    assert pipeline.spec.target.metric == "test_accuracy"
    assert "training code's calls refused: attempt 1:" in pipeline.reason
    assert f"run {pipeline.id} is not the attempt's own run" in pipeline.reason
    (attempt,) = attempt_runs(tracker, pipeline.id)
    assert attempt.data.tags["ct.refused"].startswith("6 calls outside its own run refused")
    assert attempt.data.metrics["pwn"] == 1.0  # its own run: data, decided on by nothing
    client = MlflowClient(Settings(home=home).tracking_uri)
    assert str(client.get_model_version_by_alias("victim-model", "production").version) == "1"
    assert len(client.search_model_versions("name = 'victim-model'")) == 1
    assert client.get_model_version_by_alias("lenet", "production").run_id == attempt.info.run_id
